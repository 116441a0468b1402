// Workload 2, CPU-bound map (Go: map.*): n = 2^20 doubles,
// in[i] = i / n, out[i] = 200 x (x = x*1.0000001 + 0.5). The kernel is
// compiled with -ffp-contract=off and kept out of line (work.cpp); the
// checksum must be Go's 105382941.32586102, and every variant's output must
// equal the sequential one bit for bit (checked after each run, untimed).
// Unit: ms of wall time; run.sh derives speedup = median seq / median variant.
//
//   map/seq                    plain loop
//   map/chunk1_unlimited       one go() per element, plain group
//   map/chunk1_limitP          same with set_limit(P), P = arena concurrency
//   map/chunk4096_unlimited    one go() per 4096 elements (256 tasks)
//   map/chunk4096_limitP       same with set_limit(P)
//   map/parallel_map           errgroup::parallel_map (if the header exists)
//   map/tbb_parallel_for       tbb::parallel_for, blocked_range, default
//                              (auto) partitioner
//   map/tbb_parallel_for_4096  tbb::parallel_for, grain 4096,
//                              simple_partitioner (same 256 chunks)
//
// With -DERRGROUP_BENCH_PEERS (bench/peers/peers.hpp):
//   map/taskflow_for_each_index    tf::Taskflow::for_each_index, one index
//                                  per call (guided partitioner)
//   map/taskflow_task_group_4096   256 chunks on a tf::TaskGroup
//   map/stdexec_bulk_chunked       bulk_chunked(par, n) on the pool
//   map/stdexec_async_scope_4096   256 chunks spawned on an async_scope
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <errgroup/errgroup.hpp>
#include <iostream>

#include "common.hpp"
#include "peers/peers.hpp"
#include "work.hpp"

#if __has_include(<errgroup/parallel_map.hpp>)
#include <errgroup/parallel_map.hpp>
#define ERRGROUP_BENCH_HAS_PARALLEL_MAP 1
#endif

namespace {

struct data {
  std::vector<double> in, out, expected;
};

data& the_data() {
  static data d;
  return d;
}

bool same(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// run(in, out) fills out and returns whether it succeeded.
template <class Run>
void map_bench(benchmark::State& st, Run run) {
  data& d = the_data();
  bench::timed(st, "ms", 1e3, [&] {
    std::fill(d.out.begin(), d.out.end(), 0.0);
    const auto t0 = bench::clock::now();
    const bool ok = run(d.in.data(), d.out.data(), d.in.size());
    const double s = bench::seconds(bench::clock::now() - t0);
    if (!ok) st.SkipWithError("the group returned an error");
    if (!same(d.out, d.expected)) st.SkipWithError("MISMATCH against seq");
    return s;
  });
}

bool seq(const double* in, double* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    out[i] = bench::kernel(in[i], bench::map_iters);
  return true;
}

bool chunked(const double* in, double* out, std::size_t n, std::size_t chunk,
             int limit) {
  errgroup::group g;
  if (limit > 0) g.set_limit(limit);
  for (std::size_t lo = 0; lo < n; lo += chunk) {
    const std::size_t hi = std::min(n, lo + chunk);
    if (chunk == 1)
      g.go(
          [in, out, lo] { out[lo] = bench::kernel(in[lo], bench::map_iters); });
    else
      g.go([in, out, lo, hi] {
        bench::kernel_range(in, out, lo, hi, bench::map_iters);
      });
  }
  return !g.wait();
}

bool tbb_pf(const double* in, double* out, std::size_t n) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                    [=](const tbb::blocked_range<std::size_t>& r) {
                      bench::kernel_range(in, out, r.begin(), r.end(),
                                          bench::map_iters);
                    });
  return true;
}

bool tbb_pf_4096(const double* in, double* out, std::size_t n) {
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, n, 4096),
      [=](const tbb::blocked_range<std::size_t>& r) {
        bench::kernel_range(in, out, r.begin(), r.end(), bench::map_iters);
      },
      tbb::simple_partitioner());
  return true;
}

