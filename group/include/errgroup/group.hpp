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
// error; nothing escapes a task. Misuse (see each member) throws at once.
//
// Blocking never ties up a oneTBB worker: go() at the limit suspends the
// calling task (oneTBB resumable tasks) and the thread runs other tasks
// meanwhile; past a cap on suspended tasks it queues the task instead and
// returns. A thread outside oneTBB blocks without spinning. Nested groups and
// tasks that call go() on their own group never deadlock, on any arena size.
#pragma once

#include <oneapi/tbb/detail/_small_object_pool.h>
#include <oneapi/tbb/detail/_task.h>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/gate.hpp"
#include "errgroup/error.hpp"
#include "errgroup/scheduler.hpp"

namespace errgroup {

class group;
struct group_and_context;

namespace detail {

// What a task may return.
template <class R>
concept task_result = std::is_void_v<R> || std::same_as<R, error> ||
    std::same_as<R, std::error_code> || std::same_as<R, std::exception_ptr>;

template <class F>
concept takes_context = std::is_invocable_v<F&, const context&>;

template <class F>
using task_result_t =
    typename std::conditional_t<takes_context<F>,
                                std::invoke_result<F&, const context&>,
                                std::invoke_result<F&>>::type;

template <class F>
constexpr bool check_task() {
  static_assert(takes_context<F> || std::is_invocable_v<F&>,
                "errgroup: a task must be callable as f() or "
                "f(const errgroup::context&)");
  if constexpr (takes_context<F> || std::is_invocable_v<F&>)
    static_assert(task_result<task_result_t<F>>,
                  "errgroup: a task must return void, errgroup::error, "
                  "std::error_code or std::exception_ptr");
  return true;
}

// Something that group::go(budget, n, f) can take units from:
// errgroup::weighted, or any type with gate() returning detail::gate&.
template <class B>
concept budget = requires(B& b) {
  { b.gate() } -> std::same_as<gate&>;
};

class task_base;

// admission_waiter queues a task at a gate when its producer must not block.
class admission_waiter final : public waiter {
 public:
  explicit admission_waiter(task_base& t) noexcept : waiter(0), task_(&t) {}
  void wake() noexcept override;

 private:
  task_base* task_;
};

// task_base is the part of a group's task that does not depend on the
// callable: admission state and the hooks the group needs.
class task_base : public tbb::detail::d1::task {
 public:
  explicit task_base(group& g) noexcept : group_(&g), waiter_(*this) {}

  // destroy() destroys the callable without invoking it and frees the task.
  virtual void destroy(const tbb::detail::d1::execution_data* ed) noexcept = 0;

 protected:
  tbb::detail::d1::task* cancel(tbb::detail::d1::execution_data& ed) override;
  friend class errgroup::group;
  friend class admission_waiter;

  struct canceller {
    task_base* task;
    void operator()() const noexcept;
  };

  group* group_;
  gate* units_gate_ = nullptr;  // weighted admission, or null
  std::int64_t units_ = 0;
  int stage_ = 0;  // 0: needs a slot, 1: needs units, 2: admitted
  bool holds_slot_ = false;
  bool holds_units_ = false;
  gate* waiting_at_ = nullptr;
  std::atomic<int> handshake_{0};
  admission_waiter waiter_;
  std::optional<std::stop_callback<canceller>> cancel_cb_;
};

template <class F>
class task final : public task_base {
 public:
  template <class G>
  task(group& g, tbb::detail::d1::small_object_allocator alloc, G&& f)
      : task_base(g), alloc_(alloc), f_(std::forward<G>(f)) {}

  tbb::detail::d1::task* execute(tbb::detail::d1::execution_data& ed) override;
  void destroy(const tbb::detail::d1::execution_data* ed) noexcept override {
    auto alloc = alloc_;
    this->~task();
    if (ed != nullptr)
      alloc.deallocate(this, *ed);
    else
      alloc.deallocate(this);
  }

