// errgroup/detail/node.hpp: the node behind an errgroup::context, and how it
// maps to oneTBB contexts. Not part of the public API; docs/design.md has the
// picture.
//
// Invariants:
// - A node's own state (done_, err_, cause_) is the record of what happened:
//   set once, under mu_, before any oneTBB context or stop callback hears of
//   it, and never reset.
// - spawn_ctx_ is the oneTBB context the node's group spawns into and waits
//   on. Only the library cancels it (node::cancel), and oneTBB's propagation
//   from the enclosing work it is bound to; no user algorithm ever runs under
//   it, so no exception is ever stored in it and nothing resets it.
// - Algorithms run under contexts handed out by context::tbb_context(): one
//   per running task (or per node, or per thread for background), each bound
//   below spawn_ctx_ so the node's cancellation reaches them, none shared by
//   two tasks. A poisoned one (cancelled while the node is not) is replaced,
//   never reset under a running algorithm.
#pragma once

#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"

namespace errgroup::detail {

// algo_context is one oneTBB context handed out by tbb_context(), in a list
// of the ones handed out to the same owner (newest first).
struct algo_context {
  tbb::task_group_context ctx;
  algo_context* older = nullptr;
  explicit algo_context(tbb::task_group_context::kind_type k) : ctx(k) {}
};

// node is one context in the cancellation tree. A child holds its parent
// alive (shared_ptr) and is linked to it through a std::stop_callback on the
// parent's stop_source, which unlinks itself when the child dies, so a parent
// never keeps dead children alive. Cancelling and destroying chains of any
// depth use no recursion that grows with depth.
class node : public std::enable_shared_from_this<node> {
 public:
  // make(parent, belongs) creates a child of parent (null: a root). With
  // belongs, a node made inside a oneTBB task is bound below that task's
  // oneTBB context: cancelling that work cancels the node (cancelled_error).
  static std::shared_ptr<node> make(const std::shared_ptr<node>& parent,
                                    bool belongs = true);
  // make_bound(parent, tbb) creates a child of parent that is also
  // cancelled when the oneTBB context tbb is (bound below it).
  static std::shared_ptr<node> make_bound(const std::shared_ptr<node>& parent,
                                          tbb::task_group_context& tbb);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  // cancelled() reports whether the node is done; lock-free. A node bound to
  // enclosing oneTBB work also notices here that the work was cancelled.
  bool cancelled() noexcept {
    if (done_.load(std::memory_order_acquire)) return true;
    return bound_ && notice_enclosing();
  }
  // cancel(err, cause) reports whether this call cancelled the node (false:
  // it already was). Cancels the oneTBB contexts, then every child and stop
  // callback, on the calling thread.
  bool cancel(const error& err, const error& cause) noexcept {
    return cancel(err, cause, origin::caller);
  }
  error err() noexcept { return cancelled() ? err_ : error(); }
  error cause() noexcept { return cancelled() ? cause_ : error(); }

  // cancelled_by_enclosing() reports whether the node was cancelled by the
  // oneTBB work it belongs to (or is bound to) rather than by a cancel().
  bool cancelled_by_enclosing() noexcept {
    return cancelled() && by_enclosing_.load(std::memory_order_acquire);
  }

  std::stop_source& stop_source() noexcept { return src_; }
  // spawn_context() is where the node's group spawns and waits (see top).
  tbb::task_group_context& spawn_context() noexcept { return spawn_ctx_; }
  // algo_context() is the context tbb_context() hands out to callers that
  // are not one of the node's running tasks.
  tbb::task_group_context& algo_context();
  std::optional<context::clock::time_point> deadline() const noexcept {
    return deadline_;
  }
  void set_deadline(context::clock::time_point t);

  // live_nodes() counts nodes alive in the process (for leak tests).
  static long live_nodes() noexcept;
  // deadline_passed(n) is what the service calls at a node's deadline.
  static void deadline_passed(void* n) noexcept;

