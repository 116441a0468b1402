#include "errgroup/detail/gate.hpp"

#include <oneapi/tbb/task.h>
#include <oneapi/tbb/task_arena.h>

#include <stdexcept>
#include <thread>

#include "errgroup/detail/node.hpp"

#if defined(__SANITIZE_THREAD__)
#define ERRGROUP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ERRGROUP_TSAN 1
#endif
#endif

namespace errgroup::detail {
namespace {

// Each suspended task owns a coroutine stack (4 MiB of address space, two
// mappings). Past this many at once, waits block or queue instead.
constexpr int max_suspended = 4096;
std::atomic<int> g_suspended{0};

// Under TSan, Debian's oneTBB suspends with swapcontext, which TSan cannot
// follow; a oneTBB built with TBB_SANITIZE=thread (.ci/tsan-tbb.sh) suspends
// on threads instead (ERRGROUP_TBB_SANITIZED).
#if __TBB_RESUMABLE_TASKS && (!defined(ERRGROUP_TSAN) || ERRGROUP_TBB_SANITIZED)
constexpr bool resumable = true;
#else
constexpr bool resumable = false;
#endif

// Spinning before a blocked thread parks: pause instructions, then yields.
// Short: between more threads than cores a spinner burns the time the
// holder needs to release (FIFO, size 1, 8 threads on 2 cores: 256 pauses
// cost twice the CPU per acquire/release pair that 32 do).
constexpr int spin_pauses = 32;
constexpr int spin_yields = 8;
// Spinning for a slot before a thread sets up a wait (try_acquire_spinning).
constexpr int take_pauses = 64;

inline void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// spin(done, pauses, yields) polls done() between pause instructions, then
// between yields, and reports whether it came true.
template <class Done>
bool spin(Done done, int pauses, int yields) noexcept {
  for (int i = 0; i < pauses; ++i) {
    if (done()) return true;
    pause();
  }
  for (int i = 0; i < yields; ++i) {
    if (done()) return true;
    std::this_thread::yield();
  }
  return done();
}

std::int64_t ticks() noexcept {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}
const std::int64_t starve_ticks =
    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        gate::starve_after)
        .count();

bool tbb_thread() noexcept {
  return tbb::this_task_arena::current_thread_index() >= 0;
}

}  // namespace

wait_kind choose_wait(bool may_queue, bool may_help) noexcept {
  if (!tbb_thread() || tbb::task::current_context() == nullptr)
    return may_help ? wait_kind::help : wait_kind::block;
  if (resumable) {
    if (g_suspended.fetch_add(1, std::memory_order_relaxed) < max_suspended)
      return wait_kind::suspend;
    g_suspended.fetch_sub(1, std::memory_order_relaxed);
  }
  return may_queue ? wait_kind::queue : wait_kind::block;
}

blocking_waiter::blocking_waiter(std::int64_t n, wait_kind kind) noexcept
    : waiter(n), suspend_(kind == wait_kind::suspend) {}

blocking_waiter::~blocking_waiter() {
  if (suspend_) g_suspended.fetch_sub(1, std::memory_order_relaxed);
}

void blocking_waiter::block() noexcept {
#if __TBB_RESUMABLE_TASKS
  if (suspend_) {
    // The task may resume on another thread: its frames go with it.
    task_frame::suspend_scope frames;
    tbb::task::suspend([this](tbb::task::suspend_point sp) {
      suspend_point_ = sp;
      if (handshake_.fetch_add(1, std::memory_order_acq_rel) == 1)
        tbb::task::resume(sp);
    });
    return;  // possibly on another thread now
  }
#endif
  // A hand-off often comes within microseconds: spin a little before
  // parking, so neither side pays for a futex wake-up then.
  const auto woken = [&] { return woken_.load(std::memory_order_acquire); };
  if (spin(woken, spin_pauses, spin_yields)) return;
  while (!woken()) woken_.wait(false, std::memory_order_acquire);
}

void blocking_waiter::rearm() noexcept {
  handshake_.store(0, std::memory_order_relaxed);
  woken_.store(false, std::memory_order_relaxed);
}

void blocking_waiter::wake() noexcept {
#if __TBB_RESUMABLE_TASKS
  if (suspend_) {
    if (handshake_.fetch_add(1, std::memory_order_acq_rel) == 1)
      tbb::task::resume(static_cast<tbb::task::suspend_point>(suspend_point_));
    return;
  }
#endif
  woken_.store(true, std::memory_order_release);
  woken_.notify_one();  // a futex call only if the waiter parked
}

