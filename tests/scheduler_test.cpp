// tests/scheduler_test.cpp: errgroup::scheduler (<errgroup/scheduler.hpp>,
// docs/contract.md §3).
#include "errgroup/scheduler.hpp"

#include <doctest/doctest.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <barrier>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "errgroup/group.hpp"

namespace {

// The distinct threads that ran a set of tasks.
class thread_set {
 public:
  void add() {
    std::lock_guard lock(mu_);
    ids_.insert(std::this_thread::get_id());
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return ids_.size();
  }
  bool contains(std::thread::id id) const {
    std::lock_guard lock(mu_);
    return ids_.count(id) != 0;
  }

 private:
  mutable std::mutex mu_;
  std::set<std::thread::id> ids_;
};

// arena_id(a) is the oneTBB arena behind a task_arena handle (through a
// pointer to its protected member, taken in a derived class).
struct arena_peek : tbb::task_arena {
  static const void* id(const tbb::task_arena& a) {
    constexpr auto arena = &arena_peek::my_arena;
    return (a.*arena).load();
  }
};

// current_arena_id() is the arena the calling thread is in.
const void* current_arena_id() {
  tbb::task_arena here{tbb::task_arena::attach{}};
  return arena_peek::id(here);
}

// run_group(s, tasks, arena) runs `tasks` tasks on s through an
// errgroup::group and checks that all ran, each inside `arena`.
void run_group(errgroup::scheduler& s, int tasks, tbb::task_arena& arena) {
  std::atomic<int> ran{0}, elsewhere{0};
  arena.initialize();
  const void* where = arena_peek::id(arena);
  REQUIRE(where != nullptr);
  errgroup::group g{s};
  for (int i = 0; i < tasks; ++i)
    g.go([&] {
      ran.fetch_add(1);
      if (current_arena_id() != where) elsewhere.fetch_add(1);
    });
  CHECK_FALSE(static_cast<bool>(g.wait()));
  CHECK(ran.load() == tasks);
  CHECK(elsewhere.load() == 0);
}

}  // namespace

// Not copyable, and scheduler(n) is explicit.
static_assert(!std::is_copy_constructible_v<errgroup::scheduler>);
static_assert(!std::is_copy_assignable_v<errgroup::scheduler>);
static_assert(std::is_constructible_v<errgroup::scheduler, int>);
static_assert(!std::is_convertible_v<int, errgroup::scheduler>);
static_assert(std::is_constructible_v<errgroup::scheduler, tbb::task_arena&>);
static_assert(!std::is_convertible_v<tbb::task_arena&, errgroup::scheduler>);

