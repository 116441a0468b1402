#include "errgroup/group.hpp"

#include <algorithm>
#include <limits>
#include <string>

namespace errgroup {
namespace detail {

// helping_waiter is how a thread that runs no task waits for a slot: it runs
// the group's tasks (and only those) until one of them hands it the slot.
class helping_waiter final : public waiter {
 public:
  explicit helping_waiter(std::int64_t n) noexcept : waiter(n) {}
  void wake() noexcept override { done_.release(); }
  tbb::detail::d1::wait_context done_{1};
};

void admission_waiter::wake() noexcept {
  // The producer that queued the task and the party that decided its fate
  // both arrive here; the second one goes on with the admission.
  if (task_->handshake_.fetch_add(1, std::memory_order_acq_rel) == 1)
    task_->group_->on_admission(*task_);
}

void task_base::canceller::operator()() const noexcept {
  if (task->waiting_at_->cancel(task->waiter_)) task->waiter_.wake();
}

tbb::detail::d1::task* task_base::cancel(tbb::detail::d1::execution_data& ed) {
  group_->skip(*this, &ed);  // oneTBB skipped us: our context was cancelled
  return nullptr;
}

}  // namespace detail

group::group(scheduler& s) : group(detail::node::make(nullptr), false, s) {}

group::group(const context& parent, scheduler& s)
    : group(detail::node::make(parent.node()), true, s) {}

group::group(std::shared_ptr<detail::node> n, bool has_context, scheduler& s)
    : sched_(&s),
      node_(std::move(n)),
      ctx_(has_context ? context(node_) : context()),
      has_context_(has_context) {
  if (has_context_)
    cancel_all_.emplace(node_->stop_source().get_token(), cancel_queued{this});
}

void group::cancel_queued::operator()() const noexcept {
  g->slots_.cancel_all();
}

group::~group() {
  try {
    wait();
  } catch (...) {
    // wait() only throws for a wait from one of our own tasks; nothing to do.
  }
  nudge_.forget();
}

group_and_context with_context(const context& parent, scheduler& s) {
  auto n = detail::node::make(parent.node());
  return group_and_context{group(n, true, s), context(n)};
}

void group::set_limit(int n) {
  // A task of ours calling is active, counted or not yet (its spawner counts
  // it just after the spawn).
  const std::int64_t active =
      std::max<std::int64_t>(this->active(), in_own_task() ? 1 : 0);
  if (active != 0)
    throw std::logic_error("errgroup: modify limit while " +
                           std::to_string(active) +
                           " tasks in the group are still active");
  if (n > 0) slots_.resize(n);
  limit_.store(n < 0 ? -1 : n, std::memory_order_release);
}

void group::check_units(detail::gate& g, std::int64_t n) {
  if (n < 0) throw std::invalid_argument("errgroup: go() with negative units");
  if (n > g.size())
    throw std::invalid_argument(
        "errgroup: go() asks for more units than the budget's size");
}

bool group::try_take(detail::gate* units_gate, std::int64_t n) noexcept {
  const int limit = limit_.load(std::memory_order_acquire);
  if (limit == 0 || (has_context_ && node_->cancelled())) return false;
  if (limit > 0 && !slots_.try_acquire(1)) return false;
  if (units_gate != nullptr && !units_gate->try_acquire(n)) {
    if (limit > 0) slots_.release(1);
    return false;
  }
  return true;
}

void group::launch(detail::task_base& t, detail::gate* units_gate,
                   std::int64_t n) noexcept {
  t.holds_slot_ = limit_.load(std::memory_order_relaxed) > 0;
  t.units_gate_ = units_gate;
  t.units_ = n;
  t.holds_units_ = units_gate != nullptr;
  t.stage_ = 2;
  count_in();
  spawn(t);
}

bool group::skip_cancelled() {
  if (!has_context_ || !node_->cancelled() ||
      waited_.load(std::memory_order_acquire) ||
      limit_.load(std::memory_order_relaxed) == 0)
    return false;
  hot_.submitted.fetch_add(one_submitted, std::memory_order_relaxed);
  skipped_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

int group::enter(detail::task_base& t) {
  const int limit = limit_.load(std::memory_order_acquire);
  if (limit == 0 || (has_context_ && waited_.load(std::memory_order_acquire))) {
    t.destroy(nullptr);
    throw std::logic_error(
        limit == 0 ? "errgroup: go() with limit 0 could never start a task"
                   : "errgroup: go() on a context group after its wait() "
                     "returned (its context is done)");
  }
  count_in();  // from here on wait() covers t, even while it waits
  return limit;
}

void group::count_in() noexcept { hot_.wait.reserve(); }

std::int64_t group::active() const noexcept {
  const stats s = counters();
  return s.submitted - s.succeeded - s.failed - s.skipped + s.waiting;
}

void group::submit(detail::task_base& t) {
  const int limit = enter(t);
  if (has_context_ && node_->cancelled()) {
    skip(t, nullptr);
    return;
  }
  t.stage_ = limit > 0 ? 0 : 1;
  if (admit(t, /*may_block=*/true)) spawn(t);
}

bool group::admit(detail::task_base& t, bool may_block, const context* bound,
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
  for (; t.stage_ < 2; ++t.stage_) {
    detail::gate* g = &slots_;
    std::int64_t n = 1;
    if (t.stage_ == 1) {
      if (t.units_gate_ == nullptr) continue;
      g = t.units_gate_;
      n = t.units_;
    }
    if (!g->try_acquire(n)) {
      // A task of this group that waited for a slot could wait forever:
      // every slot may be held by tasks doing the same. Queue instead (a
      // bounded wait, go_until, may wait).
      // A thread that runs no task helps run the group's tasks, but only in
      // its own arena (the default scheduler): entering an owned arena could
      // find every slot taken by other waiting threads.
      const bool own = in_own_task();
      const bool may_help = sched_->target() == nullptr;
      const detail::wait_kind kind =
          !may_block ? detail::wait_kind::queue
          : bound != nullptr
              ? detail::choose_wait(/*may_queue=*/false, may_help && !own)
          : own ? detail::wait_kind::queue
                : detail::choose_wait(/*may_queue=*/true, may_help);
      if (kind == detail::wait_kind::queue) {
        t.waiting_at_ = g;
        t.waiter_.reset(n);
        t.handshake_.store(0, std::memory_order_relaxed);
        // At our own gate the group's cancel_all_ wakes queued tasks; at a
        // budget's gate each queued task watches the context itself.
        if (has_context_ && g != &slots_)
          t.cancel_cb_.emplace(node_->stop_source().get_token(),
                               detail::task_base::canceller{&t});
        if (!g->take_or_enqueue(t.waiter_)) {
          waiting_.fetch_add(1, std::memory_order_relaxed);
          // Queued. A cancellation that came before the enqueue found
          // nothing to remove: remove it now.
          if (has_context_ && node_->cancelled() && g->cancel(t.waiter_))
            t.waiter_.wake();
          t.waiter_.wake();  // our arrival: the second one goes on
          return false;
        }
        t.cancel_cb_.reset();
      } else if (kind == detail::wait_kind::help) {
        // A slot between short tasks frees sooner than a wait is set up.
        if (!g->try_acquire_spinning(n)) {
          detail::helping_waiter w(n);
          if (g->take_or_enqueue(w)) {
            w.done_.release();
          } else {
            waiting_.fetch_add(1, std::memory_order_relaxed);
            std::stop_callback cb(stop(), [&]() noexcept {
              if (g->cancel(w)) w.wake();
            });
            detail::run_in_arena(*sched_, this, [&] {
              tbb::detail::d1::wait(w.done_, node_->tbb_context());
            });
            waiting_.fetch_sub(1, std::memory_order_relaxed);
          }
          if (w.outcome() != detail::waiter::granted) return give_up();
        }
      } else {
        detail::blocking_waiter w(n, kind);
        if (!g->take_or_enqueue(w)) {
          waiting_.fetch_add(1, std::memory_order_relaxed);
          std::stop_callback cb(stop(), [&]() noexcept {
            if (g->cancel(w)) w.wake();
          });
          w.block();
          waiting_.fetch_sub(1, std::memory_order_relaxed);
        }
        if (w.outcome() != detail::waiter::granted) return give_up();
      }
    }
    (t.stage_ == 0 ? t.holds_slot_ : t.holds_units_) = true;
    if ((has_context_ && node_->cancelled()) ||
        (bound != nullptr && bound->cancelled()))
      return give_up();
  }
  return true;
}

error group::submit_until(detail::task_base& t,
                          std::chrono::steady_clock::time_point deadline) {
  const int limit = enter(t);
  auto [bound, cancel] = with_deadline(ctx_, deadline);
  bool gave_up = false;
  t.stage_ = limit > 0 ? 0 : 1;
  if (bound.cancelled() || !admit(t, /*may_block=*/true, &bound, &gave_up)) {
    if (!gave_up) abandon(t);
    return has_context_ && node_->cancelled() ? node_->err()
                                              : detail::deadline_sentinel();
  }
  spawn(t);
  return {};
}

void group::abandon(detail::task_base& t) noexcept {
  const bool held_slot = t.holds_slot_;
  detail::gate* units_gate = t.holds_units_ ? t.units_gate_ : nullptr;
  const std::int64_t units = t.units_;
  t.destroy(nullptr);
  if (units_gate != nullptr) units_gate->release(units);
  if (held_slot) slots_.release(1);
  hot_.wait.release();
}

void group::on_admission(detail::task_base& t) noexcept {
  // This thread may be no caller of ours (it released a budget's units, or
  // cancelled), and once t is spawned or skipped wait() could return: hold
  // it until we are done with the group.
  hot_.wait.reserve();
  t.cancel_cb_.reset();
  if (t.waiter_.outcome() != detail::waiter::granted ||
      (has_context_ && node_->cancelled())) {
    if (t.waiter_.outcome() == detail::waiter::granted)
      (t.stage_ == 0 ? t.holds_slot_ : t.holds_units_) = true;
    skip(t, nullptr);
  } else {
    (t.stage_ == 0 ? t.holds_slot_ : t.holds_units_) = true;
    ++t.stage_;
    // Go on with the next stage; this thread is not ours to block.
    if (admit(t, /*may_block=*/false)) spawn(t);
  }
  // Only now: t counts as waiting, submitted or done throughout (active()).
  waiting_.fetch_sub(1, std::memory_order_relaxed);
  hot_.wait.release();  // last
}

void group::spawn(detail::task_base& t) noexcept {
  // A task of ours goes back to a loop that runs our tasks; anyone else may
  // not, and oneTBB's spawn alone can leave t unseen by sleeping threads:
  // counting t submitted also sets the nudge flag (detail::nudge).
  const bool own = in_own_task();
  detail::run_in_arena(*sched_, this, [&] {
    tbb::detail::d1::spawn(t, node_->tbb_context());
    if (own) {
      hot_.submitted.fetch_add(one_submitted, std::memory_order_relaxed);
      return;
    }
    std::int64_t s = hot_.submitted.load(std::memory_order_relaxed);
    while (!hot_.submitted.compare_exchange_weak(
        s, (s + one_submitted) | nudge_bit, std::memory_order_acq_rel,
        std::memory_order_relaxed)) {
    }
    if (!(s & nudge_bit)) nudge_.request(sched_->target());
  });
}

void group::clear_nudge(void* self) noexcept {
  static_cast<group*>(self)->hot_.submitted.fetch_and(
      ~nudge_bit, std::memory_order_acq_rel);
}

void group::start() noexcept {
  const std::int64_t now =
      run_.running.fetch_add(1, std::memory_order_relaxed) + 1;
  std::int64_t peak = run_.peak.load(std::memory_order_relaxed);
  while (now > peak && !run_.peak.compare_exchange_weak(
                           peak, now, std::memory_order_relaxed)) {
  }
}

void group::skip(detail::task_base& t,
                 const tbb::detail::d1::execution_data* ed) noexcept {
  // With ed, oneTBB skipped a spawned task (counted then); else t was
  // never spawned.
  if (ed == nullptr)
    hot_.submitted.fetch_add(one_submitted, std::memory_order_relaxed);
  const bool held_slot = t.holds_slot_;
  detail::gate* units_gate = t.holds_units_ ? t.units_gate_ : nullptr;
  const std::int64_t units = t.units_;
  t.destroy(ed);  // never invoked; its captures are released now
  finish(held_slot, units_gate, units, {}, /*skipped=*/true);
}

void group::finish(bool held_slot, detail::gate* units_gate, std::int64_t units,
                   error e, bool skipped) noexcept {
  if (!skipped) run_.running.fetch_sub(1, std::memory_order_relaxed);
  const bool failed = static_cast<bool>(e);
  // The error is recorded and the context cancelled before the slot is
  // handed on: with set_limit(1) no task starts after a failure.
  if (failed) record(std::move(e));
  if (units_gate != nullptr) units_gate->release(units);
  if (held_slot) slots_.release(1);
  // Counted done once its error, slot and units are visible to a reader
  // that sees the count.
  (skipped  ? skipped_
   : failed ? failed_
            : run_.succeeded)
      .fetch_add(1, std::memory_order_release);
  if (progress_ != nullptr) progress();
  hot_.wait.release();  // last: wait() may return and the group go away
}

void group::progress() noexcept {
  const std::int64_t now =
      std::chrono::steady_clock::now().time_since_epoch().count();
  std::int64_t next = progress_->next.load(std::memory_order_relaxed);
  if (now < next) return;
  // The CAS elects one caller; `next` stays far ahead while cb runs.
  if (!progress_->next.compare_exchange_strong(
          next, std::numeric_limits<std::int64_t>::max(),
          std::memory_order_acquire))
    return;
  try {
    progress_->cb(counters());
  } catch (...) {
    // A progress callback must not throw; its exception is dropped.
  }
  progress_->next.store(
      std::chrono::steady_clock::now().time_since_epoch().count() +
          progress_->every.count(),
      std::memory_order_release);
}

void group::on_progress(std::function<void(const stats&)> cb,
                        std::chrono::steady_clock::duration every) {
  if (!cb) {
    progress_.reset();
    return;
  }
  auto p = std::make_unique<progress_state>();
  p->cb = std::move(cb);
  p->every = every;
  progress_ = std::move(p);
}

std::vector<group::task_error> group::errors() const {
  std::lock_guard lock(mu_);
  return errors_;
}

group::tracker::tracker(group& grp, std::string label) : g(&grp) {
  std::lock_guard lock(g->mu_);
  g->labelled_.emplace_front(std::move(label),
                             std::chrono::steady_clock::now());
  it = g->labelled_.begin();
}

group::tracker::~tracker() {
  std::lock_guard lock(g->mu_);
  g->labelled_.erase(it);
}

std::vector<group::running_task> group::running() const {
  const auto now = std::chrono::steady_clock::now();
  std::vector<running_task> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [label, since] : labelled_)
      out.push_back({label, now - since});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.elapsed > b.elapsed; });
  return out;
}

