// tests/results_test.cpp: tasks that return a value (<errgroup/results.hpp>,
// docs/contract.md §8): go_result() handles and collector, their values and
// errors, skipped tasks, move-only and throwing values, and lifetime when a
// handle or a collector goes away before its tasks end.
//
// How these tests are written (latches, no sleeps, assertions on the test's
// thread): tests/README.md.

#include "errgroup/results.hpp"

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"
#include "support.hpp"

using errgroup::result_state;
using test::err_doom;
using test::thread_counts;
using test::token;

namespace {

struct boom : std::runtime_error {
  explicit boom(int i) : std::runtime_error("boom " + std::to_string(i)) {}
};

// move_bomb's move constructor throws when the moved value is `armed`.
struct move_bomb {
  int v;
  explicit move_bomb(int x) : v(x) {}
  move_bomb(move_bomb&& o) : v(o.v) {
    if (v == armed) throw boom(v);
  }
  move_bomb(const move_bomb&) = delete;
  static constexpr int armed = 2;
};

// big is larger than a chunk's 16 KiB budget allows 8 of: chunks of 2.
struct big {
  std::size_t id = 0;
  std::array<char, 5000> pad{};
};

// wide is over-aligned: its slots come from aligned allocations.
struct alignas(128) wide {
  int v = 0;
};

// check_dropped_early(start) checks, over the thread counts, that tasks
// outlive their owner safely: start(g, body, started) starts tasks running
// body through an owner (a handle, a collector) and destroys the owner once
// started says one runs. The tasks then write into slots nobody reads (ASan
// checks those are alive), and their values die with the slots.
template <class Start>
void check_dropped_early(Start start) {
  for (int threads : thread_counts) {
    CAPTURE(threads);
    errgroup::scheduler s{threads};
    std::atomic<int> live{0};
    std::atomic<bool> first{true};
    std::latch started(1), release(1);
    auto body = [&] {
      if (first.exchange(false)) started.count_down();
      release.wait();
      return token(live);  // written after the owner is gone
    };
    errgroup::group g(s);
    start(g, body, started);
    release.count_down();
    REQUIRE_FALSE(g.wait());
    CHECK(live.load() == 0);
  }
}

}  // namespace

