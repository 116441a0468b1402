// errgroup/quorum.hpp
//
// errgroup::quorum runs n alternatives of one job at once and succeeds as
// soon as k of them have: a k-of-n quorum, as for a replicated write that
// needs k acknowledgements. Once k succeed it cancels the rest; once k can no
// longer be reached (more than n - k failed) it fails at once with every
// failure seen so far. Either way it cancels the tasks still running and then
// waits for them to return (structured concurrency: no task outlives the
// call), so alternatives should watch their context.
//
// Example (full program: samples/quorum.cpp):
//   auto [acks, failures, err] = errgroup::quorum(
//       ctx, replicas.size(), 2,
//       [&](const errgroup::context& c, std::size_t i) {
//         return replicas[i].write(c, record);  // a throw is a failure
//       });
//   if (err) die(err.message());  // "quorum: 1 of 3 succeeded, 2 needed"
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/attempt.hpp"
#include "errgroup/detail/race.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"

namespace errgroup {

// quorum_error is the error of a quorum that can no longer be reached. Its
// message reads "quorum: 2 of 5 succeeded, 3 needed", counted when the quorum
// failed; failures() are the failures seen by then, by index.
class quorum_error : public std::runtime_error {
 public:
  using failure_list = std::vector<std::pair<std::size_t, error>>;

  quorum_error(std::size_t succeeded, std::size_t needed, std::size_t total,
               failure_list failures)
      : std::runtime_error("quorum: " + std::to_string(succeeded) + " of " +
                           std::to_string(total) + " succeeded, " +
                           std::to_string(needed) + " needed"),
        succeeded_(succeeded),
        needed_(needed),
        total_(total),
        failures_(std::make_shared<const failure_list>(std::move(failures))) {}

  // succeeded() returns how many alternatives had succeeded when the quorum
  // failed; needed() is k and total() is n.
  std::size_t succeeded() const noexcept { return succeeded_; }
  std::size_t needed() const noexcept { return needed_; }
  std::size_t total() const noexcept { return total_; }

  // failures() returns the failures that made the quorum unreachable, as
  // (index, error) pairs ordered by index.
  const failure_list& failures() const noexcept { return *failures_; }

 private:
  std::size_t succeeded_, needed_, total_;
  std::shared_ptr<const failure_list> failures_;  // copies stay noexcept
};

// The result of quorum(): auto [successes, failures, err] = quorum(...).
// successes holds (index, value) pairs and failures (index, error) pairs,
// each ordered by index. On success successes has exactly k entries.
template <class R>
struct quorum_result {
  std::vector<std::pair<std::size_t, R>> successes;
  std::vector<std::pair<std::size_t, error>> failures;
  error err;
};

// When f returns no value (void, or an error type), successes holds the
// indices of the alternatives that succeeded, ordered.
template <>
struct quorum_result<void> {
  std::vector<std::size_t> successes;
  std::vector<std::pair<std::size_t, error>> failures;
  error err;
};

// quorum(parent, n, k, f, s) runs f(ctx, i) for every i in [0, n) as tasks of
// a context group on s, and returns once k have succeeded or more than n - k
// have failed. f is callable as f(const context& ctx, std::size_t i) or
// f(std::size_t i), is called concurrently from several threads, and returns
// R: a value, or void, or error / std::error_code / std::exception_ptr (a
// non-empty one is a failure, and successes then holds indices only, as for
// void). A throw is a failure. ctx is cancelled once the outcome is decided,
// or when parent is cancelled.
//
// Blocks until the outcome is decided and every task has returned or been
// skipped; the calling thread helps run the tasks (group::wait), so it is safe
// on a oneTBB worker thread and on a one-thread scheduler.
//
// err is empty on success: successes then holds the first k successes (later
// ones are dropped), failures those seen by then. On failure err holds a
// quorum_error whose failures() equal the result's failures; or parent's
// cause() when parent was cancelled before the outcome was decided (a quorum
// reached before that still succeeds).
//
// Edge cases: k == 0 succeeds at once, running nothing (also n == 0);
// k > n returns an std::invalid_argument error at once, running nothing;
// k == n fails on the first failure.
template <class F>
auto quorum(const context& parent, std::size_t n, std::size_t k, F&& f,
            scheduler& s = scheduler::default_scheduler())
    -> quorum_result<detail::success_t<
        detail::attempt_result_t<std::remove_reference_t<F>>>> {
  using Fn = std::remove_reference_t<F>;
  static_assert(detail::check_attempt<Fn>());
  using V = detail::success_t<detail::attempt_result_t<Fn>>;
  quorum_result<V> res;
  if (k > n) {
    res.err = make_error<std::invalid_argument>(
        "quorum: k = " + std::to_string(k) +
        " is more than n = " + std::to_string(n));
    return res;
  }
  if (k == 0) return res;

  auto by_index = [](const auto& a, const auto& b) {
    return a.first < b.first;
  };
  auto judge = [&res, &parent, n, k, by_index](std::size_t i,
                                               detail::outcome<V>&& o) {
    if (!o.err) {
      if constexpr (std::is_void_v<V>)
        res.successes.push_back(i);
      else
        res.successes.emplace_back(i, std::move(*o.value));
      if (res.successes.size() < k) return detail::verdict{};
      return detail::verdict{true, {}};  // reached: cancel the rest
    }
    res.failures.emplace_back(i, std::move(o.err));
    if (res.failures.size() <= n - k) return detail::verdict{};
    std::sort(res.failures.begin(), res.failures.end(), by_index);
    res.err = parent.cancelled()
                  ? parent.cause()
                  : make_error<quorum_error>(res.successes.size(), k, n,
                                             res.failures);
    return detail::verdict{true, res.err};  // unreachable: cancel with it
  };
  {
    detail::race<Fn, decltype(judge)> r(parent, f, judge, {}, s);
    for (std::size_t i = 0; i < n; ++i) r.start(i);
    // Not decided: tasks were skipped before the outcome was decided, as the
    // parent was cancelled (or the group failed on its own, e.g.
    // std::bad_alloc).
    if (error err = r.wait()) res.err = std::move(err);
  }
  std::sort(res.failures.begin(), res.failures.end(), by_index);
  if constexpr (std::is_void_v<V>)
    std::sort(res.successes.begin(), res.successes.end());
  else
    std::sort(res.successes.begin(), res.successes.end(), by_index);
  return res;
}

}  // namespace errgroup
