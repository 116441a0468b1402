// group/group.cpp: a group's life, and a task's from spawn to finish.
// Admission (waiting for slots and units) is in admission.cpp.
#include "errgroup/group.hpp"

#include <algorithm>
#include <exception>
#include <limits>
#include <string>

#include "group_state.hpp"

namespace errgroup {
namespace detail {

static_assert(sizeof(group_state) <= 960 && alignof(group_state) <= 64,
              "group::state_size is too small for group_state");
static_assert(alignof(group_task) <= max_task_align);
static_assert(sizeof(group_task) <= 192,
              "a task with a small callable must fit oneTBB's 256-byte pool");

// ---- tasks ----

new_block new_task(group_state& g, std::size_t size, std::size_t align,
                   const task_ops& ops) {
  const std::size_t offset = group_task::offset(align);
  const std::size_t block = offset + size;
  d1::small_object_pool* pool = nullptr;
  void* mem = tbb::detail::r1::allocate(pool, block);  // throws bad_alloc
  auto* t = ::new (mem) group_task(g, ops, static_cast<std::uint32_t>(block));
  t->callable_offset_ = static_cast<std::uint16_t>(offset);
  t->pool_ = pool;
  t->constructed_ = true;  // go() constructs the callable next, or frees t
  return {*t, t->callable()};
}

std::size_t task_size(std::size_t size, std::size_t align) noexcept {
  return group_task::offset(align) + size;
}

void unconstructed(group_task& t) noexcept {
  t.constructed_ = false;
  t.destroy(nullptr);
}

void group_task::destroy(const d1::execution_data* ed) noexcept {
  if (constructed_) ops_->destroy(callable());
  const std::size_t block = block_;
  d1::small_object_pool* pool = pool_;
  this->~group_task();
  if (ed != nullptr)
    tbb::detail::r1::deallocate(*pool, this, block, *ed);
  else
    tbb::detail::r1::deallocate(*pool, this, block);
}

d1::task* group_task::execute(d1::execution_data& ed) {
  group_->run(*this, ed);
  return nullptr;
}

d1::task* group_task::cancel(d1::execution_data& ed) {
  // oneTBB skipped us: the group's spawn context was cancelled, by the node
  // or by the enclosing work (cancelled() notices the latter).
  group_->node_->cancelled();
  group_->skip(*this, &ed);
  return nullptr;
}

d1::task* poke::execute(d1::execution_data&) {
  group_->poked();
  return nullptr;
}

d1::task* poke::cancel(d1::execution_data&) {
  group_->poked();
  return nullptr;
}

// ---- the group ----

group_state::group_state(std::shared_ptr<node> n, bool has_context,
                         scheduler& s)
    : sched_(&s),
      node_(std::move(n)),
      ctx_(has_context ? context(node_) : context()),
      has_context_(has_context),
      uncaught_(std::uncaught_exceptions()) {
  if (has_context_) {
    window_ = 64 * std::int64_t{s.max_concurrency()};
    cancel_all_.emplace(node_->stop_source().get_token(), cancel_queued{this});
  }
}

group_state::~group_state() {
  // Unwinding past a context group cancels it first: its tasks may be
  // waiting for that (~tbb::task_group, std::jthread).
  if (has_context_ && std::uncaught_exceptions() > uncaught_)
    node_->cancel(cancelled_sentinel(), cancelled_sentinel());
  try {
    wait();
  } catch (...) {
    // wait() only throws for a wait from one of our own tasks; nothing to do.
  }
  delete extras_.load();
}

void group_state::check_idle(const char* what) const {
  // A task of ours calling is active, counted or not yet (its spawner counts
  // it just after the spawn).
  const std::int64_t active =
      std::max<std::int64_t>(this->active(), in_own_task() ? 1 : 0);
  if (active != 0)
    throw std::logic_error(std::string("errgroup: ") + what + " while " +
                           std::to_string(active) +
                           " tasks in the group are still active");
}

void group_state::set_limit(int n) {
  check_idle("modify limit");
  if (n > 0) slots_.resize(n);
  limit_.store(n < 0 ? -1 : n, std::memory_order_release);
}

bool group_state::try_take(gate* budget, std::int64_t n) noexcept {
  const int limit = limit_.load(std::memory_order_acquire);
  if (limit == 0 || (has_context_ && node_->cancelled())) return false;
  if (limit > 0 && !slots_.try_acquire(1)) return false;
  if (budget != nullptr && !budget->try_acquire(n)) {
    if (limit > 0) slots_.release(1);
    return false;
  }
  return true;
}

void group_state::give_back(gate* budget, std::int64_t n) noexcept {
  holdings{limit_.load(std::memory_order_relaxed) > 0, budget, n}.release(
      slots_);
}

void group_state::launch(group_task& t, gate* budget, std::int64_t n) {
  t.holds_slot_ = limit_.load(std::memory_order_relaxed) > 0;
  t.holds_units_ = budget != nullptr;
  t.budget_ = budget;
  t.units_ = n;
  t.stage_ = stage::admitted;
  count_in();
  spawn(t);
}

bool group_state::skip_cancelled(const std::string* label) {
  if (!has_context_ || !node_->cancelled() ||
      waited_.load(std::memory_order_acquire) ||
      limit_.load(std::memory_order_relaxed) == 0)
    return false;
  hot_.submitted.fetch_add(one_submitted, std::memory_order_relaxed);
  skipped_.fetch_add(1, std::memory_order_relaxed);
  if (extras* x = extras_.load(std::memory_order_acquire); x && x->trace)
    x->trace->skipped_at_go(label != nullptr ? *label : std::string());
  return true;
}

int group_state::enter(group_task& t) {
  const int limit = limit_.load(std::memory_order_acquire);
  if (limit == 0 || (has_context_ && waited_.load(std::memory_order_acquire))) {
    not_a_task(t);
    t.destroy(nullptr);
    throw std::logic_error(
        limit == 0 ? "errgroup: go() with limit 0 could never start a task"
                   : "errgroup: go() on a context group after its wait() "
                     "returned (its context is done)");
  }
  count_in();  // from here on wait() covers t, even while it waits
  return limit;
}

std::int64_t group_state::active() const noexcept {
  const group::stats s = counters();
  return s.submitted - s.succeeded - s.failed - s.skipped + s.waiting;
}

void group_state::submit(group_task& t) {
  const int limit = enter(t);
  if (has_context_ && node_->cancelled()) {
    skip(t, nullptr);
    return;
  }
  if (limit < 0 && t.budget_ == nullptr && window_ > 0 && spills()) {
    t.stage_ = stage::admitted;
    spill(t);
    return;
  }
  t.stage_ = limit > 0 ? stage::slot : stage::units;
  if (admit(t, /*may_block=*/true)) spawn(t);
}

void group_state::spawn(group_task& t, std::int64_t count) {
  // A task of ours (or oneTBB work nested in one) goes back to a loop that
  // runs our tasks. Anyone else may not, and oneTBB's spawn alone can leave
  // t unseen by sleeping threads: its check for sleepers is not fenced
  // after the task is stored (arena.h: "the missed wakeup is not a
  // correctness problem"). So the spawner fences (the RMW on submitted) and
  // spawns a poke, whose own check then sees every task stored before the
  // fence. One poke in flight per group covers every spawn before it: the
  // thread that runs it clears the flag with an RMW, then looks for work.
  const bool own = in_own_task();
  std::exception_ptr failed;
  run_in_arena(*sched_, this, [&] {
    try {
      // oneTBB's first spawn on a thread may allocate, and throw.
      d1::spawn(t, node_->spawn_context());
    } catch (...) {
      failed = std::current_exception();
      return;
    }
    if (own) {
      if (count != 0)
        hot_.submitted.fetch_add(count, std::memory_order_relaxed);
      return;
    }
    std::int64_t s = hot_.submitted.load(std::memory_order_relaxed);
    while (!hot_.submitted.compare_exchange_weak(s, (s + count) | poke_bit,
                                                 std::memory_order_seq_cst,
                                                 std::memory_order_relaxed)) {
    }
    if (s & poke_bit) return;
    hot_.wait.reserve();  // the poke holds wait() until it has run
    try {
      d1::spawn(poke_, node_->spawn_context());
    } catch (...) {
      // Out of memory: t is spawned and runs at the latest in wait().
      poked();
    }
  });
  if (failed) {
    // Not spawned: nothing held. A spilled task (count 0) was counted
    // submitted: it counts as skipped, before abandon() lets wait() go.
    if (count == 0) count_done(skipped_, 1);
    abandon(t);
    std::rethrow_exception(failed);
  }
}

void group_state::spawn_or_fail(group_task& t) noexcept {
  try {
    spawn(t);
  } catch (...) {
    // Nobody to throw to (a releaser admitted t): t was abandoned; the
    // group reports the failure, so no task is lost silently.
    record(error(std::current_exception()));
  }
}

void group_state::poked() noexcept {
  hot_.submitted.fetch_and(~poke_bit, std::memory_order_seq_cst);
  hot_.wait.release();  // last: the group may go away
}

void group_state::run(group_task& t, d1::execution_data& ed) noexcept {
  if (has_context_ && node_->cancelled()) {
    skip(t, &ed);
    return;
  }
  start();
  // A queued task started: the spill may move tasks in (spill.cpp).
  if (spill_.size.load(std::memory_order_seq_cst) > 0)
    unspill(d1::is_stolen(ed));
  error e;
  {
    task_frame frame(*node_);  // tbb_context() in the task is its own
    e = t.ops_->invoke(t.callable(), ctx_);
  }
  const holdings held = t.held();
  t.destroy(&ed);  // captures are released before the slot is handed on
  finish(held, std::move(e), false);
}

void group_state::start() noexcept {
  const std::int64_t now =
      run_.running.fetch_add(1, std::memory_order_seq_cst) + 1;
  std::int64_t peak = run_.peak.load(std::memory_order_relaxed);
  while (now > peak && !run_.peak.compare_exchange_weak(
                           peak, now, std::memory_order_relaxed)) {
  }
}

void group_state::skip(group_task& t, const d1::execution_data* ed) noexcept {
  // With ed, oneTBB skipped a spawned task (counted then); else t was
  // never spawned.
  if (ed == nullptr)
    hot_.submitted.fetch_add(one_submitted, std::memory_order_relaxed);
  const holdings held = t.held();
  t.destroy(ed);  // never invoked; its captures are released now
  finish(held, {}, /*skipped=*/true);
}

void group_state::finish(holdings held, error e, bool skipped) noexcept {
  if (!skipped) run_.running.fetch_sub(1, std::memory_order_relaxed);
  const bool failed = static_cast<bool>(e);
  // The error is recorded and the context cancelled before the slot is
  // handed on: with set_limit(1) no task starts after a failure.
  if (failed) record(std::move(e));
  held.release(slots_);
  // Counted done once its error, slot and units are visible to a reader
  // that sees the count.
  count_done(skipped ? skipped_ : failed ? failed_ : run_.succeeded, 1);
  // Done: the spill may move tasks in (spill.cpp).
  if (spill_.size.load(std::memory_order_seq_cst) > 0) unspill(false);
  hot_.wait.release();  // last: wait() may return and the group go away
}

void group_state::count_done(std::atomic<std::int64_t>& counter,
                             std::int64_t n) noexcept {
  extras* const x = extras_.load(std::memory_order_acquire);
  if (x != nullptr) x->finishing();
  counter.fetch_add(n, std::memory_order_seq_cst);
  if (x != nullptr) x->finished(*this);
}

void group_state::record(error e) noexcept {
  if (extras* x = extras_.load(std::memory_order_acquire))
    x->failed(e, !node_->cancelled());
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
    n->cancel(cancelled_sentinel(), first);
  }
}

error group_state::wait() {
  if (in_own_task())
    throw std::logic_error(
        "errgroup: wait() called from a task of the same group would wait "
        "for itself");
  run_in_arena(*sched_, this,
               [&] { d1::wait(hot_.wait, node_->spawn_context()); });
  // Cancelled by the work we belong to: said before our own cancel below.
  const bool by_enclosing = node_->cancelled_by_enclosing();
  if (has_context_) {
    waited_.store(true, std::memory_order_release);
    node_->cancel(cancelled_sentinel(), cancelled_sentinel());
  }
  if (has_error_.load(std::memory_order_acquire)) {
    std::lock_guard lock(mu_);
    return first_;
  }
  if (by_enclosing || skipped_.load(std::memory_order_acquire) > 0)
    return node_->cause();
  return {};
}

group::stats group_state::counters() const noexcept {
  group::stats s;
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

}  // namespace detail

// ---- group: the public members ----

group::group(scheduler& s) : group(detail::node::make(nullptr), false, s) {}

group::group(isolated_t, scheduler& s)
    : group(detail::node::make(nullptr, /*belongs=*/false), false, s) {}

group::group(const context& parent, scheduler& s)
    : group(detail::node::make(parent.node()), true, s) {}

group::group(isolated_t, const context& parent, scheduler& s)
    : group(detail::node::make(parent.node(), /*belongs=*/false), true, s) {}

group::group(std::shared_ptr<detail::node> n, bool has_context, scheduler& s)
    : has_context_(has_context) {
  ::new (state_) detail::group_state(std::move(n), has_context, s);
}

group::~group() { state().~group_state(); }

detail::group_state& group::state() noexcept {
  return *std::launder(reinterpret_cast<detail::group_state*>(state_));
}
const detail::group_state& group::state() const noexcept {
  return *std::launder(reinterpret_cast<const detail::group_state*>(state_));
}

group_and_context with_context(const context& parent, scheduler& s) {
  auto n = detail::node::make(parent.node());
  return group_and_context{group(n, true, s), context(n)};
}

group_and_context with_context(isolated_t, const context& parent,
                               scheduler& s) {
  auto n = detail::node::make(parent.node(), /*belongs=*/false);
  return group_and_context{group(n, true, s), context(n)};
}

context group::get_context() const { return state().ctx_; }

void group::set_limit(int n) { state().set_limit(n); }

void group::check_units(detail::gate& g, std::int64_t n) {
  if (n < 0) throw std::invalid_argument("errgroup: go() with negative units");
  if (n > g.size())
    throw std::invalid_argument(
        "errgroup: go() asks for more units than the budget's size");
}

bool group::skip_cancelled() { return state().skip_cancelled(nullptr); }

bool group::skip_cancelled(const std::string& label) {
  return state().skip_cancelled(&label);
}

void group::submit(detail::group_task& t, detail::gate* budget,
                   std::int64_t n) {
  t.budget_ = budget;
  t.units_ = n;
  state().submit(t);
}

error group::submit_until(detail::group_task& t,
                          std::chrono::steady_clock::time_point deadline) {
  return state().submit_until(t, deadline);
}

bool group::try_take(detail::gate* budget, std::int64_t n) noexcept {
  return state().try_take(budget, n);
}

void group::give_back(detail::gate* budget, std::int64_t n) noexcept {
  state().give_back(budget, n);
}

void group::launch(detail::group_task& t, detail::gate* budget,
                   std::int64_t n) {
  state().launch(t, budget, n);
}

error group::wait() { return state().wait(); }

group::stats group::counters() const noexcept { return state().counters(); }

}  // namespace errgroup
