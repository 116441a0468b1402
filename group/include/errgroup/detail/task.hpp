// errgroup/detail/task.hpp: what group.hpp's templates need to hand a
// callable to the library. Not part of the public API.
//
// A task is one block the library allocates (new_task): its own part, then
// the callable, which go() constructs in place. The library calls the
// callable through task_ops; nothing of oneTBB is visible here.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <type_traits>

#include "errgroup/context.hpp"
#include "errgroup/detail/invoke.hpp"
#include "errgroup/error.hpp"

namespace errgroup {

namespace detail {
class gate;
class group_state;
class group_task;

// What a task may return.
template <class R>
concept task_result = std::is_void_v<R> || error_result<R>;

template <class F>
using task_result_t = invoke_with_t<F>;

// The most a task's callable may be aligned (oneTBB's pool aligns blocks so).
inline constexpr std::size_t max_task_align = 64;

template <class F>
constexpr bool check_task() {
  static_assert(callable_with<F>,
                "errgroup: a task must be callable as f() or "
                "f(const errgroup::context&)");
  if constexpr (callable_with<F>)
    static_assert(task_result<task_result_t<F>>,
                  "errgroup: a task must return void, errgroup::error, "
                  "std::error_code or std::exception_ptr");
  static_assert(alignof(F) <= max_task_align,
                "errgroup: a task's callable may be aligned to at most 64");
  return true;
}

// call(f, ctx) calls a task's callable and turns what it returns or throws
// into an error.
template <class F>
error call(F& f, const context& ctx) noexcept {
  try {
    if constexpr (std::is_void_v<task_result_t<F>>)
      invoke_with(f, ctx);
    else
      return error(invoke_with(f, ctx));
  } catch (...) {
    return error(std::current_exception());
  }
  return {};
}

template <class F>
class traced;  // a traced task's callable (traced.hpp)
template <class F>
inline constexpr bool is_traced = false;
template <class F>
inline constexpr bool is_traced<traced<F>> = true;

// task_ops is what the library needs of a callable it holds.
struct task_ops {
  error (*invoke)(void* f, const context& ctx) noexcept;
  void (*destroy)(void* f) noexcept;
  // The callable is a traced<F>, with its trace_stub at offset 0: a
  // property of the task, so a trace_to() racing a go() cannot make the
  // library look for a stub that is not there.
  bool has_stub;
};
template <class F>
inline constexpr task_ops ops_of{
    [](void* f, const context& ctx) noexcept {
      return call(*static_cast<F*>(f), ctx);
    },
    [](void* f) noexcept { static_cast<F*>(f)->~F(); }, is_traced<F>};

// new_task(g, size, align, ops) allocates a task of g whose callable (of
// that size and alignment) the caller constructs at .callable. When that
// construction throws, unconstructed(.task) frees the task. Throws
// std::bad_alloc.
struct new_block {
  group_task& task;
  void* callable;
};
new_block new_task(group_state& g, std::size_t size, std::size_t align,
                   const task_ops& ops);
void unconstructed(group_task& t) noexcept;
// task_size(size, align): the bytes one such task takes (for benchmarks).
std::size_t task_size(std::size_t size, std::size_t align) noexcept;

// Something that group::go(budget, n, f) can take units from:
// errgroup::weighted, or any type with gate() returning detail::gate&.
template <class B>
concept budget = requires(B& b) {
  { b.gate() } -> std::same_as<gate&>;
};
}  // namespace detail

}  // namespace errgroup
