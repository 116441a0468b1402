// Tests of the limits of input (docs/contract.md §7): the
// largest durations, context chains of any depth, the largest budgets,
// throwing callables, careless exceptions.
#include <doctest/doctest.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "errgroup/detail/node.hpp"
#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::rss_kib;
using test::spin_until;

namespace {

// A callable whose copies throw.
struct throws_on_copy {
  std::vector<int> payload = std::vector<int>(16);
  throws_on_copy() = default;
  throws_on_copy(const throws_on_copy&) { throw std::runtime_error("copy"); }
  throws_on_copy& operator=(const throws_on_copy&) = delete;
  void operator()() const {}
};

// A careless exception whose what() is null.
struct null_what : std::exception {
  const char* what() const noexcept override { return nullptr; }
};

// chain(root, depth) derives depth contexts, each from the one before, and
// returns them all (the last is the deepest).
std::vector<errgroup::context> chain(const errgroup::context& root, int depth) {
  std::vector<errgroup::context> out;
  out.reserve(static_cast<std::size_t>(depth));
  errgroup::context c = root;
  for (int i = 0; i < depth; ++i) {
    c = errgroup::with_cancel(c).ctx;
    out.push_back(c);
  }
  return out;
}

constexpr int deep = 1000000;

}  // namespace

TEST_SUITE("limits") {
  TEST_CASE("the largest durations mean practically never") {
    const errgroup::context bg;
    CHECK_FALSE(
        errgroup::with_timeout(bg, std::chrono::hours::max()).ctx.cancelled());
    CHECK_FALSE(errgroup::with_timeout(bg, std::chrono::nanoseconds::max())
                    .ctx.cancelled());
    CHECK_FALSE(errgroup::with_timeout(bg, std::chrono::duration<double>(1e300))
                    .ctx.cancelled());
    const errgroup::context far =
        errgroup::with_timeout(bg, std::chrono::hours::max()).ctx;
    CHECK(far.deadline() == std::chrono::steady_clock::time_point::max());
    CHECK_FALSE(errgroup::with_deadline(
                    bg, std::chrono::steady_clock::time_point::max())
                    .ctx.cancelled());
    // No timer is kept for "never".
    CHECK(errgroup::detail::pending_timers() == 0);
    // Negative and NaN durations have passed already.
    CHECK(errgroup::with_timeout(bg, -1s)
              .ctx.err()
              .is<errgroup::deadline_exceeded_error>());
    CHECK(errgroup::with_timeout(bg, std::chrono::hours::min())
              .ctx.err()
              .is<errgroup::deadline_exceeded_error>());
    CHECK(errgroup::with_timeout(bg,
                                 std::chrono::duration<double>(
                                     std::numeric_limits<double>::quiet_NaN()))
              .ctx.cancelled());
  }

  TEST_CASE("wait_for with the largest durations waits for the cancel") {
    for (int which = 0; which < 3; ++which) {
      CAPTURE(which);
      auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
      std::atomic<bool> waiting{false};
      std::thread t([&, c = cancel] {
        REQUIRE(spin_until([&] { return waiting.load(); }));
        c();
      });
      waiting = true;
      bool woke = false;
      if (which == 0) woke = ctx.wait_for(std::chrono::nanoseconds::max());
      if (which == 1) woke = ctx.wait_for(std::chrono::hours::max());
      if (which == 2) woke = ctx.wait_for(std::chrono::duration<double>(1e300));
      t.join();
      CHECK(woke);
    }
    CHECK_FALSE(errgroup::with_cancel(errgroup::context()).ctx.wait_for(-1s));
  }

  TEST_CASE(
      "a million deep chain cancelled from a oneTBB worker then "
      "dropped") {
    auto [root, cancel] = errgroup::with_cancel(errgroup::context());
    std::vector<errgroup::context> c = chain(root, deep);
    errgroup::scheduler s{1};
    errgroup::group g{s};
    std::atomic<bool> done{false};
    g.go([&, k = cancel] {
      k();
      done = true;
    });
    // Not wait(): it would help, and the cancel could run on this thread.
    REQUIRE(spin_until([&] { return done.load(); }, 300s));
    CHECK_FALSE(g.wait());
    CHECK(c.back().err().is<errgroup::cancelled_error>());
    const long live = errgroup::detail::node::live_nodes();
    c.clear();  // the deepest first: each drop releases its parent
    CHECK(errgroup::detail::node::live_nodes() == live - deep);
  }

  TEST_CASE(
      "a million deep chain cancelled by the deadline timer then "
      "dropped from the deepest end") {
    std::vector<errgroup::context> c;
    {
      const errgroup::context root =
          errgroup::with_timeout(errgroup::context(), 50ms).ctx;
      c = chain(root, deep);
    }
    REQUIRE(c.back().wait_for(300s));
    CHECK(c.back().err().is<errgroup::deadline_exceeded_error>());
    // Drop everything but the deepest, then the deepest: one release
    // takes the whole chain with it.
    errgroup::context last = c.back();
    c.clear();
    const long live = errgroup::detail::node::live_nodes();
    last = errgroup::context();
    CHECK(errgroup::detail::node::live_nodes() == live - deep - 1);
  }

  TEST_CASE("weighted accepts sizes up to its documented maximum") {
    errgroup::weighted big{errgroup::weighted::max_size};
    CHECK(big.size() == errgroup::weighted::max_size);
    CHECK(big.try_acquire(errgroup::weighted::max_size));
    big.release(errgroup::weighted::max_size);
    CHECK(big.available() == big.size());
    CHECK_THROWS_AS(errgroup::weighted{errgroup::weighted::max_size + 1},
                    std::invalid_argument);
    CHECK_THROWS_AS(
        errgroup::weighted{std::numeric_limits<std::int64_t>::max()},
        std::invalid_argument);
  }

  TEST_CASE("a callable whose copy throws in go leaves nothing behind") {
    errgroup::weighted budget{10};
    errgroup::group g;
    g.set_limit(2);
    const throws_on_copy f;
    // Warm up: the first calls set up oneTBB's pools.
    for (int i = 0; i < 1000; ++i) CHECK_THROWS_AS(g.go(f), std::runtime_error);
    const long before = rss_kib();
    for (int i = 0; i < 1000000; ++i) {
      try {
        if (i % 3 == 0)
          g.go(f);
        else if (i % 3 == 1)
          g.go(budget, 3, f);
        else
          (void)g.try_go(budget, 3, f);
      } catch (const std::runtime_error&) {
      }
    }
    const long after = rss_kib();
    MESSAGE("RSS " << before << " KiB before 1,000,000 throwing go() calls, "
                   << after << " KiB after");
    if (!test::sanitized) CHECK(after - before < 16 * 1024);
    CHECK_FALSE(g.wait());
    CHECK(g.counters().submitted == 0);
    CHECK(budget.available() == budget.size());
    // Nothing held: the limit's slots are all free.
    std::atomic<int> ran{0};
    CHECK(g.try_go([&] { ++ran; }));
    CHECK(g.try_go([&] { ++ran; }));
    CHECK_FALSE(g.wait());
    CHECK(ran.load() == 2);
  }

  TEST_CASE("an exception whose what is null has an empty message") {
    const errgroup::error e = errgroup::make_error<null_what>();
    CHECK(e.message().empty());
    errgroup::group g;
    g.go([] { throw null_what(); });
    CHECK(g.wait().is<null_what>());
  }
}
