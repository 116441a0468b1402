// Tests for <errgroup/weighted.hpp>: errgroup::weighted (Go's
// semaphore.Weighted), errgroup::permit, and weighted admission into a group,
// g.go(sem, n, f).
//
// Ports of golang.org/x/sync/semaphore tests keep Go's name in the test case
// name. Nothing here sleeps to make a race likely: a test that needs a waiter
// queued polls for it (sem.try_acquire(0) fails only while somebody waits),
// holds tasks with a std::latch, or queues waiters in a known order as tasks
// on a one-thread scheduler (queued_in_order below). A hang is a failure that
// CTest's timeout reports. Every test ends with all units given back.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <errgroup/errgroup.hpp>
#include <functional>
#include <latch>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using errgroup::cancelled_error;
using errgroup::deadline_exceeded_error;
using errgroup::weighted;
using test::spin_until;
using test::thread_counts;

const errgroup::context background{};

// seed() returns ERRGROUP_TEST_SEED when set, else a fresh random seed. Tests
// CAPTURE it, so a failure prints the seed that reproduces it.
std::uint64_t seed() {
  if (const char* s = std::getenv("ERRGROUP_TEST_SEED"))
    return std::strtoull(s, nullptr, 0);
  return std::random_device{}();
}

// has_waiter(sem) reports whether somebody is queued at sem: try_acquire(0)
// fails exactly then (and takes nothing when it succeeds).
bool has_waiter(weighted& sem) { return !sem.try_acquire(0); }

// usage adds up the units that the test's threads and tasks hold right now
// (by their own account, kept next to the semaphore's) and remembers the most
// ever held at once.
class usage {
 public:
  void enter(std::int64_t n) {
    const std::int64_t now = held_.fetch_add(n) + n;
    std::int64_t p = peak_.load();
    while (now > p && !peak_.compare_exchange_weak(p, now)) {
    }
  }
  void leave(std::int64_t n) { held_.fetch_sub(n); }
  std::int64_t held() const { return held_.load(); }
  std::int64_t peak() const { return peak_.load(); }

 private:
  std::atomic<std::int64_t> held_{0};
  std::atomic<std::int64_t> peak_{0};
};

// holding(sem, use, n, missing) is what a holder of n units of sem does: it
// counts them in use and counts in missing when sem does not show them held.
void holding(weighted& sem, usage& use, std::int64_t n,
             std::atomic<int>& missing) {
  use.enter(n);
  if (sem.available() > sem.size() - n) missing.fetch_add(1);
  use.leave(n);
}

// queued_in_order starts body(0), ..., body(n-1) as tasks of g. g must run on
// a one-thread scheduler that the calling thread is not in. Task i starts task
// i+1 and then calls body(i), so task i+1 runs only once body(i) returned or
// suspended its task (a waiting acquire() does), and the waits queue in index
// order. all_waiting() turns true once every body got that far.
class queued_in_order {
 public:
  queued_in_order(errgroup::group& g, int n, std::function<void(int)> body)
      : g_(g), n_(n), body_(std::move(body)) {
    start(0);
  }
  bool all_waiting() const { return done_.load(); }

 private:
  void start(int i) {
    g_.go([this, i] {
      if (i + 1 < n_)
        start(i + 1);
      else
        g_.go([this] { done_.store(true); });
      body_(i);
    });
  }
  errgroup::group& g_;
  int n_;
  std::function<void(int)> body_;
  std::atomic<bool> done_{false};
};

// collatz_steps(n) is the number of Collatz steps from n down to 1.
int collatz_steps(int n) {
  int steps = 0;
  for (; n > 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

// go_slice(v) prints v as Go's fmt.Println prints an []int.
std::string go_slice(const std::vector<int>& v) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < v.size(); ++i) out << (i ? " " : "") << v[i];
  out << ']';
  return out.str();
}

const std::string collatz_32 =
    "[0 1 7 2 5 8 16 3 19 6 14 9 9 17 17 4 12 20 20 7 7 15 15 10 23 10 111 18 "
    "18 18 106 5]";

