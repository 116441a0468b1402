// tests/soak/soak.cpp: errgroup_soak, a seeded random driver of errgroup.
//
//   errgroup_soak [--ops N] [--seed S] [--round R] [--hang-seconds T] [-v]
//                 [--inject-hang]   (self-test: a task hangs, the watchdog
//                                    must fail the run)
//
// Environment (overrides the defaults, not the command line):
//   ERRGROUP_SOAK_OPS           operations to run (default 1000000)
//   ERRGROUP_SOAK_SEED          seed (default: from the clock); always printed
//   ERRGROUP_SOAK_ROUND         first round to run (replays one failing round)
//   ERRGROUP_SOAK_HANG_SECONDS  watchdog: no progress for this long fails
//                               the run (default 60)
//   ERRGROUP_SOAK_GDB=1         on a hang, also print every thread's stack
//   ERRGROUP_SOAK_SCHEDULER=K   focus: every round on scheduler K (0: 1
//                               thread, 1: 2, 2: 4, 3: the default one)
//   ERRGROUP_SOAK_NESTED=N      focus: tasks nest a group 1 in N times
//
// One operation is one go() / try_go() / go(sem, n, f) / try_go(sem, n, f) /
// go_until() call, from the main thread or from a task. Rounds follow each
// other until the operations are done; each round builds one group (plain or
// context, with a random limit, an optional weighted budget and random task
// behaviour) on an arena of 1, 2 or 4 threads or the default one, submits to
// it, waits (sometimes from several threads, sometimes several times), and
// checks at the end of every group:
//   - every task callable is invoked at most once, and invoked or destroyed
//     uninvoked exactly once;
//   - invoked + skipped == submitted, by our own count and by counters();
//     counters() agrees with ours on submitted, failed, skipped, succeeded,
//     and shows nothing running or waiting;
//   - the weighted budget is whole again: available() == size(); and no
//     more than size() units were in use at once;
//   - no task body runs after wait() returned (a flag set after wait() and
//     checked at the start and the end of every body);
//   - wait() returns: a task error (one a task produced, the first one
//     again on a reused plain group) when a task failed; the context's cause
//     when none failed and some were skipped; no error otherwise; every
//     concurrent wait() returns the same error; a plain group never skips;
//   - the running peak never exceeds the limit (checked in every task body,
//     and counters().peak at the end).
// A violation prints the seed and the round and aborts. A watchdog thread
// aborts the run when nothing progresses for the hang timeout, after
// printing counters() of every group alive.
#include <oneapi/tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- random numbers
// -----------------------------------------------------------

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A small generator for the main thread and for each task (xorshift*).
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(splitmix(seed) | 1) {}
  std::uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545f4914f6cdd1dULL;
  }
  // below(n): uniform in [0, n).
  std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>(((next() >> 32) * n) >> 32);
  }
  // one_in(n): true with probability 1/n (never for n == 0).
  bool one_in(std::uint32_t n) { return n != 0 && below(n) == 0; }
  int range(int lo, int hi) {  // [lo, hi]
    return lo +
           static_cast<int>(below(static_cast<std::uint32_t>(hi - lo + 1)));
  }

 private:
  std::uint64_t s_;
};

// ---- run-wide state
// -------------------------------------------------------------

struct run_state {
  std::uint64_t seed = 0;
  std::int64_t target_ops = 1000000;
  std::int64_t first_round = 0;
  int hang_seconds = 60;
  bool verbose = false;
  bool inject_hang = false;         // self-test of the watchdog
  int force_scheduler = -1;         // 0-3: every round on that scheduler
  std::uint32_t nested_one_in = 0;  // >0: every round nests this often
  std::atomic<std::int64_t> round{0};
  std::atomic<std::int64_t> ops{0};
  std::atomic<std::int64_t> progress{0};  // bumped by every op and task end
  // Totals, for the summary.
  std::atomic<std::int64_t> groups{0}, nested_groups{0}, invoked{0}, skipped{0},
      failed{0}, rejected{0}, gave_up{0}, waits{0}, extra_waiters{0},
      parent_cancels{0};
  std::mutex describe_mu;
  std::string round_text;  // guarded by describe_mu
};
run_state g_run;

struct gstate;
std::mutex g_live_mu;
std::vector<const gstate*> g_live;  // guarded by g_live_mu

void dump_live_groups(FILE* out);

[[noreturn]] void fail(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::string round;
  {
    std::lock_guard lock(g_run.describe_mu);
    round = g_run.round_text;
  }
  std::fprintf(stderr,
               "\nerrgroup_soak: FAIL: %s\n  seed=%llu round=%lld (%s)\n"
               "  replay: ERRGROUP_SOAK_SEED=%llu ERRGROUP_SOAK_ROUND=%lld "
               "errgroup_soak\n",
               buf, static_cast<unsigned long long>(g_run.seed),
               static_cast<long long>(g_run.round.load()), round.c_str(),
               static_cast<unsigned long long>(g_run.seed),
               static_cast<long long>(g_run.round.load()));
  dump_live_groups(stderr);
  std::fflush(stderr);
  std::abort();
}

#define SOAK_CHECK(cond, ...)       \
  do {                              \
    if (!(cond)) fail(__VA_ARGS__); \
  } while (0)

// ---- schedulers
// -------------------------------------------------------------------

struct schedulers {
  errgroup::scheduler one{1}, two{2}, four{4};
  errgroup::scheduler* pick(int i) {
    switch (i) {
      case 0:
        return &one;
      case 1:
        return &two;
      case 2:
        return &four;
      default:
        return &errgroup::scheduler::default_scheduler();
    }
  }
  static const char* name(int i) {
    static const char* const names[] = {"arena1", "arena2", "arena4",
                                        "default"};
    return names[i];
  }
};

