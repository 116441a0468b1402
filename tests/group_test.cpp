// tests/group_test.cpp: errgroup::group, Go's errgroup.Group (docs/contract.md
// §4).
//
// Every upstream Go test and example (golang/sync errgroup_test.go and
// errgroup_example_md5all_test.go) is ported one for one and carries its Go
// name; the other cases check the C++ contract: task shapes, skipping on
// context groups, FIFO admission, deadlock freedom and misuse.
//
// Blocking paths are stepped with std::latch (or `park`, which suspends a
// oneTBB task and frees its thread) and observed through group::counters();
// no test sleeps to make a race likely, and none asserts on elapsed time. A
// hang is caught by CTest's per-test TIMEOUT, so each deadlock scenario is a
// TEST_CASE of its own. Thread counts are looped, not copied.
// Assertions run on the test's thread only: tasks report through atomics.
#include <doctest/doctest.h>
#include <oneapi/tbb/task.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <errgroup/context.hpp>
#include <errgroup/detail/node.hpp>
#include <errgroup/error.hpp>
#include <errgroup/group.hpp>
#include <errgroup/scheduler.hpp>
#include <exception>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using errgroup::error;
using namespace std::chrono_literals;

constexpr int thread_counts[] = {1, 2, 4};

// spin_until(pred) yields until pred() holds. It waits for a state the test
// set up, never for time to pass.
template <class Pred>
void spin_until(Pred pred) {
  while (!pred()) std::this_thread::yield();
}

// Sentinels, made once and compared by identity (Go compares errDoom by ==).
const error& err_doom() {
  static const error e =
      errgroup::make_error<std::runtime_error>("group_test: doomed");
  return e;
}
const error& err_other() {
  static const error e =
      errgroup::make_error<std::runtime_error>("group_test: other");
  return e;
}

// token is a move-only RAII probe: live counts the tokens alive, so a
// callable that captures one shows whether it has been destroyed.
class token {
 public:
  explicit token(std::atomic<int>& live) noexcept : live_(&live) {
    live_->fetch_add(1);
  }
  token(token&& o) noexcept : live_(std::exchange(o.live_, nullptr)) {}
  token(const token&) = delete;
  token& operator=(const token&) = delete;
  token& operator=(token&&) = delete;
  ~token() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }

 private:
  std::atomic<int>* live_;
};

// meter counts the tasks inside a section and the most seen at once.
struct meter {
  std::atomic<int> active{0};
  std::atomic<int> peak{0};
  void enter() {
    const int n = active.fetch_add(1) + 1;
    for (int p = peak.load(); n > p && !peak.compare_exchange_weak(p, n);) {
    }
  }
  void leave() { active.fetch_sub(1); }
};

// order_log records the order in which tasks start.
class order_log {
 public:
  auto task(int i) {
    return [this, i] {
      std::lock_guard lock(mu_);
      seen_.push_back(i);
    };
  }
  std::vector<int> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::vector<int> seen_;
};

// park holds oneTBB tasks without holding their threads: wait() suspends the
// calling task (oneTBB resumable tasks) until release(), and its thread runs
// other tasks meanwhile. A slot holder that parks lets a one-thread scheduler
// run the producers that queue behind it.
class park {
 public:
  // wait() must be called from a oneTBB task.
  void wait() {
    // In a task of a group, the library's frame of the task must leave this
    // thread while the task is suspended, as the library's own suspensions
    // do (gate.cpp): the thread runs other tasks meanwhile, and the task may
    // end on another thread (oneTBB 2021.5 often resumes it on the thread
    // that waits), which would leave this thread with a dangling frame (a
    // crash in a later test that makes a group on it).
    errgroup::detail::task_frame::suspend_scope frames;
    tbb::task::suspend([this](tbb::task::suspend_point sp) {
      std::lock_guard lock(mu_);
      if (released_)
        tbb::task::resume(sp);
      else
        parked_.push_back(sp);
    });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    for (tbb::task::suspend_point sp : parked_) tbb::task::resume(sp);
    parked_.clear();
  }

 private:
  std::mutex mu_;
  bool released_ = false;
  std::vector<tbb::task::suspend_point> parked_;
};

// check_accounting checks, after wait(), that every admitted task either was
// invoked (invoked counts them, from inside the tasks) or was skipped.
void check_accounting(const errgroup::group::stats& c, std::int64_t invoked) {
  CHECK(c.running == 0);
  CHECK(c.waiting == 0);
  CHECK(c.skipped + invoked == c.submitted);
  CHECK(c.succeeded + c.failed == invoked);
}

// Who calls go() while the group is at its limit.
enum class producer {
  external_thread,  // a std::jthread: blocks (helps, on the default scheduler)
  worker_thread,    // a task of another group: suspended (or queued)
  own_task,         // a task of the same group: queued, go() returns
};

const char* name(producer p) {
  switch (p) {
    case producer::external_thread:
      return "external thread";
    case producer::worker_thread:
      return "worker thread";
    case producer::own_task:
      return "own task";
  }
  return "?";
}

// check_fifo queues `waiters` go() calls, in a known order, behind a task
// holding the only slot, then releases it: the tasks must start in that order,
// and a try_go() spinning meanwhile must not start before the last of them.
void check_fifo(producer from, int threads, int waiters) {
  CAPTURE(threads);
  CAPTURE(std::string(name(from)));
  CAPTURE(waiters);
  errgroup::scheduler s{threads};
  errgroup::group g{s};
  errgroup::group producers{s};
  g.set_limit(1);
  order_log log;
  park holder;  // the slot holder parks: its thread stays free for producers
  std::vector<std::jthread> external;
  if (from == producer::own_task) {
    std::latch queued{1};
    g.go([&] {
      for (int i = 0; i < waiters; ++i) g.go(log.task(i));  // queued
      queued.count_down();
      holder.wait();
    });
    queued.wait();
  } else {
    g.go([&] { holder.wait(); });
    spin_until([&] { return g.counters().running == 1; });
    for (int i = 0; i < waiters; ++i) {
      auto go_i = [&g, t = log.task(i)] { g.go(t); };
      if (from == producer::external_thread)
        external.emplace_back(go_i);
      else
        producers.go(go_i);
      spin_until([&] { return g.counters().waiting == i + 1; });
    }
  }
  CHECK(g.counters().waiting == waiters);
  CHECK_FALSE(g.try_go(log.task(-2)));
  holder.release();
  // try_go succeeds only once every waiter has been served.
  while (!g.try_go(log.task(-1))) std::this_thread::yield();
  external.clear();
  CHECK_FALSE(producers.wait());
  CHECK_FALSE(g.wait());
  std::vector<int> want;
  for (int i = 0; i < waiters; ++i) want.push_back(i);
  want.push_back(-1);
  CHECK(log.seen() == want);
}

}  // namespace

