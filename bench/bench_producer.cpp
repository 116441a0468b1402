// A producer at the limit with long tasks (issue 18): what a thread that
// waits in go() pays when it runs a task meanwhile (the default scheduler:
// it helps, as tbb::task_group::wait() does) against one that blocks (an
// owned scheduler: it never runs tasks). 40 tasks of 5 ms busy work, limit
// 2, go() from the main thread.
//
//   producer/helping_default   default scheduler (the producer helps)
//   producer/blocking_owned2   scheduler{2} (two workers; the producer blocks)
//
// Counters (per run):
//   total_ms        first go() -> wait() returns
//   go_max_ms       the longest single go() call (a helping producer can be
//                   held for a whole task)
//   go_mean_ms      mean go() call
#include <algorithm>
#include <errgroup/errgroup.hpp>

#include "common.hpp"

namespace {

void busy(std::chrono::microseconds d) {
  const auto end = bench::clock::now() + d;
  while (bench::clock::now() < end) {
  }
}

void producer(benchmark::State& st, bool owned) {
  const int ntasks = static_cast<int>(bench::scaled(40, 4));
  const auto task_len = std::chrono::microseconds(bench::scaled(5000, 500));
  double total = 0, go_max = 0, go_sum = 0;
  for (auto _ : st) {
    errgroup::scheduler s{2};
    errgroup::scheduler& sched =
        owned ? s : errgroup::scheduler::default_scheduler();
    const auto t0 = bench::clock::now();
    {
      errgroup::group g{sched};
      g.set_limit(2);
      for (int i = 0; i < ntasks; ++i) {
        const auto a = bench::clock::now();
        g.go([task_len] { busy(task_len); });
        const double d = bench::seconds(bench::clock::now() - a);
        go_max = std::max(go_max, d);
        go_sum += d;
      }
      bench::keep(g.wait());
    }
    const double t = bench::seconds(bench::clock::now() - t0);
    total += t;
    st.SetIterationTime(t);
  }
  const double it = static_cast<double>(
      std::max<benchmark::IterationCount>(1, st.iterations()));
  st.counters["total_ms"] = total * 1e3 / it;
  st.counters["go_max_ms"] = go_max * 1e3;
  st.counters["go_mean_ms"] = go_sum * 1e3 / (it * ntasks);
}

int setup() {
  benchmark::RegisterBenchmark(
      "producer/helping_default",
      [](benchmark::State& st) { producer(st, false); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("producer/blocking_owned2",
                               [](benchmark::State& st) { producer(st, true); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bench::main(argc, argv, setup); }