void gate::unlink_locked(waiter& w) noexcept {
  // A barging gate bounds how long a waiter stays at the head.
  if (barging_ && head_ == &w && w.next_ != nullptr) w.next_->since_ = ticks();
  (w.prev_ ? w.prev_->next_ : head_) = w.next_;
  (w.next_ ? w.next_->prev_ : tail_) = w.prev_;
  w.next_ = w.prev_ = nullptr;
  w.linked_ = false;
}

waiter* gate::admit_locked() noexcept {
  waiter* first = nullptr;
  waiter* last = nullptr;
  const auto append = [&](waiter* w) {
    (last ? last->next_ : first) = w;
    last = w;
  };
  const bool starving = starving_.load(std::memory_order_relaxed);
  while (waiter* w = head_) {
    const bool nudge = barging_ && !starving && w->retries_;
    if (nudge ? !fits_locked(w->n_) : !take_locked(w->n_)) {
      // Bargers keep taking what it needs: past the bound, no more.
      if (barging_ && !starving && ticks() - w->since_ >= starve_ticks)
        starving_.store(true, std::memory_order_relaxed);
      break;
    }
    if (nudge) {
      // Let it try for itself (a running thread may take the units first),
      // one at a time: it goes on with the queue when it retakes.
      if (nudging_.load(std::memory_order_relaxed)) break;
      nudging_.store(true, std::memory_order_relaxed);
      unlink_locked(*w);
      w->state_.store(waiter::nudged, std::memory_order_release);
      append(w);
      break;
    }
    unlink_locked(*w);  // its units are taken
    // The head that starved is served: barging again.
    if (starving) starving_.store(false, std::memory_order_relaxed);
    w->state_.store(waiter::granted, std::memory_order_release);
    append(w);
  }
  if (head_ == nullptr) {
    state_.fetch_and(~waiters_bit, std::memory_order_release);
    starving_.store(false, std::memory_order_relaxed);
  }
  return first;
}

bool gate::take_locked(std::int64_t n) noexcept {
  // A CAS, not a check then an add: on a barging gate the lock-free fast
  // path takes units while we hold the lock.
  std::int64_t s = state_.load(std::memory_order_relaxed);
  while ((s & ~waiters_bit) + n <= size())
    if (state_.compare_exchange_weak(s, s + n, std::memory_order_acquire,
                                     std::memory_order_relaxed))
      return true;
  return false;
}

void gate::relink_head_locked(waiter& w) noexcept {
  w.prev_ = nullptr;
  w.next_ = head_;
  w.linked_ = true;
  (head_ ? head_->prev_ : tail_) = &w;
  head_ = &w;
}

void gate::wake_all(waiter* list) noexcept {
  while (list != nullptr) {
    waiter* next = list->next_;
    list->next_ = nullptr;
    list->wake();  // list may be gone after this
    list = next;
  }
}

bool gate::try_acquire_slow(std::int64_t n) noexcept {
  std::lock_guard lock(mu_);
  if (head_ != nullptr) return false;
  // Nobody waits, so fast paths run beside us: take the units with a CAS.
  std::int64_t s = state_.load(std::memory_order_relaxed);
  while (!(s & waiters_bit) && s + n <= size()) {
    if (state_.compare_exchange_weak(s, s + n, std::memory_order_acquire,
                                     std::memory_order_relaxed))
      return true;
  }
  return false;
}

bool gate::try_acquire_spinning(std::int64_t n) noexcept {
  return spin([&] { return try_acquire(n); }, take_pauses, 0);
}

bool gate::take_or_enqueue(waiter& w) {
  std::lock_guard lock(mu_);
  // Setting the bit first sends every fast path to the lock, so no release
  // can slip between our check and our enqueue.
  state_.fetch_or(waiters_bit, std::memory_order_acq_rel);
  if ((head_ == nullptr || may_barge()) && take_locked(w.n_)) {
    if (head_ == nullptr)
      state_.fetch_and(~waiters_bit, std::memory_order_release);
    w.state_.store(waiter::granted, std::memory_order_relaxed);
    return true;
  }
  if (barging_ && head_ == nullptr) w.since_ = ticks();  // the head now
  w.prev_ = tail_;
  w.next_ = nullptr;
  w.linked_ = true;
  (tail_ ? tail_->next_ : head_) = &w;
  tail_ = &w;
  return false;
}

