// samples/common.hpp: what the samples share that is not about concurrency.
//
//   progress_line  a progress line on stdout while a job runs, if a terminal,
//                  and println() for output while it runs
//   temp_dir       a fresh temporary directory, removed with its contents
//   splitmix64     the pseudo-random bytes of the demo inputs (the same on
//                  every machine and compiler)
//   human(bytes)   "512 B", "2.0 KiB", "48.3 MiB"
#pragma once

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
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

  // println(text) prints text and a newline to stdout (above the progress
  // line, if one is shown) and flushes. Safe from any thread.
  void println(std::string_view text) {
    const std::lock_guard lock(mu_);
    erase();
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
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
