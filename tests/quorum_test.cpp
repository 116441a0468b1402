// tests/quorum_test.cpp: errgroup::quorum and errgroup::quorum_error
// (<errgroup/quorum.hpp>).
#include "errgroup/quorum.hpp"

#include <doctest/doctest.h>

#include <algorithm>
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

std::vector<std::size_t> indices_of(
    const std::vector<std::pair<std::size_t, errgroup::error>>& failures) {
  std::vector<std::size_t> out;
  for (const auto& f : failures) out.push_back(f.first);
  return out;
}

}  // namespace

TEST_SUITE("quorum") {
  TEST_CASE("quorum returns exactly k successes once k alternatives succeed") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [successes, failures, err] = errgroup::quorum(
          errgroup::context(), 5, 3,
          [](const errgroup::context&, std::size_t i) { return 10 * i; }, s);
      CHECK_FALSE(err);
      CHECK(failures.empty());
      REQUIRE(successes.size() == 3);
      CHECK(std::is_sorted(successes.begin(), successes.end()));
      for (const auto& [i, v] : successes) {
        CHECK(i < 5);
        CHECK(v == 10 * i);
      }
    }
  }

  TEST_CASE("quorum cancels the rest once k succeed and waits for them") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      // Alternative 0 succeeds; the others (no more than the threads, so
      // alternative 0 always finds a thread) wait until they are cancelled.
      const auto n = static_cast<std::size_t>(threads) + 1;
      std::atomic<int> started{0}, returned{0};
      auto res = errgroup::quorum(
          errgroup::context(), n, 1,
          [&](const errgroup::context& c, std::size_t i) -> std::size_t {
            if (i == 0) return i;
            ++started;
            const bool cancelled = c.wait_for(1h);
            ++returned;
            if (cancelled) throw std::runtime_error("cancelled");
            return i;
          },
          s);
      CHECK_FALSE(res.err);
      REQUIRE(res.successes.size() == 1);
      CHECK(res.successes[0].first == 0);
      CHECK(res.failures.empty());  // failures after the outcome are dropped
      CHECK(started.load() == returned.load());  // nothing outlives the call
    }
  }

  TEST_CASE(
      "quorum fails fast once k is out of reach and reports every failure so "
      "far") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      // Alternatives 0 and 1 fail; the others wait until cancelled. With
      // k = n - 1, the second failure decides.
      const auto n = static_cast<std::size_t>(threads) + 2;
      const std::size_t k = n - 1;
      std::atomic<int> waiting_saw_quorum_error{0}, waited{0};
      auto [successes, failures, err] = errgroup::quorum(
          errgroup::context(), n, k,
          [&](const errgroup::context& c, std::size_t i) {
            if (i < 2) throw std::runtime_error("down " + std::to_string(i));
            ++waited;
            CHECK(c.wait_for(1h));
            if (c.cause().is<errgroup::quorum_error>())
              ++waiting_saw_quorum_error;
          },
          s);
      CHECK(successes.empty());
      CHECK(indices_of(failures) == std::vector<std::size_t>{0, 1});
      CHECK(failures[0].second.message() == "down 0");
      REQUIRE(err.is<errgroup::quorum_error>());
      const auto* q = err.as<errgroup::quorum_error>();
      CHECK(err.message() == "quorum: 0 of " + std::to_string(n) +
                                 " succeeded, " + std::to_string(k) +
                                 " needed");
      CHECK(q->succeeded() == 0);
      CHECK(q->needed() == k);
      CHECK(q->total() == n);
      CHECK(indices_of(q->failures()) == std::vector<std::size_t>{0, 1});
      CHECK(waiting_saw_quorum_error.load() == waited.load());
    }
  }

  TEST_CASE("k = 0 succeeds at once and runs nothing") {
    for (std::size_t n : {std::size_t{0}, std::size_t{3}}) {
      CAPTURE(n);
      int calls = 0;
      auto [successes, failures, err] = errgroup::quorum(
          errgroup::context(), n, 0, [&](std::size_t) { ++calls; });
      CHECK_FALSE(err);
      CHECK(successes.empty());
      CHECK(failures.empty());
      CHECK(calls == 0);
    }
  }

  TEST_CASE("k > n is an std::invalid_argument error and runs nothing") {
    for (std::size_t n : {std::size_t{0}, std::size_t{3}}) {
      CAPTURE(n);
      int calls = 0;
      auto res =
          errgroup::quorum(errgroup::context(), n, n + 1, [&](std::size_t i) {
            ++calls;
            return i;
          });
      CHECK(res.err.is<std::invalid_argument>());
      CHECK(res.err.message() == "quorum: k = " + std::to_string(n + 1) +
                                     " is more than n = " + std::to_string(n));
      CHECK(res.successes.empty());
      CHECK(res.failures.empty());
      CHECK(calls == 0);
    }
  }

  TEST_CASE("k = n needs every alternative") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      SUBCASE("all succeed") {
        auto res = errgroup::quorum(
            errgroup::context(), 4, 4, [](std::size_t) {}, s);
        CHECK_FALSE(res.err);
        CHECK(res.successes == std::vector<std::size_t>{0, 1, 2, 3});
      }
      SUBCASE("the first failure decides") {
        auto res = errgroup::quorum(
            errgroup::context(), 4, 4,
            [](std::size_t i) {
              if (i == 2) throw std::runtime_error("replica 2 down");
            },
            s);
        REQUIRE(res.err.is<errgroup::quorum_error>());
        CHECK(indices_of(res.failures) == std::vector<std::size_t>{2});
        const auto* q = res.err.as<errgroup::quorum_error>();
        CHECK(q->succeeded() == res.successes.size());
        CHECK(res.err.message() ==
              "quorum: " + std::to_string(res.successes.size()) +
                  " of 4 succeeded, 4 needed");
      }
    }
  }

  TEST_CASE("when every alternative fails quorum reports every failure") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto res = errgroup::quorum(
          errgroup::context(), 5, 1,
          [](const errgroup::context&, std::size_t i) -> int {
            throw std::runtime_error("no " + std::to_string(i));
          },
          s);
      CHECK(res.successes.empty());
      CHECK(indices_of(res.failures) ==
            std::vector<std::size_t>{0, 1, 2, 3, 4});
      CHECK(res.failures[3].second.message() == "no 3");
      CHECK(res.err.message() == "quorum: 0 of 5 succeeded, 1 needed");
    }
  }

  TEST_CASE("quorum alternatives may report failure by returning an error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      // Even alternatives fail; three odd ones are enough.
      auto res = errgroup::quorum(
          errgroup::context(), 6, 3,
          [](std::size_t i) {
            return i % 2 == 0 ? std::make_error_code(std::errc::io_error)
                              : std::error_code();
          },
          s);
      CHECK_FALSE(res.err);
      CHECK(res.successes == std::vector<std::size_t>{1, 3, 5});
      for (const auto& [i, e] : res.failures) {
        CHECK(i % 2 == 0);
        CHECK(e.is<std::system_error>());
      }
    }
  }

  TEST_CASE(
      "a parent cancelled midway makes quorum return the parent's cause") {
    const errgroup::error cause =
        errgroup::make_error<std::runtime_error>("shutting down");
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      SUBCASE("while alternatives run") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        const auto n = static_cast<std::size_t>(threads) + 1;
        auto res = errgroup::quorum(
            parent, n, n,
            [&, cancel = cancel](const errgroup::context& c,
                                 std::size_t i) -> errgroup::error {
              if (i == 0) {
                cancel(cause);
                return {};
              }
              c.wait_for(1h);
              return c.err();
            },
            s);
        CHECK(res.err == cause);
        CHECK(res.successes.size() + res.failures.size() <= n);
      }
      SUBCASE("before the call: nothing runs") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        cancel(cause);
        int calls = 0;
        auto res = errgroup::quorum(
            parent, 3, 1, [&](std::size_t) { ++calls; }, s);
        CHECK(res.err == cause);
        CHECK(res.successes.empty());
        CHECK(res.failures.empty());
        CHECK(calls == 0);
      }
    }
  }

  TEST_CASE("quorum from a task of a one-thread scheduler does not deadlock") {
    errgroup::scheduler s{1};
    errgroup::group g{s};
    std::size_t got = 0;
    g.go([&] {
      auto res = errgroup::quorum(
          errgroup::context(), 8, 6, [](std::size_t i) { return i; }, s);
      got = res.successes.size();
      return res.err;
    });
    CHECK_FALSE(g.wait());
    CHECK(got == 6);
  }

  TEST_CASE("quorum does not spin while it waits for an alternative") {
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
    auto res = errgroup::quorum(
        errgroup::context(), 2, 2,
        [&](std::size_t i) {
          if (i == 1) {
            waiting.count_down();
            release.wait();
          }
        },
        s);
    const std::chrono::duration<double> wall =
        std::chrono::steady_clock::now() - wall0;
    const auto cpu = process_cpu_time() - cpu0;
    CHECK_FALSE(res.err);
    CAPTURE(wall.count());
    CAPTURE(cpu.count());
    CHECK(cpu.count() < 0.5 * wall.count());
  }
}  // TEST_SUITE("quorum")
