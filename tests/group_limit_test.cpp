// tests/group_limit_test.cpp: a group's limit (docs/contract.md §4, Limit):
// try_go and go at the limit (Go's TestTryGo and TestGoLimit), the peak never
// above it, and waiting go() calls served first come, first served from
// every kind of producer.
//
// How these tests are written (stepping with latches and test::park, no
// sleeps, assertions on the test's thread): tests/README.md.

#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using errgroup::error;
using test::check_accounting;
using test::park;
using test::peak_tracker;
using test::spin_until;
using test::thread_counts;
using test::token;

namespace {

// order_log records the order in which tasks start.
class order_log {
 public:
  auto task(int i) {
    return [this, i] {
      std::lock_guard lock(mu_);
      seen_.push_back(i);
    };
  }
  std::vector<int> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::vector<int> seen_;
};

// Who calls go() while the group is at its limit.
enum class producer {
  external_thread,  // a std::jthread: blocks (helps, on the default scheduler)
  worker_thread,    // a task of another group: suspended (or queued)
  own_task,         // a task of the same group: queued, go() returns
};

const char* name(producer p) {
  switch (p) {
    case producer::external_thread:
      return "external thread";
    case producer::worker_thread:
      return "worker thread";
    case producer::own_task:
      return "own task";
  }
  return "?";
}

// check_fifo queues `waiters` go() calls, in a known order, behind a task
// holding the only slot, then releases it: the tasks must start in that order,
// and a try_go() spinning meanwhile must not start before the last of them.
void check_fifo(producer from, int threads, int waiters) {
  CAPTURE(threads);
  CAPTURE(std::string(name(from)));
  CAPTURE(waiters);
  errgroup::scheduler s{threads};
  errgroup::group g{s};
  errgroup::group producers{s};
  g.set_limit(1);
  order_log log;
  park holder;  // the slot holder parks: its thread stays free for producers
  std::vector<std::jthread> external;
  if (from == producer::own_task) {
    std::latch queued{1};
    g.go([&] {
      for (int i = 0; i < waiters; ++i) g.go(log.task(i));  // queued
      queued.count_down();
      holder.wait();
    });
    queued.wait();
  } else {
    g.go([&] { holder.wait(); });
    spin_until([&] { return g.counters().running == 1; });
    for (int i = 0; i < waiters; ++i) {
      auto go_i = [&g, t = log.task(i)] { g.go(t); };
      if (from == producer::external_thread)
        external.emplace_back(go_i);
      else
        producers.go(go_i);
      spin_until([&] { return g.counters().waiting == i + 1; });
    }
  }
  CHECK(g.counters().waiting == waiters);
  CHECK_FALSE(g.try_go(log.task(-2)));
  holder.release();
  // try_go succeeds only once every waiter has been served.
  while (!g.try_go(log.task(-1))) std::this_thread::yield();
  external.clear();
  CHECK_FALSE(producers.wait());
  CHECK_FALSE(g.wait());
  std::vector<int> want;
  for (int i = 0; i < waiters; ++i) want.push_back(i);
  want.push_back(-1);
  CHECK(log.seen() == want);
}

}  // namespace

