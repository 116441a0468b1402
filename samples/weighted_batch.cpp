// samples/weighted_batch.cpp: gzip files of very different sizes at once,
// under a memory budget shared by the jobs (errgroup::weighted).
//
// A job reads its file whole and compresses it in one call (zlib), so it needs
// about twice the file's size: the input, the output buffer (deflateBound)
// and zlib's own state. That estimate is the job's weight, in KiB, and
// g.go(budget, weight, f) starts the job only when that much of the budget
// is free, and gives it back when the job ends, also when it fails. Big jobs
// go first (they are the hardest to fit), strictly first come, first served,
// so a big job is never starved by small ones. The group's limit (one task
// per core) keeps jobs from holding budget while they wait for a thread. The
// first error (an unreadable file, an unwritable output) cancels the jobs that
// have not started yet (the group is a context group); they never run.
//
// Outputs are written whole or not at all: into a temporary file next to
// NAME.gz, fsync, then rename. A job that fails (a full disk, an output that
// cannot be written) or is cancelled removes its temporary file, so no
// truncated NAME.gz is ever left; the outputs finished before stay. Over a
// file size limit (ulimit -f) the write fails with "File too large": the
// sample ignores SIGXFSZ, which would kill it otherwise. SIGINT, SIGTERM and
// SIGHUP cancel the group's context (signal_guard in common.hpp): jobs not
// started never run, running ones stop at their next 1 MiB step and clean
// up, and then the process dies of the signal. On a terminal a progress line
// shows the jobs done, running and waiting, and the memory in use.
//
// While jobs run, each adds its weight to a counter of the memory in use and
// takes it off before it returns: the peak of that counter is printed, and
// the sample fails if it ever goes above the budget. A job heavier than the
// whole budget is refused before anything starts.
//
// With no PATH it makes a demo set in a temporary directory: eight files of
// generated log text from 2 KiB to 24 MiB. Exit status: 0 done, 1 a job
// failed, 2 bad arguments (also: a job that can never fit the budget).
//
// Examples, checked by ctest:
//   $ weighted_batch
//   access.log     8.0 MiB ->   1.3 MiB  weight  16.3 MiB
//   app.log        1.0 MiB -> 169.0 KiB  weight   2.3 MiB
//   dump.log      24.0 MiB ->   4.0 MiB  weight  48.3 MiB
//   events.log    16.0 MiB ->   2.6 MiB  weight  32.3 MiB
//   metrics.csv    4.0 MiB -> 674.6 KiB  weight   8.3 MiB
//   notes.txt     32.0 KiB ->   5.6 KiB  weight 329.0 KiB
//   page.html    256.0 KiB ->  42.6 KiB  weight 777.0 KiB
//   readme.txt     2.0 KiB ->     503 B  weight 269.0 KiB
//   8 files, 53.3 MiB -> 8.8 MiB (16.5%) in ... s
//   budget 64 MiB: peak in use ... MiB, never above it
//
// Your own files, written as NAME.gz:
//   $ seq 1 200000 > numbers.txt && head -c 3000000 /dev/zero > zeros.bin
//   $ weighted_batch --budget 8 --out gz numbers.txt zeros.bin
//   numbers.txt    1.2 MiB -> 414.8 KiB  weight   2.7 MiB
//   zeros.bin      2.9 MiB ->   2.9 KiB  weight   6.0 MiB
//   2 files, 4.1 MiB -> 417.7 KiB (10.0%) in ... s
//   budget 8 MiB: peak in use 6.0 MiB, never above it
//   $ gzip -dc gz/numbers.txt.gz | cmp - numbers.txt && echo same
//   same
//
// A job that can never fit is refused before anything starts:
//   $ weighted_batch --budget 16
//   weighted_batch: dump.log needs 48.3 MiB, more than the --budget of 16 MiB
//   [exit 2]
//
// A job that fails fails the batch (jobs not started by then never run):
//   $ mkdir -p gz/zeros.bin.gz && head -c 3000000 /dev/zero > zeros.bin
//   $ weighted_batch --out gz zeros.bin
//   weighted_batch: gz/zeros.bin.gz: Is a directory
//   [exit 1]
//   $ ls -A gz
//   zeros.bin.gz
//
// A full disk fails the job that hits it and leaves no partial output (here
// a file size limit stands in for it: ulimit -f, in KiB):
//   $ seq 1 200000 > numbers.txt
//   $ ulimit -f 64 && weighted_batch --out gz numbers.txt
//   weighted_batch: gz/numbers.txt.gz: File too large
//   [exit 1]
//   $ ls -A gz
//
// So does an interrupt, whenever it comes: the outputs there are are whole,
// and no temporary file is left:
//   $ seq 1 3000000 > a.txt && for i in 1 2 3; do cp a.txt $i.txt; done
//   $ timeout -s INT 0.5 weighted_batch -b 256 -o gz ?.txt &>/dev/null; true
//   $ find gz -name '.*'
//   $ shopt -s nullglob; for f in gz/*; do gzip -t $f || echo $f damaged; done
//
// Bad arguments get one line and exit status 2:
//   $ weighted_batch no/such/file
//   weighted_batch: path: Path does not exist: no/such/file
//   [exit 2]
//   $ weighted_batch --level 10
//   weighted_batch: --level: Value 10 not in range 1 to 9
//   [exit 2]
//   $ weighted_batch --help | head -n 1
//   Compress files with gzip, several at once, under a memory budget: ...
#define ZLIB_CONST
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <errgroup/errgroup.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common.hpp"

