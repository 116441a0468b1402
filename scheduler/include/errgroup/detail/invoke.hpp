// errgroup/detail/invoke.hpp: how the library calls what users give it. Not
// part of the public API.
//
// Every callable the library takes (a group's task, an alternative of
// quorum() and first_success(), parallel_map's element function) may take
// the context as its first argument or not. invoke_with() is the one place
// that decides which; error_result is the one list of return types that
// mean "success or failure, no value".
#pragma once

#include <exception>
#include <functional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"

namespace errgroup::detail {

// takes_context<F, A...>: f(ctx, a...) is how F is called.
template <class F, class... A>
concept takes_context = std::is_invocable_v<F&, const context&, A...>;

// callable_with<F, A...>: F is callable as f(ctx, a...) or f(a...).
template <class F, class... A>
concept callable_with = takes_context<F, A...> || std::is_invocable_v<F&, A...>;

// invoke_with(f, ctx, a...) calls f(ctx, a...) when F takes a context first,
// else f(a...).
template <class F, class... A>
decltype(auto) invoke_with(F& f, const context& ctx, A&&... a) {
  if constexpr (takes_context<F, A...>)
    return std::invoke(f, ctx, std::forward<A>(a)...);
  else
    return std::invoke(f, std::forward<A>(a)...);
}

// invoke_with_t<F, A...> is what invoke_with returns.
template <class F, class... A>
using invoke_with_t =
    typename std::conditional_t<takes_context<F, A...>,
                                std::invoke_result<F&, const context&, A...>,
                                std::invoke_result<F&, A...>>::type;

// error_result<R>: R reports success or failure and carries no value; error
// converts from it.
template <class R>
concept error_result = std::is_same_v<R, error> ||
    std::is_same_v<R, std::error_code> || std::is_same_v<R, std::exception_ptr>;

}  // namespace errgroup::detail
