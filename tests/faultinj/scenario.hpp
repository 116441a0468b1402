// tests/faultinj/scenario.hpp: the workload errgroup_faultinj fails
// allocations in (scenario.cpp), and the invariants it checks.
#pragma once

namespace faultinj {

// The workloads run_scenario() can run.
enum class workload {
  group,    // groups, limits, a weighted budget, nested groups, deadlines
  results,  // go_result(), try_go_result(), collector<T> (results.hpp)
  trace,    // trace_to(), the trace's records, write_chrome_json()
};

// select(w) picks the workload (default: group); call it before
// run_scenario(). name(w) is its name on the command line.
void select(workload w) noexcept;
const char* name(workload w) noexcept;

// run_scenario() runs the selected workload once, from a process that has
// not used oneTBB or errgroup yet, then checks that the library still works
// (below). The group workload:
//   - errgroup::with_context(background), set_limit(2), a weighted budget of
//     4 units;
//   - 100 go(budget, 1..3, f), half of them with a callable that is copied
//     into the task (the copy allocates, so it may throw), half moved;
//   - the tasks: some create a nested group (a context group or a plain one,
//     set_limit(1)), start 3 tasks in it with try_go() and go() and wait
//     for it; two wait for a 1 ms deadline to fire (the timer thread; within
//     5 s); the rest return;
//   - wait();
// The results workload: a context group with limit 2; 8 go_result() (half
// with a copied callable), 8 try_go_result() and 24 collector::go() of tasks
// that return a std::vector<int> (making it allocates, in the task); wait();
// then no handle or entry may be pending, one that did not succeed must be
// an error wait() reported, get() and values() must give each task's value
// (or values() an allocation failure or the first failed entry's error).
// The trace workload: a context group with limit 2 traced with trace_to()
// runs 40 labelled tasks of the group workload's kind; wait(); then every
// submitted task has a record in tasks() or is counted by lost(), and
// write_chrome_json() throws an allocation failure or writes a complete
// event per record of a task that ran.
// After any workload, to see that the library still works after the
// failure, twice each: a new 1 ms deadline must fire, and a fresh plain
// group must run its 8 tasks.
// An exception thrown by a library call is caught where the harness made the
// call: an allocation failure must surface as std::bad_alloc or
// std::system_error; any other exception is a violation. Violations are
// recorded (violations()), not thrown. Returns normally even when the
// scenario stopped early (e.g. with_context threw); stopped_by() says why.
void run_scenario() noexcept;

// check_after() checks what must hold once the scenario has returned and the
// process is quiet: no callable left alive, no context node left alive, no
// oneTBB pool block and no operator new block more than before (when
// new_blocks_allowed >= 0: the scenario may leave that many behind, the
// library's process-wide singletons). It waits up to a bound for background
// threads (the library's service thread, oneTBB workers) to let go first.
void check_after(long pool_blocks_before, long new_blocks_before,
                 long new_blocks_allowed) noexcept;

// Every violation found so far, one a line, each "violation: ...\n".
int violation_count() noexcept;
void print_violations(int fd) noexcept;

// progress() moves whenever a task starts or finishes.
long progress() noexcept;

// in_timed_wait() reports whether a thread waits for a deadline to fire:
// a bounded wait (5 s) that reports a violation itself when it runs out.
bool in_timed_wait() noexcept;

// What stopped the scenario early (a library call that threw), or "".
const char* stopped_by() noexcept;

// How many tasks ran, how many go() calls threw, whether wait() reported an
// error: "tasks: ran=R go_threw=T wait_error=0|1".
void print_tally(int fd) noexcept;

}  // namespace faultinj
