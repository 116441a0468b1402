// tests/faultinj/faultinj.cpp: errgroup_faultinj, the allocation failure
// sweep (docs/contract.md §7: an allocation failure anywhere reaches the caller
// as an exception or an error; it never terminates the process, never loses or
// duplicates a task, never leaks units or memory).
//
//   errgroup_faultinj [--scenario group|results|trace] [--mode new|tbb]
//                     [--from A] [--to B] [--jobs J] [--timeout S]
//                     [--no-sites] [-v]
//   errgroup_faultinj [--scenario S] [--mode new|tbb] --one N | --site HASH
//
// --scenario picks the workload (scenario.hpp; default group): groups and
// budgets, the typed results (results.hpp) or the trace (trace.hpp).
//
// Every run of the scenario (scenario.hpp) happens in a child fork()ed from
// this process, which never touches oneTBB or errgroup itself and stays
// single-threaded, so every child starts as a fresh process would: the first
// use of oneTBB and of the library is part of the scenario. The child arms
// the injector (inject.hpp), runs the scenario, checks the invariants and
// exits 0 when they hold.
//
// First a run without failures counts the scenario's allocations and records
// their sites (an allocation's site: the innermost return addresses of its
// stack). Then the sweep fails, in one run each, the N-th allocation counted
// from the start of the scenario on any thread, for N = A, A+1, ... until a
// run sees no failure injected (it made fewer than N allocations), or up to
// B. Which allocation is the N-th depends on how the threads interleave, so
// that pass can miss a site; a second pass (whole sweeps only, not with
// --from/--to or --no-sites) fails the first allocation from each site of
// the clean run that no N failed, once per site.
//
// At most J children run at once (default 2). A child whose scenario makes
// no progress for 2 s reports a hang itself (a watchdog thread); one that
// runs longer than S seconds (default 20; a clean run takes milliseconds) is
// asked (SIGUSR1) to report it, then killed. Either way the report shows
// where the main thread is.
//
// --mode new (default) fails global operator new / new[] calls (throwing
// std::bad_alloc, or nullptr for the nothrow forms); --mode tbb fails
// allocations from oneTBB's small object pool, where every oneTBB task is
// allocated (std::bad_alloc, as oneTBB throws).
//
// --one N (N = 0: nothing fails) and --site HASH run the scenario in this
// process, without forking and without the watchdog, for a debugger:
//   gdb -ex 'break faultinj_injected' -ex run --args errgroup_faultinj --one 7
//
// Prints one summary line, then every run that was not clean (killed by a
// signal: std::terminate aborts; hung; broke an invariant), grouped by how it
// failed and where the failed allocation was, and the output of the first
// run of each group: the stack of the failed allocation, and the stack where
// it went wrong. Exits 1 if there is any.
//
// Exit status of a child: 0 clean (a failure was injected), 10 clean (none
// was), 20 an invariant broke, 30 a hang; 1 and 23 come from
// AddressSanitizer / LeakSanitizer when they report.
#include <cxxabi.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "inject.hpp"
#include "scenario.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define FAULTINJ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULTINJ_ASAN 1
#endif
#endif
#if defined(FAULTINJ_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

