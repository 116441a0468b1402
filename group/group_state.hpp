// group/group_state.hpp: the state and the tasks of a group. Private to the
// group module (not installed): the only place that knows oneTBB's task
// layer (tbb::detail::d1). docs/design.md tells how a task flows.
//
// A task is one block from oneTBB's small-object pool: a group_task (the
// oneTBB task, its admission and what it holds) followed by the callable,
// which the header's go() constructs there (detail::new_task).
#pragma once

#include <oneapi/tbb/detail/_small_object_pool.h>
#include <oneapi/tbb/detail/_task.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "errgroup/detail/gate.hpp"
#include "errgroup/detail/node.hpp"
#include "errgroup/group.hpp"
#include "errgroup/trace.hpp"

namespace errgroup::detail {

// The part of oneTBB's task layer used here (d1::task, execution_data,
// wait_context, small_object_pool, r1::allocate/deallocate, d1::spawn,
// d1::wait) is declared alike from 2021.5 through 2023.1: 2022.0 moved
// task_group to d2 and added wait-tree vertices beside wait_context, but left
// these in d1. .ci/tbb-versions.sh builds and tests against both ends.
namespace d1 = tbb::detail::d1;

class group_state;
class group_task;

// admission_waiter queues a task at a gate when its producer must not block.
class admission_waiter final : public waiter {
 public:
  explicit admission_waiter(group_task& t) noexcept : waiter(0), task_(&t) {}
  void wake() noexcept override;

 private:
  group_task* task_;
};

// What a task needs next before it may run: a slot of the group's limit,
// then units of a budget; then it is admitted.
enum class stage : std::uint8_t { slot, units, admitted };

// holdings is what an admitted (or half-admitted) task holds: its slot and
// its units. release() gives them back, units first.
struct holdings {
  bool slot = false;
  gate* units_gate = nullptr;  // non-null: holds `units` of it
  std::int64_t units = 0;
  void release(gate& slots) const noexcept {
    if (units_gate != nullptr) units_gate->release(units);
    if (slot) slots.release(1);
  }
};

// Its fields are packed: with the callable it must fit oneTBB's
// small-object pool (blocks up to 256 bytes; a larger one is a malloc per
// task), so group_task is three cache lines and a callable of up to 64
// bytes fits beside it.
class group_task final : public d1::task {
 public:
  group_task(group_state& g, const task_ops& ops, std::uint32_t block) noexcept
      : group_(&g), ops_(&ops), block_(block), waiter_(*this) {}

  // The callable, constructed right after this object (at offset()).
  static std::size_t offset(std::size_t align) noexcept {
    return (sizeof(group_task) + align - 1) / align * align;
  }
  void* callable() noexcept {
    return reinterpret_cast<unsigned char*>(this) + callable_offset_;
  }
  // destroy(ed) destroys the callable (if constructed) and frees the block.
  void destroy(const d1::execution_data* ed) noexcept;

  d1::task* execute(d1::execution_data& ed) override;
  d1::task* cancel(d1::execution_data& ed) override;

  // Admission (admission.cpp). took() records that the task holds what
  // its stage needs; next_stage() moves on; held() is what it holds.
  void took() noexcept {
    (stage_ == stage::slot ? holds_slot_ : holds_units_) = true;
  }
  void next_stage() noexcept {
    stage_ = stage_ == stage::slot ? stage::units : stage::admitted;
  }
  holdings held() const noexcept {
    return {holds_slot_, holds_units_ ? budget_ : nullptr, units_};
  }

  group_state* group_;
  const task_ops* ops_;
  d1::small_object_pool* pool_ = nullptr;  // where the block came from
  gate* budget_ = nullptr;                 // weighted admission, or null
  std::int64_t units_ = 0;
  std::uint32_t block_;  // bytes, with the callable
  std::uint16_t callable_offset_ = 0;
  bool constructed_ = false;
  stage stage_ = stage::slot;
  bool holds_slot_ = false;
  bool holds_units_ = false;
  std::atomic<int> handshake_{0};
  // Where the task waits: at a gate, for a slot or units (queued there by
  // its waiter_), or in its group's spill (the task spilled after it).
  // Never both: only a task that needs neither a slot nor units spills.
  union {
    gate* waiting_at_ = nullptr;
    group_task* next_spilled_;
  };
  admission_waiter waiter_;
  struct canceller {
    group_task* task;
    void operator()() const noexcept;
  };
  // Only for a task of a context group queued at a budget's gate (rare:
  // allocated then), which must leave the queue when the context is
  // cancelled.
  std::unique_ptr<std::stop_callback<canceller>> cancel_cb_;
};

// poke is the no-op task that makes sure a thread wakes up for tasks spawned
// by a thread that will not run them itself (group_state::spawn()).
class poke final : public d1::task {
 public:
  explicit poke(group_state& g) noexcept : group_(&g) {}
  d1::task* execute(d1::execution_data&) override;
  d1::task* cancel(d1::execution_data&) override;