 private:
  friend class bound_nodes;
  friend struct node_ops;
  struct link {
    node* child;
    void operator()() const noexcept;
  };
  explicit node(tbb::task_group_context::kind_type k);
  // Who cancels: recorded with the error, before anyone can see the node
  // cancelled (a woken task's wait() must find the origin already set).
  enum class origin { caller, enclosing_work };
  bool cancel(const error& err, const error& cause, origin from) noexcept;
  // notice_enclosing() cancels the node if the oneTBB work it is bound to
  // was cancelled, and reports whether it did.
  bool notice_enclosing() noexcept;
  void bind_here(bool belongs);
  void notify() noexcept;

  std::atomic<bool> done_{false};
  bool bound_ = false;  // spawn_ctx_ is bound below enclosing oneTBB work
  std::atomic<bool> by_enclosing_{false};  // written under mu_, before done_
  std::mutex mu_;
  error err_, cause_;  // written once under mu_, before done_
  std::optional<context::clock::time_point> deadline_;
  std::stop_source src_;
  tbb::task_group_context spawn_ctx_;
  detail::algo_context* algo_ = nullptr;  // guarded by mu_
  std::shared_ptr<node> parent_;
  // The node whose task this one was made in: spawn_ctx_ is bound below its
  // spawn_ctx_, which must outlive ours.
  std::shared_ptr<node> enclosing_;
  std::atomic<void*> timer_{nullptr};  // the service's handle (deadline)
  node* bound_prev_ = nullptr;         // in bound_nodes, under its mutex
  node* bound_next_ = nullptr;
  // Links of the lists of deferred work (context.cpp): notifying and
  // releasing (a thread's), and the poll's found list (the service's).
  std::shared_ptr<node> notify_next_, release_next_, poll_next_;
  // Declared last, destroyed first: the link waits for a running parent
  // cancellation to finish before the rest of the node goes away.
  std::optional<std::stop_callback<link>> link_;
};

// runs_under(ctx) reports whether the calling thread runs oneTBB work under
// ctx: its innermost oneTBB context is ctx, or is bound below it.
bool runs_under(const tbb::task_group_context& ctx) noexcept;

// task_frame marks a task of a node's group running on this thread; the
// frames of the tasks running on one thread form a stack. tbb_context()
// called by the task hands out the frame's own algorithm contexts.
//
// A frame is current only while oneTBB's innermost context on the thread
// is its node's spawn context (checked by address, never through the
// frame): when tasks migrate between threads (suspension) or oneTBB
// switches stacks, a thread's stack of frames may be out of date, and then
// no frame is current rather than a wrong one.
class task_frame {
 public:
  explicit task_frame(node& owner) noexcept;
  ~task_frame();  // pops the frame and frees its algorithm contexts
  task_frame(const task_frame&) = delete;
  task_frame& operator=(const task_frame&) = delete;

  // current() is the frame of the task running innermost on this thread,
  // or null.
  static task_frame* current() noexcept;
  // suspend_scope takes the frames off this thread while a task is
  // suspended (it may resume on another thread) and puts them back after.
  class suspend_scope;

  node& owner() const noexcept { return *owner_; }
  tbb::task_group_context& algo_context();

  // top is a thread's innermost frame and its spawn context.
  struct top {
    const tbb::task_group_context* ctx = nullptr;
    task_frame* frame = nullptr;
  };

 private:
  node* owner_;
  top outer_;
  detail::algo_context* algo_ = nullptr;
};

class task_frame::suspend_scope {
 public:
  suspend_scope() noexcept;
  ~suspend_scope();
  suspend_scope(const suspend_scope&) = delete;
  suspend_scope& operator=(const suspend_scope&) = delete;

 private:
  top saved_;
};

// pending_timers() counts deadlines waiting in the process-wide timer.
std::size_t pending_timers() noexcept;

// The sentinels: every cancelled context's err() is one of these two objects.
const error& cancelled_sentinel() noexcept;
const error& deadline_sentinel() noexcept;

}  // namespace errgroup::detail
