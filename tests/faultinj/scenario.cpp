// tests/faultinj/scenario.cpp: see scenario.hpp.
#include "scenario.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/node.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/weighted.hpp"
#include "inject.hpp"

namespace faultinj {
// Named, not anonymous, so that these functions and the library's templates
// instantiated with these callables have exported symbols: backtraces name
// them.
namespace scenario {

using namespace std::chrono_literals;

constexpr int outer_tasks = 100;
constexpr int inner_tasks = 3;  // per task that nests a group
constexpr int all_tasks = outer_tasks * (1 + inner_tasks);
constexpr std::int64_t budget = 4;

// What the go() / try_go() call that was to start a task did.
enum submit_state : int {
  not_submitted,  // never asked (the scenario or its parent task stopped)
  submitted,      // go() returned, or try_go() returned true
  go_threw,       // go() / try_go() threw
  not_started,    // try_go() returned false
};

struct task_record {
  std::atomic<int> state{not_submitted};
  std::atomic<int> runs{0};
  std::atomic<int> finished{0};
};
task_record g_tasks[all_tasks];
std::atomic<long> g_callables_alive{0};
std::atomic<bool> g_outer_waited{false};
std::atomic<int> g_go_threw{0};
std::atomic<bool> g_wait_error{false};
std::atomic<int> g_timed_waits{0};  // threads in a bounded wait for a deadline

// How long a 1 ms deadline may take to fire on a loaded machine.
constexpr auto deadline_bound = 5s;

// fired(c) waits for c's deadline (within deadline_bound) and reports
// whether it fired. The watchdog lets such a wait be.
bool fired(const errgroup::context& c) {
  g_timed_waits.fetch_add(1);
  const bool done = c.wait_for(deadline_bound);
  g_timed_waits.fetch_sub(1);
  return done;
}

// ---- violations, kept without the heap (any allocation may fail)

constexpr int max_violations = 24;
constexpr std::size_t violation_size = 400;
char g_violations[max_violations][violation_size];
std::atomic<int> g_violation_count{0};
char g_stopped_by[200];

__attribute__((format(printf, 1, 2))) void violation(const char* fmt, ...) {
  const int i = g_violation_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= max_violations) return;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_violations[i], violation_size, fmt, ap);
  va_end(ap);
}

// describe(p, out) writes "Type: what()" of the exception p points to.
void describe(const std::exception_ptr& p, char* out, std::size_t size) {
  try {
    std::rethrow_exception(p);
  } catch (const std::bad_alloc& e) {
    std::snprintf(out, size, "std::bad_alloc: %s", e.what());
  } catch (const std::system_error& e) {
    std::snprintf(out, size, "std::system_error: %s", e.what());
  } catch (const errgroup::cancelled_error& e) {
    std::snprintf(out, size, "errgroup::cancelled_error: %s", e.what());
  } catch (const std::exception& e) {
    std::snprintf(out, size, "std::exception: %s", e.what());
  } catch (...) {
    std::snprintf(out, size, "an exception not derived from std::exception");
  }
}

