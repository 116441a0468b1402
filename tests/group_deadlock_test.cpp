// tests/group_deadlock_test.cpp: no deadlock and no lost task
// (docs/contract.md §4, Limit, and §6, Liveness): nested limited groups,
// tasks that call go() on their own full group, producers of every kind at
// the limit, on owned, default and adopted schedulers. A hang is caught by
// CTest's per-test TIMEOUT, so each scenario is a TEST_CASE of its own.
//
// How these tests are written (stepping with latches and test::park, no
// sleeps, assertions on the test's thread): tests/README.md.

#include <doctest/doctest.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <functional>
#include <latch>
#include <optional>
#include <semaphore>
#include <thread>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using errgroup::error;
using test::check_accounting;
using test::park;
using test::peak_tracker;
using test::spin_until;
using test::thread_counts;

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
            peak_tracker m;
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
          peak_tracker m;
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
