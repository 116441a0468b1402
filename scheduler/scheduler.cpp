#include "errgroup/scheduler.hpp"

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

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

// nudger is the one thread behind nudge. It is started on first use and
// never stopped; it sleeps while nobody asks. A request waits about
// `delay`, so a producer that keeps spawning asks about once per delay.
class nudger {
 public:
  static nudger& instance() {
    static nudger* n = [] {
      auto* created = new nudger();  // never destroyed
      // At exit, oneTBB may be shutting down: touch no arena from then on.
      std::atexit([] {
        nudger& self = instance();
        std::lock_guard lock(self.mu_);
        self.exiting_ = true;
      });
      return created;
    }();
    return *n;
  }

  void request(nudge& r, tbb::task_arena* arena) {
    std::lock_guard lock(mu_);
    if (r.queued_) return;
    r.arena_ = arena;
    if (arena == nullptr) r.attached_.emplace(tbb::task_arena::attach{});
    r.next_ = head_;
    r.queued_ = true;
    head_ = &r;
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
    if (r.next_ == nullptr) cv_.notify_one();
  }

  void forget(nudge& r) noexcept {
    std::lock_guard lock(mu_);
    if (r.queued_) {
      nudge** p = &head_;
      while (*p != &r) p = &(*p)->next_;
      *p = r.next_;
      r.queued_ = false;
    }
    r.attached_.reset();
  }

 private:
  static constexpr auto delay = std::chrono::milliseconds(1);

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return head_ != nullptr; });
      lock.unlock();
      std::this_thread::sleep_for(delay);
      lock.lock();
      if (exiting_) return;
      // Under the lock: forget() and exit wait for us.
      while (nudge* r = head_) {
        head_ = r->next_;
        r->queued_ = false;
        r->clear_(r->owner_);
        (r->arena_ != nullptr ? *r->arena_ : *r->attached_).enqueue([] {});
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  nudge* head_ = nullptr;  // guarded by mu_
  bool started_ = false;
  bool exiting_ = false;
};

void nudge::request(tbb::task_arena* arena) {
  nudger::instance().request(*this, arena);
}

void nudge::forget() noexcept { nudger::instance().forget(*this); }

}  // namespace detail
}  // namespace errgroup
