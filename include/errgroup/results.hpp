// errgroup/results.hpp
//
// Tasks that return a value. go_result(g, f) starts f as a task of group g
// and returns a result<T> handle: once the task has ended (g.wait()
// returned), get() is f's value, or rethrows what f threw. A collector<T>
// starts many such tasks and hands back their values in submission order.
// Both are built on group::go: the group sees an ordinary task whose error
// is f's throw, so first error, cancellation, limits and budgets work as for
// any task.
//
// Example:
//   errgroup::group g;
//   errgroup::collector<std::string> pages(g);
//   for (const std::string& url : urls)
//     pages.go([&url] { return fetch(url); });  // a throw is its error
//   if (errgroup::error err = g.wait()) die(err.message());
//   std::vector<std::string> bodies = pages.values();  // in urls' order
//
// A task reports failure by throwing: f is callable as f() or f(const
// context&) and returns its value, of any type but void and the error types
// (use group::go for those); move-only values work. The value is built in
// place from what f returns (a returned prvalue is not moved).
//
// Lifetime is safe by construction: a handle or collector shares its slots
// with the tasks that write them (reference counts), so either may go away
// first; a task whose handle was dropped writes into a slot nobody reads,
// and whoever is last frees it. Reading before the task ended is an
// std::logic_error, never a race: each slot's state is an atomic, written
// by the task after the value (release) and read with acquire.
//
// Cost next to a plain go(): go_result allocates once per task (its slot),
// a collector once per chunk of up to 1,024 slots; the task itself is a go()
// of a callable 16 bytes larger than f, which the group keeps in its task
// block as any callable. Measured (docs/design.md, "Typed results"): a
// collector costs 1.1x to 1.35x a hand-written out[i] closure; go_result
// 1.4x to 2x a plain go() of an empty task (its malloc and free).
//
// Difference from Java's StructuredTaskScope: Subtask.get() throws
// IllegalStateException unless the subtask succeeded; get() here rethrows
// the task's own exception (or the cause, for a skipped task). Go's
// errgroup has no typed results: the closure writes out[i] by hand.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "errgroup/detail/result_slots.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"

namespace errgroup {

namespace detail {
struct result_access;
}

// result<T> is the handle of one task started by go_result(): move-only,
// like std::future, but it never blocks; wait on the group instead.
template <class T>
class result {
 public:
  // result() has no task: valid() is false, state() is pending, and get()
  // and err() throw std::logic_error.
  result() noexcept = default;
  result(result&& o) noexcept : chunk_(std::exchange(o.chunk_, nullptr)) {}
  result& operator=(result&& o) noexcept {
    result(std::move(o)).swap(*this);
    return *this;
  }
  // ~result() drops the handle's share only: a task still running keeps
  // its slot and frees it when it ends. Never blocks.
  ~result() {
    if (chunk_ != nullptr) chunk_->release(1);
  }
  void swap(result& o) noexcept { std::swap(chunk_, o.chunk_); }

  // valid() reports whether the handle has a task.
  bool valid() const noexcept { return chunk_ != nullptr; }

  // state() is where the task is: pending until it ends, then succeeded,
  // failed or skipped. Lock-free, safe from any thread; an acquire: a state
  // other than pending makes the value or error visible.
  result_state state() const noexcept {
    return chunk_ ? slot().state.load(std::memory_order_acquire)
                  : result_state::pending;
  }

  // get() returns the task's value once it has ended. Never blocks. Throws:
  // the task's exception when it failed; the cause it was skipped for (the
  // group context's cause(), e.g. the first error; cancelled_error when
  // there is none) when skipped; std::logic_error when the task has not
  // ended yet or there is no task. The value lives as long as the handle
  // (std::move(r.get()) takes it).
  T& get() { return value("result::get()"); }
  const T& get() const { return value("result::get()"); }

  // err() is no error when the task succeeded, its error when it failed,
  // the cause when it was skipped. Throws std::logic_error as get() does.
  error err() const {
    auto& s = slot_checked("result::err()");
    (void)s.ended("result::err()");
    return s.err;
  }