TEST_SUITE("group.limit") {
  TEST_CASE("try_go starts a task only while a slot is free (TestTryGo)") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      std::atomic<int> ran{0};
      auto blocked_on = [&ran](std::latch& l) {
        return [&ran, &l] {
          l.wait();
          ran.fetch_add(1);
        };
      };

      constexpr int n = 42;
      g.set_limit(n);
      std::latch hold1{1};
      int started = 0;
      for (int i = 0; i < n; ++i)
        if (g.try_go(blocked_on(hold1))) ++started;
      CHECK(started == n);
      CHECK_FALSE(g.try_go(blocked_on(hold1)));
      hold1.count_down();
      CHECK_FALSE(g.wait());

      std::latch hold2{1};
      CHECK(g.try_go(blocked_on(hold2)));
      hold2.count_down();
      CHECK_FALSE(g.wait());

      // Switch limit.
      g.set_limit(1);
      std::latch hold3{1};
      CHECK(g.try_go(blocked_on(hold3)));
      CHECK_FALSE(g.try_go(blocked_on(hold3)));
      hold3.count_down();
      CHECK_FALSE(g.wait());

      // Block all calls.
      g.set_limit(0);
      std::latch never{1};
      int zero_started = 0;
      for (int i = 0; i < 1 << 10; ++i)
        if (g.try_go(blocked_on(never))) ++zero_started;
      CHECK(zero_started == 0);
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == n + 2);
    }
  }

  TEST_CASE("go never runs more tasks than the limit (TestGoLimit)") {
    constexpr int limit = 10;
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(limit);
      std::atomic<int> active{0};
      for (int i = 0; i <= 1 << 10; ++i)
        g.go([&]() -> error {
          const int n = active.fetch_add(1) + 1;
          if (n > limit)
            return errgroup::make_error<std::runtime_error>(
                "saw " + std::to_string(n) + " active tasks; want <= 10");
          std::this_thread::yield();  // Go sleeps 1us here
          active.fetch_sub(1);
          return {};
        });
      const error e = g.wait();
      CHECK_MESSAGE(!e, e.message());
    }
  }

  TEST_CASE("peak concurrency never exceeds the limit") {
    constexpr int tasks = 200;
    for (int threads : thread_counts) {
      errgroup::scheduler s{threads};
      for (int limit : {1, 2, 3, 8}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::group g{s};
        g.set_limit(limit);
        peak_tracker m;
        for (int i = 0; i < tasks; ++i)
          g.go([&m] {
            m.enter();
            std::this_thread::yield();
            m.leave();
          });
        CHECK_FALSE(g.wait());
        CHECK(m.peak.load() >= 1);
        CHECK(m.peak.load() <= limit);
        const auto c = g.counters();
        CHECK(c.peak >= 1);
        CHECK(c.peak <= limit);
        CHECK(c.submitted == tasks);
        CHECK(c.succeeded == tasks);
      }
    }
  }

  TEST_CASE("a negative limit removes the limit") {
    constexpr int tasks = 12;
    errgroup::scheduler s{2};
    errgroup::group g{s};
    g.set_limit(1);
    g.set_limit(-1);
    std::latch hold{1};
    int started = 0;
    for (int i = 0; i < tasks; ++i)
      if (g.try_go([&] { hold.wait(); })) ++started;
    CHECK(started == tasks);
    hold.count_down();
    CHECK_FALSE(g.wait());
  }

  TEST_CASE(
      "waiting go calls from external threads are served first come first "
      "served") {
    // More waiters than the arena has slots (threads + 1): see the
    // group.deadlock case about external producers.
    for (int threads : thread_counts)
      check_fifo(producer::external_thread, threads, 5);
  }

  TEST_CASE(
      "waiting go calls from worker threads are served first come first "
      "served") {
    for (int threads : thread_counts)
      check_fifo(producer::worker_thread, threads, 5);
  }

  TEST_CASE(
      "go calls queued by a task of the same group are served first come first "
      "served") {
    for (int threads : thread_counts)
      check_fifo(producer::own_task, threads, 5);
  }

  TEST_CASE(
      "a waiting go on a context group gives up when the context is "
      "cancelled") {
    for (int threads : thread_counts) {
      for (producer from :
           {producer::external_thread, producer::worker_thread}) {
        CAPTURE(threads);
        CAPTURE(std::string(name(from)));
        errgroup::scheduler s{threads};
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        auto made = errgroup::with_context(parent, s);
        auto& g = made.g;
        errgroup::group producers{s};
        g.set_limit(1);
        park holder;
        std::atomic<int> live{0};
        std::atomic<int> invoked{0};
        g.go([&] { holder.wait(); });
        spin_until([&] { return g.counters().running == 1; });
        {
          std::jthread external;
          auto go_once = [&g, task = [&invoked, t = token(live)] {
            invoked.fetch_add(1);
          }]() mutable { g.go(std::move(task)); };
          if (from == producer::external_thread)
            external = std::jthread(std::move(go_once));
          else
            producers.go(std::move(go_once));
          spin_until([&] { return g.counters().waiting == 1; });
          cancel();
        }  // joined: the waiting go() returned while the slot is still held
        CHECK_FALSE(producers.wait());
        CHECK(invoked.load() == 0);
        CHECK(live.load() == 0);  // its callable was destroyed
        auto c = g.counters();
        CHECK(c.skipped == 1);
        CHECK(c.waiting == 0);
        CHECK(c.running == 1);
        holder.release();
        CHECK(g.wait().is<errgroup::cancelled_error>());
        check_accounting(g.counters(), 1);
      }
    }
  }
}  // TEST_SUITE("group.limit")