TEST_SUITE("results") {
  TEST_CASE("handles return their tasks' values after wait()") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g(s);
      std::vector<errgroup::result<std::string>> rs;
      for (int i = 0; i < 200; ++i) {
        if (i % 2 == 0)
          rs.push_back(
              errgroup::go_result(g, [i] { return std::to_string(i); }));
        else
          rs.push_back(errgroup::go_result(g, [i](const errgroup::context& c) {
            return c.cancelled() ? std::string("cancelled") : std::to_string(i);
          }));
      }
      REQUIRE_FALSE(g.wait());
      bool all = true;
      for (int i = 0; i < 200; ++i) {
        const auto& r = rs[static_cast<std::size_t>(i)];
        all = all && r.valid() && r.state() == result_state::succeeded &&
              r.get() == std::to_string(i) && !r.err();
      }
      CHECK(all);
    }
  }

  TEST_CASE("a failed task's handle rethrows its exception") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g(s);
      auto ok = errgroup::go_result(g, [] { return 1; });
      auto bad = errgroup::go_result(g, []() -> int { throw boom(7); });
      const errgroup::error err = g.wait();
      CHECK(ok.get() == 1);
      CHECK(bad.state() == result_state::failed);
      CHECK_THROWS_WITH_AS(bad.get(), "boom 7", boom);
      CHECK(bad.err().is<boom>());
      CHECK(bad.err() == err);  // the same exception object as the group's
    }
  }

  TEST_CASE("a move-only value comes out of a handle") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g(s);
      auto r = errgroup::go_result(g, [] { return std::make_unique<int>(42); });
      REQUIRE_FALSE(g.wait());
      std::unique_ptr<int> p = std::move(r.get());
      REQUIRE(p != nullptr);
      CHECK(*p == 42);
      CHECK(r.get() == nullptr);  // moved out; the handle still answers
    }
  }

  TEST_CASE("a throwing move of the returned value fails the task") {
    errgroup::group g;
    auto r = errgroup::go_result(g, [] {
      std::optional<move_bomb> v;
      v.emplace(move_bomb::armed);
      return std::move(*v);  // the move into the slot throws
    });
    auto built =
        errgroup::go_result(g, [] { return move_bomb(move_bomb::armed); });
    const errgroup::error err = g.wait();
    CHECK(r.state() == result_state::failed);
    CHECK(r.err() == err);
    CHECK_THROWS_AS(r.get(), boom);
    // A returned prvalue is built in place: no move, no throw.
    CHECK(built.state() == result_state::succeeded);
    CHECK(built.get().v == move_bomb::armed);
  }

  TEST_CASE("tasks skipped after the first error hold it as their cause") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.set_limit(1);  // no task starts after a failure (contract §4)
      auto first = errgroup::go_result(g, []() -> int { throw boom(1); });
      std::atomic<int> invoked{0};
      std::vector<errgroup::result<int>> rest;
      for (int i = 0; i < 20; ++i)
        rest.push_back(errgroup::go_result(g, [&invoked, i] {
          ++invoked;
          return i;
        }));
      const errgroup::error err = g.wait();
      CHECK(err == first.err());
      CHECK(invoked.load() == 0);
      bool all_skipped = true;
      for (auto& r : rest)
        all_skipped =
            all_skipped && r.state() == result_state::skipped && r.err() == err;
      CHECK(all_skipped);
      CHECK_THROWS_WITH_AS(rest.back().get(), "boom 1", boom);
    }
  }

  TEST_CASE("a handle started on a cancelled group is skipped with the cause") {
    auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
    cancel(err_doom());
    errgroup::group g(parent);
    bool invoked = false;
    auto r = errgroup::go_result(g, [&invoked] {
      invoked = true;
      return 1;
    });
    CHECK(r.state() == result_state::skipped);
    CHECK(r.err() == err_doom());
    CHECK(g.wait() == err_doom());
    CHECK_FALSE(invoked);
  }

  TEST_CASE("reading a handle before its task ended throws std::logic_error") {
    errgroup::scheduler s{2};
    errgroup::group g(s);
    std::latch release(1);
    auto r = errgroup::go_result(g, [&release] {
      release.wait();
      return 7;
    });
    CHECK(r.state() == result_state::pending);
    CHECK_THROWS_AS(r.get(), std::logic_error);
    CHECK_THROWS_AS(r.err(), std::logic_error);
    release.count_down();
    REQUIRE_FALSE(g.wait());
    CHECK(r.get() == 7);

    errgroup::result<int> none;
    CHECK_FALSE(none.valid());
    CHECK(none.state() == result_state::pending);
    CHECK_THROWS_AS(none.get(), std::logic_error);
    CHECK_THROWS_AS(none.err(), std::logic_error);
  }

  TEST_CASE(
      "a handle dropped while its task runs leaves the task a live slot") {
    check_dropped_early(
        [](errgroup::group& g, auto& body, std::latch& started) {
          auto r = errgroup::go_result(g, body);
          started.wait();
        });

    std::atomic<int> live{0};
    errgroup::group g;
    auto kept = errgroup::go_result(g, [&] { return token(live); });
    REQUIRE_FALSE(g.wait());
    CHECK(live.load() == 1);  // the handle keeps the value alive
    kept = errgroup::result<token>();
    CHECK(live.load() == 0);
  }

  TEST_CASE(
      "try_go_result returns a handle without a task when no slot is free") {
    errgroup::scheduler s{2};
    errgroup::group g(s);
    g.set_limit(1);
    std::latch release(1);
    auto holder = errgroup::go_result(g, [&release] {
      release.wait();
      return 1;
    });
    auto none = errgroup::try_go_result(g, [] { return 2; });
    CHECK_FALSE(none.valid());
    release.count_down();
    REQUIRE_FALSE(g.wait());
    auto later = errgroup::try_go_result(g, [] { return 3; });
    REQUIRE(later.valid());
    REQUIRE_FALSE(g.wait());
    CHECK(holder.get() + later.get() == 4);
  }

  TEST_CASE("go_result with a budget holds the units and gives them back") {
    errgroup::weighted sem(3);
    errgroup::group g;
    std::atomic<std::int64_t> seen{-1};
    auto r = errgroup::go_result(g, sem, 2, [&] {
      seen = sem.available();
      return 5;
    });
    auto bad = errgroup::go_result(g, sem, 3, []() -> int { throw boom(3); });
    const errgroup::error err = g.wait();
    CHECK(err == bad.err());
    CHECK(r.get() == 5);
    CHECK(seen.load() <= 1);
    CHECK(sem.available() == 3);
    CHECK_THROWS_AS(errgroup::go_result(g, sem, 4, [] { return 0; }),
                    std::invalid_argument);
  }
}

