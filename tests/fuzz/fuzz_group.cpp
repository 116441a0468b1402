// tests/fuzz/fuzz_group.cpp: libFuzzer target for errgroup::group's state
// machine: go / try_go / go_until / go(sem, n, f) / try_go(sem, n, f),
// set_limit, wait, parent cancellation, task errors of every shape, and the
// misuse rows (set_limit while active, limit 0, wait() from a task, go()
// after wait() on a context group, bad units), checked against a model.
//
// Exactness: every task blocks at its start on a gate the driver opens, so the
// driver decides when each task finishes and in which order. After admitting
// a task the driver waits until it runs (the scheduler has 4 threads and the
// driver never lets more than 4 tasks run), and after opening a gate it waits
// until counters() shows the task done (then its slot and units are back).
// A go() that would have to wait is never issued: the model knows, and
// try_go() (which must then say false) or a go_until() with a past deadline
// is issued instead. So every result is exact: what each call returns or
// throws (type and message), counters() after every step (submitted,
// running, waiting, succeeded, failed, skipped, peak), the budget's
// available(), the first error and what wait() returns, the context's
// cause(), errors() with root causes, and which callables were invoked or
// destroyed uninvoked.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "../misuse_messages.hpp"
#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"

namespace {

[[noreturn]] void die(const char* what, long long a = 0, long long b = 0) {
  std::fprintf(stderr, "fuzz_group: MISMATCH: %s (%lld, %lld)\n", what, a, b);
  std::abort();
}
#define FZ_CHECK(cond, ...)        \
  do {                             \
    if (!(cond)) die(__VA_ARGS__); \
  } while (0)

// FUZZ_TRACE=1 prints every step (to replay a crash input); FUZZ_GDB=1 prints
// every thread's stack when a task does not start or finish in 20 s.
bool trace_on() {
  static const bool on = std::getenv("FUZZ_TRACE") != nullptr;
  return on;
}
#define FZ_TRACE(...)                                  \
  do {                                                 \
    if (trace_on()) std::fprintf(stderr, __VA_ARGS__); \
  } while (0)

template <class E, class Fn>
void expect_throw(Fn&& fn, const std::string& msg, const char* what) {
  try {
    fn();
  } catch (const std::exception& e) {
    FZ_CHECK(typeid(e) == typeid(E), what);
    FZ_CHECK(e.what() == msg, what);
    return;
  }
  die(what);
}

using namespace misuse_messages;  // the exact texts

errgroup::scheduler& four_threads() {
  static errgroup::scheduler s{4};
  return s;
}
constexpr int max_running = 4;

// FUZZ_GDB=1: when a wait times out, print every thread's stack first.
void dump_stacks() {
  if (std::getenv("FUZZ_GDB") == nullptr) return;
  char cmd[128];
  std::snprintf(cmd, sizeof cmd,
                "gdb -p %d -batch -ex 'thread apply all bt' 1>&2 2>/dev/null",
                static_cast<int>(::getpid()));
  if (std::system(cmd) != 0) std::fprintf(stderr, "(gdb failed)\n");
}

template <class Pred>
void spin_until(Pred pred, const char* what) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int spins = 0; !pred(); ++spins) {
    if (std::chrono::steady_clock::now() >= end) dump_stacks();
    FZ_CHECK(std::chrono::steady_clock::now() < end, what);
    if (spins > 200)
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    else
      std::this_thread::yield();
  }
}

enum outcome : int {
  o_ok,
  o_error,       // returns an errgroup::error (runtime_error)
  o_throw,       // throws that error
  o_throw_int,   // throws an int
  o_error_code,  // returns an error made from a std::error_code
  o_cancel_parent,
  o_wait_misuse,   // calls wait() on its own group
  o_limit_misuse,  // calls set_limit() on its own group
  o_last = o_limit_misuse
};

struct group_driver;

// One task: what it does, and what happened to it.
struct slot {
  int id = 0;
  outcome what = o_ok;
  int shape =
      0;  // 0: error(ctx), 1: void(), 2: exception_ptr(), 3: error_code(ctx)
  std::int64_t units = 0;
  errgroup::error err;  // made by the driver, so its identity is known
  std::binary_semaphore gate{0};
  std::atomic<int> invoked{0};
  std::atomic<bool> started{false};
  std::atomic<bool> dropped{false};
  // What the misuse inside the task threw.
  bool misuse_typed = false;
  std::string misuse_message;
  long long expect_active = 0;

