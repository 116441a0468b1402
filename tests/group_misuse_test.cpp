// tests/group_misuse_test.cpp: a group's misuse throws at once
// (docs/contract.md §4, Misuse): set_limit while tasks are active, limit 0,
// wait() from a task of the group, go() on a context group after its wait();
// a plain group is reusable. misuse_test.cpp checks every misuse message of
// the contract, for every type, in one table.
//
// How these tests are written (stepping with latches and test::park, no
// sleeps, assertions on the test's thread): tests/README.md.

#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using test::err_doom;
using test::err_other;
using test::thread_counts;
using test::token;

TEST_SUITE("group.misuse") {
  TEST_CASE(
      "set_limit while tasks are active throws with the number of active "
      "tasks") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      {
        errgroup::group g{s};
        std::latch hold{1};
        for (int i = 0; i < 3; ++i) g.go([&] { hold.wait(); });
        CHECK_THROWS_WITH_AS(g.set_limit(2),
                             "errgroup: modify limit while 3 tasks in the "
                             "group are still active",
                             std::logic_error);
        // docs/contract.md: any set_limit() while tasks are active (Go allows n
        // < 0).
        CHECK_THROWS_WITH_AS(g.set_limit(-1),
                             "errgroup: modify limit while 3 tasks in the "
                             "group are still active",
                             std::logic_error);
        hold.count_down();
        CHECK_FALSE(g.wait());
        CHECK_NOTHROW(g.set_limit(2));  // between phases it is allowed
      }
      {
        errgroup::group g{s};
        g.set_limit(2);
        std::latch hold{1};
        CHECK(g.try_go([&] { hold.wait(); }));
        g.go([&] { hold.wait(); });
        CHECK_THROWS_WITH_AS(g.set_limit(5),
                             "errgroup: modify limit while 2 tasks in the "
                             "group are still active",
                             std::logic_error);
        CHECK_FALSE(g.try_go([] {}));  // the limit is still 2
        hold.count_down();
        CHECK_FALSE(g.wait());
        g.set_limit(5);
        CHECK(g.try_go([] {}));
        CHECK_FALSE(g.wait());
      }
    }
  }

  TEST_CASE("with limit 0 try_go returns false and go throws logic_error") {
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
        g->set_limit(0);
        std::atomic<int> invoked{0};
        std::atomic<int> live{0};
        CHECK_FALSE(g->try_go([&] { invoked.fetch_add(1); }));
        try {
          g->go([&invoked, t = token(live)] { invoked.fetch_add(1); });
          FAIL("go() with limit 0 returned");
        } catch (const std::logic_error& e) {
          CHECK(std::string_view(e.what()).starts_with("errgroup: "));
        }
        CHECK(live.load() == 0);  // the rejected callable was destroyed
        CHECK(g->counters().submitted == 0);
        CHECK_FALSE(g->wait());
        CHECK(invoked.load() == 0);
      }
    }
  }

  TEST_CASE("wait from a task of the same group throws logic_error") {
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
        std::atomic<int> caught{0};
        std::atomic<bool> prefixed{false};
        g->go([&] {
          try {
            (void)g->wait();
          } catch (const std::logic_error& e) {
            caught.fetch_add(1);
            prefixed = std::string_view(e.what()).starts_with("errgroup: ");
          }
        });
        g->go([&](const errgroup::context&) {
          try {
            (void)g->wait();
          } catch (const std::logic_error&) {
            caught.fetch_add(1);
          }
        });
        CHECK_FALSE(g->wait());  // the tasks caught it; nothing escaped
        CHECK(caught.load() == 2);
        CHECK(prefixed.load());
      }
    }
  }

  TEST_CASE(
      "go on a context group after its wait returned throws logic_error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.go([] {});
      CHECK_FALSE(g.wait());
      std::atomic<int> live{0};
      std::atomic<int> invoked{0};
      CHECK_THROWS_AS(
          g.go([&invoked, t = token(live)] { invoked.fetch_add(1); }),
          std::logic_error);
      CHECK(live.load() == 0);
      CHECK_FALSE(g.try_go([&] { invoked.fetch_add(1); }));
      CHECK(invoked.load() == 0);
      CHECK(g.counters().submitted == 1);
      CHECK_FALSE(g.wait());
    }
  }

  TEST_CASE(
      "a plain group may be reused after wait and keeps its first error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<int> ran{0};
      g.go([] { return err_doom(); });
      CHECK(g.wait() == err_doom());
      g.go([&] { ran.fetch_add(1); });
      CHECK(g.wait() == err_doom());
      g.go([&] {
        ran.fetch_add(1);
        return err_other();
      });
      CHECK(g.wait() == err_doom());  // sticky
      g.set_limit(1);
      g.go([&] { ran.fetch_add(1); });
      CHECK(g.wait() == err_doom());
      CHECK(ran.load() == 3);
      CHECK_FALSE(g.get_context().cancelled());
      const auto c = g.counters();
      CHECK(c.submitted == 4);
      CHECK(c.failed == 2);
      CHECK(c.skipped == 0);
    }
  }
}  // TEST_SUITE("group.misuse")