#ifdef ERRGROUP_BENCH_HAS_PARALLEL_MAP
void parallel_map_bench(benchmark::State& st) {
  data& d = the_data();
  bench::timed(st, "ms", 1e3, [&] {
    const auto t0 = bench::clock::now();
    auto [values, err] = errgroup::parallel_map(
        errgroup::context(), d.in,
        [](const errgroup::context&, const double& x) {
          return bench::kernel(x, bench::map_iters);
        },
        errgroup::map_options{});
    const double s = bench::seconds(bench::clock::now() - t0);
    if (err) st.SkipWithError("parallel_map returned an error");
    const std::vector<double> got(values.begin(), values.end());
    if (!same(got, d.expected)) st.SkipWithError("MISMATCH against seq");
    return s;
  });
}
#endif

std::string shortest(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

int setup() {
  data& d = the_data();
  const std::size_t n = std::size_t{1} << (bench::quick() ? 14 : 20);
  d.in = bench::map_input(n);
  d.out.assign(n, 0.0);
  d.expected.assign(n, 0.0);
  seq(d.in.data(), d.expected.data(), n);
  const double sum = bench::checksum(d.expected);
  std::string status = "n/a (not n=2^20)";
  if (n == (std::size_t{1} << 20))
    status = sum == bench::go_checksum ? "MATCH" : "MISMATCH";
  std::cerr << "# map: n=" << n << " iters=" << bench::map_iters
            << " checksum=" << shortest(sum)
            << " go=" << shortest(bench::go_checksum) << " " << status
            << " out[0]=" << shortest(d.expected.front())
            << " out[n-1]=" << shortest(d.expected.back()) << "\n";
  benchmark::AddCustomContext("map_n", std::to_string(n));
  benchmark::AddCustomContext("map_checksum", shortest(sum));
  benchmark::AddCustomContext("map_checksum_vs_go", status);
  if (status == "MISMATCH") return 1;

  const int p = bench::concurrency();
  benchmark::AddCustomContext("map_P", std::to_string(p));
  auto reg = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  reg("map/seq", [](benchmark::State& st) { map_bench(st, seq); });
  for (std::size_t chunk : {std::size_t{1}, std::size_t{4096}}) {
    const std::string c = "map/chunk" + std::to_string(chunk);
    reg(c + "_unlimited", [chunk](benchmark::State& st) {
      map_bench(st, [chunk](const double* in, double* out, std::size_t m) {
        return chunked(in, out, m, chunk, -1);
      });
    });
    reg(c + "_limitP", [chunk, p](benchmark::State& st) {
      map_bench(st, [chunk, p](const double* in, double* out, std::size_t m) {
        return chunked(in, out, m, chunk, p);
      });
    });
  }
#ifdef ERRGROUP_BENCH_HAS_PARALLEL_MAP
  reg("map/parallel_map", parallel_map_bench);
#endif
  reg("map/tbb_parallel_for",
      [](benchmark::State& st) { map_bench(st, tbb_pf); });
  reg("map/tbb_parallel_for_4096",
      [](benchmark::State& st) { map_bench(st, tbb_pf_4096); });
  // A peer variant: run(in, out, n) fills out.
  [[maybe_unused]] auto reg_peer = [&](const char* name, auto run) {
    reg(name, [run](benchmark::State& st) {
      map_bench(st, [run](const double* in, double* out, std::size_t m) {
        run(in, out, m);
        return true;
      });
    });
  };
#ifdef ERRGROUP_BENCH_TASKFLOW
  bench::taskflow_peer::start(p);
  reg_peer("map/taskflow_for_each_index",
           bench::taskflow_peer::map_for_each_index);
  reg_peer("map/taskflow_task_group_4096",
           bench::taskflow_peer::map_task_group_4096);
#endif
#ifdef ERRGROUP_BENCH_STDEXEC
  bench::stdexec_peer::start(p);
  reg_peer("map/stdexec_bulk_chunked", bench::stdexec_peer::map_bulk_chunked);
  reg_peer("map/stdexec_async_scope_4096",
           bench::stdexec_peer::map_async_scope_4096);
#endif
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bench::main(argc, argv, setup); }