 private:
  error invoke(const context& ctx) noexcept {
    try {
      using R = task_result_t<F>;
      if constexpr (takes_context<F>) {
        if constexpr (std::is_void_v<R>)
          f_(ctx);
        else
          return error(f_(ctx));
      } else {
        if constexpr (std::is_void_v<R>)
          f_();
        else
          return error(f_());
      }
    } catch (...) {
      return error(std::current_exception());
    }
    return {};
  }

  tbb::detail::d1::small_object_allocator alloc_;
  F f_;
};

}  // namespace detail

class group {
 public:
  // group() is Go's zero Group: no limit, never cancels, runs every task and
  // records the first error. Its tasks run on the default scheduler.
  group() : group(scheduler::default_scheduler()) {}
  explicit group(scheduler& s);

  // group(parent, s) is a context group: it derives its own context from
  // parent (see get_context()).
  explicit group(const context& parent,
                 scheduler& s = scheduler::default_scheduler());

  // ~group() waits for every task (as wait() does), never throws and never
  // terminates, also when a task failed and nobody called wait().
  ~group();
  group(const group&) = delete;
  group& operator=(const group&) = delete;

  // get_context() returns the group's context: cancelled by the first task
  // error (cause: that error), by the parent, by a deadline, or when wait()
  // returns (cause: cancelled_error). A plain group returns background.
  context get_context() const { return ctx_; }

  // set_limit(n) lets at most n tasks of this group be active at once; n < 0
  // removes the limit. n == 0 is accepted: then try_go() returns false and
  // go() throws std::logic_error. Throws std::logic_error
  // "errgroup: modify limit while N tasks in the group are still active".
  // Cancellation is fastest with a limit: tasks waiting for a slot are
  // dropped in one pass (10,000 queued: ~0.14 ms), while without one every
  // task is already in oneTBB's queues, which skips them one by one (~1.5 ms).
  void set_limit(int n);

  // go(f) starts f as a task. f is callable as f() or f(const context&) and
  // returns void, error, std::error_code or std::exception_ptr; a throw is
  // its error. With a limit, go() first waits for a slot, first come, first
  // served: on a oneTBB thread the calling task is suspended (past a cap, f is
  // queued and go() returns); other threads block. On a context group a
  // waiting go() gives up when the context is cancelled, and a go() after
  // cancellation starts nothing: f is destroyed uninvoked and counts as
  // skipped. Throws std::logic_error when the limit is 0, or on a context
  // group after its wait() returned. A started task runs even if nobody
  // waits: oneTBB's spawn alone does not promise that (its wake-up check is
  // racy), so a go() from outside the group's tasks makes sure a thread
  // wakes up for it (detail::nudge; within about a millisecond).
  template <class F>
  void go(F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    if (skip_cancelled()) return;  // f is dropped without a task
    submit(make_task(std::forward<F>(f)));
  }

  // try_go(f) starts f only if a slot is free now and nobody waits for one,
  // and reports whether it started. Never blocks. Returns false on a
  // cancelled context group.
  template <class F>
  bool try_go(F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    if (!try_take(nullptr, 0)) return false;
    launch(make_task(std::forward<F>(f)), nullptr, 0);
    return true;
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
    detail::task_base& t = make_task(std::forward<F>(f));
    t.units_gate_ = &b.gate();
    t.units_ = n;
    submit(t);
  }

  // try_go(b, n, f) starts f only if a slot and n units are free now.
  template <detail::budget B, class F>
  bool try_go(B& b, std::int64_t n, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    check_units(b.gate(), n);
    if (!try_take(&b.gate(), n)) return false;
    launch(make_task(std::forward<F>(f)), &b.gate(), n);
    return true;
  }