 private:
  group_state* group_;
};

// trace_sink is a traced group's link to its trace (trace.cpp): what the
// stubs of its tasks record into, and the group's marks.
class trace_sink {
 public:
  trace_sink(trace& rec, std::string name, group_state& g);
  void add(trace::task t) noexcept;
  void add(trace::mark m) noexcept;  // at the time and thread of the call
  trace::mark mark(const char* what, std::string label,
                   std::string error) const;
  // failed(stub's label, e): the first failure of the group is marked.
  void failed(const std::string& label, const error& e) noexcept;
  // skipped_at_go(label): a go() after cancellation made no task.
  void skipped_at_go(const std::string& label) noexcept;
  const std::string& name() const noexcept { return name_; }

 private:
  struct on_cancel {
    trace_sink* sink;
    void operator()() const noexcept;
  };
  trace* rec_;
  std::string name_;
  group_state* g_;
  std::atomic<bool> failed_{false};
  // Context groups: marks the cancellation.
  std::optional<std::stop_callback<on_cancel>> cancelled_;
};

// stall_watch is on_stall()'s state (extras.cpp): a check on the service
// thread, scheduled while tasks wait; it fires once per quiet spell.
class stall_watch {
 public:
  using clock = std::chrono::steady_clock;
  stall_watch(group_state& g,
              std::function<void(const group::stall_report&)> cb,
              clock::duration after) noexcept;
  ~stall_watch();  // removes the check, waits for one being made
  // finished(): a task finished: a new quiet spell begins.
  void finished() noexcept {
    last_.store(clock::now().time_since_epoch().count(),
                std::memory_order_relaxed);
  }
  // waiting(): a task began to wait; makes sure a check is due.
  void waiting() noexcept;

 private:
  static void check(void* self) noexcept;
  void schedule(clock::time_point now) noexcept;  // with mu_ held
  group_state* g_;
  std::function<void(const group::stall_report&)> cb_;
  clock::duration after_;
  std::atomic<std::int64_t> last_;  // ticks: the last finish, or wait start
  std::mutex mu_;
  void* check_ = nullptr;        // guarded by mu_: the service's handle
  bool closing_ = false;         // guarded by mu_
  std::int64_t fired_for_ = -1;  // guarded by mu_: the spell reported
};

// extras is the state of group's observing members (extras.cpp): labels
// of running tasks, the progress callback, every error, the trace, the
// stall watch.
struct extras {
  std::mutex mu;
  bool keep_errors = false;               // guarded by mu
  std::vector<group::task_error> errors;  // guarded by mu
  std::list<std::pair<std::string, std::chrono::steady_clock::time_point>>
      labelled;                                       // guarded by mu
  std::function<void(const group::stats&)> progress;  // set before go()
  std::chrono::steady_clock::duration every{};
  std::atomic<std::int64_t> next{0};   // steady_clock ticks
  std::unique_ptr<trace_sink> trace;   // trace_to(), before go()
  std::unique_ptr<stall_watch> stall;  // on_stall(), before go()
  // finishing() and finished(g): a task of g ends, before and after it is
  // counted done. The stall watch hears of it before (once every task is
  // counted done the group is idle, and on_stall() may replace the watch);
  // progress after, when it is due.
  void finishing() noexcept {
    if (stall) stall->finished();
  }
  void finished(const group_state& g) noexcept;
  // running_now() is group::running().
  std::vector<group::running_task> running_now();
  // failed(e, root): a task failed with e; kept when keep_errors.
  void failed(const error& e, bool root) noexcept;
};

class group_state {
 public:
  group_state(std::shared_ptr<node> n, bool has_context, scheduler& s);
  ~group_state();

  // The operations behind group's members (group.cpp, admission.cpp).
  void set_limit(int n);
  // check_idle(what) throws std::logic_error "errgroup: <what> while N
  // tasks in the group are still active" unless none is.
  void check_idle(const char* what) const;
  bool skip_cancelled(const std::string* label);
  void submit(group_task& t);
  error submit_until(group_task& t, std::chrono::steady_clock::time_point d);
  bool try_take(gate* budget, std::int64_t n) noexcept;
  void give_back(gate* budget, std::int64_t n) noexcept;
  void launch(group_task& t, gate* budget, std::int64_t n);
  error wait();
  group::stats counters() const noexcept;
  bool in_own_task() const noexcept {
    return runs_under(node_->spawn_context());
  }

  // Task life (group.cpp).
  void run(group_task& t, d1::execution_data& ed) noexcept;
  void skip(group_task& t, const d1::execution_data* ed) noexcept;
  void poked() noexcept;

