// tests/group_basic_test.cpp: errgroup::group, Go's errgroup.Group
// (docs/contract.md §4): the zero group and with_context (Go's TestZeroGroup
// and TestWithContext), the task shapes, the first error, wait() and the
// destructor.
//
// The group's tests are split by behaviour, a file and a TEST_SUITE (a CTest
// label) each: group_basic_test.cpp ("group"), group_limit_test.cpp
// ("group.limit"), group_cancel_test.cpp ("group.cancel"),
// group_misuse_test.cpp ("group.misuse"), group_deadlock_test.cpp
// ("group.deadlock"), group_extras_test.cpp ("group.extras"),
// go_until_test.cpp ("go_until") and go_examples_test.cpp ("go_examples", Go's
// examples). Every upstream Go test (golang/sync errgroup_test.go) is ported
// one for one and carries its Go name.
//
// How these tests are written (stepping with latches and test::park, no
// sleeps, assertions on the test's thread): tests/README.md.

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using errgroup::error;
using test::check_accounting;
using test::err_doom;
using test::thread_counts;
using test::token;

TEST_SUITE("group") {
  TEST_CASE(
      "wait returns the first error so far after every go (TestZeroGroup)") {
    const error err1 =
        errgroup::make_error<std::runtime_error>("errgroup_test: 1");
    const error err2 =
        errgroup::make_error<std::runtime_error>("errgroup_test: 2");
    const std::vector<std::vector<error>> cases = {
        {}, {error()}, {err1}, {err1, error()}, {err1, error(), err2}};
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::size_t tc = 0; tc < cases.size(); ++tc) {
        CAPTURE(tc);
        errgroup::group g{s};
        error first;
        for (const error& e : cases[tc]) {
          g.go([e] { return e; });
          if (!first) first = e;
          CHECK(g.wait() == first);
        }
        CHECK(g.wait() == first);
      }
    }
    // The zero Group itself: the default constructor, on the default scheduler.
    errgroup::group zero;
    zero.go([err1] { return err1; });
    zero.go([] {});
    CHECK(zero.wait() == err1);
  }

  TEST_CASE(
      "with_context cancels its context when wait returns (TestWithContext)") {
    struct test_case {
      std::vector<error> errs;
      error want;
    };
    const std::vector<test_case> cases = {
        {{}, error()},
        {{error()}, error()},
        {{err_doom()}, err_doom()},
        {{err_doom(), error()}, err_doom()},
    };
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      for (std::size_t tc = 0; tc < cases.size(); ++tc) {
        CAPTURE(tc);
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        CHECK(ctx == g.get_context());
        for (const error& e : cases[tc].errs) g.go([e] { return e; });
        CHECK(g.wait() == cases[tc].want);
        CHECK(ctx.cancelled());  // Go: ctx.Done() is closed
        CHECK(ctx.stop_token().stop_requested());
        CHECK(ctx.err().is<errgroup::cancelled_error>());
      }
    }
  }

  TEST_CASE(
      "a plain group's context is the background and is never cancelled") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    CHECK(g.get_context() == errgroup::context());
    g.go([] { return err_doom(); });
    CHECK(g.wait() == err_doom());
    CHECK_FALSE(g.get_context().cancelled());
    CHECK_FALSE(g.get_context().err());
  }

  TEST_CASE(
      "a task may return void error error_code or exception_ptr or throw") {
    errgroup::scheduler s{2};
    std::atomic<int> ran{0};

    errgroup::group ok{s};
    ok.go([&] { ran.fetch_add(1); });
    ok.go([&] {
      ran.fetch_add(1);
      return error();
    });
    ok.go([&] {
      ran.fetch_add(1);
      return std::error_code();
    });
    ok.go([&] {
      ran.fetch_add(1);
      return std::exception_ptr();
    });
    ok.go([&](const errgroup::context&) -> std::error_code {
      ran.fetch_add(1);
      return {};
    });
    CHECK_FALSE(ok.wait());
    CHECK(ran.load() == 5);
    CHECK(ok.counters().succeeded == 5);
    CHECK(ok.counters().failed == 0);

    {
      errgroup::group g{s};
      g.go([] { return err_doom(); });
      CHECK(g.wait() == err_doom());
    }
    {
      errgroup::group g{s};
      g.go([] { return std::make_error_code(std::errc::permission_denied); });
      const error e = g.wait();
      const auto* se = e.as<std::system_error>();
      REQUIRE(se != nullptr);
      CHECK(se->code() == std::errc::permission_denied);
    }
    {
      const std::exception_ptr p =
          std::make_exception_ptr(std::length_error("group_test: too long"));
      errgroup::group g{s};
      g.go([p] { return p; });
      CHECK(g.wait().exception() == p);
    }
    {
      errgroup::group g{s};
      g.go([]() -> void { throw std::out_of_range("group_test: thrown"); });
      const error e = g.wait();
      CHECK(e.is<std::out_of_range>());
      CHECK(e.message() == "group_test: thrown");
      CHECK(g.counters().failed == 1);
    }
    {
      errgroup::group g{s};
      g.go([]() -> error { throw 7; });
      const error e = g.wait();
      REQUIRE(e);
      CHECK_THROWS_AS(e.throw_if(), int);
    }
    {
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.go([](const errgroup::context&) -> std::exception_ptr {
        throw std::invalid_argument("group_test: with a context");
      });
      const error e = g.wait();
      CHECK(e.is<std::invalid_argument>());
      CHECK(ctx.cause() == e);
    }
  }

  TEST_CASE("a task taking a context receives the group's context") {
    constexpr int tasks = 8;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      {
        auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
        std::atomic<int> same{0};
        for (int i = 0; i < tasks; ++i)
          g.go([&same, want = ctx](const errgroup::context& c) {
            if (c == want && !c.cancelled()) same.fetch_add(1);
          });
        CHECK_FALSE(g.wait());
        CHECK(same.load() == tasks);
      }
      {
        errgroup::group g{s};
        std::atomic<int> background{0};
        for (int i = 0; i < tasks; ++i)
          g.go([&](const errgroup::context& c) {
            if (c == errgroup::context()) background.fetch_add(1);
          });
        CHECK_FALSE(g.wait());
        CHECK(background.load() == tasks);
      }
    }
  }

  TEST_CASE("mutable lambdas and move-only captures work") {
    constexpr int tasks = 16;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<int> live{0};
      std::atomic<int> sum{0};
      for (int i = 1; i <= tasks; ++i)
        g.go([&sum, p = std::make_unique<int>(i), t = token(live)]() mutable {
          *p *= 2;  // mutates its own capture
          sum.fetch_add(*std::exchange(p, nullptr));
        });
      auto by_context = [&sum, p = std::make_unique<int>(1000)](
                            const errgroup::context&) mutable -> error {
        sum.fetch_add(*p);
        p.reset();
        return {};
      };
      g.go(std::move(by_context));
      CHECK(g.try_go(
          [&sum, p = std::make_unique<int>(10000), t = token(live)]() mutable {
            std::unique_ptr<int> mine = std::move(p);
            sum.fetch_add(*mine);
          }));
      // A stateful mutable task is invoked exactly once.
      g.go([calls = 0]() mutable -> error {
        return ++calls == 1 ? error() : err_doom();
      });
      CHECK_FALSE(g.wait());
      CHECK(sum.load() == tasks * (tasks + 1) + 1000 + 10000);
      CHECK(live.load() == 0);  // every callable was destroyed
    }
  }

  TEST_CASE("wait with no tasks returns no error at once") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group plain{s};
      CHECK_FALSE(plain.wait());
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      CHECK_FALSE(g.wait());
      CHECK(ctx.cancelled());
      CHECK(ctx.cause().is<errgroup::cancelled_error>());
    }
  }

  TEST_CASE("wait may be called again and returns the same error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group plain{s};
      plain.go([] {});
      plain.go([] { return err_doom(); });
      for (int i = 0; i < 3; ++i) CHECK(plain.wait() == err_doom());

      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.go([] { return err_doom(); });
      for (int i = 0; i < 3; ++i) CHECK(g.wait() == err_doom());
      CHECK(ctx.cause() == err_doom());

      auto [ok, ok_ctx] = errgroup::with_context(errgroup::context(), s);
      ok.go([] {});
      for (int i = 0; i < 3; ++i) CHECK_FALSE(ok.wait());
    }
  }

  TEST_CASE(
      "wait called from several threads at once gives each the same error") {
    constexpr int waiters = 4;
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        std::latch hold{1};
        g->go([&] { hold.wait(); });
        g->go([&] {
          hold.wait();
          return err_doom();
        });
        std::latch ready{waiters};
        std::vector<error> got(waiters);
        {
          std::vector<std::jthread> ts;
          for (std::size_t i = 0; i < waiters; ++i)
            ts.emplace_back([&, i] {
              ready.count_down();
              got[i] = g->wait();
            });
          ready.wait();
          hold.count_down();
        }
        for (const error& e : got) CHECK(e == err_doom());
        CHECK(g->wait() == err_doom());
      }
    }
  }

  TEST_CASE("tasks may call go on their own group while wait runs") {
    constexpr int depth = 9;  // a binary tree of 2^10 - 1 tasks
    constexpr int nodes = (1 << (depth + 1)) - 1;
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::optional<errgroup::group> g;
        if (with_context)
          g.emplace(errgroup::context(), s);
        else
          g.emplace(s);
        std::atomic<int> ran{0};
        std::function<void(int)> grow = [&](int d) {
          g->go([&grow, &ran, d] {
            ran.fetch_add(1);
            if (d > 0) {
              grow(d - 1);
              grow(d - 1);
            }
          });
        };
        grow(depth);  // the rest is added while wait() runs
        CHECK_FALSE(g->wait());
        CHECK(ran.load() == nodes);
        check_accounting(g->counters(), nodes);
        CHECK(g->counters().submitted == nodes);
      }
    }
  }

  TEST_CASE("everything the tasks wrote is visible after wait") {
    constexpr std::size_t tasks = 4096;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::vector<std::uint64_t> out(tasks);  // plain, non-atomic writes
      std::vector<std::string> words(tasks);
      for (std::size_t i = 0; i < tasks; ++i)
        g.go([&out, &words, i] {
          out[i] = i * i + 1;
          words[i] = std::to_string(i);
        });
      CHECK_FALSE(g.wait());
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < tasks; ++i)
        if (out[i] != i * i + 1 || words[i] != std::to_string(i)) ++wrong;
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("a group destroyed without wait waits for its tasks") {
    static_assert(std::is_nothrow_destructible_v<errgroup::group>);
    for (int threads : thread_counts) {
      for (bool with_context : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_context);
        errgroup::scheduler s{threads};
        std::latch hold{1};
        int written = 0;  // not atomic: the destructor must order it for us
        std::atomic<int> live{0};
        {
          std::jthread releaser;  // joined after the group is destroyed
          std::optional<errgroup::group> g;
          if (with_context)
            g.emplace(errgroup::context(), s);
          else
            g.emplace(s);
          g->go([&, t = token(live)] {
            hold.wait();
            written = 42;
          });
          releaser = std::jthread([&] { hold.count_down(); });
          g.reset();  // ~group(), without wait()
          CHECK(written == 42);
          CHECK(live.load() == 0);
        }
      }
    }
  }

  TEST_CASE(
      "the destructor never throws also when a task failed or was skipped") {
    constexpr int queued = 64;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      std::atomic<int> ran{0};
      CHECK_NOTHROW([&] {
        errgroup::group g{s};
        g.go([&] {
          ran.fetch_add(1);
          throw std::runtime_error("group_test: thrown, never waited for");
        });
        g.go([&] {
          ran.fetch_add(1);
          return err_doom();
        });
      }());
      CHECK(ran.load() == 2);

      // A context group whose only running task queues more work on itself
      // and then fails: the queued tasks are skipped by the destructor's wait.
      std::atomic<int> live{0};
      std::atomic<int> invoked{0};
      CHECK_NOTHROW([&] {
        auto made = errgroup::with_context(errgroup::context(), s);
        auto& g = made.g;
        g.set_limit(1);
        g.go([&] {
          invoked.fetch_add(1);
          for (int i = 0; i < queued; ++i)
            g.go([&, t = token(live)] { invoked.fetch_add(1); });
          return err_doom();
        });
      }());
      CHECK(invoked.load() == 1);
      CHECK(live.load() == 0);
    }
  }
}  // TEST_SUITE("group")
