// tests/support.hpp: the helpers the test files share, and the only place
// for them: a helper that a second test file needs moves here
// (tests/README.md).
#pragma once

#include <doctest/doctest.h>
#include <oneapi/tbb/task.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <fstream>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/detail/node.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"

namespace test {

// sanitized: a sanitizer's allocator keeps freed memory in quarantine, so
// the resident set says nothing about leaks there (LeakSanitizer does).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr bool sanitized = false;
#endif

// ---- threads and time ----

// The thread counts invariants are checked over.
inline constexpr int thread_counts[] = {1, 2, 4};

// spin_until(pred, limit) yields until pred() holds and reports whether it
// did before `limit` passed. It waits for a state the test set up, never
// for time to pass; the limit only turns a hang into a failed check.
template <class Pred>
bool spin_until(Pred pred, std::chrono::steady_clock::duration limit =
                               std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

// busy_for(d) keeps the calling thread busy (no sleep, no yield) for d.
inline void busy_for(std::chrono::steady_clock::duration d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

// process_cpu_time() is the CPU time of the whole process, all threads.
inline std::chrono::duration<double> process_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// ---- the process, from /proc/self/status ----

// proc_status(key) is the number after `key` ("Threads:", "VmRSS:") in
// /proc/self/status, or -1 if there is no such line.
inline long proc_status(std::string_view key) {
  std::ifstream status("/proc/self/status");
  std::string word;
  while (status >> word) {
    if (word == key) {
      long n = 0;
      status >> n;
      return n;
    }
    status.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
}

// process_threads() is the number of threads of this process.
inline int process_threads() {
  const long n = proc_status("Threads:");
  if (n < 0) FAIL("no Threads: line in /proc/self/status");
  return static_cast<int>(n);
}

// rss_kib() is the resident set of this process in KiB, or -1.
inline long rss_kib() { return proc_status("VmRSS:"); }

// ---- probes ----

// peak_tracker counts how many tracked sections run at once.
struct peak_tracker {
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  void enter() {
    const int n = now.fetch_add(1) + 1;
    int p = peak.load();
    while (n > p && !peak.compare_exchange_weak(p, n)) {
    }
  }
  void leave() { now.fetch_sub(1); }
};

// token is a move-only RAII probe: live counts the tokens alive, so a
// callable that captures one shows whether it has been destroyed.
class token {
 public:
  explicit token(std::atomic<int>& live) noexcept : live_(&live) {
    live_->fetch_add(1);
  }
  token(token&& o) noexcept : live_(std::exchange(o.live_, nullptr)) {}
  token(const token&) = delete;
  token& operator=(const token&) = delete;
  token& operator=(token&&) = delete;
  ~token() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }

 private:
  std::atomic<int>* live_;
};

// park holds oneTBB tasks without holding their threads: wait() suspends the
// calling task (oneTBB resumable tasks) until release(), and its thread runs
// other tasks meanwhile. A slot holder that parks lets a one-thread scheduler
// run the producers that queue behind it.
class park {
 public:
  // wait() must be called from a oneTBB task.
  void wait() {
    // In a task of a group, the library's frame of the task leaves this
    // thread while the task is suspended, as in the library's own
    // suspensions (gate.cpp): the task may resume on another thread.
    errgroup::detail::task_frame::suspend_scope frames;
    tbb::task::suspend([this](tbb::task::suspend_point sp) {
      std::lock_guard lock(mu_);
      if (released_)
        tbb::task::resume(sp);
      else
        parked_.push_back(sp);
    });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    for (tbb::task::suspend_point sp : parked_) tbb::task::resume(sp);
    parked_.clear();
  }

 private:
  std::mutex mu_;
  bool released_ = false;
  std::vector<tbb::task::suspend_point> parked_;
};

// ---- groups (docs/contract.md §4) ----

// Sentinels, made once and compared by identity (Go compares errDoom by ==).
inline const errgroup::error& err_doom() {
  static const errgroup::error e =
      errgroup::make_error<std::runtime_error>("group_test: doomed");
  return e;
}
inline const errgroup::error& err_other() {
  static const errgroup::error e =
      errgroup::make_error<std::runtime_error>("group_test: other");
  return e;
}

// check_accounting checks, after wait(), that every admitted task either was
// invoked (invoked counts them, from inside the tasks) or was skipped.
inline void check_accounting(const errgroup::group::stats& c,
                             std::int64_t invoked) {
  CHECK(c.running == 0);
  CHECK(c.waiting == 0);
  CHECK(c.skipped + invoked == c.submitted);
  CHECK(c.succeeded + c.failed == invoked);
}

}  // namespace test
