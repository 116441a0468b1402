// samples/common.hpp: what the samples share that is not about concurrency.
//
//   progress_line  a progress line on stdout while a job runs, if a terminal,
//                  and println() for output while it runs
//   signal_guard   SIGINT, SIGTERM and SIGHUP as a stop request, so that a
//                  program can cancel its jobs and clean up
//   temp_dir       a fresh temporary directory, removed with its contents
//   splitmix64     the pseudo-random bytes of the demo inputs (the same on
//                  every machine and compiler)
//   human(bytes)   "512 B", "2.0 KiB", "48.3 MiB"
#pragma once

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

// While a progress_line lives and stdout is a terminal, a thread rewrites one
// line of it every 100 ms with what status() returns (the samples build it
// from group::counters()), cut to the terminal's width, and erases it at the
// end. Off a terminal (CTest, a pipe, a file) it prints nothing, so the
// samples' output stays deterministic. Output while it runs goes through
// println(), which prints above the progress line; stop() erases the line
// for good, before an error message goes to stderr.
class progress_line {
 public:
  explicit progress_line(std::function<std::string()> status) {
    if (isatty(STDOUT_FILENO) == 0) return;
    thread_ = std::jthread(
        [this, status = std::move(status)](const std::stop_token& stop) {
          std::mutex sleep_mu;
          std::condition_variable_any sleep;
          std::unique_lock sleeping(sleep_mu);
          for (;;) {
            sleep.wait_for(sleeping, stop, std::chrono::milliseconds(100),
                           [] { return false; });
            if (stop.stop_requested()) break;
            std::string line = status();
            winsize size{};
            if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 1)
              line.resize(std::min<std::size_t>(line.size(), size.ws_col - 1u));
            const std::lock_guard lock(mu_);
            std::printf("\r\033[K%s", line.c_str());
            std::fflush(stdout);
            shown_ = true;
          }
        });
  }
  ~progress_line() { stop(); }
  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

  // println(text[, to]) prints text and a newline to stdout, or to `to`
  // (above the progress line, if one is shown) and flushes. Safe from any
  // thread.
  void println(std::string_view text, std::FILE* to = stdout) {
    const std::lock_guard lock(mu_);
    erase();
    std::fwrite(text.data(), 1, text.size(), to);
    std::fputc('\n', to);
    std::fflush(to);
  }

  // stop() ends the updates and erases the line; the destructor does too.
  void stop() {
    if (!thread_.joinable()) return;
    thread_.request_stop();
    thread_.join();
    const std::lock_guard lock(mu_);
    erase();
    std::fflush(stdout);
  }

 private:
  void erase() {  // under mu_
    if (shown_) std::fputs("\r\033[K", stdout);
    shown_ = false;
  }

  std::mutex mu_;
  bool shown_ = false;  // guarded by mu_
  std::jthread thread_;
};

// signal_guard turns SIGINT, SIGTERM and SIGHUP into a cancellation, so that
// a program stops its jobs through their context and cleans up (temporary
// files, half-written outputs) instead of dying in the middle. It blocks the
// three signals in the calling thread, and so in every thread started later
// (make it first thing in main, before any thread), and its own thread waits
// for them (signalfd) and requests stop on token(): a std::stop_callback on
// that cancels the program's context. At the end, reraise() makes the
// process die of the signal, as if it had not been handled, so that the
// shell sees it. A second signal, half a second or more after the first,
// ends the process at once (an earlier one is the same request delivered
// twice, as timeout(1) does).
class signal_guard {
 public:
  signal_guard() {
    sigemptyset(&set_);
    for (const int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, sig);
    if (const int rc = pthread_sigmask(SIG_BLOCK, &set_, nullptr); rc != 0)
      throw std::system_error(rc, std::generic_category(), "pthread_sigmask");
    signals_ = ::signalfd(-1, &set_, SFD_CLOEXEC);
    wake_ = ::eventfd(0, EFD_CLOEXEC);
    if (signals_ < 0 || wake_ < 0)
      throw std::system_error(errno, std::generic_category(), "signalfd");
    thread_ = std::jthread([this](const std::stop_token& stop) {
      const std::stop_callback wake(stop, [this] {
        const std::uint64_t one = 1;
        if (::write(wake_, &one, sizeof one) < 0) {
        }  // cannot fail: the counter is far from its maximum
      });
      for (;;) {
        pollfd fds[2] = {{signals_, POLLIN, 0}, {wake_, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
        if (fds[1].revents != 0) return;
        signalfd_siginfo info{};
        if (::read(signals_, &info, sizeof info) != sizeof info) continue;
        const int sig = static_cast<int>(info.ssi_signo);
        const auto now = std::chrono::steady_clock::now();
        if (caught_.exchange(sig) == 0) {
          first_ = now;
          source_.request_stop();
        } else if (now - first_ >= std::chrono::milliseconds(500)) {
          std::_Exit(128 + sig);  // asked twice: no more cleaning up
        }
        // Else the same request delivered twice: timeout(1) signals its
        // child and then the child's process group, so the child often
        // reads two SIGINTs microseconds apart.
      }
    });
  }
  ~signal_guard() {
    thread_ = {};  // requests stop and joins
    ::close(signals_);
    ::close(wake_);
  }
  signal_guard(const signal_guard&) = delete;
  signal_guard& operator=(const signal_guard&) = delete;

  // token() is stopped when one of the signals arrives.
  std::stop_token token() const noexcept { return source_.get_token(); }
  // caught() is the signal that arrived, or 0.
  int caught() const noexcept { return caught_.load(); }

  // reraise() ends the process by the signal that arrived, if one did;
  // otherwise it returns.
  void reraise() {
    const int sig = caught_.load();
    if (sig == 0) return;
    thread_ = {};
    std::signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, nullptr);  // delivered here, now
    std::raise(sig);
    std::_Exit(128 + sig);  // not reached
  }

 private:
  sigset_t set_{};
  int signals_ = -1;
  int wake_ = -1;
  std::chrono::steady_clock::time_point first_;  // the signal thread's
  std::atomic<int> caught_{0};
  std::stop_source source_;
  std::jthread thread_;
};

// temp_dir makes a new directory under the system's temporary directory
// (mkdtemp) and removes it, with everything in it, when destroyed.
class temp_dir {
 public:
  explicit temp_dir(const std::string& prefix) {
    std::string name =
        (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX"))
            .string();
    if (mkdtemp(name.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), name);
    path_ = name;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// splitmix64 returns a new pseudo-random number on each call.
class splitmix64 {
 public:
  explicit splitmix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t operator()() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

inline std::string human(double bytes) {
  char buf[32];
  if (bytes < 1024)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else if (bytes < 1 << 20)
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024);
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1 << 20));
  return buf;
}
