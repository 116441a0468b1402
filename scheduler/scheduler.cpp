#include "errgroup/scheduler.hpp"

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <stdexcept>

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
  // add(threads) raises the limit; throws (changing nothing) when the new
  // control cannot be made.
  void add(int threads) {
    std::lock_guard lock(mu_);
    control_ = make(extra_ + threads);  // the new one is active before the
    extra_ += threads;                  // old one dies
  }
  // remove(threads) lowers it again; never throws (from destructors): when
  // the lower control cannot be made, the higher one stays, which only
  // allows more workers than asked.
  void remove(int threads) noexcept {
    std::lock_guard lock(mu_);
    extra_ -= threads;
    try {
      control_ = make(extra_);
    } catch (...) {
    }
  }

 private:
  static std::unique_ptr<tbb::global_control> make(long extra) {
    if (extra <= 0) return nullptr;
    return std::make_unique<tbb::global_control>(
        tbb::global_control::max_allowed_parallelism,
        static_cast<std::size_t>(tbb::info::default_concurrency() + extra));
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
  if (arena_ == nullptr) return tbb::this_task_arena::max_concurrency();
  if (!owned_) return max_concurrency_;
  // The smallest active global_control wins; ours asked for enough.
  const auto allowed = static_cast<long>(tbb::global_control::active_value(
      tbb::global_control::max_allowed_parallelism));
  return static_cast<int>(
      std::max(1L, std::min<long>(max_concurrency_, allowed - 1)));
}

tbb::task_arena& scheduler::arena() {
  if (arena_ != nullptr) return *arena_;
  // A thread that has not used oneTBB yet has no arena to attach to: enter
  // its implicit arena first (where go() would run its tasks).
  tbb::this_task_arena::isolate([] {});
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
  worker_limit::instance().add(max_concurrency);
  try {
    owned_ = std::make_unique<tbb::task_arena>(max_concurrency + 1, 1);
    owned_->initialize();
  } catch (...) {
    worker_limit::instance().remove(max_concurrency);
    throw;
  }
  worker_request_ = max_concurrency;
  arena_ = owned_.get();
}

scheduler::scheduler(tbb::task_arena& arena) : arena_(&arena) {
  if (!arena_->is_active()) arena_->initialize();
  max_concurrency_ = arena_->max_concurrency();
}

scheduler::~scheduler() {
  owned_.reset();
  if (worker_request_ != 0) worker_limit::instance().remove(worker_request_);
}

namespace detail {

void run_in_arena(const scheduler& s, const void* tag, void (*fn)(void*),
                  void* arg) {
  struct iso final : tbb::detail::d1::delegate_base {
    void (*fn)(void*);
    void* arg;
    iso(void (*f)(void*), void* a) : fn(f), arg(a) {}
    bool operator()() const override {
      fn(arg);
      return true;
    }
  } d{fn, arg};
  const auto isolation = reinterpret_cast<std::intptr_t>(tag);
  if (tbb::task_arena* a = s.target())
    a->execute([&] { tbb::detail::r1::isolate_within_arena(d, isolation); });
  else
    tbb::detail::r1::isolate_within_arena(d, isolation);
}

}  // namespace detail
}  // namespace errgroup
