// tests/misuse_test.cpp: every misuse row of docs/contract.md (sections 1-5),
// one table row each, checked for the exact exception type (typeid, not a base
// class) and the exact message, and for the state left behind (nothing
// admitted, nothing leaked, the object still usable).
//
// Also home of the valgrind hook: with ERRGROUP_TBB_FINALIZE=1 in the
// environment, oneTBB is finalized (its worker threads joined) at exit, so
// memcheck sees no thread-local blocks of still-running workers. See
// .ci/valgrind.sh.

// oneTBB 2021.5 (TBB_INTERFACE_VERSION 12050) has task_scheduler_handle and
// finalize() only as a preview, and makes a handle with
// task_scheduler_handle::get() instead of task_scheduler_handle(tbb::attach);
// 2021.6 made them regular API and ignores this macro. It must come before the
// first oneTBB header.
#define TBB_PREVIEW_WAITING_FOR_WORKERS 1

#include <doctest/doctest.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/version.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <latch>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeindex>
#include <typeinfo>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"
#include "misuse_messages.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::spin_until;

namespace {

// ---- valgrind hook
// ----------------------------------------------------------- A handle made
// before main() (static initialization of this file) and finalized after main()
// returned (static destruction, after every local scheduler and group is gone).
// oneTBB then joins its workers.
struct finalize_tbb_at_exit {
  std::optional<tbb::task_scheduler_handle> handle;
  finalize_tbb_at_exit() {
    const char* v = std::getenv("ERRGROUP_TBB_FINALIZE");
    if (v != nullptr && *v != '\0' && *v != '0') {
#if TBB_INTERFACE_VERSION >= 12060
      handle.emplace(tbb::attach{});
#else
      handle.emplace(tbb::task_scheduler_handle::get());
#endif
    }
  }
  ~finalize_tbb_at_exit() {
    if (handle && !tbb::finalize(*handle, std::nothrow))
      std::fputs(
          "misuse_test: tbb::finalize() failed: oneTBB still in use at exit "
          "(its worker threads are not joined)\n",
          stderr);
  }
  finalize_tbb_at_exit(const finalize_tbb_at_exit&) = delete;
  finalize_tbb_at_exit& operator=(const finalize_tbb_at_exit&) = delete;
};
const finalize_tbb_at_exit finalize_at_exit;

// ---- what a misuse produced
// ----------------------------------------------------
struct outcome {
  enum kind_t { nothing, thrown, returned };
  kind_t kind = nothing;
  std::type_index type = typeid(void);
  std::string message;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  static const char* const kinds[] = {"nothing", "thrown", "returned"};
  return os << kinds[o.kind] << " " << o.type.name() << " \"" << o.message
            << "\"";
}

// capture(fn) runs fn and reports what it threw, or the error it returned
// (fn returning errgroup::error), or nothing.
template <class Fn>
outcome capture(Fn&& fn) {
  outcome o;
  try {
    if constexpr (std::is_same_v<std::invoke_result_t<Fn&>, errgroup::error>) {
      const errgroup::error err = fn();
      if (err) {
        o.kind = outcome::returned;
        try {
          err.throw_if();
        } catch (const std::exception& e) {
          o.type = typeid(e);
          o.message = e.what();
        } catch (...) {
          o.type = typeid(void);
          o.message = err.message();
        }
      }
    } else {
      fn();
    }
  } catch (const std::exception& e) {
    o.kind = outcome::thrown;
    o.type = typeid(e);
    o.message = e.what();
  } catch (...) {
    o.kind = outcome::thrown;
    o.message = "<non-std exception>";
  }
  return o;
}

// A row of the table: what docs/contract.md says, and a scenario that runs the
// misuse (and checks the state it leaves behind) and returns what the misuse
// did.
struct row {
  const char* section;
  const char* name;
  std::function<outcome()> run;
  outcome::kind_t kind;
  std::type_index type;
  std::string message;
};

// The exact texts.
using namespace misuse_messages;

const std::type_index logic_error = typeid(std::logic_error);
const std::type_index invalid_argument = typeid(std::invalid_argument);

// A task whose capture is watched: the token's use_count() tells whether the
// callable was destroyed.
struct watched {
  std::shared_ptr<int> token = std::make_shared<int>(0);
  auto task() const {
    return [t = token] { (void)t; };
  }
  bool released() const { return token.use_count() == 1; }
};

// A task that blocks until open() is called, and reports when it started.
struct blocker {
  std::latch started{1};
  std::latch gate{1};
  auto task() {
    return [this] {
      started.count_down();
      gate.wait();
    };
  }
  void open() { gate.count_down(); }
};

errgroup::scheduler& two_threads() {
  static errgroup::scheduler s{2};
  return s;
}

// ---- group scenarios (docs/contract.md §4)
// ------------------------------------ make_group(kind) builds a plain group or
// a context group on two_threads().
std::unique_ptr<errgroup::group> make_group(bool with_context) {
  if (with_context)
    return std::make_unique<errgroup::group>(errgroup::context(),
                                             two_threads());
  return std::make_unique<errgroup::group>(two_threads());
}

// set_limit while `active` tasks run (all blocked).
outcome set_limit_while_running(bool with_context, int active) {
  auto g = make_group(with_context);
  std::vector<std::unique_ptr<blocker>> blocked;
  for (int i = 0; i < active; ++i) {
    blocked.push_back(std::make_unique<blocker>());
    g->go(blocked.back()->task());
  }
  // Started or still queued in oneTBB: both count as active.
  const outcome o = capture([&] { g->set_limit(1); });
  for (auto& b : blocked) b->open();
  CHECK_FALSE(static_cast<bool>(g->wait()));
  CHECK(g->counters().succeeded == active);
  if (!with_context) {
    // The failed set_limit left no limit behind: two tasks run at once (they
    // would wait for each other forever under a limit of 1).
    std::latch both{2};
    for (int i = 0; i < 2; ++i) g->go([&] { both.arrive_and_wait(); });
    CHECK_FALSE(static_cast<bool>(g->wait()));
    CHECK(g->counters().peak == 2);
  }
  return o;
}

// set_limit while one task runs and a go() from another thread waits for
// its slot: the waiting go() counts as active too.
outcome set_limit_while_waiting(bool with_context) {
  auto g = make_group(with_context);
  g->set_limit(1);
  blocker b;
  g->go(b.task());
  b.started.wait();
  std::atomic<bool> second_ran{false};
  std::jthread producer([&] { g->go([&] { second_ran = true; }); });
  REQUIRE(spin_until([&] { return g->counters().waiting == 1; }));
  const outcome o = capture([&] { g->set_limit(8); });
  CHECK_FALSE(second_ran.load());
  b.open();
  producer.join();
  CHECK_FALSE(static_cast<bool>(g->wait()));
  CHECK(second_ran.load());
  CHECK(g->counters().peak == 1);
  return o;
}

// set_limit(0): try_go is false, go throws; the callables are destroyed.
outcome limit_zero_go(bool with_context) {
  auto g = make_group(with_context);
  g->set_limit(0);
  watched w;
  const outcome o = capture([&] { g->go(w.task()); });
  CHECK(w.released());
  CHECK(g->counters().submitted == 0);
  CHECK_FALSE(g->try_go(w.task()));
  CHECK(w.released());
  // The group is still usable once the limit is lifted.
  g->set_limit(-1);
  g->go(w.task());
  CHECK_FALSE(static_cast<bool>(g->wait()));
  CHECK(g->counters().submitted == 1);
  CHECK(w.released());
  return o;
}

outcome limit_zero_try_go(bool with_context) {
  auto g = make_group(with_context);
  g->set_limit(0);
  watched w;
  outcome o;
  const bool started = g->try_go(w.task());
  if (started) o.kind = outcome::returned;  // "returned true": wrong
  CHECK(w.released());
  CHECK(g->counters().submitted == 0);
  CHECK_FALSE(static_cast<bool>(g->wait()));
  return o;
}

outcome limit_zero_go_until(bool with_context) {
  auto g = make_group(with_context);
  g->set_limit(0);
  watched w;
  const outcome o = capture([&] {
    return g->go_until(std::chrono::steady_clock::now() + 1s, w.task());
  });
  CHECK(w.released());
  CHECK(g->counters().submitted == 0);
  return o;
}

outcome limit_zero_weighted(bool with_context) {
  auto g = make_group(with_context);
  errgroup::weighted sem{4};
  g->set_limit(0);
  watched w;
  const outcome o = capture([&] { g->go(sem, 1, w.task()); });
  CHECK(w.released());
  CHECK_FALSE(g->try_go(sem, 1, w.task()));
  CHECK(sem.available() == 4);
  CHECK(g->counters().submitted == 0);
  return o;
}

// wait() from a task of the same group: the task sees the exception, the
// group is unharmed.
outcome wait_from_own_task(bool with_context, bool limited) {
  auto g = make_group(with_context);
  if (limited) g->set_limit(1);
  outcome seen;
  g->go([&] { seen = capture([&] { (void)g->wait(); }); });
  CHECK_FALSE(static_cast<bool>(g->wait()));
  CHECK(g->counters().succeeded == 1);
  return seen;
}

// wait() from a task of the same group that the task started with go(): a
// task of a task is still a task of the group.
outcome wait_from_grandchild(bool with_context) {
  auto g = make_group(with_context);
  outcome seen;
  g->go([&] { g->go([&] { seen = capture([&] { (void)g->wait(); }); }); });
  CHECK_FALSE(static_cast<bool>(g->wait()));
  CHECK(g->counters().succeeded == 2);
  return seen;
}

// go() on a context group after wait() returned.
outcome go_after_wait_ctx(int variant) {
  errgroup::group g{errgroup::context(), two_threads()};
  std::atomic<int> ran{0};
  g.go([&] { ++ran; });
  CHECK_FALSE(static_cast<bool>(g.wait()));
  CHECK(g.get_context().cancelled());
  watched w;
  errgroup::weighted sem{2};
  outcome o;
  switch (variant) {
    case 0:
      o = capture([&] { g.go(w.task()); });
      break;
    case 1:
      o = capture([&] {
        return g.go_until(std::chrono::steady_clock::now() + 1s, w.task());
      });
      break;
    case 2:
      o = capture([&] { g.go(sem, 1, w.task()); });
      break;
  }
  CHECK(w.released());
  CHECK(sem.available() == 2);
  CHECK(ran.load() == 1);
  CHECK(g.counters().submitted == 1);
  // try_go() is not misuse: it reports that nothing started.
  CHECK_FALSE(g.try_go(w.task()));
  CHECK_FALSE(static_cast<bool>(g.wait()));  // wait again: the same result
  return o;
}

// The same through with_context(): the aggregate's group.
outcome go_after_wait_with_context() {
  // Not a structured binding: clang 14 cannot capture those in lambdas.
  errgroup::group_and_context gc =
      errgroup::with_context(errgroup::context(), two_threads());
  errgroup::group& g = gc.g;
  g.go([] {});
  CHECK_FALSE(static_cast<bool>(g.wait()));
  CHECK(gc.ctx.cancelled());
  watched w;
  const outcome o = capture([&] { g.go(w.task()); });
  CHECK(w.released());
  return o;
}

// A plain group may be reused after wait(); its first error stays.
outcome plain_group_reuse() {
  errgroup::group g{two_threads()};
  const errgroup::error boom = errgroup::make_error<std::runtime_error>("b");
  g.go([&] { return boom; });
  CHECK(g.wait() == boom);
  std::atomic<int> ran{0};
  const outcome o = capture([&] { g.go([&] { ++ran; }); });
  CHECK(g.wait() == boom);
  CHECK(ran.load() == 1);
  return o;
}

// g.go(sem, n, f) / try_go with n out of range.
outcome go_units(bool with_context, bool try_form, std::int64_t n) {
  auto g = make_group(with_context);
  errgroup::weighted sem{3};
  watched w;
  const outcome o = capture([&] {
    if (try_form)
      (void)g->try_go(sem, n, w.task());
    else
      g->go(sem, n, w.task());
  });
  CHECK(w.released());
  CHECK(sem.available() == 3);
  CHECK(g->counters().submitted == 0);
  CHECK_FALSE(static_cast<bool>(g->wait()));
  return o;
}

// ---- weighted scenarios (docs/contract.md §5)
// ---------------------------------
outcome weighted_ctor(std::int64_t size) {
  return capture([&] { errgroup::weighted sem{size}; });
}

outcome sem_negative(int which) {
  errgroup::weighted sem{5};
  REQUIRE(sem.try_acquire(2));
  const outcome o = capture([&] {
    switch (which) {
      case 0:
        return sem.acquire(errgroup::context(), -1);
      case 1:
        (void)sem.try_acquire(-1);
        break;
      case 2:
        sem.release(-1);
        break;
      default:
        (void)sem.acquire(errgroup::context(),
                          std::numeric_limits<std::int64_t>::min());
        break;
    }
    return errgroup::error();
  });
  CHECK(sem.available() == 3);
  sem.release(2);
  CHECK(sem.available() == 5);
  return o;
}

// acquire(n > size): an invalid_argument error returned at once (Go would
// block until ctx is done), semaphore unchanged; try_acquire is just false.
outcome acquire_too_many(std::int64_t size, std::int64_t n) {
  errgroup::weighted sem{size};
  const outcome o =
      capture([&] { return sem.acquire(errgroup::context(), n); });
  CHECK(sem.available() == size);
  CHECK_FALSE(sem.try_acquire(n));
  CHECK(sem.available() == size);
  // The semaphore still works.
  CHECK_FALSE(static_cast<bool>(sem.acquire(errgroup::context(), size)));
  sem.release(size);
  return o;
}

// Over-release: logic_error, count unchanged. `held` units are held first;
// with `waiter`, a blocked acquire of size units is queued (slow path).
outcome over_release(std::int64_t size, std::int64_t held,
                     std::int64_t released, bool waiter) {
  errgroup::weighted sem{size};
  if (held > 0)
    REQUIRE_FALSE(static_cast<bool>(sem.acquire(errgroup::context(), held)));
  std::atomic<bool> granted{false};
  std::jthread t;
  if (waiter) {
    t = std::jthread([&] {
      CHECK_FALSE(static_cast<bool>(sem.acquire(errgroup::context(), size)));
      granted = true;
    });
    REQUIRE(spin_until([&] { return !sem.try_acquire(0); }));  // queued
  }
  const outcome o = capture([&] { sem.release(released); });
  CHECK(sem.available() == size - held);
  CHECK_FALSE(granted.load());
  if (held > 0) sem.release(held);
  if (waiter) {
    t.join();
    CHECK(granted.load());
    CHECK(sem.available() == 0);
    sem.release(size);
  }
  CHECK(sem.available() == size);
  return o;
}

// A permit gives back exactly what it holds; releasing it twice is not
// possible (reset() empties it), so no over-release can come from a permit.
outcome permit_double_reset() {
  errgroup::weighted sem{2};
  errgroup::permit_and_error pe =
      errgroup::acquire_permit(sem, errgroup::context(), 2);
  REQUIRE_FALSE(static_cast<bool>(pe.err));
  errgroup::permit& p = pe.units;
  const outcome o = capture([&] {
    p.reset();
    p.reset();
  });
  CHECK(sem.available() == 2);
  return o;
}

// ---- scheduler (docs/contract.md §3)
// ------------------------------------------
outcome scheduler_ctor(int n) {
  return capture([&] { errgroup::scheduler s{n}; });
}

std::vector<row> table() {
  using k = outcome;
  const auto none = std::type_index(typeid(void));
  std::vector<row> rows = {
      // section 4: group
      {"group", "set_limit while 1 task runs (plain)",
       [] { return set_limit_while_running(false, 1); }, k::thrown, logic_error,
       limit_active(1)},
      {"group", "set_limit while 3 tasks run (context group)",
       [] { return set_limit_while_running(true, 3); }, k::thrown, logic_error,
       limit_active(3)},
      {"group", "set_limit while a go() waits for a slot (plain)",
       [] { return set_limit_while_waiting(false); }, k::thrown, logic_error,
       limit_active(2)},
      {"group", "set_limit while a go() waits for a slot (context group)",
       [] { return set_limit_while_waiting(true); }, k::thrown, logic_error,
       limit_active(2)},
      {"group", "set_limit(0) then go (plain)",
       [] { return limit_zero_go(false); }, k::thrown, logic_error, limit_zero},
      {"group", "set_limit(0) then go (context group)",
       [] { return limit_zero_go(true); }, k::thrown, logic_error, limit_zero},
      {"group", "set_limit(0) then try_go is false (plain)",
       [] { return limit_zero_try_go(false); }, k::nothing, none, ""},
      {"group", "set_limit(0) then try_go is false (context group)",
       [] { return limit_zero_try_go(true); }, k::nothing, none, ""},
      {"group", "set_limit(0) then go_until",
       [] { return limit_zero_go_until(false); }, k::thrown, logic_error,
       limit_zero},
      {"group", "set_limit(0) then go(sem, n, f)",
       [] { return limit_zero_weighted(true); }, k::thrown, logic_error,
       limit_zero},
      {"group", "wait() from a task of the same group (plain)",
       [] { return wait_from_own_task(false, false); }, k::thrown, logic_error,
       wait_self},
      {"group", "wait() from a task of the same group (context group)",
       [] { return wait_from_own_task(true, false); }, k::thrown, logic_error,
       wait_self},
      {"group", "wait() from a task of the same group (limit 1)",
       [] { return wait_from_own_task(true, true); }, k::thrown, logic_error,
       wait_self},
      {"group", "wait() from a task started by a task of the group",
       [] { return wait_from_grandchild(false); }, k::thrown, logic_error,
       wait_self},
      {"group", "go() on a context group after wait()",
       [] { return go_after_wait_ctx(0); }, k::thrown, logic_error,
       go_after_wait},
      {"group", "go_until() on a context group after wait()",
       [] { return go_after_wait_ctx(1); }, k::thrown, logic_error,
       go_after_wait},
      {"group", "go(sem, n, f) on a context group after wait()",
       [] { return go_after_wait_ctx(2); }, k::thrown, logic_error,
       go_after_wait},
      {"group", "go() on a with_context() group after wait()",
       [] { return go_after_wait_with_context(); }, k::thrown, logic_error,
       go_after_wait},
      {"group", "go() on a plain group after wait() is fine",
       [] { return plain_group_reuse(); }, k::nothing, none, ""},
      // section 5 through the group: g.go(sem, n, f)
      {"group", "go(sem, n > size, f)",
       [] { return go_units(false, false, 4); }, k::thrown, invalid_argument,
       units_too_many},
      {"group", "go(sem, n < 0, f)", [] { return go_units(true, false, -1); },
       k::thrown, invalid_argument, units_negative},
      {"group", "try_go(sem, n > size, f)",
       [] { return go_units(true, true, 4); }, k::thrown, invalid_argument,
       units_too_many},
      {"group", "try_go(sem, n < 0, f)",
       [] { return go_units(false, true, -1); }, k::thrown, invalid_argument,
       units_negative},
      // section 5: weighted
      {"weighted", "weighted(-1)", [] { return weighted_ctor(-1); }, k::thrown,
       invalid_argument, sem_negative_size},
      {"weighted", "weighted(INT64_MIN)",
       [] { return weighted_ctor(std::numeric_limits<std::int64_t>::min()); },
       k::thrown, invalid_argument, sem_negative_size},
      {"weighted", "weighted(INT64_MAX)",
       [] { return weighted_ctor(std::numeric_limits<std::int64_t>::max()); },
       k::thrown, invalid_argument, sem_too_large},
      {"weighted", "weighted(0) is fine", [] { return weighted_ctor(0); },
       k::nothing, none, ""},
      {"weighted", "acquire(-1)", [] { return sem_negative(0); }, k::thrown,
       invalid_argument, sem_acquire_negative},
      {"weighted", "acquire(INT64_MIN)", [] { return sem_negative(3); },
       k::thrown, invalid_argument, sem_acquire_negative},
      {"weighted", "try_acquire(-1)", [] { return sem_negative(1); }, k::thrown,
       invalid_argument, sem_try_negative},
      {"weighted", "release(-1)", [] { return sem_negative(2); }, k::thrown,
       invalid_argument, sem_release_negative},
      {"weighted", "acquire(n > size) returns an error",
       [] { return acquire_too_many(3, 4); }, k::returned, invalid_argument,
       sem_acquire_too_many},
      {"weighted", "acquire(1) of a weighted(0) returns an error",
       [] { return acquire_too_many(0, 1); }, k::returned, invalid_argument,
       sem_acquire_too_many},
      {"weighted", "acquire(INT64_MAX) returns an error",
       [] {
         return acquire_too_many(2, std::numeric_limits<std::int64_t>::max());
       },
       k::returned, invalid_argument, sem_acquire_too_many},
      {"weighted", "release(1) of nothing held",
       [] { return over_release(3, 0, 1, false); }, k::thrown, logic_error,
       sem_over_release},
      {"weighted", "release(3) with 2 held",
       [] { return over_release(3, 2, 3, false); }, k::thrown, logic_error,
       sem_over_release},
      {"weighted", "release(4) with 3 held and a waiter queued",
       [] { return over_release(3, 3, 4, true); }, k::thrown, logic_error,
       sem_over_release},
      {"weighted", "release(INT64_MAX) with 1 held",
       [] {
         return over_release(3, 1, std::numeric_limits<std::int64_t>::max(),
                             false);
       },
       k::thrown, logic_error, sem_over_release},
      {"weighted", "permit reset twice gives back once",
       [] { return permit_double_reset(); }, k::nothing, none, ""},
      // section 3: scheduler
      {"scheduler", "scheduler(0)", [] { return scheduler_ctor(0); }, k::thrown,
       invalid_argument, sched_zero},
      {"scheduler", "scheduler(-1)", [] { return scheduler_ctor(-1); },
       k::thrown, invalid_argument, sched_zero},
      {"scheduler", "scheduler(INT_MIN)",
       [] { return scheduler_ctor(std::numeric_limits<int>::min()); },
       k::thrown, invalid_argument, sched_zero},
  };
  return rows;
}

}  // namespace