TEST_SUITE("group") {
  TEST_CASE(
      "wait returns the first error so far after every go (TestZeroGroup)") {
    const error err1 =
        errgroup::make_error<std::runtime_error>("errgroup_test: 1");
    const error err2 =
        errgroup::make_error<std::runtime_error>("errgroup_test: 2");
    const std::vector<std::vector<error>> cases = {
        {}, {error()}, {err1}, {err1, error()}, {err1, error(), err2}};
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::size_t tc = 0; tc < cases.size(); ++tc) {
        CAPTURE(tc);
        errgroup::group g{s};
        error first;
        for (const error& e : cases[tc]) {
          g.go([e] { return e; });
          if (!first) first = e;
          CHECK(g.wait() == first);
        }
        CHECK(g.wait() == first);
      }
    }
    // The zero Group itself: the default constructor, on the default scheduler.
    errgroup::group zero;
    zero.go([err1] { return err1; });
    zero.go([] {});
    CHECK(zero.wait() == err1);
  }

  TEST_CASE(
      "with_context cancels its context when wait returns (TestWithContext)") {
    struct test_case {
      std::vector<error> errs;
      error want;
    };
    const std::vector<test_case> cases = {
        {{}, error()},
        {{error()}, error()},
        {{err_doom()}, err_doom()},
        {{err_doom(), error()}, err_doom()},
    };
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::size_t tc = 0; tc < cases.size(); ++tc) {
        CAPTURE(tc);
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        CHECK(ctx == g.get_context());
        for (const error& e : cases[tc].errs) g.go([e] { return e; });
        CHECK(g.wait() == cases[tc].want);
        CHECK(ctx.cancelled());  // Go: ctx.Done() is closed
        CHECK(ctx.stop_token().stop_requested());
        CHECK(ctx.err().is<errgroup::cancelled_error>());
      }
    }
  }

  TEST_CASE(
      "a plain group's context is the background and is never cancelled") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    CHECK(g.get_context() == errgroup::context());
    g.go([] { return err_doom(); });
    CHECK(g.wait() == err_doom());
    CHECK_FALSE(g.get_context().cancelled());
    CHECK_FALSE(g.get_context().err());
  }

  TEST_CASE(
      "a task may return void error error_code or exception_ptr or throw") {
    errgroup::scheduler s{2};
    std::atomic<int> ran{0};

    errgroup::group ok{s};
    ok.go([&] { ran.fetch_add(1); });
    ok.go([&] {
      ran.fetch_add(1);
      return error();
    });
    ok.go([&] {
      ran.fetch_add(1);
      return std::error_code();
    });
    ok.go([&] {
      ran.fetch_add(1);
      return std::exception_ptr();
    });
    ok.go([&](const errgroup::context&) -> std::error_code {
      ran.fetch_add(1);
      return {};
    });
    CHECK_FALSE(ok.wait());
    CHECK(ran.load() == 5);
    CHECK(ok.counters().succeeded == 5);
    CHECK(ok.counters().failed == 0);

    {
      errgroup::group g{s};
      g.go([] { return err_doom(); });
      CHECK(g.wait() == err_doom());
    }
    {
      errgroup::group g{s};
      g.go([] { return std::make_error_code(std::errc::permission_denied); });
      const error e = g.wait();
      const auto* se = e.as<std::system_error>();
      REQUIRE(se != nullptr);
      CHECK(se->code() == std::errc::permission_denied);
    }
    {
      const std::exception_ptr p =
          std::make_exception_ptr(std::length_error("group_test: too long"));
      errgroup::group g{s};
      g.go([p] { return p; });
      CHECK(g.wait().exception() == p);
    }
    {
      errgroup::group g{s};
      g.go([]() -> void { throw std::out_of_range("group_test: thrown"); });
      const error e = g.wait();
      CHECK(e.is<std::out_of_range>());
      CHECK(e.message() == "group_test: thrown");
      CHECK(g.counters().failed == 1);
    }
    {
      errgroup::group g{s};
      g.go([]() -> error { throw 7; });
      const error e = g.wait();
      REQUIRE(e);
      CHECK_THROWS_AS(e.throw_if(), int);
    }
    {
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.go([](const errgroup::context&) -> std::exception_ptr {
        throw std::invalid_argument("group_test: with a context");
      });
      const error e = g.wait();
      CHECK(e.is<std::invalid_argument>());
      CHECK(ctx.cause() == e);
    }
  }

  TEST_CASE("a task taking a context receives the group's context") {
    constexpr int tasks = 8;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      {
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        std::atomic<int> same{0};
        for (int i = 0; i < tasks; ++i)
          g.go([&same, want = ctx](const errgroup::context& c) {
            if (c == want && !c.cancelled()) same.fetch_add(1);
          });
        CHECK_FALSE(g.wait());
        CHECK(same.load() == tasks);
      }
      {
        errgroup::group g{s};
        std::atomic<int> background{0};
        for (int i = 0; i < tasks; ++i)
          g.go([&](const errgroup::context& c) {
            if (c == errgroup::context()) background.fetch_add(1);
          });
        CHECK_FALSE(g.wait());
        CHECK(background.load() == tasks);
      }
    }
  }

  TEST_CASE("mutable lambdas and move-only captures work") {
    constexpr int tasks = 16;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<int> live{0};
      std::atomic<int> sum{0};
      for (int i = 1; i <= tasks; ++i)
        g.go([&sum, p = std::make_unique<int>(i), t = token(live)]() mutable {
          *p *= 2;  // mutates its own capture
          sum.fetch_add(*std::exchange(p, nullptr));
        });
      auto by_context = [&sum, p = std::make_unique<int>(1000)](
                            const errgroup::context&) mutable -> error {
        sum.fetch_add(*p);
        p.reset();
        return {};
      };
      g.go(std::move(by_context));
      CHECK(g.try_go(
          [&sum, p = std::make_unique<int>(10000), t = token(live)]() mutable {
            std::unique_ptr<int> mine = std::move(p);
            sum.fetch_add(*mine);
          }));
      // A stateful mutable task is invoked exactly once.
      g.go([calls = 0]() mutable -> error {
        return ++calls == 1 ? error() : err_doom();
      });
      CHECK_FALSE(g.wait());
      CHECK(sum.load() == tasks * (tasks + 1) + 1000 + 10000);
      CHECK(live.load() == 0);  // every callable was destroyed
    }
  }

  TEST_CASE("wait with no tasks returns no error at once") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group plain{s};
      CHECK_FALSE(plain.wait());
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      CHECK_FALSE(g.wait());
      CHECK(ctx.cancelled());
      CHECK(ctx.cause().is<errgroup::cancelled_error>());
    }
  }

  TEST_CASE("wait may be called again and returns the same error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group plain{s};
      plain.go([] {});
      plain.go([] { return err_doom(); });
      for (int i = 0; i < 3; ++i) CHECK(plain.wait() == err_doom());

      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.go([] { return err_doom(); });
      for (int i = 0; i < 3; ++i) CHECK(g.wait() == err_doom());
      CHECK(ctx.cause() == err_doom());

      auto [ok, ok_ctx] = errgroup::with_context(errgroup::context(), s);
      ok.go([] {});
      for (int i = 0; i < 3; ++i) CHECK_FALSE(ok.wait());
    }
  }

  TEST_CASE(
      "wait called from several threads at once gives each the same error") {
    constexpr int waiters = 4;
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        std::latch hold{1};
        g->go([&] { hold.wait(); });
        g->go([&] {
          hold.wait();
          return err_doom();
        });
        std::latch ready{waiters};
        std::vector<error> got(waiters);
        {
          std::vector<std::jthread> ts;
          for (std::size_t i = 0; i < waiters; ++i)
            ts.emplace_back([&, i] {
              ready.count_down();
              got[i] = g->wait();
            });
          ready.wait();
          hold.count_down();
        }
        for (const error& e : got) CHECK(e == err_doom());
        CHECK(g->wait() == err_doom());
      }
    }
  }

  TEST_CASE("tasks may call go on their own group while wait runs") {
    constexpr int depth = 9;  // a binary tree of 2^10 - 1 tasks
    constexpr int nodes = (1 << (depth + 1)) - 1;
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        std::atomic<int> ran{0};
        std::function<void(int)> grow = [&](int d) {
          g->go([&grow, &ran, d] {
            ran.fetch_add(1);
            if (d > 0) {
              grow(d - 1);
              grow(d - 1);
            }
          });
        };
        grow(depth);  // the rest is added while wait() runs
        CHECK_FALSE(g->wait());
        CHECK(ran.load() == nodes);
        check_accounting(g->counters(), nodes);
        CHECK(g->counters().submitted == nodes);
      }
    }
  }

  TEST_CASE("everything the tasks wrote is visible after wait") {
    constexpr std::size_t tasks = 4096;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::vector<std::uint64_t> out(tasks);  // plain, non-atomic writes
      std::vector<std::string> words(tasks);
      for (std::size_t i = 0; i < tasks; ++i)
        g.go([&out, &words, i] {
          out[i] = i * i + 1;
          words[i] = std::to_string(i);
        });
      CHECK_FALSE(g.wait());
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < tasks; ++i)
        if (out[i] != i * i + 1 || words[i] != std::to_string(i)) ++wrong;
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("a group destroyed without wait waits for its tasks") {
    static_assert(std::is_nothrow_destructible_v<errgroup::group>);
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::latch hold{1};
        int written = 0;  // not atomic: the destructor must order it for us
        std::atomic<int> live{0};
        {
          std::jthread releaser;  // joined after the group is destroyed
          std::optional<errgroup::group> g;
          if (with_context)
            g.emplace(errgroup::context(), s);
          else
            g.emplace(s);
          g->go([&, t = token(live)] {
            hold.wait();
            written = 42;
          });
          releaser = std::jthread([&] { hold.count_down(); });
          g.reset();  // ~group(), without wait()
          CHECK(written == 42);
          CHECK(live.load() == 0);
        }
      }
    }
  }

  TEST_CASE(
      "the destructor never throws also when a task failed or was skipped") {
    constexpr int queued = 64;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      std::atomic<int> ran{0};
      CHECK_NOTHROW([&] {
        errgroup::group g{s};
        g.go([&] {
          ran.fetch_add(1);
          throw std::runtime_error("group_test: thrown, never waited for");
        });
        g.go([&] {
          ran.fetch_add(1);
          return err_doom();
        });
      }());
      CHECK(ran.load() == 2);

      // A context group whose only running task queues more work on itself
      // and then fails: the queued tasks are skipped by the destructor's wait.
      std::atomic<int> live{0};
      std::atomic<int> invoked{0};
      CHECK_NOTHROW([&] {
        auto made = errgroup::with_context(errgroup::context(), s);
        auto& g = made.g;
        g.set_limit(1);
        g.go([&] {
          invoked.fetch_add(1);
          for (int i = 0; i < queued; ++i)
            g.go([&, t = token(live)] { invoked.fetch_add(1); });
          return err_doom();
        });
      }());
      CHECK(invoked.load() == 1);
      CHECK(live.load() == 0);
    }
  }
}  // TEST_SUITE("group")

