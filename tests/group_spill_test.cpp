// tests/group_spill_test.cpp: a context group without a limit keeps a window
// of its tasks queued in oneTBB and holds the rest back in its spill
// (docs/design.md, "The spill"). What users see must not change: every task
// runs or is skipped, none is lost, a cancellation skips what waits, tasks
// run although nobody waits, and a task suspended until a later task runs
// does not stall the group (docs/contract.md §4 Cancellation, §6 Liveness).
//
// The window is 64 tasks per thread of the scheduler; each case submits
// several windows' worth.
//
// How these tests are written (stepping with latches and test::park, no
// sleeps, assertions on the test's thread): tests/README.md.

#include <doctest/doctest.h>

#include <atomic>
#include <latch>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using test::check_accounting;
using test::err_doom;
using test::park;
using test::spin_until;
using test::thread_counts;
using test::token;

namespace {

// windows(threads, k) is k windows' worth of tasks for a scheduler of
// `threads` threads.
int windows(int threads, int k) { return 64 * threads * k; }

}  // namespace

TEST_SUITE("group.spill") {
  TEST_CASE(
      "a failure skips every task past the window and destroys each one "
      "uninvoked") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto made = errgroup::with_context(errgroup::context(), s);
      auto& g = made.g;
      const int n = windows(threads, 20);
      std::atomic<int> invoked{0};
      std::atomic<int> live{0};
      std::atomic<bool> go_on{false};
      std::latch submitted(1);
      // The first task fails once everything is submitted. Until then the
      // others hold the remaining threads, so at most `threads` start.
      g.go([&] {
        invoked.fetch_add(1);
        submitted.wait();
        return err_doom();
      });
      for (int i = 0; i < n; ++i)
        g.go([&, t = token(live)] {
          invoked.fetch_add(1);
          REQUIRE(spin_until([&] { return go_on.load(); }));
        });
      submitted.count_down();
      REQUIRE(spin_until([&] { return made.ctx.cancelled(); }));
      go_on = true;
      CHECK(g.wait() == err_doom());
      CHECK(invoked.load() <= threads);
      CHECK(live.load() == 0);
      const auto c = g.counters();
      CHECK(c.submitted == n + 1);
      CHECK(c.failed == 1);
      CHECK(c.skipped == n + 1 - invoked.load());
      check_accounting(c, invoked.load());
    }
  }

  TEST_CASE("every task past the window runs although nobody waits") {
    for (int threads : {2, 4}) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto made = errgroup::with_context(errgroup::context(), s);
      auto& g = made.g;
      const int n = windows(threads, 50);
      std::atomic<int> ran{0};
      for (int i = 0; i < n; ++i) g.go([&] { ran.fetch_add(1); });
      CHECK(spin_until([&] { return ran.load() == n; }));
      CHECK_FALSE(g.wait());
      const auto c = g.counters();
      CHECK(c.succeeded == n);
      check_accounting(c, ran.load());
    }
  }

  TEST_CASE(
      "tasks suspended until the last task runs do not stall the tasks "
      "behind them") {
    // Suspended tasks leave their threads to others, so the last task (far
    // past the window) must still reach oneTBB and release them.
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto made = errgroup::with_context(errgroup::context(), s);
      auto& g = made.g;
      const int n = windows(threads, 3);
      park p;
      std::atomic<int> released{0};
      for (int i = 0; i < n; ++i)
        g.go([&] {
          p.wait();
          released.fetch_add(1);
        });
      g.go([&] { p.release(); });
      CHECK_FALSE(g.wait());
      CHECK(released.load() == n);
      check_accounting(g.counters(), n + 1);
    }
  }

  TEST_CASE("a go from a destructor of a dropped task is counted too") {
    // Dropping the spill destroys callables outside its lock: a destructor
    // may call go() on the same (cancelled) group, which skips it.
    errgroup::scheduler s{2};
    auto made = errgroup::with_context(errgroup::context(), s);
    auto& g = made.g;
    struct on_drop {
      errgroup::group* g;
      std::atomic<int>* dropped;
      bool armed = true;
      on_drop(errgroup::group& grp, std::atomic<int>& d)
          : g(&grp), dropped(&d) {}
      on_drop(on_drop&& o) noexcept
          : g(o.g), dropped(o.dropped), armed(std::exchange(o.armed, false)) {}
      ~on_drop() {
        if (!armed) return;
        dropped->fetch_add(1);
        g->go([] {});
      }
      void operator()() { armed = false; }
    };
    const int n = windows(2, 4);
    std::atomic<int> dropped{0};
    std::latch submitted(1);
    g.go([&] {
      submitted.wait();
      return err_doom();
    });
    for (int i = 0; i < n; ++i) g.go(on_drop(g, dropped));
    submitted.count_down();
    CHECK(g.wait() == err_doom());
    const auto c = g.counters();
    CHECK(c.submitted == n + 1 + dropped.load());
    CHECK(c.skipped == c.submitted - c.succeeded - c.failed);
    check_accounting(c, c.succeeded + c.failed);
  }
}  // TEST_SUITE("group.spill")
