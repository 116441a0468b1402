// Workload 4, semaphores (Go: sem.*). Threads are std::threads (outside
// oneTBB), so a waiting errgroup::weighted::acquire blocks its thread.
//
//   sem/uncontended_acquire/<impl>   1 thread, size 1, 2M x {acquire(1);
//                                    release(1)}; errgroup uses background
//   sem/uncontended_try/<impl>       same with try_acquire(1)
//   sem/contended_size1_g{2,8}/<impl>  size 1; 2 / 8 threads released by a
//                                    barrier share 1M pairs
//   sem/weighted_mix_g8/<impl>       size 100; 8 threads, even ones weight 1,
//                                    odd ones weight 10; 1M pairs in total
//   sem/saturated_g32/<impl>         size 100; 32 threads (16 x 1, 16 x 10),
//                                    500k pairs, yield while holding
// <impl>: errgroup (errgroup::weighted, FIFO), errgroup_barging (its opt-in
// order::barging), counting_semaphore
// (std::counting_semaphore, single units only), mutex_cv (a mutex +
// condition_variable reference, not FIFO), atomic_floor (uncontended only:
// one CAS to take and one to give back, the floor on this machine),
// spin_yield (contended only: a CAS, and sched_yield between attempts; no
// queue, no fairness, no cancellation: the floor for OS threads that wait,
// where every yield while held is a context switch). Unit: ns per pair =
// wall / pairs.
#include <atomic>
#include <condition_variable>
#include <errgroup/errgroup.hpp>
#include <latch>
#include <mutex>
#include <semaphore>
#include <thread>

#include "common.hpp"

