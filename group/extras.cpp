// group/extras.cpp: the members that observe a group (labels and
// running(), on_progress(), keep_errors() and errors()). They keep their
// state in detail::extras, made on first use: the core knows only that a
// task finished or failed.
#include <algorithm>
#include <cstring>
#include <limits>

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
  const auto now = std::chrono::steady_clock::now();
  std::vector<running_task> out;
  if (detail::extras* x = state().extras_.load(std::memory_order_acquire)) {
    std::lock_guard lock(x->mu);
    for (const auto& [label, since] : x->labelled)
      out.push_back({label, now - since});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.elapsed > b.elapsed; });
  return out;
}

}  // namespace errgroup
