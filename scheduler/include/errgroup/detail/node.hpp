// errgroup/detail/node.hpp: the node behind an errgroup::context. Not part of
// the public API.
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

// node is one context in the cancellation tree. A child holds its parent
// alive (shared_ptr) and is linked to it through a std::stop_callback on the
// parent's stop_source, which unlinks itself when the child dies, so a parent
// never keeps dead children alive.
class node : public std::enable_shared_from_this<node> {
 public:
  // make(parent, cancellable) creates a child of parent (null: a root).
  static std::shared_ptr<node> make(const std::shared_ptr<node>& parent);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  bool cancelled() const noexcept {
    return done_.load(std::memory_order_acquire);
  }
  // cancel(err, cause) reports whether this call cancelled the node (false:
  // it already was). Cancels the oneTBB context, then every child and stop
  // callback, on the calling thread.
  bool cancel(const error& err, const error& cause);
  error err() const noexcept { return cancelled() ? err_ : error(); }
  error cause() const noexcept { return cancelled() ? cause_ : error(); }

  std::stop_source& stop_source() noexcept { return src_; }
  tbb::task_group_context& tbb_context() noexcept { return tbb_; }
  std::optional<context::clock::time_point> deadline() const noexcept {
    return deadline_;
  }
  void set_deadline(context::clock::time_point t);

  // live_nodes() counts nodes alive in the process (for leak tests).
  static long live_nodes() noexcept;

 private:
  struct link {
    node* child;
    void operator()() const noexcept;
  };
  node() = default;

  std::atomic<bool> done_{false};
  std::mutex mu_;
  error err_, cause_;  // written once under mu_, before done_
  std::optional<context::clock::time_point> deadline_;
  std::stop_source src_;
  tbb::task_group_context tbb_{tbb::task_group_context::isolated};
  std::shared_ptr<node> parent_;
  friend class timer;
  void* timer_entry_ = nullptr;         // guarded by the timer's mutex
  std::atomic<bool> has_timer_{false};  // read by a concurrent cancel()
  // Declared last, destroyed first: the link waits for a running parent
  // cancellation to finish before the rest of the node goes away.
  std::optional<std::stop_callback<link>> link_;
};

// pending_timers() counts deadlines waiting in the process-wide timer.
std::size_t pending_timers() noexcept;

// The sentinels: every cancelled context's err() is one of these two objects.
const error& cancelled_sentinel() noexcept;
const error& deadline_sentinel() noexcept;

}  // namespace errgroup::detail

namespace errgroup {

inline bool context::cancelled() const noexcept {
  return node_ && node_->cancelled();
}

}  // namespace errgroup