namespace {

using steady = std::chrono::steady_clock;

constexpr int exit_clean = 0;
constexpr int exit_nothing_injected = 10;
constexpr int exit_violation = 20;
constexpr int exit_hang = 30;

struct options {
  faultinj::mode mode = faultinj::mode::new_delete;
  faultinj::workload workload = faultinj::workload::group;
  long from = 1;
  long to = 0;  // 0: until a run injects nothing
  int jobs = 2;
  int timeout_s = 20;
  long one = -1;               // >= 0: run this N in this process
  std::uint64_t one_site = 0;  // or: fail this site in this process
  bool sites = true;           // the second pass (see the top)
  bool verbose = false;
};

void put(int fd, const char* s) {
  for (std::size_t n = std::strlen(s); n > 0;) {
    const ssize_t w = ::write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "errgroup_faultinj: %s\n"
               "usage: errgroup_faultinj [--scenario group|results|trace] "
               "[--mode new|tbb] [--from A] [--to B] [--jobs J] [--timeout S] "
               "[--no-sites] [-v]\n"
               "       errgroup_faultinj [--scenario S] [--mode new|tbb] "
               "--one N | --site HASH\n",
               why);
  std::exit(2);
}

long number(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0) usage(what);
  return v;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) usage(what);
      return argv[++i];
    };
    if (a == "--scenario") {
      const std::string w = value("--scenario needs group, results or trace");
      bool known = false;
      for (const faultinj::workload k :
           {faultinj::workload::group, faultinj::workload::results,
            faultinj::workload::trace})
        if (w == faultinj::name(k)) {
          o.workload = k;
          known = true;
        }
      if (!known) usage("--scenario needs group, results or trace");
    } else if (a == "--mode") {
      const std::string m = value("--mode needs new or tbb");
      if (m == "new")
        o.mode = faultinj::mode::new_delete;
      else if (m == "tbb")
        o.mode = faultinj::mode::tbb_pool;
      else
        usage("--mode needs new or tbb");
    } else if (a == "--from") {
      o.from = number(value("--from needs a number"), "bad --from");
    } else if (a == "--to") {
      o.to = number(value("--to needs a number"), "bad --to");
    } else if (a == "--jobs") {
      o.jobs = static_cast<int>(std::clamp(
          number(value("--jobs needs a number"), "bad --jobs"), 1L, 64L));
    } else if (a == "--timeout") {
      o.timeout_s = static_cast<int>(
          std::clamp(number(value("--timeout needs seconds"), "bad --timeout"),
                     1L, 3600L));
    } else if (a == "--one") {
      o.one = number(value("--one needs a number"), "bad --one");
    } else if (a == "--site") {
      const char* h = value("--site needs a hash");
      char* end = nullptr;
      o.one_site = std::strtoull(h, &end, 16);
      if (end == h || *end != '\0' || o.one_site == 0) usage("bad --site");
    } else if (a == "--no-sites") {
      o.sites = false;
    } else if (a == "-v" || a == "--verbose") {
      o.verbose = true;
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (o.from < 1) o.from = 1;
  if (o.to != 0 && o.to < o.from) usage("--to is below --from");
  // The second pass completes a whole sweep only.
  if (o.from != 1 || o.to != 0) o.sites = false;
  return o;
}

// ---- the child

// The exception being handled, as "Type: what()".
void print_current_exception(int fd) {
  std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) {
    // Optimized code lets an exception out of a noexcept function this way.
    put(fd, "no exception being handled");
    return;
  }
  int status = 0;
  char* name = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  put(fd, status == 0 && name != nullptr ? name : type->name());
  std::free(name);
  try {
    throw;
  } catch (const std::exception& e) {
    put(fd, ": ");
    put(fd, e.what());
  } catch (...) {
  }
}