// ---- a budget shared by the tasks of one group
// -------------------------------------

struct budget {
  explicit budget(std::int64_t n) : sem(n), size(n) {}
  errgroup::weighted sem;
  std::int64_t size;
  std::atomic<std::int64_t> in_use{0};  // units held by running bodies
};

// ---- what a task does
// ---------------------------------------------------------------

enum action : std::uint8_t {
  act_ok,
  act_spin,           // a little work, so that tasks overlap
  act_sleep,          // 50-200 us
  act_return_error,   // errgroup::error holding a runtime_error
  act_throw,          // throws a runtime_error
  act_throw_other,    // throws an int
  act_error_code,     // returns an error from a std::error_code
  act_cancel_parent,  // cancels the round's parent context, then succeeds
  act_nested,         // runs a nested group and waits for it
  act_self_go,        // go()/try_go()/go_until() on its own group
};

const char* action_name(action a) {
  static const char* const names[] = {
      "ok",          "spin",       "sleep",         "return_error", "throw",
      "throw_other", "error_code", "cancel_parent", "nested",       "self_go"};
  return names[a];
}

struct task_record {
  std::atomic<std::uint8_t> invoked{0};
  std::atomic<std::uint8_t> dropped{0};   // destroyed uninvoked
  std::atomic<std::uint8_t> admitted{0};  // go() admitted it
  std::atomic<std::uint8_t> in_body{0};   // its body runs now
  std::uint8_t what = 0;
};

// Per-group knobs, drawn per round.
struct knobs {
  std::uint32_t error_one_in = 0;  // 0: never
  std::uint32_t self_go_one_in = 0;
  std::uint32_t nested_one_in = 0;
  std::uint32_t cancel_one_in = 0;
  std::uint32_t sleep_one_in = 0;
};

struct gstate {
  gstate(int depth_, int cap_, errgroup::scheduler* sched_, const char* label_)
      : depth(depth_),
        cap(cap_),
        records(new task_record[static_cast<std::size_t>(cap_)]),
        sched(sched_),
        label(label_) {}
  gstate(const gstate&) = delete;
  gstate& operator=(const gstate&) = delete;

  // The group (one of the two owners is set).
  errgroup::group* g = nullptr;
  std::unique_ptr<errgroup::group> own_group;
  std::unique_ptr<errgroup::group_and_context> own_pair;
  bool context_group = false;

  int depth;
  int cap;
  std::unique_ptr<task_record[]> records;
  std::atomic<int> next_id{0};
  errgroup::scheduler* sched;
  const char* label;
  // A serial number per group: a task checks that its state is its group's.
  std::uint64_t serial = next_serial.fetch_add(1, std::memory_order_relaxed);
  static inline std::atomic<std::uint64_t> next_serial{1};
  int limit = -1;      // the limit for the current epoch
  int max_limit = -1;  // -1 when some epoch had no limit
  budget* units = nullptr;
  knobs k;
  const errgroup::cancel_func* cancel_parent = nullptr;
  errgroup::error parent_cause;  // what cancel_parent cancels with
  schedulers* scheds = nullptr;

  std::atomic<int> epoch{0};        // the epoch tasks are submitted in
  std::atomic<int> epoch_done{-1};  // the last epoch whose wait() returned
  std::atomic<int> running{0};
  std::atomic<std::int64_t> failed{0};
  std::atomic<bool> opaque_error{false};  // an error of unknown identity
  std::mutex errors_mu;
  std::vector<errgroup::error> produced;  // guarded by errors_mu
  errgroup::error first_result;           // the first error wait() returned
  std::atomic<std::int64_t> self_ops{0};

  task_record& rec(int id) { return records[static_cast<std::size_t>(id)]; }
  int new_id() {
    const int id = next_id.fetch_add(1, std::memory_order_relaxed);
    return id < cap ? id : -1;
  }
  void note_error(const errgroup::error& e) {
    std::lock_guard lock(errors_mu);
    produced.push_back(e);
  }
  bool was_produced(const errgroup::error& e) {
    std::lock_guard lock(errors_mu);
    return std::find(produced.begin(), produced.end(), e) != produced.end();
  }
};

void register_live(const gstate* s) {
  std::lock_guard lock(g_live_mu);
  g_live.push_back(s);
}
void unregister_live(const gstate* s) {
  std::lock_guard lock(g_live_mu);
  g_live.erase(std::find(g_live.begin(), g_live.end(), s));
}

void dump_live_groups(FILE* out) {
  std::unique_lock lock(g_live_mu, std::try_to_lock);
  if (!lock.owns_lock()) {
    std::fprintf(out, "  (group list busy)\n");
    return;
  }
  std::fprintf(out, "  %zu group(s) alive:\n", g_live.size());
  for (const gstate* s : g_live) {
    const errgroup::group::stats c = s->g->counters();
    std::fprintf(
        out,
        "    %s depth=%d %s limit=%d budget=%lld/%lld: submitted=%lld "
        "running=%lld waiting=%lld succeeded=%lld failed=%lld skipped=%lld "
        "peak=%lld; ids=%d epoch=%d done=%d\n",
        s->label, s->depth, s->context_group ? "context" : "plain", s->limit,
        s->units ? static_cast<long long>(s->units->sem.available()) : 0LL,
        s->units ? static_cast<long long>(s->units->size) : 0LL,
        static_cast<long long>(c.submitted), static_cast<long long>(c.running),
        static_cast<long long>(c.waiting), static_cast<long long>(c.succeeded),
        static_cast<long long>(c.failed), static_cast<long long>(c.skipped),
        static_cast<long long>(c.peak), s->next_id.load(), s->epoch.load(),
        s->epoch_done.load());
  }
}

