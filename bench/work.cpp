#include "work.hpp"

#include <atomic>
#include <chrono>

namespace bench {

namespace {
constexpr double map_mul = 1.0000001;
constexpr double map_add = 0.5;
std::atomic<std::uint64_t> spin_sink{0};
}  // namespace

__attribute__((noinline)) double kernel(double x, int iters) {
  for (int k = 0; k < iters; ++k) x = x * map_mul + map_add;
  return x;
}

__attribute__((noinline)) void kernel_range(const double* in, double* out,
                                            std::size_t lo, std::size_t hi,
                                            int iters) {
  for (std::size_t i = lo; i < hi; ++i) out[i] = kernel(in[i], iters);
}

std::vector<double> map_input(std::size_t n) {
  std::vector<double> in(n);
  for (std::size_t i = 0; i < n; ++i)
    in[i] = static_cast<double>(i) / static_cast<double>(n);
  return in;
}

double checksum(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}

__attribute__((noinline)) void nop() noexcept {}

__attribute__((noinline)) void spin(int n) noexcept {
  std::uint64_t x = spin_sink.load(std::memory_order_relaxed) | 1;
  for (int i = 0; i < n; ++i)
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  spin_sink.store(x, std::memory_order_relaxed);
}

int calibrate_spin() {
  constexpr int probe = 2'000'000;
  auto best = std::chrono::steady_clock::duration::max();
  for (int r = 0; r < 7; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    spin(probe);
    auto d = std::chrono::steady_clock::now() - t0;
    if (d < best) best = d;
  }
  const double ns = std::chrono::duration<double, std::nano>(best).count();
  const int it = static_cast<int>(probe * 1000.0 / ns);
  return it < 1 ? 1 : it;
}

}  // namespace bench