[[noreturn]] void on_terminate() noexcept {
  faultinj::disarm();
  put(2, "kind: std::terminate with ");
  print_current_exception(2);
  put(2, "\n");
  faultinj::print_site_summary(2);
  put(2, "injected allocation:\n");
  faultinj::print_site(2);
  put(2, "std::terminate called from:\n");
  faultinj::print_stack(2);
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

#if !defined(FAULTINJ_ASAN)
void on_crash(int sig) {
  faultinj::disarm();
  put(2, "kind: crash, ");
  put(2, strsignal(sig));
  put(2, "\n");
  faultinj::print_site_summary(2);
  put(2, "injected allocation:\n");
  faultinj::print_site(2);
  put(2, "crashed at:\n");
  faultinj::print_stack(2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
#endif

// SIGUSR1 to the main thread: from the watchdog when the scenario stopped
// making progress, or from the parent when the child ran too long.
[[noreturn]] void on_hang(int, siginfo_t* info, void*) {
  faultinj::disarm();
  put(2, info->si_pid == getpid() ? "kind: hang (no progress)\n"
                                  : "kind: hang (past the timeout)\n");
  faultinj::print_site_summary(2);
  put(2, "injected allocation:\n");
  faultinj::print_site(2);
  put(2, "the main thread is at:\n");
  faultinj::print_stack(2);
  _exit(exit_hang);
}

// watchdog: while the scenario runs, a thread that sends SIGUSR1 to the main
// thread when nothing moved (no allocation, no task started or finished) for
// `idle`, and no thread waits for a deadline (such a wait has its own bound).
// A clean run never pauses for more than a few milliseconds, so this finds a
// hang long before the parent's timeout would. Started before the scenario, so
// it is no part of the first use of anything the scenario tests.
class watchdog {
 public:
  explicit watchdog(std::chrono::milliseconds idle)
      : main_(static_cast<pid_t>(syscall(SYS_gettid))),
        thread_([this, idle] { watch(idle); }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  void watch(std::chrono::milliseconds idle) {
    std::unique_lock lock(mu_);
    long last = -1;
    auto since = steady::now();
    while (!cv_.wait_for(lock, std::chrono::milliseconds(20),
                         [&] { return stop_; })) {
      const long now_progress = faultinj::activity() + faultinj::progress();
      const auto now = steady::now();
      if (now_progress != last || faultinj::in_timed_wait()) {
        last = now_progress;
        since = now;
      } else if (now - since >= idle) {
        syscall(SYS_tgkill, getpid(), main_, SIGUSR1);
        return;
      }
    }
  }

  pid_t main_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts when the rest is ready
};

constexpr auto idle_limit = std::chrono::seconds(2);

// run_one(t, new_blocks_allowed, watch) runs the scenario with the
// allocation t names failing, checks it and returns the exit status. With
// watch, a watchdog reports a scenario that stops making progress as a hang.
int run_one(const faultinj::target& t, long new_blocks_allowed, bool watch) {
  std::set_terminate(on_terminate);
#if !defined(FAULTINJ_ASAN)
  for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE})
    std::signal(sig, on_crash);
#endif
  struct sigaction hang {};
  hang.sa_sigaction = on_hang;
  hang.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR1, &hang, nullptr);
  faultinj::scenario_thread();
  // Before the watchdog, whose thread's state is freed when it stops.
  const long pool_before = faultinj::live_pool_blocks();
  const long new_before = faultinj::live_new_blocks();
  std::optional<watchdog> dog;
  if (watch) dog.emplace(idle_limit);
  faultinj::arm(t);
  faultinj::run_scenario();
  const faultinj::armed_stats st = faultinj::disarm();
  dog.reset();
  faultinj::check_after(pool_before, new_before, new_blocks_allowed);

  char line[200];
  std::snprintf(line, sizeof line,
                "calls: %ld injected: %d new_blocks_left: %ld\n", st.calls,
                st.fired ? 1 : 0, faultinj::live_new_blocks() - new_before);
  put(1, line);
  faultinj::print_tally(1);
  if (faultinj::stopped_by()[0] != '\0') {
    put(1, "stopped by: ");
    put(1, faultinj::stopped_by());
    put(1, "\n");
  }
  faultinj::print_site_summary(1);
  int status = st.fired ? exit_clean : exit_nothing_injected;
  if (faultinj::violation_count() > 0) {
    put(2, "kind: invariant broken\n");
    faultinj::print_violations(2);
    put(2, "injected allocation:\n");
    faultinj::print_site(2);
    status = exit_violation;
  }
  if (t.record_sites) faultinj::print_recorded_sites(1);
#if defined(FAULTINJ_ASAN)
  if (__lsan_do_recoverable_leak_check() != 0) {
    put(2, "kind: LeakSanitizer reported a leak\n");
    status = 23;
  }
#endif
  return status;
}

// ---- the parent

// One run of the scenario in a child: the n-th allocation fails, or (n == 0)
// the first one from a site.
struct run_spec {
  long n = 0;
  std::uint64_t site = 0;
  bool record_sites = false;  // the run without failures
  int attempt = 1;            // of a site run that did not reach its site
};

std::string hex(std::uint64_t h) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string label(const run_spec& r) {
  return r.n > 0 ? "N=" + std::to_string(r.n) : "site " + hex(r.site);
}

struct child {
  run_spec run;
  pid_t pid = -1;
  std::FILE* out = nullptr;
  steady::time_point started;
  steady::time_point deadline;
  int stage = 0;  // 0: running, 1: asked to report a hang, 2: killed
};

// How long a child asked to report a hang has to do it.
constexpr auto hang_grace = std::chrono::seconds(3);

struct verdict {
  run_spec run;
  bool clean = false;
  bool injected = true;       // only a clean run can tell it was not
  bool inconclusive = false;  // the tool failed, not the library
  long calls = -1;
  long new_blocks_left = -1;
  std::uint64_t fired_site = 0;
  double ms = 0;        // from fork() to reaping
  std::string what;     // one line: how it failed
  std::string site;     // where the failed allocation was
  std::string details;  // the child's output
  // Seen by a run with record_sites: each site and where it is.
  std::map<std::uint64_t, std::string> sites;
};

std::string read_all(std::FILE* f) {
  std::string s;
  std::rewind(f);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
    s.append(buf, n);
  return s;
}

// line_value(text, key): the rest of the first line starting with key.
std::string line_value(const std::string& text, const std::string& key) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    if (text.compare(at, key.size(), key) == 0)
      return text.substr(at + key.size(), end - at - key.size());
    at = end + 1;
  }
  return {};
}