  // go_until(t, f) is go(f) that gives up waiting for a slot (and units) at
  // time t (Go #27837). Returns no error when f was admitted; else f is
  // destroyed uninvoked, not counted as submitted, and the error says why:
  // deadline_exceeded_error when t passed first, the context's err() when the
  // group's context was cancelled. It never queues: from a task of this
  // group it waits too (the deadline bounds the wait). Throws as go() does.
  template <class F>
  error go_until(std::chrono::steady_clock::time_point t, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    return submit_until(make_task(std::forward<F>(f)), t);
  }

  // go(label, f) is go(f) for a task that running() reports by its label
  // while it runs: which tasks hold the slots, and for how long.
  template <class F>
  void go(std::string label, F&& f) {
    static_assert(detail::check_task<std::decay_t<F>>());
    go(labelled(std::move(label), std::forward<F>(f)));
  }

  // running_task is a labelled task that is running now.
  struct running_task {
    std::string label;
    std::chrono::steady_clock::duration elapsed;
  };
  // running() returns the labelled tasks running now, longest first.
  std::vector<running_task> running() const;

  // wait() waits until every task has finished or been skipped, then returns
  // the first task error; otherwise, if a task was skipped, the context's
  // cause(); otherwise no error. The calling thread runs the group's tasks
  // meanwhile (and only those: oneTBB work isolation). On a context group it
  // then cancels the context. May be called again, and from several threads;
  // returns the same error. Tasks may call go() while wait() runs. Throws
  // std::logic_error when called from a task of this group.
  //
  // Memory ordering: everything a task did happens before wait() returns
  // (each task's end is a release on the group's counter; wait() acquires).
  error wait();

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
  // were recorded. Safe from any thread.
  void keep_errors() noexcept { keep_errors_ = true; }
  std::vector<task_error> errors() const;

 private:
  friend struct group_and_context;
  friend group_and_context with_context(const context&, scheduler&);
  friend class detail::task_base;
  friend class detail::admission_waiter;
  template <class F>
  friend class detail::task;

  group(std::shared_ptr<detail::node> n, bool has_context, scheduler& s);

  template <class F>
  detail::task_base& make_task(F&& f) {
    tbb::detail::d1::small_object_allocator alloc;
    return *alloc.new_object<detail::task<std::decay_t<F>>>(*this, alloc,
                                                            std::forward<F>(f));
  }

  static void check_units(detail::gate& g, std::int64_t n);
  // skip_cancelled() counts a go() on a cancelled context group as submitted
  // and skipped, and reports whether it did (misuse still throws).
  bool skip_cancelled();
  // try_take() takes a slot and units for try_go(), all or nothing.
  bool try_take(detail::gate* units_gate, std::int64_t n) noexcept;
  // launch() starts t, which holds what try_take() took.
  void launch(detail::task_base& t, detail::gate* units_gate,
              std::int64_t n) noexcept;
  // enter() throws (destroying t) on misuse, else counts t in and returns
  // the limit; count_in() makes wait() cover one more task.
  int enter(detail::task_base& t);
  void count_in() noexcept;
  // active(): tasks submitted and not done, or waiting to be (counters()).
  std::int64_t active() const noexcept;
  static void clear_nudge(void* self) noexcept;
  void submit(detail::task_base& t);
  error submit_until(detail::task_base& t,
                     std::chrono::steady_clock::time_point deadline);
  template <class F>
  auto labelled(std::string label, F&& f);
  struct tracker;
  // admit() takes what t still needs and reports whether t is admitted now;
  // false: t was queued (admission goes on when woken) or skipped.
  // With bound (go_until), waits end when bound is cancelled, never queue,
  // and a task that gives up is abandoned (gave_up set) rather than skipped.
  bool admit(detail::task_base& t, bool may_block,
             const context* bound = nullptr, bool* gave_up = nullptr);
  void abandon(detail::task_base& t) noexcept;
  void progress() noexcept;
  void on_admission(detail::task_base& t) noexcept;
  void spawn(detail::task_base& t) noexcept;
  void start() noexcept;
  void finish(bool held_slot, detail::gate* units_gate, std::int64_t units,
              error e, bool skipped) noexcept;
  void skip(detail::task_base& t,
            const tbb::detail::d1::execution_data* ed) noexcept;
  void record(error e) noexcept;
  // in_own_task() reports whether the calling code runs in a task of this
  // group (the innermost oneTBB task on this thread is one of ours).
  bool in_own_task() const noexcept;