  bool fails() const {
    return what == o_error || what == o_throw || what == o_throw_int ||
           what == o_error_code;
  }
  // matches(e): e is the error this task failed with.
  bool matches(const errgroup::error& e) const {
    if (what == o_throw_int) {
      const int* v = e.as<int>();
      return v != nullptr && *v == id;
    }
    if (what == o_error_code && shape == 3) {
      const auto* se = e.as<std::system_error>();
      return se != nullptr &&
             se->code() == std::error_code(id + 1, std::generic_category());
    }
    return e == err;
  }
};

struct task_fn {
  slot* s;
  group_driver* d;
  bool live = true;
  bool invoked = false;
  task_fn(slot* s_, group_driver* d_) : s(s_), d(d_) {}
  task_fn(task_fn&& o) noexcept
      : s(o.s),
        d(o.d),
        live(std::exchange(o.live, false)),
        invoked(o.invoked) {}
  task_fn& operator=(task_fn&&) = delete;
  ~task_fn() {
    if (live && !invoked) {
      FZ_CHECK(!s->dropped.exchange(true), "callable destroyed twice", s->id);
    }
  }
  errgroup::error run();
};

struct shape0 {
  task_fn f;
  errgroup::error operator()(const errgroup::context&) { return f.run(); }
};
struct shape1 {
  task_fn f;
  void operator()() { f.run().throw_if(); }
};
struct shape2 {
  task_fn f;
  std::exception_ptr operator()() { return f.run().exception(); }
};
struct shape3 {
  task_fn f;
  std::error_code operator()(const errgroup::context&) {
    const errgroup::error e = f.run();
    if (const auto* se = e.as<std::system_error>()) return se->code();
    e.throw_if();
    return {};
  }
};

struct group_driver {
  // The group under test.
  errgroup::context parent;
  std::optional<errgroup::cancel_func> cancel_parent;
  errgroup::error parent_cause =
      errgroup::make_error<std::runtime_error>("parent");
  std::unique_ptr<errgroup::group> own;
  std::unique_ptr<errgroup::group_and_context> own_pair;
  errgroup::group* g = nullptr;
  std::optional<errgroup::weighted> sem;
  bool keep = false;

  // The model.
  bool ctx_group = false;
  int limit = -1;
  bool parent_cancelled = false;
  bool cancelled = false;            // the group's context
  const slot* cause_slot = nullptr;  // cancelled by this task's error
  bool cause_parent = false;         // cancelled by the parent
  bool waited = false;
  long long submitted = 0, failed = 0, skipped = 0, succeeded = 0, peak = 0;
  std::int64_t units_held = 0;
  std::deque<slot*> running;  // started, gate closed
  const slot* first_error = nullptr;
  std::vector<std::pair<const slot*, bool>> errors;  // keep_errors model
  std::deque<std::unique_ptr<slot>> slots;

  group_driver(FuzzedDataProvider& in) {
    auto [c, f] = errgroup::with_cancel(errgroup::context());
    parent = c;
    cancel_parent.emplace(f);
    const int kind = in.ConsumeIntegralInRange<int>(0, 2);
    FZ_TRACE("group kind %d\n", kind);
    switch (kind) {
      case 0:
        own = std::make_unique<errgroup::group>(four_threads());
        break;
      case 1:
        own = std::make_unique<errgroup::group>(parent, four_threads());
        ctx_group = true;
        break;
      default:
        own_pair.reset(new errgroup::group_and_context(
            errgroup::with_context(parent, four_threads())));
        ctx_group = true;
        break;
    }
    g = own ? own.get() : &own_pair->g;
    const int size = in.ConsumeIntegralInRange<int>(-1, 6);
    if (size >= 0) sem.emplace(size);
    keep = in.ConsumeBool();
    if (keep) g->keep_errors();
    // One task succeeds first: a fixed opening that every input shares (it
    // dates from when counters().succeeded was derived and read low while a
    // task finished; the counts are direct now, and the corpus assumes it).
    auto first = std::make_unique<slot>();
    first->err = errgroup::make_error<std::runtime_error>("never");
    slots.push_back(std::move(first));
    slot& s = *slots.back();
    g->go(shape0{task_fn(&s, this)});
    admitted(s);
    finish(0);
  }

  ~group_driver() {
    while (!running.empty()) finish(0);
    if (!(ctx_group && waited)) do_wait();
  }

  // ---- model helpers ----
  long long active() const { return static_cast<long long>(running.size()); }
  bool slot_free() const {
    return limit != 0 && (limit < 0 || active() < limit);
  }
  bool units_free(std::int64_t n) const {
    return sem && n <= sem->size() - units_held;
  }

