// bench/work.hpp: the Go peer's work functions (peers/go/work.go), ported
// 1:1. Defined in work.cpp, which is compiled with -ffp-contract=off (Go on
// amd64 never fuses x*m + a into an FMA) and kept out of line, so the
// compiler cannot fold the work into the benchmark loops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bench {

// Workload 2: x = x*1.0000001 + 0.5, iters times.
inline constexpr int map_iters = 200;
inline constexpr double go_checksum = 105382941.32586102;  // n = 2^20
double kernel(double x, int iters);
// out[i] = kernel(in[i], iters) for i in [lo, hi).
void kernel_range(const double* in, double* out, std::size_t lo, std::size_t hi,
                  int iters);
// in[i] = double(i) / double(n).
std::vector<double> map_input(std::size_t n);
// Left-to-right sum (deterministic), as Go's checksum().
double checksum(const std::vector<double>& v);

// Workload 1: the empty task body (Go's nop), for thread-per-batch.
void nop() noexcept;

// Workload 3: n iterations of a dependent integer LCG.
void spin(int n) noexcept;
// Iterations of spin() that take ~1 us: best of 7 probes of 2,000,000.
int calibrate_spin();

// One run of workload 3, as bench_cancel reports it.
struct cancel_result {
  double wait_s = 0;     // first spawn -> the wait returns
  double latency_s = 0;  // the failing task returns -> the wait returns
  std::int64_t full = 0, partial = 0, none = 0, skipped = 0;  // tasks
  bool err_ok = true;  // the wait saw the failure (or none, when none failed)
};

}  // namespace bench
