// group/admission.cpp: how a task gets its slot and its units.
//
// A task is admitted in stages (detail::stage): a slot of the group's limit,
// then units of its budget. At each stage it takes what it needs at once if
// it can; else the calling thread waits, in one of the ways of
// detail::wait_kind, picked by how_to_wait(). Whoever decides a queued
// task's fate (the releaser that grants it, or the canceller that removes
// it) goes on with its admission in on_admission(). An admitted task is
// spawned; one that gives up is skipped (go) or abandoned (go_until).
#include "group_state.hpp"

namespace errgroup::detail {
namespace {

// helping_waiter is how a thread that runs no task waits for a slot while it
// runs the group's tasks (and only those) until one of them hands it over.
class helping_waiter final : public waiter {
 public:
  explicit helping_waiter(std::int64_t n) noexcept : waiter(n) {}
  void wake() noexcept override { done_.release(); }
  d1::wait_context done_{1};
};

// helps_here(s): a thread outside the group's tasks that must wait for a
// slot runs the group's tasks meanwhile in its own arena (the default
// scheduler), as tbb::task_group::wait() does: with short CPU-bound tasks
// that is the fastest way to a free slot (bench_spawn, limit 2). It may run
// a long task to its end first (bench_producer); an owned arena, for
// blocking work, never asks that: there the thread blocks.
bool helps_here(const scheduler& s) { return s.target() == nullptr; }

// how_to_wait(...) picks how the calling thread waits at a gate.
// - May not block (the thread is not the producer's): queue the task.
// - go_until: suspend in a task, else block; the deadline bounds it, so it
//   never queues and never runs a task that could outlast it.
// - go from the group's own work: queue (it may hold the slot it waits for).
// - go from anywhere else: suspend in a task (queue past the cap), else help
//   where nobody else would run the tasks (helps_here), else block.
wait_kind how_to_wait(const group_state& g, bool may_block, bool bounded) {
  if (!may_block) return wait_kind::queue;
  if (bounded) return choose_wait(/*may_queue=*/false, /*may_help=*/false);
  if (g.in_own_task()) return wait_kind::queue;
  return choose_wait(/*may_queue=*/true, helps_here(*g.sched_));
}

}  // namespace

void admission_waiter::wake() noexcept {
  // The producer that queued the task and the party that decided its fate
  // both arrive here; the second one goes on with the admission.
  if (task_->handshake_.fetch_add(1, std::memory_order_acq_rel) == 1)
    task_->group_->on_admission(*task_);
}

void group_task::canceller::operator()() const noexcept {
  if (task->waiting_at_->cancel(task->waiter_)) task->waiter_.wake();
}

bool group_state::admit(group_task& t, bool may_block, const context* bound,
                        bool* gave_up) {
  // Waits end when this context is cancelled: the group's, or go_until's.
  const auto stop = [&] {
    return bound != nullptr ? bound->stop_token()
           : has_context_   ? node_->stop_source().get_token()
                            : std::stop_token();
  };
  const auto give_up = [&] {
    if (gave_up != nullptr) {
      *gave_up = true;
      abandon(t);
    } else {
      skip(t, nullptr);
    }
    return false;
  };
  for (; t.stage_ != stage::admitted; t.next_stage()) {
    gate* g = &slots_;
    std::int64_t n = 1;
    if (t.stage_ == stage::units) {
      if (t.budget_ == nullptr) continue;
      g = t.budget_;
      n = t.units_;
    }
    if (!g->try_acquire(n)) {
      const wait_kind kind = how_to_wait(*this, may_block, bound != nullptr);
      if (kind == wait_kind::queue) {
        t.waiting_at_ = g;
        t.waiter_.reset(n);
        t.handshake_.store(0, std::memory_order_relaxed);
        // At our own gate the group's cancel_all_ wakes queued tasks; at a
        // budget's gate each queued task watches the context itself.
        if (has_context_ && g != &slots_) {
          try {
            t.cancel_cb_ =
                std::make_unique<std::stop_callback<group_task::canceller>>(
                    node_->stop_source().get_token(),
                    group_task::canceller{&t});
          } catch (...) {
            // Out of memory: t holds its slot; give everything back. Only
            // the producer can be told.
            abandon(t);
            if (may_block) throw;
            record(error(std::current_exception()));
            return false;
          }
        }
        if (!g->take_or_enqueue(t.waiter_)) {
          began_waiting();
          // Queued. A cancellation that came before the enqueue found
          // nothing to remove: remove it now.
          if (has_context_ && node_->cancelled() && g->cancel(t.waiter_))
            t.waiter_.wake();
          t.waiter_.wake();  // our arrival: the second one goes on
          return false;
        }
        t.cancel_cb_.reset();
      } else if (kind == wait_kind::help) {
        // A slot between short tasks frees sooner than a wait is set up.
        if (!g->try_acquire_spinning(n)) {
          helping_waiter w(n);
          if (g->take_or_enqueue(w)) {
            w.done_.release();
          } else {
            began_waiting();
            std::stop_callback cb(stop(), [&]() noexcept {
              if (g->cancel(w)) w.wake();
            });
            run_in_arena(*sched_, this,
                         [&] { d1::wait(w.done_, node_->spawn_context()); });
            waiting_.fetch_sub(1, std::memory_order_relaxed);
          }
          if (w.outcome() != waiter::granted) return give_up();
          admitted_after_wait(t);
        }
      } else {
        blocking_waiter w(n, kind);
        if (!g->take_or_enqueue(w)) {
          began_waiting();
          std::stop_callback cb(stop(), [&]() noexcept {
            if (g->cancel(w)) w.wake();
          });
          w.block();
          waiting_.fetch_sub(1, std::memory_order_relaxed);
        }
        if (w.outcome() != waiter::granted) return give_up();
        admitted_after_wait(t);
      }
    }
    t.took();
    if ((has_context_ && node_->cancelled()) ||
        (bound != nullptr && bound->cancelled()))
      return give_up();
  }
  return true;
}

error group_state::submit_until(group_task& t,
                                std::chrono::steady_clock::time_point d) {
  const int limit = enter(t);
  bool gave_up = false;
  t.stage_ = limit > 0 ? stage::slot : stage::units;
  std::optional<context_and_cancel> bound;
  try {
    bound.emplace(with_deadline(ctx_, d));
  } catch (...) {
    abandon(t);
    throw;
  }
  if (bound->ctx.cancelled() ||
      !admit(t, /*may_block=*/true, &bound->ctx, &gave_up)) {
    if (!gave_up) abandon(t);
    return has_context_ && node_->cancelled() ? node_->err()
                                              : deadline_sentinel();
  }
  spawn(t);
  return {};
}

void group_state::abandon(group_task& t) noexcept {
  not_a_task(t);  // not counted: no record either
  const holdings held = t.held();
  t.destroy(nullptr);
  held.release(slots_);
  hot_.wait.release();
}

void group_state::on_admission(group_task& t) noexcept {
  // This thread may be no caller of ours (it released a budget's units, or
  // cancelled), and once t is spawned or skipped wait() could return: hold
  // it until we are done with the group.
  hot_.wait.reserve();
  t.cancel_cb_.reset();
  const bool granted = t.waiter_.outcome() == waiter::granted;
  if (granted) {
    t.took();
    admitted_after_wait(t);
  }
  if (!granted || (has_context_ && node_->cancelled())) {
    skip(t, nullptr);
  } else {
    t.next_stage();
    // Go on with the next stage; this thread is not ours to block.
    if (admit(t, /*may_block=*/false)) spawn_or_fail(t);
  }
  // Only now: t counts as waiting, submitted or done throughout (active()).
  waiting_.fetch_sub(1, std::memory_order_relaxed);
  hot_.wait.release();  // last
}

// ---- hooks for the extras (slow paths only) ----

void group_state::began_waiting() noexcept {
  waiting_.fetch_add(1, std::memory_order_relaxed);
  if (extras* x = extras_.load(std::memory_order_acquire); x && x->stall)
    x->stall->waiting();
}

void group_state::admitted_after_wait(group_task& t) noexcept {
  if (t.ops_->has_stub) stub_of(t.callable()).admitted();
}

void group_state::not_a_task(group_task& t) noexcept {
  if (t.ops_->has_stub && t.constructed_) stub_of(t.callable()).discard();
}

}  // namespace errgroup::detail
