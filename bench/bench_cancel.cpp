// Workload 3, first-error cancellation (Go: cancel.*): a context group runs
// 10,000 tasks; each does 100 units of ~1 us calibrated integer-LCG spin and
// checks ctx.cancelled() before every unit; task #100 (0-based launch order)
// returns an error at once when it starts. The spin is calibrated at start
// (Go's calibrateSpin, ported), not fixed.
//
//   cancel/unlimited           no limit
//   cancel/limitP              set_limit(P), P = arena concurrency
//   cancel/nofail_unlimited    nobody fails: checks the calibration
//                              (ideal = 10,000 x 100 us / P)
//   cancel/tbb_task_group      reference: raw tbb::task_group, the failing
//                              task calls cancel(), the others poll
//                              is_current_task_group_canceling()
//
// With -DERRGROUP_BENCH_PEERS (bench/peers/peers.hpp), no limit:
//   cancel/taskflow_task_group  tf::TaskGroup on a worker; the failing task
//                               throws, the others poll rt.is_cancelled()
//   cancel/taskflow_graph       the same on a graph of 10,000 tasks
//   cancel/stdexec_async_scope  upon_error records the error and calls
//                               request_stop(); bodies poll the stop token
//
// Counters (per run; run.sh takes medians):
//   wait_ms          first go() -> wait() returns
//   fail_to_wait_us  the failing task returns -> wait() returns
//   full_work        tasks that did all 100 units
//   partial_work     tasks that stopped midway
//   none_work        tasks that ran but saw the cancellation before unit 1
//   skipped          tasks never invoked (errgroup skips queued work; Go
//                    cannot, golang/go#61611)
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <errgroup/errgroup.hpp>
#include <iostream>
#include <stdexcept>

#include "common.hpp"
#include "peers/peers.hpp"
#include "work.hpp"