// ---- the task callable
// ---------------------------------------------------------------

errgroup::error run_nested(gstate& outer, const errgroup::context& ctx, rng& r);
void submit_one(gstate& s, rng& r, bool from_task);

// task_fn is every task's callable. It records in its group's state whether
// it was invoked or destroyed uninvoked (skipped), exactly once, through the
// moves the library makes.
struct task_fn {
  gstate* s;
  int id;
  int epoch;
  std::int64_t units;
  std::uint64_t seed;
  action what;
  std::uint64_t serial;
  bool live = true;
  bool invoked = false;

  task_fn(gstate* s_, int id_, int epoch_, std::int64_t units_,
          std::uint64_t seed_, action what_)
      : s(s_),
        id(id_),
        epoch(epoch_),
        units(units_),
        seed(seed_),
        what(what_),
        serial(s_->serial) {}
  task_fn(task_fn&& o) noexcept
      : s(o.s),
        id(o.id),
        epoch(o.epoch),
        units(o.units),
        seed(o.seed),
        what(o.what),
        serial(o.serial),
        live(std::exchange(o.live, false)),
        invoked(o.invoked) {}
  task_fn& operator=(task_fn&&) = delete;
  ~task_fn() {
    if (live && !invoked) {
      SOAK_CHECK(s->serial == serial,
                 "task %d of group #%llu destroyed after its group (now #%llu)",
                 id, static_cast<unsigned long long>(serial),
                 static_cast<unsigned long long>(s->serial));
      if (s->rec(id).dropped.fetch_add(1, std::memory_order_relaxed) != 0)
        fail("%s: task %d destroyed uninvoked twice", s->label, id);
    }
  }

  errgroup::error operator()(const errgroup::context& ctx) {
    SOAK_CHECK(live, "%s: a moved-from task %d was invoked", s->label, id);
    SOAK_CHECK(s->serial == serial,
               "task %d (%s) of group #%llu invoked after its group's end "
               "(its state now belongs to group #%llu)",
               id, action_name(what), static_cast<unsigned long long>(serial),
               static_cast<unsigned long long>(s->serial));
    invoked = true;
    task_record& rec = s->rec(id);
    SOAK_CHECK(rec.invoked.fetch_add(1, std::memory_order_relaxed) == 0,
               "%s: task %d invoked twice", s->label, id);
    SOAK_CHECK(s->epoch_done.load(std::memory_order_acquire) < epoch,
               "%s: task %d (epoch %d) started after wait() returned", s->label,
               id, epoch);
    rec.what = what;
    rec.in_body.store(1, std::memory_order_relaxed);
    const int now = s->running.fetch_add(1, std::memory_order_relaxed) + 1;
    if (!(s->limit < 0 || now <= s->limit)) {
      for (int i = 0; i < s->cap && i < s->next_id.load(); ++i)
        if (s->rec(i).in_body.load(std::memory_order_relaxed))
          std::fprintf(stderr, "  in body: task %d (%s) admitted=%d\n", i,
                       action_name(static_cast<action>(s->rec(i).what)),
                       s->rec(i).admitted.load());
    }
    SOAK_CHECK(s->limit < 0 || now <= s->limit,
               "%s #%llu: %d tasks running at once, limit %d (task %d, %s)",
               s->label, static_cast<unsigned long long>(serial), now, s->limit,
               id, action_name(what));
    if (units > 0) {
      const std::int64_t held =
          s->units->in_use.fetch_add(units, std::memory_order_relaxed) + units;
      SOAK_CHECK(held <= s->units->size,
                 "%s: %lld units in use of a budget of %lld", s->label,
                 static_cast<long long>(held),
                 static_cast<long long>(s->units->size));
    }
    errgroup::error result;
    std::exception_ptr thrown;
    try {
      result = body(ctx);
    } catch (...) {
      thrown = std::current_exception();
    }
    if (units > 0) s->units->in_use.fetch_sub(units, std::memory_order_relaxed);
    rec.in_body.store(0, std::memory_order_relaxed);
    s->running.fetch_sub(1, std::memory_order_relaxed);
    if (result || thrown) s->failed.fetch_add(1, std::memory_order_relaxed);
    SOAK_CHECK(s->epoch_done.load(std::memory_order_acquire) < epoch,
               "%s: task %d (epoch %d) still ran after wait() returned",
               s->label, id, epoch);
    g_run.progress.fetch_add(1, std::memory_order_relaxed);
    if (thrown) std::rethrow_exception(thrown);
    return result;
  }

