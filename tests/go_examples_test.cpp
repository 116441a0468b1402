// tests/go_examples_test.cpp: Go's errgroup examples, ported one for one
// (golang/sync errgroup_example_md5all_test.go and the ExampleGroup_* of
// errgroup_test.go) and named after them: ExampleGroup_justErrors,
// ExampleGroup_parallel and ExampleGroup_pipeline (MD5All), the last over an
// in-memory file tree with a small Go channel (docs/contract.md §4).

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "errgroup/errgroup.hpp"
#include "support.hpp"

using errgroup::error;
using test::thread_counts;

namespace {

// ---- ExampleGroup_parallel ----

using search =
    std::function<std::string(const errgroup::context&, const std::string&)>;

search fake_search(std::string kind) {
  return [kind](const errgroup::context&, const std::string& query) {
    return kind + " result for \"" + query + "\"";
  };
}

// google runs the searches in parallel; the first failure is its result.
std::pair<std::vector<std::string>, error> google(
    const errgroup::context& parent, errgroup::scheduler& s,
    const std::string& query, const std::vector<search>& searches) {
  auto [g, ctx] = errgroup::with_context(parent, s);
  std::vector<std::string> results(searches.size());
  for (std::size_t i = 0; i < searches.size(); ++i)
    g.go([&, i](const errgroup::context& c) {
      results[i] = searches[i](c, query);  // a throw is the task's error
    });
  if (error e = g.wait()) return {{}, e};
  return {results, error()};
}

// ---- ExampleGroup_pipeline (MD5All), over an in-memory file tree ----

// chan is a small Go channel: send blocks while full and gives up when ctx is
// cancelled (Go's select on ctx.Done()); recv blocks while empty and returns
// nothing once the channel is closed and drained.
template <class T>
class chan {
 public:
  explicit chan(std::size_t capacity) : capacity_(capacity) {}
  bool send(const errgroup::context& ctx, T v) {
    std::unique_lock lock(mu_);
    if (!cv_.wait(lock, ctx.stop_token(),
                  [&] { return q_.size() < capacity_; }))
      return false;
    q_.push_back(std::move(v));
    cv_.notify_all();
    return true;
  }
  std::optional<T> recv() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    cv_.notify_all();
    return v;
  }
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<T> q_;
  std::size_t capacity_;
  bool closed_ = false;
};

// close_on_exit closes a channel when it is destroyed: Go's defer close(c).
struct close_chan {
  template <class C>
  void operator()(C* c) const {
    c->close();
  }
};

struct file {
  std::string path;
  bool regular;
  std::string data;
};

// make_tree builds a tree of files; every 7th entry is not a regular file.
std::vector<file> make_tree(int n) {
  std::vector<file> tree;
  for (int i = 0; i < n; ++i) {
    std::string data;
    for (int k = 0; k < (i * 37) % 300; ++k)
      data += static_cast<char>('a' + (i + k) % 26);
    tree.push_back(
        {"dir" + std::to_string(i / 20) + "/file" + std::to_string(i) + ".txt",
         i % 7 != 3, std::move(data)});
  }
  return tree;
}

// checksum is 64-bit FNV-1a, standing in for md5.
std::uint64_t checksum(std::string_view data) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// read_file stands in for os.ReadFile: the file named `unreadable` fails.
const std::string& read_file(const std::vector<file>& tree,
                             const std::string& path,
                             const std::string& unreadable) {
  if (path == unreadable)
    throw std::system_error(std::make_error_code(std::errc::permission_denied),
                            path);
  for (const file& f : tree)
    if (f.path == path) return f.data;
  throw std::system_error(
      std::make_error_code(std::errc::no_such_file_or_directory), path);
}

struct md5all_result {
  std::map<std::string, std::uint64_t> sums;
  error err;
  errgroup::group::stats stats;  // the group's, when md5all returned
  error second_wait;             // what the closer's wait() returned
};

// md5all is Go's MD5All: a walker sends the regular files' paths, `digesters`
// tasks sum them, and a closer thread waits for the group and closes the
// results. Each stage blocks its thread on a channel, as goroutines do, so
// the scheduler has a thread per task.
md5all_result md5all(const errgroup::context& parent,
                     const std::vector<file>& tree, int digesters,
                     const std::string& unreadable) {
  struct digest {
    std::string path;
    std::uint64_t sum;
  };
  errgroup::scheduler io{digesters + 1};
  auto made = errgroup::with_context(parent, io);
  auto& g = made.g;
  chan<std::string> paths(1);
  // The walker closes paths on every path out, also if it is skipped.
  g.go([&, defer_close = std::unique_ptr<chan<std::string>, close_chan>(
               &paths)](const errgroup::context& c) -> error {
    for (const file& f : tree) {
      if (!f.regular) continue;
      if (!paths.send(c, f.path)) return c.err();
    }
    return {};
  });
  chan<digest> results(1);
  for (int i = 0; i < digesters; ++i)
    g.go([&](const errgroup::context& c) -> error {
      while (std::optional<std::string> p = paths.recv()) {
        const std::string& data = read_file(tree, *p, unreadable);
        if (!results.send(c, digest{*p, checksum(data)})) return c.err();
      }
      return {};
    });
  md5all_result r;
  std::jthread closer([&] {
    r.second_wait = g.wait();
    results.close();
  });
  while (std::optional<digest> d = results.recv()) r.sums[d->path] = d->sum;
  closer.join();
  r.err = g.wait();  // the second wait(): the same error
  r.stats = g.counters();
  if (r.err) r.sums.clear();
  return r;
}

}  // namespace

