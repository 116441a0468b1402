// tests/first_success_test.cpp: errgroup::first_success and hedging
// (<errgroup/first_success.hpp>).
#include "errgroup/first_success.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::process_cpu_time;
using test::thread_counts;

namespace {

// Long enough that no test ever reaches it: the next alternative starts only
// on a failure.
const errgroup::hedge_options fallback{std::chrono::hours(1)};

}  // namespace

TEST_SUITE("first_success") {
  TEST_CASE("first_success returns the first success and cancels the rest") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      // Alternative 0 wins; the others (no more than the threads, so 0 always
      // finds a thread) wait until they are cancelled.
      const auto n = static_cast<std::size_t>(threads) + 1;
      std::atomic<int> started{0}, returned{0};
      auto [index, value, err, failures] = errgroup::first_success(
          errgroup::context(), n,
          [&](const errgroup::context& c, std::size_t i) {
            if (i == 0) return std::string("winner");
            ++started;
            const bool cancelled = c.wait_for(1h);
            ++returned;
            if (cancelled) throw std::runtime_error("cancelled");
            return std::string("too late");
          },
          {}, s);
      CHECK_FALSE(err);
      CHECK(index == 0);
      REQUIRE(value.has_value());
      CHECK(*value == "winner");
      CHECK(failures.empty());  // failures after the outcome are dropped
      CHECK(started.load() == returned.load());  // nothing outlives the call
    }
  }

  TEST_CASE("without a delay every alternative starts at once") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      // Each alternative waits until all have started: only a concurrent
      // start gets past the latch. The last one to arrive wins.
      const auto n = static_cast<std::size_t>(threads) + 1;
      for (const errgroup::hedge_options& o :
           {errgroup::hedge_options{},
            errgroup::hedge_options{std::chrono::nanoseconds(0)}}) {
        std::latch all_started{static_cast<std::ptrdiff_t>(n)};
        std::atomic<std::size_t> arrived{0};
        auto res = errgroup::first_success(
            errgroup::context(), n,
            [&](std::size_t) {
              const bool last = ++arrived == n;
              all_started.arrive_and_wait();
              if (!last) throw std::runtime_error("not last");
            },
            o, s);
        CHECK_FALSE(res.err);
        CHECK(res.value);
        CHECK(res.index < n);
        CHECK(res.failures.size() <= n - 1);
      }
    }
  }

  TEST_CASE(
      "when every alternative fails first_success returns the last failure") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto f = [](std::size_t i) -> int {
        throw std::runtime_error("mirror " + std::to_string(i) + " down");
      };
      SUBCASE("all at once") {
        auto res = errgroup::first_success(errgroup::context(), 4, f, {}, s);
        REQUIRE(res.failures.size() == 4);
        CHECK(res.err == res.failures.back().second);
        CHECK_FALSE(res.value);
        CHECK(res.index == 4);
      }
      SUBCASE("one after another: failures in order") {
        auto res =
            errgroup::first_success(errgroup::context(), 4, f, fallback, s);
        REQUIRE(res.failures.size() == 4);
        for (std::size_t i = 0; i < 4; ++i) CHECK(res.failures[i].first == i);
        CHECK(res.err.message() == "mirror 3 down");
        CHECK(res.err == res.failures.back().second);
        CHECK_FALSE(res.value);
        CHECK(res.index == 4);
      }
    }
  }

  TEST_CASE("with a long delay the next alternative starts only on a failure") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      std::atomic<int> failed{0};
      std::vector<std::atomic<int>> failed_before_start(5);
      for (auto& v : failed_before_start) v = -1;
      auto res = errgroup::first_success(
          errgroup::context(), 5,
          [&](std::size_t i) {
            failed_before_start[i] = failed.load();
            if (i < 2) {
              ++failed;
              throw std::runtime_error("no");
            }
            return i * 100;
          },
          fallback, s);
      CHECK_FALSE(res.err);
      CHECK(res.index == 2);
      CHECK(res.value == std::optional<std::size_t>(200));
      CHECK(failed_before_start[0] == 0);
      CHECK(failed_before_start[1] == 1);
      CHECK(failed_before_start[2] == 2);
      CHECK(failed_before_start[3] == -1);  // never started
      CHECK(failed_before_start[4] == -1);
      REQUIRE(res.failures.size() == 2);
      CHECK(res.failures[0].first == 0);
      CHECK(res.failures[1].first == 1);
    }
  }

  TEST_CASE(
      "the next alternative starts when the delay passes without a success") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      // Alternative 0 hangs until it is cancelled; only the delay can start
      // alternative 1, which wins and so cancels 0.
      std::atomic<bool> first_started{false}, first_cancelled{false};
      auto res = errgroup::first_success(
          errgroup::context(), 2,
          [&](const errgroup::context& c, std::size_t i) {
            if (i == 0) {
              first_started = true;
              first_cancelled = c.wait_for(1h);
              throw std::runtime_error("cancelled");
            }
            return 7;
          },
          errgroup::hedge_options{1ms}, s);
      CHECK_FALSE(res.err);
      CHECK(res.index == 1);
      CHECK(res.value == std::optional<int>(7));
      // Alternative 0 is skipped if it had not started when 1 won.
      CHECK(first_cancelled.load() == first_started.load());
    }
  }

  TEST_CASE(
      "a parent cancelled midway makes first_success return the parent's "
      "cause") {
    const errgroup::error cause =
        errgroup::make_error<std::runtime_error>("shutting down");
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      SUBCASE("hedged: no further alternative starts") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        std::atomic<int> calls{0};
        auto res = errgroup::first_success(
            parent, 3,
            [&, cancel = cancel](std::size_t) -> int {
              ++calls;
              cancel(cause);
              throw std::runtime_error("gave up");
            },
            fallback, s);
        CHECK(res.err == cause);
        CHECK_FALSE(res.value);
        CHECK(calls.load() == 1);
        REQUIRE(res.failures.size() == 1);
        CHECK(res.failures[0].second.message() == "gave up");
      }
      SUBCASE("all at once: running alternatives see the cancel") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        const auto n = static_cast<std::size_t>(threads) + 1;
        auto res = errgroup::first_success(
            parent, n,
            [&, cancel = cancel](const errgroup::context& c,
                                 std::size_t i) -> errgroup::error {
              if (i == 0) {
                cancel(cause);
                return c.err();
              }
              c.wait_for(1h);
              return c.err();
            },
            {}, s);
        CHECK(res.err == cause);
        CHECK_FALSE(res.value);
      }
      SUBCASE("before the call: nothing runs") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        cancel(cause);
        int calls = 0;
        for (const errgroup::hedge_options& o :
             {errgroup::hedge_options{}, fallback}) {
          auto res = errgroup::first_success(
              parent, 3, [&](std::size_t) { ++calls; }, o, s);
          CHECK(res.err == cause);
          CHECK_FALSE(res.value);
          CHECK(res.failures.empty());
        }
        CHECK(calls == 0);
      }
    }
  }

  TEST_CASE("n = 0 is an std::invalid_argument error") {
    auto res = errgroup::first_success(errgroup::context(), 0,
                                       [](std::size_t i) { return i; });
    CHECK(res.err.is<std::invalid_argument>());
    CHECK_FALSE(res.value);
    CHECK(res.index == 0);
  }

  TEST_CASE(
      "first_success alternatives may report failure by returning an error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto res = errgroup::first_success(
          errgroup::context(), 4,
          [](std::size_t i) {
            return i < 2 ? std::make_error_code(std::errc::io_error)
                         : std::error_code();
          },
          fallback, s);
      CHECK_FALSE(res.err);
      CHECK(res.value);
      CHECK(res.index == 2);
      REQUIRE(res.failures.size() == 2);
      CHECK(res.failures[1].second.is<std::system_error>());
    }
  }

  TEST_CASE("hedging from a task of a one-thread scheduler does not deadlock") {
    errgroup::scheduler s{1};
    errgroup::group g{s};
    std::size_t winner = 0;
    g.go([&] {
      auto res = errgroup::first_success(
          errgroup::context(), 4,
          [](std::size_t i) {
            if (i < 3) throw std::runtime_error("no");
            return i;
          },
          fallback, s);
      winner = res.index;
      return res.err;
    });
    CHECK_FALSE(g.wait());
    CHECK(winner == 3);
  }

  TEST_CASE("the hedging driver does not spin while it waits") {
    errgroup::scheduler s{1};
    std::latch release{1};
    std::latch waiting{1};
    std::jthread releaser([&] {
      waiting.wait();
      std::this_thread::sleep_for(300ms);  // the window we measure
      release.count_down();
    });
    const auto cpu0 = process_cpu_time();
    const auto wall0 = std::chrono::steady_clock::now();
    // Alternative 0 blocks on the latch, then fails; the driver meanwhile
    // waits for a failure (the delay is an hour).
    auto res = errgroup::first_success(
        errgroup::context(), 2,
        [&](std::size_t i) {
          if (i == 0) {
            waiting.count_down();
            release.wait();
            throw std::runtime_error("slow and failed");
          }
          return i;
        },
        fallback, s);
    const std::chrono::duration<double> wall =
        std::chrono::steady_clock::now() - wall0;
    const auto cpu = process_cpu_time() - cpu0;
    CHECK_FALSE(res.err);
    CHECK(res.index == 1);
    CAPTURE(wall.count());
    CAPTURE(cpu.count());
    CHECK(cpu.count() < 0.5 * wall.count());
  }
}  // TEST_SUITE("first_success")
