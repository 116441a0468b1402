// errgroup/scheduler.hpp
//
// errgroup::scheduler is where a group's tasks run: a oneTBB task_arena.
//   errgroup::scheduler::default_scheduler()   all cores, shared by the process
//   errgroup::scheduler io{64};                owns an arena of 64 threads
//   errgroup::scheduler app{my_arena};         adopts an arena you already have
//
// The default scheduler is oneTBB's own default, as for tbb::task_group: a
// group on it runs its tasks in the arena of the thread that calls go() (the
// thread's implicit arena, one slot per core, or the arena of the task that
// calls go()), so go() costs no arena entry.
//
// A scheduler of N threads runs its tasks on N threads even when no other
// thread joins it and even above the number of cores (it raises oneTBB's
// worker limit while it lives), so blocking I/O can use one; an application's
// lower global_control(max_allowed_parallelism) still wins, and
// max_concurrency() then says how many it gets. A thread that calls
// group::wait() from outside also joins and helps, as with oneTBB. An
// adopted arena changes no process-wide oneTBB setting.
//
// Example (full program: samples/crawler.cpp):
//   errgroup::scheduler io{jobs};        // fetches block on sockets
//   errgroup::group g(crawl, io);        // its tasks run on io's threads
//
// A scheduler must outlive the groups that use it. It is not copyable.
#pragma once

#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace errgroup {

class scheduler {
 public:
  // default_scheduler() returns the process-wide scheduler: the calling
  // thread's current oneTBB arena (oneTBB's default: one slot per core).
  static scheduler& default_scheduler();

  // scheduler(n) owns an arena whose tasks run on n threads. Throws
  // std::invalid_argument when n < 1.
  explicit scheduler(int max_concurrency);

  // scheduler(arena) adopts an arena the application owns; it must outlive
  // this scheduler. Its concurrency is the arena's.
  explicit scheduler(tbb::task_arena& arena);

  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // max_concurrency() returns how many threads run this scheduler's tasks
  // at most: for an owned scheduler, what it was asked for, less when the
  // application's global_control(max_allowed_parallelism) allows fewer
  // workers (at least 1: a thread in wait() runs them).
  int max_concurrency() const noexcept;

  // arena() returns the oneTBB arena, for oneTBB algorithms. For the default
  // scheduler: a task_arena attached to the calling thread's current arena,
  // valid until the next arena() call on this thread.
  tbb::task_arena& arena();

  // For the library: the arena to enter, or nullptr for the caller's own.
  tbb::task_arena* target() const noexcept { return arena_; }

 private:
  struct default_tag {};
  explicit scheduler(default_tag) noexcept;

  std::unique_ptr<tbb::task_arena> owned_;
  tbb::task_arena* arena_ = nullptr;  // null: the caller's current arena
  int max_concurrency_ = 0;
  int worker_request_ = 0;  // workers requested from the process-wide limit
};

namespace detail {

// run_in_arena(s, tag, fn, arg) runs fn(arg) on the calling thread inside
// the scheduler's arena, isolated with the given tag: tasks spawned there
// carry the tag, and a wait there runs only tasks that carry it (oneTBB work
// isolation, one tag shared by spawn and wait). fn must not throw.
void run_in_arena(const scheduler& s, const void* tag, void (*fn)(void*),
                  void* arg);

template <class Fn>
void run_in_arena(const scheduler& s, const void* tag, Fn&& fn) {
  run_in_arena(
      s, tag,
      [](void* f) { (*static_cast<std::remove_reference_t<Fn>*>(f))(); }, &fn);
}

}  // namespace detail
}  // namespace errgroup