TEST_SUITE("go_examples") {
  TEST_CASE(
      "a zero group collects the first fetch error (ExampleGroup_justErrors)") {
    auto fake_get = [](const std::string& url) -> std::error_code {
      if (url.find("somestupidname") != std::string::npos)
        return std::make_error_code(std::errc::host_unreachable);
      return {};
    };
    const std::vector<std::string> urls = {"http://www.golang.org/",
                                           "http://www.google.com/",
                                           "http://www.somestupidname.com/"};
    errgroup::group g;  // Go's zero Group, on the default scheduler
    std::atomic<int> fetched{0};
    for (const std::string& url : urls)
      g.go([&fetched, &fake_get, url] {
        fetched.fetch_add(1);
        return fake_get(url);
      });
    const error err = g.wait();
    const auto* se = err.as<std::system_error>();
    REQUIRE(se != nullptr);
    CHECK(se->code() == std::errc::host_unreachable);
    CHECK(fetched.load() == 3);  // a zero group runs every task
  }

  TEST_CASE(
      "the searches fill their result slots in index order "
      "(ExampleGroup_parallel)") {
    const std::vector<search> searches = {
        fake_search("web"), fake_search("image"), fake_search("video")};
    for (int threads : thread_counts) {
      CAPTURE(threads);
      errgroup::scheduler s{threads};
      auto [results, err] = google(errgroup::context(), s, "golang", searches);
      REQUIRE_FALSE(err);
      std::string out;
      for (const std::string& r : results) out += r + "\n";
      CHECK(out ==
            "web result for \"golang\"\n"
            "image result for \"golang\"\n"
            "video result for \"golang\"\n");

      const std::vector<search> failing = {
          fake_search("web"),
          [](const errgroup::context&, const std::string&) -> std::string {
            throw std::runtime_error("group_test: image search is down");
          },
          fake_search("video")};
      auto [none, failed] = google(errgroup::context(), s, "golang", failing);
      CHECK(none.empty());
      CHECK(failed.message() == "group_test: image search is down");
    }
  }

  TEST_CASE(
      "MD5All sums every regular file and stops on the first error "
      "(ExampleGroup_pipeline)") {
    const std::vector<file> tree = make_tree(400);
    std::map<std::string, std::uint64_t> want;
    for (const file& f : tree)
      if (f.regular) want[f.path] = checksum(f.data);
    REQUIRE(want.size() < tree.size());

    for (int digesters : {1, 4, 20}) {
      CAPTURE(digesters);
      const md5all_result ok = md5all(errgroup::context(), tree, digesters, "");
      CHECK_FALSE(ok.err);
      CHECK_FALSE(ok.second_wait);
      CHECK(ok.sums == want);
      CHECK(ok.stats.submitted == digesters + 1);
      CHECK(ok.stats.succeeded == digesters + 1);
      CHECK(ok.stats.running == 0);

      const std::string bad = tree[200].path;
      REQUIRE(tree[200].regular);
      const md5all_result failed =
          md5all(errgroup::context(), tree, digesters, bad);
      const auto* se = failed.err.as<std::system_error>();
      REQUIRE(se != nullptr);
      CHECK(se->code() == std::errc::permission_denied);
      CHECK(std::string_view(se->what()).starts_with(bad));
      CHECK(failed.second_wait == failed.err);  // wait() twice: same error
      CHECK(failed.sums.empty());
      CHECK(failed.stats.running == 0);  // every task finished
      CHECK(failed.stats.failed >= 1);
      CHECK(failed.stats.succeeded + failed.stats.failed +
                failed.stats.skipped ==
            failed.stats.submitted);

      // A parent cancelled up front: every task is skipped, and the walker's
      // callable still closes the channel it owns.
      auto [parent, cancel] = errgroup::with_cancel(errgroup::context());
      cancel();
      const md5all_result cancelled = md5all(parent, tree, digesters, "");
      CHECK(cancelled.err.is<errgroup::cancelled_error>());
      CHECK(cancelled.stats.skipped == digesters + 1);
    }
  }
}  // TEST_SUITE("go_examples")
