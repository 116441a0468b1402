// errgroup/group.hpp
//
// errgroup::group runs tasks that are parts of one job on oneTBB, waits for
// all of them and returns the first error: Go's errgroup.Group. A group made
// with a context (errgroup::with_context) also cancels its context on the
// first failure, so the other tasks can stop early, and tasks that have not
// started by then are skipped. set_limit() bounds how many tasks run at once.
//
// Example (full program: samples/crawler.cpp):
//   errgroup::group g(crawl, io);          // a context group, as with_context
//   g.set_limit(jobs);
//   for (page& p : level)
//     g.go([&p](const errgroup::context& c) { fetch(c, p); });  // may throw
//   if (errgroup::error err = g.wait()) std::cerr << err.message() << '\n';
//
// Exceptions: a task that throws has failed with the thrown exception as its
// error; nothing escapes a task, and wait() returns errors, never throws
// them. Misuse (see each member) throws at once.
//
// Blocking never ties up a oneTBB worker: go() at the limit suspends the
// calling task (oneTBB resumable tasks) and the thread runs other tasks
// meanwhile; past a cap on suspended tasks it queues the task instead and
// returns. A thread outside oneTBB blocks without spinning. Nested groups and
// tasks that call go() on their own group never deadlock, on any arena size;
// oneTBB work nested in a task of the group (the bodies of a parallel_for
// it runs) counts as that task.
//
// Inside oneTBB work: a group made while the calling thread runs a oneTBB
// task belongs to that task's work, as a default tbb::task_group_context
// does (and must not outlive it): when that work is cancelled, the group's
// tasks that have not started are skipped, its context (if any) is
// cancelled, and wait() returns cancelled_error unless a task error came
// first. errgroup::isolated opts out. docs/design.md has the details.
//
// Difference from Go: a go() from outside the group's tasks makes sure a
// thread wakes up for its task (oneTBB's spawn alone does not promise it),
// so a started task runs even if nobody waits, whenever oneTBB may run a
// thread for it (not in an arena whose only slot is reserved for you).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/task.hpp"
#include "errgroup/detail/traced.hpp"
#include "errgroup/error.hpp"
#include "errgroup/scheduler.hpp"

namespace errgroup {

struct group_and_context;
class trace;

class group {
 public:
  // group() is Go's zero Group: no limit, never cancels, runs every task and
  // records the first error. Its tasks run on the default scheduler.
  group() : group(scheduler::default_scheduler()) {}
  explicit group(scheduler& s);
  // group(isolated, s) is group(s) that belongs to no oneTBB work.
  explicit group(isolated_t, scheduler& s = scheduler::default_scheduler());

  // group(parent, s) is a context group: it derives its own context from
  // parent (see get_context()).
  explicit group(const context& parent,
                 scheduler& s = scheduler::default_scheduler());
  group(isolated_t, const context& parent,
        scheduler& s = scheduler::default_scheduler());

  // ~group() waits for every task (as wait() does), never throws and never
  // terminates, also when a task failed and nobody called wait(). Destroyed
  // while an exception thrown after its construction propagates, a context
  // group first cancels its context (cause cancelled_error), as
  // ~tbb::task_group and std::jthread do.
  ~group();
  group(const group&) = delete;
  group& operator=(const group&) = delete;

  // get_context() returns the group's context: cancelled by the first task
  // error (cause: that error), by the parent, by a deadline, by the oneTBB
  // work it belongs to, or when wait() returns (cause: cancelled_error). A
  // plain group returns background.
  context get_context() const;

  // set_limit(n) lets at most n tasks of this group be active at once; n < 0
  // removes the limit. n == 0 is accepted: then try_go() returns false and
  // go() throws std::logic_error. Throws std::logic_error
  // "errgroup: modify limit while N tasks in the group are still active".
  // On cancellation, tasks waiting for a slot are dropped in one pass. A
  // context group without a limit likewise holds back all but 64 queued
  // tasks per thread and drops those in one pass; oneTBB skips the rest one
  // by one (10,000 queued, 2 threads: ~0.15 ms to wait()'s return).
  void set_limit(int n);

  // go(f) starts f as a task. f is callable as f() or f(const context&) and
  // returns void, error, std::error_code or std::exception_ptr; a throw is
  // its error. With a limit, go() first waits for a slot, first come, first
  // served: on a oneTBB thread the calling task is suspended (past a cap, or
  // from the group's own work, f is queued and go() returns); other threads
  // block. On a context group a waiting go() gives up when the context is
  // cancelled, and a go() after cancellation starts nothing: f is destroyed
  // uninvoked and counts as skipped. Throws std::logic_error when the limit
  // is 0, or on a context group after its wait() returned; std::bad_alloc,
  // or what copying f throws, with nothing started and nothing held. A
  // started task runs even if nobody waits (see the top).
  template <class F>
  void go(F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    if (has_context_ && skip_cancelled()) return;  // f dropped, no task
    submit(make_task(std::forward<F>(f)), nullptr, 0);
  }

