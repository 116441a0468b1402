// group/extras.cpp: the members that observe a group (labels and
// running(), on_progress(), keep_errors() and errors(), trace_to(),
// on_stall()). They keep their state in detail::extras, made on first use:
// the core knows only that a task finished or failed, and, on the slow paths
// of admission, that one began to wait or got what it waited for.
#include <algorithm>
#include <cstring>
#include <limits>

#include "../scheduler/service.hpp"  // private to the library
#include "group_state.hpp"

namespace errgroup {
namespace detail {

extras& group_state::use_extras() {
  if (extras* x = extras_.load(std::memory_order_acquire)) return *x;
  auto fresh = std::make_unique<extras>();
  extras* expected = nullptr;
  if (extras_.compare_exchange_strong(expected, fresh.get(),
                                      std::memory_order_acq_rel))
    return *fresh.release();
  return *expected;  // another thread made it first
}

void extras::finished(const group_state& g) noexcept {
  if (!progress) return;
  const std::int64_t now =
      std::chrono::steady_clock::now().time_since_epoch().count();
  std::int64_t due = next.load(std::memory_order_relaxed);
  if (now < due) return;
  // The CAS elects one caller; `next` stays far ahead while it calls.
  if (!next.compare_exchange_strong(due,
                                    std::numeric_limits<std::int64_t>::max(),
                                    std::memory_order_acquire))
    return;
  try {
    progress(g.counters());
  } catch (...) {
    // A progress callback must not throw; its exception is dropped.
  }
  next.store(std::chrono::steady_clock::now().time_since_epoch().count() +
                 every.count(),
             std::memory_order_release);
}

void extras::failed(const error& e, bool root) noexcept {
  std::lock_guard lock(mu);
  if (!keep_errors) return;
  try {
    errors.push_back({e, root});
  } catch (...) {
    // Out of memory: the group's first error is still kept.
  }
}

// ---- on_stall ----

stall_watch::stall_watch(group_state& g,
                         std::function<void(const group::stall_report&)> cb,
                         clock::duration after) noexcept
    : g_(&g),
      cb_(std::move(cb)),
      after_(after),
      last_(clock::now().time_since_epoch().count()) {}

stall_watch::~stall_watch() {
  void* h = nullptr;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    h = std::exchange(check_, nullptr);
  }
  // Waits for a check being made now (it sees closing_ and stops).
  if (h != nullptr) service::instance().release(h);
}

void stall_watch::waiting() noexcept {
  std::lock_guard lock(mu_);
  if (check_ != nullptr || closing_) return;
  // No check due: nobody waited. The quiet spell starts now at the
  // earliest, not at a finish long ago; unless it was reported already
  // (no task finished since): then it is the same stall, not a new one.
  const clock::time_point now = clock::now();
  const std::int64_t last = last_.load(std::memory_order_relaxed);
  if (last != fired_for_ && last < now.time_since_epoch().count())
    last_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
  schedule(now);
}

void stall_watch::schedule(clock::time_point now) noexcept {
  const clock::time_point last{
      clock::duration(last_.load(std::memory_order_relaxed))};
  // Reported already: look again a period from now (a finish starts a new
  // spell, due a period after it); else when this spell is due (at once if
  // that has passed). Saturated: a huge period is "never".
  const clock::time_point from =
      fired_for_ == last.time_since_epoch().count() ? now : last;
  const clock::time_point due = clock::time_point::max() - from < after_
                                    ? clock::time_point::max()
                                    : from + after_;
  try {
    check_ = service::instance().at(due, &stall_watch::check, this);
  } catch (...) {
    // The service cannot take it (out of memory): no report this time.
    check_ = nullptr;
  }
}

void stall_watch::check(void* self) noexcept {
  auto& w = *static_cast<stall_watch*>(self);
  std::unique_lock lock(w.mu_);
  if (w.closing_) return;  // the destructor releases our entry
  clock::time_point now = clock::now();
  const std::int64_t last = w.last_.load(std::memory_order_relaxed);
  const group::stats s = w.g_->counters();
  if (s.waiting > 0 && last != w.fired_for_ &&
      now - clock::time_point(clock::duration(last)) >= w.after_) {
    w.fired_for_ = last;
    lock.unlock();  // tasks need the extras' lock (labels): not held here
    try {
      group::stall_report r;
      r.holding = w.g_->use_extras().running_now();
      const group::stats c = w.g_->counters();
      r.running = c.running;
      r.waiting = c.waiting;
      r.since_last_finish =
          clock::now() - clock::time_point(clock::duration(
                             w.last_.load(std::memory_order_relaxed)));
      w.cb_(r);
    } catch (...) {
      // The callback must not throw (or memory ran out): dropped.
    }
    lock.lock();
    if (w.closing_) return;
    now = clock::now();
  }
  void* mine = std::exchange(w.check_, nullptr);
  // Checks go on while tasks wait; began_waiting() starts them again.
  if (w.g_->counters().waiting > 0) w.schedule(now);
  service::instance().release(mine);  // from the call itself: frees it
}

std::vector<group::running_task> extras::running_now() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<group::running_task> out;
  {
    std::lock_guard lock(mu);
    for (const auto& [label, since] : labelled)
      out.push_back({label, now - since});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.elapsed > b.elapsed; });
  return out;
}

}  // namespace detail

