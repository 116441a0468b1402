// Tests of errgroup::trace and group::trace_to (docs/contract.md §4
// Observing): the records, and the Chrome trace-event JSON parsed back.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <latch>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::thread_counts;
using outcome = errgroup::trace::outcome;

namespace {

// json is a parsed JSON value; parse() reads a whole document and throws
// std::runtime_error on anything that is not JSON (RFC 8259, without
// \u escapes beyond the ASCII range, which the writer never needs).
struct json {
  enum class kind { null, boolean, number, string, array, object } k{};
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<json> items;         // an array's; an object's values
  std::vector<std::string> names;  // an object's names, beside items

  const json& operator[](std::string_view key) const {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == key) return items[i];
    throw std::runtime_error("no field " + std::string(key));
  }
  bool has(std::string_view key) const {
    return std::find(names.begin(), names.end(), key) != names.end();
  }

  static json parse(std::string_view text) {
    std::size_t i = 0;
    json v = value(text, i);
    skip_space(text, i);
    if (i != text.size()) fail("text after the value");
    return v;
  }

 private:
  [[noreturn]] static void fail(const char* what) {
    throw std::runtime_error(std::string("bad JSON: ") + what);
  }
  static void skip_space(std::string_view s, std::size_t& i) {
    while (i < s.size() &&
           (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
      ++i;
  }
  static void expect(std::string_view s, std::size_t& i, char c) {
    skip_space(s, i);
    if (i >= s.size() || s[i] != c) fail("unexpected character");
    ++i;
  }
  static std::string string(std::string_view s, std::size_t& i) {
    expect(s, i, '"');
    std::string out;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (static_cast<unsigned char>(c) < 0x20) fail("control character");
      if (c == '\\') {
        if (i >= s.size()) fail("cut escape");
        c = s[i++];
        if (c == 'u') {
          if (i + 4 > s.size()) fail("cut \\u");
          const long code =
              std::strtol(std::string(s.substr(i, 4)).c_str(), nullptr, 16);
          if (code > 0x7f) fail("\\u beyond ASCII");
          c = static_cast<char>(code);
          i += 4;
        } else if (c == 'n') {
          c = '\n';
        } else if (c != '"' && c != '\\' && c != '/') {
          fail("unknown escape");
        }
      }
      out += c;
    }
    if (i >= s.size()) fail("cut string");
    ++i;
    return out;
  }
  static json value(std::string_view s, std::size_t& i) {
    skip_space(s, i);
    if (i >= s.size()) fail("no value");
    json v;
    const char c = s[i];
    if (c == '{') {
      v.k = kind::object;
      ++i;
      skip_space(s, i);
      if (i < s.size() && s[i] == '}') return ++i, v;
      do {
        v.names.push_back(string(s, i));
        expect(s, i, ':');
        v.items.push_back(value(s, i));
        skip_space(s, i);
      } while (i < s.size() && s[i] == ',' && ++i);
      expect(s, i, '}');
    } else if (c == '[') {
      v.k = kind::array;
      ++i;
      skip_space(s, i);
      if (i < s.size() && s[i] == ']') return ++i, v;
      do {
        v.items.push_back(value(s, i));
        skip_space(s, i);
      } while (i < s.size() && s[i] == ',' && ++i);
      expect(s, i, ']');
    } else if (c == '"') {
      v.k = kind::string;
      v.str = string(s, i);
    } else if (s.substr(i, 4) == "true" || s.substr(i, 5) == "false") {
      v.k = kind::boolean;
      v.b = c == 't';
      i += v.b ? 4 : 5;
    } else if (s.substr(i, 4) == "null") {
      i += 4;
    } else {
      v.k = kind::number;
      const std::string rest(s.substr(i, 64));
      char* end = nullptr;
      v.num = std::strtod(rest.c_str(), &end);
      if (end == rest.c_str()) fail("not a number");
      i += static_cast<std::size_t>(end - rest.c_str());
    }
    return v;
  }
};

json chrome_json(const errgroup::trace& t) {
  std::ostringstream out;
  t.write_chrome_json(out);
  return json::parse(out.str());
}

std::int64_t count(const std::vector<errgroup::trace::task>& ts, outcome o) {
  return std::count_if(ts.begin(), ts.end(),
                       [o](const auto& t) { return t.how == o; });
}

// check_json(t, c) checks the JSON of t against the group's counters c: a
// complete event ("X") for every task that ran, each with its duration (its
// end), an instant per skipped task, outcomes counted as c counts them, and
// each thread's events in time order, never overlapping.
void check_json(const errgroup::trace& t, const errgroup::group::stats& c) {
  const json doc = chrome_json(t);
  std::map<std::string, std::int64_t> outcomes;
  std::map<double, std::vector<std::pair<double, double>>> rows;  // tid
  for (const json& e : doc["traceEvents"].items) {
    const std::string ph = e["ph"].str;
    if (ph == "M") continue;
    REQUIRE(e["pid"].k == json::kind::number);
    const double tid = e["tid"].num;
    const double ts = e["ts"].num;
    CHECK(ts >= 0);
    if (e["args"].has("outcome")) {
      const std::string how = e["args"]["outcome"].str;
      ++outcomes[how];
      CHECK(e["args"]["waited_us"].num >= 0);
      CHECK(e["args"]["submitted_us"].num <= ts + 0.001);
      if (ph == "X") {
        CHECK(how != "skipped");
        CHECK(e.has("dur"));  // its end
        CHECK(e["dur"].num >= 0);
        CHECK(e["args"]["queued_us"].num >= 0);
        rows[tid].emplace_back(ts, ts + e["dur"].num);
      } else {
        CHECK(ph == "i");
        CHECK(how == "skipped");
      }
    } else {
      CHECK(ph == "i");  // a mark
      CHECK(e["s"].str == "g");
    }
  }
  CHECK(outcomes["ok"] == c.succeeded);
  CHECK(outcomes["failed"] + outcomes["induced"] == c.failed);
  CHECK(outcomes["skipped"] == c.skipped);
  CHECK(outcomes["ok"] + outcomes["failed"] + outcomes["induced"] +
            outcomes["skipped"] ==
        c.submitted);
  for (const auto& row : rows) {
    const double tid = row.first;
    const auto& spans = row.second;
    CAPTURE(tid);
    for (std::size_t i = 1; i < spans.size(); ++i) {
      CHECK(spans[i - 1].first <= spans[i].first);           // written in order
      CHECK(spans[i - 1].second <= spans[i].first + 0.001);  // one at a time
    }
  }
}

}  // namespace

