// tests/fuzz/sem_model.hpp: the sequential reference model of
// errgroup::weighted's FIFO rules (docs/contract.md §5), for the fuzz targets.
//
// - try_acquire(n) succeeds only if n units are free and nobody waits;
// - acquire(n) is granted at once on the same condition, fails at once when
//   n > size, and otherwise queues at the tail;
// - release(n) gives n units back, then grants from the head while the head
//   fits (a big head holds back smaller waiters behind it);
// - a cancelled waiter leaves the queue; if it was the head, the waiters
//   behind it are granted while they fit (golang/go#37852).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <vector>

namespace fuzz {

class sem_model {
 public:
  explicit sem_model(std::int64_t size) : size_(size) {}

  std::int64_t size() const { return size_; }
  std::int64_t held() const { return held_; }
  std::int64_t available() const { return size_ - held_; }
  bool has_waiters() const { return !queue_.empty(); }
  bool queued(int id) const {
    return std::any_of(queue_.begin(), queue_.end(),
                       [id](const entry& e) { return e.id == id; });
  }

  bool try_acquire(std::int64_t n) {
    if (n > size_ || !queue_.empty() || n > available()) return false;
    held_ += n;
    return true;
  }

  enum class acquired { now, queued, too_big };
  acquired acquire(int id, std::int64_t n) {
    if (n > size_) return acquired::too_big;
    if (queue_.empty() && n <= available()) {
      held_ += n;
      return acquired::now;
    }
    queue_.push_back({id, n});
    return acquired::queued;
  }

  // release(n) requires n <= held(); returns the waiters granted, in order.
  std::vector<int> release(std::int64_t n) {
    held_ -= n;
    return grant();
  }

  // cancel(id) removes a queued waiter; returns the waiters granted.
  std::vector<int> cancel(int id) {
    auto it = std::find_if(queue_.begin(), queue_.end(),
                           [id](const entry& e) { return e.id == id; });
    if (it == queue_.end()) return {};
    const bool head = it == queue_.begin();
    queue_.erase(it);
    return head ? grant() : std::vector<int>{};
  }

 private:
  struct entry {
    int id;
    std::int64_t n;
  };
  std::vector<int> grant() {
    std::vector<int> out;
    while (!queue_.empty() && queue_.front().n <= available()) {
      held_ += queue_.front().n;
      out.push_back(queue_.front().id);
      queue_.pop_front();
    }
    return out;
  }

  std::int64_t size_;
  std::int64_t held_ = 0;
  std::deque<entry> queue_;
};

}  // namespace fuzz
