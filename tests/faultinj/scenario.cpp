// tests/faultinj/scenario.cpp: see scenario.hpp.
#include "scenario.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/node.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/results.hpp"
#include "errgroup/trace.hpp"
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

// start_task(id): a task of the workload's top group starts; its end is
// counted by a finish_guard on the record returned.
task_record& start_task(int id) {
  scenario_thread();
  task_record& r = g_tasks[id];
  if (g_outer_waited.load())
    violation("task %d started after wait() returned", id);
  r.runs.fetch_add(1);
  return r;
}

errgroup::error run_outer(int id, const errgroup::context& ctx) {
  finish_guard done{start_task(id)};
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

// submit(r, call, launch): launch() starts task r with a library call; a
// throw must be an allocation failure, and leaves r unstarted. launch()
// returns whether the task was started (try_go() may refuse).
template <class Launch>
void submit(task_record& r, const char* call, Launch launch) {
  try {
    r.state.store(launch() ? submitted : not_started);
  } catch (...) {
    expect_failure(std::current_exception(), call);
    r.state.store(go_threw);
    g_go_threw.fetch_add(1);
  }
}

// wait_outer(g, count) waits for the workload's top group, whose tasks are
// the first count records, checks what wait() gave and the tasks, and
// returns whether wait() reported an error.
bool wait_outer(errgroup::group& g, int count) {
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
  check_tasks(0, count, reported, "outer");
  return reported;
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

workload g_workload = workload::group;

// The workloads (scenario.hpp); each catches what its library calls throw.
void run_group();
void run_results();
void run_trace();

}  // namespace scenario

void select(workload w) noexcept { scenario::g_workload = w; }

const char* name(workload w) noexcept {
  switch (w) {
    case workload::group:
      return "group";
    case workload::results:
      return "results";
    case workload::trace:
      return "trace";
  }
  return "?";
}

using namespace scenario;

__attribute__((noinline)) void run_scenario() noexcept {
  set_stack_root(__builtin_return_address(0));
  switch (g_workload) {
    case workload::group:
      run_group();
      break;
    case workload::results:
      run_results();
      break;
    case workload::trace:
      run_trace();
      break;
  }
  recover();
}

namespace scenario {

void run_group() {
  try {
    errgroup::weighted sem{budget};  // outlives the group
    {
      auto [g, ctx] = errgroup::with_context(errgroup::context::background());
      g.set_limit(2);
      for (int id = 0; id < outer_tasks; ++id) {
        const std::int64_t units = 1 + id % 3;
        submit(g_tasks[id], "go()", [&] {
          outer_task f = make_task<outer_task>(id);
          if (id % 2 == 0)
            g.go(sem, units, std::move(f));
          else
            g.go(sem, units, f);  // copies
          return true;
        });
      }
      wait_outer(g, outer_tasks);
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
}

// ---- the typed results and the trace

constexpr int handle_tasks = 16;     // go_result(), then try_go_result()
constexpr int collected_tasks = 24;  // collector::go()
static_assert(handle_tasks + collected_tasks <= all_tasks);

// value_of(id) is what task id returns; making it allocates, in the task.
// is_value_of(v, id) checks a value without allocating.
constexpr std::size_t value_size = 8;
std::vector<int> value_of(int id) { return std::vector<int>(value_size, id); }
bool is_value_of(const std::vector<int>& v, int id) {
  return v.size() == value_size &&
         std::all_of(v.begin(), v.end(), [id](int x) { return x == id; });
}

// A value-returning task's callable. Its data is on the heap, so copying it
// allocates.
struct value_task {
  int id;
  alive a;
  std::vector<int> data;
  std::vector<int> operator()() const {
    finish_guard done{start_task(id)};
    return value_of(id);  // may throw: the task fails with it
  }
};

// check_ended(state, err, id, reported, where): after wait(), the handle of
// task id is not pending, its state agrees with whether the task ran, and
// a failure or a skip is one wait() reported.
void check_ended(errgroup::result_state state, const errgroup::error& err,
                 int id, bool reported, const char* where) {
  const int runs = g_tasks[id].runs.load();
  switch (state) {
    case errgroup::result_state::pending:
      violation("%s task %d: its handle is still pending after wait()", where,
                id);
      return;
    case errgroup::result_state::succeeded:
      if (runs != 1)
        violation("%s task %d: succeeded but ran %d times", where, id, runs);
      return;
    case errgroup::result_state::failed:
      if (runs != 1)
        violation("%s task %d: failed but ran %d times", where, id, runs);
      expect_reported(err, where);
      break;
    case errgroup::result_state::skipped:
      if (runs != 0)
        violation("%s task %d: skipped but ran %d times", where, id, runs);
      break;
  }
  if (!reported)
    violation("%s task %d did not succeed but wait() reported no error", where,
              id);
}

// The go_result() / try_go_result() handles, then a collector, on a context
// group with limit 2; then every handle and entry is checked, and the
// collector's values() taken.
void run_results() {
  try {
    auto [g, ctx] = errgroup::with_context(errgroup::context::background());
    g.set_limit(2);
    std::vector<errgroup::result<std::vector<int>>> handles;
    std::vector<int> entry_ids;  // the collector's entries, by task id
    {
      exempt_scope exempt;
      handles.reserve(handle_tasks);
      entry_ids.reserve(collected_tasks);
    }
    errgroup::collector<std::vector<int>> c(g);  // may throw
    for (int id = 0; id < handle_tasks + collected_tasks; ++id) {
      submit(g_tasks[id], "go_result() / collector", [&] {
        value_task f = make_task<value_task>(id);
        if (id < handle_tasks / 2) {
          handles.push_back(id % 2 == 0 ? errgroup::go_result(g, std::move(f))
                                        : errgroup::go_result(g, f));
          return true;
        }
        if (id < handle_tasks) {
          handles.push_back(errgroup::try_go_result(g, f));  // copies
          return handles.back().valid();
        }
        if (id % 2 == 0)
          c.go(std::move(f));
        else
          c.go(f);  // copies
        entry_ids.push_back(id);
        return true;
      });
    }
    const bool reported = wait_outer(g, handle_tasks + collected_tasks);

    // The handles: one per go_result() that returned and try_go_result()
    // that started its task, holding its task's value or its error.
    std::size_t h = 0;
    for (int id = 0; id < handle_tasks; ++id) {
      if (g_tasks[id].state.load() == go_threw) continue;
      const auto& res = handles.at(h++);
      if (!res.valid()) continue;  // try_go_result() found no free slot
      const auto state = res.state();
      if (state == errgroup::result_state::pending) {
        check_ended(state, {}, id, reported, "go_result");
        continue;
      }
      check_ended(state, res.err(), id, reported, "go_result");
      if (state == errgroup::result_state::succeeded &&
          !is_value_of(res.get(), id))
        violation("go_result task %d: get() is not the task's value", id);
    }
    if (h != handles.size())
      violation("%zu handles for %zu go_result() calls that returned",
                handles.size(), h);

    // The collector: an entry per go() that returned, in submission order.
    if (c.size() != entry_ids.size())
      violation("collector: size()=%zu but %zu go() calls returned", c.size(),
                entry_ids.size());
    bool all = c.size() == entry_ids.size();
    for (std::size_t i = 0; i < std::min(c.size(), entry_ids.size()); ++i) {
      const auto state = c.state(i);
      all = all && state == errgroup::result_state::succeeded;
      check_ended(state,
                  state == errgroup::result_state::pending ? errgroup::error()
                                                           : c.err(i),
                  entry_ids[i], reported, "collector");
    }
    try {
      const std::vector<std::vector<int>> values = c.values();
      if (!all)
        violation("collector: values() returned although an entry failed");
      for (std::size_t i = 0; i < values.size(); ++i)
        if (i >= entry_ids.size() || !is_value_of(values[i], entry_ids[i]))
          violation("collector: values()[%zu] is not its task's value", i);
    } catch (...) {
      // An entry failed (its error, as get() would throw it), or values()
      // could not allocate its vector.
      if (all)
        expect_failure(std::current_exception(), "collector::values()");
      else
        expect_reported(std::current_exception(), "collector::values()");
    }
  } catch (...) {
    // with_context(), set_limit() or the collector threw: nothing started.
    expect_failure(std::current_exception(), "the scenario's setup");
    describe(std::current_exception(), g_stopped_by, sizeof g_stopped_by);
  }
}

// occurrences(s, what) counts the occurrences of what in s.
long occurrences(const std::string& s, const char* what) {
  long n = 0;
  for (std::size_t at = s.find(what); at != std::string::npos;
       at = s.find(what, at + 1))
    ++n;
  return n;
}

// A traced context group with limit 2 runs labelled tasks (the outer tasks
// of the group workload: half nest an untraced group, one waits for a
// deadline); then every task must have a record, or
// be counted as lost, and write_chrome_json() must write an event for each
// record or throw.
void run_trace() {
  try {
    errgroup::trace t;  // outlives the groups
    errgroup::group::stats stats;
    bool traced = false;
    {
      auto [g, ctx] = errgroup::with_context(errgroup::context::background());
      g.set_limit(2);
      g.trace_to(t, "outer");  // may throw: the group is then not traced
      traced = true;
      constexpr int tasks = 40;
      for (int id = 0; id < tasks; ++id) {
        submit(g_tasks[id], "go(label, f)", [&] {
          outer_task f = make_task<outer_task>(id);
          if (id % 2 == 0)
            g.go("task", std::move(f));
          else
            g.go("task", f);  // copies
          return true;
        });
      }
      wait_outer(g, tasks);
      stats = g.counters();
    }
    if (!traced) return;
    // Every submitted task of the outer group has a record (ran or
    // skipped), or a lost() count. The nested groups are not traced.
    std::vector<errgroup::trace::task> records;
    {
      exempt_scope exempt;
      records = t.tasks();
    }
    const std::int64_t recorded =
        static_cast<std::int64_t>(records.size()) + t.lost();
    if (recorded != stats.submitted)
      violation(
          "trace: %zu records + %lld lost for %lld tasks submitted (a task "
          "neither recorded nor counted)",
          records.size(), static_cast<long long>(t.lost()),
          static_cast<long long>(stats.submitted));
    long ran = 0;
    for (const auto& rec : records)
      ran += rec.how == errgroup::trace::outcome::skipped ? 0 : 1;
    std::ostringstream out;
    try {
      t.write_chrome_json(out);
    } catch (...) {
      expect_failure(std::current_exception(), "write_chrome_json()");
      return;
    }
    exempt_scope exempt;
    const std::string json = out.str();
    if (out.good() && occurrences(json, R"("ph":"X")") != ran)
      violation("write_chrome_json(): %ld complete events for %ld tasks run",
                occurrences(json, R"("ph":"X")"), ran);
  } catch (...) {
    // trace(), with_context() or set_limit() threw: nothing started.
    expect_failure(std::current_exception(), "the scenario's setup");
    describe(std::current_exception(), g_stopped_by, sizeof g_stopped_by);
  }
}

}  // namespace scenario

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