// allocation_failure(p): p is what an allocation failure may surface as.
bool allocation_failure(const std::exception_ptr& p) {
  try {
    std::rethrow_exception(p);
  } catch (const std::bad_alloc&) {
    return true;
  } catch (const std::system_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

// expect_failure(p, call): a library call threw p; it must be an
// allocation failure.
void expect_failure(const std::exception_ptr& p, const char* call) {
  if (allocation_failure(p)) return;
  char what[200];
  describe(p, what, sizeof what);
  violation("%s threw %s (expected std::bad_alloc or std::system_error)", call,
            what);
}

// expect_reported(e, call): e is what wait() returned: nothing, an
// allocation failure, or the cancellation that followed one.
void expect_reported(const errgroup::error& e, const char* call) {
  if (!e || allocation_failure(e.exception()) ||
      e.is<errgroup::cancelled_error>())
    return;
  char what[200];
  describe(e.exception(), what, sizeof what);
  violation("%s returned %s (expected an allocation failure)", call, what);
}

// ---- the callables

// alive counts live callables: each one is destroyed exactly once, invoked
// or not.
struct alive {
  alive() noexcept { g_callables_alive.fetch_add(1); }
  alive(const alive&) noexcept : alive() {}
  alive& operator=(const alive&) = default;
  ~alive() { g_callables_alive.fetch_sub(1); }
};

errgroup::error run_outer(int id, const errgroup::context& ctx);
void run_inner(int id);

// A task's callable. Its data is on the heap, so copying it allocates.
struct outer_task {
  int id;
  alive a;
  std::vector<int> data;
  errgroup::error operator()(const errgroup::context& ctx) const {
    return run_outer(id, ctx);
  }
};

struct inner_task {
  int id;
  alive a;
  std::vector<int> data;
  void operator()() const { run_inner(id); }
};

// The harness's own allocations are exempt from the count.
template <class T>
T make_task(int id) {
  exempt_scope exempt;
  return T{id, alive(), std::vector<int>(4, id)};
}

// ---- checks

void check_tasks(int first, int count, bool reported, const char* where) {
  for (int id = first; id < first + count; ++id) {
    const task_record& r = g_tasks[id];
    const int state = r.state.load();
    const int runs = r.runs.load();
    const int finished = r.finished.load();
    if (runs > 1)
      violation("%s task %d ran %d times (duplicated)", where, id, runs);
    if (runs > 0 && state == go_threw)
      violation("%s task %d ran although its go() threw", where, id);
    if (runs > 0 && state == not_started)
      violation("%s task %d ran although its try_go() returned false", where,
                id);
    if (runs > 0 && state == not_submitted)
      violation("%s task %d ran but was never submitted", where, id);
    if (runs == 0 && state == submitted && !reported)
      violation(
          "%s task %d lost: its go() returned, it never ran, and wait() "
          "reported no error",
          where, id);
    if (runs > finished)
      violation("%s task %d still running after wait() returned", where, id);
  }
}

// ---- the task bodies

struct finish_guard {
  task_record& r;
  ~finish_guard() { r.finished.fetch_add(1); }
};

errgroup::error nested(int id, const errgroup::context& ctx, bool context) {
  const int first = outer_tasks + id * inner_tasks;
  errgroup::error go_error;
  errgroup::error wait_error;
  bool reported = false;
  {
    std::optional<errgroup::group> inner;
    if (context)
      inner.emplace(ctx);  // may throw: the task fails with it
    else
      inner.emplace();
    inner->set_limit(1);
    for (int j = 0; j < inner_tasks; ++j) {
      task_record& r = g_tasks[first + j];
      try {
        inner_task f = make_task<inner_task>(first + j);
        if (j == 0) {  // the slot is free: try_go() starts it (copies)
          r.state.store(inner->try_go(f) ? submitted : not_started);
        } else if (j == 1) {
          inner->go(std::move(f));
          r.state.store(submitted);
        } else {
          inner->go(f);  // copies
          r.state.store(submitted);
        }
      } catch (...) {
        expect_failure(std::current_exception(), "nested go()");
        r.state.store(go_threw);
        if (!go_error) go_error = std::current_exception();
      }
    }
    try {
      wait_error = inner->wait();
      expect_reported(wait_error, "nested wait()");
      reported = static_cast<bool>(wait_error);
    } catch (...) {
      expect_failure(std::current_exception(), "nested wait()");
      wait_error = std::current_exception();
      reported = true;
    }
  }
  check_tasks(first, inner_tasks, reported, "nested");
  return go_error ? go_error : wait_error;
}

errgroup::error deadline(const errgroup::context& ctx) {
  auto [dc, cancel] = errgroup::with_timeout(ctx, 1ms);  // may throw
  if (!fired(dc))
    violation(
        "a 1 ms deadline did not fire within 5 s (the timer thread is not "
        "running?)");
  return {};
}

errgroup::error run_outer(int id, const errgroup::context& ctx) {
  scenario_thread();
  task_record& r = g_tasks[id];
  if (g_outer_waited.load())
    violation("task %d started after wait() returned", id);
  r.runs.fetch_add(1);
  finish_guard done{r};
  switch (id % 4) {
    case 1:
      return nested(id, ctx, /*context=*/true);
    case 3:
      return nested(id, ctx, /*context=*/false);
    default:
      return id % 50 == 0 ? deadline(ctx) : errgroup::error();
  }
}

void run_inner(int id) {
  scenario_thread();
  task_record& r = g_tasks[id];
  r.runs.fetch_add(1);
  r.finished.fetch_add(1);
}

void check_counters(const errgroup::group::stats& s) {
  long ran = 0;
  long admitted = 0;
  for (int id = 0; id < outer_tasks; ++id) {
    ran += g_tasks[id].runs.load();
    admitted += g_tasks[id].state.load() == submitted ? 1 : 0;
  }
  if (s.running != 0 || s.waiting != 0)
    violation("after wait(): counters() running=%lld waiting=%lld",
              static_cast<long long>(s.running),
              static_cast<long long>(s.waiting));
  if (s.submitted != s.succeeded + s.failed + s.skipped)
    violation(
        "after wait(): counters() submitted=%lld != succeeded=%lld + "
        "failed=%lld + skipped=%lld",
        static_cast<long long>(s.submitted),
        static_cast<long long>(s.succeeded), static_cast<long long>(s.failed),
        static_cast<long long>(s.skipped));
  if (s.succeeded + s.failed != ran)
    violation("counters() succeeded+failed=%lld but %ld tasks ran",
              static_cast<long long>(s.succeeded + s.failed), ran);
  if (s.submitted != admitted)
    violation("counters() submitted=%lld but %ld go() calls returned",
              static_cast<long long>(s.submitted), admitted);
}

// recover(): after the failure, the library still works. Twice (the failure
// may be in the first try): a 1 ms deadline fires (the timer thread runs, and
// no entry a failed deadline left behind trips it), and a fresh group runs
// all of its 8 tasks.
void recover() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      auto [dc, cancel] = errgroup::with_timeout(errgroup::context(), 1ms);
      if (!fired(dc))
        violation(
            "after the failure, a new 1 ms deadline did not fire within 5 s "
            "(the timer thread is not running?)");
    } catch (...) {
      expect_failure(std::current_exception(),
                     "with_timeout() after the failure");
    }
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    constexpr int tasks = 8;
    std::atomic<int> ran{0};
    int started = 0;
    errgroup::error err;
    try {
      errgroup::group g;
      for (; started < tasks; ++started) g.go([&ran] { ran.fetch_add(1); });
      err = g.wait();
    } catch (...) {
      expect_failure(std::current_exception(), "a group after the failure");
      continue;
    }
    if (ran.load() != started || err)
      violation("after the failure, a fresh group ran %d of %d tasks",
                ran.load(), started);
  }
}

}  // namespace scenario

