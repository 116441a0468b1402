// bench/peers/taskflow.cpp: the workloads on Taskflow (peers.hpp), ported
// from shared/peers/cpp/taskflow_bench.cpp with the same shapes.
#include <algorithm>
#include <chrono>
#include <memory>
#include <taskflow/algorithm/for_each.hpp>
#include <taskflow/taskflow.hpp>

#include "peers.hpp"

namespace bench::taskflow_peer {

namespace {

using clock = std::chrono::steady_clock;

std::unique_ptr<tf::Executor>& executor_ptr() {
  static std::unique_ptr<tf::Executor> e;
  return e;
}

tf::Executor& executor() { return *executor_ptr(); }

constexpr std::size_t map_chunk = 4096;

}  // namespace

void start(int threads) {
  if (!executor_ptr())
    executor_ptr() =
        std::make_unique<tf::Executor>(static_cast<std::size_t>(threads));
}

void spawn_silent_async(std::int64_t n, task_fn fn) {
  for (std::int64_t i = 0; i < n; ++i) executor().silent_async([fn] { fn(); });
  executor().wait_for_all();
}

void spawn_graph(std::int64_t n, task_fn fn) {
  tf::Taskflow g;
  for (std::int64_t i = 0; i < n; ++i) g.emplace([fn] { fn(); });
  executor().run(g).wait();
}

void spawn_task_group(std::int64_t n, task_fn fn) {
  executor()
      .async([n, fn] {
        tf::TaskGroup tg = executor().task_group();
        for (std::int64_t i = 0; i < n; ++i) tg.silent_async([fn] { fn(); });
        tg.corun();
      })
      .get();
}

void spawn_semaphore(std::int64_t n, std::size_t limit, task_fn fn) {
  tf::Taskflow g;
  tf::Semaphore sem(limit);
  for (std::int64_t i = 0; i < n; ++i) {
    tf::Task t = g.emplace([fn] { fn(); });
    t.acquire(sem);
    t.release(sem);
  }
  executor().run(g).wait();
}

void map_for_each_index(const double* in, double* out, std::size_t n) {
  tf::Taskflow g;
  g.for_each_index(std::size_t{0}, n, std::size_t{1}, [in, out](std::size_t i) {
    kernel_range(in, out, i, i + 1, map_iters);
  });
  executor().run(g).wait();
}

void map_task_group_4096(const double* in, double* out, std::size_t n) {
  executor()
      .async([in, out, n] {
        tf::TaskGroup tg = executor().task_group();
        for (std::size_t lo = 0; lo < n; lo += map_chunk)
          tg.silent_async([in, out, lo, hi = std::min(n, lo + map_chunk)] {
            kernel_range(in, out, lo, hi, map_iters);
          });
        tg.corun();
      })
      .get();
}

// Workload 3 on Taskflow: the exception of the failing task marks its
// parent (the TaskGroup, or the graph's topology), which skips the tasks not
// yet started; the others poll rt.is_cancelled().
cancel_result cancel_task_group(int ntasks, int units, int unit_iters,
                                int fail_idx) {
  cancel_tally s;
  bool caught = false;
  const auto t0 = clock::now();
  executor()
      .async([&] {
        tf::TaskGroup tg = executor().task_group();
        for (int i = 0; i < ntasks; ++i)
          tg.silent_async([&, i](tf::Runtime& rt) {
            s.task(i, units, unit_iters, fail_idx,
                   [&rt] { return rt.is_cancelled(); });
          });
        try {
          tg.corun();
        } catch (const std::runtime_error&) {
          caught = true;
        }
      })
      .get();
  return s.result(t0, clock::now(), ntasks, fail_idx, caught);
}

cancel_result cancel_graph(int ntasks, int units, int unit_iters,
                           int fail_idx) {
  cancel_tally s;
  bool caught = false;
  const auto t0 = clock::now();
  tf::Taskflow g;
  for (int i = 0; i < ntasks; ++i)
    g.emplace([&, i](tf::Runtime& rt) {
      s.task(i, units, unit_iters, fail_idx,
             [&rt] { return rt.is_cancelled(); });
    });
  try {
    executor().run(g).get();
  } catch (const std::runtime_error&) {
    caught = true;
  }
  return s.result(t0, clock::now(), ntasks, fail_idx, caught);
}

}  // namespace bench::taskflow_peer
