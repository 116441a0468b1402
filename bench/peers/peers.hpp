// bench/peers/peers.hpp: the workloads on the C++ peers errgroup is compared
// with, built into the bench_* binaries only when CMake is given
// -DERRGROUP_BENCH_PEERS=<dir> (a checkout of shared/peers/cpp with their
// headers under third_party/; this project vendors nothing). Then
// ERRGROUP_BENCH_TASKFLOW (Taskflow, peers/taskflow.cpp) and
// ERRGROUP_BENCH_STDEXEC (NVIDIA stdexec, peers/stdexec.cpp; g++ or
// clang >= 16 only) are defined, and bench_spawn, bench_map and bench_cancel
// register these variants next to errgroup's and raw oneTBB's, so one
// interleaved process run measures them all.
//
// The shapes are those of shared/peers/cpp/{taskflow,stdexec}_bench.cpp; the
// work is this suite's (work.hpp: Go's definitions, the calibrated spin, the
// -ffp-contract=off kernel), so every figure is the same workload. Each pool
// has bench::concurrency() threads and is started by start(), before any
// timed run; it lives until the process exits. Functions that run tasks
// return after every task has finished; none throws.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "../work.hpp"

namespace bench {

// A task body of the spawn figures: bench::nop, or a counting one in the
// untimed check that every task ran.
using task_fn = void (*)() noexcept;

// Workload 3's task on a peer, and the counts of one run. A peer's task fails
// by throwing (neither has an error value).
struct cancel_tally {
  using clock = std::chrono::steady_clock;
  std::atomic<std::int64_t> full{0}, partial{0}, none{0}, started{0};
  std::atomic<clock::rep> failed_at{0};

  // Task i: #fail_idx records the time and throws std::runtime_error; the
  // others do `units` units of spin, returning early once stopped().
  template <class Stopped>
  void task(int i, int units, int unit_iters, int fail_idx, Stopped stopped) {
    started.fetch_add(1, std::memory_order_relaxed);
    if (i == fail_idx) {
      failed_at.store(clock::now().time_since_epoch().count(),
                      std::memory_order_relaxed);
      throw std::runtime_error("task failed on purpose");
    }
    for (int u = 0; u < units; ++u) {
      if (stopped()) {
        (u == 0 ? none : partial).fetch_add(1, std::memory_order_relaxed);
        return;
      }
      spin(unit_iters);
    }
    full.fetch_add(1, std::memory_order_relaxed);
  }

  // The run's result: t0 = before the first spawn, end = the wait returned,
  // failed = the wait saw the failure.
  cancel_result result(clock::time_point t0, clock::time_point end, int ntasks,
                       int fail_idx, bool failed) const {
    cancel_result r;
    r.wait_s = std::chrono::duration<double>(end - t0).count();
    if (const auto f = failed_at.load(); f != 0)
      r.latency_s = std::chrono::duration<double>(
                        end - clock::time_point(clock::duration(f)))
                        .count();
    r.err_ok = failed == (fail_idx >= 0);
    r.full = full.load();
    r.partial = partial.load();
    r.none = none.load();
    r.skipped = ntasks - started.load();
    return r;
  }
};

#ifdef ERRGROUP_BENCH_TASKFLOW
// Taskflow: one tf::Executor(threads). A tf::TaskGroup can only be made on a
// worker, so the TaskGroup variants spawn from a task on a worker, which
// coruns (helps) until the group is empty; the others spawn from the caller,
// which only blocks.
namespace taskflow_peer {
void start(int threads);
// Workload 1, n tasks of fn.
void spawn_silent_async(std::int64_t n, task_fn fn);  // + wait_for_all()
void spawn_graph(std::int64_t n, task_fn fn);       // build a tf::Taskflow, run
void spawn_task_group(std::int64_t n, task_fn fn);  // TaskGroup + corun()
// A graph of n tasks that each acquire and release one tf::Semaphore(limit):
// it caps the running tasks; the spawner never blocks.
void spawn_semaphore(std::int64_t n, std::size_t limit, task_fn fn);
// Workload 2: out[i] = kernel(in[i]) for i < n.
void map_for_each_index(const double* in, double* out, std::size_t n);
void map_task_group_4096(const double* in, double* out, std::size_t n);
// Workload 3: the failing task throws; the others poll
// tf::Runtime::is_cancelled() before each unit; err_ok = corun()/get()
// rethrew the failure.
cancel_result cancel_task_group(int ntasks, int units, int unit_iters,
                                int fail_idx);
cancel_result cancel_graph(int ntasks, int units, int unit_iters, int fail_idx);
}  // namespace taskflow_peer
#endif

#ifdef ERRGROUP_BENCH_STDEXEC
// stdexec: one exec::static_thread_pool(threads); tasks are
// schedule(pool) | then(body), spawned from the caller, which only blocks in
// sync_wait.
namespace stdexec_peer {
void start(int threads);
// Workload 1: exec::async_scope::spawn + sync_wait(on_empty()), and the
// C++26 counting_scope (stdexec::spawn + sync_wait(join())).
void spawn_async_scope(std::int64_t n, task_fn fn);
void spawn_counting_scope(std::int64_t n, task_fn fn);
// No limit of its own: the spawner acquires a std::counting_semaphore(limit)
// and each task releases it at its end (the caller blocks, as in errgroup).
void spawn_limited(std::int64_t n, std::ptrdiff_t limit, task_fn fn);
// Workload 2.
void map_bulk_chunked(const double* in, double* out, std::size_t n);
void map_async_scope_4096(const double* in, double* out, std::size_t n);
// Workload 3: then(body) | upon_error(record; scope.request_stop()); queued
// operations complete as stopped, running bodies poll the stop token;
// err_ok = the error was recorded.
cancel_result cancel_async_scope(int ntasks, int units, int unit_iters,
                                 int fail_idx);
}  // namespace stdexec_peer
#endif

}  // namespace bench