TEST_SUITE("misuse") {
  TEST_CASE("every misuse row of docs/contract.md gets its exact exception") {
    for (const row& r : table()) {
      INFO(r.section, ": ", r.name);
      const outcome got = r.run();
      CHECK(got.kind == r.kind);
      if (r.kind != outcome::nothing) {
        CHECK_MESSAGE(got.type == r.type, "got ", got, ", want ",
                      r.type.name());
        CHECK(got.message == r.message);
      }
    }
  }

  TEST_CASE("a misused group and semaphore stay usable afterwards") {
    errgroup::weighted sem{2};
    auto [g, ctx] = errgroup::with_context(errgroup::context(), two_threads());
    CHECK_THROWS_AS(g.go(sem, 3, [] {}), std::invalid_argument);
    CHECK_THROWS_AS(sem.release(1), std::logic_error);
    CHECK_THROWS_AS((void)sem.try_acquire(-2), std::invalid_argument);
    std::atomic<int> ran{0};
    for (int i = 0; i < 10; ++i) g.go(sem, 2, [&] { ++ran; });
    CHECK_FALSE(static_cast<bool>(g.wait()));
    CHECK(ran.load() == 10);
    CHECK(sem.available() == 2);
    CHECK(g.counters().submitted == 10);
  }

  TEST_CASE("misuse never hangs on a one-thread scheduler") {
    errgroup::scheduler one{1};
    errgroup::group g{errgroup::context(), one};
    g.set_limit(1);
    outcome from_task, limit_in_task;
    g.go([&] {
      from_task = capture([&] { (void)g.wait(); });
      limit_in_task = capture([&] { g.set_limit(4); });
    });
    CHECK_FALSE(static_cast<bool>(g.wait()));
    CHECK(from_task.kind == outcome::thrown);
    CHECK(from_task.type == logic_error);
    CHECK(from_task.message == wait_self);
    CHECK(limit_in_task.kind == outcome::thrown);
    CHECK(limit_in_task.type == logic_error);
    CHECK(limit_in_task.message == limit_active(1));
  }
}