// sanitizer_report(text): "AddressSanitizer: heap-use-after-free in f()
// file.cpp:80" from a sanitizer's report in text, or "".
std::string sanitizer_report(const std::string& text) {
  std::size_t at = text.find("ERROR: AddressSanitizer: ");
  std::size_t skip = 7;
  if (at == std::string::npos) {
    at = text.find("runtime error: ");  // UndefinedBehaviorSanitizer
    skip = 0;
  }
  if (at == std::string::npos) return {};
  const std::size_t eol = std::min(text.find('\n', at), text.size());
  std::string what = text.substr(at + skip, eol - at - skip);
  if (const std::size_t on = what.find(" on address"); on != std::string::npos)
    what.erase(on);
  // Where: the innermost frame, "#0 0x... in f() /path/file.cpp:80".
  if (const std::size_t frame = text.find("#0 0x", eol);
      frame != std::string::npos) {
    const std::size_t end = std::min(text.find('\n', frame), text.size());
    const std::size_t in = text.find(" in ", frame);
    if (in != std::string::npos && in < end) {
      std::string where = text.substr(in + 4, end - in - 4);
      if (const std::size_t path = where.find(" /"); path != std::string::npos)
        if (const std::size_t base = where.rfind('/');
            base != std::string::npos && base > path)
          where.erase(path + 1, base - path);
      what += " in " + where;
    }
  }
  return what;
}

long long_after(const std::string& text, const std::string& key) {
  const std::size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::strtol(text.c_str() + at + key.size(), nullptr, 10);
}

verdict judge(const child& c, int status, std::string out) {
  verdict v;
  v.run = c.run;
  v.ms = std::chrono::duration<double, std::milli>(steady::now() - c.started)
             .count();
  v.calls = long_after(out, "calls: ");
  v.new_blocks_left = long_after(out, "new_blocks_left: ");
  v.site = line_value(out, "site: ");
  v.fired_site =
      std::strtoull(line_value(out, "site_hash: ").c_str(), nullptr, 16);
  for (std::size_t at = out.find("recorded_site: "); at != std::string::npos;
       at = out.find("recorded_site: ", at + 1)) {
    char* end = nullptr;
    const std::uint64_t h = std::strtoull(out.c_str() + at + 15, &end, 16);
    const std::size_t eol = std::min(out.find('\n', at), out.size());
    const auto from = static_cast<std::size_t>(end - out.c_str());
    v.sites[h] =
        out.substr(std::min(from + 1, eol), eol - std::min(from + 1, eol));
  }
  const std::string kind = line_value(out, "kind: ");
  if (c.stage > 0) {
    v.what = "hang: still running after the timeout";
    if (c.stage > 1) v.what += " (killed: it did not report where)";
  } else if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    v.what = !kind.empty() ? kind : std::string("killed by ") + strsignal(sig);
    if (sig == SIGABRT && kind.empty()) v.what += " (abort)";
  } else if (WIFEXITED(status)) {
    switch (const int code = WEXITSTATUS(status)) {
      case exit_clean:
        v.clean = true;
        break;
      case exit_nothing_injected:
        v.clean = true;
        v.injected = false;
        break;
      case exit_violation:
        v.what = "invariant broken: " + line_value(out, "violation: ");
        break;
      case exit_hang:
        v.what = kind;
        break;
      default:
        v.what = !kind.empty() ? kind : sanitizer_report(out);
        if (v.what.empty()) v.what = "exit status " + std::to_string(code);
        // g++'s AddressSanitizer reports a false stack-buffer-overflow (or
        // unknown-crash) in __asan_handle_no_return when an exception is
        // thrown on one of the makecontext stacks oneTBB runs suspended
        // tasks on (google/sanitizers#189; tests/soak is disabled for it).
        // Or it declines to unpoison such a stack ("ASan is ignoring
        // requested __asan_handle_no_return ... False positive error reports
        // may follow") and a later frame on it trips over the stale poison.
        // Such a run proves nothing either way.
        const bool asan =
            out.find("ERROR: AddressSanitizer") != std::string::npos;
        const bool handle_no_return =
            out.find("__asan_handle_no_return") != std::string::npos &&
            out.find("PlatformUnpoisonStacks") != std::string::npos;
        const bool declined =
            out.find("ASan is ignoring requested __asan_handle_no_return") !=
                std::string::npos &&
            out.find("False positive error reports may follow") !=
                std::string::npos;
        if (asan && (handle_no_return || declined)) {
          v.inconclusive = true;
          v.what = "inconclusive: ASan false positive on a coroutine stack";
        }
    }
  }
  v.details = std::move(out);
  return v;
}