TEST_SUITE("group.limit") {
  TEST_CASE("try_go starts a task only while a slot is free (TestTryGo)") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<int> ran{0};
      auto blocked_on = [&ran](std::latch& l) {
        return [&ran, &l] {
          l.wait();
          ran.fetch_add(1);
        };
      };

      constexpr int n = 42;
      g.set_limit(n);
      std::latch hold1{1};
      int started = 0;
      for (int i = 0; i < n; ++i)
        if (g.try_go(blocked_on(hold1))) ++started;
      CHECK(started == n);
      CHECK_FALSE(g.try_go(blocked_on(hold1)));
      hold1.count_down();
      CHECK_FALSE(g.wait());

      std::latch hold2{1};
      CHECK(g.try_go(blocked_on(hold2)));
      hold2.count_down();
      CHECK_FALSE(g.wait());

      // Switch limit.
      g.set_limit(1);
      std::latch hold3{1};
      CHECK(g.try_go(blocked_on(hold3)));
      CHECK_FALSE(g.try_go(blocked_on(hold3)));
      hold3.count_down();
      CHECK_FALSE(g.wait());

      // Block all calls.
      g.set_limit(0);
      std::latch never{1};
      int zero_started = 0;
      for (int i = 0; i < 1 << 10; ++i)
        if (g.try_go(blocked_on(never))) ++zero_started;
      CHECK(zero_started == 0);
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == n + 2);
    }
  }

  TEST_CASE("go never runs more tasks than the limit (TestGoLimit)") {
    constexpr int limit = 10;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(limit);
      std::atomic<int> active{0};
      for (int i = 0; i <= 1 << 10; ++i)
        g.go([&]() -> error {
          const int n = active.fetch_add(1) + 1;
          if (n > limit)
            return errgroup::make_error<std::runtime_error>(
                "saw " + std::to_string(n) + " active tasks; want <= 10");
          std::this_thread::yield();  // Go sleeps 1us here
          active.fetch_sub(1);
          return {};
        });
      const error e = g.wait();
      CHECK_MESSAGE(!e, e.message());
    }
  }

  TEST_CASE("peak concurrency never exceeds the limit") {
    constexpr int tasks = 200;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3, 8}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::group g{s};
        g.set_limit(limit);
        meter m;
        for (int i = 0; i < tasks; ++i)
          g.go([&m] {
            m.enter();
            std::this_thread::yield();
            m.leave();
          });
        CHECK_FALSE(g.wait());
        CHECK(m.peak.load() >= 1);
        CHECK(m.peak.load() <= limit);
        const auto c = g.counters();
        CHECK(c.peak >= 1);
        CHECK(c.peak <= limit);
        CHECK(c.submitted == tasks);
        CHECK(c.succeeded == tasks);
      }
    }
  }

  TEST_CASE("a negative limit removes the limit") {
    constexpr int tasks = 12;
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(1);
    g.set_limit(-1);
    std::latch hold{1};
    int started = 0;
    for (int i = 0; i < tasks; ++i)
      if (g.try_go([&] { hold.wait(); })) ++started;
    CHECK(started == tasks);
    hold.count_down();
    CHECK_FALSE(g.wait());
  }

  TEST_CASE(
      "waiting go calls from external threads are served first come first "
      "served") {
    // More waiters than the arena has slots (threads + 1): see the
    // group.deadlock case about external producers.
    for (int threads : thread_counts)
      check_fifo(producer::external_thread, threads, 5);
  }

  TEST_CASE(
      "waiting go calls from worker threads are served first come first "
      "served") {
    for (int threads : thread_counts)
      check_fifo(producer::worker_thread, threads, 5);
  }

  TEST_CASE(
      "go calls queued by a task of the same group are served first come first "
      "served") {
    for (int threads : thread_counts)
      check_fifo(producer::own_task, threads, 5);
  }

  TEST_CASE(
      "a waiting go on a context group gives up when the context is "
      "cancelled") {
    for (int threads : thread_counts) {
      for (producer from :
           {producer::external_thread, producer::worker_thread}) {
        CAPTURE(threads);
        CAPTURE(std::string(name(from)));
        errgroup::scheduler s{threads};
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        auto made = errgroup::with_context(parent, s);
        auto& g = made.g;
        errgroup::group producers{s};
        g.set_limit(1);
        park holder;
        std::atomic<int> live{0};
        std::atomic<int> invoked{0};
        g.go([&] { holder.wait(); });
        spin_until([&] { return g.counters().running == 1; });
        {
          std::jthread external;
          auto go_once = [&g, task = [&invoked, t = token(live)] {
            invoked.fetch_add(1);
          }]() mutable { g.go(std::move(task)); };
          if (from == producer::external_thread)
            external = std::jthread(std::move(go_once));
          else
            producers.go(std::move(go_once));
          spin_until([&] { return g.counters().waiting == 1; });
          cancel();
        }  // joined: the waiting go() returned while the slot is still held
        CHECK_FALSE(producers.wait());
        CHECK(invoked.load() == 0);
        CHECK(live.load() == 0);  // its callable was destroyed
        auto c = g.counters();
        CHECK(c.skipped == 1);
        CHECK(c.waiting == 0);
        CHECK(c.running == 1);
        holder.release();
        CHECK(g.wait().is<errgroup::cancelled_error>());
        check_accounting(g.counters(), 1);
      }
    }
  }
}  // TEST_SUITE("group.limit")

