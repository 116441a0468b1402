// Tests of go_until's deadline as a bound (docs/contract.md §4, Limit): the
// thread that waits in go_until() runs no task of the group, so no task can
// hold it past its deadline.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::spin_until;

namespace {

// round(g, wait): the only slot is held by a task that waits for a release
// which comes only after go_until() returns. Returns go_until's error and
// how long it took.
std::pair<errgroup::error, std::chrono::steady_clock::duration> round(
    errgroup::group& g, std::chrono::milliseconds wait) {
  std::atomic<bool> release{false};
  g.go([&] { REQUIRE(spin_until([&] { return release.load(); })); });
  const auto t0 = std::chrono::steady_clock::now();
  errgroup::error e = g.go_until(t0 + wait, [] {});
  const auto took = std::chrono::steady_clock::now() - t0;
  release = true;
  CHECK_FALSE(g.wait());
  return {e, took};
}

}  // namespace

TEST_SUITE("go_until") {
  TEST_CASE("go_until returns at its deadline whatever the tasks do") {
    errgroup::group g;
    g.set_limit(1);
    std::chrono::steady_clock::duration worst{};
    for (int i = 0; i < 1000; ++i) {
      auto [e, took] = round(g, 2ms);
      REQUIRE(e.is<errgroup::deadline_exceeded_error>());
      worst = std::max(worst, took);
    }
    MESSAGE(
        "default scheduler: the slowest of 1000 go_until(now + 2 ms) "
        "returned after "
        << std::chrono::duration<double, std::milli>(worst).count() << " ms");
  }

  TEST_CASE("go_until returns at its deadline on owned schedulers") {
    for (int threads : test::thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(1);
      for (int i = 0; i < 200; ++i) {
        auto [e, took] = round(g, 2ms);
        REQUIRE(e.is<errgroup::deadline_exceeded_error>());
      }
    }
  }

  TEST_CASE("go_until from a task of the group returns at its deadline") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(1);
    errgroup::error e;
    g.go([&] {
      // This task holds the only slot: the wait can only end by the
      // deadline.
      e = g.go_until(std::chrono::steady_clock::now() + 5ms, [] {});
    });
    CHECK_FALSE(g.wait());
    CHECK(e.is<errgroup::deadline_exceeded_error>());
  }
}