void start(const options& o, const run_spec& r, long new_blocks_allowed,
           const sigset_t& old_mask, std::vector<child>& running) {
  child c;
  c.run = r;
  c.out = std::tmpfile();
  if (c.out == nullptr) {
    std::perror("errgroup_faultinj: tmpfile");
    std::exit(2);
  }
  std::fflush(nullptr);
  c.pid = fork();
  if (c.pid < 0) {
    std::perror("errgroup_faultinj: fork");
    std::exit(2);
  }
  if (c.pid == 0) {
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    const rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    dup2(fileno(c.out), 1);
    dup2(fileno(c.out), 2);
    faultinj::target t;
    t.kind = o.mode;
    t.nth = r.n;
    t.site = r.site;
    t.record_sites = r.record_sites;
    const int status = run_one(t, new_blocks_allowed, /*watch=*/true);
    std::fflush(nullptr);
    _exit(status);
  }
  c.started = steady::now();
  c.deadline = c.started + std::chrono::seconds(o.timeout_s);
  running.push_back(c);
}

// reap(running, sigchld): waits until a child ends or a deadline passes,
// deals with children past their deadline, and returns the verdicts of those
// that ended.
std::vector<verdict> reap(std::vector<child>& running,
                          const sigset_t& sigchld) {
  std::vector<verdict> done;
  steady::time_point wake = steady::now() + std::chrono::milliseconds(200);
  for (const child& c : running) wake = std::min(wake, c.deadline);
  const auto left = std::max(wake - steady::now(), steady::duration::zero());
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  const timespec ts{static_cast<time_t>(ns / 1000000000),
                    static_cast<long>(ns % 1000000000)};
  sigtimedwait(&sigchld, nullptr, &ts);  // a SIGCHLD, or the time is up
  for (;;) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    const auto it = std::find_if(running.begin(), running.end(),
                                 [&](const child& c) { return c.pid == pid; });
    if (it == running.end()) continue;
    done.push_back(judge(*it, status, read_all(it->out)));
    std::fclose(it->out);
    running.erase(it);
  }
  const auto now = steady::now();
  for (child& c : running) {
    if (now < c.deadline) continue;
    if (c.stage == 0) {
      // To the main thread (its tid is the pid): it reports and exits.
      syscall(SYS_tgkill, c.pid, c.pid, SIGUSR1);
      c.deadline = now + hang_grace;
      c.stage = 1;
    } else if (c.stage == 1) {
      kill(c.pid, SIGKILL);
      c.deadline = steady::time_point::max();
      c.stage = 2;
    }
  }
  return done;
}

// The first `max_lines` lines of s, indented.
std::string excerpt(const std::string& s, int max_lines) {
  std::string out;
  std::size_t at = 0;
  for (int i = 0; i < max_lines && at < s.size(); ++i) {
    const std::size_t end = std::min(s.find('\n', at), s.size());
    out += "      " + s.substr(at, end - at) + "\n";
    at = end + 1;
  }
  if (at < s.size()) out += "      ...\n";
  return out;
}

class sweeper {
 public:
  explicit sweeper(const options& o) : o_(o) {
    sigemptyset(&sigchld_);
    sigaddset(&sigchld_, SIGCHLD);
    sigprocmask(SIG_BLOCK, &sigchld_, &old_mask_);
  }