 private:
  friend struct detail::result_access;
  explicit result(detail::result_chunk<T>* c) noexcept : chunk_(c) {}
  detail::result_slot<T>& slot() const noexcept { return chunk_->slot(0); }
  detail::result_slot<T>& slot_checked(const char* what) const {
    if (chunk_ == nullptr)
      throw std::logic_error(std::string("errgroup: ") + what +
                             " on a result without a task");
    return slot();
  }
  T& value(const char* what) const {
    auto& s = slot_checked(what);
    if (s.ended(what) != result_state::succeeded) s.err.throw_if();
    return s.value;
  }

  detail::result_chunk<T>* chunk_ = nullptr;
};

namespace detail {
struct result_access {
  // start(g, f, launch) makes a handle, hands launch() the task for it, and
  // returns the handle, or one without a task if launch() started nothing.
  template <class F, class Launch>
  static auto start(group& g, F&& f, Launch launch) {
    using D = std::decay_t<F>;
    static_assert(check_result_task<D>());
    using T = result_value_t<D>;
    (void)skip_fallback();  // a skip later must not allocate
    result<T> r(result_chunk<T>::make(g, 1));
    if (!launch(result_task<T, D>(r.chunk_, &r.chunk_->slot(0),
                                  std::forward<F>(f))))
      return result<T>();
    return r;
  }
};
}  // namespace detail

// go_result(g, f) is g.go(f) for an f that returns a value: it starts f as
// a task of g (blocking, queueing and skipping exactly as go() does) and
// returns the result<T> handle of its value. A throw from f is the task's
// error, and so the group's as for any task. Throws what g.go() throws, and
// std::bad_alloc, with nothing started and nothing held. If g's context is
// already cancelled, nothing starts and the handle is skipped.
template <class F>
auto go_result(group& g, F&& f) {
  return detail::result_access::start(g, std::forward<F>(f), [&g](auto&& t) {
    g.go(std::move(t));
    return true;
  });
}

// go_result(g, b, n, f) is go_result for a task that also holds n units of
// budget b while it runs: g.go(b, n, f).
template <detail::budget B, class F>
auto go_result(group& g, B& b, std::int64_t n, F&& f) {
  return detail::result_access::start(g, std::forward<F>(f),
                                      [&g, &b, n](auto&& t) {
                                        g.go(b, n, std::move(t));
                                        return true;
                                      });
}

// try_go_result(g, f) is g.try_go(f): it starts f only if a slot is free
// now; else it returns a handle without a task (valid() false). Never
// blocks.
template <class F>
auto try_go_result(group& g, F&& f) {
  return detail::result_access::start(
      g, std::forward<F>(f), [&g](auto&& t) { return g.try_go(std::move(t)); });
}

// collector<T> starts value-returning tasks on a group and keeps their
// values in submission order: a vector of results in chunks, one allocation
// per chunk (detail::result_chunks). One thread at a time may call its members
// (like a std::vector); its tasks run concurrently with them, safely.
template <class T>
class collector {
 public:
  static_assert(std::is_destructible_v<T> && !std::is_array_v<T> &&
                    !std::is_reference_v<T> && !std::is_const_v<T>,
                "errgroup: collector<T> needs a non-const object type");
  static_assert(!detail::error_result<T>,
                "errgroup: a result task returns a value and throws on "
                "failure; use group::go for tasks that return an error");

  // collector(g) collects for tasks of g, which must outlive the go() calls.
  explicit collector(group& g) : g_(&g), slots_(g) {
    (void)detail::skip_fallback();
  }
  // ~collector() never waits: tasks still running keep their chunk alive
  // and free it when they end.
  ~collector() = default;
  collector(const collector&) = delete;
  collector& operator=(const collector&) = delete;