namespace {

template <errgroup::weighted::order O>
struct errgroup_impl {
  errgroup::weighted sem;
  errgroup::context bg;
  explicit errgroup_impl(std::int64_t n) : sem(n, O) {}
  void acquire(std::int64_t n) {
    if (sem.acquire(bg, n)) std::abort();
  }
  bool try_acquire(std::int64_t n) { return sem.try_acquire(n); }
  void release(std::int64_t n) { sem.release(n); }
};

struct counting_impl {
  std::counting_semaphore<> sem;
  explicit counting_impl(std::int64_t n)
      : sem(static_cast<std::ptrdiff_t>(n)) {}
  void acquire(std::int64_t) { sem.acquire(); }
  bool try_acquire(std::int64_t) { return sem.try_acquire(); }
  void release(std::int64_t) { sem.release(); }
};

// The floor for an uncontended pair on this machine: one CAS to take, one
// CAS to give back, on one atomic (no queue, no context). Not a semaphore
// anybody should use: it is only run uncontended.
struct atomic_floor_impl {
  std::atomic<std::int64_t> held{0};
  std::int64_t size;
  explicit atomic_floor_impl(std::int64_t n) : size(n) {}
  bool try_acquire(std::int64_t n) {
    std::int64_t s = held.load(std::memory_order_relaxed);
    while (s + n <= size)
      if (held.compare_exchange_weak(s, s + n, std::memory_order_acquire,
                                     std::memory_order_relaxed))
        return true;
    return false;
  }
  void acquire(std::int64_t n) {
    while (!try_acquire(n)) std::abort();
  }
  void release(std::int64_t n) {
    std::int64_t s = held.load(std::memory_order_relaxed);
    while (!held.compare_exchange_weak(s, s - n, std::memory_order_release,
                                       std::memory_order_relaxed)) {
    }
  }
};

// The floor for OS threads contending: nobody parks, nobody is woken; a
// thread that finds too few units yields its CPU and tries again. Not a
// semaphore anybody should use (it burns CPU while waiting, and starves
// large requests); only run contended.
struct spin_yield_impl : atomic_floor_impl {
  using atomic_floor_impl::atomic_floor_impl;
  void acquire(std::int64_t n) {
    while (!try_acquire(n)) std::this_thread::yield();
  }
};

struct mutex_cv_impl {
  std::mutex mu;
  std::condition_variable cv;
  std::int64_t avail;
  int waiters = 0;
  explicit mutex_cv_impl(std::int64_t n) : avail(n) {}
  void acquire(std::int64_t n) {
    std::unique_lock lock(mu);
    if (avail < n) {
      ++waiters;
      cv.wait(lock, [&] { return avail >= n; });
      --waiters;
    }
    avail -= n;
  }
  bool try_acquire(std::int64_t n) {
    std::lock_guard lock(mu);
    if (avail < n) return false;
    avail -= n;
    return true;
  }
  void release(std::int64_t n) {
    bool wake;
    {
      std::lock_guard lock(mu);
      avail += n;
      wake = waiters > 0;
    }
    if (wake) cv.notify_all();
  }
};

template <class Impl>
void uncontended(benchmark::State& st, bool try_path) {
  const std::int64_t ops = bench::scaled(2'000'000, 20'000);
  bench::timed(st, "ns_per_op", 1e9 / static_cast<double>(ops), [&] {
    Impl s(1);
    const auto t0 = bench::clock::now();
    if (try_path) {
      for (std::int64_t i = 0; i < ops; ++i) {
        if (!s.try_acquire(1)) std::abort();
        s.release(1);
      }
    } else {
      for (std::int64_t i = 0; i < ops; ++i) {
        s.acquire(1);
        s.release(1);
      }
    }
    return bench::seconds(bench::clock::now() - t0);
  });
}

// Go's semContended: threads (thread j uses weights[j % size]) share `ops`
// pairs; timed from the start barrier to the last join.
template <class Impl>
void contended(benchmark::State& st, std::int64_t size, int threads,
               std::int64_t ops, std::vector<std::int64_t> weights,
               bool yield_while_held) {
  const std::int64_t per = ops / threads;
  bench::timed(st, "ns_per_op", 1e9 / static_cast<double>(per * threads), [&] {
    Impl s(size);
    std::latch ready(threads), go(1);
    std::vector<std::thread> ts;
    for (int j = 0; j < threads; ++j)
      ts.emplace_back(
          [&, w = weights[static_cast<std::size_t>(j) % weights.size()]] {
            ready.count_down();
            go.wait();
            for (std::int64_t i = 0; i < per; ++i) {
              s.acquire(w);
              if (yield_while_held) std::this_thread::yield();
              s.release(w);
            }
          });
    ready.wait();
    const auto t0 = bench::clock::now();
    go.count_down();
    for (auto& t : ts) t.join();
    return bench::seconds(bench::clock::now() - t0);
  });
}

template <class Impl>
void reg_all(const std::string& impl, bool multi_unit,
             bool with_contended = true, bool with_uncontended = true) {
  auto reg = [&](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark((name + "/" + impl).c_str(), fn)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  };
  if (with_uncontended) {
    reg("sem/uncontended_acquire",
        [](benchmark::State& st) { uncontended<Impl>(st, false); });
    reg("sem/uncontended_try",
        [](benchmark::State& st) { uncontended<Impl>(st, true); });
  }
  if (!with_contended) return;
  for (int g : {2, 8})
    reg("sem/contended_size1_g" + std::to_string(g), [g](benchmark::State& st) {
      contended<Impl>(st, 1, g, bench::scaled(1'000'000, 10'000), {1}, false);
    });
  if (!multi_unit) return;
  reg("sem/weighted_mix_g8", [](benchmark::State& st) {
    contended<Impl>(st, 100, 8, bench::scaled(1'000'000, 10'000), {1, 10},
                    false);
  });
  reg("sem/saturated_g32", [](benchmark::State& st) {
    contended<Impl>(st, 100, 32, bench::scaled(500'000, 5'000), {1, 10}, true);
  });
}

int setup() {
  reg_all<errgroup_impl<errgroup::weighted::order::fifo>>("errgroup", true);
  reg_all<errgroup_impl<errgroup::weighted::order::barging>>("errgroup_barging",
                                                             true);
  reg_all<counting_impl>("counting_semaphore", false);
  reg_all<mutex_cv_impl>("mutex_cv", true);
  reg_all<atomic_floor_impl>("atomic_floor", true, false);
  reg_all<spin_yield_impl>("spin_yield", true, true, false);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bench::main(argc, argv, setup); }