TEST_SUITE("group.cancel") {
  TEST_CASE(
      "the context's cause is the first error or cancelled_error "
      "(TestCancelCause)") {
    struct test_case {
      std::vector<error> errs;
      error want;
    };
    const std::vector<test_case> cases = {
        {{}, error()},
        {{error()}, error()},
        {{err_doom()}, err_doom()},
        {{err_doom(), error()}, err_doom()},
    };
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::size_t tc = 0; tc < cases.size(); ++tc) {
        CAPTURE(tc);
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        // Unlike Go, try_go on a group that a failure has already cancelled
        // returns false, so only the first result is certain.
        bool first = true;
        for (const error& e : cases[tc].errs) {
          const bool started = g.try_go([e] { return e; });
          if (first) CHECK(started);
          first = false;
        }
        CHECK(g.wait() == cases[tc].want);
        if (cases[tc].want)
          CHECK(ctx.cause() == cases[tc].want);
        else
          CHECK(ctx.cause().is<errgroup::cancelled_error>());
      }
    }
  }

  TEST_CASE(
      "the first error cancels the derived context with that error as its "
      "cause") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      CHECK_FALSE(ctx.cancelled());
      g.go([] { return err_doom(); });
      CHECK(ctx.wait_for(60s));  // returns once the failure cancelled it
      CHECK(ctx.cause() == err_doom());
      CHECK(ctx.err().is<errgroup::cancelled_error>());
      CHECK(ctx.err() != err_doom());
      g.go([] { return err_other(); });  // skipped, or a later error: dropped
      CHECK(g.wait() == err_doom());
      CHECK(ctx.cause() == err_doom());  // wait() does not replace the cause
    }
  }

  TEST_CASE("the recorded first error is the derived context's cause") {
    // Many rounds of concurrent failures: the error wait() returns and the
    // context's cause must be the same object every time (Go cancels inside
    // the errOnce that records the error).
    constexpr int tasks = 64;
    constexpr int rounds = 2000;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      int mismatches = 0;
      int bad_accounting = 0;
      for (int round = 0; round < rounds; ++round) {
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        std::atomic<int> invoked{0};
        for (int i = 0; i < tasks; ++i)
          g.go([&invoked, i] {
            invoked.fetch_add(1);
            return errgroup::make_error<std::runtime_error>(
                "group_test: task " + std::to_string(i));
          });
        const error e = g.wait();
        if (!e || !(ctx.cause() == e)) ++mismatches;
        const auto c = g.counters();
        if (c.failed != invoked.load() ||
            c.skipped + invoked.load() != c.submitted)
          ++bad_accounting;
      }
      CHECK(mismatches == 0);
      CHECK(bad_accounting == 0);
    }
  }

  TEST_CASE("the first error in time order wins not the first launched") {
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        park slow;  // parked, so one thread is enough for the fast task
        g->go([&] {
          slow.wait();
          return err_other();  // launched first, fails last
        });
        spin_until([&] { return g->counters().running == 1; });
        g->go([] { return err_doom(); });
        spin_until([&] { return g->counters().failed == 1; });
        slow.release();
        CHECK(g->wait() == err_doom());
        CHECK(g->counters().failed == 2);
      }
    }
  }

  TEST_CASE(
      "the parent's cancellation reaches the derived context with the parent's "
      "cause") {
    constexpr int tasks = 4;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      auto made = errgroup::with_context(parent, s);
      auto& g = made.g;
      auto& ctx = made.ctx;
      for (int i = 0; i < tasks; ++i) g.go([] {});
      spin_until([&] { return g.counters().succeeded == tasks; });
      const error why = errgroup::make_error<std::runtime_error>(
          "group_test: parent gave up");
      cancel(why);
      CHECK(ctx.cancelled());
      CHECK(ctx.cause() == why);
      CHECK(ctx.err().is<errgroup::cancelled_error>());
      // Go: the tasks returned nil, so Wait returns nil although ctx is done.
      CHECK_FALSE(g.wait());
      CHECK(ctx.cause() == why);
      CHECK(ctx.err() == parent.err());
    }
  }

  TEST_CASE(
      "a deadline on the parent cancels the derived context with "
      "deadline_exceeded_error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [parent, cancel] = errgroup::with_timeout(errgroup::context(), 20ms);
      auto [g, ctx] = errgroup::with_context(parent, s);
      CHECK(ctx.deadline() == parent.deadline());
      // The first task either starts before the deadline and sees it, or is
      // skipped by it: both are right, and a loaded machine picks either.
      std::atomic<int> woke{0};
      g.go([&woke](const errgroup::context& c) {
        woke = c.wait_for(60s) ? 1 : 2;
      });
      CHECK(ctx.wait_for(60s));
      CHECK(ctx.err().is<errgroup::deadline_exceeded_error>());
      CHECK(ctx.cause().is<errgroup::deadline_exceeded_error>());
      std::atomic<int> live{0};
      std::atomic<int> invoked{0};
      g.go([&invoked, t = token(live)] { invoked.fetch_add(1); });  // skipped
      CHECK(live.load() == 0);
      // A task was skipped and none failed: wait() reports the cause.
      CHECK(g.wait().is<errgroup::deadline_exceeded_error>());
      CHECK(woke.load() != 2);  // if it ran, it saw the deadline
      CHECK(invoked.load() == 0);
      check_accounting(g.counters(), woke.load() == 1 ? 1 : 0);
      cancel();
    }
  }

  TEST_CASE("wait cancels the derived context with cancelled_error") {
    constexpr int tasks = 4;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto made = errgroup::with_context(errgroup::context(), s);
      auto& g = made.g;
      auto& ctx = made.ctx;
      for (int i = 0; i < tasks; ++i) g.go([] {});
      spin_until([&] { return g.counters().succeeded == tasks; });
      CHECK_FALSE(ctx.cancelled());
      CHECK_FALSE(g.wait());
      CHECK(ctx.cancelled());
      CHECK(ctx.err().is<errgroup::cancelled_error>());
      CHECK(ctx.cause().is<errgroup::cancelled_error>());
    }
  }

  TEST_CASE(
      "cancelling the parent skips every queued task and wait reports its "
      "cause") {
    constexpr int queued = 500;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      auto made = errgroup::with_context(parent, s);
      auto& g = made.g;
      g.set_limit(1);
      std::atomic<int> invoked{0};
      std::atomic<int> live{0};
      std::latch all_queued{1};
      std::latch hold{1};
      g.go([&] {
        invoked.fetch_add(1);
        for (int i = 0; i < queued; ++i)  // own full group: queued
          g.go([&invoked, t = token(live)] { invoked.fetch_add(1); });
        all_queued.count_down();
        hold.wait();
      });
      all_queued.wait();
      CHECK(g.counters().waiting == queued);
      CHECK(live.load() == queued);
      const error why = errgroup::make_error<std::runtime_error>(
          "group_test: parent gave up");
      cancel(why);
      hold.count_down();
      CHECK(g.wait() == why);  // never success over skipped work
      CHECK(invoked.load() == 1);
      CHECK(live.load() == 0);
      const auto c = g.counters();
      CHECK(c.submitted == queued + 1);
      CHECK(c.skipped == queued);
      CHECK(c.succeeded == 1);
      check_accounting(c, invoked.load());
    }
  }

  TEST_CASE("a failing task with limit one skips every queued task") {
    constexpr int queued = 500;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto made = errgroup::with_context(errgroup::context(), s);
      auto& g = made.g;
      auto& ctx = made.ctx;
      g.set_limit(1);
      std::atomic<int> invoked{0};
      std::atomic<int> live{0};
      g.go([&] {
        invoked.fetch_add(1);
        for (int i = 0; i < queued; ++i)
          g.go([&invoked, t = token(live)] { invoked.fetch_add(1); });
        return err_doom();
      });
      CHECK(g.wait() == err_doom());
      CHECK(ctx.cause() == err_doom());
      CHECK(invoked.load() == 1);  // no task starts after the failure
      CHECK(live.load() == 0);
      const auto c = g.counters();
      CHECK(c.skipped == queued);
      CHECK(c.failed == 1);
      check_accounting(c, invoked.load());
    }
  }

  TEST_CASE(
      "tasks not started when the parent is cancelled are skipped and none is "
      "lost") {
    constexpr int pending = 300;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      auto made = errgroup::with_context(parent, s);
      auto& g = made.g;
      std::atomic<int> invoked{0};
      std::atomic<int> live{0};
      std::latch hold{1};
      for (int i = 0; i < threads; ++i)  // occupy every thread of s
        g.go([&] {
          invoked.fetch_add(1);
          hold.wait();
        });
      spin_until([&] { return g.counters().running == threads; });
      for (int i = 0; i < pending; ++i)  // spawned, none can start yet
        g.go([&invoked, t = token(live)] { invoked.fetch_add(1); });
      cancel();
      hold.count_down();
      CHECK(g.wait().is<errgroup::cancelled_error>());
      CHECK(invoked.load() == threads);
      CHECK(live.load() == 0);
      const auto c = g.counters();
      CHECK(c.skipped == pending);
      check_accounting(c, invoked.load());
    }
  }

  TEST_CASE("a go after cancellation starts nothing") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      std::atomic<int> invoked{0};
      std::atomic<int> live{0};
      {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        auto [g, ctx] = errgroup::with_context(parent, s);
        cancel();
        g.go([&invoked, t = token(live)] { invoked.fetch_add(1); });
        CHECK(live.load() == 0);  // destroyed uninvoked, before go() returned
        CHECK(g.counters().skipped == 1);
        CHECK(g.wait().is<errgroup::cancelled_error>());
      }
      {
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        g.go([] { return err_doom(); });
        CHECK(ctx.wait_for(60s));
        g.go([&invoked, t = token(live)](const errgroup::context&) {
          invoked.fetch_add(1);
        });
        CHECK(live.load() == 0);
        CHECK(g.wait() == err_doom());
        check_accounting(g.counters(), 1);
      }
      CHECK(invoked.load() == 0);
    }
  }

  TEST_CASE("try_go on a cancelled context group returns false") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      auto [g, ctx] = errgroup::with_context(parent, s);
      cancel();
      std::atomic<int> invoked{0};
      CHECK_FALSE(g.try_go([&] { invoked.fetch_add(1); }));
      g.set_limit(4);
      CHECK_FALSE(g.try_go([&] { invoked.fetch_add(1); }));
      CHECK(g.counters().submitted == 0);
      CHECK_FALSE(g.wait());  // nothing failed and nothing was skipped
      CHECK(invoked.load() == 0);
    }
  }

  TEST_CASE("plain groups never skip a task") {
    constexpr int queued = 200;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(1);
      std::atomic<int> invoked{0};
      g.go([&] {
        invoked.fetch_add(1);
        for (int i = 0; i < queued; ++i) g.go([&] { invoked.fetch_add(1); });
        return err_doom();
      });
      g.go([&] {  // a second failure, from a task queued behind the first
        invoked.fetch_add(1);
        return err_other();
      });
      CHECK(g.wait() == err_doom());
      CHECK(invoked.load() == queued + 2);
      const auto c = g.counters();
      CHECK(c.skipped == 0);
      CHECK(c.failed == 2);
      check_accounting(c, invoked.load());
    }
  }
}  // TEST_SUITE("group.cancel")

