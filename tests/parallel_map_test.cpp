// tests/parallel_map_test.cpp: errgroup::parallel_map and
// errgroup::parallel_for_each (<errgroup/parallel_map.hpp>).
#include "errgroup/parallel_map.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <numeric>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::peak_tracker;
using test::thread_counts;

namespace {

std::vector<int> iota_vector(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

struct no_default {
  explicit no_default(int v) : value(v) {}
  int value;
};

}  // namespace

TEST_SUITE("parallel_map") {
  TEST_CASE("parallel_map returns f of every element in input order") {
    const std::vector<int> in = iota_vector(1000);
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::size_t grain : {std::size_t{0}, std::size_t{1}, std::size_t{7},
                                std::size_t{5000}}) {
        CAPTURE(grain);
        errgroup::map_options o;
        o.grain = grain;
        std::atomic<int> calls{0};
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), in,
            [&](const errgroup::context& c, const int& x) {
              CHECK_FALSE(c.cancelled());
              ++calls;
              return std::to_string(x * x);
            },
            o, s);
        REQUIRE_FALSE(err);
        CHECK(calls.load() == 1000);
        REQUIRE(out.size() == in.size());
        bool ordered = true;
        for (std::size_t i = 0; i < in.size(); ++i)
          ordered = ordered && out[i] == std::to_string(in[i] * in[i]);
        CHECK(ordered);
      }
    }
  }

  TEST_CASE(
      "parallel_map of an empty range returns at once without calling f") {
    const std::vector<double> in;
    auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
    cancel();  // even a cancelled parent: nothing to do is no failure
    int calls = 0;
    auto [out, err] = errgroup::parallel_map(parent, in, [&](const double& x) {
      ++calls;
      return x;
    });
    CHECK_FALSE(err);
    CHECK(out.empty());
    CHECK(calls == 0);
    CHECK_FALSE(errgroup::parallel_for_each(parent, std::vector<int>{},
                                            [&](int&) { ++calls; }));
    CHECK(calls == 0);
  }

  TEST_CASE("parallel_map takes any random-access range and any result type") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      SUBCASE("a temporary std::deque, and f without a context") {
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), std::deque<int>(300, 2),
            [](const int& x) { return std::int64_t{x} * 3; }, {}, s);
        REQUIRE_FALSE(err);
        REQUIRE(out.size() == 300);
        CHECK(std::count(out.begin(), out.end(), 6) == 300);
      }
      SUBCASE("a range of proxies: std::vector<bool>") {
        std::vector<bool> in(257);
        for (std::size_t i = 0; i < in.size(); i += 2) in[i] = true;
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), in,
            [](const errgroup::context&, const bool& b) { return b ? 1 : 0; },
            {}, s);
        REQUIRE_FALSE(err);
        REQUIRE(out.size() == 257);
        CHECK(std::accumulate(out.begin(), out.end(), 0) == 129);
      }
      SUBCASE("a result without a default constructor") {
        const std::vector<int> in = iota_vector(500);
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), in,
            [](const int& x) { return no_default(-x); }, {}, s);
        REQUIRE_FALSE(err);
        REQUIRE(out.size() == 500);
        bool ok = true;
        for (std::size_t i = 0; i < out.size(); ++i)
          ok = ok && out[i].value == -in[i];
        CHECK(ok);
      }
      SUBCASE("bool results, which std::vector<bool> packs into shared bytes") {
        const std::vector<int> in = iota_vector(4099);
        errgroup::map_options o;
        o.grain = 1;
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), in, [](const int& x) { return x % 3 == 0; }, o,
            s);
        REQUIRE_FALSE(err);
        REQUIRE(out.size() == in.size());
        bool ok = true;
        for (std::size_t i = 0; i < out.size(); ++i)
          ok = ok && out[i] == (in[i] % 3 == 0);
        CHECK(ok);
      }
    }
  }

  TEST_CASE("the first error cancels the rest and leaves values empty") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      const std::vector<int> in = iota_vector(2000);

      SUBCASE("with limit 1, no element after the failing one is called") {
        errgroup::map_options o;
        o.limit = 1;
        o.grain = 1;
        std::atomic<int> calls{0};
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), in,
            [&](const int& x) {
              ++calls;
              if (x == 500) throw std::runtime_error("boom at 500");
              return x;
            },
            o, s);
        CHECK(out.empty());
        CHECK(err.message() == "boom at 500");
        CHECK(err.is<std::runtime_error>());
        CHECK(calls.load() == 501);
      }

      SUBCASE("a running chunk stops before its next element") {
        // Two chunks. The second one waits in its first element until the
        // map is cancelled by the first chunk's failure.
        errgroup::map_options o;
        o.grain = 1000;
        std::atomic<int> second_chunk_calls{0};
        auto [out, err] = errgroup::parallel_map(
            errgroup::context(), in,
            [&](const errgroup::context& c, const int& x) {
              if (x == 0) throw std::runtime_error("first chunk failed");
              if (x >= 1000) {
                ++second_chunk_calls;
                CHECK(c.wait_for(1h));  // returns once cancelled
              }
              return x;
            },
            o, s);
        CHECK(out.empty());
        CHECK(err.message() == "first chunk failed");
        CHECK(second_chunk_calls.load() <= 1);  // 0: the chunk was skipped
      }
    }
  }

  TEST_CASE(
      "cancelling the parent midway makes parallel_map return the parent's "
      "cause") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      const std::vector<int> in = iota_vector(100);
      const errgroup::error cause =
          errgroup::make_error<std::runtime_error>("shutting down");

      SUBCASE("chunks after the cancel never start") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        errgroup::map_options o;
        o.limit = 1;
        o.grain = 10;
        std::atomic<int> calls{0};
        auto [out, err] = errgroup::parallel_map(
            parent, in,
            [&, cancel = cancel](const int& x) {
              ++calls;
              if (x == 25) cancel(cause);
              return x;
            },
            o, s);
        CHECK(out.empty());
        CHECK(err == cause);
        CHECK(calls.load() == 26);  // the chunk stops after its element 25
      }

      SUBCASE("parallel_for_each reports it too") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        std::vector<int> data = iota_vector(100);
        errgroup::map_options o;
        o.grain = 50;
        const errgroup::error err = errgroup::parallel_for_each(
            parent, data,
            [&, cancel = cancel](const errgroup::context& c, int& x) {
              if (x == 0) cancel(cause);
              if (x == 50) CHECK(c.wait_for(1h));
              x = -1;
            },
            o, s);
        CHECK(err == cause);
      }

      SUBCASE("a parent cancelled before the call: nothing is called") {
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        cancel(cause);
        int calls = 0;
        auto [out, err] = errgroup::parallel_map(
            parent, in,
            [&](const int& x) {
              ++calls;
              return x;
            },
            {}, s);
        CHECK(out.empty());
        CHECK(err == cause);
        CHECK(calls == 0);
      }
    }
  }

  TEST_CASE("a limit bounds the chunks that run at once") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      peak_tracker probe;
      errgroup::map_options o;
      o.limit = 2;
      o.grain = 1;
      auto [out, err] = errgroup::parallel_map(
          errgroup::context(), iota_vector(300),
          [&](const int& x) {
            probe.enter();
            probe.leave();
            return x;
          },
          o, s);
      CHECK_FALSE(err);
      CHECK(out.size() == 300);
      CHECK(probe.peak.load() <= 2);
    }
  }

  TEST_CASE("a weighted budget bounds the chunks that run at once") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::int64_t size : {2, 3, 4}) {
        CAPTURE(size);
        errgroup::weighted budget{size};
        peak_tracker probe;
        errgroup::map_options o;
        o.grain = 1;
        o.budget = &budget;
        o.units_per_chunk = 2;
        std::vector<int> data = iota_vector(200);
        const errgroup::error err = errgroup::parallel_for_each(
            errgroup::context(), data,
            [&](int& x) {
              probe.enter();
              CHECK(budget.available() <= size - 2);
              x *= 2;
              probe.leave();
            },
            o, s);
        CHECK_FALSE(err);
        CHECK(probe.peak.load() <= size / 2);
        CHECK(budget.available() == size);
        CHECK(data[199] == 398);
      }
    }
  }

  TEST_CASE(
      "invalid options are an std::invalid_argument error and call nothing") {
    errgroup::weighted budget{4};
    int calls = 0;
    auto f = [&](const int& x) {
      ++calls;
      return x;
    };
    const std::vector<int> in = iota_vector(10);
    errgroup::map_options o;
    SUBCASE("limit 0") { o.limit = 0; }
    SUBCASE("more units per chunk than the budget holds") {
      o.budget = &budget;
      o.units_per_chunk = 5;
    }
    SUBCASE("negative units per chunk") {
      o.budget = &budget;
      o.units_per_chunk = -1;
    }
    auto [out, err] = errgroup::parallel_map(errgroup::context(), in, f, o);
    CHECK(err.is<std::invalid_argument>());
    CHECK(out.empty());
    CHECK(calls == 0);
    std::vector<int> data = in;
    CHECK(errgroup::parallel_for_each(
              errgroup::context(), data, [](int&) {}, o)
              .is<std::invalid_argument>());
    CHECK(budget.available() == 4);
  }

  TEST_CASE("parallel_for_each modifies every element in place") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      std::vector<int> data = iota_vector(10000);
      const errgroup::error err = errgroup::parallel_for_each(
          errgroup::context(), data,
          [](const errgroup::context&, int& x) { x = 2 * x + 1; }, {}, s);
      CHECK_FALSE(err);
      bool ok = true;
      for (std::size_t i = 0; i < data.size(); ++i)
        ok = ok && data[i] == 2 * static_cast<int>(i) + 1;
      CHECK(ok);
    }
  }

  TEST_CASE("parallel_for_each reports what f returns or throws") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      std::vector<int> data = iota_vector(1000);
      errgroup::map_options o;
      o.limit = 1;
      o.grain = 1;
      std::atomic<int> calls{0};
      const auto fail_at = [&calls](int x) {
        ++calls;
        return x == 10;
      };
      const auto ec = std::make_error_code(std::errc::io_error);
      errgroup::error err;
      SUBCASE("errgroup::error") {
        err = errgroup::parallel_for_each(
            errgroup::context(), data,
            [&](int& x) {
              return fail_at(x) ? errgroup::make_error<std::runtime_error>("e")
                                : errgroup::error();
            },
            o, s);
        CHECK(err.message() == "e");
      }
      SUBCASE("std::error_code") {
        err = errgroup::parallel_for_each(
            errgroup::context(), data,
            [&](int& x) { return fail_at(x) ? ec : std::error_code(); }, o, s);
        REQUIRE(err.is<std::system_error>());
        CHECK(err.as<std::system_error>()->code() == ec);
      }
      SUBCASE("std::exception_ptr") {
        err = errgroup::parallel_for_each(
            errgroup::context(), data,
            [&](int& x) {
              return fail_at(x) ? std::make_exception_ptr(std::logic_error("p"))
                                : std::exception_ptr();
            },
            o, s);
        CHECK(err.is<std::logic_error>());
      }
      SUBCASE("a throw") {
        err = errgroup::parallel_for_each(
            errgroup::context(), data,
            [&](int& x) {
              if (fail_at(x)) throw std::out_of_range("t");
            },
            o, s);
        CHECK(err.is<std::out_of_range>());
      }
      CHECK(calls.load() == 11);
    }
  }
}  // TEST_SUITE("parallel_map")
