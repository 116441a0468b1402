// Tests of life inside oneTBB applications (docs/contract.md §6):
// groups and contexts in parallel_for bodies, flow-graph nodes and pipeline
// filters; outer cancellation; tbb_context() for algorithms;
// global_control; many live groups; unwinding. Each TEST_CASE runs in its
// own CTest process with a timeout, so a case that hangs fails alone.
#include <doctest/doctest.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using errgroup::error;
using test::spin_until;
using test::thread_counts;

namespace {

using ms = std::chrono::duration<double, std::milli>;

// outer_cancel says how the enclosing oneTBB work is cancelled.
enum class outer_cancel { exception, cancel_group_execution };

// in_cancelled_body(how, inner, took) runs a parallel_for of two bodies in
// an arena of two threads: body 0 runs inner(started) and body 1 cancels the
// loop once inner has called started(). Returns whether the loop threw;
// *took (if given) is how long the loop took to return after the cancel.
template <class Inner>
bool in_cancelled_body(outer_cancel how, Inner inner,
                       std::chrono::steady_clock::duration* took = nullptr) {
  tbb::task_arena two{2};
  bool threw = false;
  std::atomic<std::chrono::steady_clock::rep> cancelled_at{0};
  two.execute([&] {
    std::atomic<bool> started{false};
    tbb::task_group_context outer;
    try {
      tbb::parallel_for(
          tbb::blocked_range<int>(0, 2, 1),
          [&](const tbb::blocked_range<int>& r) {
            if (r.begin() == 0) {
              inner([&] { started = true; });
              return;
            }
            REQUIRE(spin_until([&] { return started.load(); }));
            cancelled_at =
                std::chrono::steady_clock::now().time_since_epoch().count();
            if (how == outer_cancel::exception)
              throw std::runtime_error("outer body failed");
            outer.cancel_group_execution();
          },
          tbb::simple_partitioner(), outer);
    } catch (const std::runtime_error&) {
      threw = true;
    }
    if (took != nullptr)
      *took = std::chrono::steady_clock::now().time_since_epoch() -
              std::chrono::steady_clock::duration(cancelled_at.load());
  });
  return threw;
}

}  // namespace

