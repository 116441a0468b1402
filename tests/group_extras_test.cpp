// Tests of group's extras: go_until, labelled tasks, keep_errors, on_progress.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <stdexcept>
#include <thread>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::thread_counts;

TEST_SUITE("group.extras") {
  TEST_CASE("go_until gives up at the deadline when no slot frees") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(1);
      std::latch hold{1};
      g.go([&] { hold.wait(); });
      std::atomic<int> ran{0};
      const errgroup::error e =
          g.go_until(std::chrono::steady_clock::now() + 20ms, [&] { ++ran; });
      CHECK(e.is<errgroup::deadline_exceeded_error>());
      CHECK(g.counters().submitted == 1);  // the given-up call is not counted
      hold.count_down();
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == 0);
      CHECK_FALSE(
          g.go_until(std::chrono::steady_clock::now() + 1h, [&] { ++ran; }));
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == 1);
    }
  }

  TEST_CASE("go_until on a cancelled context group returns its error") {
    auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
    errgroup::group g{parent};
    g.set_limit(1);
    std::latch started{1}, hold{1};
    g.go([&] {
      started.count_down();
      hold.wait();
    });
    started.wait();  // the slot is held by a running task
    cancel();
    const errgroup::error e =
        g.go_until(std::chrono::steady_clock::now() + 1h, [] {});
    CHECK(e.is<errgroup::cancelled_error>());
    hold.count_down();
    // The given-up call is no task: nothing failed or was skipped (Go).
    CHECK_FALSE(g.wait());
    CHECK(g.get_context().err().is<errgroup::cancelled_error>());
  }

  TEST_CASE("running reports labelled tasks while they run") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    std::latch started{1};
    std::latch hold{1};
    g.go("slow fetch", [&] {
      started.count_down();
      hold.wait();
    });
    started.wait();
    const auto r = g.running();
    REQUIRE(r.size() == 1);
    CHECK(r[0].label == "slow fetch");
    CHECK(r[0].elapsed >= std::chrono::steady_clock::duration::zero());
    hold.count_down();
    CHECK_FALSE(g.wait());
    CHECK(g.running().empty());
  }

  TEST_CASE("keep_errors keeps every error and marks the root causes") {
    errgroup::scheduler s{3};
    auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
    g.keep_errors();
    std::latch all{3};
    for (int i = 0; i < 3; ++i)
      g.go([&all, i](const errgroup::context& c) -> errgroup::error {
        all.arrive_and_wait();
        if (i == 0) return errgroup::make_error<std::runtime_error>("root");
        c.wait_for(1h);  // until the root failure cancels the context
        return c.err();
      });
    const errgroup::error first = g.wait();
    CHECK(first.message() == "root");
    const auto errors = g.errors();
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].err == first);
    CHECK(errors[0].root_cause);
    CHECK_FALSE(errors[1].root_cause);
    CHECK_FALSE(errors[2].root_cause);
    CHECK(errors[1].err.is<errgroup::cancelled_error>());
  }

  TEST_CASE("without keep_errors only the first error is kept") {
    errgroup::group g;
    g.go([] { throw std::runtime_error("a"); });
    CHECK(g.wait());
    CHECK(g.errors().empty());
  }

  TEST_CASE("on_progress is called from finishing tasks with the counters") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    std::atomic<int> calls{0};
    std::atomic<std::int64_t> last_done{0};
    g.on_progress(
        [&](const errgroup::group::stats& st) {
          ++calls;
          last_done = st.succeeded + st.failed;
        },
        std::chrono::steady_clock::duration::zero());
    for (int i = 0; i < 100; ++i) g.go([] {});
    CHECK_FALSE(g.wait());
    CHECK(calls.load() >= 1);
    CHECK(last_done.load() <= 100);
  }

  TEST_CASE("counters never go down while tasks succeed and fail") {
    // A reader on another thread sees each counter only grow, and never
    // more tasks done than submitted, whatever the interleaving.
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<bool> stop{false};
      std::atomic<int> bad{0};
      std::thread reader([&] {
        errgroup::group::stats last;
        while (!stop.load()) {
          const errgroup::group::stats now = g.counters();
          if (now.submitted < last.submitted ||
              now.succeeded < last.succeeded || now.failed < last.failed ||
              now.skipped < last.skipped || now.peak < last.peak ||
              now.succeeded + now.failed + now.skipped > now.submitted)
            ++bad;
          last = now;
        }
      });
      constexpr int tasks = 20000;
      for (int i = 0; i < tasks; ++i)
        g.go([i]() -> errgroup::error {
          if (i % 3 == 0) return errgroup::make_error<std::runtime_error>("x");
          return {};
        });
      CHECK(static_cast<bool>(g.wait()));
      stop = true;
      reader.join();
      CHECK(bad.load() == 0);
      const errgroup::group::stats end = g.counters();
      CHECK(end.submitted == tasks);
      CHECK(end.failed == (tasks + 2) / 3);
      CHECK(end.succeeded == tasks - end.failed);
      CHECK(end.running == 0);
    }
  }
}