TEST_SUITE("group.misuse") {
  TEST_CASE(
      "set_limit while tasks are active throws with the number of active "
      "tasks") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      {
        errgroup::group g{s};
        std::latch hold{1};
        for (int i = 0; i < 3; ++i) g.go([&] { hold.wait(); });
        CHECK_THROWS_WITH_AS(g.set_limit(2),
                             "errgroup: modify limit while 3 tasks in the "
                             "group are still active",
                             std::logic_error);
        // docs/contract.md: any set_limit() while tasks are active (Go allows n
        // < 0).
        CHECK_THROWS_WITH_AS(g.set_limit(-1),
                             "errgroup: modify limit while 3 tasks in the "
                             "group are still active",
                             std::logic_error);
        hold.count_down();
        CHECK_FALSE(g.wait());
        CHECK_NOTHROW(g.set_limit(2));  // between phases it is allowed
      }
      {
        errgroup::group g{s};
        g.set_limit(2);
        std::latch hold{1};
        CHECK(g.try_go([&] { hold.wait(); }));
        g.go([&] { hold.wait(); });
        CHECK_THROWS_WITH_AS(g.set_limit(5),
                             "errgroup: modify limit while 2 tasks in the "
                             "group are still active",
                             std::logic_error);
        CHECK_FALSE(g.try_go([] {}));  // the limit is still 2
        hold.count_down();
        CHECK_FALSE(g.wait());
        g.set_limit(5);
        CHECK(g.try_go([] {}));
        CHECK_FALSE(g.wait());
      }
    }
  }

  TEST_CASE("with limit 0 try_go returns false and go throws logic_error") {
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        g->set_limit(0);
        std::atomic<int> invoked{0};
        std::atomic<int> live{0};
        CHECK_FALSE(g->try_go([&] { invoked.fetch_add(1); }));
        try {
          g->go([&invoked, t = token(live)] { invoked.fetch_add(1); });
          FAIL("go() with limit 0 returned");
        } catch (const std::logic_error& e) {
          CHECK(std::string_view(e.what()).starts_with("errgroup: "));
        }
        CHECK(live.load() == 0);  // the rejected callable was destroyed
        CHECK(g->counters().submitted == 0);
        CHECK_FALSE(g->wait());
        CHECK(invoked.load() == 0);
      }
    }
  }

  TEST_CASE("wait from a task of the same group throws logic_error") {
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        std::atomic<int> caught{0};
        std::atomic<bool> prefixed{false};
        g->go([&] {
          try {
            (void)g->wait();
          } catch (const std::logic_error& e) {
            caught.fetch_add(1);
            prefixed = std::string_view(e.what()).starts_with("errgroup: ");
          }
        });
        g->go([&](const errgroup::context&) {
          try {
            (void)g->wait();
          } catch (const std::logic_error&) {
            caught.fetch_add(1);
          }
        });
        CHECK_FALSE(g->wait());  // the tasks caught it; nothing escaped
        CHECK(caught.load() == 2);
        CHECK(prefixed.load());
      }
    }
  }

  TEST_CASE(
      "go on a context group after its wait returned throws logic_error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.go([] {});
      CHECK_FALSE(g.wait());
      std::atomic<int> live{0};
      std::atomic<int> invoked{0};
      CHECK_THROWS_AS(
          g.go([&invoked, t = token(live)] { invoked.fetch_add(1); }),
          std::logic_error);
      CHECK(live.load() == 0);
      CHECK_FALSE(g.try_go([&] { invoked.fetch_add(1); }));
      CHECK(invoked.load() == 0);
      CHECK(g.counters().submitted == 1);
      CHECK_FALSE(g.wait());
    }
  }

  TEST_CASE(
      "a plain group may be reused after wait and keeps its first error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<int> ran{0};
      g.go([] { return err_doom(); });
      CHECK(g.wait() == err_doom());
      g.go([&] { ran.fetch_add(1); });
      CHECK(g.wait() == err_doom());
      g.go([&] {
        ran.fetch_add(1);
        return err_other();
      });
      CHECK(g.wait() == err_doom());  // sticky
      g.set_limit(1);
      g.go([&] { ran.fetch_add(1); });
      CHECK(g.wait() == err_doom());
      CHECK(ran.load() == 3);
      CHECK_FALSE(g.get_context().cancelled());
      const auto c = g.counters();
      CHECK(c.submitted == 4);
      CHECK(c.failed == 2);
      CHECK(c.skipped == 0);
    }
  }
}  // TEST_SUITE("group.misuse")

