// errgroup/detail/gate.hpp: FIFO admission of weighted requests, the engine
// of both group::set_limit() and errgroup::weighted. Not part of the public
// API.
//
// A gate has `size` units. A fifo gate serves requests strictly first come,
// first served: while anybody waits, nobody barges (try_acquire fails and new
// requests queue), and a release hands the units to the head waiter. The
// uncontended path is one CAS; the lock is taken only when somebody waits.
//
// A barging gate (weighted::order::barging) lets a request take free units
// although others wait, and a release wakes the head waiter to try again
// (a nudge) instead of handing it the units: a running thread takes them
// rather than waiting for a parked one to be scheduled, a context switch
// per grant. While a nudged waiter has not tried yet, a release gives its
// units back without the lock: that waiter will find them. Unfairness is
// bounded: once a waiter has been the head for starve_after (1 ms, as Go's
// sync.Mutex), the gate is fifo until that waiter is served.
//
// A waiter is woken exactly once per decision, outside the lock, by whoever
// made it: the releaser that granted or nudged it, or the canceller that
// removed it. Every decision takes the waiter out of the queue, so nobody
// makes another until it is queued again (a nudged waiter, by retake()).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"

namespace errgroup::detail {

class waiter {
 public:
  enum state : int { waiting = 0, granted = 1, cancelled = 2, nudged = 3 };
  explicit waiter(std::int64_t n) noexcept : n_(n) {}
  // A waiter that retries is nudged by a barging gate (woken to try again,
  // with nothing granted) instead of being handed units; see gate::retake.
  void set_retries(bool r) noexcept { retries_ = r; }
  std::int64_t units() const noexcept { return n_; }
  state outcome() const noexcept {
    return static_cast<state>(state_.load(std::memory_order_acquire));
  }
  // wake() is called once, outside the gate's lock, after outcome() is set.
  virtual void wake() noexcept = 0;
  // reset(n) makes an idle waiter ready to wait again, for n units.
  void reset(std::int64_t n) noexcept {
    n_ = n;
    state_.store(waiting, std::memory_order_relaxed);
  }

 protected:
  ~waiter() = default;

 private:
  friend class gate;
  std::int64_t n_;
  std::atomic<int> state_{waiting};
  bool linked_ = false;  // queued at a gate; guarded by that gate's mutex
  bool retries_ = false;
  std::int64_t since_ = 0;  // barging gates: since when it is the head
  waiter* next_ = nullptr;
  waiter* prev_ = nullptr;
};

// How a party that must wait does it.
enum class wait_kind {
  suspend,  // suspend the calling oneTBB task; the thread runs other work
  block,    // block the calling thread (after a short spin)
  queue,    // do not wait: queue the work and return
  help,     // run the waited-for group's tasks until woken (not in a task)
};

// choose_wait(may_queue, may_help) picks how the calling thread waits.
// Inside a oneTBB task: suspend while fewer than the process-wide cap of
// tasks are suspended (a ticket is then held until the blocking_waiter made
// with it dies), else queue if allowed, else block. Outside any task (a
// thread of the application, also inside task_arena::execute): help if
// allowed, else block.
wait_kind choose_wait(bool may_queue, bool may_help) noexcept;

// blocking_waiter waits on the calling thread, by suspending the calling
// task or blocking the thread (kind from choose_wait). Never spins.
class blocking_waiter final : public waiter {
 public:
  blocking_waiter(std::int64_t n, wait_kind kind) noexcept;
  ~blocking_waiter();
  blocking_waiter(const blocking_waiter&) = delete;
  blocking_waiter& operator=(const blocking_waiter&) = delete;
  // block() returns once wake() was called.
  void block() noexcept;
  void wake() noexcept override;
  // rearm() makes a nudged waiter ready to block again.
  void rearm() noexcept;

 private:
  bool suspend_;
  std::atomic<int> handshake_{0};
  void* suspend_point_ = nullptr;
  std::atomic<bool> woken_{false};
};

class gate {
 public:
  static constexpr std::int64_t max_size = std::int64_t{1} << 61;
  static constexpr std::chrono::microseconds starve_after{1000};
  explicit gate(std::int64_t size, bool barging = false) noexcept
      : size_(size), barging_(barging) {}
  gate(const gate&) = delete;
  gate& operator=(const gate&) = delete;