  // Admission (admission.cpp).
  bool admit(group_task& t, bool may_block, const context* bound = nullptr,
             bool* gave_up = nullptr);
  void on_admission(group_task& t) noexcept;
  void abandon(group_task& t) noexcept;
  // Slow paths only: a task began to wait (counted; the stall watch
  // notices), got what it waited for (the trace notes it), or is dropped
  // without being a task (the trace forgets it).
  void began_waiting() noexcept;
  void admitted_after_wait(group_task& t) noexcept;
  void not_a_task(group_task& t) noexcept;

  scheduler* sched_;
  std::shared_ptr<node> node_;
  context ctx_;
  bool has_context_;
  int uncaught_;  // std::uncaught_exceptions() when the group was made
  std::atomic<int> limit_{-1};
  std::atomic<bool> waited_{false};
  std::atomic<bool> has_error_{false};

  // Producers and finishing tasks share the wait_context's line (as with
  // oneTBB's own); submitted, which only producers write, has its own, and
  // running tasks count themselves on the next one. A task
  // is counted submitted (by one_submitted) when it is spawned or skipped,
  // and done (succeeded, failed or skipped) before the group stops waiting
  // for it. Bit 0 of submitted says a poke is in flight (spawn()).
  static constexpr std::int64_t poke_bit = 1;
  static constexpr std::int64_t one_submitted = 2;
  struct alignas(64) hot {
    d1::wait_context wait{0};
    alignas(64) std::atomic<std::int64_t> submitted{0};
  } hot_;
  struct alignas(64) run_counts {
    std::atomic<std::int64_t> running{0};
    std::atomic<std::int64_t> peak{0};
    std::atomic<std::int64_t> succeeded{0};
  } run_;
  std::atomic<std::int64_t> waiting_{0};
  std::atomic<std::int64_t> failed_{0};
  std::atomic<std::int64_t> skipped_{0};

  // The spill (spill.cpp): a context group without a limit keeps at most
  // window_ tasks queued in oneTBB (spawned, not started); past that, go()
  // queues the task here, and tasks take it out as they start (or finish),
  // keeping oneTBB's queue at the window. A cancellation drops what is
  // here in one pass instead of oneTBB skipping it task by task.
  struct alignas(64) spill_list {
    std::mutex mu;
    // First in, first out, linked through next_spilled_: no allocation.
    group_task* head = nullptr;  // guarded by mu
    group_task* tail = nullptr;  // guarded by mu
    std::atomic<std::int64_t> size{0};
  } spill_;
  std::int64_t window_ = 0;  // 0: the group never spills
  std::atomic<bool> spilling_{false};
  gate slots_{0};
  poke poke_{*this};
  // On a context group: when the context is cancelled, every task queued
  // for a slot is woken as cancelled (and skipped), and the spill dropped,
  // in one pass each.
  struct cancel_queued {
    group_state* g;
    void operator()() const noexcept {
      g->slots_.cancel_all();
      g->drop_spill();
    }
  };
  std::optional<std::stop_callback<cancel_queued>> cancel_all_;
  mutable std::mutex mu_;
  error first_;  // guarded by mu_

  // The extras (extras.cpp): made on first use, so a group that uses none
  // carries one pointer and one predictable branch in finish() (and in
  // the slow paths of admission).
  std::atomic<struct extras*> extras_{nullptr};
  struct extras& use_extras();

 private:
  // spawn(t) hands an admitted t to oneTBB; throws std::bad_alloc, with t
  // abandoned (nothing held, not counted), when oneTBB cannot take it.
  // spawn_or_fail(t) is spawn(t) for a thread that is not the producer's:
  // it records the failure as the group's error instead.
  // spawn(t, count) counts t submitted by count (0: it already is).
  void spawn(group_task& t, std::int64_t count = one_submitted);
  void spawn_or_fail(group_task& t) noexcept;
  // The spill (spill.cpp). spills() says whether go() queues its task here
  // now; spill(t) does (never fails: the spill is a linked list), and takes
  // tasks out itself if no task of oneTBB's queue would; unspill(thief) moves
  // tasks to oneTBB up to the window when due (drops them all when cancelled),
  // called by a task that starts (thief: it was stolen) or finishes; queued()
  // is how many wait in oneTBB's queue.
  bool spills() noexcept;
  void spill(group_task& t) noexcept;
  void unspill(bool thief) noexcept;
  void drop_spill() noexcept;
  // take_spilled(out, most) takes up to most tasks, first in first out.
  std::int64_t take_spilled(group_task** out, std::int64_t most) noexcept;
  std::int64_t queued() const noexcept;
  void start() noexcept;
  void finish(holdings held, error e, bool skipped) noexcept;
  // count_done(counter, n): n tasks ended, counted in counter (succeeded,
  // failed or skipped); the extras hear of it around the count.
  void count_done(std::atomic<std::int64_t>& counter, std::int64_t n) noexcept;
  void record(error e) noexcept;
  int enter(group_task& t);
  void count_in() noexcept { hot_.wait.reserve(); }
  std::int64_t active() const noexcept;
};

}  // namespace errgroup::detail