TEST_SUITE("trace") {
  TEST_CASE("the JSON has an end for every task that started") {
    // Context group with limit 1: five tasks succeed, one fails, and no task
    // starts after the failure (contract §4 First error): the rest are
    // skipped, by the queue or by go() itself.
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::trace t;
      auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
      g.set_limit(1);
      g.trace_to(t, "level");
      for (int i = 0; i < 5; ++i) g.go("ok " + std::to_string(i), [] {});
      g.go("boom", [] { throw std::runtime_error("boom"); });
      for (int i = 0; i < 5; ++i) g.go("late " + std::to_string(i), [] {});
      CHECK(g.wait().message() == "boom");
      const errgroup::group::stats c = g.counters();
      CHECK(c.succeeded == 5);
      CHECK(c.failed == 1);
      CHECK(c.skipped == 5);

      const auto ts = t.tasks();
      CHECK(count(ts, outcome::ok) == 5);
      CHECK(count(ts, outcome::failed) == 1);
      CHECK(count(ts, outcome::skipped) == 5);
      for (const auto& r : ts) {
        CAPTURE(r.label);
        CHECK(r.group == "level");
        CHECK(r.submitted <= r.admitted);
        CHECK(r.admitted <= r.started);
        CHECK(r.started <= r.ended);
        CHECK(r.thread >= 1);
        CHECK(r.label.starts_with(r.how == outcome::skipped ? "late"
                                  : r.how == outcome::ok    ? "ok"
                                                            : "boom"));
        if (r.how == outcome::failed) CHECK(r.error == "boom");
      }
      const auto ms = t.marks();
      REQUIRE(ms.size() == 2);
      CHECK(ms[0].what == "first failure");
      CHECK(ms[0].label == "boom");
      CHECK(ms[0].error == "boom");
      CHECK(ms[1].what == "cancelled");
      CHECK(ms[1].error == "boom");  // the cause
      check_json(t, c);
    }
  }

  TEST_CASE("many tasks on several threads keep their rows in order") {
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      errgroup::trace t;
      errgroup::group g{s};
      g.trace_to(t);
      for (int i = 0; i < 2000; ++i)
        g.go([i]() -> errgroup::error {
          if (i % 7 == 0) return errgroup::make_error<std::runtime_error>("x");
          return {};
        });
      CHECK(g.wait());
      const errgroup::group::stats c = g.counters();
      CHECK(static_cast<std::int64_t>(t.tasks().size()) == 2000);
      CHECK(t.tasks()[0].group == "group 1");
      // A plain group is never cancelled: no failure is induced.
      CHECK(count(t.tasks(), outcome::induced) == 0);
      CHECK(count(t.tasks(), outcome::failed) == c.failed);
      CHECK(t.lost() == 0);
      check_json(t, c);
    }
  }

  TEST_CASE("a failure after the cancellation is induced") {
    errgroup::scheduler s{2};
    errgroup::trace t;
    auto [g, ctx] = errgroup::with_context(errgroup::context(), s);
    g.trace_to(t);
    std::latch started{1};
    g.go("waits", [&](const errgroup::context& c) {
      started.count_down();
      c.wait_for(1h);  // until the root failure cancels the context
      return c.err();
    });
    g.go("root", [&] {
      started.wait();
      throw std::runtime_error("root");
    });
    CHECK(g.wait().message() == "root");
    for (const auto& r : t.tasks()) {
      CAPTURE(r.label);
      CHECK(r.how == (r.label == "root" ? outcome::failed : outcome::induced));
    }
    check_json(t, g.counters());
  }

  TEST_CASE("a parent's deadline is the cancellation mark") {
    errgroup::scheduler s{2};
    errgroup::trace t;
    auto [parent, cancel] = errgroup::with_timeout(errgroup::context(), 20ms);
    auto [g, ctx] = errgroup::with_context(parent, s);
    g.trace_to(t, "timed");
    g.go("waits", [](const errgroup::context& c) {
      c.wait_for(1h);  // until the deadline cancels it
      return c.err();
    });
    CHECK(g.wait().is<errgroup::deadline_exceeded_error>());
    const auto ts = t.tasks();
    REQUIRE(ts.size() == 1);
    CHECK(ts[0].how == outcome::induced);
    const auto ms = t.marks();
    REQUIRE(ms.size() == 1);  // nothing failed before the cancellation
    CHECK(ms[0].what == "cancelled");
    CHECK(ms[0].group == "timed");
    CHECK(ms[0].error == "context deadline exceeded");
    check_json(t, g.counters());
  }

  TEST_CASE("the wait for a slot ends when the holder ends") {
    // A task admitted after waiting for the only slot is admitted once the
    // holder has ended (its record's end comes before its slot is freed).
    errgroup::scheduler s{2};
    errgroup::trace t;
    errgroup::group g{s};
    g.set_limit(1);
    g.trace_to(t);
    std::latch hold{1};
    g.go("holder", [&] { hold.wait(); });
    std::thread releaser([&] {
      CHECK(test::spin_until([&] { return g.counters().waiting == 1; }));
      hold.count_down();
    });
    g.go("waiter", [] {});  // blocks until the holder ends
    releaser.join();
    CHECK_FALSE(g.wait());
    const auto ts = t.tasks();
    REQUIRE(ts.size() == 2);
    CHECK(ts[0].label == "holder");
    CHECK(ts[1].label == "waiter");
    CHECK(ts[1].admitted >= ts[0].ended);
    CHECK(ts[1].admitted > ts[1].submitted);
    CHECK(ts[0].admitted == ts[0].submitted);  // no wait
  }

  TEST_CASE("go_until that gives up leaves no record") {
    errgroup::scheduler s{2};
    errgroup::trace t;
    errgroup::group g{s};
    g.set_limit(1);
    g.trace_to(t);
    std::latch hold{1};
    g.go([&] { hold.wait(); });
    CHECK(g.go_until(std::chrono::steady_clock::now() + 1ms, [] {
           }).is<errgroup::deadline_exceeded_error>());
    hold.count_down();
    CHECK_FALSE(g.wait());
    CHECK(t.tasks().size() == 1);
    check_json(t, g.counters());
  }

  TEST_CASE("several groups share one trace under their names") {
    errgroup::trace t;
    errgroup::group a, b;
    a.trace_to(t, "a \"quoted\"\tname");
    b.trace_to(t);
    a.go([] {});
    b.go([] {});
    CHECK_FALSE(a.wait());
    CHECK_FALSE(b.wait());
    std::vector<std::string> groups;
    for (const auto& r : t.tasks()) groups.push_back(r.group);
    std::sort(groups.begin(), groups.end());
    CHECK(groups == std::vector<std::string>{"a \"quoted\"\tname", "group 1"});
    const json doc = chrome_json(t);  // the escapes parse back
    int found = 0;
    for (const json& e : doc["traceEvents"].items)
      found += e.has("cat") && e["cat"].str == "a \"quoted\"\tname";
    CHECK(found == 1);
  }

  TEST_CASE("trace_to while tasks are active throws") {
    errgroup::scheduler s{2};
    errgroup::trace t;
    errgroup::group g{s};
    std::latch hold{1};
    g.go([&] { hold.wait(); });
    CHECK_THROWS_WITH_AS(
        g.trace_to(t),
        "errgroup: trace_to() while 1 tasks in the group are still active",
        std::logic_error);
    hold.count_down();
    CHECK_FALSE(g.wait());
    CHECK(t.tasks().empty());
  }
}
