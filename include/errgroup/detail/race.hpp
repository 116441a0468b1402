// errgroup/detail/race.hpp: the skeleton shared by first_success() and
// quorum(): alternatives f(ctx, i) run as tasks of a context group, each
// outcome is judged as it arrives, and the rest are cancelled once the
// outcome of the whole is decided. Not part of the public API.
//
// Invariant: the race is decided at most once, under the race's lock, by the
// judge. Before that every outcome is handed to the judge, in the order the
// outcomes arrive; from then on none is (the alternatives still running are
// cancelled and their outcomes dropped). The cancel happens outside the lock,
// since it runs callbacks.
#pragma once

#include <cstddef>
#include <mutex>
#include <type_traits>
#include <utility>

#include "errgroup/context.hpp"
#include "errgroup/detail/attempt.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"

namespace errgroup::detail {

// What a judge says of one outcome: the race goes on, or it is decided and
// the rest are cancelled with cause (empty: cancelled_error).
struct verdict {
  bool decided = false;
  error cause;
};

// cause_or(parent, e) returns parent's cause() when parent is cancelled, else
// e: what a race that ends without its own answer reports.
inline error cause_or(const context& parent, error e) {
  return parent.cancelled() ? parent.cause() : std::move(e);
}

// The default for race's Pending: nothing to do.
struct no_pending {
  void operator()(std::size_t) const noexcept {}
};

// race<F, Judge, Pending> runs the alternatives of f. judge(i, outcome&&) is
// called under the race's lock with each outcome before the race is decided
// and returns a verdict; pending(i) is called outside the lock after an
// outcome that left the race undecided. Both are called from the tasks'
// threads; f outlives the race. When judge throws, the outcome is not
// recorded and the task fails with the exception: the group's error, which
// wait() returns if nothing decides the race.
template <class F, class Judge, class Pending = no_pending>
class race {
 public:
  using value_type = success_t<attempt_result_t<F>>;

  // race(parent, f, judge, pending, s) makes the race's context, a child of
  // parent, and the group on s that runs the alternatives. May throw
  // std::bad_alloc.
  race(const context& parent, F& f, Judge judge, Pending pending, scheduler& s)
      : parent_(parent),
        outer_(with_cancel(parent)),
        f_(f),
        judge_(std::move(judge)),
        pending_(std::move(pending)),
        g_(outer_.ctx, s) {}
  race(const race&) = delete;
  race& operator=(const race&) = delete;

  // ctx() is cancelled once the race is decided, or when parent is.
  const context& ctx() const noexcept { return outer_.ctx; }

  // start(i) starts alternative i as a task; as group::go, may throw
  // std::bad_alloc.
  void start(std::size_t i) {
    g_.go([this, i](const context& c) {
      auto o = attempt(f_, c, i);
      verdict v;
      {
        std::lock_guard lock(mu_);
        if (decided_) return;
        v = judge_(i, std::move(o));
        decided_ = v.decided;
      }
      if (v.decided)
        outer_.cancel(std::move(v.cause));
      else
        pending_(i);
    });
  }

  // wait() blocks until every started alternative has returned, helping to
  // run them (group::wait). Returns an empty error when the race was
  // decided; else, alternatives were skipped before a decision, and it
  // returns why: parent's cause() when parent was cancelled, or the group's
  // own error (e.g. std::bad_alloc).
  error wait() {
    error group_err = g_.wait();
    if (decided_) return {};
    return cause_or(parent_, std::move(group_err));
  }

 private:
  const context& parent_;
  const context_and_cancel outer_;
  F& f_;
  Judge judge_;
  Pending pending_;
  std::mutex mu_;
  bool decided_ = false;  // guarded by mu_ until wait() returns
  group g_;               // last: destroyed (waited for) first
};

}  // namespace errgroup::detail