namespace fs = std::filesystem;

namespace {

struct job {
  fs::path path;
  std::string name;  // as printed
  std::uintmax_t size = 0;
  std::int64_t weight = 0;  // KiB of memory, estimated
  std::size_t packed = 0;   // compressed size
};

// What one job holds at most, in KiB: the file, zlib's output buffer and
// zlib's state (2^17 for the window and 2^17 for the hash chains, plus a few
// KiB, at windowBits 15 and memLevel 8).
std::int64_t estimate_kib(std::uintmax_t size) {
  const std::uintmax_t bytes = size + compressBound(size) + 18 + (264 << 10);
  return static_cast<std::int64_t>((bytes + 1023) / 1024);
}

std::string read_file(const fs::path& path, std::uintmax_t size) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(
      std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw std::system_error(errno, std::generic_category(), path);
  std::string data(size, '\0');
  data.resize(std::fread(data.data(), 1, size, f.get()));
  if (std::ferror(f.get()) != 0)
    throw std::system_error(errno, std::generic_category(), path);
  return data;
}

void write_file(const fs::path& path, const std::string& data) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(
      std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f || std::fwrite(data.data(), 1, data.size(), f.get()) != data.size() ||
      std::fclose(f.release()) != 0)
    throw std::system_error(errno, std::generic_category(), path);
}

// write_output(path, data, ctx) writes data to path so that path is either
// whole or not there at all: into a temporary file next to it (.NAME.tmp.*),
// fsync, then rename over path. On every failure, and when ctx is cancelled
// before the rename, the temporary file is removed. Errors name path.
void write_output(const fs::path& path, const std::string& data,
                  const errgroup::context& ctx) {
  static std::atomic<unsigned> serial{0};
  const auto fail = [&path] {
    throw std::system_error(errno, std::generic_category(), path.string());
  };
  struct temp_file {
    fs::path path;
    int fd = -1;
    bool renamed = false;
    ~temp_file() {
      if (fd >= 0) ::close(fd);
      if (fd != -2 && !renamed) ::unlink(path.c_str());
    }
  } tmp;
  do {  // a fresh name, in case one is left from a process that was killed
    tmp.path = path.parent_path() /
               ("." + path.filename().string() + ".tmp." +
                std::to_string(::getpid()) + "." + std::to_string(serial++));
    tmp.fd =
        ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  } while (tmp.fd < 0 && errno == EEXIST);
  if (tmp.fd < 0) {
    tmp.fd = -2;  // nothing to remove
    fail();
  }
  for (std::size_t done = 0; done < data.size();) {
    ctx.err().throw_if();
    const ::ssize_t n =
        ::write(tmp.fd, data.data() + done,
                std::min<std::size_t>(data.size() - done, 1 << 20));
    if (n < 0 && errno != EINTR) fail();  // ENOSPC, EFBIG (SIGXFSZ ignored)
    if (n > 0) done += static_cast<std::size_t>(n);
  }
  if (::fsync(tmp.fd) != 0 || ::close(std::exchange(tmp.fd, -1)) != 0) fail();
  ctx.err().throw_if();  // the last chance to give up
  if (::rename(tmp.path.c_str(), path.c_str()) != 0) fail();
  tmp.renamed = true;
}

