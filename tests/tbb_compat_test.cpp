// tests/tbb_compat_test.cpp: what the library assumes of the oneTBB it runs
// with. .ci/tbb-versions.sh builds the suite against several oneTBB versions.
//
// - Which oneTBB the tests were built against, and which libtbb they run with
//   (printed, for CI logs). oneTBB's runtime is backward compatible: a program
//   built against one version's headers may run with that libtbb or a newer
//   one, never an older one. With ERRGROUP_EXPECT_TBB=<version> in the
//   environment (as oneTBB spells it at run time: "2021.5", "2023.1.0"), the
//   loaded libtbb must be exactly that one, so a build that silently runs with
//   another libtbb (the distro's) fails.
// - detail::runs_under() reads oneTBB's private task_group_context layout
//   (scheduler/context.cpp): here it must follow bound contexts up to their
//   ancestors and stop at isolated ones, as oneTBB binds them.
#include <doctest/doctest.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_group.h>
#include <oneapi/tbb/version.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "errgroup/detail/node.hpp"

namespace {

// in(ctx, f) runs f() in a oneTBB task under ctx: a one-iteration parallel_for
// (a bound ctx used for the first time is bound below the caller's context).
template <class F>
void in(tbb::task_group_context& ctx, F f) {
  tbb::parallel_for(
      tbb::blocked_range<int>(0, 1),
      [&](const tbb::blocked_range<int>&) { f(); }, ctx);
}

}  // namespace

TEST_SUITE("tbb_compat") {
  TEST_CASE("the oneTBB runtime is the one built against or newer") {
    const std::string runtime = TBB_runtime_version();
    const int runtime_interface = TBB_runtime_interface_version();
    std::printf(
        "oneTBB: headers %s (interface %d), runtime %s (interface %d)\n",
        TBB_VERSION_STRING, TBB_INTERFACE_VERSION, runtime.c_str(),
        runtime_interface);
    std::fflush(stdout);
    CHECK(runtime_interface >= TBB_INTERFACE_VERSION);
    if (const char* want = std::getenv("ERRGROUP_EXPECT_TBB");
        want != nullptr && *want != '\0') {
      CHECK(runtime == std::string(want));
    }
  }

  TEST_CASE("runs_under follows bound contexts and stops at isolated ones") {
    using errgroup::detail::runs_under;
    tbb::task_group_context outer(tbb::task_group_context::isolated);
    tbb::task_group_context unrelated(tbb::task_group_context::isolated);
    CHECK_FALSE(runs_under(outer));  // no oneTBB work on this thread
    int reached = 0;
    in(outer, [&] {
      CHECK(runs_under(outer));
      CHECK_FALSE(runs_under(unrelated));
      tbb::task_group_context middle(tbb::task_group_context::bound);
      in(middle, [&] {
        tbb::task_group_context inner(tbb::task_group_context::bound);
        in(inner, [&] {
          CHECK(runs_under(inner));
          CHECK(runs_under(middle));
          CHECK(runs_under(outer));
          CHECK_FALSE(runs_under(unrelated));
          ++reached;
        });
        // Isolated: made and used inside outer's work, but not below it.
        tbb::task_group_context iso(tbb::task_group_context::isolated);
        in(iso, [&] {
          CHECK(runs_under(iso));
          CHECK_FALSE(runs_under(middle));
          CHECK_FALSE(runs_under(outer));
          ++reached;
        });
      });
#if TBB_INTERFACE_VERSION >= 12060
      // A task_group given a context runs its tasks through a proxy of that
      // context (a state of the layout of its own since 2021.6; 2021.5 has
      // this constructor only as a preview).
      tbb::task_group_context given(tbb::task_group_context::bound);
      in(given, [] {});  // bound below outer now
      tbb::task_group tg(given);
      tg.run([&] {
        CHECK(runs_under(given));
        CHECK(runs_under(outer));
        CHECK_FALSE(runs_under(unrelated));
        ++reached;
      });
      tg.wait();
#endif
    });
    CHECK(reached == (TBB_INTERFACE_VERSION >= 12060 ? 3 : 2));
    CHECK_FALSE(runs_under(outer));
  }
}
