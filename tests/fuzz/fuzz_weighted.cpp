// tests/fuzz/fuzz_weighted.cpp: libFuzzer target for errgroup::weighted.
//
// The input is a byte-coded sequence of acquire / try_acquire / release /
// cancel / permit operations. One driver thread (libFuzzer's) issues them; an
// acquire that must wait runs on its own std::jthread. The interleaving is
// fixed by the bytes, not by the scheduler: after starting a waiter the driver
// waits until that thread is parked inside acquire() (its state in
// /proc/self/task/<tid>/stat is 'S'; every other thread is then parked or
// joined, so nothing else can be sleeping), and after an operation that wakes
// waiters it joins exactly the threads the model says were woken. So every
// result is compared exactly with the sequential model in sem_model.hpp:
// which acquires are granted, in which order, what each returns, what
// available() is, and whether anybody waits (try_acquire(0) probes that
// without changing anything).
//
// Input: byte 0 is the size (0..15); then per operation one op byte and the
// bytes its arguments need (FuzzedDataProvider).
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/weighted.hpp"
#include "sem_model.hpp"

namespace {

[[noreturn]] void die(const char* what, long long a = 0, long long b = 0) {
  std::fprintf(stderr, "fuzz_weighted: MISMATCH: %s (%lld, %lld)\n", what, a,
               b);
  std::abort();
}
#define FZ_CHECK(cond, ...)        \
  do {                             \
    if (!(cond)) die(__VA_ARGS__); \
  } while (0)

// The exception a call threw: its exact type must be E and its message msg.
template <class E, class Fn>
void expect_throw(Fn&& fn, const char* msg, const char* what) {
  try {
    fn();
  } catch (const std::exception& e) {
    FZ_CHECK(typeid(e) == typeid(E), what);
    FZ_CHECK(std::string(e.what()) == msg, what);
    return;
  }
  die(what);
}

// The state of a thread, from /proc: 'R' running, 'S' sleeping, ...
char thread_state(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat",
                static_cast<int>(tid));
  std::ifstream in(path);
  std::string stat;
  std::getline(in, stat);
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return '?';
  return stat[paren + 2];
}

struct waiter_slot {
  bool used = false;
  std::int64_t n = 0;
  errgroup::context ctx;
  std::optional<errgroup::cancel_func> cancel;
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  errgroup::error result;  // written before done
  std::jthread thread;
};

constexpr int max_waiters = 4;
constexpr int max_permits = 4;

const char* const negative_acquire = "semaphore: acquire of a negative weight";
const char* const negative_try = "semaphore: try_acquire of a negative weight";
const char* const negative_release = "semaphore: release of a negative weight";
const char* const too_many =
    "semaphore: acquire of more than the semaphore's size";
const char* const over_release = "semaphore: released more than held";

class driver {
 public:
  explicit driver(std::int64_t size) : sem_(size), model_(size) {}

  ~driver() {
    // Cancel who still waits, in slot order, then give everything back.
    for (int k = 0; k < max_waiters; ++k) cancel_waiter(k);
    for (auto& p : permits_) {
      const std::int64_t n = p.units();
      p.reset();
      join_granted(model_.release(n));
    }
    permits_.clear();
    permit_units_ = 0;
    check();
    sem_.release(model_.held());
    FZ_CHECK(sem_.available() == sem_.size(), "not whole at the end");
  }

