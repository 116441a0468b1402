// group/trace.cpp: errgroup::trace, the recorder, and what a traced task
// records into it (detail::trace_stub, detail::trace_sink). The group's side
// (trace_to) is in extras.cpp.
#include "errgroup/trace.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ostream>
#include <stdexcept>

#include "group_state.hpp"

namespace errgroup {
namespace detail {

static_assert(std::is_standard_layout_v<trace_stub>);

// ---- a traced task ----

trace_stub::trace_stub(trace_sink& sink, std::string label) noexcept
    : sink_(&sink),
      label_(std::move(label)),
      submitted_(std::chrono::steady_clock::now()),
      admitted_(submitted_) {}

trace_stub::~trace_stub() {
  if (done_) return;
  // Dropped uninvoked by the group: skipped.
  const auto now = std::chrono::steady_clock::now();
  trace::task t;
  try {
    t.group = sink_->name();
  } catch (...) {
    // Out of memory: the record goes without its group's name.
  }
  t.label = std::move(label_);
  t.how = trace::outcome::skipped;
  t.thread = trace::thread_of_caller();
  t.submitted = submitted_;
  t.admitted = t.started = t.ended = now;  // it waited until dropped
  sink_->add(std::move(t));
}

void trace_stub::admitted() noexcept {
  admitted_ = std::chrono::steady_clock::now();
}

void trace_stub::started() noexcept {
  thread_ = trace::thread_of_caller();
  started_ = std::chrono::steady_clock::now();
}

void trace_stub::ended(const error& e, const context& ctx) noexcept {
  done_ = true;
  trace::task t;
  t.ended = std::chrono::steady_clock::now();
  // A failure after the group's context was cancelled is induced; the
  // first task error cancels it only after this returns.
  t.how = !e                ? trace::outcome::ok
          : ctx.cancelled() ? trace::outcome::induced
                            : trace::outcome::failed;
  if (t.how == trace::outcome::failed) sink_->failed(label_, e);
  try {
    t.group = sink_->name();
    if (e) t.error = e.message();
  } catch (...) {
    // Out of memory: the record goes without its names.
  }
  t.label = std::move(label_);
  t.thread = thread_;
  t.submitted = submitted_;
  t.admitted = admitted_;
  t.started = started_;
  sink_->add(std::move(t));
}

void trace_stub::discard() noexcept { done_ = true; }

// ---- a group's link ----

trace_sink::trace_sink(trace& rec, std::string name, group_state& g)
    : rec_(&rec), name_(std::move(name)), g_(&g) {
  if (name_.empty()) {
    std::lock_guard lock(rec.mu_);
    name_ = "group " + std::to_string(++rec.groups_);
  }
  if (g.has_context_)
    cancelled_.emplace(g.node_->stop_source().get_token(), on_cancel{this});
}

void trace_sink::add(trace::task t) noexcept {
  std::lock_guard lock(rec_->mu_);
  try {
    rec_->tasks_.push_back(std::move(t));
  } catch (...) {
    ++rec_->lost_;
  }
}

trace::mark trace_sink::mark(const char* what, std::string label,
                             std::string error) const {
  trace::mark m;
  m.what = what;
  m.group = name_;
  m.label = std::move(label);
  m.error = std::move(error);
  return m;
}

void trace_sink::add(trace::mark m) noexcept {
  m.thread = trace::thread_of_caller();
  m.at = std::chrono::steady_clock::now();
  std::lock_guard lock(rec_->mu_);
  try {
    rec_->marks_.push_back(std::move(m));
  } catch (...) {
    ++rec_->lost_;
  }
}

void trace_sink::failed(const std::string& label, const error& e) noexcept {
  if (failed_.exchange(true, std::memory_order_relaxed)) return;
  try {
    add(mark("first failure", label, e.message()));
  } catch (...) {
    std::lock_guard lock(rec_->mu_);
    ++rec_->lost_;
  }
}

void trace_sink::skipped_at_go(const std::string& label) noexcept {
  trace::task t;
  t.how = trace::outcome::skipped;
  t.thread = trace::thread_of_caller();
  t.submitted = t.admitted = t.started = t.ended =
      std::chrono::steady_clock::now();
  try {
    t.group = name_;
    t.label = label;
  } catch (...) {
    // Out of memory: the record goes without its names.
  }
  add(std::move(t));
}

void trace_sink::on_cancel::operator()() const noexcept {
  // wait() cancels the context when it returns: that is no event.
  if (sink->g_->waited_.load(std::memory_order_acquire)) return;
  try {
    sink->add(sink->mark("cancelled", "", sink->g_->node_->cause().message()));
  } catch (...) {
    std::lock_guard lock(sink->rec_->mu_);
    ++sink->rec_->lost_;
  }
}

}  // namespace detail

// ---- the recorder ----

trace::trace() : origin_(clock::now()) {}

std::vector<trace::task> trace::tasks() const {
  std::lock_guard lock(mu_);
  return {tasks_.begin(), tasks_.end()};
}

std::vector<trace::mark> trace::marks() const {
  std::lock_guard lock(mu_);
  return marks_;
}

std::int64_t trace::lost() const {
  std::lock_guard lock(mu_);
  return lost_;
}

int trace::thread_of_caller() noexcept {
  static std::atomic<int> next{1};
  thread_local const int mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

namespace {

const char* name_of(trace::outcome o) {
  switch (o) {
    case trace::outcome::ok:
      return "ok";
    case trace::outcome::failed:
      return "failed";
    case trace::outcome::induced:
      return "induced";
    case trace::outcome::skipped:
      return "skipped";
  }
  return "?";
}

// A JSON string: quotes, backslashes and control characters escaped.
struct quoted {
  const std::string& s;
};
std::ostream& operator<<(std::ostream& out, quoted q) {
  out << '"';
  for (const char c : q.s) {
    if (c == '"' || c == '\\') {
      out << '\\' << c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out << buf;
    } else {
      out << c;
    }
  }
  return out << '"';
}

// Microseconds since `origin`, with three decimals.
struct micros {
  std::chrono::steady_clock::duration d;
};
std::ostream& operator<<(std::ostream& out, micros m) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(m.d);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f",
                static_cast<double>(ns.count()) / 1000.0);
  return out << buf;
}

}  // namespace

