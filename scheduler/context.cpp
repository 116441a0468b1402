#include "errgroup/context.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace errgroup {
namespace detail {
namespace {
std::atomic<long> g_live_nodes{0};
}

const error& cancelled_sentinel() noexcept {
  static const error e = make_error<cancelled_error>();
  return e;
}

const error& deadline_sentinel() noexcept {
  static const error e = make_error<deadline_exceeded_error>();
  return e;
}

// timer is the one thread that serves every deadline in the process. It is
// started on first use and never stopped (it sleeps while nothing is due).
class timer {
 public:
  static timer& instance() {
    static timer* t = new timer();  // never destroyed: nodes may die late
    return *t;
  }

  void add(node& n, context::clock::time_point t) {
    std::lock_guard lock(mu_);
    auto it = queue_.emplace(t, entry{n.weak_from_this(), &n});
    n.timer_entry_ = new queue_t::iterator(it);
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
    if (it == queue_.begin()) cv_.notify_one();
  }

  void remove(node& n) noexcept {
    std::lock_guard lock(mu_);
    if (auto* it = static_cast<queue_t::iterator*>(n.timer_entry_)) {
      queue_.erase(*it);
      delete it;
      n.timer_entry_ = nullptr;
    }
  }

  std::size_t size() noexcept {
    std::lock_guard lock(mu_);
    return queue_.size();
  }

 private:
  struct entry {
    std::weak_ptr<node> weak;
    node* raw;  // valid while the entry is queued: ~node removes it first
  };
  using queue_t = std::multimap<context::clock::time_point, entry>;

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto it = queue_.begin();
      if (const auto due = it->first; due > context::clock::now()) {
        cv_.wait_until(lock, due);  // `it` may be erased while we wait
        continue;
      }
      std::shared_ptr<node> n = it->second.weak.lock();
      node* raw = it->second.raw;
      delete static_cast<queue_t::iterator*>(raw->timer_entry_);
      raw->timer_entry_ = nullptr;
      queue_.erase(it);
      if (!n) continue;  // dying: its destructor finds no entry
      lock.unlock();
      n->cancel(deadline_sentinel(), deadline_sentinel());
      n.reset();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  queue_t queue_;
  bool started_ = false;
};

std::size_t pending_timers() noexcept { return timer::instance().size(); }

long node::live_nodes() noexcept { return g_live_nodes.load(); }

void node::link::operator()() const noexcept {
  child->cancel(child->parent_->err(), child->parent_->cause());
}

std::shared_ptr<node> node::make(const std::shared_ptr<node>& parent) {
  std::shared_ptr<node> n(new node());
  g_live_nodes.fetch_add(1, std::memory_order_relaxed);
  if (parent) {
    n->parent_ = parent;
    n->deadline_ = parent->deadline_;
    // Runs link at once when the parent is already cancelled.
    n->link_.emplace(parent->src_.get_token(), link{n.get()});
  }
  return n;
}

node::~node() {
  link_.reset();  // waits for a parent cancellation running on this node
  if (has_timer_) timer::instance().remove(*this);
  g_live_nodes.fetch_sub(1, std::memory_order_relaxed);
}

void node::set_deadline(context::clock::time_point t) {
  if (deadline_ && *deadline_ <= t) return;  // the parent's comes first
  deadline_ = t;
  if (t <= context::clock::now()) {
    cancel(deadline_sentinel(), deadline_sentinel());
    return;
  }
  if (!cancelled()) {
    has_timer_ = true;
    timer::instance().add(*this, t);
  }
}

bool node::cancel(const error& err, const error& cause) {
  {
    std::lock_guard lock(mu_);
    if (done_.load(std::memory_order_relaxed)) return false;
    err_ = err;
    cause_ = cause ? cause : err;
    done_.store(true, std::memory_order_release);
  }
  tbb_.cancel_group_execution();
  src_.request_stop();  // children and waiters, on this thread
  if (has_timer_) timer::instance().remove(*this);
  return true;
}

}  // namespace detail

error context::err() const { return node_ ? node_->err() : error(); }

error context::cause() const { return node_ ? node_->cause() : error(); }

std::stop_token context::stop_token() const noexcept {
  return node_ ? node_->stop_source().get_token() : std::stop_token();
}

std::optional<context::clock::time_point> context::deadline() const noexcept {
  return node_ ? node_->deadline() : std::nullopt;
}

tbb::task_group_context& context::tbb_context() const noexcept {
  if (node_) return node_->tbb_context();
  static tbb::task_group_context* background =
      new tbb::task_group_context(tbb::task_group_context::isolated);
  return *background;
}

bool context::wait_until(clock::time_point t) const {
  if (!node_) {
    std::this_thread::sleep_until(t);
    return false;
  }
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  std::stop_callback cb(stop_token(), [&] {
    std::lock_guard lock(mu);
    fired = true;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait_until(lock, t, [&] { return fired; });
  return cancelled();
}

void cancel_func::operator()() const {
  node_->cancel(detail::cancelled_sentinel(), detail::cancelled_sentinel());
}

void cancel_func::operator()(error cause) const {
  node_->cancel(detail::cancelled_sentinel(), cause);
}

context_and_cancel with_cancel(const context& parent) {
  auto n = detail::node::make(parent.node());
  return {context(n), cancel_func(n)};
}

context_and_cancel with_deadline(const context& parent,
                                 context::clock::time_point t) {
  auto n = detail::node::make(parent.node());
  n->set_deadline(t);
  return {context(n), cancel_func(n)};
}

}  // namespace errgroup
