// tests/support.hpp: helpers shared by the test files.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

namespace test {

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

}  // namespace test