  int run() {
    const auto t0 = steady::now();
    // A run without failures first: how many allocations the scenario
    // makes, from which sites, and how many operator new blocks its
    // process-wide singletons keep.
    run_spec clean_run;
    clean_run.record_sites = true;
    start(o_, clean_run, -1, old_mask_, running_);
    std::vector<verdict> done;
    while (done.empty()) done = reap(running_, sigchld_);
    const verdict clean = std::move(done.front());
    if (!clean.clean || clean.injected) {
      std::printf(
          "faultinj: FAIL: the scenario fails without any injected "
          "failure: %s\n%s",
          clean.what.c_str(), excerpt(clean.details, 80).c_str());
      return 1;
    }
    new_blocks_allowed_ = clean.new_blocks_left;

    // First pass: every N. An open-ended sweep stops at a cap too, in case
    // every run keeps allocating (that run's verdict says why).
    long next = o_.from;
    long end = o_.to;  // 0: not known yet
    const long cap = std::max(4 * clean.calls, clean.calls + 1000);
    while (!running_.empty() || end == 0 || next <= end) {
      if (end == 0 && next > cap) {
        std::printf(
            "faultinj: stopping at N=%ld: still injecting at 4x the "
            "%ld allocations of a clean run\n",
            cap, clean.calls);
        end = cap;
        capped_ = true;
      }
      while (static_cast<int>(running_.size()) < o_.jobs &&
             (end == 0 || next <= end)) {
        run_spec r;
        r.n = next++;
        start(o_, r, new_blocks_allowed_, old_mask_, running_);
      }
      for (verdict& v : reap(running_, sigchld_)) {
        // The first N with nothing injected ends an open-ended sweep.
        if (o_.to == 0 && v.clean && !v.injected && (end == 0 || v.run.n < end))
          end = std::max(v.run.n, next - 1);
        keep(std::move(v));
      }
    }
    const long first = o_.from;
    const long last = next - 1;

    // Second pass: the failure an N injects depends on how the threads
    // interleave, so a pass over every N can miss an allocation site that a
    // clean run reaches. Fail each such site once by its stack.
    std::set<std::uint64_t> missed;
    for (const auto& [h, where] : clean.sites) missed.insert(h);
    for (const verdict& v : results_) missed.erase(v.fired_site);
    const std::size_t site_runs_wanted = o_.sites ? missed.size() : 0;
    std::vector<run_spec> queue;
    if (o_.sites)
      for (const std::uint64_t h : missed) {
        run_spec r;
        r.site = h;
        queue.push_back(r);
      }
    long site_runs = 0;
    while (!running_.empty() || !queue.empty()) {
      while (static_cast<int>(running_.size()) < o_.jobs && !queue.empty()) {
        start(o_, queue.back(), new_blocks_allowed_, old_mask_, running_);
        queue.pop_back();
        ++site_runs;
      }
      for (verdict& v : reap(running_, sigchld_)) {
        if (v.clean && !v.injected) {
          // This run did not reach the site: try again, twice at most.
          if (v.run.attempt < 3) {
            run_spec r = v.run;
            ++r.attempt;
            queue.push_back(r);
          } else {
            unreached_.push_back(v.run.site);
          }
          continue;
        }
        keep(std::move(v));
      }
    }

    const double secs =
        std::chrono::duration<double>(steady::now() - t0).count();
    return report(first, last, clean, site_runs_wanted, site_runs, secs);
  }

 private:
  void keep(verdict v) {
    if (o_.verbose)
      std::printf("faultinj: %s (%.0f ms) %s%s\n    injected at: %s\n",
                  label(v.run).c_str(), v.ms,
                  v.clean ? (v.injected ? "clean" : "clean, nothing injected")
                          : "FAIL: ",
                  v.what.c_str(), v.site.empty() ? "-" : v.site.c_str());
    results_.push_back(std::move(v));
  }