using namespace scenario;

__attribute__((noinline)) void run_scenario() noexcept {
  set_stack_root(__builtin_return_address(0));
  try {
    errgroup::weighted sem{budget};  // outlives the group
    {
      auto [g, ctx] = errgroup::with_context(errgroup::context::background());
      g.set_limit(2);
      for (int id = 0; id < outer_tasks; ++id) {
        const std::int64_t units = 1 + id % 3;
        task_record& r = g_tasks[id];
        try {
          outer_task f = make_task<outer_task>(id);
          if (id % 2 == 0)
            g.go(sem, units, std::move(f));
          else
            g.go(sem, units, f);  // copies
          r.state.store(submitted);
        } catch (...) {
          expect_failure(std::current_exception(), "go()");
          r.state.store(go_threw);
          g_go_threw.fetch_add(1);
        }
      }
      bool reported = false;
      try {
        const errgroup::error err = g.wait();
        expect_reported(err, "wait()");
        reported = static_cast<bool>(err);
      } catch (...) {
        expect_failure(std::current_exception(), "wait()");
        reported = true;
      }
      g_outer_waited.store(true);
      g_wait_error.store(reported);
      check_tasks(0, outer_tasks, reported, "outer");
      check_counters(g.counters());
    }
    if (sem.available() != sem.size())
      violation("weighted: available()=%lld != size()=%lld after wait()",
                static_cast<long long>(sem.available()),
                static_cast<long long>(sem.size()));
  } catch (...) {
    // with_context(), set_limit() or the budget threw: nothing was started.
    expect_failure(std::current_exception(), "the scenario's setup");
    describe(std::current_exception(), g_stopped_by, sizeof g_stopped_by);
  }
  recover();
}