void trace::write_chrome_json(std::ostream& out) const {
  std::vector<task> ts;
  std::vector<mark> ms;
  {
    std::lock_guard lock(mu_);
    ts.assign(tasks_.begin(), tasks_.end());
    ms = marks_;
  }
  // By thread, then by time: each row reads in order.
  std::stable_sort(ts.begin(), ts.end(), [](const task& a, const task& b) {
    return a.thread != b.thread ? a.thread < b.thread : a.started < b.started;
  });
  std::vector<int> threads;
  for (const task& t : ts) threads.push_back(t.thread);
  for (const mark& m : ms) threads.push_back(m.thread);
  std::sort(threads.begin(), threads.end());
  threads.erase(std::unique(threads.begin(), threads.end()), threads.end());

  const auto since = [this](clock::time_point t) {
    return micros{t - origin_};
  };
  const char* sep = "\n";
  out << "{\"traceEvents\":[";
  out << sep << R"({"name":"process_name","ph":"M","pid":1,"tid":0,)"
      << R"("args":{"name":"errgroup"}})";
  sep = ",\n";
  for (const int th : threads) {
    out << sep << R"({"name":"thread_name","ph":"M","pid":1,"tid":)" << th
        << R"(,"args":{"name":"thread )" << th << "\"}}";
  }
  for (const task& t : ts) {
    const std::string name = t.label.empty() ? "task" : t.label;
    out << sep << "{\"name\":" << quoted{name}
        << ",\"cat\":" << quoted{t.group};
    if (t.how == outcome::skipped)
      out << R"(,"ph":"i","s":"t")";
    else
      out << R"(,"ph":"X","dur":)" << micros{t.ended - t.started};
    out << R"(,"pid":1,"tid":)" << t.thread << ",\"ts\":" << since(t.started)
        << ",\"args\":{\"group\":" << quoted{t.group} << ",\"outcome\":\""
        << name_of(t.how) << "\",\"submitted_us\":" << since(t.submitted)
        << ",\"waited_us\":" << micros{t.admitted - t.submitted};
    if (t.how != outcome::skipped)
      out << ",\"queued_us\":" << micros{t.started - t.admitted};
    if (!t.error.empty()) out << ",\"error\":" << quoted{t.error};
    out << "}}";
  }
  for (const mark& m : ms) {
    out << sep << "{\"name\":" << quoted{m.what}
        << ",\"cat\":" << quoted{m.group}
        << R"(,"ph":"i","s":"g","pid":1,"tid":)" << m.thread
        << ",\"ts\":" << since(m.at)
        << ",\"args\":{\"group\":" << quoted{m.group}
        << ",\"label\":" << quoted{m.label} << ",\"error\":" << quoted{m.error}
        << "}}";
  }
  out << "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"lost\":" << lost()
      << "}}\n";
}

}  // namespace errgroup