// gzip(in, level, ctx) returns `in` compressed in gzip format; it gives up
// (throws ctx's error) between 1 MiB steps once ctx is cancelled.
std::string gzip(const std::string& in, int level,
                 const errgroup::context& ctx) {
  z_stream s{};
  if (deflateInit2(&s, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    throw std::bad_alloc();
  std::unique_ptr<z_stream, int (*)(z_stream*)> end(&s, &deflateEnd);
  std::string out(deflateBound(&s, in.size()), '\0');
  constexpr std::size_t in_step = std::size_t{1} << 20;
  constexpr std::size_t out_step = std::size_t{1} << 30;  // avail_out: 32 bits
  int rc = Z_OK;
  while (rc == Z_OK) {
    ctx.err().throw_if();
    const std::size_t in_left = in.size() - s.total_in;
    s.next_in = reinterpret_cast<const Bytef*>(in.data()) + s.total_in;
    s.avail_in = static_cast<uInt>(std::min(in_left, in_step));
    s.next_out = reinterpret_cast<Bytef*>(out.data()) + s.total_out;
    s.avail_out =
        static_cast<uInt>(std::min(out.size() - s.total_out, out_step));
    rc = deflate(&s, s.avail_in == in_left ? Z_FINISH : Z_NO_FLUSH);
  }
  if (rc != Z_STREAM_END)
    throw std::runtime_error(std::string("zlib: ") +
                             (s.msg != nullptr ? s.msg : "deflate failed"));
  out.resize(s.total_out);
  return out;
}

// write_demo_set(dir) writes the demo set: generated log lines.
void write_demo_set(const fs::path& dir) {
  struct file {
    const char* name;
    std::size_t size;
  };
  constexpr file files[] = {
      {"readme.txt", 2 << 10},  {"notes.txt", 32 << 10},
      {"page.html", 256 << 10}, {"app.log", 1 << 20},
      {"metrics.csv", 4 << 20}, {"access.log", 8 << 20},
      {"events.log", 16 << 20}, {"dump.log", 24 << 20},
  };
  static const char* const levels[] = {"INFO", "INFO", "INFO", "WARN", "DEBUG"};
  static const char* const events[] = {"GET /index.html",   "GET /api/v1/items",
                                       "POST /login",       "cache miss",
                                       "retrying upstream", "job finished"};
  std::uint64_t seed = 1;
  for (const file& f : files) {
    splitmix64 next(seed++);
    std::string text;
    text.reserve(f.size + 128);
    char line[128];
    for (std::uint64_t t = 0; text.size() < f.size; t += 1 + next() % 3) {
      // One call of next() per statement: the order in which arguments are
      // evaluated is not fixed, and the text must not depend on the compiler.
      const auto sec = static_cast<unsigned>(t % 86400);
      const char* const level = levels[next() % 5];
      const char* const event = events[next() % 6];
      const auto user = static_cast<unsigned>(next() % 5000);
      const auto ms = static_cast<unsigned>(next() % 900);
      const int n = std::snprintf(
          line, sizeof line, "2024-05-01T%02u:%02u:%02u %-5s %s user=%u %ums\n",
          sec / 3600, sec / 60 % 60, sec % 60, level, event, user, ms);
      text.append(line, static_cast<std::size_t>(n));
    }
    text.resize(f.size);
    write_file(dir / f.name, text);
  }
}

}  // namespace

int run(int argc, char** argv, signal_guard& interrupt) {
  CLI::App app{
      "Compress files with gzip, several at once, under a memory budget: each "
      "job waits until its estimated memory fits."};
  std::vector<std::string> inputs;
  int budget_mib = 64;
  int level = 6;
  std::string out_dir;
  app.add_option("path", inputs,
                 "Files, or directories to take every file under (default: a "
                 "generated demo set)")
      ->check(CLI::ExistingPath);
  app.add_option("-b,--budget", budget_mib, "Memory budget in MiB")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("-l,--level", level, "zlib compression level")
      ->check(CLI::Range(1, 9))
      ->capture_default_str();
  app.add_option("-o,--out", out_dir,
                 "Write NAME.gz files here (default: only report the sizes)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "weighted_batch: " << e.what() << '\n';
    return 2;
  }

  std::optional<temp_dir> demo;
  std::vector<job> jobs;
  std::map<std::string, fs::path> names;  // output names must be unique
  try {
    if (inputs.empty()) {
      demo.emplace("weighted_batch");
      write_demo_set(demo->path());
      inputs.push_back(demo->path());
    }
    for (const std::string& input : inputs) {
      std::vector<fs::path> files;
      if (fs::is_directory(input)) {
        for (const auto& entry : fs::recursive_directory_iterator(input))
          if (entry.is_regular_file()) files.push_back(entry.path());
      } else {
        files.emplace_back(input);
      }
      for (const fs::path& file : files) {
        job j{.path = file, .name = (demo ? file.filename() : file).string()};
        j.size = fs::file_size(file);
        j.weight = estimate_kib(j.size);
        auto [it, fresh] = names.emplace(file.filename(), file);
        if (!fresh && !out_dir.empty()) {
          std::cerr << "weighted_batch: " << it->second.string() << " and "
                    << file.string() << " would both be written to "
                    << (fs::path(out_dir) / file.filename()).string()
                    << ".gz\n";
          return 2;
        }
        jobs.push_back(std::move(j));
      }
    }
    if (!out_dir.empty()) fs::create_directories(out_dir);
  } catch (const fs::filesystem_error& e) {
    std::cerr << "weighted_batch: " << e.path1().string() << ": "
              << e.code().message() << '\n';
    return 2;
  }

  const std::int64_t budget_kib = std::int64_t{budget_mib} * 1024;
  std::sort(jobs.begin(), jobs.end(), [](const job& a, const job& b) {
    return a.weight != b.weight ? a.weight > b.weight : a.name < b.name;
  });
  if (!jobs.empty() && jobs.front().weight > budget_kib) {
    std::cerr << "weighted_batch: " << jobs.front().name << " needs "
              << human(double(jobs.front().weight) * 1024)
              << ", more than the --budget of " << budget_mib << " MiB\n";
    return 2;
  }

  const auto began = std::chrono::steady_clock::now();
  errgroup::weighted budget{budget_kib};
  std::atomic<std::int64_t> in_use{0};
  std::atomic<std::int64_t> peak{0};
  // A signal cancels the batch: jobs not started never run, running ones
  // stop at their next step and remove their temporary files.
  const errgroup::context_and_cancel batch =
      errgroup::with_cancel(errgroup::context());
  const std::stop_callback on_signal(interrupt.token(),
                                     [&batch] { batch.cancel(); });
  errgroup::group g{batch.ctx};  // a context group
  g.set_limit(errgroup::scheduler::default_scheduler().max_concurrency());
  {
    progress_line progress([&] {
      const auto s = g.counters();
      return std::to_string(s.succeeded) + " of " +
             std::to_string(jobs.size()) + " files, " +
             std::to_string(s.running) + " running, " +
             std::to_string(s.waiting) + " waiting; " +
             human(double(in_use.load()) * 1024) + " of " +
             std::to_string(budget_mib) + " MiB in use";
    });
    for (job& j : jobs) {
      g.go(budget, j.weight,
           [&j, &in_use, &peak, &out_dir, level](const errgroup::context& ctx) {
             const std::int64_t now = in_use += j.weight;
             for (std::int64_t p = peak;
                  p < now && !peak.compare_exchange_weak(p, now);) {
             }
             struct done {
               std::atomic<std::int64_t>& in_use;
               std::int64_t weight;
               ~done() { in_use -= weight; }
             } leave{in_use, j.weight};

             const std::string data = read_file(j.path, j.size);
             const std::string packed = gzip(data, level, ctx);
             j.packed = packed.size();
             if (!out_dir.empty())
               write_output(
                   fs::path(out_dir) / (j.path.filename().string() + ".gz"),
                   packed, ctx);
           });
    }
    const errgroup::error err = g.wait();
    progress.stop();
    if (interrupt.caught() != 0) {
      std::cerr << "weighted_batch: interrupted; no output is half-written\n";
      return 1;  // main() then dies of the signal
    }
    if (err) {
      std::cerr << "weighted_batch: " << err.message() << '\n';
      return 1;
    }
  }
  const std::chrono::duration<double> took =
      std::chrono::steady_clock::now() - began;

  std::sort(jobs.begin(), jobs.end(),
            [](const job& a, const job& b) { return a.name < b.name; });
  double total_in = 0;
  double total_out = 0;
  for (const job& j : jobs) {
    char line[256];
    std::snprintf(line, sizeof line, "%-12s %9s -> %9s  weight %9s",
                  j.name.c_str(), human(double(j.size)).c_str(),
                  human(double(j.packed)).c_str(),
                  human(double(j.weight) * 1024).c_str());
    std::cout << line << '\n';
    total_in += double(j.size);
    total_out += double(j.packed);
  }
  char line[256];
  std::snprintf(line, sizeof line, "%zu file%s, %s -> %s (%.1f%%) in %.2f s",
                jobs.size(), jobs.size() == 1 ? "" : "s",
                human(total_in).c_str(), human(total_out).c_str(),
                total_in > 0 ? 100 * total_out / total_in : 0.0, took.count());
  std::cout << line << '\n';
  if (peak.load() > budget_kib) {
    std::cerr << "weighted_batch: the budget was exceeded\n";
    return 1;
  }
  std::cout << "budget " << budget_mib << " MiB: peak in use "
            << human(double(peak.load()) * 1024) << ", never above it\n";
  return 0;
}

int main(int argc, char** argv) {
  signal_guard interrupt;  // first: every thread inherits its signal mask
  std::signal(SIGXFSZ, SIG_IGN);  // over a file size limit: EFBIG, not death
  const int status = run(argc, argv, interrupt);
  interrupt.reraise();  // after run()'s cleanup: the demo set is gone too
  return status;
}