namespace {

int g_unit_iters = 1;

const errgroup::error& fail_error() {
  static const errgroup::error e =
      errgroup::make_error<std::runtime_error>("task failed on purpose");
  return e;
}

using result = bench::cancel_result;

result first_error_cancel(int ntasks, int units, int unit_iters, int fail_idx,
                          int limit) {
  std::atomic<std::int64_t> full{0}, partial{0}, none{0};
  std::atomic<bench::clock::rep> failed_at{0};
  result r;
  const auto t0 = bench::clock::now();
  {
    auto [g, ctx] = errgroup::with_context(errgroup::context());
    if (limit > 0) g.set_limit(limit);
    for (int i = 0; i < ntasks; ++i) {
      g.go([&, i](const errgroup::context& c) -> errgroup::error {
        if (i == fail_idx) {
          failed_at.store(bench::clock::now().time_since_epoch().count(),
                          std::memory_order_relaxed);
          return fail_error();
        }
        for (int u = 0; u < units; ++u) {
          if (c.cancelled()) {
            (u == 0 ? none : partial).fetch_add(1, std::memory_order_relaxed);
            return c.err();
          }
          bench::spin(unit_iters);
        }
        full.fetch_add(1, std::memory_order_relaxed);
        return {};
      });
    }
    const errgroup::error err = g.wait();
    const auto end = bench::clock::now();
    r.wait_s = bench::seconds(end - t0);
    if (const auto f = failed_at.load(); f != 0)
      r.latency_s = bench::seconds(
          end - bench::clock::time_point(bench::clock::duration(f)));
    r.err_ok = fail_idx >= 0 ? err == fail_error() : !err;
    r.skipped = g.counters().skipped;
  }
  r.full = full.load();
  r.partial = partial.load();
  r.none = none.load();
  return r;
}

// The same workload on a raw tbb::task_group (the reference for how fast
// oneTBB itself drops queued work): the failing task calls tg.cancel(); the
// others poll tbb::is_current_task_group_canceling() before every unit. No
// limit. skipped = tasks never invoked.
result tbb_cancel(int ntasks, int units, int unit_iters, int fail_idx) {
  std::atomic<std::int64_t> full{0}, partial{0}, none{0}, started{0};
  std::atomic<bench::clock::rep> failed_at{0};
  result r;
  const auto t0 = bench::clock::now();
  {
    tbb::task_group tg;
    for (int i = 0; i < ntasks; ++i) {
      tg.run([&, i] {
        started.fetch_add(1, std::memory_order_relaxed);
        if (i == fail_idx) {
          failed_at.store(bench::clock::now().time_since_epoch().count(),
                          std::memory_order_relaxed);
          tg.cancel();
          return;
        }
        for (int u = 0; u < units; ++u) {
          if (tbb::is_current_task_group_canceling()) {
            (u == 0 ? none : partial).fetch_add(1, std::memory_order_relaxed);
            return;
          }
          bench::spin(unit_iters);
        }
        full.fetch_add(1, std::memory_order_relaxed);
      });
    }
    const auto status = tg.wait();
    const auto end = bench::clock::now();
    r.wait_s = bench::seconds(end - t0);
    if (const auto f = failed_at.load(); f != 0)
      r.latency_s = bench::seconds(
          end - bench::clock::time_point(bench::clock::duration(f)));
    r.err_ok =
        fail_idx >= 0 ? status == tbb::canceled : status == tbb::complete;
  }
  r.full = full.load();
  r.partial = partial.load();
  r.none = none.load();
  r.skipped = ntasks - started.load();
  return r;
}

// run(ntasks, units, unit_iters, fail_idx) is one run of the workload.
template <class Run>
void cancel_bench(benchmark::State& st, bool fail, Run run) {
  const int ntasks = static_cast<int>(bench::scaled(10'000, 1'000));
  const int units = static_cast<int>(bench::scaled(100, 10));
  result sum;
  double foreign = 0;
  for (auto _ : st) {
    const result r = bench::guarded(
        [&] { return run(ntasks, units, g_unit_iters, fail ? 100 : -1); },
        foreign);
    if (!r.err_ok) st.SkipWithError("wait() returned the wrong error");
    st.SetIterationTime(r.wait_s);
    sum.wait_s += r.wait_s;
    sum.latency_s += r.latency_s;
    sum.full += r.full;
    sum.partial += r.partial;
    sum.none += r.none;
    sum.skipped += r.skipped;
  }
  const double it = static_cast<double>(
      std::max<benchmark::IterationCount>(1, st.iterations()));
  st.counters["wait_ms"] = sum.wait_s * 1e3 / it;
  if (fail) st.counters["fail_to_wait_us"] = sum.latency_s * 1e6 / it;
  st.counters["full_work"] = static_cast<double>(sum.full) / it;
  st.counters["partial_work"] = static_cast<double>(sum.partial) / it;
  st.counters["none_work"] = static_cast<double>(sum.none) / it;
  st.counters["skipped"] = static_cast<double>(sum.skipped) / it;
  st.counters["tasks"] = ntasks;
  if (bench::guard_enabled()) st.counters["foreign_cpu_pct"] = foreign;
}

int setup() {
  g_unit_iters = bench::calibrate_spin();
  const int p = bench::concurrency();
  std::cerr << "# cancel: tasks=" << bench::scaled(10'000, 1'000)
            << " units/task=" << bench::scaled(100, 10)
            << " unit=~1us (spin iters=" << g_unit_iters
            << ") fail-index=100 P=" << p << "\n";
  benchmark::AddCustomContext("spin_iters", std::to_string(g_unit_iters));
  benchmark::AddCustomContext("cancel_P", std::to_string(p));
  // reg(name, fail, run): run(ntasks, units, unit_iters, fail_idx).
  auto reg = [](const char* name, bool fail, auto run) {
    benchmark::RegisterBenchmark(
        name, [=](benchmark::State& st) { cancel_bench(st, fail, run); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  auto group = [](int limit) {
    return [limit](int ntasks, int units, int unit_iters, int fail_idx) {
      return first_error_cancel(ntasks, units, unit_iters, fail_idx, limit);
    };
  };
  reg("cancel/unlimited", true, group(-1));
  reg("cancel/limitP", true, group(p));
  reg("cancel/nofail_unlimited", false, group(-1));
  reg("cancel/tbb_task_group", true, tbb_cancel);
#ifdef ERRGROUP_BENCH_TASKFLOW
  bench::taskflow_peer::start(p);
  reg("cancel/taskflow_task_group", true,
      bench::taskflow_peer::cancel_task_group);
  reg("cancel/taskflow_graph", true, bench::taskflow_peer::cancel_graph);
#endif
#ifdef ERRGROUP_BENCH_STDEXEC
  bench::stdexec_peer::start(p);
  reg("cancel/stdexec_async_scope", true,
      bench::stdexec_peer::cancel_async_scope);
#endif
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bench::main(argc, argv, setup); }
