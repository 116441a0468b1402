#include "errgroup/weighted.hpp"

namespace errgroup {
namespace {
void check_n(std::int64_t n, const char* what) {
  if (n < 0) throw std::invalid_argument(what);
}
}  // namespace

weighted::weighted(std::int64_t size, order o)
    : gate_(size, o == order::barging) {
  check_n(size, "semaphore: negative size");
  static_assert(max_size == detail::gate::max_size);
  if (size > max_size)
    throw std::invalid_argument(
        "semaphore: size too large (the largest is weighted::max_size, "
        "2^61)");
}

error weighted::acquire(const context& ctx, std::int64_t n) {
  check_n(n, "semaphore: acquire of a negative weight");
  if (ctx.cancelled()) return ctx.err();
  if (n > size())
    return make_error<std::invalid_argument>(
        "semaphore: acquire of more than the semaphore's size");
  return gate_.acquire(ctx, n);
}

bool weighted::try_acquire(std::int64_t n) {
  check_n(n, "semaphore: try_acquire of a negative weight");
  return n <= size() && gate_.try_acquire(n);
}

void weighted::release(std::int64_t n) {
  check_n(n, "semaphore: release of a negative weight");
  gate_.release(n);
}

permit_and_error acquire_permit(weighted& sem, const context& ctx,
                                std::int64_t n) {
  if (error err = sem.acquire(ctx, n)) return {permit(), std::move(err)};
  return {permit(sem, n), error()};
}

permit try_acquire_permit(weighted& sem, std::int64_t n) {
  return sem.try_acquire(n) ? permit(sem, n) : permit();
}

}  // namespace errgroup
