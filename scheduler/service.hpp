// scheduler/service.hpp: the library's one background thread. Private to
// the library (not installed): the scheduler module, and the group's stall
// check (group/extras.cpp).
//
// The service calls plain functions at given times: the deadlines of
// contexts, the poll of nodes bound to enclosing oneTBB work, and the stall
// checks of groups that asked for them. It knows
// nothing of what it calls. It starts on first use and is never stopped; it
// sleeps while nothing is due.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <set>
#include <thread>

namespace errgroup::detail {

class service {
 public:
  using clock = std::chrono::steady_clock;
  using function = void (*)(void*) noexcept;

  static service& instance();

  // at(t, f, arg) calls f(arg) on the service thread once t has passed and
  // returns a handle, which the caller must release() once. Throws
  // std::bad_alloc, or std::system_error when the thread cannot start
  // (nothing is queued then).
  void* at(clock::time_point t, function f, void* arg);

  // cancel(h): if the call was not made yet, it will not be. Never waits.
  void cancel(void* h) noexcept;

  // release(h) is cancel(h) that also waits for the call if it is being
  // made on another thread now, then frees h. Safe from the call itself.
  void release(void* h) noexcept;

  // size(f) counts the calls of f waiting.
  std::size_t size(function f) noexcept;

 private:
  struct entry {
    clock::time_point t;
    function f;
    void* arg;
  };
  struct earlier {
    bool operator()(const entry* a, const entry* b) const noexcept {
      return a->t != b->t ? a->t < b->t : a < b;
    }
  };
  void run() noexcept;

  std::mutex mu_;
  std::condition_variable cv_;       // new work, or an earlier time
  std::condition_variable done_cv_;  // running_ changed
  std::set<entry*, earlier> queue_;  // guarded by mu_
  entry* running_ = nullptr;         // being called now
  std::thread::id runner_;
  bool started_ = false;
};

}  // namespace errgroup::detail