  std::int64_t size() const noexcept {
    return size_.load(std::memory_order_relaxed);
  }
  std::int64_t available() const noexcept {
    return size() - (state_.load(std::memory_order_acquire) & ~waiters_bit);
  }
  bool has_waiters() const noexcept {
    return state_.load(std::memory_order_acquire) & waiters_bit;
  }
  // resize(n): only while nothing is held or waiting.
  void resize(std::int64_t n) noexcept {
    size_.store(n, std::memory_order_relaxed);
  }

  bool barging() const noexcept { return barging_; }

  // try_acquire(n) takes n units if they are free and nobody waits (barging:
  // unless a waiter starves).
  bool try_acquire(std::int64_t n) noexcept {
    std::int64_t s = state_.load(std::memory_order_relaxed);
    while ((!(s & waiters_bit) || may_barge()) &&
           (s & ~waiters_bit) + n <= size()) {
      if (state_.compare_exchange_weak(s, s + n, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    }
    return (s & waiters_bit) && !may_barge() ? try_acquire_slow(n) : false;
  }

  // try_acquire_spinning(n) is try_acquire(n) retried for about a
  // microsecond: a slot between short tasks frees sooner than a wait can be
  // set up.
  bool try_acquire_spinning(std::int64_t n) noexcept;

  // take_or_enqueue(w) takes w.units() now if possible (returns true), else
  // queues w at the tail (returns false; w is woken later exactly once).
  bool take_or_enqueue(waiter& w);

  // cancel(w) removes w if it still waits, marks it cancelled, wakes the
  // waiters behind it if it was the head and units are free, and reports
  // whether it removed w (the caller then wakes or disposes of w). False
  // means w was already granted.
  bool cancel(waiter& w) noexcept;

  // cancel_all() removes every waiter, marks each cancelled and wakes it:
  // one pass under the lock, for a group whose context was cancelled.
  void cancel_all() noexcept;

  // release(n) gives n units back and wakes waiters in order. Throws
  // std::logic_error("semaphore: released more than held") when more than is
  // held, leaving the gate unchanged.
  void release(std::int64_t n) {
    std::int64_t s = state_.load(std::memory_order_relaxed);
    while (!(s & waiters_bit) && s >= n) {
      if (state_.compare_exchange_weak(s, s - n, std::memory_order_release,
                                       std::memory_order_relaxed))
        return;
    }
    release_slow(n);
  }

  // acquire(ctx, n) blocks (blocking_waiter) until n units are taken, or ctx
  // is done: then it returns ctx.err() and leaves the gate unchanged. A done
  // ctx fails even when units are free.
  error acquire(const context& ctx, std::int64_t n);

  // retake(w): a nudged waiter w tries again. It takes its units if they
  // fit (returns true: w is granted), else goes back to the head of the
  // queue, the gate turning fifo if w has starved (returns false; w is
  // woken later exactly once).
  bool retake(waiter& w) noexcept;

 private:
  static constexpr std::int64_t waiters_bit = std::int64_t{1} << 62;
  bool try_acquire_slow(std::int64_t n) noexcept;
  void release_slow(std::int64_t n);
  void give_back(std::int64_t n);
  // may_barge(): new requests may take free units past the waiters.
  bool may_barge() const noexcept {
    return barging_ && !starving_.load(std::memory_order_relaxed);
  }
  bool fits_locked(std::int64_t n) const noexcept {
    return size() - (state_.load(std::memory_order_relaxed) & ~waiters_bit) >=
           n;
  }
  // admit_locked() decides for the waiters at the head while units suffice:
  // grants them (fifo, or starving), or nudges the head (barging, a waiter
  // that retries; one nudge in flight at a time). Returns the list to wake
  // after unlocking.
  waiter* admit_locked() noexcept;
  void relink_head_locked(waiter& w) noexcept;
  // take_locked(n) takes n units if they are free (a CAS: see gate.cpp).
  bool take_locked(std::int64_t n) noexcept;
  static void wake_all(waiter* list) noexcept;
  void unlink_locked(waiter& w) noexcept;

  std::atomic<std::int64_t> state_{0};  // units held | waiters_bit
  std::atomic<std::int64_t> size_;
  const bool barging_;
  std::mutex mu_;
  waiter* head_ = nullptr;  // guarded by mu_
  waiter* tail_ = nullptr;
  std::atomic<bool> nudging_{false};   // a nudged waiter has not retaken yet
  std::atomic<bool> starving_{false};  // a barging gate serves fifo for now
};

}  // namespace errgroup::detail