bool gate::cancel(waiter& w) noexcept {
  waiter* granted = nullptr;
  {
    std::lock_guard lock(mu_);
    if (!w.linked_) return false;  // granted, or not queued yet
    const bool was_head = head_ == &w;
    unlink_locked(w);
    w.state_.store(waiter::cancelled, std::memory_order_release);
    // golang/go#37852: the waiters behind a head that gives up may fit now.
    if (was_head)
      granted = admit_locked();
    else if (head_ == nullptr)
      state_.fetch_and(~waiters_bit, std::memory_order_release);
  }
  wake_all(granted);
  return true;
}

void gate::cancel_all() noexcept {
  waiter* first = nullptr;
  waiter* last = nullptr;
  {
    std::lock_guard lock(mu_);
    while (waiter* w = head_) {
      unlink_locked(*w);
      w->state_.store(waiter::cancelled, std::memory_order_release);
      (last ? last->next_ : first) = w;
      last = w;
    }
    state_.fetch_and(~waiters_bit, std::memory_order_release);
  }
  wake_all(first);
}

// give_back(n) returns n held units, keeping waiters_bit, or throws and
// changes nothing. Sequentially consistent: the barging release pairs it
// with its load of nudging_ (Dekker with retake()).
void gate::give_back(std::int64_t n) {
  std::int64_t s = state_.load(std::memory_order_relaxed);
  do {
    if (n < 0 || (s & ~waiters_bit) < n)
      throw std::logic_error("semaphore: released more than held");
  } while (!state_.compare_exchange_weak(s, s - n, std::memory_order_seq_cst,
                                         std::memory_order_relaxed));
}

void gate::release_slow(std::int64_t n) {
  if (barging_) {
    // The units go back without the lock. A nudged waiter that has not
    // retaken yet will find them (retake() clears nudging_ before it looks),
    // so with one in flight there is nobody to wake: a release does not
    // queue behind the others on the lock.
    give_back(n);
    if (nudging_.load(std::memory_order_seq_cst) &&
        !starving_.load(std::memory_order_relaxed))
      return;
    waiter* granted = nullptr;
    {
      std::lock_guard lock(mu_);
      granted = admit_locked();
    }
    wake_all(granted);
    return;
  }
  waiter* granted = nullptr;
  {
    std::lock_guard lock(mu_);
    give_back(n);
    granted = admit_locked();
  }
  wake_all(granted);
}

bool gate::retake(waiter& w) noexcept {
  waiter* granted = nullptr;
  bool took = false;
  {
    std::lock_guard lock(mu_);
    // Cleared before we look at the units: a release that comes after our
    // look sees it cleared and nudges again (release_slow).
    nudging_.store(false, std::memory_order_seq_cst);
    // The bit first, as in take_or_enqueue: a release from now on locks.
    state_.fetch_or(waiters_bit, std::memory_order_seq_cst);
    if (take_locked(w.n_)) {
      w.state_.store(waiter::granted, std::memory_order_relaxed);
      took = true;
      granted = admit_locked();  // units may be left for the next ones
    } else {
      // Somebody barged. Back to the head; past starve_after, no more.
      if (ticks() - w.since_ >= starve_ticks)
        starving_.store(true, std::memory_order_relaxed);
      w.state_.store(waiter::waiting, std::memory_order_relaxed);
      relink_head_locked(w);
    }
  }
  wake_all(granted);
  return took;
}

error gate::acquire(const context& ctx, std::int64_t n) {
  if (ctx.cancelled()) return ctx.err();
  if (try_acquire(n)) return {};
  blocking_waiter w(n, choose_wait(/*may_queue=*/false, /*may_help=*/false));
  w.set_retries(barging_);
  if (take_or_enqueue(w)) return {};
  {
    std::stop_callback cb(ctx.stop_token(), [&]() noexcept {
      if (cancel(w)) w.wake();
    });
    for (;;) {
      w.block();
      if (w.outcome() != waiter::nudged) break;
      w.rearm();
      if (retake(w)) break;
      // Queued again. A cancellation while we were out of the queue removed
      // nothing: remove us now (false: somebody decided first, and wakes us).
      if (ctx.cancelled() && cancel(w)) break;
    }
  }
  if (w.outcome() == waiter::granted) {
    if (!ctx.cancelled()) return {};
    release(n);  // granted as ctx was cancelled: give the units back
  }
  return ctx.err();
}

}  // namespace errgroup::detail
