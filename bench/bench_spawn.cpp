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
//   spawn/thread_batch       std::thread per batch: bench::concurrency()
//                            threads, each calls its slice of the N task
//                            bodies (no per-task object: the floor)
//
// Typed results (<errgroup/results.hpp>): N tasks that each return their
// index, every value read back after wait(), plain group. The time also
// covers where the values go (N slots, the vector they end in).
//   spawn/results_by_hand    go() of a closure writing out[i] (vector of N
//                            made first): what Go code does by hand
//   spawn/go_result          go_result() x N into a reserved vector of
//                            handles, then get() of each
//   spawn/collector          collector::go() x N, then values()
//
// With -DERRGROUP_BENCH_PEERS (bench/peers/peers.hpp), the same N on:
//   spawn/taskflow_silent_async    executor.silent_async x N, wait_for_all()
//   spawn/taskflow_graph           build a tf::Taskflow of N tasks, run, wait
//   spawn/taskflow_task_group      tf::TaskGroup on a worker, corun()
//   spawn/taskflow_limit2          graph of N tasks on one tf::Semaphore(2)
//   spawn/stdexec_async_scope      exec::async_scope, sync_wait(on_empty())
//   spawn/stdexec_counting_scope   stdexec::counting_scope, sync_wait(join())
//   spawn/stdexec_limit2           async_scope + std::counting_semaphore(2)
//                                  acquired by the spawner (by hand)
// Each runs once untimed at setup with counting tasks: the count must be N.
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <errgroup/errgroup.hpp>
#include <iostream>
#include <thread>

#include "common.hpp"
#include "peers/peers.hpp"
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
    const std::int64_t t = bench::concurrency();
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

// The typed-result cases check the values they read back: sum of 0..n-1.
bool sum_ok(std::int64_t sum, std::int64_t n) { return sum == n * (n - 1) / 2; }

void results_by_hand(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    errgroup::group g;
    std::vector<std::int64_t> out(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
      g.go([&out, i] {
        bench::nop();
        out[static_cast<std::size_t>(i)] = i;
      });
    if (g.wait()) return false;
    std::int64_t sum = 0;
    for (std::int64_t v : out) sum += v;
    return sum_ok(sum, n);
  });
}

void go_result(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    errgroup::group g;
    std::vector<errgroup::result<std::int64_t>> rs;
    rs.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
      rs.push_back(errgroup::go_result(g, [i] {
        bench::nop();
        return i;
      }));
    if (g.wait()) return false;
    std::int64_t sum = 0;
    for (auto& r : rs) sum += r.get();
    return sum_ok(sum, n);
  });
}

void collector(benchmark::State& st) {
  spawn_bench(st, [](std::int64_t n) {
    errgroup::group g;
    errgroup::collector<std::int64_t> c(g);
    for (std::int64_t i = 0; i < n; ++i)
      c.go([i] {
        bench::nop();
        return i;
      });
    if (g.wait()) return false;
    std::int64_t sum = 0;
    for (std::int64_t v : c.values()) sum += v;
    return sum_ok(sum, n);
  });
}

// A peer variant: spawn(n, fn) runs n tasks of fn and returns when all ran.
template <class Spawn>
void peer(benchmark::State& st, Spawn spawn) {
  spawn_bench(st, [spawn](std::int64_t n) {
    spawn(n, bench::nop);
    return true;
  });
}

std::atomic<std::int64_t> g_count{0};
[[maybe_unused]] void count_task() noexcept {
  g_count.fetch_add(1, std::memory_order_relaxed);
}

// The untimed check of a peer variant: every one of n tasks ran.
template <class Spawn>
bool counts(const char* name, Spawn spawn) {
  const std::int64_t n = n_tasks();
  g_count = 0;
  spawn(n, count_task);
  if (g_count.load() == n) return true;
  std::cerr << name << ": " << g_count.load() << " of " << n << " tasks ran\n";
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  return bench::main(argc, argv, [] {
    auto reg = [](const char* name, auto fn) {
      benchmark::RegisterBenchmark(name, fn)->UseManualTime()->Unit(
          benchmark::kMillisecond);
    };
    // The peers: reg_peer(name, spawn) checks, then registers.
    bool ok = true;
    [[maybe_unused]] auto reg_peer = [&](const char* name, auto spawn) {
      ok = counts(name, spawn) && ok;
      reg(name, [spawn](benchmark::State& st) { peer(st, spawn); });
    };
    reg("spawn/group_plain", group_plain);
    reg("spawn/group_context", group_context);
    reg("spawn/group_limit2", [](benchmark::State& st) { group_limit(st, 2); });
    reg("spawn/group_limit64",
        [](benchmark::State& st) { group_limit(st, 64); });
    reg("spawn/group_traced", group_traced);
    reg("spawn/tbb_task_group", tbb_task_group);
    reg("spawn/thread_batch", thread_batch);
    reg("spawn/results_by_hand", results_by_hand);
    reg("spawn/go_result", go_result);
    reg("spawn/collector", collector);
#ifdef ERRGROUP_BENCH_TASKFLOW
    namespace tfp = bench::taskflow_peer;
    tfp::start(bench::concurrency());
    reg_peer("spawn/taskflow_silent_async", tfp::spawn_silent_async);
    reg_peer("spawn/taskflow_graph", tfp::spawn_graph);
    reg_peer("spawn/taskflow_task_group", tfp::spawn_task_group);
    reg_peer("spawn/taskflow_limit2", [](std::int64_t n, bench::task_fn fn) {
      tfp::spawn_semaphore(n, 2, fn);
    });
#endif
#ifdef ERRGROUP_BENCH_STDEXEC
    namespace sxp = bench::stdexec_peer;
    sxp::start(bench::concurrency());
    reg_peer("spawn/stdexec_async_scope", sxp::spawn_async_scope);
    reg_peer("spawn/stdexec_counting_scope", sxp::spawn_counting_scope);
    reg_peer("spawn/stdexec_limit2", [](std::int64_t n, bench::task_fn fn) {
      sxp::spawn_limited(n, 2, fn);
    });
#endif
    return ok ? 0 : 1;
  });
}