  slot& new_slot(FuzzedDataProvider& in, std::int64_t units) {
    auto s = std::make_unique<slot>();
    s->id = static_cast<int>(slots.size());
    s->what =
        static_cast<outcome>(in.ConsumeIntegralInRange<int>(0, 2 * o_last));
    if (s->what > o_last) s->what = o_ok;  // mostly ok
    s->shape = in.ConsumeIntegralInRange<int>(0, 3);
    s->units = units;
    if (s->what == o_error_code)
      s->err =
          errgroup::error(std::error_code(s->id + 1, std::generic_category()));
    else
      s->err = errgroup::make_error<std::runtime_error>("task " +
                                                        std::to_string(s->id));
    FZ_TRACE("  task %d: outcome %d shape %d units %lld\n", s->id, s->what,
             s->shape, static_cast<long long>(units));
    slots.push_back(std::move(s));
    return *slots.back();
  }

  template <class Call>
  void with_callable(slot& s, Call&& call) {
    switch (s.shape) {
      case 0:
        call(shape0{task_fn(&s, this)});
        break;
      case 1:
        call(shape1{task_fn(&s, this)});
        break;
      case 2:
        call(shape2{task_fn(&s, this)});
        break;
      default:
        call(shape3{task_fn(&s, this)});
        break;
    }
  }

  // admitted(s): s was admitted and must start now.
  void admitted(slot& s) {
    ++submitted;
    if (ctx_group && cancelled) {  // go() on a cancelled group: skipped
      ++skipped;
      FZ_CHECK(s.dropped.load() && s.invoked.load() == 0,
               "skipped task not dropped", s.id);
      return;
    }
    spin_until([&] { return s.started.load(std::memory_order_acquire); },
               "task never started");
    running.push_back(&s);
    units_held += s.units;
    peak = std::max(peak, active());
  }

  void not_admitted(slot& s) {
    FZ_CHECK(s.dropped.load() && s.invoked.load() == 0,
             "rejected task not dropped", s.id);
  }

  // make_room(): at most max_running tasks run; finish the oldest if full.
  void make_room() {
    if (active() >= max_running) finish(0);
  }

  // finish(k): open the gate of the k-th running task and wait until the
  // group counts it done.
  void finish(std::size_t k) {
    slot* s = running[k];
    running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
    if (s->what == o_limit_misuse) s->expect_active = active() + 1;
    const long long done_before = succeeded + failed;
    // The model, as of the task's end.
    if (s->what == o_cancel_parent) cancel_parent_model();
    if (s->fails()) {
      ++failed;
      if (first_error == nullptr) first_error = s;
      errors.emplace_back(s, !(ctx_group && cancelled));
      if (ctx_group && !cancelled) {
        cancelled = true;
        cause_slot = s;
      }
    } else {
      ++succeeded;
    }
    units_held -= s->units;
    s->gate.release();
    spin_until(
        [&] {
          const auto c = g->counters();
          return c.succeeded + c.failed == done_before + 1;
        },
        "task never finished");
    FZ_CHECK(s->invoked.load() == 1 && !s->dropped.load(), "finished task",
             s->id);
    if (s->what == o_wait_misuse)
      FZ_CHECK(s->misuse_typed && s->misuse_message == wait_self,
               "wait() from a task");
    if (s->what == o_limit_misuse)
      FZ_CHECK(s->misuse_typed &&
                   s->misuse_message == limit_active(s->expect_active),
               "set_limit() from a task", s->expect_active);
  }

  void cancel_parent_model() {
    if (parent_cancelled) return;
    parent_cancelled = true;
    if (ctx_group && !cancelled) {
      cancelled = true;
      cause_parent = true;
    }
  }

  void check_cause() {
    if (!ctx_group) {
      FZ_CHECK(!g->get_context().cancelled(), "plain group's context");
      return;
    }
    const errgroup::context ctx = g->get_context();
    FZ_CHECK(ctx.cancelled() == cancelled, "context cancelled()", cancelled);
    if (!cancelled) return;
    const errgroup::error cause = ctx.cause();
    if (cause_slot != nullptr)
      FZ_CHECK(cause_slot->matches(cause), "cause: the first task error");
    else if (cause_parent)
      FZ_CHECK(cause == parent_cause, "cause: the parent's");
    else
      FZ_CHECK(cause.is<errgroup::cancelled_error>(),
               "cause: cancelled by wait()");
    FZ_CHECK(ctx.err().is<errgroup::cancelled_error>(), "err()");
  }