  int report(long first, long last, const verdict& clean,
             std::size_t site_runs_wanted, long site_runs, double secs) {
    long injected = 0;
    std::vector<const verdict*> failed;
    std::string inconclusive;
    for (const verdict& v : results_) {
      injected += v.injected ? 1 : 0;
      if (v.inconclusive)
        inconclusive += (inconclusive.empty() ? "" : ",") + label(v.run);
      else if (!v.clean)
        failed.push_back(&v);
    }
    std::string sites;
    if (o_.sites)
      sites = " + " + std::to_string(site_runs_wanted) + " of " +
              std::to_string(clean.sites.size()) +
              " allocation sites no N reached (" + std::to_string(site_runs) +
              " runs" +
              (unreached_.empty() ? ""
                                  : ", " + std::to_string(unreached_.size()) +
                                        " not reached again") +
              ")";
    std::printf(
        "faultinj: N=%ld..%ld swept%s (%s; a clean run makes %ld), %ld "
        "failures injected, %s in %.1f s\n",
        first, last, sites.c_str(),
        o_.mode == faultinj::mode::new_delete ? "operator new"
                                              : "oneTBB pool allocations",
        clean.calls, injected,
        failed.empty() ? "all clean"
                       : (std::to_string(failed.size()) + " not clean").c_str(),
        secs);
    for (const std::uint64_t h : unreached_) {
      const auto it = clean.sites.find(h);
      std::printf("faultinj: site %s not reached again in 3 runs: %s\n",
                  hex(h).c_str(),
                  it != clean.sites.end() ? it->second.c_str() : "?");
    }
    if (!inconclusive.empty())
      std::printf(
          "faultinj: inconclusive (g++ ASan false positive when an exception "
          "is thrown on a oneTBB coroutine stack, google/sanitizers#189): "
          "%s\n",
          inconclusive.c_str());
    if (failed.empty()) return capped_ ? 1 : 0;

    // Group the failures by how they failed and where the allocation was.
    std::sort(failed.begin(), failed.end(),
              [](const verdict* a, const verdict* b) {
                return std::make_pair(a->run.n == 0, a->run.n) <
                       std::make_pair(b->run.n == 0, b->run.n);
              });
    std::map<std::string, std::vector<const verdict*>> groups;
    std::vector<std::string> order;
    for (const verdict* v : failed) {
      std::string key = v->what + "\n" + v->site;
      if (groups.find(key) == groups.end()) order.push_back(key);
      groups[key].push_back(v);
    }
    for (const std::string& key : order) {
      const auto& vs = groups[key];
      std::string ns;
      std::string site_list;
      for (const verdict* v : vs) {
        if (v->run.n > 0)
          ns += (ns.empty() ? "N=" : ",") + std::to_string(v->run.n);
        else
          site_list += (site_list.empty() ? "site " : ",") + hex(v->run.site);
      }
      std::printf(
          "faultinj: FAIL %s%s%s: %s\n    injected at: %s\n", ns.c_str(),
          !ns.empty() && !site_list.empty() ? " " : "", site_list.c_str(),
          vs.front()->what.c_str(),
          vs.front()->site.empty() ? "(unknown)" : vs.front()->site.c_str());
    }
    std::printf("\nfaultinj: details of the first run of each kind:\n");
    for (const std::string& key : order) {
      const verdict* v = groups[key].front();
      std::printf("  %s:\n%s", label(v->run).c_str(),
                  excerpt(v->details, 60).c_str());
    }
    std::printf(
        "faultinj: replay one run in this process: errgroup_faultinj "
        "--scenario %s%s --one N | --site HASH (under gdb: break "
        "faultinj_injected)\n",
        faultinj::name(o_.workload),
        o_.mode == faultinj::mode::tbb_pool ? " --mode tbb" : "");
    return 1;
  }

  const options& o_;
  sigset_t sigchld_;
  sigset_t old_mask_;
  long new_blocks_allowed_ = -1;
  std::vector<child> running_;
  std::vector<verdict> results_;
  std::vector<std::uint64_t> unreached_;  // sites of the second pass
  bool capped_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  faultinj::select(o.workload);  // the children inherit it
  faultinj::warm_up();
  if (o.one >= 0 || o.one_site != 0) {
    faultinj::target t;
    t.kind = o.mode;
    t.nth = o.one_site != 0 ? 0 : o.one;
    t.site = o.one_site;
    const int status = run_one(t, -1, /*watch=*/false);
    std::printf("faultinj: %s: %s\n",
                o.one_site != 0 ? ("--site " + hex(o.one_site)).c_str()
                                : ("--one " + std::to_string(o.one)).c_str(),
                status == exit_clean              ? "clean"
                : status == exit_nothing_injected ? "clean, nothing injected"
                                                  : "FAIL");
    return status == exit_nothing_injected ? 0 : status;
  }
  return sweeper(o).run();
}