  errgroup::error body(const errgroup::context& ctx) {
    switch (what) {
      case act_ok:
        return {};
      case act_spin: {
        std::uint64_t x = seed;
        const int n = static_cast<int>(seed & 255);
        for (int i = 0; i < n; ++i) {
          x = x * 6364136223846793005ULL + 1442695040888963407ULL;
          asm volatile("" : "+r"(x));
        }
        return {};
      }
      case act_sleep:
        std::this_thread::sleep_for(std::chrono::microseconds(50 + seed % 150));
        return {};
      case act_return_error: {
        errgroup::error e = errgroup::make_error<std::runtime_error>("soak");
        s->note_error(e);
        return e;
      }
      case act_throw: {
        errgroup::error e = errgroup::make_error<std::runtime_error>("thrown");
        s->note_error(e);
        e.throw_if();
        return {};
      }
      case act_throw_other: {
        errgroup::error e(std::make_exception_ptr(static_cast<int>(seed)));
        s->note_error(e);
        e.throw_if();
        return {};
      }
      case act_error_code:
        s->opaque_error.store(true, std::memory_order_relaxed);
        return errgroup::error(std::make_error_code(std::errc::io_error));
      case act_cancel_parent:
        if (s->cancel_parent != nullptr) {
          g_run.parent_cancels.fetch_add(1, std::memory_order_relaxed);
          (*s->cancel_parent)(s->parent_cause);
        }
        return {};
      case act_nested: {
        rng r(seed);
        errgroup::error e = run_nested(*s, ctx, r);
        if (e) {
          s->note_error(e);  // passed on: now this group's task error
          if (e.is<std::system_error>())
            s->opaque_error.store(true, std::memory_order_relaxed);
        }
        return e;
      }
      case act_self_go: {
        rng r(seed);
        const int n = r.range(1, 3);
        for (int i = 0; i < n; ++i) submit_one(*s, r, /*from_task=*/true);
        return {};
      }
    }
    return {};
  }
};

// The return types a task may have: the same task_fn behind four shapes.
struct as_void {  // f() -> void; an error is thrown
  task_fn f;
  void operator()() { f(errgroup::context()).throw_if(); }
};
struct as_exception_ptr {  // f(ctx) -> std::exception_ptr
  task_fn f;
  std::exception_ptr operator()(const errgroup::context& c) {
    return f(c).exception();
  }
};
struct as_error_code {  // f() -> std::error_code (other errors are thrown)
  task_fn f;
  std::error_code operator()() {
    const errgroup::error e = f(errgroup::context());
    if (const auto* se = e.as<std::system_error>()) return se->code();
    e.throw_if();
    return {};
  }
};

// ---- submission
// -------------------------------------------------------------------

action pick_action(const gstate& s, rng& r, bool from_task) {
  if (s.k.error_one_in != 0 && r.one_in(s.k.error_one_in)) {
    switch (r.below(4)) {
      case 0:
        return act_return_error;
      case 1:
        return act_throw;
      case 2:
        return act_throw_other;
      default:
        return act_error_code;
    }
  }
  if (s.cancel_parent != nullptr && r.one_in(s.k.cancel_one_in))
    return act_cancel_parent;
  if (s.depth < 2 && r.one_in(s.k.nested_one_in)) return act_nested;
  if (!from_task && r.one_in(s.k.self_go_one_in)) return act_self_go;
  if (r.one_in(s.k.sleep_one_in)) return act_sleep;
  return r.one_in(3) ? act_spin : act_ok;
}

// submit_one(s, r, from_task) makes one operation on s's group.
void submit_one(gstate& s, rng& r, bool from_task) {
  const int id = s.new_id();
  if (id < 0) return;  // out of records: the group is big enough
  g_run.ops.fetch_add(1, std::memory_order_relaxed);
  g_run.progress.fetch_add(1, std::memory_order_relaxed);
  task_record& rec = s.rec(id);
  const action what = pick_action(s, r, from_task);
  const std::uint64_t seed = r.next();
  const int epoch = s.epoch.load(std::memory_order_relaxed);
  errgroup::group& g = *s.g;

  // Which operation: go / try_go / go_until / go(sem) / try_go(sem).
  std::uint32_t op = r.below(100);
  if (s.units == nullptr && op >= 75) op = r.below(75);
  std::int64_t units = 0;
  if (op >= 75) units = r.range(0, static_cast<int>(s.units->size));
  task_fn fn(&s, id, epoch, units, seed, what);
  bool admitted = false;
  if (op < 50) {
    // go(f), in one of the four shapes.
    switch (seed >> 62) {
      case 0:
        g.go(std::move(fn));
        break;
      case 1:
        g.go(as_void{std::move(fn)});
        break;
      case 2:
        g.go(as_exception_ptr{std::move(fn)});
        break;
      default:
        g.go(as_error_code{std::move(fn)});
        break;
    }
    admitted = true;
  } else if (op < 62) {
    admitted = g.try_go(std::move(fn));
    if (!admitted) g_run.rejected.fetch_add(1, std::memory_order_relaxed);
  } else if (op < 75) {
    static const std::chrono::microseconds waits[] = {0us, 20us, 200us, 2000us};
    const auto deadline = clock_type::now() + waits[r.below(4)];
    const errgroup::error err = g.go_until(deadline, std::move(fn));
    admitted = !err;
    if (err) {
      g_run.gave_up.fetch_add(1, std::memory_order_relaxed);
      SOAK_CHECK(err.is<errgroup::deadline_exceeded_error>() ||
                     (s.context_group && g.get_context().cancelled() &&
                      err == g.get_context().err()),
                 "%s: go_until gave up with \"%s\"", s.label,
                 err.message().c_str());
    }
  } else if (op < 92) {
    g.go(s.units->sem, units, std::move(fn));
    admitted = true;
  } else {
    admitted = g.try_go(s.units->sem, units, std::move(fn));
    if (!admitted) g_run.rejected.fetch_add(1, std::memory_order_relaxed);
  }
  if (admitted) rec.admitted.store(1, std::memory_order_relaxed);
}

// ---- checks at the end of a group's epoch
// -----------------------------------------

struct tally {
  std::int64_t submitted = 0, invoked = 0, skipped = 0;
};

