// Tests of group::on_stall (docs/contract.md §4 Observing): the report
// comes once per stall, names what holds the slots, and never comes while
// tasks finish in time. Slot holders block on latches the test releases
// after the report came; nothing sleeps.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::thread_counts;
using report = errgroup::group::stall_report;

namespace {

// reports keeps what the callback was given.
struct reports {
  std::mutex mu;
  std::vector<report> got;
  std::atomic<int> calls{0};
  auto callback() {
    return [this](const report& r) {
      {
        std::lock_guard lock(mu);
        got.push_back(r);
      }
      ++calls;
    };
  }
  report at(std::size_t i) {
    std::lock_guard lock(mu);
    return got.at(i);
  }
};

// let_service_pass(d): returns once the library's service thread has made
// every call due within d from now. The service makes its calls in time
// order on one thread, and a context's deadline is one of them.
void let_service_pass(std::chrono::steady_clock::duration d) {
  auto [ctx, cancel] = errgroup::with_timeout(errgroup::context(), d);
  ctx.wait_for(1h);
  REQUIRE(ctx.err().is<errgroup::deadline_exceeded_error>());
}

// stall(g) stalls g, a group with limit 1: a task labelled "holder" takes
// the slot (the constructor waits until it runs, so it holds the slot before
// anyone waits), and a producer thread then waits in go() behind it.
// release() lets the holder end and joins the producer. Declared after g,
// release() it before g is destroyed.
class stall {
 public:
  explicit stall(errgroup::group& g) {
    std::latch started{1};
    g.go("holder", [this, &started] {
      started.count_down();
      hold_.wait();
    });
    started.wait();
    producer_ = std::thread([&g] { g.go("waiter", [] {}); });
  }
  void release() {
    hold_.count_down();
    producer_.join();
  }

 private:
  std::latch hold_{1};
  std::thread producer_;
};

}  // namespace

