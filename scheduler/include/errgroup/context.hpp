// errgroup/context.hpp
//
// errgroup::context is Go's context.Context for oneTBB: a cheap, copyable
// handle to a node in a cancellation tree. Cancelling a node cancels every
// node derived from it (also ones derived later: they are born cancelled),
// never its parent. The first cause wins and the state is sticky.
//
// Each node owns an isolated tbb::task_group_context. Cancelling the node
// cancels that oneTBB context too, so oneTBB skips the tasks of the node that
// have not started, and oneTBB algorithms run under tbb_context() stop early.
// Our own state stays the record of what happened: a oneTBB wait() that
// resets its context never un-cancels a node.
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

#include "errgroup/error.hpp"

namespace errgroup {

namespace detail {
class node;
}

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

  // tbb_context() returns the oneTBB context mapped to this node. Pass it to
  // oneTBB algorithms (parallel_for(range, body, ctx.tbb_context())) so that
  // they stop when this context is cancelled. The background context maps to
  // an isolated context that is never cancelled.
  tbb::task_group_context& tbb_context() const noexcept;

  // wait_until(t) blocks the calling thread, without spinning, until the
  // context is cancelled or t passes, then returns cancelled(). On a oneTBB
  // worker thread it blocks that worker: prefer polling cancelled() there.
  bool wait_until(clock::time_point t) const;

  // wait_for(d) is wait_until(clock::now() + d).
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_until(clock::now() + std::chrono::ceil<clock::duration>(d));
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
// the parent is cancelled (immediately, if it already is).
context_and_cancel with_cancel(const context& parent);

// with_deadline(parent, t) is with_cancel(parent), and the child is also
// cancelled with deadline_exceeded_error when t passes. One process-wide timer
// thread serves every deadline; cancelling or dropping the context removes its
// timer.
context_and_cancel with_deadline(const context& parent,
                                 context::clock::time_point t);

// with_timeout(parent, d) is with_deadline(parent, now + d).
template <class Rep, class Period>
context_and_cancel with_timeout(const context& parent,
                                std::chrono::duration<Rep, Period> d) {
  return with_deadline(
      parent,
      context::clock::now() + std::chrono::ceil<context::clock::duration>(d));
}

}  // namespace errgroup

#include "errgroup/detail/node.hpp"