tally count(gstate& s) {
  tally t;
  const int n = std::min(s.next_id.load(), s.cap);
  for (int i = 0; i < n; ++i) {
    const task_record& rec = s.rec(i);
    const int inv = rec.invoked.load(std::memory_order_relaxed);
    const int drop = rec.dropped.load(std::memory_order_relaxed);
    const bool adm = rec.admitted.load(std::memory_order_relaxed) != 0;
    SOAK_CHECK(inv + drop == 1,
               "%s: task %d invoked %d times and destroyed uninvoked %d "
               "times (admitted=%d)",
               s.label, i, inv, drop, adm);
    SOAK_CHECK(adm || inv == 0, "%s: task %d ran but was not admitted", s.label,
               i);
    t.submitted += adm;
    t.invoked += inv;
    t.skipped += adm && drop;
  }
  return t;
}

// check_after_wait(s, results): every wait() of this epoch returned; results
// are what they returned.
void check_after_wait(gstate& s, const std::vector<errgroup::error>& results) {
  errgroup::group& g = *s.g;
  for (const errgroup::error& e : results)
    SOAK_CHECK(e == results.front(),
               "%s: concurrent wait() calls returned different errors "
               "(\"%s\" and \"%s\")",
               s.label, results.front().message().c_str(), e.message().c_str());
  const errgroup::error& res = results.front();
  const tally t = count(s);
  const std::int64_t failed = s.failed.load();
  SOAK_CHECK(t.invoked + t.skipped == t.submitted,
             "%s: invoked %lld + skipped %lld != submitted %lld", s.label,
             static_cast<long long>(t.invoked),
             static_cast<long long>(t.skipped),
             static_cast<long long>(t.submitted));
  const errgroup::group::stats c = g.counters();
  SOAK_CHECK(
      c.submitted == t.submitted && c.skipped == t.skipped &&
          c.failed == failed && c.succeeded == t.invoked - failed &&
          c.running == 0 && c.waiting == 0,
      "%s: counters() submitted=%lld skipped=%lld failed=%lld "
      "succeeded=%lld running=%lld waiting=%lld; ours: submitted=%lld "
      "skipped=%lld failed=%lld invoked=%lld",
      s.label, static_cast<long long>(c.submitted),
      static_cast<long long>(c.skipped), static_cast<long long>(c.failed),
      static_cast<long long>(c.succeeded), static_cast<long long>(c.running),
      static_cast<long long>(c.waiting), static_cast<long long>(t.submitted),
      static_cast<long long>(t.skipped), static_cast<long long>(failed),
      static_cast<long long>(t.invoked));
  SOAK_CHECK(s.max_limit < 0 || c.peak <= s.max_limit,
             "%s: counters().peak %lld > limit %d", s.label,
             static_cast<long long>(c.peak), s.max_limit);
  SOAK_CHECK(s.running.load() == 0, "%s: a task body is still running",
             s.label);
  if (s.units != nullptr) {
    SOAK_CHECK(s.units->sem.available() == s.units->sem.size(),
               "%s: budget not whole after wait(): available %lld of %lld",
               s.label, static_cast<long long>(s.units->sem.available()),
               static_cast<long long>(s.units->sem.size()));
    SOAK_CHECK(s.units->in_use.load() == 0, "%s: units still in use", s.label);
  }
  // A plain group skips only when the work it belongs to is cancelled: a
  // task of an enclosing group (docs/contract.md §6).
  SOAK_CHECK(s.context_group || s.depth > 0 || t.skipped == 0,
             "%s: a top-level plain group skipped %lld tasks", s.label,
             static_cast<long long>(t.skipped));
  // What wait() returned.
  if (failed > 0) {
    SOAK_CHECK(static_cast<bool>(res),
               "%s: wait() returned success although %lld tasks failed",
               s.label, static_cast<long long>(failed));
    SOAK_CHECK(s.was_produced(res) ||
                   (s.opaque_error.load() && res.is<std::system_error>()),
               "%s: wait() returned \"%s\", which no task produced", s.label,
               res.message().c_str());
    SOAK_CHECK(!s.first_result || res == s.first_result,
               "%s: the first error changed on a later wait(): \"%s\" then "
               "\"%s\"",
               s.label, s.first_result.message().c_str(),
               res.message().c_str());
    s.first_result = res;
  } else if (t.skipped > 0) {
    SOAK_CHECK(static_cast<bool>(res),
               "%s: wait() returned success although %lld tasks were skipped",
               s.label, static_cast<long long>(t.skipped));
    if (s.context_group)
      SOAK_CHECK(res == g.get_context().cause(),
                 "%s: wait() returned \"%s\", not the context's cause \"%s\"",
                 s.label, res.message().c_str(),
                 g.get_context().cause().message().c_str());
    else
      SOAK_CHECK(res.is<errgroup::cancelled_error>(),
                 "%s: wait() returned \"%s\" after its enclosing work was "
                 "cancelled",
                 s.label, res.message().c_str());
  } else {
    // A nested group whose enclosing task's group was cancelled reports it
    // (as tbb::task_group::wait() reports `canceled`), even if all ran.
    SOAK_CHECK(!res || (s.depth > 0 && res.is<errgroup::cancelled_error>()),
               "%s: wait() returned \"%s\" and nothing failed", s.label,
               res.message().c_str());
  }
  if (s.context_group)
    SOAK_CHECK(g.get_context().cancelled(),
               "%s: the context is live after wait()", s.label);
  // Keep errors: every failure was recorded.
  g_run.waits.fetch_add(1, std::memory_order_relaxed);
}

