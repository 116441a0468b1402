#include "errgroup/scheduler.hpp"

#include <oneapi/tbb/detail/_small_object_pool.h>
#include <oneapi/tbb/detail/_task.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>

#include <mutex>
#include <optional>
#include <stdexcept>

#include "errgroup/detail/node.hpp"

namespace errgroup {
namespace {

// The process-wide oneTBB worker limit is the smallest active
// global_control, by default one worker less than the cores. Each scheduler
// that owns threads adds its own to it, so schedulers alive at once never
// share workers: the limit is the default plus the sum of their threads.
class worker_limit {
 public:
  static worker_limit& instance() {
    static worker_limit* w = new worker_limit();
    return *w;
  }
  void add(int threads) {
    std::lock_guard lock(mu_);
    extra_ += threads;
    update_locked();
  }
  void remove(int threads) {
    std::lock_guard lock(mu_);
    extra_ -= threads;
    update_locked();
  }

 private:
  void update_locked() {
    std::unique_ptr<tbb::global_control> next;
    if (extra_ > 0)
      next = std::make_unique<tbb::global_control>(
          tbb::global_control::max_allowed_parallelism,
          static_cast<std::size_t>(tbb::info::default_concurrency() + extra_));
    control_ = std::move(next);  // the new one is active before the old dies
  }
  std::mutex mu_;
  long extra_ = 0;
  std::unique_ptr<tbb::global_control> control_;
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
  thread_local std::optional<tbb::task_arena> current;
  current.emplace(tbb::task_arena::attach{});  // the arena we are in now
  return *current;
}

scheduler::scheduler(int max_concurrency)
    : arena_(nullptr), max_concurrency_(max_concurrency) {
  if (max_concurrency < 1)
    throw std::invalid_argument(
        "errgroup: scheduler needs max_concurrency >= 1");
  // max_concurrency workers of our own, plus a slot for a thread that joins
  // to wait or to spawn.
  worker_request_ = max_concurrency;
  worker_limit::instance().add(worker_request_);
  owned_ = std::make_unique<tbb::task_arena>(max_concurrency + 1, 1);
  arena_ = owned_.get();
  arena_->initialize();
}

scheduler::scheduler(tbb::task_arena& arena) : arena_(&arena) {
  if (!arena_->is_active()) arena_->initialize();
  max_concurrency_ = arena_->max_concurrency();
  // Its workers come on top of oneTBB's default pool, as for ours.
  worker_request_ = max_concurrency_;
  worker_limit::instance().add(worker_request_);
}

scheduler::~scheduler() {
  owned_.reset();
  if (worker_request_ != 0) worker_limit::instance().remove(worker_request_);
}

namespace detail {
namespace {

namespace d1 = tbb::detail::d1;

// The no-op task of wake_after_spawn(). Clearing the flag is an acquire
// RMW: it reads the exchange of every spawner that found the flag set, so
// their spawns happen before this thread goes back to look for tasks.
class wake_task final : public d1::task {
 public:
  wake_task(std::shared_ptr<node> n, d1::small_object_allocator alloc) noexcept
      : node_(std::move(n)), alloc_(alloc) {}
  d1::task* execute(d1::execution_data& ed) override { return done(ed); }
  d1::task* cancel(d1::execution_data& ed) override { return done(ed); }

 private:
  d1::task* done(d1::execution_data& ed) {
    node_->wake_pending().exchange(false, std::memory_order_acq_rel);
    auto alloc = alloc_;
    alloc.delete_object(this, ed);
    return nullptr;
  }
  std::shared_ptr<node> node_;  // the flag lives in it
  d1::small_object_allocator alloc_;
};

}  // namespace

void wake_after_spawn(node& n) {
  // A release RMW: the no-op task that clears the flag later sees our spawns.
  if (n.wake_pending().exchange(true, std::memory_order_acq_rel)) return;
  d1::small_object_allocator alloc;
  tbb::detail::r1::enqueue(
      *alloc.new_object<wake_task>(n.shared_from_this(), alloc),
      nullptr);  // the current arena
}

}  // namespace detail
}  // namespace errgroup
