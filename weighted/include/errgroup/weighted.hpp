// errgroup/weighted.hpp
//
// errgroup::weighted is Go's semaphore.Weighted: a budget of `size` units,
// handed out first come, first served. Use it to bound work by total cost,
// e.g. a memory budget in MiB where each job costs its size, shared by as many
// groups as you like.
//
// Example (full program: samples/weighted_batch.cpp):
//   errgroup::weighted budget{budget_kib};
//   for (job& j : jobs)
//     g.go(budget, j.weight, [&j](const errgroup::context& c) {
//       compress(c, j);                    // holds j.weight KiB meanwhile
//     });
//   if (errgroup::error err = g.wait()) fail(err);
//
// Strict FIFO by default: a large request at the head of the queue holds
// back smaller ones behind it, so it cannot starve, and try_acquire() never
// overtakes a waiter. A waiting acquire() never blocks a oneTBB worker
// thread: the calling task is suspended and the thread runs other tasks
// (past a process-wide cap on suspended tasks it blocks the thread); other
// threads block without spinning.
//
// order::barging is an opt-in for a budget contended by more OS threads
// than cores (Java's non-fair Semaphore, Go's sync.Mutex): a request takes
// free units although others wait, and a release wakes the first waiter to
// try again rather than handing it the units. A running thread then goes on
// instead of waiting for a parked one to be scheduled, a context switch per
// grant (bench_semaphore, size 1, 8 threads on 2 cores: 28 ns a pair
// against 7.9 us in FIFO order).
// Unfairness is bounded: once a waiter has been first in line for 1 ms,
// the budget is FIFO again until that waiter is served.
// Go's semaphore.Weighted has only FIFO (goroutine hand-offs are cheap).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <utility>

#include "errgroup/context.hpp"
#include "errgroup/detail/gate.hpp"
#include "errgroup/error.hpp"

namespace errgroup {

class weighted {
 public:
  // max_size is the largest budget: 2^61 units (the gate keeps a flag in
  // the bits above). Go's accepts any int64.
  static constexpr std::int64_t max_size = std::int64_t{1} << 61;

  // order: how waiting requests are served (see the top).
  enum class order { fifo, barging };

  // weighted(size, o) makes a budget of size units, all free. Throws
  // std::invalid_argument when size < 0 or size > max_size.
  explicit weighted(std::int64_t size, order o = order::fifo);
  weighted(const weighted&) = delete;
  weighted& operator=(const weighted&) = delete;

  // acquire(ctx, n) takes n units, waiting until they are free or ctx is
  // done. Returns no error on success. If ctx is done on entry (even with
  // units free) or before the units are granted, returns ctx.err() and leaves
  // the semaphore unchanged (a grant that races with cancellation is given
  // back). n > size() returns an std::invalid_argument error at once (Go
  // would block until ctx is done). Throws std::invalid_argument when n < 0.
  [[nodiscard]] error acquire(const context& ctx, std::int64_t n);

  // try_acquire(n) takes n units only if they are free now and nobody is
  // waiting (barging: unless the first has been first for 1 ms), and reports
  // whether it did. Never blocks. Throws std::invalid_argument when n < 0.
  [[nodiscard]] bool try_acquire(std::int64_t n);

  // release(n) gives n units back and wakes waiters in order (barging: wakes
  // the first waiter, if its units are free, to try again). Throws
  // std::logic_error("semaphore: released more than held") and leaves the
  // semaphore unchanged when n is more than is held; std::invalid_argument
  // when n < 0.
  void release(std::int64_t n);

  // size() returns the budget; available() the units free now.
  std::int64_t size() const noexcept { return gate_.size(); }
  std::int64_t available() const noexcept { return gate_.available(); }

  // For group::go(budget, n, f).
  detail::gate& gate() noexcept { return gate_; }

 private:
  detail::gate gate_;
};

// permit holds units of a weighted and gives them back when destroyed (or on
// release()). Move-only. Make one with acquire_permit or try_acquire_permit:
//   auto [p, err] = errgroup::acquire_permit(sem, ctx, 4);
//   if (err) return err;        // p holds nothing
//   ...                         // p gives the 4 units back at scope exit
class permit {
 public:
  permit() noexcept = default;
  permit(weighted& sem, std::int64_t n) noexcept : sem_(&sem), n_(n) {}
  permit(permit&& o) noexcept
      : sem_(std::exchange(o.sem_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  permit& operator=(permit&& o) noexcept {
    if (this != &o) {
      reset();
      sem_ = std::exchange(o.sem_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~permit() { reset(); }

  // units() returns how many units this permit holds (0 when empty).
  std::int64_t units() const noexcept { return n_; }
  explicit operator bool() const noexcept { return sem_ != nullptr; }

  // reset() gives the units back now; the permit is empty afterwards.
  void reset() noexcept {
    if (sem_ != nullptr) std::exchange(sem_, nullptr)->release(n_);
    n_ = 0;
  }

 private:
  weighted* sem_ = nullptr;
  std::int64_t n_ = 0;
};

struct permit_and_error {
  permit units;
  error err;
};

// acquire_permit(sem, ctx, n) is sem.acquire(ctx, n) whose units are held
// by the returned permit (empty when err is set).
permit_and_error acquire_permit(weighted& sem, const context& ctx,
                                std::int64_t n);

// try_acquire_permit(sem, n) is sem.try_acquire(n) as a permit (empty when
// the units were not free).
permit try_acquire_permit(weighted& sem, std::int64_t n);

}  // namespace errgroup