TEST_SUITE("group.deadlock") {
  TEST_CASE(
      "nested limited groups inside tasks of a limited outer group complete") {
    constexpr int outer_tasks = 6;
    constexpr int inner_tasks = 6;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        CAPTURE(threads);
        CAPTURE(limit);
        auto [outer, octx] = errgroup::with_context(errgroup::context(), s);
        outer.set_limit(limit);
        std::atomic<int> ran{0};
        std::atomic<int> over_limit{0};
        for (int i = 0; i < outer_tasks; ++i)
          outer.go([&, limit](const errgroup::context& c) -> error {
            errgroup::group plain{s};
            auto [inner, ictx] = errgroup::with_context(c, s);
            plain.set_limit(limit);
            inner.set_limit(limit);
            meter m;
            for (int j = 0; j < inner_tasks; ++j) {
              inner.go([&] {
                m.enter();
                ran.fetch_add(1);
                m.leave();
              });
              plain.go([&] { ran.fetch_add(1); });
            }
            error e = inner.wait();
            error pe = plain.wait();
            if (m.peak.load() > limit || plain.counters().peak > limit)
              over_limit.fetch_add(1);
            return e ? e : pe;
          });
        CHECK_FALSE(outer.wait());
        CHECK(ran.load() == 2 * outer_tasks * inner_tasks);
        CHECK(over_limit.load() == 0);
        CHECK(outer.counters().peak <= limit);
      }
    }
  }

  TEST_CASE("tasks that call go on their own full group complete") {
    constexpr int depth = 7;  // 255 tasks
    constexpr int nodes = (1 << (depth + 1)) - 1;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        for (bool with_context : {false, true}) {
          CAPTURE(threads);
          CAPTURE(limit);
          CAPTURE(with_context);
          std::optional<errgroup::group> g;
          if (with_context)
            g.emplace(errgroup::context(), s);
          else
            g.emplace(s);
          g->set_limit(limit);
          std::atomic<int> ran{0};
          meter m;
          std::function<void(int)> grow = [&](int d) {
            g->go([&grow, &ran, &m, d] {
              m.enter();  // the slot is held while go() is called
              ran.fetch_add(1);
              if (d > 0) {
                grow(d - 1);
                grow(d - 1);
              }
              m.leave();
            });
          };
          grow(depth);
          CHECK_FALSE(g->wait());
          CHECK(ran.load() == nodes);
          CHECK(m.peak.load() <= limit);
          CHECK(g->counters().peak <= limit);
          check_accounting(g->counters(), nodes);
        }
      }
    }
  }

  TEST_CASE("an external producer at the limit of a group completes") {
    constexpr int tasks = 300;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::group g{s};
        g.set_limit(limit);
        std::atomic<int> ran{0};
        for (int i = 0; i < tasks; ++i) g.go([&] { ran.fetch_add(1); });
        CHECK_FALSE(g.wait());
        CHECK(ran.load() == tasks);
        CHECK(g.counters().peak <= limit);
      }
    }
  }

  TEST_CASE(
      "worker producers at the limit of a group on the same scheduler "
      "complete") {
    constexpr int producers = 2;
    constexpr int tasks = 150;  // per producer
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::group g{s};
        g.set_limit(limit);
        errgroup::group prod{s};  // same arena: a blocked producer would
                                  // starve the tasks it waits for
        std::atomic<int> ran{0};
        for (int p = 0; p < producers; ++p)
          prod.go([&] {
            for (int i = 0; i < tasks; ++i) g.go([&] { ran.fetch_add(1); });
          });
        CHECK_FALSE(prod.wait());
        CHECK_FALSE(g.wait());
        CHECK(ran.load() == producers * tasks);
        CHECK(g.counters().peak <= limit);
        check_accounting(g.counters(), producers * tasks);
      }
    }
  }

  TEST_CASE("a task producing into its own limited group completes") {
    constexpr int tasks = 300;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::group g{s};
        g.set_limit(limit);
        std::atomic<int> ran{0};
        g.go([&] {
          for (int i = 0; i < tasks; ++i) g.go([&] { ran.fetch_add(1); });
        });
        CHECK_FALSE(g.wait());
        CHECK(ran.load() == tasks);
        CHECK(g.counters().peak <= limit);
        check_accounting(g.counters(), tasks + 1);
      }
    }
  }

  TEST_CASE(
      "an external producer into a group whose tasks produce into a nested "
      "limited group completes") {
    constexpr int outer_tasks = 20;
    constexpr int inner_tasks = 10;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::group inner{s};
        inner.set_limit(limit);
        errgroup::group outer{s};
        outer.set_limit(limit);
        std::atomic<int> ran{0};
        for (int i = 0; i < outer_tasks; ++i)  // the test thread waits here
          outer.go([&] {
            for (int j = 0; j < inner_tasks; ++j)  // a worker waits here
              inner.go([&] { ran.fetch_add(1); });
          });
        CHECK_FALSE(outer.wait());
        CHECK_FALSE(inner.wait());
        CHECK(ran.load() == outer_tasks * inner_tasks);
        CHECK(inner.counters().peak <= limit);
        CHECK(outer.counters().peak <= limit);
      }
    }
  }

  // Regression: external threads waiting in go() used to help inside an
  // owned arena and so hold its slots (threads + 1 of them); with more
  // waiters than slots, the one granted a slot could not re-enter the arena
  // to spawn its task, and every waiter hung.
  TEST_CASE(
      "more external producers waiting at the limit than the arena has slots "
      "complete") {
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3}) {
        CAPTURE(threads);
        CAPTURE(limit);
        const int producers = threads + 3;
        errgroup::group g{s};
        g.set_limit(limit);
        std::latch hold{1};
        for (int i = 0; i < limit; ++i) g.go([&] { hold.wait(); });
        std::atomic<int> ran{0};
        {
          std::vector<std::jthread> ts;
          for (int i = 0; i < producers; ++i)
            ts.emplace_back([&] { g.go([&] { ran.fetch_add(1); }); });
          spin_until([&] { return g.counters().waiting == producers; });
          hold.count_down();
        }
        CHECK_FALSE(g.wait());
        CHECK(ran.load() == producers);
        CHECK(g.counters().peak <= limit);
      }
    }
  }

  TEST_CASE("100000 tasks blocked in go from worker threads at once all run") {
    constexpr int n = 100'000;
    constexpr int limit = 2;
    errgroup::scheduler s{2};
    errgroup::group inner{s};
    inner.set_limit(limit);
    park holders;  // hold the inner slots without holding s's two threads
    for (int i = 0; i < limit; ++i) inner.go([&] { holders.wait(); });
    spin_until([&] { return inner.counters().running == limit; });
    std::atomic<int> ran{0};
    errgroup::group outer{s};
    for (int i = 0; i < n; ++i)
      outer.go([&] { inner.go([&] { ran.fetch_add(1); }); });
    spin_until([&] { return inner.counters().waiting == n; });  // all at once
    CHECK(ran.load() == 0);
    holders.release();
    CHECK_FALSE(outer.wait());
    CHECK_FALSE(inner.wait());
    CHECK(ran.load() == n);
    const auto c = inner.counters();
    CHECK(c.submitted == n + limit);
    CHECK(c.succeeded == n + limit);
    CHECK(c.peak <= limit);
    check_accounting(c, n + limit);
  }

  TEST_CASE(
      "external producers at the limit of a group on the default scheduler "
      "complete") {
    constexpr int producers = 6;
    constexpr int tasks = 50;  // per producer
    for (int limit : {1, 2, 3}) {
      CAPTURE(limit);
      errgroup::group g;  // the default scheduler: waiting threads help
      g.set_limit(limit);
      std::atomic<int> ran{0};
      {
        std::vector<std::jthread> ts;
        for (int p = 0; p < producers; ++p)
          ts.emplace_back([&] {
            for (int i = 0; i < tasks; ++i) g.go([&] { ran.fetch_add(1); });
          });
      }
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == producers * tasks);
      CHECK(g.counters().peak <= limit);
      check_accounting(g.counters(), producers * tasks);
    }
  }

  // Regression: scheduler(n) promises n threads of its own, but the
  // process-wide oneTBB worker limit used to be raised to the largest live
  // scheduler's need only (and not at all for n + 1 <= cores), so while a's
  // threads were blocked, b got no worker and its task never ran.
  TEST_CASE("a group runs while another scheduler's threads are all blocked") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler a{threads};
      errgroup::scheduler b{threads};
      errgroup::group blocked{a};
      errgroup::group g{b};
      std::latch hold{1};
      for (int i = 0; i < threads; ++i) blocked.go([&] { hold.wait(); });
      spin_until([&] { return blocked.counters().running == threads; });
      std::atomic<bool> ran{false};
      g.go([&] { ran = true; });
      spin_until([&] { return ran.load(); });  // nobody helps: b's own thread
      hold.count_down();
      CHECK_FALSE(blocked.wait());
      CHECK_FALSE(g.wait());
    }
  }

  // oneTBB's spawn may leave a task unseen by a thread that is just going to
  // sleep; it is run when the spawning thread waits. Here nobody waits: the
  // caller blocks until the task has run, round after round, each round
  // racing the previous task's thread going idle.
  TEST_CASE("a task started by go runs although nobody waits for the group") {
    const auto check = [&](errgroup::scheduler& s, int rounds) {
      errgroup::group g{s};
      std::binary_semaphore ran{0};
      for (int i = 0; i < rounds; ++i) {
        g.go([&] { ran.release(); });
        ran.acquire();  // a lost task hangs here (CTest timeout)
      }
      CHECK_FALSE(g.wait());
      CHECK(g.counters().succeeded == rounds);
    };
    SUBCASE("default scheduler") {
      check(errgroup::scheduler::default_scheduler(), 3000);
    }
    SUBCASE("owned schedulers") {
      for (int threads : thread_counts) {
        CAPTURE(threads);
        errgroup::scheduler s{threads};
        check(s, 3000);
      }
    }
    SUBCASE("an adopted one-slot arena that a worker may join") {
      // The caller leaves the arena after each go(): a worker must wake up
      // for every task. (In task_arena(1), whose one slot is reserved for
      // the application's threads, no worker may run it, as with oneTBB's
      // own task_group: docs/design.md.)
      tbb::task_arena one{1, 0};
      errgroup::scheduler s{one};
      check(s, 300);
    }
  }
}  // TEST_SUITE("group.deadlock")

