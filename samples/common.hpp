// samples/common.hpp: what the samples share that is not about concurrency.
//
//   progress_line  a progress line on stdout while a job runs, if a terminal
//   temp_dir       a fresh temporary directory, removed with its contents
//   splitmix64     the pseudo-random bytes of the demo inputs (the same on
//                  every machine and compiler)
//   human(bytes)   "512 B", "2.0 KiB", "48.3 MiB"
#pragma once

#include <unistd.h>

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
#include <system_error>
#include <thread>
#include <utility>

// While a progress_line lives and stdout is a terminal, a thread rewrites one
// line of it every 100 ms with what status() returns (the samples build it
// from group::counters()), and erases it at the end. Off a terminal (CTest, a
// pipe, a file) it prints nothing, so the samples' output stays deterministic.
class progress_line {
 public:
  explicit progress_line(std::function<std::string()> status) {
    if (isatty(STDOUT_FILENO) == 0) return;
    thread_ = std::jthread([status = std::move(status)](std::stop_token stop) {
      std::mutex mu;
      std::condition_variable_any cv;
      std::unique_lock lock(mu);
      bool shown = false;
      while (!cv.wait_for(lock, stop, std::chrono::milliseconds(100), [] {
        return false;
      }) && !stop.stop_requested()) {
        std::printf("\r\033[K%s", status().c_str());
        std::fflush(stdout);
        shown = true;
      }
      if (shown) std::printf("\r\033[K");
      std::fflush(stdout);
    });
  }
  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

 private:
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