  // try_go(f) starts f only if a slot is free now and nobody waits for one,
  // and reports whether it started. Never blocks. Returns false on a
  // cancelled context group. Throws as go() does (then nothing is held).
  template <class F>
  bool try_go(F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    return try_start(nullptr, 0, std::forward<F>(f));
  }

  // go(b, n, f) is go(f) for a task that also holds n units of budget b
  // (an errgroup::weighted) while it runs. It waits for a slot, then for the
  // units, in FIFO order, as go() waits; the units come back on every path:
  // return, throw, or skip. Throws std::invalid_argument when n < 0 or
  // n > b.size().
  template <detail::budget B, class F>
  void go(B& b, std::int64_t n, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    check_units(b.gate(), n);
    submit(make_task(std::forward<F>(f)), &b.gate(), n);
  }

  // try_go(b, n, f) starts f only if a slot and n units are free now.
  template <detail::budget B, class F>
  bool try_go(B& b, std::int64_t n, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    check_units(b.gate(), n);
    return try_start(&b.gate(), n, std::forward<F>(f));
  }

  // go_until(t, f) is go(f) that gives up waiting for a slot (and units) at
  // time t (Go #27837); it returns by t whatever the tasks do: the waiting
  // thread runs none of them. Returns no error when f was admitted; else f
  // is destroyed uninvoked, not counted as submitted, and the error says
  // why: deadline_exceeded_error when t passed first, the context's err()
  // when the group's context was cancelled. It never queues: from a task of
  // this group it waits too (the deadline bounds the wait). Throws as go().
  template <class F>
  error go_until(std::chrono::steady_clock::time_point t, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    return submit_until(make_task(std::forward<F>(f)), t);
  }

  // wait() waits until every task has finished or been skipped, then returns
  // the first task error; otherwise, if a task was skipped, the context's
  // cause(); otherwise no error. The calling thread runs the group's tasks
  // meanwhile (and only those: oneTBB work isolation). On a context group it
  // then cancels the context. May be called again, and from several threads;
  // returns the same error. Tasks may call go() while wait() runs. Throws
  // std::logic_error when called from a task of this group (or from oneTBB
  // work nested in one); never throws a task's exception.
  //
  // Memory ordering: everything a task did happens before wait() returns
  // (each task's end is a release on the group's counter; wait() acquires).
  error wait();

  // ---- extras: observing a group ----

  // go(label, f) is go(f) for a task that running() reports by its label
  // while it runs: which tasks hold the slots, and for how long.
  template <class F>
  void go(std::string label, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    if (has_context_ && skip_cancelled(label)) return;  // f dropped, no task
    auto fn = labelled(label, std::forward<F>(f));
    submit(make_task(std::move(fn), std::move(label)), nullptr, 0);
  }

  // running_task is a labelled task that is running now.
  struct running_task {
    std::string label;
    std::chrono::steady_clock::duration elapsed;
  };
  // running() returns the labelled tasks running now, longest first.
  std::vector<running_task> running() const;

  // stats is a snapshot of the group's counters.
  struct stats {
    std::int64_t submitted = 0;  // go()/try_go() calls that admitted a task
    std::int64_t running = 0;    // invoked and not yet returned
    std::int64_t waiting = 0;    // waiting for a slot or units
    std::int64_t succeeded = 0;
    std::int64_t failed = 0;
    std::int64_t skipped = 0;  // never invoked (cancelled first)
    std::int64_t peak = 0;     // most tasks running at once
  };
  // counters() returns the counters; lock-free, safe from any thread.
  stats counters() const noexcept;

  // on_progress(cb, every) calls cb(counters()) from a finishing task at
  // most once per `every` (and never concurrently with itself), for progress
  // lines. cb must not throw or block. Set it before the first go().
  void on_progress(std::function<void(const stats&)> cb,
                   std::chrono::steady_clock::duration every);

  // task_error is one task's error: root_cause is true when the task failed
  // before the group's context was cancelled (a cause), false when it failed
  // after (typically because of the cancellation: induced).
  struct task_error {
    error err;
    bool root_cause;
  };
  // keep_errors() makes the group keep every task error, not only the first;
  // call it before the first go(). errors() returns them in the order they
  // were recorded. Safe from any thread. keep_errors(), on_progress() and
  // the first labelled go() may throw std::bad_alloc (their state is made
  // on first use, so groups that use no extra carry none).
  void keep_errors();
  std::vector<task_error> errors() const;

  // trace_to(t, name) records every task of this group into t from now on
  // (errgroup/trace.hpp), under the group name `name` ("group N" when
  // empty). Call it while no task is active (as set_limit()); throws
  // std::logic_error otherwise, std::bad_alloc. t must outlive the group.
  // An untraced group pays one predictable branch per go() for this.
  void trace_to(trace& t, std::string name = {});

