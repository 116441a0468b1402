// Workload 1, spawn+wait: N = 1,000,000 empty tasks into a fresh group, then
// wait() (Go: spawn.*). The time covers creating the group, every go() and
// wait(). Unit: ns per task = wall / N.
//
//   spawn/group_plain        errgroup::group (Go's zero Group)
//   spawn/group_context      errgroup::with_context(background)
//   spawn/group_limit2       plain group, set_limit(2) (the caller waits in go)
//   spawn/group_limit64      plain group, set_limit(64)
//   spawn/group_traced       plain group recording into an errgroup::trace
//                            (trace_to; the trace is made and dropped per run)
//   spawn/tbb_task_group     raw tbb::task_group: run() x N, wait()
//   spawn/thread_batch       std::thread per batch: hardware_concurrency
//                            threads, each calls its slice of the N task
//                            bodies (no per-task object: the floor)
#include <oneapi/tbb/task_group.h>

#include <errgroup/errgroup.hpp>
#include <thread>

#include "common.hpp"
#include "work.hpp"

namespace {

std::int64_t n_tasks() { return bench::scaled(1'000'000, 10'000); }

template <class MakeAndRun>
void spawn_bench(benchmark::State& st, MakeAndRun body) {
  const std::int64_t n = n_tasks();
  bench::timed(st, "ns_per_task", 1e9 / static_cast<double>(n), [&] {
    const auto t0 = bench::clock::now();
    if (!body(n)) st.SkipWithError("wait() returned an error");
    return bench::seconds(bench::clock::now() - t0);
  });
  st.counters["tasks"] = static_cast<double>(n);
}

void group_plain(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    errgroup::group g;
    for (std::int64_t i = 0; i < n; ++i) g.go([] { bench::nop(); });
    return !g.wait();
  });
}

void group_context(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    auto [g, ctx] = errgroup::with_context(errgroup::context());
    for (std::int64_t i = 0; i < n; ++i) g.go([] { bench::nop(); });
    return !g.wait();
  });
}

void group_limit(benchmark::State& st, int limit) {
  spawn_bench(st, [limit](std::int64_t n) {
    errgroup::group g;
    g.set_limit(limit);
    for (std::int64_t i = 0; i < n; ++i) g.go([] { bench::nop(); });
    return !g.wait();
  });
}

void group_traced(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    errgroup::trace t;
    errgroup::group g;
    g.trace_to(t);
    for (std::int64_t i = 0; i < n; ++i) g.go([] { bench::nop(); });
    return !g.wait() && t.lost() == 0;
  });
}

void tbb_task_group(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    tbb::task_group tg;
    for (std::int64_t i = 0; i < n; ++i) tg.run([] { bench::nop(); });
    tg.wait();
    return true;
  });
}

void thread_batch(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    const std::int64_t t = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(t));
    for (std::int64_t k = 0; k < t; ++k)
      threads.emplace_back([lo = n * k / t, hi = n * (k + 1) / t] {
        for (std::int64_t i = lo; i < hi; ++i) bench::nop();
      });
    for (auto& th : threads) th.join();
    return true;
  });
}

}  // namespace

int main(int argc, char** argv) {
  return bench::main(argc, argv, [] {
    auto reg = [](const char* name, auto fn) {
      benchmark::RegisterBenchmark(name, fn)->UseManualTime()->Unit(
          benchmark::kMillisecond);
    };
    reg("spawn/group_plain", group_plain);
    reg("spawn/group_context", group_context);
    reg("spawn/group_limit2", [](benchmark::State& st) { group_limit(st, 2); });
    reg("spawn/group_limit64",
        [](benchmark::State& st) { group_limit(st, 64); });
    reg("spawn/group_traced", group_traced);
    reg("spawn/tbb_task_group", tbb_task_group);
    reg("spawn/thread_batch", thread_batch);
    return 0;
  });
}