  void check() {
    const auto c = g->counters();
    FZ_CHECK(c.submitted == submitted, "submitted", c.submitted, submitted);
    FZ_CHECK(c.running == active(), "running", c.running, active());
    FZ_CHECK(c.waiting == 0, "waiting", c.waiting);
    FZ_CHECK(c.succeeded == succeeded, "succeeded", c.succeeded, succeeded);
    FZ_CHECK(c.failed == failed, "failed", c.failed, failed);
    FZ_CHECK(c.skipped == skipped, "skipped", c.skipped, skipped);
    FZ_CHECK(c.peak == peak, "peak", c.peak, peak);
    if (sem)
      FZ_CHECK(sem->available() == sem->size() - units_held, "available()",
               sem->available(), sem->size() - units_held);
    if (keep) {
      const auto got = g->errors();
      FZ_CHECK(got.size() == errors.size(), "errors().size()",
               static_cast<long long>(got.size()),
               static_cast<long long>(errors.size()));
      for (std::size_t i = 0; i < got.size(); ++i) {
        FZ_CHECK(errors[i].first->matches(got[i].err), "errors()[i]",
                 static_cast<long long>(i));
        FZ_CHECK(got[i].root_cause == errors[i].second,
                 "errors()[i].root_cause", static_cast<long long>(i));
      }
    }
    check_cause();
  }

  // ---- operations ----
  void go(FuzzedDataProvider& in) {
    make_room();
    slot& s = new_slot(in, 0);
    // Both misuses at once: the limit of 0 is reported.
    if (limit == 0 || (ctx_group && waited)) {
      with_callable(s, [&](auto&& f) {
        expect_throw<std::logic_error>([&] { g->go(std::move(f)); },
                                       limit == 0 ? limit_zero : go_after_wait,
                                       "go() with limit 0 or after wait()");
      });
      return not_admitted(s);
    }
    if (!(ctx_group && cancelled) && !slot_free()) {
      // go() would wait: try_go() must say no.
      with_callable(s, [&](auto&& f) {
        FZ_CHECK(!g->try_go(std::move(f)), "try_go at the limit");
      });
      return not_admitted(s);
    }
    with_callable(s, [&](auto&& f) { g->go(std::move(f)); });
    admitted(s);
  }

  void try_go(FuzzedDataProvider& in) {
    make_room();
    slot& s = new_slot(in, 0);
    const bool want = !(ctx_group && cancelled) && slot_free();
    bool got = false;
    with_callable(s, [&](auto&& f) { got = g->try_go(std::move(f)); });
    FZ_CHECK(got == want, "try_go", got, want);
    if (got)
      admitted(s);
    else
      not_admitted(s);
  }

  void go_until(FuzzedDataProvider& in) {
    make_room();
    slot& s = new_slot(in, 0);
    const bool past = in.ConsumeBool();
    if (limit == 0 || (ctx_group && waited)) {
      with_callable(s, [&](auto&& f) {
        expect_throw<std::logic_error>(
            [&] {
              (void)g->go_until(
                  std::chrono::steady_clock::now() + std::chrono::hours(1),
                  std::move(f));
            },
            limit == 0 ? limit_zero : go_after_wait,
            "go_until() with limit 0 or after wait()");
      });
      return not_admitted(s);
    }
    const bool free_now = slot_free();
    const auto deadline =
        past || !free_now
            ? std::chrono::steady_clock::now() - std::chrono::milliseconds(1)
            : std::chrono::steady_clock::now() + std::chrono::hours(1);
    errgroup::error err;
    with_callable(s,
                  [&](auto&& f) { err = g->go_until(deadline, std::move(f)); });
    if (ctx_group && cancelled) {
      FZ_CHECK(err && err == g->get_context().err(),
               "go_until on a cancelled group");
      return not_admitted(s);
    }
    if (past || !free_now) {
      FZ_CHECK(err.is<errgroup::deadline_exceeded_error>(),
               "go_until past its deadline");
      return not_admitted(s);
    }
    FZ_CHECK(!err, "go_until with a free slot");
    admitted(s);
  }