  // stall_report says what holds a stalled group up: the labelled tasks
  // running now (longest first), how many tasks run (labelled or not) and
  // wait for a slot or units, and for how long no task has finished (or,
  // if later, since tasks began to wait).
  struct stall_report {
    std::vector<running_task> holding;
    std::int64_t running = 0;
    std::int64_t waiting = 0;
    std::chrono::steady_clock::duration since_last_finish{};
  };
  // on_stall(cb, after) calls cb once per stall: when tasks wait for a slot
  // or units and no task of the group has finished for `after`. After a
  // task finishes, the next stall is reported again. cb runs on the
  // library's service thread, with no lock of the group held; it may call
  // running() and counters(), must not throw (its exception is dropped) and
  // should not block long: it delays the library's deadlines. Call it while
  // no task is active; throws std::logic_error otherwise,
  // std::invalid_argument when after <= 0, std::bad_alloc. The group checks
  // only while tasks wait (a timer on the service thread), and ~group()
  // removes the check.
  void on_stall(std::function<void(const stall_report&)> cb,
                std::chrono::steady_clock::duration after);

 private:
  friend struct group_and_context;
  friend group_and_context with_context(const context&, scheduler&);
  friend group_and_context with_context(isolated_t, const context&, scheduler&);

  group(std::shared_ptr<detail::node> n, bool has_context, scheduler& s);
  detail::group_state& state() noexcept;
  const detail::group_state& state() const noexcept;

  // make_task(f[, label]) makes f's task; a traced group's wraps f.
  template <class F>
  detail::group_task& make_task(F&& f) {
    detail::trace_sink* const sink = tracer_.load(std::memory_order_acquire);
    if (sink != nullptr) [[unlikely]]
      return build<detail::traced<std::decay_t<F>>>(*sink, std::string(),
                                                    std::forward<F>(f));
    return build<std::decay_t<F>>(std::forward<F>(f));
  }
  template <class F>
  detail::group_task& make_task(F&& f, std::string label) {
    detail::trace_sink* const sink = tracer_.load(std::memory_order_acquire);
    if (sink != nullptr) [[unlikely]]
      return build<detail::traced<std::decay_t<F>>>(*sink, std::move(label),
                                                    std::forward<F>(f));
    return build<std::decay_t<F>>(std::forward<F>(f));
  }
  template <class D, class... A>
  detail::group_task& build(A&&... a) {
    const detail::new_block b =
        detail::new_task(state(), sizeof(D), alignof(D), detail::ops_of<D>);
    try {
      ::new (b.callable) D(std::forward<A>(a)...);
    } catch (...) {
      detail::unconstructed(b.task);
      throw;
    }
    return b.task;
  }
  template <class F>
  bool try_start(detail::gate* budget, std::int64_t n, F&& f) {
    if (!try_take(budget, n)) return false;
    detail::group_task* t = nullptr;
    try {
      t = &make_task(std::forward<F>(f));
    } catch (...) {
      give_back(budget, n);
      throw;
    }
    launch(*t, budget, n);
    return true;
  }
  template <class F>
  auto labelled(std::string label, F&& f);
  struct tracker {
    group* g;
    void* it;
    tracker(group& grp, std::string label);
    ~tracker();
    tracker(const tracker&) = delete;
    tracker& operator=(const tracker&) = delete;
  };

  static void check_units(detail::gate& g, std::int64_t n);
  bool skip_cancelled();
  bool skip_cancelled(const std::string& label);
  void submit(detail::group_task& t, detail::gate* budget, std::int64_t n);
  error submit_until(detail::group_task& t,
                     std::chrono::steady_clock::time_point deadline);
  bool try_take(detail::gate* budget, std::int64_t n) noexcept;
  void give_back(detail::gate* budget, std::int64_t n) noexcept;
  void launch(detail::group_task& t, detail::gate* budget, std::int64_t n);

  // The trace this group records into (trace_to), or null: read by go().
  std::atomic<detail::trace_sink*> tracer_{nullptr};
  // A context group (only those skip a go() after cancellation): read by go().
  const bool has_context_;
  // The group's state (group/group_state.hpp), in place: no allocation.
  static constexpr std::size_t state_size = 960;
  alignas(64) unsigned char state_[state_size];
};

// The result of with_context: auto [g, ctx] = errgroup::with_context(parent);
struct group_and_context {
  group g;
  context ctx;
};

// with_context(parent, s) returns a new context group and its context
// (Go's errgroup.WithContext).
group_and_context with_context(const context& parent,
                               scheduler& s = scheduler::default_scheduler());
// with_context(isolated, parent, s): the group belongs to no oneTBB work.
group_and_context with_context(isolated_t, const context& parent,
                               scheduler& s = scheduler::default_scheduler());

template <class F>
auto group::labelled(std::string label, F&& f) {
  return [this, label = std::move(label),
          fn = std::forward<F>(f)](const context& ctx) mutable {
    tracker t(*this, label);
    return detail::invoke_with(fn, ctx);
  };
}

}  // namespace errgroup