int hardware_threads() {
  return std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

TEST_SUITE("weighted") {
  TEST_CASE(
      "n threads hammering with weights 0 to n-1 finish and never hold more "
      "than the size (TestWeighted)") {
    const int n = hardware_threads();
    const int loops = 10000 / n;
    weighted sem{n};
    usage use;
    std::atomic<int> errors{0};
    std::atomic<int> missing{0};
    {
      std::vector<std::jthread> threads;
      for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
          for (int k = 0; k < loops; ++k) {
            if (sem.acquire(background, i)) {
              errors.fetch_add(1);
              continue;
            }
            holding(sem, use, i, missing);
            sem.release(i);
          }
        });
    }
    CHECK(errors.load() == 0);
    CHECK(missing.load() == 0);
    CHECK(use.peak() <= n);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "release of more than is held throws std::logic_error and changes "
      "nothing (TestWeightedPanic)") {
    weighted one{1};
    CHECK_THROWS_WITH_AS(one.release(1), "semaphore: released more than held",
                         std::logic_error);
    CHECK(one.available() == 1);

    weighted sem{2};
    REQUIRE(sem.try_acquire(1));
    CHECK_THROWS_WITH_AS(sem.release(2), "semaphore: released more than held",
                         std::logic_error);
    CHECK(sem.available() == 1);

    // With a waiter queued, the release takes the slow path: still nothing
    // changes, and the waiter still waits.
    REQUIRE(sem.try_acquire(1));
    errgroup::error waited;
    std::jthread waiter([&] {
      waited = sem.acquire(background, 2);
      if (!waited) sem.release(2);
    });
    spin_until([&] { return has_waiter(sem); });
    CHECK_THROWS_WITH_AS(sem.release(3), "semaphore: released more than held",
                         std::logic_error);
    CHECK(sem.available() == 0);
    CHECK(has_waiter(sem));
    sem.release(2);
    waiter.join();
    CHECK(!waited);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "try_acquire takes units only when they are free "
      "(TestWeightedTryAcquire)") {
    weighted sem{2};
    std::vector<bool> tries;
    REQUIRE(!sem.acquire(background, 1));
    tries.push_back(sem.try_acquire(1));
    tries.push_back(sem.try_acquire(1));
    sem.release(2);
    tries.push_back(sem.try_acquire(1));
    REQUIRE(!sem.acquire(background, 1));
    tries.push_back(sem.try_acquire(1));
    CHECK(tries == std::vector<bool>{true, false, true, false});
    CHECK(sem.available() == 0);
    sem.release(2);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "acquire with a timeout fails with the deadline when the units are not "
      "free (TestWeightedAcquire)") {
    weighted sem{2};
    std::vector<errgroup::error> errors;
    // Go uses 10 ms; a longer timeout keeps the successful tries from
    // expiring before acquire() is even called on a loaded machine.
    auto try_acquire = [&](std::int64_t n) {
      auto [ctx, cancel] = errgroup::with_timeout(background, 50ms);
      errors.push_back(sem.acquire(ctx, n));
      cancel();
      return !errors.back();
    };
    std::vector<bool> tries;
    REQUIRE(!sem.acquire(background, 1));
    tries.push_back(try_acquire(1));
    tries.push_back(try_acquire(1));
    sem.release(2);
    tries.push_back(try_acquire(1));
    REQUIRE(!sem.acquire(background, 1));
    tries.push_back(try_acquire(1));
    CHECK(tries == std::vector<bool>{true, false, true, false});
    CHECK(errors[1].is<deadline_exceeded_error>());
    CHECK(errors[3].is<deadline_exceeded_error>());
    CHECK(sem.available() == 0);
    sem.release(2);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "acquire of more than the size fails at once and blocks nobody "
      "(TestWeightedDoesntBlockIfTooBig)") {
    constexpr std::int64_t n = 2;
    weighted sem{n};
    // Go blocks this call until its context is done; ours fails at once, even
    // on a context that is never done.
    errgroup::error too_big;
    std::jthread([&] { too_big = sem.acquire(background, n + 1); }).join();
    CHECK(too_big.is<std::invalid_argument>());
    CHECK_FALSE(sem.try_acquire(n + 1));
    CHECK_FALSE(has_waiter(sem));
    CHECK(sem.available() == n);

    auto [g, ctx] = errgroup::with_context(background);
    for (std::int64_t i = n * 3; i > 0; --i)
      g.go([&sem](const errgroup::context& c) -> errgroup::error {
        errgroup::error err = sem.acquire(c, 1);
        if (!err) sem.release(1);
        return err;
      });
    CHECK(!g.wait());
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a large acquire is not starved by a stream of small ones "
      "(TestLargeAcquireDoesntStarve)") {
    const std::int64_t n = hardware_threads();
    weighted sem{n};
    std::atomic<bool> running{true};
    std::atomic<int> errors{0};
    {
      std::vector<std::jthread> threads;
      for (std::int64_t i = n; i > 0; --i) {
        REQUIRE(!sem.acquire(background, 1));
        threads.emplace_back([&] {
          while (running.load()) {
            sem.release(1);
            if (sem.acquire(background, 1)) errors.fetch_add(1);
          }
          sem.release(1);
        });
      }
      CHECK(!sem.acquire(background, n));  // returns: the large one got through
      running.store(false);
      sem.release(n);
    }
    CHECK(errors.load() == 0);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a head waiter that gives up lets the waiter behind it through "
      "(TestAllocCancelDoesntStarve)") {
    weighted sem{10};
    REQUIRE(!sem.acquire(background, 1));  // hold 1, so 10 cannot be granted
    auto [ctx, cancel] = errgroup::with_cancel(background);
    errgroup::error big;
    std::jthread big_waiter([&, c = ctx] { big = sem.acquire(c, 10); });
    spin_until([&] { return has_waiter(sem); });
    // Cancel the head and ask for 1 at the same time: either order must work.
    std::jthread canceller([cancel_head = cancel] { cancel_head(); });
    CHECK(!sem.acquire(background, 1));
    canceller.join();
    big_waiter.join();
    CHECK(big.is<cancelled_error>());
    CHECK(big == ctx.err());
    sem.release(1);
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "acquire fails on a cancelled context and leaks no units "
      "(TestWeightedAcquireCanceled)") {
    weighted sem{2};
    auto [ctx, cancel] = errgroup::with_cancel(background);
    REQUIRE(!sem.acquire(ctx, 1));
    std::jthread helper([&, cancel_ctx = cancel] {
      // Wait until the Acquire(2) below is queued.
      while (sem.try_acquire(1)) {
        sem.release(1);
        std::this_thread::yield();
      }
      cancel_ctx();  // the context is done before enough units are free
      sem.release(1);
    });
    errgroup::error err = sem.acquire(ctx, 2);
    CHECK(err.is<cancelled_error>());
    CHECK(err == ctx.err());
    helper.join();
    CHECK(sem.try_acquire(2));  // no units leaked
    sem.release(2);
    // A done context fails even when no wait would be needed.
    CHECK(sem.acquire(ctx, 1).is<cancelled_error>());
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a worker pool bounded by the semaphore prints the Collatz steps "
      "(Example_workerPool)") {
    const std::int64_t max_workers = hardware_threads();
    weighted sem{max_workers};
    std::vector<int> out(32);
    std::vector<std::jthread> workers;
    for (int i = 0; i < static_cast<int>(out.size()); ++i) {
      // With max_workers in flight, acquire waits until one of them finishes.
      REQUIRE(!sem.acquire(background, 1));
      workers.emplace_back([&sem, &out, i] {
        out[static_cast<std::size_t>(i)] = collatz_steps(i + 1);
        sem.release(1);
      });
    }
    // Acquire every unit to wait for the remaining workers.
    REQUIRE(!sem.acquire(background, max_workers));
    CHECK(go_slice(out) == collatz_32);
    sem.release(max_workers);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("negative sizes and weights throw std::invalid_argument") {
    CHECK_THROWS_AS(weighted{-1}, std::invalid_argument);
    weighted sem{3};
    REQUIRE(sem.try_acquire(1));
    CHECK_THROWS_AS((void)sem.acquire(background, -1), std::invalid_argument);
    CHECK_THROWS_AS((void)sem.try_acquire(-1), std::invalid_argument);
    CHECK_THROWS_AS(sem.release(-1), std::invalid_argument);
    CHECK(sem.available() == 2);  // unchanged: in Go, -1 grows the semaphore
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("a semaphore of size 0 grants only requests for 0 units") {
    weighted sem{0};
    CHECK(sem.size() == 0);
    CHECK(sem.available() == 0);
    CHECK(!sem.acquire(background, 0));
    CHECK(sem.try_acquire(0));
    CHECK_FALSE(sem.try_acquire(1));
    CHECK(sem.acquire(background, 1).is<std::invalid_argument>());
    sem.release(0);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "acquire and release move units and available counts the free ones") {
    weighted sem{10};
    CHECK(sem.size() == 10);
    CHECK(sem.available() == 10);
    REQUIRE(!sem.acquire(background, 3));
    CHECK(sem.available() == 7);
    REQUIRE(sem.try_acquire(7));
    CHECK(sem.available() == 0);
    CHECK(!sem.acquire(background, 0));  // 0 units: granted when nobody waits
    sem.release(4);
    CHECK(sem.available() == 4);
    sem.release(6);
    CHECK(sem.size() == 10);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("a waiting acquire gives up at the context's deadline") {
    weighted sem{1};
    REQUIRE(sem.try_acquire(1));

    SUBCASE("on a plain thread") {
      auto [ctx, cancel] = errgroup::with_timeout(background, 20ms);
      errgroup::error err = sem.acquire(ctx, 1);
      CHECK(err.is<deadline_exceeded_error>());
      CHECK(err == ctx.err());
    }
    SUBCASE("through a parent's deadline") {
      auto [parent, cancel_parent] = errgroup::with_timeout(background, 20ms);
      auto [ctx, cancel] = errgroup::with_cancel(parent);
      CHECK(sem.acquire(ctx, 1).is<deadline_exceeded_error>());
    }
    SUBCASE("inside a task, which is suspended while it waits") {
      for (int threads : {1, 2}) {
        CAPTURE(threads);
        errgroup::scheduler sched{threads};
        errgroup::group g{sched};
        errgroup::error err;
        g.go([&] {
          auto [ctx, cancel] = errgroup::with_timeout(background, 20ms);
          err = sem.acquire(ctx, 1);
        });
        CHECK(!g.wait());
        CHECK(err.is<deadline_exceeded_error>());
      }
    }
    SUBCASE("at once when the deadline has passed, even with units free") {
      sem.release(1);
      auto [ctx, cancel] = errgroup::with_deadline(
          background, errgroup::context::clock::now() - 1s);
      CHECK(sem.acquire(ctx, 1).is<deadline_exceeded_error>());
      REQUIRE(sem.try_acquire(1));
    }
    CHECK_FALSE(has_waiter(sem));  // the waiter left the queue
    CHECK(sem.available() == 0);   // and took nothing
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a grant that races with cancellation is kept or given back and never "
      "leaked") {
    constexpr int rounds = 100;
    weighted sem{1};
    for (int round = 0; round < rounds; ++round) {
      REQUIRE(sem.try_acquire(1));
      auto [ctx, cancel] = errgroup::with_cancel(background);
      errgroup::error err;
      std::jthread waiter([&, c = ctx] {
        err = sem.acquire(c, 1);
        if (!err) sem.release(1);
      });
      spin_until([&] { return has_waiter(sem); });
      {
        std::jthread canceller([cancel_waiter = cancel] { cancel_waiter(); });
        sem.release(1);  // races with the cancellation
      }
      waiter.join();
      CAPTURE(round);
      if (err) REQUIRE(err == ctx.err());  // else the waiter kept its grant
      REQUIRE(sem.available() == 1);
    }
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a waiter granted its units after its context was cancelled gives them "
      "back") {
    // The waiter is a suspended task on a one-thread scheduler. Its grant
    // comes while the only thread is held by another task, and the context is
    // cancelled before that thread is let go: when the waiter resumes, ctx was
    // done before acquire could return success, so it must fail.
    errgroup::scheduler one{1};
    weighted sem{1};
    REQUIRE(sem.try_acquire(1));
    auto [ctx, cancel] = errgroup::with_cancel(background);
    errgroup::group g{one};
    errgroup::error err;
    g.go([&, c = ctx] {
      err = sem.acquire(c, 1);
      if (!err) sem.release(1);
    });
    spin_until([&] { return has_waiter(sem); });
    std::latch started{1};
    std::latch hold{1};
    g.go([&] {
      started.count_down();
      hold.wait();
    });
    started.wait();
    sem.release(1);  // granted: the waiter is due to resume, but cannot yet
    CHECK_FALSE(has_waiter(sem));
    CHECK(sem.available() == 0);
    cancel();
    hold.count_down();
    CHECK(!g.wait());
    CHECK(err.is<cancelled_error>());
    CHECK(err == ctx.err());
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "tasks taking turns at a semaphore of size 1 never deadlock on one or "
      "two threads") {
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{1};
      usage use;
      std::atomic<int> errors{0};
      std::atomic<int> missing{0};
      errgroup::group g{sched};
      for (int i = 0; i < 500; ++i)
        g.go([&] {
          if (sem.acquire(background, 1)) {
            errors.fetch_add(1);
            return;
          }
          holding(sem, use, 1, missing);
          sem.release(1);
        });
      CHECK(!g.wait());
      CHECK(errors.load() == 0);
      CHECK(missing.load() == 0);
      CHECK(use.peak() == 1);
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE(
      "a task waiting for units held by a task queued behind it on the same "
      "thread is suspended instead of deadlocking") {
    // The holder is admitted with the unit and queued on the same thread;
    // the waiter then waits for that unit. Blocking the only thread would
    // deadlock: the waiter must suspend so that the holder can run. This
    // thread stays out of the arena until the waiter is done.
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{1};
      errgroup::group g{sched};
      std::latch waiter_done{1};
      errgroup::error err;
      bool holder_ran = false;
      g.go([&] {
        g.go(sem, 1, [&] { holder_ran = true; });
        err = sem.acquire(background, 1);
        if (!err) sem.release(1);
        waiter_done.count_down();
      });
      waiter_done.wait();
      CHECK(!g.wait());
      CHECK(!err);
      CHECK(holder_ran);
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE(
      "threads mixing acquire and try_acquire and timed acquire never hold "
      "more than the size") {
    const std::uint64_t s0 = seed();
    CAPTURE(s0);
    for (int threads : {2, 4, 8}) {
      for (std::int64_t size : {1, 10, 100})
        for (weighted::order order :
             {weighted::order::fifo, weighted::order::barging}) {
          CAPTURE(threads);
          CAPTURE(size);
          CAPTURE(order == weighted::order::barging);
          weighted sem{size, order};
          usage use;
          std::atomic<int> unexpected{0};
          std::atomic<int> missing{0};
          {
            std::vector<std::jthread> pool;
            for (int t = 0; t < threads; ++t)
              pool.emplace_back([&, t] {
                std::mt19937_64 rng{s0 + static_cast<std::uint64_t>(t)};
                std::uniform_int_distribution<std::int64_t> weight{0, size};
                for (int i = 0; i < 600; ++i) {
                  const std::int64_t w = weight(rng);
                  bool held = false;
                  switch (rng() % 8) {
                    case 0:
                    case 1:
                      held = sem.try_acquire(w);
                      break;
                    case 2: {
                      auto [ctx, cancel] =
                          errgroup::with_timeout(background, 50us);
                      errgroup::error err = sem.acquire(ctx, w);
                      if (err && err != ctx.err()) unexpected.fetch_add(1);
                      held = !err;
                      break;
                    }
                    default: {
                      errgroup::error err = sem.acquire(background, w);
                      if (err) unexpected.fetch_add(1);
                      held = !err;
                    }
                  }
                  if (!held) continue;
                  holding(sem, use, w, missing);
                  sem.release(w);
                }
              });
          }
          CHECK(unexpected.load() == 0);
          CHECK(missing.load() == 0);
          CHECK(use.peak() <= size);
          CHECK(use.held() == 0);
          CHECK(sem.available() == sem.size());
        }
    }
  }

  // Regression (fixed): gate::try_acquire_slow() used to read the
  // units in use and then adds n in a second step, after the queue emptied
  // and the waiters bit was cleared, so a lock-free try_acquire() on another
  // thread can take units in between: both succeed and more than the size is
  // held (try_acquire(8) and try_acquire(7) both succeed on a size of 10,
  // available() == -5). acquire() and go(sem, n, f) take the same path. This
  // stress test (about 2 s) catches it in about one run of five; it is
  // a regression test for that fix.
  TEST_CASE(
      "try_acquire and acquire never hold more than the size while waiters "
      "come and go") {
    constexpr std::int64_t size = 10;
    constexpr int ops = 2000000;  // per thread
    const std::uint64_t s0 = seed();
    CAPTURE(s0);
    weighted sem{size};
    usage use;
    std::atomic<int> negative{0};
    std::atomic<int> errors{0};
    {
      std::vector<std::jthread> pool;
      for (std::uint64_t t = 0; t < 2; ++t)  // two hit the window most often
        pool.emplace_back([&, t] {
          std::mt19937_64 rng{s0 + t};
          std::uniform_int_distribution<std::int64_t> weight{1, size};
          for (int i = 0; i < ops; ++i) {
            const std::int64_t w = weight(rng);
            bool held = false;
            if (rng() % 2 == 0) {
              held = sem.try_acquire(w);
            } else {
              held = !sem.acquire(background, w);
              if (!held) errors.fetch_add(1);
            }
            if (!held) continue;
            use.enter(w);
            if (sem.available() < 0) negative.fetch_add(1);
            use.leave(w);
            sem.release(w);
          }
        });
    }
    CHECK(errors.load() == 0);
    CHECK(negative.load() == 0);
    CHECK(use.peak() <= size);
    CHECK(sem.available() == sem.size());
  }
}  // TEST_SUITE("weighted")

TEST_SUITE("weighted.fifo") {
  TEST_CASE(
      "try_acquire never overtakes a queued waiter even with units free") {
    weighted sem{10};
    REQUIRE(sem.try_acquire(5));
    errgroup::error err;
    std::jthread waiter([&] {
      err = sem.acquire(background, 10);
      if (!err) sem.release(10);
    });
    spin_until([&] { return has_waiter(sem); });
    CHECK(sem.available() == 5);
    CHECK_FALSE(sem.try_acquire(1));
    CHECK_FALSE(sem.try_acquire(0));
    CHECK_FALSE(errgroup::try_acquire_permit(sem, 1));
    CHECK(sem.available() == 5);
    sem.release(5);
    waiter.join();
    CHECK(!err);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a new acquire queues behind a waiter even with units free and even for "
      "0 units") {
    weighted sem{10};
    REQUIRE(sem.try_acquire(5));
    errgroup::error err;
    std::jthread waiter([&] {
      err = sem.acquire(background, 10);
      if (!err) sem.release(10);
    });
    spin_until([&] { return has_waiter(sem); });
    for (std::int64_t n : {1, 5, 0}) {
      CAPTURE(n);
      auto [ctx, cancel] = errgroup::with_timeout(background, 10ms);
      errgroup::error late = sem.acquire(ctx, n);
      CHECK(late.is<deadline_exceeded_error>());
      if (!late) sem.release(n);
      CHECK(sem.available() == 5);
      CHECK(has_waiter(sem));  // the head still waits
    }
    sem.release(5);
    waiter.join();
    CHECK(!err);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("a large request at the head holds back smaller ones behind it") {
    // Queue: 8 at the head, then 3 (which fits in the 3 units freed first),
    // then 9. Grants go strictly in that order.
    const std::vector<std::int64_t> weights{8, 3, 9};
    errgroup::scheduler one{1};
    weighted sem{10};
    REQUIRE(sem.try_acquire(10));
    std::mutex mu;
    std::vector<int> order;
    std::atomic<int> errors{0};
    errgroup::group g{one};
    queued_in_order waiters(g, static_cast<int>(weights.size()), [&](int i) {
      const std::int64_t w = weights[static_cast<std::size_t>(i)];
      if (sem.acquire(background, w)) {
        errors.fetch_add(1);
        return;
      }
      {
        std::lock_guard lock(mu);
        order.push_back(i);
      }
      sem.release(w);
    });
    spin_until([&] { return waiters.all_waiting(); });

    sem.release(3);  // the 3 would fit, the head does not: nobody is granted
    CHECK(sem.available() == 3);
    CHECK_FALSE(sem.try_acquire(1));
    auto [ctx, cancel] = errgroup::with_timeout(background, 10ms);
    errgroup::error err = sem.acquire(ctx, 1);  // queues behind all three
    CHECK(err.is<deadline_exceeded_error>());
    if (!err) sem.release(1);
    CHECK(sem.available() == 3);
    {
      std::lock_guard lock(mu);
      CHECK(order.empty());
    }

    sem.release(7);  // the head first; the 3 only once the head gives back 8
    CHECK(!g.wait());
    CHECK(errors.load() == 0);
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a large request from a thread at the head holds back a smaller one "
      "from another thread") {
    weighted sem{10};
    REQUIRE(sem.try_acquire(10));
    errgroup::error big;
    std::jthread big_waiter([&] {
      big = sem.acquire(background, 8);
      if (!big) sem.release(8);
    });
    spin_until([&] { return has_waiter(sem); });
    sem.release(3);  // 3 free, the head needs 8
    auto [ctx, cancel] = errgroup::with_timeout(background, 10ms);
    errgroup::error small = sem.acquire(ctx, 3);  // fits, but queues
    CHECK(small.is<deadline_exceeded_error>());
    if (!small) sem.release(3);
    CHECK(sem.available() == 3);
    CHECK(has_waiter(sem));
    sem.release(7);
    big_waiter.join();
    CHECK(!big);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("waiters are granted in arrival order") {
    // Each waiter needs more than is left beside the one before it, so each
    // grant waits for the previous waiter's release and the log shows the
    // grant order.
    const std::vector<std::int64_t> weights{3, 4, 5, 3, 4, 2, 5, 1, 5};
    errgroup::scheduler one{1};
    weighted sem{5};
    REQUIRE(sem.try_acquire(5));
    std::mutex mu;
    std::vector<int> order;
    std::atomic<int> errors{0};
    errgroup::group g{one};
    queued_in_order waiters(g, static_cast<int>(weights.size()), [&](int i) {
      const std::int64_t w = weights[static_cast<std::size_t>(i)];
      if (sem.acquire(background, w)) {
        errors.fetch_add(1);
        return;
      }
      {
        std::lock_guard lock(mu);
        order.push_back(i);
      }
      sem.release(w);
    });
    spin_until([&] { return waiters.all_waiting(); });
    CHECK(sem.available() == 0);
    CHECK(has_waiter(sem));
    sem.release(5);
    CHECK(!g.wait());
    CHECK(errors.load() == 0);
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "when the head waiter gives up with units free the waiters behind it "
      "are woken (golang/go#37852)") {
    // Queue: head wants 10 (1 is held), then 4 and 5, which fit in the 9 free
    // units together, then 9, which fits once they give theirs back.
    const std::vector<std::int64_t> weights{10, 4, 5, 9};
    errgroup::scheduler one{1};
    weighted sem{10};
    REQUIRE(sem.try_acquire(1));
    auto [head_ctx, cancel_head] = errgroup::with_cancel(background);
    std::vector<errgroup::error> results(weights.size());
    errgroup::group g{one};
    queued_in_order waiters(
        g, static_cast<int>(weights.size()), [&, head = head_ctx](int i) {
          const auto k = static_cast<std::size_t>(i);
          errgroup::error err =
              sem.acquire(i == 0 ? head : background, weights[k]);
          if (!err) sem.release(weights[k]);
          results[k] = err;
        });
    spin_until([&] { return waiters.all_waiting(); });
    CHECK(sem.available() == 9);  // all queued behind the head, none granted
    cancel_head();
    CHECK(!g.wait());
    CHECK(results[0].is<cancelled_error>());
    CHECK(!results[1]);
    CHECK(!results[2]);
    CHECK(!results[3]);
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("a done context fails acquire even when the units are free") {
    weighted sem{4};
    REQUIRE(sem.try_acquire(1));
    SUBCASE("cancelled") {
      auto [ctx, cancel] = errgroup::with_cancel(background);
      cancel();
      for (std::int64_t n : {0, 1, 3}) {
        errgroup::error err = sem.acquire(ctx, n);
        CHECK(err.is<cancelled_error>());
        CHECK(err == ctx.err());
      }
    }
    SUBCASE("deadline passed") {
      auto [ctx, cancel] = errgroup::with_timeout(background, -1ms);
      CHECK(sem.acquire(ctx, 1).is<deadline_exceeded_error>());
    }
    SUBCASE("cancelled through its parent") {
      auto [parent, cancel_parent] = errgroup::with_cancel(background);
      auto [ctx, cancel] = errgroup::with_cancel(parent);
      cancel_parent();
      CHECK(sem.acquire(ctx, 1).is<cancelled_error>());
    }
    CHECK(sem.available() == 3);  // failures leave the semaphore unchanged
    CHECK_FALSE(has_waiter(sem));
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }
}  // TEST_SUITE("weighted.fifo")

// docs/contract.md §5: order::barging, the opt-in order for a budget that
// OS threads contend for. These use queued_in_order on a one-thread
// scheduler: a nudged waiter cannot retake while that thread runs `hold`.
TEST_SUITE("weighted.barging") {
  // occupant(g) starts a task of g that runs until release(), and waits
  // until it runs: the scheduler's one thread is then busy and a nudged
  // waiter cannot try again yet. Declared after g, release() it before
  // g.wait().
  class occupant {
   public:
    explicit occupant(errgroup::group& g) {
      g.go([this] {
        running_.store(true);
        while (!released_.load()) std::this_thread::yield();
      });
      spin_until([&] { return running_.load(); });
    }
    void release() { released_.store(true); }

   private:
    std::atomic<bool> running_{false};
    std::atomic<bool> released_{false};
  };

  TEST_CASE("a request takes free units although a larger one waits") {
    errgroup::scheduler one{1};
    weighted sem{10, weighted::order::barging};
    REQUIRE(sem.try_acquire(10));
    std::atomic<int> errors{0};
    errgroup::group g{one};
    const auto queued = std::chrono::steady_clock::now();  // no later
    queued_in_order waiter(g, 1, [&](int) {
      if (sem.acquire(background, 10))
        errors.fetch_add(1);
      else
        sem.release(10);
    });
    spin_until([&] { return waiter.all_waiting(); });
    sem.release(4);  // the head needs 10: nobody is woken
    // A fifo semaphore refuses (weighted.fifo). A barging one takes the
    // units, unless the head has already waited past the 1 ms bound (a
    // loaded machine), then it is fifo until the head is served.
    const bool barged = sem.try_acquire(4);
    CHECK((barged || std::chrono::steady_clock::now() - queued >= 1ms));
    if (barged) sem.release(4);
    sem.release(6);  // now the head fits: it is woken and takes them
    CHECK(!g.wait());
    CHECK(errors.load() == 0);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a woken waiter that finds its units taken waits again at the head, "
      "and once it has waited 1 ms nobody barges until it is served") {
    errgroup::scheduler one{1};
    weighted sem{10, weighted::order::barging};
    REQUIRE(sem.try_acquire(10));
    std::atomic<int> errors{0};
    std::atomic<bool> served{false};
    errgroup::group g{one};
    queued_in_order waiter(g, 1, [&](int) {
      if (sem.acquire(background, 10)) {
        errors.fetch_add(1);
        return;
      }
      served.store(true);
      sem.release(10);
    });
    spin_until([&] { return waiter.all_waiting(); });
    const auto queued = std::chrono::steady_clock::now();
    occupant busy(g);
    sem.release(10);              // wakes the waiter, which cannot run yet
    REQUIRE(sem.try_acquire(1));  // barges in before it
    // Past the bound (weighted::order::barging): its retake fails late.
    spin_until([&] { return std::chrono::steady_clock::now() - queued > 2ms; });
    busy.release();
    // It is back at the head and starving: nobody barges now.
    spin_until([&] { return has_waiter(sem); });
    CHECK_FALSE(served.load());
    CHECK_FALSE(sem.try_acquire(1));
    sem.release(1);  // handed to the head, as a fifo semaphore does
    CHECK(!g.wait());
    CHECK(served.load());
    CHECK(errors.load() == 0);
    CHECK(sem.try_acquire(1));  // the queue drained: barging again
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a waiter cancelled while it was woken gives up once it finds its "
      "units taken") {
    errgroup::scheduler one{1};
    weighted sem{10, weighted::order::barging};
    REQUIRE(sem.try_acquire(10));
    auto [ctx, cancel] = errgroup::with_cancel(background);
    std::atomic<int> outcome{0};  // 1: cancelled_error, 2: anything else
    errgroup::group g{one};
    queued_in_order waiter(g, 1, [&, c = ctx](int) {
      errgroup::error err = sem.acquire(c, 10);
      outcome.store(err.is<cancelled_error>() ? 1 : 2);
      if (!err) sem.release(10);
    });
    spin_until([&] { return waiter.all_waiting(); });
    occupant busy(g);
    sem.release(10);              // wakes the waiter: out of the queue
    REQUIRE(sem.try_acquire(1));  // its units are gone
    cancel();                     // finds nothing queued to remove
    busy.release();
    CHECK(!g.wait());
    CHECK(outcome.load() == 1);
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a request for the whole size is served among threads that keep "
      "taking single units") {
    // Without the 1 ms bound the small requests would take turns forever.
    for (int threads : {2, 4, 8}) {
      CAPTURE(threads);
      weighted sem{4, weighted::order::barging};
      std::atomic<bool> stop{false};
      usage use;
      std::atomic<int> missing{0};
      {
        std::vector<std::jthread> pool;
        for (int t = 0; t < threads; ++t)
          pool.emplace_back([&] {
            while (!stop.load()) {
              if (sem.acquire(background, 1)) std::abort();
              holding(sem, use, 1, missing);
              sem.release(1);
            }
          });
        for (int i = 0; i < 20; ++i) {
          REQUIRE(!sem.acquire(background, 4));
          holding(sem, use, 4, missing);
          sem.release(4);
        }
        stop.store(true);
      }
      CHECK(missing.load() == 0);
      CHECK(use.peak() <= 4);
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE("go with units on a barging budget never holds more than it") {
    for (int n : thread_counts) {
      CAPTURE(n);
      errgroup::scheduler s{n};
      weighted sem{10, weighted::order::barging};
      usage use;
      std::atomic<int> missing{0};
      errgroup::group g{s};
      for (int i = 0; i < 2000; ++i) {
        const std::int64_t w = 1 + i % 4;
        g.go(sem, w, [&, w] { holding(sem, use, w, missing); });
      }
      CHECK(!g.wait());
      CHECK(missing.load() == 0);
      CHECK(use.peak() <= 10);
      CHECK(sem.available() == sem.size());
    }
  }
}  // TEST_SUITE("weighted.barging")

TEST_SUITE("weighted.group") {
  TEST_CASE(
      "go with units holds them while the task runs and gives them back") {
    constexpr int tasks = 500;
    const std::uint64_t s0 = seed();
    CAPTURE(s0);
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{10};
      usage use;
      std::atomic<int> missing{0};
      std::mt19937_64 rng{s0 + static_cast<std::uint64_t>(threads)};
      std::uniform_int_distribution<std::int64_t> weight{0, 10};
      errgroup::group g{sched};
      for (int i = 0; i < tasks; ++i) {
        const std::int64_t w = weight(rng);
        g.go(sem, w, [&, w] { holding(sem, use, w, missing); });
      }
      CHECK(!g.wait());
      CHECK(missing.load() == 0);
      CHECK(use.peak() <= sem.size());
      CHECK(g.counters().succeeded == tasks);
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE("go with units gives them back when the task fails or throws") {
    errgroup::scheduler sched{2};
    weighted sem{4};
    SUBCASE("a plain group") {
      errgroup::group g{sched};
      g.go(sem, 3, [] { throw std::runtime_error("thrown"); });
      g.go(sem, 4, [] { return std::make_error_code(std::errc::io_error); });
      g.go(sem, 2, [] { return errgroup::error(); });
      CHECK(g.wait());
      CHECK(g.counters().failed == 2);
      CHECK(sem.available() == sem.size());
    }
    SUBCASE("a context group") {
      auto [g, ctx] = errgroup::with_context(background, sched);
      g.go(sem, 4, [] { throw std::runtime_error("thrown"); });
      CHECK(g.wait().is<std::runtime_error>());
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE(
      "go with units gives them back when a cancelled context group skips "
      "the task") {
    // The only thread of the scheduler is held, so the admitted tasks stay
    // queued, holding their units, until the context is cancelled.
    errgroup::scheduler one{1};
    weighted sem{4};
    auto [parent, cancel] = errgroup::with_cancel(background);
    auto [g, ctx] = errgroup::with_context(parent, one);
    std::latch started{1};
    std::latch hold{1};
    std::atomic<int> invoked{0};
    g.go([&] {
      started.count_down();
      hold.wait();
    });
    started.wait();
    g.go(sem, 2, [&] { invoked.fetch_add(1); });
    g.go(sem, 2, [&] { invoked.fetch_add(1); });
    CHECK(sem.available() == 0);  // admitted, not yet run
    cancel();
    g.go(sem, 3, [&] { invoked.fetch_add(1); });  // after cancellation: skipped
    CHECK(sem.available() == 0);
    hold.count_down();
    CHECK(g.wait().is<cancelled_error>());
    CHECK(invoked.load() == 0);
    CHECK(g.counters().skipped == 3);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("go with units obeys both the budget and the group's limit") {
    const std::uint64_t s0 = seed();
    CAPTURE(s0);
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{6};
      usage use;
      std::atomic<int> running{0};
      std::atomic<int> peak_running{0};
      std::atomic<int> missing{0};
      std::mt19937_64 rng{s0 + static_cast<std::uint64_t>(threads)};
      std::uniform_int_distribution<std::int64_t> weight{1, 4};
      errgroup::group g{sched};
      g.set_limit(3);
      for (int i = 0; i < 400; ++i) {
        const std::int64_t w = weight(rng);
        g.go(sem, w, [&, w] {
          const int now = running.fetch_add(1) + 1;
          int p = peak_running.load();
          while (now > p && !peak_running.compare_exchange_weak(p, now)) {
          }
          holding(sem, use, w, missing);
          running.fetch_sub(1);
        });
      }
      CHECK(!g.wait());
      CHECK(peak_running.load() <= 3);
      CHECK(g.counters().peak <= 3);
      CHECK(use.peak() <= sem.size());
      CHECK(missing.load() == 0);
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE(
      "try_go with units starts the task only if a slot and the units are "
      "free now") {
    errgroup::scheduler sched{2};
    weighted sem{5};
    errgroup::group g{sched};
    g.set_limit(2);
    std::latch hold{1};
    std::atomic<int> invoked{0};
    auto held = [&] {
      invoked.fetch_add(1);
      hold.wait();
    };
    CHECK(g.try_go(sem, 3, held));
    CHECK(sem.available() == 2);
    CHECK_FALSE(g.try_go(sem, 3, held));  // units short; the slot is given back
    CHECK(sem.available() == 2);
    CHECK(g.try_go(sem, 2, held));  // so the second slot is still free
    CHECK(sem.available() == 0);
    CHECK_FALSE(g.try_go(sem, 0, held));  // no slot left
    CHECK(g.counters().submitted == 2);
    hold.count_down();
    CHECK(!g.wait());
    CHECK(invoked.load() == 2);
    CHECK(sem.available() == sem.size());

    // try_go never overtakes a waiter queued at the semaphore.
    REQUIRE(sem.try_acquire(3));
    errgroup::error err;
    std::jthread waiter([&] {
      err = sem.acquire(background, 5);
      if (!err) sem.release(5);
    });
    spin_until([&] { return has_waiter(sem); });
    CHECK_FALSE(g.try_go(sem, 1, [] {}));  // 2 units free, but somebody waits
    CHECK(sem.available() == 2);
    sem.release(3);
    waiter.join();
    CHECK(!err);
    CHECK(g.try_go(sem, 5, [] {}));
    CHECK(!g.wait());
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("go and try_go with n above the size or below zero throw") {
    weighted sem{3};
    errgroup::group g;
    bool invoked = false;
    auto f = [&] { invoked = true; };
    CHECK_THROWS_AS(g.go(sem, 4, f), std::invalid_argument);
    CHECK_THROWS_AS(g.go(sem, -1, f), std::invalid_argument);
    CHECK_THROWS_AS((void)g.try_go(sem, 4, f), std::invalid_argument);
    CHECK_THROWS_AS((void)g.try_go(sem, -1, f), std::invalid_argument);
    CHECK(!g.wait());
    CHECK_FALSE(invoked);
    CHECK(g.counters().submitted == 0);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "a waiting go with units on a context group gives up on cancellation") {
    // A thread outside the arena, a task of another group and a task of the
    // same group wait in different ways; each must give up and skip f.
    errgroup::scheduler one{1};
    weighted sem{4};
    REQUIRE(sem.try_acquire(4));
    auto [parent, cancel] = errgroup::with_cancel(background);
    errgroup::group g{parent, one};
    std::atomic<int> invoked{0};
    auto f = [&] { invoked.fetch_add(1); };

    SUBCASE("from a thread outside the scheduler") {
      std::jthread producer([&] { g.go(sem, 1, f); });
      spin_until([&] { return has_waiter(sem); });
      cancel();
      producer.join();
    }
    SUBCASE("from a task of another group") {
      errgroup::group other{one};
      other.go([&] { g.go(sem, 1, f); });
      spin_until([&] { return has_waiter(sem); });
      cancel();
      CHECK(!other.wait());
    }
    SUBCASE("from a task of the same group") {
      std::latch queued{1};
      g.go([&] {
        g.go(sem, 1, f);  // queued: go() returns at once
        queued.count_down();
      });
      queued.wait();
      CHECK(has_waiter(sem));
      CHECK(g.counters().waiting == 1);
      cancel();
    }
    CHECK(g.wait().is<cancelled_error>());
    CHECK(invoked.load() == 0);
    CHECK(g.counters().skipped == 1);
    CHECK(g.counters().waiting == 0);
    CHECK_FALSE(has_waiter(sem));
    CHECK(sem.available() == 0);  // still all ours
    sem.release(4);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "waiting go calls with units are admitted first come first served") {
    // A task of the group queues its go() calls and returns, so their order
    // is known. Each needs more than is left beside the one before it.
    const std::vector<std::int64_t> weights{3, 4, 5, 3, 4, 2, 5};
    errgroup::scheduler one{1};
    weighted sem{5};
    REQUIRE(sem.try_acquire(5));
    std::mutex mu;
    std::vector<int> order;
    errgroup::group g{one};
    std::latch queued{1};
    g.go([&] {
      for (std::size_t i = 0; i < weights.size(); ++i)
        g.go(sem, weights[i], [&, i] {
          std::lock_guard lock(mu);
          order.push_back(static_cast<int>(i));
        });
      queued.count_down();
    });
    queued.wait();
    CHECK(g.counters().waiting == static_cast<std::int64_t>(weights.size()));
    sem.release(2);  // the head needs 3: nobody is admitted
    CHECK_FALSE(g.try_go(sem, 1, [] {}));
    CHECK_FALSE(sem.try_acquire(1));
    CHECK(sem.available() == 2);
    sem.release(3);
    CHECK(!g.wait());
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "ten thousand tasks with random weights and one failure balance the "
      "units and the counters") {
    constexpr int n = 10000;
    // Weights up to a quarter of the size: several tasks fit at once, and the
    // producer still waits for units often.
    constexpr std::int64_t size = 64;
    const std::uint64_t s0 = seed();
    CAPTURE(s0);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{size};
      usage use;
      std::atomic<int> missing{0};
      std::atomic<std::int64_t> invoked{0};
      const errgroup::error boom =
          errgroup::make_error<std::runtime_error>("boom");
      std::mt19937_64 rng{s0 + static_cast<std::uint64_t>(threads)};
      std::uniform_int_distribution<std::int64_t> weight{0, size / 4};
      auto [g, ctx] = errgroup::with_context(background, sched);
      for (int i = 0; i < n; ++i) {
        const std::int64_t w = weight(rng);
        g.go(sem, w, [&, w, i] {
          invoked.fetch_add(1);
          holding(sem, use, w, missing);
          return i == n / 2 ? boom : errgroup::error();
        });
      }
      CHECK(g.wait() == boom);
      CHECK(ctx.cancelled());
      const errgroup::group::stats c = g.counters();
      CAPTURE(c.skipped);
      CHECK(c.submitted == n);
      CHECK(invoked.load() + c.skipped == c.submitted);
      CHECK(c.failed == 1);
      CHECK(c.succeeded == invoked.load() - 1);
      CHECK(c.running == 0);
      CHECK(c.waiting == 0);
      CHECK(missing.load() == 0);
      CHECK(use.peak() <= size);
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE(
      "one semaphore shared by four groups on different schedulers is never "
      "oversubscribed") {
    constexpr std::int64_t size = 8;
    constexpr int tasks = 300;  // per group
    const std::uint64_t s0 = seed();
    CAPTURE(s0);
    errgroup::scheduler s1{1}, s2{2}, s3{1}, s4{2};
    errgroup::scheduler* const schedulers[] = {&s1, &s2, &s3, &s4};
    weighted sem{size};
    usage use;
    std::atomic<int> missing{0};
    std::atomic<int> failed{0};
    std::atomic<int> ran{0};
    {
      std::vector<std::jthread> producers;
      for (std::uint64_t k = 0; k < 4; ++k)
        producers.emplace_back([&, k] {
          std::mt19937_64 rng{s0 + k};
          std::uniform_int_distribution<std::int64_t> weight{1, size};
          errgroup::group g{*schedulers[k]};
          for (int i = 0; i < tasks; ++i) {
            const std::int64_t w = weight(rng);
            g.go(sem, w, [&, w] {
              holding(sem, use, w, missing);
              ran.fetch_add(1);
            });
          }
          if (g.wait()) failed.fetch_add(1);
        });
    }
    CHECK(failed.load() == 0);
    CHECK(ran.load() == 4 * tasks);
    CHECK(missing.load() == 0);
    CHECK(use.peak() <= size);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "nested groups that share one semaphore never deadlock on one or two "
      "threads") {
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{4};
      usage use;
      std::atomic<int> missing{0};
      std::atomic<int> inner_ran{0};
      std::atomic<int> failed{0};
      errgroup::group outer{sched};
      outer.set_limit(2);  // outer tasks hold at most 2 units: inner ones fit
      for (int i = 0; i < 16; ++i)
        outer.go(sem, 1, [&, i] {
          use.enter(1);
          errgroup::group inner{sched};
          for (int j = 0; j < 16; ++j) {
            const std::int64_t w = 1 + (i + j) % 2;
            inner.go(sem, w, [&, w] {
              holding(sem, use, w, missing);
              inner_ran.fetch_add(1);
            });
          }
          if (inner.wait()) failed.fetch_add(1);
          use.leave(1);
        });
      CHECK(!outer.wait());
      CHECK(failed.load() == 0);
      CHECK(inner_ran.load() == 16 * 16);
      CHECK(missing.load() == 0);
      CHECK(use.peak() <= sem.size());
      CHECK(sem.available() == sem.size());
    }
  }

  TEST_CASE(
      "a worker pool of go with one unit per task prints the Collatz steps "
      "(Example_workerPool with a group)") {
    errgroup::scheduler sched{2};
    weighted sem{hardware_threads()};
    std::vector<int> out(32);
    errgroup::group g{sched};
    for (std::size_t i = 0; i < out.size(); ++i)
      g.go(sem, 1,
           [&out, i] { out[i] = collatz_steps(static_cast<int>(i) + 1); });
    CHECK(!g.wait());
    CHECK(go_slice(out) == collatz_32);
    CHECK(sem.available() == sem.size());
  }
}  // TEST_SUITE("weighted.group")

TEST_SUITE("permit") {
  static_assert(!std::is_copy_constructible_v<errgroup::permit>);
  static_assert(!std::is_copy_assignable_v<errgroup::permit>);
  static_assert(std::is_nothrow_move_constructible_v<errgroup::permit>);
  static_assert(std::is_nothrow_move_assignable_v<errgroup::permit>);
  static_assert(std::is_nothrow_default_constructible_v<errgroup::permit>);

  TEST_CASE("a default permit is empty and reset does nothing") {
    errgroup::permit p;
    CHECK_FALSE(p);
    CHECK(p.units() == 0);
    p.reset();
    CHECK_FALSE(p);
  }

  TEST_CASE("acquire_permit holds the units until the permit is destroyed") {
    weighted sem{5};
    {
      auto [p, err] = errgroup::acquire_permit(sem, background, 3);
      REQUIRE(!err);
      CHECK(p);
      CHECK(p.units() == 3);
      CHECK(sem.available() == 2);
    }
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("reset gives the units back at once and empties the permit") {
    weighted sem{5};
    auto [p, err] = errgroup::acquire_permit(sem, background, 4);
    REQUIRE(!err);
    CHECK(sem.available() == 1);
    p.reset();
    CHECK_FALSE(p);
    CHECK(p.units() == 0);
    CHECK(sem.available() == 5);
    p.reset();  // a second reset gives nothing back twice
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE(
      "moving a permit moves its units and assigning over one gives its old "
      "units "
      "back first") {
    weighted sem{6};
    errgroup::permit a = errgroup::try_acquire_permit(sem, 2);
    errgroup::permit b = errgroup::try_acquire_permit(sem, 3);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(sem.available() == 1);

    errgroup::permit c = std::move(a);
    CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
    CHECK(a.units() == 0);
    CHECK(c.units() == 2);
    CHECK(sem.available() == 1);

    c = std::move(b);  // c's 2 units go back; c now holds b's 3
    CHECK(c.units() == 3);
    CHECK_FALSE(b);  // NOLINT(bugprone-use-after-move)
    CHECK(sem.available() == 3);

    a.reset();
    b.reset();
    CHECK(sem.available() == 3);
    c = errgroup::permit();
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("acquire_permit that fails returns an empty permit and the error") {
    weighted sem{4};
    REQUIRE(sem.try_acquire(1));
    SUBCASE("a cancelled context") {
      auto [ctx, cancel] = errgroup::with_cancel(background);
      cancel();
      auto [p, err] = errgroup::acquire_permit(sem, ctx, 1);
      CHECK_FALSE(p);
      CHECK(p.units() == 0);
      CHECK(err.is<cancelled_error>());
      CHECK(err == ctx.err());
    }
    SUBCASE("a deadline that passes while it waits") {
      auto [ctx, cancel] = errgroup::with_timeout(background, 10ms);
      auto [p, err] = errgroup::acquire_permit(sem, ctx, 4);
      CHECK_FALSE(p);
      CHECK(err.is<deadline_exceeded_error>());
    }
    SUBCASE("more than the size") {
      auto [p, err] = errgroup::acquire_permit(sem, background, 5);
      CHECK_FALSE(p);
      CHECK(err.is<std::invalid_argument>());
    }
    SUBCASE("a negative weight") {
      CHECK_THROWS_AS(errgroup::acquire_permit(sem, background, -1),
                      std::invalid_argument);
      CHECK_THROWS_AS(errgroup::try_acquire_permit(sem, -1),
                      std::invalid_argument);
    }
    CHECK(sem.available() == 3);
    sem.release(1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("try_acquire_permit holds the units only if they are free now") {
    weighted sem{4};
    errgroup::permit three = errgroup::try_acquire_permit(sem, 3);
    CHECK(three);
    CHECK(three.units() == 3);
    errgroup::permit two = errgroup::try_acquire_permit(sem, 2);
    CHECK_FALSE(two);
    CHECK(two.units() == 0);
    CHECK(sem.available() == 1);
    errgroup::permit none = errgroup::try_acquire_permit(sem, 0);
    CHECK(none);  // 0 units are free when nobody waits
    CHECK(none.units() == 0);
    three.reset();
    none.reset();
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("a waiting acquire_permit is served when another permit is reset") {
    weighted sem{3};
    errgroup::permit mine = errgroup::try_acquire_permit(sem, 3);
    REQUIRE(mine);
    errgroup::error err;
    std::int64_t units = -1;
    std::int64_t available_while_held = -1;
    std::jthread waiter([&] {
      auto [p, e] = errgroup::acquire_permit(sem, background, 2);
      err = e;
      units = p.units();
      available_while_held = sem.available();
    });
    spin_until([&] { return has_waiter(sem); });
    mine.reset();
    waiter.join();
    CHECK(!err);
    CHECK(units == 2);
    CHECK(available_while_held == 1);
    CHECK(sem.available() == sem.size());
  }

  TEST_CASE("a permit in a task gives its units back when the task throws") {
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      errgroup::scheduler sched{threads};
      weighted sem{4};
      auto [g, ctx] = errgroup::with_context(background, sched);
      for (int i = 0; i < 100; ++i)
        g.go([&sem](const errgroup::context& c) {
          auto [p, err] = errgroup::acquire_permit(sem, c, 2);
          if (err) return err;
          throw std::runtime_error("failed while holding a permit");
        });
      CHECK(g.wait().is<std::runtime_error>());
      CHECK(sem.available() == sem.size());
    }
  }
}  // TEST_SUITE("permit")