void group::on_progress(std::function<void(const stats&)> cb,
                        std::chrono::steady_clock::duration every) {
  detail::extras& x = state().use_extras();
  x.progress = std::move(cb);
  x.every = every;
}

void group::keep_errors() {
  detail::extras& x = state().use_extras();
  std::lock_guard lock(x.mu);
  x.keep_errors = true;
}

std::vector<group::task_error> group::errors() const {
  const detail::extras* x = state().extras_.load(std::memory_order_acquire);
  if (x == nullptr) return {};
  std::lock_guard lock(const_cast<detail::extras*>(x)->mu);
  return x->errors;
}

using label_list = decltype(detail::extras::labelled);

// A tracker keeps its list entry's iterator in its pointer-sized `it`.
static_assert(sizeof(label_list::iterator) == sizeof(void*) &&
              std::is_trivially_copyable_v<label_list::iterator>);

group::tracker::tracker(group& grp, std::string label) : g(&grp) {
  detail::extras& x = g->state().use_extras();
  std::lock_guard lock(x.mu);
  x.labelled.emplace_front(std::move(label), std::chrono::steady_clock::now());
  const label_list::iterator i = x.labelled.begin();
  std::memcpy(&it, &i, sizeof i);
}

group::tracker::~tracker() {
  detail::extras& x = *g->state().extras_.load(std::memory_order_acquire);
  label_list::iterator i;
  std::memcpy(static_cast<void*>(&i), &it, sizeof i);
  std::lock_guard lock(x.mu);
  x.labelled.erase(i);
}

std::vector<group::running_task> group::running() const {
  detail::extras* x = state().extras_.load(std::memory_order_acquire);
  return x != nullptr ? x->running_now() : std::vector<running_task>();
}

void group::trace_to(trace& t, std::string name) {
  detail::group_state& g = state();
  g.check_idle("trace_to()");
  detail::extras& x = g.use_extras();
  auto sink = std::make_unique<detail::trace_sink>(t, std::move(name), g);
  tracer_.store(sink.get(), std::memory_order_release);
  x.trace = std::move(sink);  // a previous sink goes after the switch
}

void group::on_stall(std::function<void(const stall_report&)> cb,
                     std::chrono::steady_clock::duration after) {
  if (after <= after.zero())
    throw std::invalid_argument("errgroup: on_stall() with a period <= 0");
  detail::group_state& g = state();
  g.check_idle("on_stall()");
  detail::extras& x = g.use_extras();
  auto w = std::make_unique<detail::stall_watch>(g, std::move(cb), after);
  x.stall = std::move(w);  // the previous watch's check is gone with it
}

}  // namespace errgroup
