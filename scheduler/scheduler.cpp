#include "errgroup/scheduler.hpp"

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>

#include <mutex>
#include <set>
#include <stdexcept>

namespace errgroup {
namespace {

// The process-wide oneTBB worker limit is the smallest active
// global_control. Schedulers that need more workers than the default register
// here, and one global_control holds the largest request.
class worker_limit {
 public:
  static worker_limit& instance() {
    static worker_limit* w = new worker_limit();
    return *w;
  }
  void add(int parallelism) {
    std::lock_guard lock(mu_);
    requests_.insert(parallelism);
    update_locked();
  }
  void remove(int parallelism) {
    std::lock_guard lock(mu_);
    requests_.erase(requests_.find(parallelism));
    update_locked();
  }

 private:
  void update_locked() {
    int want = requests_.empty() ? 0 : *requests_.rbegin();
    if (want == current_) return;
    std::unique_ptr<tbb::global_control> next;
    if (want > 0)
      next = std::make_unique<tbb::global_control>(
          tbb::global_control::max_allowed_parallelism,
          static_cast<std::size_t>(want));
    control_ = std::move(next);  // the new one is active before the old dies
    current_ = want;
  }
  std::mutex mu_;
  std::multiset<int> requests_;
  std::unique_ptr<tbb::global_control> control_;
  int current_ = 0;
};

}  // namespace

scheduler& scheduler::default_scheduler() {
  static scheduler* s = new scheduler(default_tag{});  // never destroyed
  return *s;
}

scheduler::scheduler(default_tag) noexcept {}

int scheduler::max_concurrency() const noexcept {
  return arena_ != nullptr ? max_concurrency_
                           : tbb::this_task_arena::max_concurrency();
}

tbb::task_arena& scheduler::arena() {
  if (arena_ != nullptr) return *arena_;
  thread_local tbb::task_arena current{tbb::task_arena::attach{}};
  return current;
}

scheduler::scheduler(int max_concurrency)
    : arena_(nullptr), max_concurrency_(max_concurrency) {
  if (max_concurrency < 1)
    throw std::invalid_argument("errgroup: scheduler needs max_concurrency >= 1");
  // max_concurrency workers, plus one slot for a thread that joins to wait.
  const int parallelism = max_concurrency + 1;
  if (parallelism > tbb::info::default_concurrency()) {
    worker_request_ = parallelism;
    worker_limit::instance().add(parallelism);
  }
  owned_ = std::make_unique<tbb::task_arena>(parallelism, 1);
  arena_ = owned_.get();
  arena_->initialize();
}

scheduler::scheduler(tbb::task_arena& arena) : arena_(&arena) {
  if (!arena_->is_active()) arena_->initialize();
  max_concurrency_ = arena_->max_concurrency();
}

scheduler::~scheduler() {
  owned_.reset();
  if (worker_request_ != 0) worker_limit::instance().remove(worker_request_);
}

}  // namespace errgroup