  void step(FuzzedDataProvider& in) {
    const std::int64_t size = model_.size();
    switch (in.ConsumeIntegralInRange<int>(0, 8)) {
      case 0: {  // try_acquire(n)
        const std::int64_t n =
            in.ConsumeIntegralInRange<std::int64_t>(-1, size + 1);
        if (n < 0) {
          expect_throw<std::invalid_argument>(
              [&] { (void)sem_.try_acquire(n); }, negative_try,
              "try_acquire(-1)");
          break;
        }
        const bool want = model_.try_acquire(n);
        FZ_CHECK(sem_.try_acquire(n) == want, "try_acquire", n, want);
        break;
      }
      case 1:  // acquire(n): now, too big, or on a waiter thread
        acquire(in.ConsumeIntegralInRange<std::int64_t>(-1, size + 1));
        break;
      case 2: {  // release(n) of units held by nobody in particular
        const std::int64_t free_held = model_.held() - permit_units_;
        if (in.ConsumeBool()) {
          const std::int64_t n =
              model_.held() + in.ConsumeIntegralInRange<std::int64_t>(1, 3);
          expect_throw<std::logic_error>([&] { sem_.release(n); }, over_release,
                                         "over-release");
          break;
        }
        if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
          expect_throw<std::invalid_argument>([&] { sem_.release(-1); },
                                              negative_release, "release(-1)");
          break;
        }
        const std::int64_t n =
            in.ConsumeIntegralInRange<std::int64_t>(0, free_held);
        sem_.release(n);
        join_granted(model_.release(n));
        break;
      }
      case 3:  // cancel waiter k
        cancel_waiter(in.ConsumeIntegralInRange<int>(0, max_waiters - 1));
        break;
      case 4: {  // acquire with a context that is already done
        auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
        cancel();
        const std::int64_t n =
            in.ConsumeIntegralInRange<std::int64_t>(0, size + 1);
        const errgroup::error err = sem_.acquire(ctx, n);
        FZ_CHECK(err == ctx.err(), "acquire with a done context", n);
        FZ_CHECK(err.is<errgroup::cancelled_error>(), "done context: error");
        break;
      }
      case 5: {  // try_acquire_permit(n)
        if (permits_.size() >= max_permits) break;
        const std::int64_t n = in.ConsumeIntegralInRange<std::int64_t>(0, size);
        const bool want = model_.try_acquire(n);
        errgroup::permit p = errgroup::try_acquire_permit(sem_, n);
        FZ_CHECK(static_cast<bool>(p) == want, "try_acquire_permit", n, want);
        if (p) {
          FZ_CHECK(p.units() == n, "permit units");
          permit_units_ += n;
          permits_.push_back(std::move(p));
        }
        break;
      }
      case 6: {  // a permit goes out of scope (or is moved and reset)
        if (permits_.empty()) break;
        const auto k =
            in.ConsumeIntegralInRange<std::size_t>(0, permits_.size() - 1);
        errgroup::permit p = std::move(permits_[k]);
        FZ_CHECK(!permits_[k], "moved-from permit still holds");
        permits_.erase(permits_.begin() + static_cast<std::ptrdiff_t>(k));
        const std::int64_t n = p.units();
        permit_units_ -= n;
        if (in.ConsumeBool())
          p.reset();
        else {
          errgroup::permit q = std::move(p);
        }
        join_granted(model_.release(n));
        break;
      }
      case 7: {  // acquire_permit(ctx, n) when it does not wait
        if (permits_.size() >= max_permits) break;
        const std::int64_t n =
            in.ConsumeIntegralInRange<std::int64_t>(0, size + 1);
        if (would_queue(n)) break;
        auto [p, err] = errgroup::acquire_permit(sem_, errgroup::context(), n);
        if (model_.acquire(-1, n) == fuzz::sem_model::acquired::too_big) {
          FZ_CHECK(err.is<std::invalid_argument>() &&
                       err.message() == too_many && !p,
                   "acquire_permit(n > size)", n);
        } else {
          FZ_CHECK(!err && p && p.units() == n, "acquire_permit", n);
          permit_units_ += n;
          permits_.push_back(std::move(p));
        }
        break;
      }
      default: {  // probe: nothing changes
        FZ_CHECK(sem_.size() == size, "size");
        break;
      }
    }
    check();
  }

 private:
  bool would_queue(std::int64_t n) const {
    return n <= model_.size() &&
           (model_.has_waiters() || n > model_.available());
  }

  void acquire(std::int64_t n) {
    if (n < 0) {
      expect_throw<std::invalid_argument>(
          [&] { (void)sem_.acquire(errgroup::context(), n); }, negative_acquire,
          "acquire(-1)");
      return;
    }
    if (!would_queue(n)) {
      const auto want = model_.acquire(-1, n);
      const errgroup::error err = sem_.acquire(errgroup::context(), n);
      if (want == fuzz::sem_model::acquired::too_big)
        FZ_CHECK(err.is<std::invalid_argument>() && err.message() == too_many,
                 "acquire(n > size)", n);
      else
        FZ_CHECK(!err, "acquire that fits", n);
      return;
    }
    int k = 0;
    while (k < max_waiters && at(k).used) ++k;
    if (k == max_waiters) return;  // no thread free: skip
    waiter_slot& w = at(k);
    FZ_CHECK(model_.acquire(k, n) == fuzz::sem_model::acquired::queued,
             "model");
    auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
    w.used = true;
    w.n = n;
    w.ctx = ctx;
    w.cancel.emplace(cancel);
    w.tid.store(0);
    w.done.store(false);
    w.result = errgroup::error();
    w.thread = std::jthread([this, &w] {
      w.tid.store(static_cast<pid_t>(::syscall(SYS_gettid)),
                  std::memory_order_release);
      w.result = sem_.acquire(w.ctx, w.n);
      w.done.store(true, std::memory_order_release);
    });
    wait_parked(w);
  }

  // wait_parked(w): until w's thread sleeps inside acquire(). Returning
  // instead is a mismatch (the model says it waits).
  void wait_parked(waiter_slot& w) {
    const auto end =
        std::chrono::steady_clock::now() + std::chrono::seconds(20);
    pid_t tid = 0;
    while ((tid = w.tid.load(std::memory_order_acquire)) == 0)
      std::this_thread::yield();
    for (int spins = 0;; ++spins) {
      FZ_CHECK(!w.done.load(std::memory_order_acquire),
               "acquire returned although the model says it waits", w.n);
      if (thread_state(tid) == 'S') return;
      FZ_CHECK(std::chrono::steady_clock::now() < end, "waiter never parked");
      if (spins > 100)
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      else
        std::this_thread::yield();
    }
  }

  // join_granted(ids): those waiters were granted: they return success.
  void join_granted(const std::vector<int>& ids) {
    for (const int k : ids) {
      waiter_slot& w = at(k);
      w.thread.join();
      FZ_CHECK(w.done.load() && !w.result, "granted waiter failed", k, w.n);
      w.used = false;
    }
  }

  void cancel_waiter(int k) {
    waiter_slot& w = at(k);
    if (!w.used) return;
    FZ_CHECK(model_.queued(k), "model: a used slot is queued");
    const std::vector<int> granted = model_.cancel(k);
    (*w.cancel)();  // wakes w (and who the model says) on this thread
    w.thread.join();
    FZ_CHECK(
        w.result == w.ctx.err() && w.result.is<errgroup::cancelled_error>(),
        "cancelled waiter's result", k);
    w.used = false;
    join_granted(granted);
  }

  void check() {
    FZ_CHECK(sem_.available() == model_.available(), "available()",
             sem_.available(), model_.available());
    // try_acquire(0) takes nothing and succeeds exactly when nobody waits.
    FZ_CHECK(sem_.try_acquire(0) == !model_.has_waiters(), "waiters",
             model_.has_waiters());
    for (int k = 0; k < max_waiters; ++k)
      FZ_CHECK(!at(k).used || !at(k).done.load(),
               "a waiter returned although the model says it still waits", k);
  }

  waiter_slot& at(int k) { return slots_[static_cast<std::size_t>(k)]; }

  errgroup::weighted sem_;
  fuzz::sem_model model_;
  std::array<waiter_slot, max_waiters> slots_;
  std::vector<errgroup::permit> permits_;
  std::int64_t permit_units_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::int64_t sem_size = in.ConsumeIntegralInRange<std::int64_t>(0, 15);
  if (sem_size == 0 && in.ConsumeBool()) {
    expect_throw<std::invalid_argument>([] { errgroup::weighted bad(-1); },
                                        "semaphore: negative size",
                                        "weighted(-1)");
  }
  driver d(sem_size);
  for (int ops = 0; ops < 64 && in.remaining_bytes() > 0; ++ops) d.step(in);
  return 0;
}
