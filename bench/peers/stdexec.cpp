// bench/peers/stdexec.cpp: the workloads on NVIDIA stdexec (peers.hpp),
// ported from shared/peers/cpp/stdexec_bench.cpp with the same shapes.
#include <algorithm>
#include <chrono>
#include <exception>
#include <exec/async_scope.hpp>
#include <exec/static_thread_pool.hpp>
#include <memory>
#include <mutex>
#include <semaphore>
#include <stdexec/execution.hpp>

#include "peers.hpp"

namespace bench::stdexec_peer {

namespace {

using clock = std::chrono::steady_clock;

std::unique_ptr<exec::static_thread_pool>& pool_ptr() {
  static std::unique_ptr<exec::static_thread_pool> p;
  return p;
}

auto scheduler() { return pool_ptr()->get_scheduler(); }

constexpr std::size_t map_chunk = 4096;

}  // namespace

void start(int threads) {
  if (!pool_ptr())
    pool_ptr() = std::make_unique<exec::static_thread_pool>(
        static_cast<std::uint32_t>(threads));
}

void spawn_async_scope(std::int64_t n, task_fn fn) {
  exec::async_scope scope;
  for (std::int64_t i = 0; i < n; ++i)
    scope.spawn(stdexec::schedule(scheduler()) |
                stdexec::then([fn]() noexcept { fn(); }));
  stdexec::sync_wait(scope.on_empty());
}

void spawn_counting_scope(std::int64_t n, task_fn fn) {
  stdexec::counting_scope scope;
  for (std::int64_t i = 0; i < n; ++i)
    stdexec::spawn(stdexec::schedule(scheduler()) |
                       stdexec::then([fn]() noexcept { fn(); }),
                   scope.get_token());
  stdexec::sync_wait(scope.join());
}

void spawn_limited(std::int64_t n, std::ptrdiff_t limit, task_fn fn) {
  std::counting_semaphore<> slots(limit);
  exec::async_scope scope;
  for (std::int64_t i = 0; i < n; ++i) {
    slots.acquire();
    scope.spawn(stdexec::schedule(scheduler()) |
                stdexec::then([&slots, fn]() noexcept {
                  fn();
                  slots.release();
                }));
  }
  stdexec::sync_wait(scope.on_empty());
}

void map_bulk_chunked(const double* in, double* out, std::size_t n) {
  stdexec::sync_wait(
      stdexec::schedule(scheduler()) |
      stdexec::bulk_chunked(stdexec::par, n,
                            [in, out](std::size_t b, std::size_t e) {
                              kernel_range(in, out, b, e, map_iters);
                            }));
}

void map_async_scope_4096(const double* in, double* out, std::size_t n) {
  exec::async_scope scope;
  for (std::size_t lo = 0; lo < n; lo += map_chunk)
    scope.spawn(stdexec::schedule(scheduler()) |
                stdexec::then(
                    [in, out, lo, hi = std::min(n, lo + map_chunk)]() noexcept {
                      kernel_range(in, out, lo, hi, map_iters);
                    }));
  stdexec::sync_wait(scope.on_empty());
}

cancel_result cancel_async_scope(int ntasks, int units, int unit_iters,
                                 int fail_idx) {
  cancel_tally s;
  // A spawned sender may not complete with an error: the first error is
  // recorded by hand and request_stop() stops the rest (queued operations
  // complete as stopped without running their body).
  std::mutex mu;
  std::exception_ptr first;
  const auto t0 = clock::now();
  clock::time_point end;
  {
    exec::async_scope scope;
    for (int i = 0; i < ntasks; ++i)
      scope.spawn(
          stdexec::starts_on(scheduler(),
                             stdexec::read_env(stdexec::get_stop_token)) |
          stdexec::then([&s, i, units, unit_iters, fail_idx](auto token) {
            s.task(i, units, unit_iters, fail_idx,
                   [&token] { return token.stop_requested(); });
          }) |
          stdexec::upon_error([&](std::exception_ptr e) noexcept {
            {
              std::lock_guard lock(mu);
              if (!first) first = e;
            }
            scope.request_stop();
          }));
    stdexec::sync_wait(scope.on_empty());
    end = clock::now();
  }
  return s.result(t0, end, ntasks, fail_idx, first != nullptr);
}

}  // namespace bench::stdexec_peer
