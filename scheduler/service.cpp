#include "service.hpp"

#include <memory>

namespace errgroup::detail {

service& service::instance() {
  static service* s = new service();  // never destroyed: calls may come late
  return *s;
}

void* service::at(clock::time_point t, function f, void* arg) {
  auto e = std::make_unique<entry>(entry{t, f, arg});
  std::unique_lock lock(mu_);
  const bool first = queue_.empty() || earlier{}(e.get(), *queue_.begin());
  queue_.insert(e.get());
  if (!started_) {
    try {
      std::thread([this] { run(); }).detach();
    } catch (...) {
      queue_.erase(e.get());
      throw;
    }
    started_ = true;
  }
  if (first) cv_.notify_one();
  return e.release();
}

void service::cancel(void* h) noexcept {
  std::lock_guard lock(mu_);
  queue_.erase(static_cast<entry*>(h));
}

void service::release(void* h) noexcept {
  auto* e = static_cast<entry*>(h);
  {
    std::unique_lock lock(mu_);
    queue_.erase(e);
    // Being called on another thread: wait. From the call itself, the
    // service touches e no more once the call returns.
    if (std::this_thread::get_id() != runner_)
      done_cv_.wait(lock, [&] { return running_ != e; });
  }
  delete e;
}

std::size_t service::size(function f) noexcept {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const entry* e : queue_) n += e->f == f;
  return n;
}

void service::run() noexcept {
  std::unique_lock lock(mu_);
  runner_ = std::this_thread::get_id();
  for (;;) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    entry* e = *queue_.begin();
    // A copy: e may be cancelled and freed while we wait (wait_until takes
    // the time by reference).
    if (const clock::time_point due = e->t; due > clock::now()) {
      cv_.wait_until(lock, due);
      continue;
    }
    queue_.erase(queue_.begin());
    running_ = e;
    lock.unlock();
    e->f(e->arg);
    lock.lock();
    running_ = nullptr;  // e is the caller's to release now
    done_cv_.notify_all();
  }
}

}  // namespace errgroup::detail
