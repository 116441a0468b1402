// errgroup/context.hpp
//
// errgroup::context is Go's context.Context for oneTBB: a cheap, copyable
// handle to a node in a cancellation tree. Cancelling a node cancels every
// node derived from it (also ones derived later: they are born cancelled),
// never its parent. The first cause wins and the state is sticky.
//
// Each node maps to oneTBB contexts (docs/design.md): the one its group's
// tasks are spawned into, and the ones tbb_context() hands out to
// algorithms, bound below it. Cancelling the node cancels them all, so
// oneTBB skips the tasks that have not started and algorithms stop early.
// Nothing done to a oneTBB context cancels the node, except the enclosing
// work it belongs to: a context made while the calling thread runs a oneTBB
// task belongs to that task's work, as a default (bound)
// tbb::task_group_context does, and is cancelled (cancelled_error) when that
// work is. Like such a context, it must then not outlive that work; make it
// with errgroup::isolated to opt out. with_tbb_context() binds a context to
// any tbb::task_group_context. Our own state stays the record of what
// happened: a oneTBB wait() that resets its context never un-cancels a node.
//
// Example:
//   auto [ctx, cancel] = errgroup::with_timeout(errgroup::context(), 2s);
//   std::jthread worker([ctx] { while (!ctx.cancelled()) poll(); });
//   cancel();                          // or the deadline passes
//   assert(ctx.err().is<errgroup::cancelled_error>());
//
// Thread safety: every member is safe to call from any thread, including
// oneTBB worker threads. Only wait_for()/wait_until() block.
#pragma once

#include <oneapi/tbb/task_group.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>

#include "errgroup/error.hpp"

namespace errgroup {

namespace detail {
class node;

// deadline_after(d) is now + d, saturated: a duration too long to add is
// "practically never" (time_point::max()), a negative one is now.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(
    std::chrono::duration<Rep, Period> d) noexcept {
  using clock = std::chrono::steady_clock;
  const clock::time_point now = clock::now();
  if (!(d > d.zero())) return now;  // also NaN
  // Compared in long double seconds: no representation overflows there. A
  // second of margin keeps ceil() below from stepping over the edge.
  const std::chrono::duration<long double> room =
      clock::time_point::max() - now - std::chrono::seconds(1);
  if (std::chrono::duration<long double>(d) >= room)
    return clock::time_point::max();
  return now + std::chrono::ceil<clock::duration>(d);
}
}  // namespace detail

// isolated is the tag that opts a new context or group out of belonging to
// the oneTBB task the calling thread runs (see the top of this file).
struct isolated_t {
  explicit isolated_t() = default;
};
inline constexpr isolated_t isolated{};

class context {
 public:
  using clock = std::chrono::steady_clock;

  // context() is the root, Go's context.Background(): never cancelled, no
  // deadline.
  context() noexcept = default;
  static context background() noexcept { return context(); }

  // cancelled() reports whether the context is done. Lock-free.
  bool cancelled() const noexcept;

  // err() returns no error while the context is live; then a cancelled_error
  // or a deadline_exceeded_error. The same error object is returned every
  // time, and children cancelled through this context share it.
  error err() const;

  // cause() returns the error the context was cancelled with (Go's
  // context.Cause), or err() when cancel() was called without a cause.
  error cause() const;

  // stop_token() returns a token whose stop is requested exactly when the
  // context is cancelled. The background context's token never stops.
  std::stop_token stop_token() const noexcept;

  // deadline() returns the nearest deadline on the path to the root, if any.
  std::optional<clock::time_point> deadline() const noexcept;

  // tbb_context() returns a oneTBB context for algorithms:
  // parallel_for(range, body, ctx.tbb_context()) stops when this context is
  // cancelled. It is the algorithms' own: an exception escaping them or
  // their cancel_group_execution() stops them only, never cancels this
  // context or a group. Called from a task of this context's group (or, for
  // background, of any group), it is that task's own (two tasks never stop
  // each other's algorithms); elsewhere it is the context's (background's:
  // the calling thread's). Once such a oneTBB context was stopped while this
  // context is live, the next call hands out a fresh one. Valid while the
  // task runs (the context lives, the thread lives). May throw
  // std::bad_alloc.
  tbb::task_group_context& tbb_context() const;

  // wait_until(t) blocks the calling thread, without spinning, until the
  // context is cancelled or t passes, then returns cancelled(). On a oneTBB
  // worker thread it blocks that worker: prefer polling cancelled() there.
  bool wait_until(clock::time_point t) const;

  // wait_for(d) is wait_until(clock::now() + d); a d too long to add waits
  // "forever" (until time_point::max()).
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_until(detail::deadline_after(d));
  }

  // Two contexts are equal when they are handles to the same node.
  friend bool operator==(const context& a, const context& b) noexcept {
    return a.node_ == b.node_;
  }

  // For the library: the node behind this handle (null for background).
  explicit context(std::shared_ptr<detail::node> n) noexcept
      : node_(std::move(n)) {}
  const std::shared_ptr<detail::node>& node() const noexcept { return node_; }

 private:
  std::shared_ptr<detail::node> node_;
};

// cancel_func cancels the context it came with, and every context derived
// from it. Calling it again, or after the context was cancelled another way,
// does nothing: the first cause wins. Never blocks on other tasks; safe on any
// thread.
class cancel_func {
 public:
  // operator()() cancels with cancelled_error as both err() and cause().
  void operator()() const;
  // operator()(cause) cancels with err() == cancelled_error and cause() ==
  // cause (cancelled_error when cause is empty).
  void operator()(error cause) const;

  explicit cancel_func(std::shared_ptr<detail::node> n) noexcept
      : node_(std::move(n)) {}

 private:
  std::shared_ptr<detail::node> node_;
};

// The result of with_cancel, with_deadline and with_timeout:
//   auto [ctx, cancel] = errgroup::with_cancel(parent);
struct context_and_cancel {
  context ctx;
  cancel_func cancel;
};

// with_cancel(parent) returns a new child of parent and the function that
// cancels it. The child is cancelled with the parent's err() and cause() when
// the parent is cancelled (immediately, if it already is). Made inside a
// oneTBB task, it also belongs to that task's work (see the top).
context_and_cancel with_cancel(const context& parent);

// with_cancel(isolated, parent) is with_cancel(parent) that belongs to no
// oneTBB work, wherever it is made.
context_and_cancel with_cancel(isolated_t, const context& parent);

// with_tbb_context(parent, tbb) is with_cancel(parent) that is also
// cancelled (cancelled_error) when the oneTBB context tbb is: by an
// exception or cancel_group_execution() in its work, or by propagation from
// the work it is bound to. tbb must outlive the returned context, as a
// bound oneTBB context's parent must. A tbb that was never used is bound as
// oneTBB binds on first use (below the calling thread's task, if any).
context_and_cancel with_tbb_context(const context& parent,
                                    tbb::task_group_context& tbb);

// with_deadline(parent, t) is with_cancel(parent), and the child is also
// cancelled with deadline_exceeded_error when t passes. One process-wide timer
// thread serves every deadline; cancelling or dropping the context removes its
// timer.
context_and_cancel with_deadline(const context& parent,
                                 context::clock::time_point t);

// with_timeout(parent, d) is with_deadline(parent, now + d); a d too long
// to add means no deadline in practice (time_point::max(): no timer).
template <class Rep, class Period>
context_and_cancel with_timeout(const context& parent,
                                std::chrono::duration<Rep, Period> d) {
  return with_deadline(parent, detail::deadline_after(d));
}

}  // namespace errgroup