// wait_all(s, extra): wait() on this thread and on `extra` other threads at
// once; then the epoch is over.
std::vector<errgroup::error> wait_all(gstate& s, int extra) {
  std::vector<errgroup::error> results(static_cast<std::size_t>(extra) + 1);
  std::vector<std::thread> waiters;
  for (int i = 0; i < extra; ++i)
    waiters.emplace_back([&s, &results, i] {
      results[static_cast<std::size_t>(i) + 1] = s.g->wait();
      s.epoch_done.store(s.epoch.load(), std::memory_order_release);
    });
  results[0] = s.g->wait();
  s.epoch_done.store(s.epoch.load(), std::memory_order_release);
  for (auto& t : waiters) t.join();
  g_run.extra_waiters.fetch_add(extra, std::memory_order_relaxed);
  return results;
}

void finish_totals(gstate& s) {
  const tally t = count(s);
  g_run.invoked.fetch_add(t.invoked, std::memory_order_relaxed);
  g_run.skipped.fetch_add(t.skipped, std::memory_order_relaxed);
  g_run.failed.fetch_add(s.failed.load(), std::memory_order_relaxed);
}

// ---- nested groups (from a task)
// -------------------------------------------------

errgroup::error run_nested(gstate& outer, const errgroup::context& ctx,
                           rng& r) {
  const int tasks = r.range(1, 12);
  errgroup::scheduler* sched =
      r.one_in(2) ? outer.sched : &errgroup::scheduler::default_scheduler();
  gstate s(outer.depth + 1, tasks * 4 + 8, sched, "nested");
  s.scheds = outer.scheds;
  s.k.error_one_in = r.one_in(3) ? 4 : 0;
  s.k.self_go_one_in = r.one_in(2) ? 4 : 0;
  s.k.nested_one_in = 8;
  s.k.sleep_one_in = 16;
  if (r.one_in(2)) {
    s.own_group = std::make_unique<errgroup::group>(*sched);
  } else {
    // A context group under the outer task's context (background for a task
    // of a plain group).
    s.own_group = std::make_unique<errgroup::group>(ctx, *sched);
    s.context_group = true;
  }
  s.g = s.own_group.get();
  if (r.one_in(2)) {
    s.limit = r.range(1, 3);
    s.g->set_limit(s.limit);
  }
  s.max_limit = s.limit;
  register_live(&s);
  for (int i = 0; i < tasks; ++i) submit_one(s, r, /*from_task=*/false);
  const auto results = wait_all(s, 0);
  check_after_wait(s, results);
  unregister_live(&s);
  finish_totals(s);
  g_run.nested_groups.fetch_add(1, std::memory_order_relaxed);
  return r.one_in(2) ? results.front() : errgroup::error();
}

// ---- one round
// ---------------------------------------------------------------------

void run_round(schedulers& scheds, std::int64_t round, std::int64_t ops_left) {
  rng r(g_run.seed ^ splitmix(static_cast<std::uint64_t>(round)));
  int sched_index = static_cast<int>(r.below(4));
  if (g_run.force_scheduler >= 0) sched_index = g_run.force_scheduler;
  errgroup::scheduler* sched = scheds.pick(sched_index);

  // Size: mostly small groups, sometimes big ones.
  int planned = r.one_in(8) ? r.range(1000, 4000) : r.range(1, 600);
  planned = static_cast<int>(std::min<std::int64_t>(planned, ops_left));
  planned = std::max(planned, 1);

  // The parent context.
  enum { parent_background, parent_cancel, parent_timeout } parent_kind;
  const std::uint32_t pk = r.below(10);
  parent_kind = pk < 4   ? parent_background
                : pk < 8 ? parent_cancel
                         : parent_timeout;
  errgroup::context parent;
  std::optional<errgroup::cancel_func> cancel;
  if (parent_kind == parent_cancel) {
    auto [c, f] = errgroup::with_cancel(errgroup::context());
    parent = c;
    cancel.emplace(f);
  } else if (parent_kind == parent_timeout) {
    auto [c, f] = errgroup::with_timeout(
        errgroup::context(), std::chrono::microseconds(r.range(100, 5000)));
    parent = c;
    cancel.emplace(f);
  }

  const int epochs_planned = r.one_in(3) ? r.range(2, 3) : 1;
  const std::uint32_t kind = r.below(10);  // 0-3 plain, 4-6 ctor, 7-9 pair
  gstate s(0, planned * 3 + 64, sched, "round");
  s.scheds = &scheds;
  if (kind < 4) {
    s.own_group = std::make_unique<errgroup::group>(*sched);
  } else if (kind < 7) {
    s.own_group = std::make_unique<errgroup::group>(parent, *sched);
    s.context_group = true;
  } else {
    s.own_pair.reset(new errgroup::group_and_context(
        errgroup::with_context(parent, *sched)));
    SOAK_CHECK(s.own_pair->ctx == s.own_pair->g.get_context(),
               "with_context returned a context that is not the group's");
    s.context_group = true;
  }
  s.g = s.own_group ? s.own_group.get() : &s.own_pair->g;
  const int epochs = s.context_group ? 1 : epochs_planned;

  static const int limits[] = {-1, -1, -1, 1, 1, 2, 3, 4, 8, 0};
  auto draw_limit = [&] {
    int l = limits[r.below(10)];
    return l == 0 ? r.range(1, 64) : l;
  };
  std::optional<budget> units;
  if (r.one_in(3)) {
    units.emplace(r.range(1, 10));
    s.units = &*units;
  }
  const std::uint32_t er = r.below(10);
  s.k.error_one_in = er < 6 ? 0 : er < 9 ? 500 : 30;
  s.k.self_go_one_in = r.one_in(3) ? 20 : 0;
  s.k.nested_one_in = r.one_in(3) ? 300 : 0;
  if (g_run.nested_one_in > 0) s.k.nested_one_in = g_run.nested_one_in;
  s.k.sleep_one_in = r.one_in(4) ? 200 : 0;
  if (cancel && r.one_in(3)) {
    s.cancel_parent = &*cancel;
    s.k.cancel_one_in = 1000;
    s.parent_cause = errgroup::make_error<std::runtime_error>("parent");
  }
  const int extra_waiters = r.one_in(12) ? r.range(1, 2) : 0;
  const bool canceller_thread = cancel && r.one_in(30);
  s.max_limit = 0;

  {
    char text[256];
    std::snprintf(text, sizeof text,
                  "%s %s parent=%s planned=%d epochs=%d budget=%lld "
                  "error1in=%u selfgo1in=%u nested1in=%u cancel1in=%u "
                  "waiters=%d",
                  schedulers::name(sched_index),
                  kind < 4   ? "plain"
                  : kind < 7 ? "group(ctx)"
                             : "with_context",
                  parent_kind == parent_background ? "background"
                  : parent_kind == parent_cancel   ? "cancel"
                                                   : "timeout",
                  planned, epochs,
                  units ? static_cast<long long>(units->size) : 0LL,
                  s.k.error_one_in, s.k.self_go_one_in, s.k.nested_one_in,
                  s.k.cancel_one_in, extra_waiters);
    std::lock_guard lock(g_run.describe_mu);
    g_run.round_text = text;
  }
  register_live(&s);

  std::thread canceller;
  if (canceller_thread) {
    const auto delay = std::chrono::microseconds(r.range(0, 2000));
    canceller = std::thread([&cancel, delay] {
      std::this_thread::sleep_for(delay);
      (*cancel)();
    });
  }

  for (int e = 0; e < epochs; ++e) {
    s.epoch.store(e, std::memory_order_relaxed);
    s.limit = draw_limit();
    if (s.limit < 0 || s.max_limit < 0)
      s.max_limit = -1;
    else
      s.max_limit = std::max(s.max_limit, s.limit);
    s.g->set_limit(s.limit);
    const int n = std::max(1, planned / epochs);
    for (int i = 0; i < n; ++i) submit_one(s, r, /*from_task=*/false);
    const auto results = wait_all(s, e == epochs - 1 ? extra_waiters : 0);
    check_after_wait(s, results);
  }

  // A context group after wait(): go() is misuse, try_go() is just false.
  if (s.context_group && r.one_in(4)) {
    const int id = s.new_id();
    if (id >= 0) {
      bool threw = false;
      try {
        s.g->go(task_fn(&s, id, s.epoch.load(), 0, 0, act_ok));
      } catch (const std::logic_error&) {
        threw = true;
      }
      SOAK_CHECK(threw, "go() after wait() on a context group did not throw");
      const int id2 = s.new_id();
      if (id2 >= 0)
        SOAK_CHECK(!s.g->try_go(task_fn(&s, id2, s.epoch.load(), 0, 0, act_ok)),
                   "try_go() after wait() on a context group started a task");
      const auto results = wait_all(s, 0);  // the same result again
      check_after_wait(s, results);
    }
  }

  if (canceller.joinable()) canceller.join();
  unregister_live(&s);
  finish_totals(s);
  g_run.groups.fetch_add(1, std::memory_order_relaxed);
}

