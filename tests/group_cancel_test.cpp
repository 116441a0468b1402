// tests/group_cancel_test.cpp: cancellation of context groups
// (docs/contract.md §4, First error and Cancellation): the first error as the
// context's cause (Go's TestCancelCause), the parent's cancellation and
// deadline, and skipped tasks, none lost; plain groups never skip.
//
// How these tests are written (stepping with latches and test::park, no
// sleeps, assertions on the test's thread): tests/README.md.

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using errgroup::error;
using test::check_accounting;
using test::err_doom;
using test::err_other;
using test::park;
using test::spin_until;
using test::thread_counts;
using test::token;

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