  scheduler* sched_;
  std::shared_ptr<detail::node> node_;
  context ctx_;
  bool has_context_;
  std::atomic<int> limit_{-1};
  std::atomic<bool> waited_{false};
  std::atomic<bool> has_error_{false};

  // Producers and finishing tasks share this line (as with oneTBB's own
  // wait_context); running tasks count themselves on the next one. A task
  // is counted submitted (by one_submitted) when it is spawned or skipped,
  // and done (succeeded, failed or skipped) before the group stops waiting
  // for it. Bit 0 of submitted is the nudge flag (see spawn()).
  static constexpr std::int64_t nudge_bit = 1;
  static constexpr std::int64_t one_submitted = 2;
  struct alignas(64) hot {
    tbb::detail::d1::wait_context wait{0};
    std::atomic<std::int64_t> submitted{0};
  } hot_;
  detail::nudge nudge_{this, &clear_nudge};
  struct alignas(64) run_counts {
    std::atomic<std::int64_t> running{0};
    std::atomic<std::int64_t> peak{0};
    std::atomic<std::int64_t> succeeded{0};
  } run_;
  std::atomic<std::int64_t> waiting_{0};
  std::atomic<std::int64_t> failed_{0};
  std::atomic<std::int64_t> skipped_{0};
  detail::gate slots_{0};
  // On a context group: when the context is cancelled, every task queued
  // for a slot is woken as cancelled (and skipped) in one pass.
  struct cancel_queued {
    group* g;
    void operator()() const noexcept;
  };
  std::optional<std::stop_callback<cancel_queued>> cancel_all_;
  mutable std::mutex mu_;
  error first_;  // guarded by mu_
  bool keep_errors_ = false;
  std::vector<task_error> errors_;  // guarded by mu_
  std::list<std::pair<std::string, std::chrono::steady_clock::time_point>>
      labelled_;  // guarded by mu_
  struct progress_state {
    std::function<void(const stats&)> cb;
    std::chrono::steady_clock::duration every{};
    std::atomic<std::int64_t> next{0};  // steady_clock ticks
  };
  std::unique_ptr<progress_state> progress_;
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

// ---- implementation ----

struct group::tracker {
  group* g;
  std::list<std::pair<std::string,
                      std::chrono::steady_clock::time_point>>::iterator it;
  tracker(group& grp, std::string label);
  ~tracker();
  tracker(const tracker&) = delete;
  tracker& operator=(const tracker&) = delete;
};

template <class F>
auto group::labelled(std::string label, F&& f) {
  return [this, label = std::move(label),
          fn = std::forward<F>(f)](const context& ctx) mutable {
    tracker t(*this, label);
    if constexpr (detail::takes_context<std::decay_t<F>>)
      return fn(ctx);
    else
      return fn();
  };
}

namespace detail {

template <class F>
tbb::detail::d1::task* task<F>::execute(tbb::detail::d1::execution_data& ed) {
  group& g = *group_;
  if (g.has_context_ && g.node_->cancelled()) {
    g.skip(*this, &ed);
    return nullptr;
  }
  g.start();
  error e = invoke(g.ctx_);
  const bool held_slot = holds_slot_;
  gate* units_gate = holds_units_ ? units_gate_ : nullptr;
  const std::int64_t units = units_;
  destroy(&ed);  // captures are released before the slot is handed on
  g.finish(held_slot, units_gate, units, std::move(e), false);
  return nullptr;
}

}  // namespace detail
}  // namespace errgroup