// ---- the watchdog's self-test

// inject_hang_round(): a group whose one task never returns; wait() hangs and
// the watchdog must fail the run, showing the group's counters.
void inject_hang_round(schedulers& scheds) {
  gstate s(0, 4, scheds.pick(1), "inject-hang");
  s.own_group = std::make_unique<errgroup::group>(*s.sched);
  s.g = s.own_group.get();
  {
    std::lock_guard lock(g_run.describe_mu);
    g_run.round_text = "--inject-hang: one task never returns";
  }
  register_live(&s);
  s.g->go([] {
    std::mutex mu;
    std::condition_variable cv;
    std::unique_lock lock(mu);
    cv.wait(lock, [] { return false; });
  });
  (void)s.g->wait();  // never returns
}

// ---- watchdog
// ---------------------------------------------------------------------

// With ERRGROUP_SOAK_GDB=1, a hang also prints every thread's stack (gdb).
void dump_stacks() {
  const char* v = std::getenv("ERRGROUP_SOAK_GDB");
  if (v == nullptr || *v == '\0' || *v == '0') return;
  char cmd[128];
  std::snprintf(cmd, sizeof cmd,
                "gdb -p %d -batch -ex 'thread apply all bt' 1>&2 2>/dev/null",
                static_cast<int>(::getpid()));
  std::fflush(stdout);
  if (std::system(cmd) != 0) std::fprintf(stderr, "  (gdb failed)\n");
}

class watchdog {
 public:
  explicit watchdog(int seconds) : seconds_(seconds) {
    thread_ = std::thread([this] { run(); });
  }
  ~watchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  void run() {
    std::unique_lock lock(mu_);
    std::int64_t last = g_run.progress.load();
    auto last_change = clock_type::now();
    while (!cv_.wait_for(lock, 1s, [this] { return stop_; })) {
      const std::int64_t now = g_run.progress.load();
      if (now != last) {
        last = now;
        last_change = clock_type::now();
        continue;
      }
      if (clock_type::now() - last_change >= std::chrono::seconds(seconds_)) {
        dump_stacks();
        fail("no progress for %d s (hang): ops=%lld", seconds_,
             static_cast<long long>(g_run.ops.load()));
      }
    }
  }
  int seconds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// ---- main
// ---------------------------------------------------------------------

bool parse_i64(const char* s, std::int64_t& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 0);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

bool parse_u64(const char* s, std::uint64_t& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 0);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

// usage(why) prints the usage, to stderr after `why` with exit status 2, or
// to stdout with status 0 when why is null (--help).
[[noreturn]] void usage(const char* why) {
  std::FILE* out = why != nullptr ? stderr : stdout;
  if (why != nullptr) std::fprintf(out, "errgroup_soak: %s\n", why);
  std::fprintf(out,
               "usage: errgroup_soak [--ops N] [--seed S] [--round R] "
               "[--hang-seconds T] [--inject-hang] [-v] [--help]\n"
               "environment: ERRGROUP_SOAK_OPS, ERRGROUP_SOAK_SEED, "
               "ERRGROUP_SOAK_ROUND, ERRGROUP_SOAK_HANG_SECONDS,\n"
               "  ERRGROUP_SOAK_SCHEDULER (0-3), ERRGROUP_SOAK_NESTED\n");
  std::exit(why != nullptr ? 2 : 0);
}

}  // namespace

