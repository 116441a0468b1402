// errgroup/trace.hpp
//
// errgroup::trace records what the tasks of one or more groups did: per
// task, its group, its label, when it was submitted, how long it waited for
// a slot or units, when it started and ended, on which thread, and how it
// ended. write_chrome_json() writes it as Chrome trace-event JSON, which
// Perfetto (ui.perfetto.dev) and chrome://tracing open; samples/trace_plot.py
// draws it as a PNG timeline. Taskflow's TFProf is the model.
//
// Example (full program: samples/crawler.cpp, --trace FILE):
//   errgroup::trace t;
//   errgroup::group g(ctx);
//   g.trace_to(t, "fetches");              // before the first go()
//   for (const std::string& url : urls)
//     g.go(url, [&url](const errgroup::context& c) { fetch(c, url); });
//   g.wait();
//   std::ofstream out("trace.json");
//   t.write_chrome_json(out);
//
// Cost: off by default; a group that is not traced pays one predictable
// branch per go(). A traced task carries 72 bytes more (so its block
// leaves oneTBB's 256-byte small-object pool for malloc), reads the clock
// three times and takes the trace's lock once when it ends: 0.3 to 0.6 us
// per task on bench_spawn's empty tasks (docs/design.md).
//
// A trace must outlive the groups traced into it. All members are safe from
// any thread, also while tasks record, and on a oneTBB worker: they hold the
// trace's lock only briefly and never block otherwise. Recording never
// throws; a record that memory cannot hold is counted by lost().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iosfwd>
#include <mutex>
#include <string>
#include <vector>

namespace errgroup {

namespace detail {
class trace_sink;
}

class trace {
 public:
  using clock = std::chrono::steady_clock;

  // How a task ended. induced: it failed after its group's context had been
  // cancelled (typically because of the cancellation); failed: before.
  // skipped: never invoked (cancelled first).
  enum class outcome : std::uint8_t { ok, failed, induced, skipped };

  // task is one task's record. admitted is when it got its slot and units
  // (== submitted when it did not wait). A skipped task has admitted ==
  // started == ended: when it was dropped (it waited until then), and its
  // thread is the one that dropped it.
  struct task {
    std::string group;
    std::string label;
    outcome how = outcome::ok;
    int thread = 0;  // the thread it started on: a small number, from 1
    clock::time_point submitted, admitted, started, ended;
    std::string error;  // failed or induced: the error's message
  };

  // mark is an instant worth seeing on the timeline: what is
  // "first failure" (a group's first task to end failed; label and error
  // are its: when two fail at once, wait() may return the other's error)
  // or "cancelled" (a group's context was cancelled before its wait()
  // returned; error is the cause).
  struct mark {
    std::string what;
    std::string group;
    std::string label;
    std::string error;
    int thread = 0;
    clock::time_point at;
  };

  // trace() starts an empty trace; times are written relative to now.
  trace();
  trace(const trace&) = delete;
  trace& operator=(const trace&) = delete;

  // tasks() returns a copy of the tasks recorded so far, in the order they
  // ended; marks() of the marks. Throw std::bad_alloc.
  std::vector<task> tasks() const;
  std::vector<mark> marks() const;
  // lost() counts records dropped because memory ran out.
  std::int64_t lost() const;

  // write_chrome_json(out) writes the trace as Chrome trace-event JSON
  // (https://ui.perfetto.dev opens it): a complete event ("ph":"X") per task
  // that ran, on its thread's row, named by its label, with args group,
  // outcome, submitted_us, waited_us (for a slot or units) and queued_us
  // (admitted to started); an instant event per skipped task; a global
  // instant event per mark. Times are in microseconds since the trace was
  // made. Task events are ordered by thread, then by time; marks come
  // last. A task that suspended (a go() or acquire() inside it waited, with
  // resumable tasks) may have resumed on another thread: its event stays
  // on the row it started on and may overlap what that thread ran
  // meanwhile. Throws what the stream throws.
  void write_chrome_json(std::ostream& out) const;

  // thread_of_caller() is the number this thread gets in traces.
  static int thread_of_caller() noexcept;

 private:
  friend class detail::trace_sink;
  mutable std::mutex mu_;
  std::deque<task> tasks_;   // guarded by mu_ (grows without moving)
  std::vector<mark> marks_;  // guarded by mu_
  std::int64_t lost_ = 0;    // guarded by mu_
  int groups_ = 0;           // guarded by mu_: names "group N"
  clock::time_point origin_;
};

}  // namespace errgroup
