// errgroup/first_success.hpp
//
// errgroup::first_success runs n alternatives of one job (replicas, mirrors,
// strategies) and returns the first that succeeds, cancelling the others.
// With hedging (hedge_options::delay) the alternatives start one after
// another: the next starts when a running one fails or when the delay passes
// without a success, so a slow first try is backed up without paying for n
// tries every time. It always waits for the cancelled alternatives to return
// (structured concurrency), so alternatives should watch their context.
//
// Example:
//   using namespace std::chrono_literals;
//   auto r = errgroup::first_success(
//       ctx, mirrors.size(),
//       [&](const errgroup::context& c, std::size_t i) {
//         return mirrors[i].fetch(c, key);  // a throw is a failure
//       },
//       {.delay = 50ms});
//   if (r.err) die(r.err.message());
//   use(*r.value);  // from mirrors[r.index]
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/attempt.hpp"
#include "errgroup/detail/race.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"

namespace errgroup {

// How first_success starts its alternatives.
struct hedge_options {
  // delay: empty starts every alternative at once. Set, alternative 0 starts
  // at once, and each next one when a started one fails or when delay has
  // passed since the last start without a success. A zero or negative delay
  // starts every alternative at once; duration::max() starts the next one
  // only on a failure (pure fallback, one at a time).
  std::optional<std::chrono::steady_clock::duration> delay;
};

// The result of first_success(): auto [index, value, err, failures] = ...
// On success value holds the winner's result and index its position; on
// failure value is empty and index == n. failures holds the failures seen
// before the outcome was decided, as (index, error) in the order they
// happened.
template <class R>
struct first_result {
  std::size_t index = 0;
  std::optional<R> value;
  error err;
  std::vector<std::pair<std::size_t, error>> failures;
};

// When f returns no value (void, or an error type), value says whether an
// alternative succeeded.
template <>
struct first_result<void> {
  std::size_t index = 0;
  bool value = false;
  error err;
  std::vector<std::pair<std::size_t, error>> failures;
};

// first_success(parent, n, f, options, s) runs f(ctx, i) for i in [0, n) as
// tasks of a context group on s, as options says, and returns the first
// success, cancelling the rest. f is callable as f(const context& ctx,
// std::size_t i) or f(std::size_t i), is called concurrently from several
// threads, and returns R: a value, or void, or error / std::error_code /
// std::exception_ptr (a non-empty one is a failure). A throw is a failure.
// ctx is cancelled as soon as one succeeds, or when parent is cancelled.
//
// Blocks until the outcome is decided and every started alternative has
// returned. The calling thread drives the hedging: between starts it waits on
// a weighted semaphore (one unit per failure) bounded by a deadline context,
// so it never spins, and on a oneTBB worker thread the calling task is
// suspended rather than the worker blocked, as weighted::acquire does (where
// oneTBB has no resumable tasks, the thread blocks). Then it helps run the
// tasks (group::wait).
//
// err is empty on success. When every alternative failed, err is the last
// failure's error (the one that ended the search), and failures holds all n.
// When parent was cancelled before a success, err is parent's cause(), and
// alternatives not started by then never run. n == 0 returns an
// std::invalid_argument error at once.
template <class F>
auto first_success(const context& parent, std::size_t n, F&& f,
                   const hedge_options& options = {},
                   scheduler& s = scheduler::default_scheduler())
    -> first_result<detail::success_t<
        detail::attempt_result_t<std::remove_reference_t<F>>>> {
  using Fn = std::remove_reference_t<F>;
  static_assert(detail::check_attempt<Fn>());
  using V = detail::success_t<detail::attempt_result_t<Fn>>;
  using clock = std::chrono::steady_clock;
  first_result<V> res;
  res.index = n;
  if (n == 0) {
    res.err = make_error<std::invalid_argument>(
        "first_success: no alternatives (n == 0)");
    return res;
  }
  const bool hedged = options.delay && *options.delay > clock::duration::zero();

  // One unit per failure not yet answered with a start; all held at first.
  weighted failed(hedged ? static_cast<std::int64_t>(n) : 0);
  (void)failed.try_acquire(failed.size());
  auto judge = [&res, &parent, n](std::size_t i, detail::outcome<V>&& o) {
    if (!o.err) {
      res.index = i;
      if constexpr (std::is_void_v<V>)
        res.value = true;
      else
        res.value = std::move(o.value);
      return detail::verdict{true, {}};  // won: cancel the rest
    }
    res.failures.emplace_back(i, o.err);
    if (res.failures.size() < n) return detail::verdict{};
    res.err = detail::cause_or(parent, std::move(o.err));
    return detail::verdict{true, {}};  // every alternative failed
  };
  auto next = [&failed, hedged](std::size_t) {
    if (hedged) failed.release(1);  // the driver starts the next one
  };
  detail::race<Fn, decltype(judge), decltype(next)> r(parent, f, judge, next,
                                                      s);
  r.start(0);
  for (std::size_t i = 1; i < n; ++i) {
    if (hedged) {
      // Wait for a failure, or for delay to pass, or for the end (success
      // or parent cancelled: r.ctx() is done, and so is step).
      auto [step, stop_step] = with_timeout(r.ctx(), *options.delay);
      (void)failed.acquire(step, 1);  // an error: the delay passed
      stop_step();                    // drops its timer at once
    }
    if (r.ctx().cancelled()) break;
    r.start(i);
  }
  // Not decided: alternatives were skipped before a success, as the parent
  // was cancelled (or the group failed on its own, e.g. std::bad_alloc).
  if (error err = r.wait()) res.err = std::move(err);
  return res;
}

}  // namespace errgroup