int main(int argc, char** argv) {
  bool have_seed = false;
  std::int64_t v = 0;
  if (parse_i64(std::getenv("ERRGROUP_SOAK_OPS"), v)) g_run.target_ops = v;
  if (parse_u64(std::getenv("ERRGROUP_SOAK_SEED"), g_run.seed))
    have_seed = true;
  if (parse_i64(std::getenv("ERRGROUP_SOAK_ROUND"), v)) g_run.first_round = v;
  if (parse_i64(std::getenv("ERRGROUP_SOAK_HANG_SECONDS"), v))
    g_run.hang_seconds = static_cast<int>(v);
  if (parse_i64(std::getenv("ERRGROUP_SOAK_SCHEDULER"), v) && v >= 0 && v < 4)
    g_run.force_scheduler = static_cast<int>(v);
  if (parse_i64(std::getenv("ERRGROUP_SOAK_NESTED"), v) && v > 0)
    g_run.nested_one_in = static_cast<std::uint32_t>(v);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "-h" || a == "--help") {
      usage(nullptr);
    } else if (a == "-v") {
      g_run.verbose = true;
    } else if (a == "--ops" && parse_i64(next, v)) {
      // The command line is the default; the environment wins (CTest passes
      // --ops, a person raises it with ERRGROUP_SOAK_OPS).
      if (std::getenv("ERRGROUP_SOAK_OPS") == nullptr) g_run.target_ops = v;
      ++i;
    } else if (a == "--seed" && parse_u64(next, g_run.seed)) {
      have_seed = true;
      ++i;
    } else if (a == "--round" && parse_i64(next, v)) {
      g_run.first_round = v;
      ++i;
    } else if (a == "--inject-hang") {
      g_run.inject_hang = true;  // one task that never returns
    } else if (a == "--hang-seconds" && parse_i64(next, v)) {
      g_run.hang_seconds = static_cast<int>(v);
      ++i;
    } else {
      usage(("bad argument: " + a).c_str());
    }
  }
  if (g_run.target_ops < 1 || g_run.hang_seconds < 1) usage("bad values");
  if (!have_seed)
    g_run.seed = splitmix(static_cast<std::uint64_t>(
        clock_type::now().time_since_epoch().count()));
  std::printf(
      "errgroup_soak: seed=%llu ops=%lld first_round=%lld hang=%ds "
      "(replay: ERRGROUP_SOAK_SEED=%llu)\n",
      static_cast<unsigned long long>(g_run.seed),
      static_cast<long long>(g_run.target_ops),
      static_cast<long long>(g_run.first_round), g_run.hang_seconds,
      static_cast<unsigned long long>(g_run.seed));
  std::fflush(stdout);

  const auto start = clock_type::now();
  {
    schedulers scheds;
    watchdog dog(g_run.hang_seconds);
    std::int64_t round = g_run.first_round;
    std::int64_t next_report = g_run.target_ops / 10;
    if (g_run.inject_hang) inject_hang_round(scheds);
    while (g_run.ops.load() < g_run.target_ops) {
      g_run.round.store(round);
      run_round(scheds, round, g_run.target_ops - g_run.ops.load());
      ++round;
      if (g_run.verbose || g_run.ops.load() >= next_report) {
        next_report += g_run.target_ops / 10;
        std::printf(
            "  %lld ops, %lld rounds, %.1f s\n",
            static_cast<long long>(g_run.ops.load()),
            static_cast<long long>(round - g_run.first_round),
            std::chrono::duration<double>(clock_type::now() - start).count());
        std::fflush(stdout);
      }
    }
  }
  const double secs =
      std::chrono::duration<double>(clock_type::now() - start).count();
  std::printf(
      "errgroup_soak: PASS seed=%llu: %lld ops in %.1f s (%.0f ops/s); "
      "%lld groups + %lld nested; tasks invoked=%lld skipped=%lld "
      "failed=%lld; try_go rejected=%lld, go_until gave up=%lld; waits=%lld "
      "(+%lld from extra threads); parent cancels from tasks=%lld\n",
      static_cast<unsigned long long>(g_run.seed),
      static_cast<long long>(g_run.ops.load()), secs,
      static_cast<double>(g_run.ops.load()) / secs,
      static_cast<long long>(g_run.groups.load()),
      static_cast<long long>(g_run.nested_groups.load()),
      static_cast<long long>(g_run.invoked.load()),
      static_cast<long long>(g_run.skipped.load()),
      static_cast<long long>(g_run.failed.load()),
      static_cast<long long>(g_run.rejected.load()),
      static_cast<long long>(g_run.gave_up.load()),
      static_cast<long long>(g_run.waits.load()),
      static_cast<long long>(g_run.extra_waiters.load()),
      static_cast<long long>(g_run.parent_cancels.load()));
  return 0;
}