TEST_SUITE("embedding") {
  // ---- own work: oneTBB work nested in a task counts as that task ----

  TEST_CASE("go from parallel_for bodies inside a task never deadlocks") {
    for (int threads : thread_counts) {
      for (int limit : {1, 2}) {
        CAPTURE(threads);
        CAPTURE(limit);
        errgroup::scheduler s{threads};
        errgroup::group g{s};
        g.set_limit(limit);
        std::atomic<int> ran{0};
        g.go([&] {
          tbb::parallel_for(0, 100, [&](int) { g.go([&] { ++ran; }); });
        });
        CHECK_FALSE(g.wait());
        CHECK(ran.load() == 100);
      }
    }
  }

  TEST_CASE("go from a raw task_group inside a task never deadlocks") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(1);
      std::atomic<int> ran{0};
      g.go([&] {
        tbb::task_group tg;
        for (int i = 0; i < 50; ++i) tg.run([&] { g.go([&] { ++ran; }); });
        tg.wait();
      });
      CHECK_FALSE(g.wait());
      CHECK(ran.load() == 50);
    }
  }

  TEST_CASE("wait from oneTBB work nested in a task throws the misuse error") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::group g{s};
      g.set_limit(1);
      std::atomic<int> misuse{0};
      g.go([&] {
        tbb::parallel_for(0, 8, [&](int) {
          try {
            (void)g.wait();
          } catch (const std::logic_error& e) {
            if (std::string(e.what()).find("would wait for itself") !=
                std::string::npos)
              ++misuse;
          }
        });
      });
      CHECK_FALSE(g.wait());
      CHECK(misuse.load() == 8);
    }
  }

  // ---- belonging: outer cancellation reaches groups and contexts ----

  TEST_CASE(
      "a context group made in a body skips its queued tasks when the "
      "outer loop fails") {
    for (outer_cancel how :
         {outer_cancel::exception, outer_cancel::cancel_group_execution}) {
      CAPTURE(static_cast<int>(how));
      std::atomic<int> ran{0};
      error result;
      bool ctx_cancelled = false, stop_requested = false;
      errgroup::group::stats c;
      const bool threw = in_cancelled_body(how, [&](auto started) {
        errgroup::group g{errgroup::context()};
        const errgroup::context ctx = g.get_context();
        g.set_limit(1);
        g.go([&, started](const errgroup::context& tc) {
          for (int i = 0; i < 10; ++i) g.go([&] { ++ran; });  // queued
          started();
          REQUIRE(spin_until([&] { return tc.cancelled(); }));
        });
        result = g.wait();
        ctx_cancelled =
            ctx.cancelled() && ctx.err().is<errgroup::cancelled_error>();
        stop_requested = ctx.stop_token().stop_requested();
        c = g.counters();
      });
      CHECK(threw == (how == outer_cancel::exception));
      CHECK(result.is<errgroup::cancelled_error>());
      CHECK(ctx_cancelled);
      CHECK(stop_requested);
      CHECK(ran.load() == 0);
      CHECK(c.skipped == 10);
    }
  }

  TEST_CASE(
      "a task waiting only on its stop_token learns of the outer "
      "cancellation") {
    // Nobody asks cancelled(): the service notices the cancelled oneTBB
    // context and requests the stop.
    bool woke = false;
    error result;
    in_cancelled_body(outer_cancel::cancel_group_execution, [&](auto started) {
      errgroup::group g{errgroup::context()};
      const errgroup::context ctx = g.get_context();
      g.go([&, started](const errgroup::context& tc) {
        started();
        woke = tc.wait_for(30s);
      });
      result = g.wait();
    });
    CHECK(woke);
    CHECK(result.is<errgroup::cancelled_error>());
  }

  TEST_CASE(
      "a plain group made in a body skips its tasks once the outer "
      "loop is cancelled") {
    std::atomic<int> ran{0};
    error result;
    in_cancelled_body(outer_cancel::exception, [&](auto started) {
      errgroup::group g;
      g.set_limit(1);
      g.go([&, started] {
        for (int i = 0; i < 10; ++i) g.go([&] { ++ran; });
        started();
        REQUIRE(spin_until([] {
          return tbb::task::current_context()->is_group_execution_cancelled();
        }));
      });
      result = g.wait();
    });
    CHECK(ran.load() == 0);
    CHECK(result.is<errgroup::cancelled_error>());
  }

  TEST_CASE(
      "a context made in a cancelled body is born cancelled unless "
      "isolated") {
    bool belongs = false, isolated_live = false, isolated_group_ran = false;
    in_cancelled_body(outer_cancel::cancel_group_execution, [&](auto started) {
      started();
      REQUIRE(spin_until([] {
        return tbb::task::current_context()->is_group_execution_cancelled();
      }));
      const errgroup::context bg;
      belongs =
          errgroup::with_cancel(bg).ctx.err().is<errgroup::cancelled_error>();
      isolated_live =
          !errgroup::with_cancel(errgroup::isolated, bg).ctx.cancelled();
      errgroup::group g{errgroup::isolated};
      std::atomic<bool> ran{false};
      g.go([&] { ran = true; });
      isolated_group_ran = !g.wait() && ran.load();
    });
    CHECK(belongs);
    CHECK(isolated_live);
    CHECK(isolated_group_ran);
  }

  TEST_CASE(
      "the outer loop returns as fast as with a raw task_group when "
      "the nested task is skipped") {
    // Body 0 makes a group once the loop is cancelled, and starts a 120 ms
    // task in it: with a raw task_group oneTBB skips it; so must we.
    const auto run = [](bool ours) {
      std::atomic<bool> nested_ran{false};
      std::chrono::steady_clock::duration took{};
      in_cancelled_body(
          outer_cancel::exception,
          [&](auto started) {
            started();
            REQUIRE(spin_until([] {
              return tbb::task::current_context()
                  ->is_group_execution_cancelled();
            }));
            const auto nested = [&] {
              nested_ran = true;
              test::busy_for(120ms);
            };
            if (ours) {
              errgroup::group g;
              g.go(nested);
              (void)g.wait();
            } else {
              tbb::task_group tg;
              tg.run(nested);
              tg.wait();
            }
          },
          &took);
      return std::make_pair(ms(took).count(), nested_ran.load());
    };
    const auto [raw_ms, raw_ran] = run(false);
    const auto [our_ms, our_ran] = run(true);
    MESSAGE("from the cancel, the outer parallel_for returned after "
            << our_ms << " ms with errgroup, " << raw_ms
            << " ms with tbb::task_group");
    CHECK_FALSE(raw_ran);
    CHECK_FALSE(our_ran);
  }

  TEST_CASE("with_tbb_context binds a context to a oneTBB context") {
    tbb::task_group_context tc;
    auto [ctx, cancel] = errgroup::with_tbb_context(errgroup::context(), tc);
    CHECK_FALSE(ctx.cancelled());
    SUBCASE("cancelled() sees the oneTBB cancellation") {
      tc.cancel_group_execution();
      CHECK(ctx.cancelled());
      CHECK(ctx.err().is<errgroup::cancelled_error>());
    }
    SUBCASE("the stop_token is requested without anyone asking") {
      std::thread t([&] { tc.cancel_group_execution(); });
      CHECK(ctx.wait_for(30s));
      t.join();
    }
    SUBCASE("cancelling the errgroup context leaves the oneTBB one alone") {
      cancel();
      CHECK(ctx.cancelled());
      CHECK_FALSE(tc.is_group_execution_cancelled());
    }
    SUBCASE("an exception in work under the oneTBB context cancels it") {
      CHECK_THROWS_AS(
          tbb::parallel_for(
              0, 10, [](int) { throw std::runtime_error("x"); }, tc),
          std::runtime_error);
      CHECK(ctx.cancelled());
    }
  }

  TEST_CASE(
      "with_tbb_context on a cancelled oneTBB context is born "
      "cancelled") {
    tbb::task_group_context tc;
    tc.cancel_group_execution();
    const errgroup::context ctx =
        errgroup::with_tbb_context(errgroup::context(), tc).ctx;
    CHECK(ctx.err().is<errgroup::cancelled_error>());
  }

  // ---- tbb_context() is for algorithms ----

  TEST_CASE(
      "an exception escaping an algorithm is returned by wait never "
      "thrown") {
    for (bool with_ctx : {false, true}) {
      CAPTURE(with_ctx);
      errgroup::group g =
          with_ctx ? errgroup::group(errgroup::context()) : errgroup::group();
      g.go([](const errgroup::context& c) {
        tbb::parallel_for(
            0, 100,
            [](int i) {
              if (i == 50) throw std::invalid_argument("bad element");
            },
            c.tbb_context());
      });
      error e;
      CHECK_NOTHROW(e = g.wait());
      CHECK(e.is<std::invalid_argument>());
      CHECK_NOTHROW(e = g.wait());
      CHECK(e.is<std::invalid_argument>());
    }
  }

  TEST_CASE("a task that catches its algorithm's failure carries on") {
    for (bool with_ctx : {false, true}) {
      CAPTURE(with_ctx);
      errgroup::group g =
          with_ctx ? errgroup::group(errgroup::context()) : errgroup::group();
      std::atomic<int> later{0}, again{0};
      g.go([&](const errgroup::context& c) {
        try {
          tbb::parallel_for(
              0, 10, [](int) { throw std::runtime_error("x"); },
              c.tbb_context());
        } catch (const std::runtime_error&) {
        }
        // The next algorithm under tbb_context() runs whole.
        tbb::parallel_for(
            0, 100, [&](int) { ++again; }, c.tbb_context());
        for (int i = 0; i < 20; ++i) g.go([&] { ++later; });
      });
      CHECK_FALSE(g.wait());
      CHECK(again.load() == 100);
      CHECK(later.load() == 20);
    }
  }

  TEST_CASE(
      "cancel_group_execution on tbb_context stops that algorithm "
      "only") {
    errgroup::group g{errgroup::context()};
    const errgroup::context ctx = g.get_context();
    std::atomic<int> later{0};
    bool group_live = false, agrees = false;
    g.go([&](const errgroup::context& c) {
      // oneTBB's early-exit idiom: found it, stop the search.
      tbb::parallel_for(
          tbb::blocked_range<int>(0, 1000, 1),
          [&](const tbb::blocked_range<int>& r) {
            if (r.begin() == 7) c.tbb_context().cancel_group_execution();
          },
          tbb::simple_partitioner(), c.tbb_context());
      group_live = !c.cancelled();
      agrees = !c.tbb_context().is_group_execution_cancelled();
      for (int i = 0; i < 20; ++i) g.go([&] { ++later; });
    });
    CHECK_FALSE(g.wait());
    CHECK(group_live);
    CHECK(agrees);
    CHECK(later.load() == 20);
  }

  TEST_CASE(
      "two tasks that stop their own algorithms never stop each "
      "other's") {
    errgroup::scheduler s{2};
    errgroup::group g{s};
    std::atomic<bool> a_stopped{false};
    std::atomic<int> b_ran{0};
    g.go([&](const errgroup::context& c) {
      tbb::parallel_for(
          0, 1, [&](int) { c.tbb_context().cancel_group_execution(); },
          c.tbb_context());
      a_stopped = true;
    });
    g.go([&](const errgroup::context& c) {
      tbb::parallel_for(
          tbb::blocked_range<int>(0, 1000, 1),
          [&](const tbb::blocked_range<int>& r) {
            if (r.begin() == 0)
              REQUIRE(spin_until([&] { return a_stopped.load(); }));
            b_ran += static_cast<int>(r.size());
          },
          tbb::simple_partitioner(), c.tbb_context());
    });
    CHECK_FALSE(g.wait());
    CHECK(b_ran.load() == 1000);
  }

  TEST_CASE("the background context's tbb_context stays usable") {
    const errgroup::context bg;
    CHECK_THROWS(tbb::parallel_for(
        0, 10, [](int) { throw std::runtime_error("x"); }, bg.tbb_context()));
    std::atomic<int> ran{0};
    tbb::parallel_for(
        0, 100, [&](int) { ++ran; }, bg.tbb_context());
    CHECK(ran.load() == 100);
    // A plain group's task (given background) that stops its algorithm
    // leaves later groups' algorithms whole.
    {
      errgroup::group g;
      g.go([](const errgroup::context& c) {
        tbb::parallel_for(
            0, 1, [&](int) { c.tbb_context().cancel_group_execution(); },
            c.tbb_context());
      });
      CHECK_FALSE(g.wait());
    }
    errgroup::group later;
    std::atomic<int> later_ran{0};
    later.go([&](const errgroup::context& c) {
      tbb::parallel_for(
          0, 100, [&](int) { ++later_ran; }, c.tbb_context());
    });
    CHECK_FALSE(later.wait());
    CHECK(later_ran.load() == 100);
  }

  TEST_CASE(
      "cancelling a context group stops algorithms run under "
      "tbb_context") {
    errgroup::group g{errgroup::context()};
    const errgroup::context ctx = g.get_context();
    std::atomic<int> ran{0};
    g.go([&](const errgroup::context& c) {
      tbb::parallel_for(
          tbb::blocked_range<int>(0, 100000, 1),
          [&](const tbb::blocked_range<int>&) {
            if (++ran == 10) throw std::runtime_error("fail the group");
          },
          tbb::simple_partitioner(), c.tbb_context());
    });
    g.go([&](const errgroup::context& c) {
      // Stopped by the first task's failure, which cancels the group.
      REQUIRE(spin_until([&] { return c.cancelled(); }));
      std::atomic<int> after{0};
      tbb::parallel_for(
          0, 1000, [&](int) { ++after; }, c.tbb_context());
      CHECK(after.load() == 0);
    });
    CHECK(g.wait().is<std::runtime_error>());
    CHECK(ran.load() < 100000);
  }

  // ---- process-wide settings ----

  TEST_CASE(
      "under global_control of one thread a group runs one task at a "
      "time") {
    tbb::global_control one{tbb::global_control::max_allowed_parallelism, 1};
    test::peak_tracker p;
    const auto task = [&] {
      p.enter();
      test::busy_for(1ms);
      p.leave();
    };
    {
      errgroup::group g;
      for (int i = 0; i < 20; ++i) g.go(task);
      CHECK_FALSE(g.wait());
      CHECK(g.counters().peak == 1);
    }
    {
      tbb::task_arena arena{1};
      errgroup::scheduler s{arena};
      errgroup::group g{s};
      for (int i = 0; i < 20; ++i) g.go(task);
      CHECK_FALSE(g.wait());
    }
    CHECK(p.peak.load() == 1);
  }

  TEST_CASE(
      "adopting an application's arena changes no process-wide "
      "setting") {
    const auto before = tbb::global_control::active_value(
        tbb::global_control::max_allowed_parallelism);
    tbb::task_arena arena{4};
    {
      errgroup::scheduler s{arena};
      CHECK(tbb::global_control::active_value(
                tbb::global_control::max_allowed_parallelism) == before);
      errgroup::group g{s};
      g.go([] {});
      CHECK_FALSE(g.wait());
    }
    CHECK(tbb::global_control::active_value(
              tbb::global_control::max_allowed_parallelism) == before);
  }

  TEST_CASE(
      "an owned scheduler says how many threads the application's "
      "limit leaves it") {
    tbb::global_control two{tbb::global_control::max_allowed_parallelism, 2};
    errgroup::scheduler s{8};
    CHECK(s.max_concurrency() == 1);
    errgroup::group g{s};
    std::atomic<int> ran{0};
    for (int i = 0; i < 10; ++i) g.go([&] { ++ran; });
    CHECK_FALSE(g.wait());
    CHECK(ran.load() == 10);
  }

  // ---- liveness at scale ----

  TEST_CASE(
      "with 100000 live groups every started task runs although nobody "
      "waits") {
    constexpr int n = 100000;
    std::vector<std::unique_ptr<errgroup::group>> groups;
    groups.reserve(n);
    std::atomic<int> ran{0};
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      groups.push_back(std::make_unique<errgroup::group>());
      groups.back()->go([&] { ran.fetch_add(1, std::memory_order_relaxed); });
    }
    const bool all = spin_until([&] { return ran.load() == n; }, 120s);
    MESSAGE(n << " live groups: every task ran "
              << ms(std::chrono::steady_clock::now() - t0).count()
              << " ms after the first go() (ran " << ran.load() << ")");
    CHECK(all);
    for (auto& g : groups) CHECK_FALSE(g->wait());
  }

  // ---- unwinding ----

  TEST_CASE(
      "a context group destroyed by unwinding cancels before it "
      "waits") {
    std::atomic<bool> started{false}, saw_cancel{false};
    try {
      errgroup::group g{errgroup::context()};
      const errgroup::context ctx = g.get_context();
      g.go([&](const errgroup::context& c) {
        started = true;
        saw_cancel = c.wait_for(30s);
      });
      REQUIRE(spin_until([&] { return started.load(); }));
      throw std::runtime_error("unwind");
    } catch (const std::runtime_error&) {
    }
    CHECK(saw_cancel.load());
  }

  TEST_CASE(
      "a context group made during unwinding waits without "
      "cancelling") {
    struct on_unwind {
      std::atomic<int>* ran;
      ~on_unwind() {
        errgroup::group g{errgroup::context()};
        const errgroup::context ctx = g.get_context();
        g.go([this](const errgroup::context& c) {
          if (!c.cancelled()) ++*ran;
        });
      }
    };
    std::atomic<int> ran{0};
    try {
      on_unwind u{&ran};
      throw std::runtime_error("unwind");
    } catch (const std::runtime_error&) {
    }
    CHECK(ran.load() == 1);
  }

  // ---- working cases worth keeping ----

  TEST_CASE("groups inside parallel_for bodies with and without limits") {
    for (int limit : {-1, 1, 3}) {
      CAPTURE(limit);
      std::atomic<long> sum{0};
      tbb::parallel_for(0, 64, [&](int i) {
        errgroup::group g;
        g.set_limit(limit);
        for (int k = 0; k < 10; ++k) g.go([&, i, k] { sum += i * 10 + k; });
        CHECK_FALSE(g.wait());
      });
      CHECK(sum.load() == 639L * 640 / 2);
    }
  }

  TEST_CASE("groups inside flow graph nodes") {
    tbb::flow::graph graph;
    std::atomic<long> total{0};
    tbb::flow::function_node<int, int> node(
        graph, tbb::flow::unlimited, [](int v) {
          errgroup::group g{errgroup::context()};
          const errgroup::context ctx = g.get_context();
          g.set_limit(2);
          std::atomic<int> s{0};
          for (int k = 0; k < 5; ++k) g.go([&, k] { s += v + k; });
          return g.wait() ? -1 : s.load();
        });
    tbb::flow::function_node<int> sink(graph, tbb::flow::serial,
                                       [&](int v) { total += v; });
    tbb::flow::make_edge(node, sink);
    for (int i = 0; i < 20; ++i) node.try_put(i);
    graph.wait_for_all();
    // Each message v gives 5v + 10.
    CHECK(total.load() == 5 * 190 + 20 * 10);
  }

  TEST_CASE("groups inside parallel_pipeline filters") {
    int next = 0;
    long total = 0;
    tbb::parallel_pipeline(
        4,
        tbb::make_filter<void, int>(tbb::filter_mode::serial_in_order,
                                    [&](tbb::flow_control& fc) {
                                      if (next == 50) fc.stop();
                                      return next++;
                                    }) &
            tbb::make_filter<int, int>(tbb::filter_mode::parallel,
                                       [](int v) {
                                         errgroup::group g;
                                         g.set_limit(1);
                                         std::atomic<int> s{0};
                                         for (int k = 0; k < 4; ++k)
                                           g.go([&] { s += v; });
                                         return g.wait() ? -1 : s.load();
                                       }) &
            tbb::make_filter<int, void>(tbb::filter_mode::serial_out_of_order,
                                        [&](int v) { total += v; }));
    CHECK(total == 4L * 49 * 50 / 2);
  }

  TEST_CASE(
      "a group inside this_task_arena::isolate and a user's "
      "task_arena") {
    std::atomic<int> ran{0};
    tbb::this_task_arena::isolate([&] {
      errgroup::group g;
      for (int i = 0; i < 10; ++i) g.go([&] { ++ran; });
      CHECK_FALSE(g.wait());
    });
    tbb::task_arena two{2};
    two.execute([&] {
      errgroup::group g;  // the default scheduler: the caller's arena
      g.set_limit(1);
      for (int i = 0; i < 10; ++i) g.go([&] { ++ran; });
      CHECK_FALSE(g.wait());
    });
    errgroup::scheduler adopted{two};
    errgroup::group g{adopted};
    for (int i = 0; i < 10; ++i) g.go([&] { ++ran; });
    CHECK_FALSE(g.wait());
    CHECK(ran.load() == 30);
  }

  TEST_CASE("oneTBB's own exception types inside tasks are task errors") {
    errgroup::group g;
    g.go([] { throw tbb::user_abort(); });
    CHECK(g.wait().is<tbb::user_abort>());
    errgroup::group g2;
    g2.go([] { throw tbb::missing_wait(); });
    CHECK(g2.wait().is<tbb::missing_wait>());
    errgroup::group nested;
    nested.go([] {
      tbb::task_group tg;
      tg.run([] { throw std::out_of_range("inner"); });
      tg.wait();  // rethrows inside our task: our task's error
    });
    const error e = nested.wait();
    CHECK(e.is<std::out_of_range>());
    CHECK(e.message() == "inner");
  }
}
