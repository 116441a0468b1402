// bench/common.hpp: what every bench_* binary shares.
//
// Each binary is a Google Benchmark program with its own main():
//   bench_x [--quick | --full] [--threads=N] [Google Benchmark flags...]
// --quick shrinks the workloads (about 1/100) and defaults to one iteration
// of one repetition: a smoke run for CI. --threads=N runs every variant on N
// threads: oneTBB (so errgroup) under a global_control(max_allowed_parallelism,
// N), the peers' pools (bench/peers/) of N threads, limit P = N; without it,
// N = oneTBB's default concurrency (the CPUs this process may use). Debug and
// sanitizer builds use the quick sizes unless --full is given. Google
// Benchmark 1.7.1 only takes
// --benchmark_min_time=<seconds> as a plain number; the newer "0.001s" form is
// accepted too (the suffix is dropped).
//
// Every figure is one run of the workload as the Go peer defines it
// (/work/shared/peers/go/work.go): one benchmark iteration, timed by hand
// (UseManualTime) over exactly the interval Go times, with the figure's own
// unit reported as a counter. bench/run.sh runs repetitions with
// --benchmark_enable_random_interleaving, so the alternatives of a comparison
// alternate within one process, and takes medians.
#pragma once

#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace bench {

using clock = std::chrono::steady_clock;

inline double seconds(clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// A Debug or sanitizer build is never a measurement: there the binaries run
// the --quick sizes unless --full is given (CI runs every bench_* it finds,
// also the ones built by the dev, asan and tsan presets).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool measuring_build = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool measuring_build = false;
#else
inline constexpr bool measuring_build = true;
#endif
#else
inline constexpr bool measuring_build = true;
#endif
#ifndef NDEBUG
inline constexpr bool release_build = false;
#else
inline constexpr bool release_build = true;
#endif

// quick() reports whether the small sizes are used: --quick, or a Debug or
// sanitizer build without --full.
inline bool& quick() {
  static bool q = false;
  return q;
}

// threads_flag() is --threads=N, or 0 when not given.
inline int& threads_flag() {
  static int n = 0;
  return n;
}

// concurrency(): the threads every variant runs on (P of the limitP
// figures, the size of the peers' pools): --threads=N, else oneTBB's default
// concurrency.
inline int concurrency() {
  return threads_flag() > 0 ? threads_flag() : tbb::info::default_concurrency();
}

// scaled(full, quick_value) picks the workload size.
inline std::int64_t scaled(std::int64_t full, std::int64_t small) {
  return quick() ? small : full;
}

// Keeps a value alive for the optimizer.
template <class T>
inline void keep(T&& v) {
  benchmark::DoNotOptimize(v);
}

// main() for a bench binary: handles --quick, normalises the min_time flag,
// calls setup() (registration that depends on --quick, calibration), then
// runs the benchmarks.
template <class Setup>
int main(int argc, char** argv, Setup setup) {
  std::vector<std::string> args;
  bool has_min_time = false, has_reps = false, full = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick() = true;
      continue;
    }
    if (a == "--full") {
      full = true;
      continue;
    }
    constexpr std::string_view th = "--threads=";
    if (a.rfind(th, 0) == 0) {
      threads_flag() = std::atoi(a.c_str() + th.size());
      if (threads_flag() < 1) {
        std::fprintf(stderr, "%s: --threads=N needs N >= 1\n", argv[0]);
        return 2;
      }
      continue;
    }
    constexpr std::string_view mt = "--benchmark_min_time=";
    if (a.rfind(mt, 0) == 0) {
      has_min_time = true;
      if (a.size() > mt.size() && a.back() == 's') a.pop_back();
    }
    if (a.rfind("--benchmark_repetitions=", 0) == 0) has_reps = true;
    args.push_back(a);
  }
  if (!(release_build && measuring_build) && !full && !quick()) {
    quick() = true;
    std::fprintf(stderr,
                 "# not a Release build without sanitizers: --quick sizes "
                 "(--full overrides)\n");
  }
  if (quick()) {
    if (!has_min_time) args.push_back("--benchmark_min_time=0");
    if (!has_reps) args.push_back("--benchmark_repetitions=1");
  }
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, cargs.data());
  if (benchmark::ReportUnrecognizedArguments(n, cargs.data())) return 1;
  std::optional<tbb::global_control> limit;
  if (threads_flag() > 0)
    limit.emplace(tbb::global_control::max_allowed_parallelism,
                  static_cast<std::size_t>(threads_flag()));
  benchmark::AddCustomContext("threads", std::to_string(concurrency()));
  if (int rc = setup(); rc != 0) return rc;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench

namespace bench {

// ---- CPU guard (a port of the Go peer's cpuguard.go) ------------------------
// The reference machine is a small shared VM. With ERRGROUP_BENCH_GUARD=1
// (bench/run.sh sets it; never in --quick) each timed run first waits, up to
// 30 s, for a 200 ms window in which other processes used at most 10 % of the
// total CPU capacity, and is repeated (up to 6 attempts) while other
// processes used more than 10 % during it. The worst accepted figure is
// reported as the counter foreign_cpu_pct. Knobs: ERRGROUP_BENCH_MAX_FOREIGN
// (percent), ERRGROUP_BENCH_RETRIES, ERRGROUP_BENCH_QUIET_WAIT (seconds).

struct cpu_sample {
  unsigned long long total = 0, busy = 0, self = 0;  // clock ticks
  bool ok = false;
};

inline cpu_sample sample_cpu() {
  cpu_sample s;
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return s;
  unsigned long long v[8] = {};
  const int got =
      std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                  &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (got != 8) return s;
  for (auto x : v) s.total += x;
  s.busy = s.total - v[3] - v[4];
  f = std::fopen("/proc/self/stat", "r");
  if (f == nullptr) return s;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return s;
  unsigned long long ut = 0, st = 0;
  // after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime stime
  if (std::sscanf(p + 2,
                  "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                  &st) != 2)
    return s;
  s.self = ut + st;
  s.ok = true;
  return s;
}

// foreign_pct(a, b): % of the total CPU capacity other processes used.
inline double foreign_pct(const cpu_sample& a, const cpu_sample& b) {
  if (!a.ok || !b.ok || b.total <= a.total) return 0;
  long long f = static_cast<long long>(b.busy - a.busy) -
                static_cast<long long>(b.self - a.self);
  if (f < 0) f = 0;
  return 100.0 * static_cast<double>(f) /
         static_cast<double>(b.total - a.total);
}

inline double env_num(const char* name, double def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atof(v) : def;
}

inline bool guard_enabled() {
  static const bool on = env_num("ERRGROUP_BENCH_GUARD", 0) != 0;
  return on && !quick();
}

inline void wait_quiet() {
  if (env_num("ERRGROUP_BENCH_QUIET_WAIT", 30) <= 0) return;
  const double max_foreign = env_num("ERRGROUP_BENCH_MAX_FOREIGN", 10);
  const auto deadline =
      clock::now() +
      std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(
          env_num("ERRGROUP_BENCH_QUIET_WAIT", 30)));
  for (;;) {
    const cpu_sample a = sample_cpu();
    if (!a.ok) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (foreign_pct(a, sample_cpu()) <= max_foreign || clock::now() > deadline)
      return;
  }
}

// guarded(f, worst): runs f() (one timed run) as the Go guard does; worst
// becomes max(worst, foreign % of the accepted attempt).
template <class F>
auto guarded(F&& f, double& worst) {
  if (!guard_enabled()) return f();
  const double max_foreign = env_num("ERRGROUP_BENCH_MAX_FOREIGN", 10);
  const int retries = static_cast<int>(env_num("ERRGROUP_BENCH_RETRIES", 6));
  for (int attempt = 1;; ++attempt) {
    wait_quiet();
    const cpu_sample a = sample_cpu();
    auto v = f();
    const double fp = foreign_pct(a, sample_cpu());
    if (fp <= max_foreign || attempt >= retries) {
      if (fp > worst) worst = fp;
      return v;
    }
  }
}

// process_cpu_seconds(): CPU time of every thread of this process.
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         static_cast<double>(ts.tv_nsec) * 1e-9;
}

// timed(st, counter, scale, run): each iteration calls run() (guarded), which
// returns the seconds of the interval it timed; that becomes the iteration
// time, and counter = mean seconds * scale (e.g. 1e9 / N for ns per task).
// "cpu_" + counter is the same for the CPU time all threads of the process
// used during the run (less sensitive to other processes than wall time:
// on a loaded machine compare these too).
template <class Run>
void timed(benchmark::State& st, const char* counter, double scale, Run run) {
  double total = 0, cpu = 0, foreign = 0;
  for (auto _ : st) {
    double c = 0;
    const double s = guarded(
        [&] {
          const double c0 = process_cpu_seconds();
          const double r = run();
          c = process_cpu_seconds() - c0;
          return r;
        },
        foreign);
    st.SetIterationTime(s);
    total += s;
    cpu += c;
  }
  if (st.iterations() > 0) {
    const double it = static_cast<double>(st.iterations());
    st.counters[counter] = total / it * scale;
    st.counters[std::string("cpu_") + counter] = cpu / it * scale;
  }
  if (guard_enabled()) st.counters["foreign_cpu_pct"] = foreign;
}

}  // namespace bench
