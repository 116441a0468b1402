// samples/progress.hpp: the samples' progress line.
//
// While a progress_line lives and stdout is a terminal, a thread rewrites one
// line of it every 100 ms with what status() returns (the samples build it
// from group::counters()), and erases it at the end. Off a terminal (CTest, a
// pipe, a file) it prints nothing, so the samples' output stays deterministic.
#pragma once

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

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