  // go(f) is go_result(g, f) whose result becomes the next entry. f returns
  // something T can be built from. Throws as group::go does, and
  // std::logic_error after values(); then no entry is added.
  template <class F>
  void go(F&& f) {
    (void)start(std::forward<F>(f), [this](auto&& t) {
      g_->go(std::move(t));
      return true;
    });
  }
  // try_go(f) adds an entry only if g.try_go() started the task.
  template <class F>
  bool try_go(F&& f) {
    return start(std::forward<F>(f),
                 [this](auto&& t) { return g_->try_go(std::move(t)); });
  }
  // go(b, n, f) is go(f) whose task also holds n units of budget b.
  template <detail::budget B, class F>
  void go(B& b, std::int64_t n, F&& f) {
    (void)start(std::forward<F>(f), [this, &b, n](auto&& t) {
      g_->go(b, n, std::move(t));
      return true;
    });
  }

  // go_until(t, f) is g.go_until(t, f) for the next entry: it gives up
  // waiting for a slot at time t. Returns no error when f was admitted (an
  // entry is added); else, as g.go_until() says why, and no entry is added.
  template <class F>
  error go_until(std::chrono::steady_clock::time_point t, F&& f) {
    error e;
    (void)start(std::forward<F>(f), [this, t, &e](auto&& task) {
      e = g_->go_until(t, std::move(task));
      return !e;
    });
    return e;
  }

  // size() is the number of entries: tasks started (or skipped) by go().
  std::size_t size() const noexcept { return slots_.size(); }

  // state(i), err(i) and get(i) are result's state(), err() and get() for
  // entry i. err(i) and get(i) throw std::logic_error while task i is
  // pending; all three throw std::out_of_range when i >= size().
  result_state state(std::size_t i) const {
    return slot(i).state.load(std::memory_order_acquire);
  }
  error err(std::size_t i) const {
    auto& s = slot(i);
    (void)s.ended("collector::err()");
    return s.err;
  }
  T& get(std::size_t i) {
    auto& s = slot(i);
    if (s.ended("collector::get()") != result_state::succeeded)
      s.err.throw_if();
    return s.value;
  }

  // values() moves every value out, in submission order, once every task
  // has succeeded. Never blocks. Throws std::logic_error while a task is
  // pending (call wait() first) and when called again; otherwise, if some
  // task failed or was skipped, the error of the first such entry (as its
  // get() would), and the values stay. A throwing move of a value
  // propagates; the values are then taken all the same.
  std::vector<T> values() {
    if (taken_)
      throw std::logic_error(
          "errgroup: collector::values() called again (the values were "
          "moved out)");
    for (std::size_t i = 0; i < slots_.size(); ++i)
      (void)slot(i).ended("collector::values()");
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (auto& s = slot(i);
          s.state.load(std::memory_order_relaxed) != result_state::succeeded)
        s.err.throw_if();
    const std::size_t n = slots_.size();
    std::vector<T> out;
    out.reserve(n);
    taken_ = true;
    for (std::size_t i = 0; i < n; ++i) out.push_back(std::move(slot(i).value));
    return out;
  }

 private:
  using slot_type = detail::result_slot<T>;

  slot_type& slot(std::size_t i) const { return slots_.at(i); }

  // start(f, launch) takes the next slot, hands launch() the task for it,
  // and gives the slot back if launch() started nothing or threw.
  template <class F, class Launch>
  bool start(F&& f, Launch launch) {
    using D = std::decay_t<F>;
    static_assert(detail::callable_with<D>,
                  "errgroup: a task must be callable as f() or "
                  "f(const errgroup::context&)");
    static_assert(std::is_constructible_v<T, detail::task_result_t<D>>,
                  "errgroup: collector<T>::go needs f to return something "
                  "T can be built from");
    if (taken_)
      throw std::logic_error(
          "errgroup: collector::go() after values() took the values");
    const auto [c, s] = slots_.push();
    bool started = false;
    try {
      // The task is a temporary: gone (its reference dropped) by the end of
      // this statement, or during unwinding, unless the group took it.
      started = launch(detail::result_task<T, D>(c, s, std::forward<F>(f)));
    } catch (...) {
      slots_.pop();
      throw;
    }
    if (!started) slots_.pop();
    return started;
  }
  group* g_;
  detail::result_chunks<T> slots_;
  bool taken_ = false;
};

}  // namespace errgroup
