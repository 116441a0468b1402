// tests/consumer/main.cpp: the smallest useful program of a user of
// errgroup. CTest builds it through find_package, add_subdirectory,
// FetchContent and pkg-config, and checks its output.
//
// Expected output (checked by ctest):
//   consumer: sum=5050 available=2 first_error=system_error
#ifdef CONSUMER_COMPONENTS
#include <errgroup/group.hpp>
#include <errgroup/weighted.hpp>
#else
#include <errgroup/errgroup.hpp>
#endif

#include <atomic>
#include <cstdio>
#include <system_error>

int main() {
  // Sum 1..100 with at most 4 tasks at once, each holding 1 of 2 units.
  errgroup::weighted sem{2};
  std::atomic<int> sum{0};
  auto [g, ctx] = errgroup::with_context(errgroup::context());
  g.set_limit(4);
  for (int i = 1; i <= 100; ++i) {
    g.go([&sum, &sem, i](const errgroup::context& c) -> errgroup::error {
      if (auto err = sem.acquire(c, 1)) return err;
      sum += i;
      sem.release(1);
      return {};
    });
  }
  if (auto err = g.wait()) {
    std::printf("consumer: unexpected error: %s\n", err.message().c_str());
    return 1;
  }

  // A plain group returns its first task error.
  errgroup::group plain;
  plain.go([] { return std::make_error_code(std::errc::timed_out); });
  const errgroup::error err = plain.wait();

  std::printf("consumer: sum=%d available=%lld first_error=%s\n", sum.load(),
              static_cast<long long>(sem.available()),
              err.is<std::system_error>() ? "system_error" : "wrong");
  return 0;
}