void check_after(long pool_blocks_before, long new_blocks_before,
                 long new_blocks_allowed) noexcept {
  // Background threads may still hold what they are about to let go (the
  // timer's reference to a node it just cancelled): wait for them, within a
  // bound. The pool blocks tracked are the scenario threads' own, given back
  // before wait() returns: no need to wait for those.
  const auto give_up = std::chrono::steady_clock::now() + 2s;
  for (;;) {
    const bool quiet =
        g_callables_alive.load() <= 0 &&
        errgroup::detail::node::live_nodes() <= 0 &&
        (new_blocks_allowed < 0 ||
         live_new_blocks() - new_blocks_before <= new_blocks_allowed);
    if (quiet || std::chrono::steady_clock::now() > give_up) break;
    std::this_thread::sleep_for(1ms);
  }
  if (const long n = g_callables_alive.load(); n > 0)
    violation("%ld task callables never destroyed (leaked tasks)", n);
  else if (n < 0)
    violation("%ld more task callables destroyed than made (twice?)", -n);
  if (const long n = errgroup::detail::node::live_nodes(); n > 0)
    violation("%ld context nodes alive after the scenario (leak)", n);
  else if (n < 0)
    violation(
        "node::live_nodes() is %ld after the scenario: a node was uncounted "
        "more often than counted",
        n);
  if (const long n = live_pool_blocks() - pool_blocks_before;
      live_pool_blocks() >= 0 && n != 0)
    violation(
        "%ld oneTBB small-object-pool block(s) (task memory) never given "
        "back (leak)",
        n);
  const long new_blocks = live_new_blocks() - new_blocks_before;
  if (new_blocks_allowed >= 0 && new_blocks > new_blocks_allowed)
    violation(
        "%ld operator new block(s) left behind, %ld more than a run without "
        "failures leaves (leak)",
        new_blocks, new_blocks - new_blocks_allowed);
}

int violation_count() noexcept { return g_violation_count.load(); }

void print_violations(int fd) noexcept {
  const int n = std::min(g_violation_count.load(), max_violations);
  for (int i = 0; i < n; ++i) {
    char line[violation_size + 16];
    const int len =
        std::snprintf(line, sizeof line, "violation: %s\n", g_violations[i]);
    if (len > 0)
      (void)!::write(fd, line,
                     std::min(static_cast<std::size_t>(len), sizeof line - 1));
  }
  if (g_violation_count.load() > max_violations) {
    char line[80];
    const int len = std::snprintf(line, sizeof line, "violation: (%d more)\n",
                                  g_violation_count.load() - max_violations);
    if (len > 0) (void)!::write(fd, line, static_cast<std::size_t>(len));
  }
}

const char* stopped_by() noexcept { return g_stopped_by; }

long progress() noexcept {
  long p = 0;
  for (const task_record& r : g_tasks) p += r.runs.load() + r.finished.load();
  return p;
}

bool in_timed_wait() noexcept { return g_timed_waits.load() > 0; }

void print_tally(int fd) noexcept {
  int ran = 0;
  for (const task_record& r : g_tasks) ran += r.runs.load();
  char line[120];
  const int len = std::snprintf(
      line, sizeof line, "tasks: ran=%d go_threw=%d wait_error=%d\n", ran,
      g_go_threw.load(), g_wait_error.load() ? 1 : 0);
  if (len > 0) (void)!::write(fd, line, static_cast<std::size_t>(len));
}

}  // namespace faultinj