  void weighted_go(FuzzedDataProvider& in) {
    if (!sem) return;
    make_room();
    const std::int64_t size = sem->size();
    const std::int64_t n =
        in.ConsumeIntegralInRange<std::int64_t>(-1, size + 1);
    const bool try_form = in.ConsumeBool();
    slot& s = new_slot(in, n);
    if (n < 0 || n > size) {  // checked before anything else
      with_callable(s, [&](auto&& f) {
        expect_throw<std::invalid_argument>(
            [&] {
              if (try_form)
                (void)g->try_go(*sem, n, std::move(f));
              else
                g->go(*sem, n, std::move(f));
            },
            n < 0 ? units_negative : units_too_many, "go(sem, bad n)");
      });
      return not_admitted(s);
    }
    if (!try_form && (limit == 0 || (ctx_group && waited))) {
      with_callable(s, [&](auto&& f) {
        expect_throw<std::logic_error>([&] { g->go(*sem, n, std::move(f)); },
                                       limit == 0 ? limit_zero : go_after_wait,
                                       "go(sem) with limit 0 or after wait()");
      });
      return not_admitted(s);
    }
    const bool can = !(ctx_group && cancelled) && slot_free() && units_free(n);
    if (try_form || (!can && !(ctx_group && cancelled))) {
      bool got = false;
      with_callable(s,
                    [&](auto&& f) { got = g->try_go(*sem, n, std::move(f)); });
      FZ_CHECK(got == can, "try_go(sem, n)", got, can);
      if (got)
        admitted(s);
      else
        not_admitted(s);
      return;
    }
    with_callable(s, [&](auto&& f) { g->go(*sem, n, std::move(f)); });
    if (ctx_group && cancelled) s.units = 0;  // skipped: holds nothing
    admitted(s);
  }

  void set_limit(FuzzedDataProvider& in) {
    const int n = in.ConsumeIntegralInRange<int>(-2, 5);
    if (active() > 0) {
      expect_throw<std::logic_error>([&] { g->set_limit(n); },
                                     limit_active(active()),
                                     "set_limit while active");
      return;
    }
    g->set_limit(n);
    limit = n < 0 ? -1 : n;
  }

  void do_wait() {
    while (!running.empty()) finish(0);
    const errgroup::error res = g->wait();
    if (first_error != nullptr)
      FZ_CHECK(first_error->matches(res), "wait(): the first error");
    else if (skipped > 0)
      FZ_CHECK(res && res == g->get_context().cause(), "wait(): the cause");
    else
      FZ_CHECK(!res, "wait(): no error");
    if (ctx_group) {
      waited = true;
      cancelled = true;
    }
    check();
    // Again: the same error.
    const errgroup::error again = g->wait();
    FZ_CHECK(again == res, "wait() again");
  }

  void step(FuzzedDataProvider& in) {
    const int op = in.ConsumeIntegralInRange<int>(0, 9);
    FZ_TRACE("op %d: limit=%d running=%lld cancelled=%d waited=%d\n", op, limit,
             active(), cancelled, waited);
    switch (op) {
      case 0:
      case 1:
        go(in);
        break;
      case 2:
        try_go(in);
        break;
      case 3:
        go_until(in);
        break;
      case 4:
        set_limit(in);
        break;
      case 5:
        if (!running.empty())
          finish(in.ConsumeIntegralInRange<std::size_t>(0, running.size() - 1));
        break;
      case 6:
        // Finish the running tasks in an order the input picks, then wait.
        while (!running.empty())
          finish(in.ConsumeIntegralInRange<std::size_t>(0, running.size() - 1));
        do_wait();
        break;
      case 7:
        cancel_parent_model();
        (*cancel_parent)(parent_cause);
        break;
      case 8:
        weighted_go(in);
        break;
      default:
        break;  // just check
    }
    check();
  }
};

errgroup::error task_fn::run() {
  invoked = true;
  FZ_CHECK(s->invoked.fetch_add(1) == 0, "task invoked twice", s->id);
  s->started.store(true, std::memory_order_release);
  s->gate.acquire();
  switch (s->what) {
    case o_ok:
      return {};
    case o_error:
    case o_error_code:
      return s->err;
    case o_throw:
      s->err.throw_if();
      return {};
    case o_throw_int:
      throw s->id;
    case o_cancel_parent:
      (*d->cancel_parent)(d->parent_cause);
      return {};
    case o_wait_misuse:
      try {
        (void)d->g->wait();
      } catch (const std::exception& e) {
        s->misuse_typed = typeid(e) == typeid(std::logic_error);
        s->misuse_message = e.what();
      }
      return {};
    case o_limit_misuse:
      try {
        d->g->set_limit(3);
      } catch (const std::exception& e) {
        s->misuse_typed = typeid(e) == typeid(std::logic_error);
        s->misuse_message = e.what();
      }
      return {};
  }
  return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  FuzzedDataProvider in(data, size);
  group_driver d(in);
  for (int ops = 0; ops < 48 && in.remaining_bytes() > 0; ++ops) d.step(in);
  return 0;
}
