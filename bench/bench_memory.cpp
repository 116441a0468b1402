// Workload 5, memory. This binary replaces the global operator new/delete
// with counting versions (every thread, every form), so allocation counts
// cover the library, oneTBB's own operator new calls and the C++ runtime.
// oneTBB's small-object pool (tasks) and its coroutine stacks do not go
// through operator new; mallinfo2() deltas are reported beside the counts.
//
//   memory/sizes                 sizeof(group), sizeof(detail::node), ...
//   memory/context_node          bytes per context node: node::make(parent)
//                                (node + shared_ptr control block +
//                                std::stop_source state), with_cancel, and
//                                what a group's constructor allocates
//   memory/allocs_per_go/<kind>  operator new calls per go() across 100,000
//                                go() of a lambda capturing 2 pointers (group
//                                construction excluded, wait() included,
//                                after one unmeasured warm-up round);
//                                kind: plain, context, limit2, and
//                                tbb_task_group (run()) for reference;
//                                go_result and collector: the same task
//                                returning a value (<errgroup/results.hpp>,
//                                plain group; the handles' vector reserved
//                                beforehand, the collector's values() taken
//                                in the measured wait)
//   memory/peak_rss/<scenario>   peak RSS growth (VmHWM, in a fresh child
//                                process) while 100,000 go() calls meet a
//                                limit-2 group:
//       nested     100,000 outer tasks each call inner.go() on a limit-2
//                  group whose running tasks hold their slots until all
//                  100,000 are waiting (suspended or queued)
//       external   one thread outside oneTBB calls inner.go() 100,000 times
//                  (it blocks at the limit: at most 1 waits at a time)
#include <malloc.h>
#include <oneapi/tbb/task_group.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <errgroup/detail/node.hpp>
#include <errgroup/errgroup.hpp>
#include <fstream>
#include <iostream>
#include <new>
#include <sstream>
#include <thread>

#include "common.hpp"

// ---- counting operator new / delete ----------------------------------------