namespace {

// ---- ExampleGroup_parallel ----

using search =
    std::function<std::string(const errgroup::context&, const std::string&)>;

search fake_search(std::string kind) {
  return [kind](const errgroup::context&, const std::string& query) {
    return kind + " result for \"" + query + "\"";
  };
}

// google runs the searches in parallel; the first failure is its result.
std::pair<std::vector<std::string>, error> google(
    const errgroup::context& parent, errgroup::scheduler& s,
    const std::string& query, const std::vector<search>& searches) {
  auto [g, ctx] = errgroup::with_context(parent, s);
  std::vector<std::string> results(searches.size());
  for (std::size_t i = 0; i < searches.size(); ++i)
    g.go([&, i](const errgroup::context& c) {
      results[i] = searches[i](c, query);  // a throw is the task's error
    });
  if (error e = g.wait()) return {{}, e};
  return {results, error()};
}

// ---- ExampleGroup_pipeline (MD5All), over an in-memory file tree ----

// chan is a small Go channel: send blocks while full and gives up when ctx is
// cancelled (Go's select on ctx.Done()); recv blocks while empty and returns
// nothing once the channel is closed and drained.
template <class T>
class chan {
 public:
  explicit chan(std::size_t capacity) : capacity_(capacity) {}
  bool send(const errgroup::context& ctx, T v) {
    std::unique_lock lock(mu_);
    if (!cv_.wait(lock, ctx.stop_token(),
                  [&] { return q_.size() < capacity_; }))
      return false;
    q_.push_back(std::move(v));
    cv_.notify_all();
    return true;
  }
  std::optional<T> recv() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    cv_.notify_all();
    return v;
  }
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<T> q_;
  std::size_t capacity_;
  bool closed_ = false;
};