TEST_SUITE("scheduler") {
  TEST_CASE("default_scheduler() is the same object on every call") {
    errgroup::scheduler& first = errgroup::scheduler::default_scheduler();
    CHECK(&errgroup::scheduler::default_scheduler() == &first);
    errgroup::scheduler* from_thread = nullptr;
    std::jthread([&] {
      from_thread = &errgroup::scheduler::default_scheduler();
    }).join();
    CHECK(from_thread == &first);
    errgroup::scheduler* from_arena = nullptr;
    tbb::task_arena arena(1);
    arena.execute(
        [&] { from_arena = &errgroup::scheduler::default_scheduler(); });
    CHECK(from_arena == &first);
    CHECK(first.max_concurrency() >= 1);
    CHECK(first.max_concurrency() == tbb::this_task_arena::max_concurrency());
  }

  TEST_CASE(
      "scheduler(n) runs n tasks at the same time even above the "
      "number of cores") {
    SUBCASE("tasks of a task_group inside arena().execute") {
      for (int n : {1, 2, 4, 8}) {
        CAPTURE(n);
        errgroup::scheduler s{n};
        CHECK(s.max_concurrency() == n);
        // Each task waits at the barrier until all n have arrived: this only
        // finishes if n threads run them at once.
        std::barrier meet(n);
        thread_set ran;
        s.arena().execute([&] {
          tbb::task_group tg;
          for (int i = 0; i < n; ++i)
            tg.run([&] {
              ran.add();
              meet.arrive_and_wait();
            });
          tg.wait();
        });
        CHECK(ran.size() == static_cast<std::size_t>(n));
      }
    }
    SUBCASE("tasks enqueued while no other thread joins the arena") {
      for (int n : {1, 2, 4, 8}) {
        CAPTURE(n);
        errgroup::scheduler s{n};
        CHECK(s.max_concurrency() == n);
        // This thread never enters the arena: n of the arena's own threads
        // must run the tasks. Shared, so that a task still returning from the
        // latches never touches freed memory.
        struct shared {
          explicit shared(int count) : all_running(count), done(count) {}
          std::latch all_running, done;
          thread_set ran;
        };
        auto state = std::make_shared<shared>(n);
        for (int i = 0; i < n; ++i)
          s.arena().enqueue([state] {
            state->ran.add();
            state->all_running.arrive_and_wait();
            state->done.count_down();
          });
        state->done.wait();
        CHECK(state->ran.size() == static_cast<std::size_t>(n));
        CHECK_FALSE(state->ran.contains(std::this_thread::get_id()));
      }
    }
  }

  TEST_CASE("scheduler(n) rejects n < 1") {
    CHECK_THROWS_AS(errgroup::scheduler(0), std::invalid_argument);
    CHECK_THROWS_AS(errgroup::scheduler(-1), std::invalid_argument);
    CHECK_THROWS_AS(errgroup::scheduler(-1000), std::invalid_argument);
  }

  TEST_CASE("an adopted arena runs the work and sets the concurrency") {
    SUBCASE("an initialized arena, which outlives the scheduler") {
      for (int n : {1, 3}) {
        CAPTURE(n);
        tbb::task_arena arena(n);
        arena.initialize();
        {
          errgroup::scheduler s{arena};
          CHECK(s.max_concurrency() == n);
          CHECK(&s.arena() == &arena);
          int seen = 0;
          s.arena().execute(
              [&] { seen = tbb::this_task_arena::max_concurrency(); });
          CHECK(seen == n);
        }
        // The scheduler did not own the arena: it still works.
        CHECK(arena.is_active());
        int after = 0;
        arena.execute([&] { after = tbb::this_task_arena::max_concurrency(); });
        CHECK(after == n);
      }
    }
    SUBCASE("an arena not yet initialized") {
      for (int n : {1, 3}) {
        CAPTURE(n);
        tbb::task_arena arena(n);
        errgroup::scheduler s{arena};
        CHECK(s.max_concurrency() == n);
        CHECK(&s.arena() == &arena);
      }
    }
  }

  TEST_CASE("a group runs its work through each kind of scheduler") {
    constexpr int tasks = 200;
    SUBCASE("the default scheduler runs tasks in the caller's arena") {
      errgroup::scheduler& s = errgroup::scheduler::default_scheduler();
      run_group(s, tasks, s.arena());
      tbb::task_arena other(3);
      other.execute([&] { run_group(s, tasks, other); });
    }
    SUBCASE("an owned scheduler runs tasks in its own arena") {
      for (int n : {1, 2, 4, 8}) {
        CAPTURE(n);
        errgroup::scheduler s{n};
        run_group(s, tasks, s.arena());
      }
    }
    SUBCASE("an adopted arena runs the tasks") {
      for (int n : {1, 3, 5}) {
        CAPTURE(n);
        tbb::task_arena arena(n);
        errgroup::scheduler s{arena};
        run_group(s, tasks, arena);
      }
    }
    SUBCASE("a group's error comes back through every kind") {
      tbb::task_arena arena(2);
      errgroup::scheduler adopted{arena};
      errgroup::scheduler owned{3};
      for (errgroup::scheduler* s :
           {&errgroup::scheduler::default_scheduler(), &owned, &adopted}) {
        const errgroup::error boom =
            errgroup::make_error<std::runtime_error>("boom");
        errgroup::group g{*s};
        g.go([&] { return boom; });
        g.go([] {});
        CHECK(g.wait() == boom);
      }
    }
  }

  TEST_CASE(
      "default_scheduler().arena() is the calling thread's current "
      "arena") {
    // On a fresh thread, so that nothing was cached for it before.
    std::jthread([] {
      tbb::task_arena three(3), five(5);
      errgroup::scheduler& s = errgroup::scheduler::default_scheduler();
      int in_three = 0, in_five = 0;
      three.execute([&] { in_three = s.arena().max_concurrency(); });
      five.execute([&] { in_five = s.arena().max_concurrency(); });
      CHECK(in_three == 3);
      CHECK(in_five == 5);
      CHECK(s.arena().max_concurrency() ==
            tbb::this_task_arena::max_concurrency());
    }).join();
    // A thread that never used oneTBB: arena() is where go() runs tasks.
    std::jthread([] {
      errgroup::scheduler& s = errgroup::scheduler::default_scheduler();
      run_group(s, 200, s.arena());
    }).join();
  }
}  // TEST_SUITE("scheduler")