namespace {
std::atomic<std::int64_t> g_news{0}, g_new_bytes{0}, g_deletes{0};
std::atomic<bool> g_trace{false};
std::atomic<int> g_trace_n{0};
std::size_t g_trace_sizes[32];

void* counted_alloc(std::size_t n, std::size_t align) noexcept {
  g_news.fetch_add(1, std::memory_order_relaxed);
  g_new_bytes.fetch_add(static_cast<std::int64_t>(n),
                        std::memory_order_relaxed);
  if (g_trace.load(std::memory_order_relaxed)) {
    const int i = g_trace_n.fetch_add(1, std::memory_order_relaxed);
    if (i < 32) g_trace_sizes[i] = n;
  }
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void* must(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_deletes.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) { return must(counted_alloc(n, 0)); }
void* operator new[](std::size_t n) { return must(counted_alloc(n, 0)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, 0);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return must(counted_alloc(n, static_cast<std::size_t>(a)));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return must(counted_alloc(n, static_cast<std::size_t>(a)));
}
void* operator new(std::size_t n, std::align_val_t a,
                   const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a,
                     const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace {

struct snapshot {
  std::int64_t news, bytes;
  std::size_t heap;  // mallinfo2: bytes in use (malloc arenas + mmap'd)
  static snapshot now() {
    const struct mallinfo2 mi = mallinfo2();
    return {g_news.load(), g_new_bytes.load(), mi.uordblks + mi.hblkhd};
  }
};

// The task body of workload 5: a small lambda capturing 2 pointers.
struct small_fn {
  std::atomic<std::int64_t>* count;
  const int* other;
  void operator()() const noexcept {
    count->fetch_add(*other, std::memory_order_relaxed);
  }
};

// small_fn returning a value, for the typed-result kinds.
struct value_fn {
  small_fn f;
  std::int64_t operator()() const noexcept {
    f();
    return 1;
  }
};

std::int64_t n_go() { return bench::scaled(100'000, 2'000); }

// ---- memory/sizes -----------------------------------------------------------

void sizes(benchmark::State& st) {
  for (auto _ : st) st.SetIterationTime(1e-9);
  st.counters["sizeof_group"] = sizeof(errgroup::group);
  st.counters["sizeof_context"] = sizeof(errgroup::context);
  st.counters["sizeof_node"] = sizeof(errgroup::detail::node);
  st.counters["sizeof_weighted"] = sizeof(errgroup::weighted);
  st.counters["sizeof_task_small_fn"] = static_cast<double>(
      errgroup::detail::task_size(sizeof(small_fn), alignof(small_fn)));
  using result_fn = errgroup::detail::result_task<std::int64_t, value_fn>;
  st.counters["sizeof_task_result_fn"] = static_cast<double>(
      errgroup::detail::task_size(sizeof(result_fn), alignof(result_fn)));
  st.counters["sizeof_result_slot_int64"] =
      sizeof(errgroup::detail::result_slot<std::int64_t>);
  st.counters["sizeof_tbb_task_group"] = sizeof(tbb::task_group);
  st.counters["sizeof_tbb_task_group_context"] =
      sizeof(tbb::task_group_context);
  st.counters["sizeof_stop_callback_link"] =
      sizeof(std::optional<std::stop_callback<void (*)()>>);
}

// ---- memory/context_node
// ------------------------------------------------------

std::string traced(auto fn) {
  g_trace_n = 0;
  g_trace = true;
  fn();
  g_trace = false;
  std::ostringstream os;
  const int n = std::min(g_trace_n.load(), 32);
  for (int i = 0; i < n; ++i) os << (i ? "+" : "") << g_trace_sizes[i];
  return os.str();
}

void context_node(benchmark::State& st) {
  constexpr int k = 1000;
  double news = 0, bytes = 0, heap = 0, wc_news = 0, wc_bytes = 0;
  for (auto _ : st) {
    auto root = errgroup::detail::node::make(nullptr);
    std::vector<std::shared_ptr<errgroup::detail::node>> nodes;
    nodes.reserve(k);
    auto a = snapshot::now();
    for (int i = 0; i < k; ++i)
      nodes.push_back(errgroup::detail::node::make(root));
    auto b = snapshot::now();
    news = static_cast<double>(b.news - a.news) / k;
    bytes = static_cast<double>(b.bytes - a.bytes) / k;
    heap = (static_cast<double>(b.heap) - static_cast<double>(a.heap)) / k;
    std::vector<errgroup::context_and_cancel> cs;
    cs.reserve(k);
    errgroup::context parent(root);
    a = snapshot::now();
    for (int i = 0; i < k; ++i) cs.push_back(errgroup::with_cancel(parent));
    b = snapshot::now();
    wc_news = static_cast<double>(b.news - a.news) / k;
    wc_bytes = static_cast<double>(b.bytes - a.bytes) / k;
    st.SetIterationTime(1e-9);
  }
  {  // one-time statics (default scheduler, sentinels) before the traces
    errgroup::group g;
    auto gc = errgroup::with_context(errgroup::context());
  }
  auto root = errgroup::detail::node::make(nullptr);
  std::shared_ptr<errgroup::detail::node> child;
  const std::string child_sizes =
      traced([&] { child = errgroup::detail::node::make(root); });
  std::shared_ptr<errgroup::detail::node> root2;
  const std::string root_sizes =
      traced([&] { root2 = errgroup::detail::node::make(nullptr); });
  const std::string plain_sizes = traced([] { errgroup::group g; });
  const std::string ctx_sizes =
      traced([] { auto gc = errgroup::with_context(errgroup::context()); });
  st.counters["new_calls_per_node"] = news;
  st.counters["new_bytes_per_node"] = bytes;
  st.counters["malloc_bytes_per_node"] = heap;
  st.counters["with_cancel_new_calls"] = wc_news;
  st.counters["with_cancel_new_bytes"] = wc_bytes;
  st.counters["sizeof_node"] = sizeof(errgroup::detail::node);
  st.SetLabel("child node::make: " + child_sizes + " B; root: " + root_sizes +
              " B; group(): " + plain_sizes +
              " B; with_context(): " + ctx_sizes + " B");
}

// ---- memory/allocs_per_go ---------------------------------------------------

template <class Group>
void allocs_per_go(benchmark::State& st, Group&& make) {
  const std::int64_t n = n_go();
  double news = 0, bytes = 0, heap = 0;
  for (auto _ : st) {
    std::atomic<std::int64_t> count{0};
    const int one = 1;
    {  // warm-up: oneTBB's one-time per-thread and arena set-up allocates
      auto w = make();
      for (std::int64_t i = 0; i < n; ++i) w->go(small_fn{&count, &one});
      w->wait();
      count = 0;
    }
    auto g = make();
    const auto a = snapshot::now();
    const auto t0 = bench::clock::now();
    for (std::int64_t i = 0; i < n; ++i) g->go(small_fn{&count, &one});
    g->wait();
    const double s = bench::seconds(bench::clock::now() - t0);
    const auto b = snapshot::now();
    if (count.load() != n) st.SkipWithError("lost tasks");
    news = static_cast<double>(b.news - a.news) / static_cast<double>(n);
    bytes = static_cast<double>(b.bytes - a.bytes) / static_cast<double>(n);
    heap = (static_cast<double>(b.heap) - static_cast<double>(a.heap)) /
           static_cast<double>(n);
    st.SetIterationTime(s);
  }
  st.counters["new_calls_per_go"] = news;
  st.counters["new_bytes_per_go"] = bytes;
  st.counters["malloc_delta_bytes_per_go"] = heap;
  st.counters["go_calls"] = static_cast<double>(n);
}

struct tbb_adapter {
  tbb::task_group tg;
  void go(small_fn f) { tg.run(f); }
  void wait() { tg.wait(); }
};

struct go_result_adapter {
  errgroup::group g;
  std::vector<errgroup::result<std::int64_t>> rs;
  go_result_adapter() { rs.reserve(static_cast<std::size_t>(n_go())); }
  void go(small_fn f) { rs.push_back(errgroup::go_result(g, value_fn{f})); }
  void wait() { (void)g.wait(); }
};

struct collector_adapter {
  errgroup::group g;
  errgroup::collector<std::int64_t> c{g};
  void go(small_fn f) { c.go(value_fn{f}); }
  void wait() {
    (void)g.wait();
    bench::keep(c.values());
  }
};

// ---- memory/peak_rss (child process)
// -----------------------------------------

std::int64_t status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::stoll(line.substr(k.size()));
  return -1;
}

bool reset_hwm() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

// Runs one scenario and prints "key=value ..." on stdout.
int rss_child(const std::string& scenario, std::int64_t n) {
  {  // start oneTBB's workers and the inner arena before the baseline
    errgroup::group warm;
    for (int i = 0; i < 1000; ++i) warm.go([] {});
    (void)warm.wait();
  }
  errgroup::scheduler inner_sched{2};
  errgroup::group inner(inner_sched);
  inner.set_limit(2);
  {
    errgroup::group warm(inner_sched);
    for (int i = 0; i < 100; ++i) warm.go([] {});
    (void)warm.wait();
  }
  const bool hwm_reset = reset_hwm();
  const std::int64_t rss0 = status_kb("VmRSS"), hwm0 = status_kb("VmHWM");
  const auto a = snapshot::now();
  std::atomic<bool> release{false};
  std::atomic<std::int64_t> done{0};
  std::int64_t peak_waiting = 0, rss_at_peak = 0;
  bool timed_out = false;
  const auto t0 = bench::clock::now();
  if (scenario == "nested") {
    // The two running inner tasks hold the slots until a monitor sees every
    // other go() waiting (or 60 s pass).
    std::thread monitor([&] {
      const auto deadline = bench::clock::now() + std::chrono::seconds(60);
      for (;;) {
        const auto c = inner.counters();
        peak_waiting = std::max(peak_waiting, c.waiting);
        if (c.waiting >= n - 2) break;
        if (bench::clock::now() > deadline) {
          timed_out = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      rss_at_peak = status_kb("VmRSS");
      release = true;
      release.notify_all();
    });
    errgroup::group outer;
    for (std::int64_t i = 0; i < n; ++i)
      outer.go([&] {
        inner.go([&] {
          release.wait(false);
          done.fetch_add(1, std::memory_order_relaxed);
        });
      });
    (void)outer.wait();
    (void)inner.wait();
    monitor.join();
  } else {
    std::atomic<bool> stop{false};
    std::thread monitor([&] {
      while (!stop.load()) {
        peak_waiting = std::max(peak_waiting, inner.counters().waiting);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
    for (std::int64_t i = 0; i < n; ++i)
      inner.go([&] { done.fetch_add(1, std::memory_order_relaxed); });
    (void)inner.wait();
    stop = true;
    monitor.join();
    rss_at_peak = status_kb("VmRSS");
  }
  const double secs = bench::seconds(bench::clock::now() - t0);
  const auto b = snapshot::now();
  const std::int64_t hwm1 = status_kb("VmHWM");
  std::cout << "ok=" << (done.load() == n && !timed_out ? 1 : 0)
            << " hwm_reset=" << hwm_reset << " rss0_kb=" << rss0
            << " hwm0_kb=" << hwm0 << " hwm_kb=" << hwm1
            << " rss_at_peak_kb=" << rss_at_peak
            << " peak_waiting=" << peak_waiting << " seconds=" << secs
            << " new_calls=" << (b.news - a.news)
            << " new_bytes=" << (b.bytes - a.bytes) << "\n";
  return 0;
}

void peak_rss(benchmark::State& st, const std::string& scenario) {
  const std::int64_t n = n_go();
  char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) {
    st.SkipWithError("readlink /proc/self/exe");
    return;
  }
  exe[len] = '\0';
  std::map<std::string, double> kv;
  for (auto _ : st) {
    const std::string cmd = std::string("'") + exe +
                            "' --rss-child=" + scenario + " " +
                            std::to_string(n);
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (p && std::fgets(buf, sizeof buf, p)) out += buf;
    if (!p || pclose(p) != 0) {
      st.SkipWithError("rss child failed");
      return;
    }
    std::istringstream is(out);
    std::string tok;
    while (is >> tok)
      if (auto eq = tok.find('='); eq != std::string::npos)
        kv[tok.substr(0, eq)] = std::stod(tok.substr(eq + 1));
    st.SetIterationTime(kv["seconds"]);
    if (kv["ok"] != 1) st.SkipWithError("scenario did not complete");
  }
  const double base = kv["hwm_reset"] != 0 ? kv["rss0_kb"] : kv["hwm0_kb"];
  const double growth = kv["hwm_kb"] - base;
  st.counters["peak_rss_growth_kb"] = growth;
  st.counters["peak_rss_kb"] = kv["hwm_kb"];
  st.counters["peak_waiting"] = kv["peak_waiting"];
  st.counters["bytes_per_go"] = growth * 1024 / static_cast<double>(n);
  st.counters["new_calls_per_go"] = kv["new_calls"] / static_cast<double>(n);
  st.counters["go_calls"] = static_cast<double>(n);
}

int setup() {
  auto reg = [](const std::string& name, auto fn) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  };
  reg("memory/sizes", sizes);
  reg("memory/context_node", context_node);
  reg("memory/allocs_per_go/plain", [](benchmark::State& st) {
    allocs_per_go(st, [] { return std::make_unique<errgroup::group>(); });
  });
  reg("memory/allocs_per_go/context", [](benchmark::State& st) {
    allocs_per_go(st, [] {
      return std::make_unique<errgroup::group>(errgroup::context());
    });
  });
  reg("memory/allocs_per_go/limit2", [](benchmark::State& st) {
    allocs_per_go(st, [] {
      auto g = std::make_unique<errgroup::group>();
      g->set_limit(2);
      return g;
    });
  });
  reg("memory/allocs_per_go/tbb_task_group", [](benchmark::State& st) {
    allocs_per_go(st, [] { return std::make_unique<tbb_adapter>(); });
  });
  reg("memory/allocs_per_go/go_result", [](benchmark::State& st) {
    allocs_per_go(st, [] { return std::make_unique<go_result_adapter>(); });
  });
  reg("memory/allocs_per_go/collector", [](benchmark::State& st) {
    allocs_per_go(st, [] { return std::make_unique<collector_adapter>(); });
  });
  reg("memory/peak_rss/nested",
      [](benchmark::State& st) { peak_rss(st, "nested"); });
  reg("memory/peak_rss/external",
      [](benchmark::State& st) { peak_rss(st, "external"); });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string_view(argv[1]).rfind("--rss-child=", 0) == 0)
    return rss_child(std::string(argv[1]).substr(12), std::stoll(argv[2]));
  return bench::main(argc, argv, setup);
}
