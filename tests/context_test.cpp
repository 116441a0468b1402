// tests/context_test.cpp: errgroup::context, with_cancel, with_deadline and
// with_timeout (<errgroup/context.hpp>, docs/contract.md §2).
#include "errgroup/context.hpp"

#include <doctest/doctest.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

#include "errgroup/detail/node.hpp"
#include "errgroup/scheduler.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::process_threads;

namespace {

using clock_type = errgroup::context::clock;

// Far enough away that no test ever reaches it.
constexpr auto far_away = 1h;

// Counts how often a stop callback ran.
struct count_calls {
  std::atomic<int>* calls;
  void operator()() const noexcept { calls->fetch_add(1); }
};

}  // namespace

TEST_SUITE("context") {
  TEST_CASE("the background context is never cancelled") {
    const errgroup::context bg;
    CHECK(bg == errgroup::context::background());
    CHECK_FALSE(bg.cancelled());
    CHECK_FALSE(static_cast<bool>(bg.err()));
    CHECK_FALSE(static_cast<bool>(bg.cause()));
    CHECK_FALSE(bg.deadline().has_value());
    CHECK_FALSE(bg.stop_token().stop_possible());
    CHECK_FALSE(bg.stop_token().stop_requested());
    CHECK_FALSE(bg.tbb_context().is_group_execution_cancelled());
    CHECK_FALSE(bg.wait_for(1ms));
    CHECK_FALSE(bg.wait_until(clock_type::now() - 1s));

    SUBCASE("cancelling a child leaves background alone") {
      auto [child, cancel] = errgroup::with_cancel(bg);
      cancel();
      CHECK(child.cancelled());
      CHECK_FALSE(errgroup::context::background().cancelled());
      CHECK_FALSE(errgroup::context::background()
                      .tbb_context()
                      .is_group_execution_cancelled());
    }
  }

  TEST_CASE("a live context reports no error") {
    auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
    CHECK_FALSE(ctx.cancelled());
    CHECK_FALSE(static_cast<bool>(ctx.err()));
    CHECK_FALSE(static_cast<bool>(ctx.cause()));
    CHECK(ctx.stop_token().stop_possible());
    CHECK_FALSE(ctx.stop_token().stop_requested());
    CHECK_FALSE(ctx.deadline().has_value());
    CHECK(ctx != errgroup::context());
    const errgroup::context copy = ctx;
    CHECK(copy == ctx);
    CHECK(errgroup::with_cancel(errgroup::context()).ctx != ctx);
  }

  TEST_CASE("cancel() cancels with cancelled_error as err and cause") {
    auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
    cancel();
    CHECK(ctx.cancelled());
    const errgroup::error err = ctx.err();
    CHECK(err.is<errgroup::cancelled_error>());
    CHECK_FALSE(err.is<errgroup::deadline_exceeded_error>());
    CHECK(err.message() == "context canceled");
    CHECK(ctx.cause() == err);
    CHECK(ctx.err() == err);  // the same object every time
    CHECK(ctx.stop_token().stop_requested());
    CHECK(ctx.tbb_context().is_group_execution_cancelled());
    CHECK(ctx.wait_for(0s));
  }

  TEST_CASE("cancel(cause) records the cause and the first cause wins") {
    const errgroup::error boom =
        errgroup::make_error<std::runtime_error>("boom");
    const errgroup::error later =
        errgroup::make_error<std::runtime_error>("later");
    auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());

    SUBCASE("a cause first") {
      cancel(boom);
      CHECK(ctx.err().is<errgroup::cancelled_error>());
      CHECK(ctx.cause() == boom);
      cancel(later);
      cancel();
      CHECK(ctx.cause() == boom);
      CHECK(ctx.err().is<errgroup::cancelled_error>());
    }
    SUBCASE("no cause first") {
      cancel();
      const errgroup::error err = ctx.err();
      cancel(boom);
      CHECK(ctx.cause() == err);
      CHECK(ctx.err() == err);
    }
    SUBCASE("an empty cause is the same as no cause") {
      cancel(errgroup::error());
      CHECK(ctx.cancelled());
      CHECK(ctx.cause() == ctx.err());
      CHECK(ctx.cause().is<errgroup::cancelled_error>());
      cancel(boom);
      CHECK(ctx.cause() == ctx.err());
    }
    SUBCASE("a copy of the cancel function cancels the same context") {
      const errgroup::cancel_func copy = cancel;
      copy(boom);
      CHECK(ctx.cancelled());
      CHECK(ctx.cause() == boom);
    }
  }

  TEST_CASE(
      "cancellation reaches every descendant and never the parent or a "
      "sibling") {
    const errgroup::error cause =
        errgroup::make_error<std::runtime_error>("stop");
    auto [root, cancel_root] = errgroup::with_cancel(errgroup::context());
    auto [a, cancel_a] = errgroup::with_cancel(root);
    auto [sibling, cancel_sibling] = errgroup::with_cancel(root);
    auto [sibling_child, cancel_sibling_child] = errgroup::with_cancel(sibling);
    auto [a1, cancel_a1] = errgroup::with_cancel(a);
    auto [a2, cancel_a2] = errgroup::with_timeout(a, far_away);
    auto [a11, cancel_a11] = errgroup::with_cancel(a1);
    auto [a111, cancel_a111] =
        errgroup::with_deadline(a11, clock_type::now() + far_away);
    const std::vector<errgroup::context> below = {a1, a2, a11, a111};

    cancel_a(cause);

    CHECK(a.cancelled());
    for (const errgroup::context& c : below) {
      CHECK(c.cancelled());
      CHECK(c.stop_token().stop_requested());
      CHECK(c.tbb_context().is_group_execution_cancelled());
    }
    for (const errgroup::context& c : {root, sibling, sibling_child}) {
      CHECK_FALSE(c.cancelled());
      CHECK_FALSE(static_cast<bool>(c.err()));
      CHECK_FALSE(c.tbb_context().is_group_execution_cancelled());
    }

    SUBCASE("contexts derived after the cancel are born cancelled") {
      const errgroup::context late1 = errgroup::with_cancel(a111).ctx;
      const errgroup::context late2 = errgroup::with_timeout(a, far_away).ctx;
      const errgroup::context late3 =
          errgroup::with_cancel(errgroup::with_cancel(a1).ctx).ctx;
      for (const errgroup::context& c : {late1, late2, late3}) {
        CHECK(c.cancelled());
        CHECK(c.err() == a.err());
        CHECK(c.cause() == cause);
        CHECK(c.stop_token().stop_requested());
        CHECK(c.tbb_context().is_group_execution_cancelled());
      }
      CHECK_FALSE(errgroup::with_cancel(sibling).ctx.cancelled());
    }
    SUBCASE("cancelling a child never cancels its parent") {
      cancel_sibling_child();
      CHECK(sibling_child.cancelled());
      CHECK_FALSE(sibling.cancelled());
      CHECK_FALSE(root.cancelled());
    }
    SUBCASE("cancelling the root reaches what is left") {
      cancel_root();
      CHECK(sibling.cancelled());
      CHECK(sibling_child.cancelled());
      CHECK(sibling_child.err() == root.err());
      // a was cancelled first, with its own cause: that stays.
      CHECK(a.cause() == cause);
      CHECK(a111.cause() == cause);
    }
  }

  TEST_CASE(
      "children of a context cancelled with a cause get its err() and "
      "cause()") {
    const errgroup::error cause =
        errgroup::make_error<std::invalid_argument>("bad input");
    auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
    const errgroup::context child = errgroup::with_cancel(parent).ctx;
    const errgroup::context grandchild =
        errgroup::with_timeout(child, far_away).ctx;
    cancel(cause);
    const errgroup::context born = errgroup::with_cancel(grandchild).ctx;
    for (const errgroup::context& c : {child, grandchild, born}) {
      CHECK(c.err() == parent.err());
      CHECK(c.err().is<errgroup::cancelled_error>());
      CHECK(c.cause() == cause);
      CHECK(c.cause().message() == "bad input");
    }
  }

  TEST_CASE("every cancelled context's err() is the same object") {
    auto [a, cancel_a] = errgroup::with_cancel(errgroup::context());
    auto [b, cancel_b] = errgroup::with_cancel(errgroup::context());
    auto [c, cancel_c] = errgroup::with_timeout(errgroup::context(), far_away);
    cancel_a();
    cancel_b(errgroup::make_error<std::runtime_error>("b"));
    std::jthread([cancel = cancel_c] { cancel(); }).join();
    CHECK(a.err() == b.err());
    CHECK(a.err() == c.err());
    CHECK(a.err() == a.cause());
    CHECK(a.err().as<errgroup::cancelled_error>() ==
          c.err().as<errgroup::cancelled_error>());

    SUBCASE("and every expired context's err() is another single object") {
      const errgroup::context d1 =
          errgroup::with_deadline(errgroup::context(), clock_type::now() - 1s)
              .ctx;
      const errgroup::context d2 =
          errgroup::with_timeout(errgroup::context(), 0s).ctx;
      REQUIRE(d1.cancelled());
      REQUIRE(d2.cancelled());
      CHECK(d1.err() == d2.err());
      CHECK(d1.err() != a.err());
    }
  }

  TEST_CASE(
      "stop_token() is requested exactly when the context is "
      "cancelled") {
    auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
    const errgroup::context child = errgroup::with_cancel(ctx).ctx;
    std::atomic<int> calls{0}, child_calls{0};
    std::stop_callback<count_calls> cb(ctx.stop_token(), count_calls{&calls});
    std::stop_callback<count_calls> child_cb(child.stop_token(),
                                             count_calls{&child_calls});
    CHECK(calls.load() == 0);
    CHECK_FALSE(ctx.stop_token().stop_requested());

    cancel();
    CHECK(ctx.stop_token().stop_requested());
    CHECK(calls.load() == 1);
    CHECK(child_calls.load() == 1);

    cancel();
    cancel(errgroup::make_error<std::runtime_error>("again"));
    CHECK(calls.load() == 1);
    CHECK(child_calls.load() == 1);

    SUBCASE("a callback registered after the cancel runs at once, once") {
      std::atomic<int> late{0};
      std::stop_callback<count_calls> late_cb(ctx.stop_token(),
                                              count_calls{&late});
      CHECK(late.load() == 1);
      cancel();
      CHECK(late.load() == 1);
    }
    SUBCASE("a deadline requests the stop too") {
      auto [timed, cancel_timed] =
          errgroup::with_timeout(errgroup::context(), 1ms);
      std::atomic<int> timed_calls{0};
      std::stop_callback<count_calls> timed_cb(timed.stop_token(),
                                               count_calls{&timed_calls});
      REQUIRE(timed.wait_for(60s));
      CHECK(timed.stop_token().stop_requested());
      CHECK(timed_calls.load() == 1);
      cancel_timed();
      CHECK(timed_calls.load() == 1);
    }
  }

  TEST_CASE("deadline() is the nearest deadline on the path to the root") {
    const auto now = clock_type::now();
    const auto t1 = now + 2h;
    const auto t0 = now + 1h;  // earlier than t1
    const auto t2 = now + 3h;  // later than t1

    const errgroup::context plain =
        errgroup::with_cancel(errgroup::context()).ctx;
    CHECK_FALSE(plain.deadline().has_value());

    const errgroup::context d1 = errgroup::with_deadline(plain, t1).ctx;
    REQUIRE(d1.deadline().has_value());
    CHECK(*d1.deadline() == t1);
    CHECK_FALSE(plain.deadline().has_value());

    const errgroup::context under = errgroup::with_cancel(d1).ctx;
    CHECK(under.deadline() == std::optional(t1));

    const errgroup::context later = errgroup::with_deadline(under, t2).ctx;
    CHECK(later.deadline() == std::optional(t1));

    const errgroup::context sooner = errgroup::with_deadline(under, t0).ctx;
    CHECK(sooner.deadline() == std::optional(t0));
    CHECK(errgroup::with_cancel(sooner).ctx.deadline() == std::optional(t0));
    CHECK(d1.deadline() == std::optional(t1));

    const errgroup::context timeout =
        errgroup::with_timeout(errgroup::context(), 90min).ctx;
    REQUIRE(timeout.deadline().has_value());
    CHECK(*timeout.deadline() >= now + 90min);
    CHECK(*timeout.deadline() <= clock_type::now() + 90min);
  }

  TEST_CASE(
      "with_timeout and with_deadline cancel with "
      "deadline_exceeded_error when the time comes") {
    const auto check_expired = [](const errgroup::context& ctx) {
      REQUIRE(ctx.wait_for(60s));
      CHECK(ctx.cancelled());
      CHECK(ctx.err().is<errgroup::deadline_exceeded_error>());
      CHECK_FALSE(ctx.err().is<errgroup::cancelled_error>());
      CHECK(ctx.err().message() == "context deadline exceeded");
      CHECK(ctx.cause() == ctx.err());
      CHECK(ctx.stop_token().stop_requested());
      CHECK(ctx.tbb_context().is_group_execution_cancelled());
    };
    SUBCASE("with_timeout") {
      auto [ctx, cancel] = errgroup::with_timeout(errgroup::context(), 5ms);
      check_expired(ctx);
      cancel(errgroup::make_error<std::runtime_error>("too late"));
      CHECK(ctx.err().is<errgroup::deadline_exceeded_error>());
      CHECK(ctx.cause().is<errgroup::deadline_exceeded_error>());
    }
    SUBCASE("with_deadline") {
      auto [ctx, cancel] =
          errgroup::with_deadline(errgroup::context(), clock_type::now() + 5ms);
      check_expired(ctx);
    }
    SUBCASE("a deadline under a cancellable parent") {
      auto [parent, cancel_parent] = errgroup::with_cancel(errgroup::context());
      auto [ctx, cancel] = errgroup::with_timeout(parent, 5ms);
      check_expired(ctx);
      CHECK_FALSE(parent.cancelled());
    }
    SUBCASE("many deadlines fire in any order of creation") {
      std::vector<errgroup::context> contexts;
      for (int i = 0; i < 20; ++i)
        contexts.push_back(
            errgroup::with_timeout(errgroup::context(),
                                   std::chrono::microseconds(2000 - 100 * i))
                .ctx);
      for (const errgroup::context& c : contexts) check_expired(c);
    }
  }

  TEST_CASE("a deadline in the past gives a born-cancelled context") {
    const std::size_t timers = errgroup::detail::pending_timers();
    const errgroup::context past =
        errgroup::with_deadline(errgroup::context(), clock_type::now() - 1s)
            .ctx;
    const errgroup::context zero =
        errgroup::with_timeout(errgroup::context(), 0s).ctx;
    const errgroup::context negative =
        errgroup::with_timeout(errgroup::context(), -5min).ctx;
    for (const errgroup::context& c : {past, zero, negative}) {
      CHECK(c.cancelled());
      CHECK(c.err().is<errgroup::deadline_exceeded_error>());
      CHECK(c.cause() == c.err());
      CHECK(c.stop_token().stop_requested());
      CHECK(c.tbb_context().is_group_execution_cancelled());
      CHECK(errgroup::with_cancel(c).ctx.cancelled());
    }
    CHECK(errgroup::detail::pending_timers() == timers);

    SUBCASE("also under a live parent, which stays live") {
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      const errgroup::context child =
          errgroup::with_deadline(parent, clock_type::now() - 1ms).ctx;
      CHECK(child.cancelled());
      CHECK(child.err().is<errgroup::deadline_exceeded_error>());
      CHECK_FALSE(parent.cancelled());
    }
  }

  TEST_CASE(
      "a child of a context whose deadline passed reports "
      "deadline_exceeded_error") {
    auto [parent, cancel_parent] =
        errgroup::with_timeout(errgroup::context(), 5ms);
    auto [child, cancel_child] = errgroup::with_cancel(parent);
    const errgroup::context grandchild =
        errgroup::with_timeout(child, far_away).ctx;
    REQUIRE(grandchild.wait_for(60s));
    const errgroup::context born = errgroup::with_cancel(child).ctx;
    for (const errgroup::context& c : {child, grandchild, born}) {
      CHECK(c.cancelled());
      CHECK(c.err().is<errgroup::deadline_exceeded_error>());
      CHECK(c.err() == parent.err());
      CHECK(c.cause() == parent.err());
    }
    cancel_child(errgroup::make_error<std::runtime_error>("too late"));
    CHECK(child.cause().is<errgroup::deadline_exceeded_error>());
  }

  TEST_CASE(
      "wait_for and wait_until return true when cancelled from another "
      "thread") {
    for (int waiters : {1, 2, 4, 8}) {
      CAPTURE(waiters);
      auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
      std::latch ready(waiters + 1);
      std::atomic<int> woke{0};
      {
        std::vector<std::jthread> threads;
        for (int i = 0; i < waiters; ++i)
          threads.emplace_back([&, i, c = ctx] {
            ready.arrive_and_wait();
            const bool done = i % 2 == 0
                                  ? c.wait_for(60s)
                                  : c.wait_until(clock_type::now() + 60s);
            if (done && c.cancelled()) woke.fetch_add(1);
          });
        std::jthread canceller([&, cancel_fn = cancel] {
          ready.arrive_and_wait();
          cancel_fn();
        });
      }
      CHECK(woke.load() == waiters);
      CHECK(ctx.wait_for(0s));
      CHECK(ctx.wait_until(clock_type::now() - 1s));
    }
  }

  TEST_CASE("wait_for and wait_until return false on timeout") {
    auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
    CHECK_FALSE(ctx.wait_for(2ms));
    CHECK_FALSE(ctx.wait_until(clock_type::now() + 2ms));
    CHECK_FALSE(ctx.wait_for(0s));
    CHECK_FALSE(ctx.wait_until(clock_type::now() - 1s));
    CHECK_FALSE(ctx.cancelled());
    const auto before = clock_type::now();
    CHECK_FALSE(ctx.wait_for(3ms));
    CHECK(clock_type::now() - before >= 3ms);  // it did wait
  }

  TEST_CASE("cancelling early removes the timer") {
    const std::size_t base = errgroup::detail::pending_timers();

    SUBCASE("cancel()") {
      auto [ctx, cancel] =
          errgroup::with_timeout(errgroup::context(), far_away);
      CHECK(errgroup::detail::pending_timers() == base + 1);
      cancel();
      CHECK(errgroup::detail::pending_timers() == base);
      CHECK(ctx.err().is<errgroup::cancelled_error>());
    }
    SUBCASE("cancelling the parent") {
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      const errgroup::context a = errgroup::with_timeout(parent, far_away).ctx;
      // Nearer than a's deadline, so that it needs a timer of its own.
      const errgroup::context b =
          errgroup::with_timeout(errgroup::with_cancel(a).ctx, 30min).ctx;
      CHECK(errgroup::detail::pending_timers() == base + 2);
      cancel();
      CHECK(errgroup::detail::pending_timers() == base);
      CHECK(b.err().is<errgroup::cancelled_error>());
    }
    SUBCASE("dropping the context and its cancel function") {
      {
        auto [ctx, cancel] = errgroup::with_deadline(
            errgroup::context(), clock_type::now() + far_away);
        CHECK(errgroup::detail::pending_timers() == base + 1);
      }
      CHECK(errgroup::detail::pending_timers() == base);
    }
    SUBCASE("a deadline that fired") {
      const errgroup::context ctx =
          errgroup::with_timeout(errgroup::context(), 1ms).ctx;
      REQUIRE(ctx.wait_for(60s));
      CHECK(errgroup::detail::pending_timers() == base);
    }
    SUBCASE("a deadline no nearer than the parent's adds no timer") {
      auto [parent, cancel] = errgroup::with_timeout(errgroup::context(), 1h);
      CHECK(errgroup::detail::pending_timers() == base + 1);
      const errgroup::context child = errgroup::with_timeout(parent, 2h).ctx;
      CHECK(errgroup::detail::pending_timers() == base + 1);
      cancel();
      CHECK(errgroup::detail::pending_timers() == base);
      CHECK(child.cancelled());
    }
  }

  TEST_CASE("removing the deadline the timer thread waits for is safe") {
    // Each round makes a new earliest deadline (the timer thread wakes and
    // waits for it), removes it, and the next round wakes the timer thread
    // again. Under AddressSanitizer this catches a timer that still reads a
    // removed entry.
    const std::size_t base = errgroup::detail::pending_timers();
    const auto start = clock_type::now() + far_away;
    for (int i = 0; i < 2'000; ++i) {
      auto [ctx, cancel] = errgroup::with_deadline(
          errgroup::context(), start - std::chrono::microseconds(i));
      if (i % 2 == 0) cancel();  // the other half are dropped
    }
    CHECK(errgroup::detail::pending_timers() == base);
    const errgroup::context soon =
        errgroup::with_timeout(errgroup::context(), 1ms).ctx;
    CHECK(soon.wait_for(60s));
    CHECK(soon.err().is<errgroup::deadline_exceeded_error>());
    CHECK(errgroup::detail::pending_timers() == base);
  }

  TEST_CASE("100000 deadlines share one timer thread") {
    constexpr std::size_t count = 100'000;
    // The timer thread may start during this test: it is the one extra
    // thread allowed. (The first context on a thread sets oneTBB up, which
    // may start its workers: done before counting.)
    (void)errgroup::with_cancel(errgroup::context());
    const int threads_before = process_threads();
    const std::size_t timers_before = errgroup::detail::pending_timers();
    {
      std::vector<errgroup::context> contexts;
      contexts.reserve(count);
      const auto start = clock_type::now();
      for (std::size_t i = 0; i < count; ++i)
        contexts.push_back(
            errgroup::with_deadline(
                errgroup::context(),
                start + far_away + std::chrono::microseconds(i % 977))
                .ctx);
      CHECK(errgroup::detail::pending_timers() == timers_before + count);
      CHECK(process_threads() <= threads_before + 1);
      CHECK_FALSE(contexts.front().cancelled());
      CHECK_FALSE(contexts.back().cancelled());
    }
    CHECK(errgroup::detail::pending_timers() == timers_before);
    CHECK(process_threads() <= threads_before + 1);
  }

  TEST_CASE("dropping contexts frees their nodes") {
    const long base = errgroup::detail::node::live_nodes();
    SUBCASE("a tree dropped live") {
      {
        auto [root, cancel] = errgroup::with_cancel(errgroup::context());
        std::vector<errgroup::context> keep;
        for (int i = 0; i < 10; ++i) {
          const errgroup::context child = errgroup::with_cancel(root).ctx;
          keep.push_back(errgroup::with_timeout(child, far_away).ctx);
          keep.push_back(errgroup::with_cancel(keep.back()).ctx);
        }
        CHECK(errgroup::detail::node::live_nodes() == base + 1 + 30);
      }
      CHECK(errgroup::detail::node::live_nodes() == base);
    }
    SUBCASE("a tree dropped after cancellation") {
      {
        auto [root, cancel] = errgroup::with_cancel(errgroup::context());
        const errgroup::context leaf =
            errgroup::with_cancel(errgroup::with_cancel(root).ctx).ctx;
        cancel(errgroup::make_error<std::runtime_error>("done"));
        const errgroup::context born = errgroup::with_cancel(leaf).ctx;
        CHECK(born.cancelled());
        CHECK(errgroup::detail::node::live_nodes() == base + 4);
      }
      CHECK(errgroup::detail::node::live_nodes() == base);
    }
    SUBCASE("a cancel function keeps its context's node alive") {
      std::optional<errgroup::cancel_func> cancel;
      {
        auto made = errgroup::with_cancel(errgroup::context());
        cancel.emplace(made.cancel);
      }
      CHECK(errgroup::detail::node::live_nodes() == base + 1);
      (*cancel)();
      cancel.reset();
      CHECK(errgroup::detail::node::live_nodes() == base);
    }
    SUBCASE("background has no node") {
      { const errgroup::context bg = errgroup::context::background(); }
      CHECK(errgroup::detail::node::live_nodes() == base);
    }
  }

  TEST_CASE("a long-lived parent does not keep dead children alive") {
    auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
    const long base = errgroup::detail::node::live_nodes();
    const std::size_t timers = errgroup::detail::pending_timers();
    for (int i = 0; i < 10'000; ++i) {
      auto [child, cancel_child] =
          i % 2 == 0 ? errgroup::with_cancel(parent)
                     : errgroup::with_timeout(parent, far_away);
      if (i % 3 == 0) cancel_child();
    }
    CHECK(errgroup::detail::node::live_nodes() == base);
    CHECK(errgroup::detail::pending_timers() == timers);
    // The parent's cancellation finds no dead child to touch.
    const errgroup::context survivor = errgroup::with_cancel(parent).ctx;
    cancel();
    CHECK(survivor.cancelled());
    CHECK(errgroup::detail::node::live_nodes() == base + 1);
  }

  TEST_CASE(
      "a oneTBB algorithm under tbb_context() stops when the context is "
      "cancelled") {
    constexpr int total = 1'000'000;
    constexpr std::size_t grain = 1'000;
    // run(sched, ctx, cancel) runs parallel_for over total iterations, one
    // chunk of grain per task, under ctx.tbb_context(), and returns how many
    // iterations ran. With a cancel function, the first chunk calls it and
    // every other chunk waits until oneTBB sees the cancellation, so that no
    // chunk can finish the loop before the cancel takes effect. Then each
    // thread of the arena runs at most the one chunk it had started.
    const auto run = [](errgroup::scheduler& sched,
                        const errgroup::context& ctx,
                        const errgroup::cancel_func* cancel) {
      std::atomic<int> iterations{0};
      sched.arena().execute([&] {
        tbb::parallel_for(
            tbb::blocked_range<int>(0, total, grain),
            [&](const tbb::blocked_range<int>& r) {
              const bool first =
                  iterations.fetch_add(static_cast<int>(r.size())) == 0;
              if (cancel == nullptr) return;
              if (first)
                (*cancel)();
              else
                while (!ctx.tbb_context().is_group_execution_cancelled())
                  std::this_thread::yield();
            },
            tbb::simple_partitioner(), ctx.tbb_context());
      });
      return iterations.load();
    };

    SUBCASE("cancelled from inside the loop body") {
      for (int threads : {1, 2, 4, 8}) {
        CAPTURE(threads);
        errgroup::scheduler sched{threads};
        auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
        const int iterations = run(sched, ctx, &cancel);
        CHECK(iterations > 0);
        CHECK(iterations < total);
        CHECK(iterations <=
              sched.arena().max_concurrency() * static_cast<int>(grain));
        CHECK(ctx.cancelled());
        CHECK(ctx.tbb_context().is_group_execution_cancelled());
      }
    }
    SUBCASE("cancelled through a parent from inside the loop body") {
      for (int threads : {1, 2, 4, 8}) {
        CAPTURE(threads);
        errgroup::scheduler sched{threads};
        auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
        const errgroup::context ctx = errgroup::with_cancel(parent).ctx;
        const int iterations = run(sched, ctx, &cancel);
        CHECK(iterations < total);
        CHECK(iterations <=
              sched.arena().max_concurrency() * static_cast<int>(grain));
        CHECK(ctx.cancelled());
        CHECK(ctx.tbb_context().is_group_execution_cancelled());
      }
    }
    SUBCASE("already cancelled: no iteration runs") {
      for (int threads : {1, 2, 4, 8}) {
        CAPTURE(threads);
        errgroup::scheduler sched{threads};
        auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
        cancel();
        CHECK(run(sched, ctx, nullptr) == 0);
        CHECK(ctx.tbb_context().is_group_execution_cancelled());
      }
    }
    SUBCASE("live: every iteration runs") {
      for (int threads : {1, 2, 4, 8}) {
        CAPTURE(threads);
        errgroup::scheduler sched{threads};
        auto [ctx, cancel] = errgroup::with_cancel(errgroup::context());
        CHECK(run(sched, ctx, nullptr) == total);
        CHECK_FALSE(ctx.cancelled());
        CHECK_FALSE(ctx.tbb_context().is_group_execution_cancelled());
      }
    }
  }

  TEST_CASE("concurrent cancels: exactly one cause wins and everyone sees it") {
    constexpr int rounds = 200;
    for (int threads : {1, 2, 4, 8}) {
      CAPTURE(threads);
      for (int round = 0; round < rounds; ++round) {
        auto made = errgroup::with_cancel(errgroup::context());
        auto& ctx = made.ctx;
        auto& cancel = made.cancel;
        const errgroup::context child = errgroup::with_cancel(ctx).ctx;
        std::atomic<int> stops{0};
        std::stop_callback<count_calls> cb(ctx.stop_token(),
                                           count_calls{&stops});
        const auto n = static_cast<std::size_t>(threads);
        std::vector<errgroup::error> causes, seen_err(n), seen_cause(n);
        for (int i = 0; i < threads; ++i)
          causes.push_back(
              errgroup::make_error<std::runtime_error>(std::to_string(i)));
        std::latch start(threads);
        {
          std::vector<std::jthread> pool;
          for (int i = 0; i < threads; ++i)
            pool.emplace_back([&, i, cancel_fn = cancel] {
              const auto slot = static_cast<std::size_t>(i);
              start.arrive_and_wait();
              cancel_fn(causes[slot]);
              seen_err[slot] = ctx.err();
              seen_cause[slot] = ctx.cause();
            });
        }
        int winners = 0;
        for (const errgroup::error& c : causes) winners += c == ctx.cause();
        REQUIRE(winners == 1);
        REQUIRE(stops.load() == 1);
        for (std::size_t i = 0; i < seen_err.size(); ++i) {
          REQUIRE(seen_err[i] == ctx.err());
          REQUIRE(seen_cause[i] == ctx.cause());
        }
        REQUIRE(ctx.err().is<errgroup::cancelled_error>());
        REQUIRE(child.err() == ctx.err());
        REQUIRE(child.cause() == ctx.cause());
      }
    }
  }

  TEST_CASE(
      "a context cancelled at once with its parent has one consistent "
      "cause") {
    constexpr int rounds = 200;
    for (int threads : {1, 2, 4, 8}) {
      CAPTURE(threads);
      for (int round = 0; round < rounds; ++round) {
        auto [parent, cancel_parent] =
            errgroup::with_cancel(errgroup::context());
        auto [child, cancel_child] = errgroup::with_cancel(parent);
        const errgroup::context grandchild = errgroup::with_cancel(child).ctx;
        const errgroup::error parent_cause =
            errgroup::make_error<std::runtime_error>("parent");
        const errgroup::error child_cause =
            errgroup::make_error<std::runtime_error>("child");
        std::latch start(threads + 1);
        {
          std::vector<std::jthread> pool;
          for (int i = 0; i < threads; ++i)
            pool.emplace_back([&, i, cp = cancel_parent, cc = cancel_child] {
              start.arrive_and_wait();
              if (i % 2 == 0)
                cp(parent_cause);
              else
                cc(child_cause);
            });
          start.arrive_and_wait();
        }
        REQUIRE(parent.cause() == parent_cause);
        REQUIRE(child.cancelled());
        REQUIRE(
            (child.cause() == parent_cause || child.cause() == child_cause));
        REQUIRE(grandchild.cause() == child.cause());
        REQUIRE(grandchild.err() == child.err());
      }
    }
  }

  TEST_CASE(
      "contexts derived while the parent is being cancelled all end up "
      "cancelled") {
    constexpr int per_thread = 200;
    for (int threads : {1, 2, 4, 8}) {
      CAPTURE(threads);
      auto root = errgroup::with_cancel(errgroup::context());
      auto& parent = root.ctx;
      auto& cancel = root.cancel;
      const errgroup::error cause =
          errgroup::make_error<std::runtime_error>("shutdown");
      std::vector<std::vector<errgroup::context>> made(
          static_cast<std::size_t>(threads));
      std::latch start(threads + 1);
      {
        std::vector<std::jthread> pool;
        for (int i = 0; i < threads; ++i)
          pool.emplace_back([&, i] {
            auto& mine = made[static_cast<std::size_t>(i)];
            start.arrive_and_wait();
            for (int k = 0; k < per_thread; ++k)
              mine.push_back(errgroup::with_cancel(parent).ctx);
          });
        start.arrive_and_wait();
        cancel(cause);
      }
      for (const auto& mine : made)
        for (const errgroup::context& c : mine) {
          REQUIRE(c.cancelled());
          REQUIRE(c.cause() == cause);
          REQUIRE(c.tbb_context().is_group_execution_cancelled());
        }
    }
  }
}  // TEST_SUITE("context")
