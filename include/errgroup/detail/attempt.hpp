// errgroup/detail/attempt.hpp: one call of an alternative, as used by
// quorum() and first_success(). Not part of the public API.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "errgroup/context.hpp"
#include "errgroup/detail/invoke.hpp"
#include "errgroup/error.hpp"

namespace errgroup::detail {

// What f(ctx, i) returns, when f takes a context, else what f(i) returns.
template <class F>
using attempt_result_t = invoke_with_t<F, std::size_t>;

// success_t<R> is the value a successful call yields: void when f returns
// void or an error type, else R without reference or cv.
template <class R>
using success_t =
    std::conditional_t<std::is_void_v<R> || error_result<std::decay_t<R>>, void,
                       std::remove_cvref_t<R>>;

template <class F>
constexpr bool check_attempt() {
  static_assert(callable_with<F, std::size_t>,
                "errgroup: f must be callable as f(const errgroup::context&, "
                "std::size_t) or f(std::size_t)");
  return true;
}

template <class V>
struct outcome {
  std::optional<V> value;  // set on success
  error err;               // set on failure
};
template <>
struct outcome<void> {
  error err;
};

// attempt(f, c, i) calls f(c, i) (or f(i)) and returns its value or its
// failure: a throw, or a non-empty error result.
template <class F>
auto attempt(F& f, const context& c, std::size_t i) noexcept
    -> outcome<success_t<attempt_result_t<F>>> {
  using R = attempt_result_t<F>;
  using V = success_t<R>;
  try {
    auto call = [&]() -> R { return invoke_with(f, c, i); };
    if constexpr (std::is_void_v<R>) {
      call();
      return {};
    } else if constexpr (std::is_void_v<V>) {
      return {error(call())};
    } else {
      return {std::optional<V>(call()), {}};
    }
  } catch (...) {
    if constexpr (std::is_void_v<V>)
      return {error(std::current_exception())};
    else
      return {std::nullopt, error(std::current_exception())};
  }
}

}  // namespace errgroup::detail
