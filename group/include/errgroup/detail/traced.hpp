// errgroup/detail/traced.hpp: how group::go() wraps a task of a group that
// records into an errgroup::trace (group::trace_to). Not part of the public
// API; group/trace.cpp has the non-inline parts.
//
// A traced task's callable is a traced<F>: a trace_stub first (at offset 0,
// so the library can reach it through the task's type-erased callable), then
// F. The stub notes when the task was submitted and admitted, and records the
// task into the trace when it ends or is dropped uninvoked (skipped).
#pragma once

#include <chrono>
#include <cstddef>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "errgroup/context.hpp"
#include "errgroup/detail/task.hpp"
#include "errgroup/error.hpp"

namespace errgroup::detail {

class trace_sink;  // a group's link to its trace (group/group_state.hpp)

class trace_stub {
 public:
  // Notes the submit time. The label is moved in (never throws).
  trace_stub(trace_sink& sink, std::string label) noexcept;
  // Not run (skipped by the group): records the task as skipped.
  ~trace_stub();
  trace_stub(const trace_stub&) = delete;
  trace_stub& operator=(const trace_stub&) = delete;

  void admitted() noexcept;  // the task got its slot and units after waiting
  void started() noexcept;
  void ended(const error& e, const context& ctx) noexcept;
  void discard() noexcept;  // no task after all (go_until gave up, misuse)

 private:
  using time_point = std::chrono::steady_clock::time_point;
  trace_sink* sink_;
  std::string label_;
  time_point submitted_;
  time_point admitted_;
  time_point started_{};
  int thread_ = 0;
  bool done_ = false;  // ended, or discarded
};

// traced<F> is F with a stub before it. Standard-layout (F lives in raw
// storage), so the stub is at offset 0.
template <class F>
class traced {
 public:
  template <class G>
  traced(trace_sink& sink, std::string label, G&& g)
      : stub_(sink, std::move(label)) {
    static_assert(std::is_standard_layout_v<traced>,
                  "the library finds the stub at offset 0");
    try {
      ::new (static_cast<void*>(fn_)) F(std::forward<G>(g));
    } catch (...) {
      stub_.discard();  // no task: the caller frees the block
      throw;
    }
  }
  ~traced() { fn().~F(); }
  traced(const traced&) = delete;
  traced& operator=(const traced&) = delete;

  error operator()(const context& ctx) noexcept {
    stub_.started();
    error e = call(fn(), ctx);
    stub_.ended(e, ctx);
    return e;
  }

 private:
  F& fn() noexcept { return *std::launder(reinterpret_cast<F*>(fn_)); }
  trace_stub stub_;
  alignas(F) unsigned char fn_[sizeof(F)];
};

// stub_of(callable) is the stub of a traced task's callable.
inline trace_stub& stub_of(void* callable) noexcept {
  return *static_cast<trace_stub*>(callable);
}

}  // namespace errgroup::detail