TEST_SUITE("results.collector") {
  TEST_CASE("a collector returns every value in submission order") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (int limit : {-1, 1, 3}) {
        CAPTURE(limit);
        errgroup::group g(s);
        g.set_limit(limit);
        errgroup::collector<std::size_t> c(g);
        // Unlimited: past the growing chunks (2,040 entries); with a limit,
        // through six chunks (each go() may wait: slower).
        const std::size_t n = limit < 0 ? 5000 : 300;
        for (std::size_t i = 0; i < n; ++i) c.go([i] { return i * 3; });
        CHECK(c.size() == n);
        REQUIRE_FALSE(g.wait());
        const std::vector<std::size_t> v = c.values();
        REQUIRE(v.size() == n);
        bool ordered = true;
        for (std::size_t i = 0; i < n; ++i) ordered = ordered && v[i] == i * 3;
        CHECK(ordered);
      }
    }
  }

  TEST_CASE("a collector of large values keeps the order across small chunks") {
    errgroup::scheduler s{2};
    errgroup::group g(s);
    errgroup::collector<big> c(g);
    for (std::size_t i = 0; i < 37; ++i)
      c.go([i] {
        big b;
        b.id = i;
        return b;
      });
    REQUIRE_FALSE(g.wait());
    bool ordered = true;
    for (std::size_t i = 0; i < 37; ++i) ordered = ordered && c.get(i).id == i;
    CHECK(ordered);
    CHECK(c.values().size() == 37);
  }

  TEST_CASE("move-only values come out of a collector") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g(s);
      errgroup::collector<std::unique_ptr<int>> c(g);
      for (int i = 0; i < 100; ++i)
        c.go([i] { return std::make_unique<int>(i); });
      REQUIRE_FALSE(g.wait());
      std::vector<std::unique_ptr<int>> v = c.values();
      REQUIRE(v.size() == 100);
      bool ordered = true;
      for (int i = 0; i < 100; ++i)
        ordered = ordered && v[static_cast<std::size_t>(i)] != nullptr &&
                  *v[static_cast<std::size_t>(i)] == i;
      CHECK(ordered);
    }
  }

  TEST_CASE("values() throws the error of the first failed entry in order") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g(s);
      errgroup::collector<int> c(g);
      for (int i = 0; i < 10; ++i)
        c.go([i] {
          if (i == 3 || i == 7) throw boom(i);
          return i;
        });
      const errgroup::error err = g.wait();
      CHECK((err == c.err(3) || err == c.err(7)));  // the first recorded
      CHECK(c.state(3) == result_state::failed);
      CHECK(c.state(4) == result_state::succeeded);
      CHECK(c.get(4) == 4);
      CHECK_FALSE(c.err(4));
      CHECK_THROWS_WITH_AS(c.get(7), "boom 7", boom);
      CHECK_THROWS_WITH_AS(c.values(), "boom 3", boom);
      CHECK(c.get(0) == 0);  // a failed values() takes nothing
      CHECK_THROWS_AS(c.state(10), std::out_of_range);
    }
  }

  TEST_CASE("skipped entries make values() throw the cause") {
    auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
    cancel(err_doom());
    errgroup::group g(parent);
    errgroup::collector<int> c(g);
    c.go([] { return 1; });
    CHECK(c.size() == 1);
    CHECK(c.state(0) == result_state::skipped);
    CHECK(c.err(0) == err_doom());
    CHECK(g.wait() == err_doom());
    CHECK_THROWS_WITH_AS(c.values(), "group_test: doomed", std::runtime_error);
  }

  TEST_CASE("values() before every task ended throws std::logic_error") {
    errgroup::scheduler s{2};
    errgroup::group g(s);
    errgroup::collector<int> c(g);
    std::latch release(1);
    c.go([] { return 1; });
    c.go([&release] {
      release.wait();
      return 2;
    });
    CHECK_THROWS_AS(c.values(), std::logic_error);
    release.count_down();
    REQUIRE_FALSE(g.wait());
    CHECK(c.values() == std::vector<int>{1, 2});
    CHECK_THROWS_AS(c.values(), std::logic_error);  // taken once
    CHECK_THROWS_AS(c.go([] { return 3; }), std::logic_error);
  }

  TEST_CASE("a throwing move in values() propagates and the values are taken") {
    errgroup::group g;
    errgroup::collector<move_bomb> c(g);
    for (int i = 0; i < 4; ++i) c.go([i] { return move_bomb(i); });
    REQUIRE_FALSE(g.wait());
    CHECK_THROWS_AS(c.values(), boom);
    CHECK_THROWS_AS(c.values(), std::logic_error);
  }

  TEST_CASE(
      "a collector destroyed while its tasks run leaves them live slots") {
    check_dropped_early(
        [](errgroup::group& g, auto& body, std::latch& started) {
          errgroup::collector<token> c(g);
          for (int i = 0; i < 20; ++i) c.go(body);
          started.wait();
        });
  }

  TEST_CASE(
      "a go() that throws adds no entry and the next go() takes its place") {
    errgroup::group g;
    errgroup::collector<int> c(g);
    g.set_limit(0);
    CHECK_THROWS_AS(c.go([] { return 1; }), std::logic_error);
    CHECK(c.size() == 0);
    g.set_limit(-1);
    struct bad_copy {
      bad_copy() = default;
      bad_copy(const bad_copy&) { throw boom(0); }
      int operator()() const { return 1; }
    };
    const bad_copy f;
    CHECK_THROWS_AS(c.go(f), boom);
    CHECK(c.size() == 0);
    c.go([] { return 2; });
    REQUIRE_FALSE(g.wait());
    CHECK(c.size() == 1);
    CHECK(c.values() == std::vector<int>{2});
  }

  TEST_CASE("try_go adds an entry only when the task started") {
    errgroup::scheduler s{2};
    errgroup::group g(s);
    g.set_limit(1);
    errgroup::collector<int> c(g);
    std::latch release(1);
    c.go([&release] {
      release.wait();
      return 1;
    });
    CHECK_FALSE(c.try_go([] { return 2; }));
    CHECK(c.size() == 1);
    release.count_down();
    REQUIRE_FALSE(g.wait());
    CHECK(c.try_go([] { return 3; }));
    REQUIRE_FALSE(g.wait());
    CHECK(c.values() == std::vector<int>{1, 3});
  }

  TEST_CASE("go_until adds an entry only when the task was admitted") {
    errgroup::scheduler s{2};
    errgroup::group g(s);
    g.set_limit(1);
    errgroup::collector<int> c(g);
    std::latch release(1);
    c.go([&release] {
      release.wait();
      return 1;
    });
    const errgroup::error late = c.go_until(
        std::chrono::steady_clock::now() + std::chrono::milliseconds(1),
        [] { return 2; });
    CHECK(late.is<errgroup::deadline_exceeded_error>());
    CHECK(c.size() == 1);
    release.count_down();
    CHECK_FALSE(c.go_until(std::chrono::steady_clock::time_point::max(),
                           [] { return 3; }));
    REQUIRE_FALSE(g.wait());
    CHECK(c.values() == std::vector<int>{1, 3});
  }

  TEST_CASE("a collector's task error is the group's error") {
    errgroup::weighted sem(1);
    auto [g, ctx] = errgroup::with_context(errgroup::context());
    errgroup::collector<int> c(g);
    c.go(sem, 1, []() -> int { throw boom(9); });
    const errgroup::error err = g.wait();
    CHECK(err == c.err(0));
    CHECK(ctx.cause() == err);
    CHECK(sem.available() == 1);
  }

  TEST_CASE("over-aligned values keep their alignment in handles and chunks") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g(s);
      errgroup::collector<wide> c(g);
      auto r = errgroup::go_result(g, [] { return wide{-1}; });
      for (int i = 0; i < 100; ++i) c.go([i] { return wide{i}; });
      REQUIRE_FALSE(g.wait());
      CHECK(reinterpret_cast<std::uintptr_t>(&r.get()) % alignof(wide) == 0);
      CHECK(r.get().v == -1);
      for (std::size_t i = 0; i < c.size(); ++i)
        CHECK(reinterpret_cast<std::uintptr_t>(&c.get(i)) % alignof(wide) == 0);
      const std::vector<wide> v = c.values();
      REQUIRE(v.size() == 100);
      for (int i = 0; i < 100; ++i)
        CHECK(v[static_cast<std::size_t>(i)].v == i);
    }
  }
}