void group::record(error e) noexcept {
  if (keep_errors_) {
    std::lock_guard lock(mu_);
    try {
      errors_.push_back({e, !node_->cancelled()});
    } catch (...) {
      // Out of memory: the first error below is still kept.
    }
  }
  error first;
  {
    std::lock_guard lock(mu_);
    if (!first_) {
      first_ = std::move(e);
      has_error_.store(true, std::memory_order_release);
    }
    first = first_;
  }
  if (has_context_) {
    // Every failing task cancels with the first error, so the context's
    // cause() is the error wait() returns whichever cancel lands first.
    auto n = node_;  // cancelling may end the group's life; keep the node
    n->cancel(detail::cancelled_sentinel(), first);
  }
}

error group::wait() {
  if (in_own_task())
    throw std::logic_error(
        "errgroup: wait() called from a task of the same group would wait "
        "for itself");
  detail::run_in_arena(*sched_, this, [&] {
    tbb::detail::d1::wait(hot_.wait, node_->tbb_context());
  });
  if (has_context_) {
    waited_.store(true, std::memory_order_release);
    node_->cancel(detail::cancelled_sentinel(), detail::cancelled_sentinel());
  }
  if (has_error_.load(std::memory_order_acquire)) {
    std::lock_guard lock(mu_);
    return first_;
  }
  if (skipped_.load(std::memory_order_acquire) > 0) return node_->cause();
  return {};
}

bool group::in_own_task() const noexcept {
  return tbb::detail::d1::current_context() == &node_->tbb_context();
}

group::stats group::counters() const noexcept {
  stats s;
  s.succeeded = run_.succeeded.load(std::memory_order_acquire);
  s.failed = failed_.load(std::memory_order_acquire);
  s.skipped = skipped_.load(std::memory_order_acquire);
  // Done counts first. A task is counted submitted just after its spawn, so
  // it may be done before that: it is submitted then all the same.
  s.submitted = std::max(s.succeeded + s.failed + s.skipped,
                         hot_.submitted.load(std::memory_order_acquire) >> 1);
  s.running = run_.running.load(std::memory_order_relaxed);
  s.waiting =
      std::max<std::int64_t>(0, waiting_.load(std::memory_order_acquire));
  s.peak = run_.peak.load(std::memory_order_relaxed);
  return s;
}

}  // namespace errgroup