// close_on_exit closes a channel when it is destroyed: Go's defer close(c).
struct close_chan {
  template <class C>
  void operator()(C* c) const {
    c->close();
  }
};

struct file {
  std::string path;
  bool regular;
  std::string data;
};

// make_tree builds a tree of files; every 7th entry is not a regular file.
std::vector<file> make_tree(int n) {
  std::vector<file> tree;
  for (int i = 0; i < n; ++i) {
    std::string data;
    for (int k = 0; k < (i * 37) % 300; ++k)
      data += static_cast<char>('a' + (i + k) % 26);
    tree.push_back(
        {"dir" + std::to_string(i / 20) + "/file" + std::to_string(i) + ".txt",
         i % 7 != 3, std::move(data)});
  }
  return tree;
}

// checksum is 64-bit FNV-1a, standing in for md5.
std::uint64_t checksum(std::string_view data) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// read_file stands in for os.ReadFile: the file named `unreadable` fails.
const std::string& read_file(const std::vector<file>& tree,
                             const std::string& path,
                             const std::string& unreadable) {
  if (path == unreadable)
    throw std::system_error(std::make_error_code(std::errc::permission_denied),
                            path);
  for (const file& f : tree)
    if (f.path == path) return f.data;
  throw std::system_error(
      std::make_error_code(std::errc::no_such_file_or_directory), path);
}

struct md5all_result {
  std::map<std::string, std::uint64_t> sums;
  error err;
  errgroup::group::stats stats;  // the group's, when md5all returned
  error second_wait;             // what the closer's wait() returned
};

// md5all is Go's MD5All: a walker sends the regular files' paths, `digesters`
// tasks sum them, and a closer thread waits for the group and closes the
// results. Each stage blocks its thread on a channel, as goroutines do, so
// the scheduler has a thread per task.
md5all_result md5all(const errgroup::context& parent,
                     const std::vector<file>& tree, int digesters,
                     const std::string& unreadable) {
  struct digest {
    std::string path;
    std::uint64_t sum;
  };
  errgroup::scheduler io{digesters + 1};
  auto made = errgroup::with_context(parent, io);
  auto& g = made.g;
  chan<std::string> paths(1);
  // The walker closes paths on every path out, also if it is skipped.
  g.go([&, defer_close = std::unique_ptr<chan<std::string>, close_chan>(
               &paths)](const errgroup::context& c) -> error {
    for (const file& f : tree) {
      if (!f.regular) continue;
      if (!paths.send(c, f.path)) return c.err();
    }
    return {};
  });
  chan<digest> results(1);
  for (int i = 0; i < digesters; ++i)
    g.go([&](const errgroup::context& c) -> error {
      while (std::optional<std::string> p = paths.recv()) {
        const std::string& data = read_file(tree, *p, unreadable);
        if (!results.send(c, digest{*p, checksum(data)})) return c.err();
      }
      return {};
    });
  md5all_result r;
  std::jthread closer([&] {
    r.second_wait = g.wait();
    results.close();
  });
  while (std::optional<digest> d = results.recv()) r.sums[d->path] = d->sum;
  closer.join();
  r.err = g.wait();  // the second wait(): the same error
  r.stats = g.counters();
  if (r.err) r.sums.clear();
  return r;
}

}  // namespace

TEST_SUITE("go_examples") {
  TEST_CASE(
      "a zero group collects the first fetch error (ExampleGroup_justErrors)") {
    auto fake_get = [](const std::string& url) -> std::error_code {
      if (url.find("somestupidname") != std::string::npos)
        return std::make_error_code(std::errc::host_unreachable);
      return {};
    };
    const std::vector<std::string> urls = {"http://www.golang.org/",
                                           "http://www.google.com/",
                                           "http://www.somestupidname.com/"};
    errgroup::group g;  // Go's zero Group, on the default scheduler
    std::atomic<int> fetched{0};
    for (const std::string& url : urls)
      g.go([&fetched, &fake_get, url] {
        fetched.fetch_add(1);
        return fake_get(url);
      });
    const error err = g.wait();
    const auto* se = err.as<std::system_error>();
    REQUIRE(se != nullptr);
    CHECK(se->code() == std::errc::host_unreachable);
    CHECK(fetched.load() == 3);  // a zero group runs every task
  }

  TEST_CASE(
      "the searches fill their result slots in index order "
      "(ExampleGroup_parallel)") {
    const std::vector<search> searches = {
        fake_search("web"), fake_search("image"), fake_search("video")};
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [results, err] = google(errgroup::context(), s, "golang", searches);
      REQUIRE_FALSE(err);
      std::string out;
      for (const std::string& r : results) out += r + "\n";
      CHECK(out ==
            "web result for \"golang\"\n"
            "image result for \"golang\"\n"
            "video result for \"golang\"\n");

      const std::vector<search> failing = {
          fake_search("web"),
          [](const errgroup::context&, const std::string&) -> std::string {
            throw std::runtime_error("group_test: image search is down");
          },
          fake_search("video")};
      auto [none, failed] = google(errgroup::context(), s, "golang", failing);
      CHECK(none.empty());
      CHECK(failed.message() == "group_test: image search is down");
    }
  }

  TEST_CASE(
      "MD5All sums every regular file and stops on the first error "
      "(ExampleGroup_pipeline)") {
    const std::vector<file> tree = make_tree(400);
    std::map<std::string, std::uint64_t> want;
    for (const file& f : tree)
      if (f.regular) want[f.path] = checksum(f.data);
    REQUIRE(want.size() < tree.size());

    for (int digesters : {1, 4, 20}) {
      CAPTURE(digesters);
      const md5all_result ok = md5all(errgroup::context(), tree, digesters, "");
      CHECK_FALSE(ok.err);
      CHECK_FALSE(ok.second_wait);
      CHECK(ok.sums == want);
      CHECK(ok.stats.submitted == digesters + 1);
      CHECK(ok.stats.succeeded == digesters + 1);
      CHECK(ok.stats.running == 0);

      const std::string bad = tree[200].path;
      REQUIRE(tree[200].regular);
      const md5all_result failed =
          md5all(errgroup::context(), tree, digesters, bad);
      const auto* se = failed.err.as<std::system_error>();
      REQUIRE(se != nullptr);
      CHECK(se->code() == std::errc::permission_denied);
      CHECK(std::string_view(se->what()).starts_with(bad));
      CHECK(failed.second_wait == failed.err);  // wait() twice: same error
      CHECK(failed.sums.empty());
      CHECK(failed.stats.running == 0);  // every task finished
      CHECK(failed.stats.failed >= 1);
      CHECK(failed.stats.succeeded + failed.stats.failed +
                failed.stats.skipped ==
            failed.stats.submitted);

      // A parent cancelled up front: every task is skipped, and the walker's
      // callable still closes the channel it owns.
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      cancel();
      const md5all_result cancelled = md5all(parent, tree, digesters, "");
      CHECK(cancelled.err.is<errgroup::cancelled_error>());
      CHECK(cancelled.stats.skipped == digesters + 1);
    }
  }
}  // TEST_SUITE("go_examples")