TEST_SUITE("stall") {
  TEST_CASE("a stall is reported once with the task that holds the slot") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(1);
      reports r;
      constexpr auto after = 20ms;
      g.on_stall(r.callback(), after);
      stall st(g);
      CHECK(test::spin_until([&] { return r.calls.load() == 1; }));
      // The stall goes on: later checks (due every `after`) stay quiet.
      let_service_pass(4 * after);
      CHECK(r.calls.load() == 1);
      const report first = r.at(0);
      REQUIRE(first.holding.size() == 1);
      CHECK(first.holding[0].label == "holder");
      CHECK(first.holding[0].elapsed >= after);
      CHECK(first.running == 1);
      CHECK(first.waiting == 1);
      CHECK(first.since_last_finish >= after);
      st.release();
      CHECK_FALSE(g.wait());
      CHECK(r.calls.load() == 1);
    }
  }

  TEST_CASE("a new stall after a task finished is reported again") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(1);
    reports r;
    // The second stall begins when "first" ends, and "second" starts then:
    // `after` leaves it ample time to be running when the report comes.
    g.on_stall(r.callback(), 100ms);
    std::latch started{1}, hold1{1}, hold2{1};
    g.go("first", [&] {
      started.count_down();
      hold1.wait();
    });
    started.wait();
    std::thread a([&] { g.go("second", [&] { hold2.wait(); }); });
    REQUIRE(test::spin_until([&] { return r.calls.load() == 1; }));
    CHECK(r.at(0).holding.at(0).label == "first");
    std::thread b([&] { g.go("third", [] {}); });
    hold1.count_down();  // "first" finishes: "second" takes the slot
    REQUIRE(test::spin_until([&] { return r.calls.load() == 2; }));
    const report second = r.at(1);
    REQUIRE(second.holding.size() == 1);
    CHECK(second.holding[0].label == "second");
    CHECK(second.waiting == 1);  // "third"
    hold2.count_down();
    a.join();
    b.join();
    CHECK_FALSE(g.wait());
    CHECK(r.calls.load() == 2);
  }

  TEST_CASE("waiters that give up and come back are the same stall") {
    // No task finishes, so it is one stall however often the waiting stops
    // and starts again, also after the checks stopped for want of waiters.
    // go_until's deadline is a call of the service thread, which makes its
    // calls in time order: each wait outlasts a check.
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(1);
    reports r;
    constexpr auto after = 20ms;
    g.on_stall(r.callback(), after);
    std::latch started{1}, hold{1};
    g.go("holder", [&] {
      started.count_down();
      hold.wait();
    });
    started.wait();
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i);
      const errgroup::error e =
          g.go_until(std::chrono::steady_clock::now() + 3 * after, [] {});
      CHECK(e.is<errgroup::deadline_exceeded_error>());
      CHECK(r.calls.load() == 1);
      let_service_pass(2 * after);  // a check finds nobody waiting: stops
    }
    hold.count_down();
    CHECK_FALSE(g.wait());
    CHECK(r.calls.load() == 1);
  }

  TEST_CASE("a stall on a budget's units is reported") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    errgroup::weighted budget(1);
    reports r;
    g.on_stall(r.callback(), 20ms);
    std::latch started{1}, hold{1};
    g.go(budget, 1, [&] {
      started.count_down();
      hold.wait();
    });
    started.wait();
    std::thread producer([&] { g.go(budget, 1, [] {}); });
    CHECK(test::spin_until([&] { return r.calls.load() == 1; }));
    const report first = r.at(0);
    CHECK(first.holding.empty());  // the holder has no label
    CHECK(first.running == 1);
    CHECK(first.waiting == 1);
    hold.count_down();
    producer.join();
    CHECK_FALSE(g.wait());
    CHECK(r.calls.load() == 1);
    CHECK(budget.available() == 1);
  }

  TEST_CASE("no stall is reported while tasks finish in time") {
    // Tasks wait for the slots all the time, so the group checks; none of
    // them holds a slot for long.
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(2);
      reports r;
      g.on_stall(r.callback(), 10s);
      std::atomic<int> ran{0};
      for (int i = 0; i < 2000; ++i) g.go([&] { ++ran; });
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == 2000);
      CHECK(r.calls.load() == 0);
    }
  }

  TEST_CASE("tasks that run long but let nobody wait are no stall") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(2);
    reports r;
    constexpr auto after = 10ms;
    g.on_stall(r.callback(), after);
    std::latch hold{1};
    g.go("long", [&] { hold.wait(); });
    let_service_pass(4 * after);
    hold.count_down();
    CHECK_FALSE(g.wait());
    CHECK(r.calls.load() == 0);
  }

  TEST_CASE("destroying the group removes its pending check") {
    // After the report the next check is due `after` later; the group dies
    // first. Under ASan a check left behind would read freed memory.
    reports r;
    constexpr auto after = 20ms;
    {
      errgroup::scheduler s{2};
      errgroup::group g{s};
      g.set_limit(1);
      g.on_stall(r.callback(), after);
      stall st(g);
      REQUIRE(test::spin_until([&] { return r.calls.load() == 1; }));
      st.release();
    }
    let_service_pass(4 * after);
    CHECK(r.calls.load() == 1);
  }

  TEST_CASE("the longest period means never (contract 7)") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(1);
    reports r;
    g.on_stall(r.callback(), std::chrono::steady_clock::duration::max());
    stall st(g);
    REQUIRE(test::spin_until([&] { return g.counters().waiting == 1; }));
    let_service_pass(20ms);  // a check due "now" (overflowed) would run
    CHECK(r.calls.load() == 0);
    st.release();
    CHECK_FALSE(g.wait());
    CHECK(r.calls.load() == 0);
  }

  TEST_CASE("on_stall refuses a period of zero and active tasks") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    CHECK_THROWS_AS(g.on_stall([](const report&) {}, 0s),
                    std::invalid_argument);
    std::latch hold{1};
    g.go([&] { hold.wait(); });
    CHECK_THROWS_WITH_AS(
        g.on_stall([](const report&) {}, 1s),
        "errgroup: on_stall() while 1 tasks in the group are still active",
        std::logic_error);
    hold.count_down();
    CHECK_FALSE(g.wait());
  }
}
