// samples/quorum.cpp: write a blob to N replica directories and succeed as
// soon as K of them hold it (errgroup::quorum); cancel the stragglers, and
// fail at once, with every error, when K can no longer be reached.
//
// Each replica is written safely: into a temporary file in the replica's
// directory, fsync, then rename over the final name and fsync the directory,
// so the blob is either there whole or not at all. A write that is cancelled
// or fails removes its temporary file: no partial file is left behind.
// errgroup::quorum(ctx, n, k, f) runs the n writes at once and returns when k
// succeeded or when more than n - k failed: with 3 of 5 needed it fails at
// the third failure, waiting neither for a fourth nor for the slow replicas.
// Either way it cancels the writes still running and waits for them to clean
// up.
//
// The writes block in write() and fsync(), so they run on a scheduler of
// their own with a thread per replica, up to 64 (errgroup::scheduler io{n}),
// not on the default one, whose threads are for CPU work.
//
// --slow I=SECONDS makes replica I wait that long after writing its data and
// before its fsync, as a slow disk would (it stops waiting when cancelled).
// With no DIR it writes to five replicas in a temporary directory, two of
// them slow. Exit status: 0 quorum reached, 1 quorum failed, 2 bad arguments.
//
// Examples, checked by ctest:
//   $ quorum
//   r0: written
//   r1: written
//   r2: written
//   r3: cancelled
//   r4: cancelled
//   quorum reached: 3 of 5 hold blob, in ... s
//
// Two slow replicas: the quorum is reached without them, and they leave
// nothing behind:
//   $ mkdir r0 r1 r2 r3 r4
//   $ quorum --slow 3=60 --slow 4=60 r0 r1 r2 r3 r4
//   r0: written
//   r1: written
//   r2: written
//   r3: cancelled
//   r4: cancelled
//   quorum reached: 3 of 5 hold blob, in ... s
//   $ find . -type f | sort
//   ./r0/blob
//   ./r1/blob
//   ./r2/blob
//   $ cmp r0/blob r2/blob && echo same
//   same
//
// Three broken replicas (missing, or not a directory): with 3 of 5 needed,
// the third failure decides, and the slow ones are cancelled:
//   $ mkdir r0 r4 && touch r2
//   $ quorum --slow 0=60 --slow 4=60 r0 r1 r2 r3 r4
//   r0: cancelled
//   r1: No such file or directory
//   r2: Not a directory
//   r3: No such file or directory
//   r4: cancelled
//   quorum: 0 of 5 succeeded, 3 needed
//   [exit 1]
//   $ find . -type f | sort
//   ./r2
//
// Bad arguments get one line and exit status 2:
//   $ quorum --quorum 4 r0 r1 r2
//   quorum: --quorum 4 is more than the 3 replicas
//   [exit 2]
//   $ quorum --slow 3:5 r0 r1 r2
//   quorum: --slow 3:5: not REPLICA=SECONDS with REPLICA in 0..2
//   [exit 2]
//   $ quorum --help | head -n 1
//   Write a blob to every replica directory; succeed once --quorum of them ...
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <errgroup/errgroup.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common.hpp"

namespace fs = std::filesystem;
using seconds = std::chrono::duration<double>;

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

struct replica {
  fs::path dir;
  std::string label;  // as printed
  seconds delay{0};   // --slow
};

// write_replica(ctx, r, i, name, blob) writes blob to r.dir/name by way of a
// temporary file, as the top comment says. Throws std::system_error naming
// r.label on failure, and ctx.err() when ctx is cancelled before the rename;
// either way the temporary file is gone.
void write_replica(const errgroup::context& ctx, const replica& r,
                   std::size_t i, const std::string& name,
                   const std::string& blob) {
  const std::string& dir = r.label;
  const fs::path tmp =
      r.dir / ("." + name + ".tmp." + std::to_string(getpid()) + "." +
               std::to_string(i));
  struct temp_file {
    const fs::path& path;
    int fd;
    bool renamed = false;
    ~temp_file() {
      if (fd >= 0) ::close(fd);
      if (!renamed) ::unlink(path.c_str());
    }
  } file{tmp,
         ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)};
  if (file.fd < 0) {
    file.renamed = true;  // there is nothing to remove
    fail(dir);
  }
  for (std::size_t done = 0; done < blob.size();) {
    ctx.err().throw_if();
    const ::ssize_t n =
        ::write(file.fd, blob.data() + done,
                std::min<std::size_t>(blob.size() - done, 1 << 20));
    if (n < 0 && errno != EINTR) fail(dir);
    if (n > 0) done += static_cast<std::size_t>(n);
  }
  if (r.delay > seconds::zero()) ctx.wait_for(r.delay);  // a slow disk
  ctx.err().throw_if();
  if (::fsync(file.fd) != 0 || ::close(std::exchange(file.fd, -1)) != 0)
    fail(dir);
  ctx.err().throw_if();  // the last chance to give up: then the blob is there
  if (::rename(tmp.c_str(), (r.dir / name).c_str()) != 0) fail(dir);
  file.renamed = true;
  // fsync the directory too, which makes the rename durable.
  const int d = ::open(r.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = d >= 0 && ::fsync(d) == 0;
  const int saved = errno;
  if (d >= 0) ::close(d);
  errno = saved;
  if (!synced) fail(dir);
}

// A blob of pseudo-random bytes, the same on every machine.
std::string demo_blob(std::size_t size) {
  std::string blob(size, '\0');
  splitmix64 next(42);
  for (char& c : blob) c = static_cast<char>(next() & 0xff);
  return blob;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a blob to every replica directory; succeed once --quorum of "
      "them hold it, fail as soon as that is out of reach."};
  std::vector<std::string> dirs;
  std::size_t k = 0;
  std::string input;
  std::string name = "blob";
  std::vector<std::string> slow_args;
  app.add_option("dir", dirs,
                 "Replica directories (default: 5 in a temporary directory, "
                 "replicas 3 and 4 slow)");
  app.add_option("-k,--quorum", k, "Replicas needed (default: a majority)");
  app.add_option("-i,--input", input, "File to write (default: 1 MiB of data)")
      ->check(CLI::ExistingFile);
  app.add_option("-n,--name", name, "File name in each replica")
      ->capture_default_str();
  app.add_option("--slow", slow_args, "REPLICA=SECONDS: make a replica slow")
      ->allow_extra_args(false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "quorum: " << e.what() << '\n';
    return 2;
  }

  // With no DIR: the demo's replicas, in a temporary directory.
  std::optional<temp_dir> demo;
  if (dirs.empty()) {
    demo.emplace("quorum");
    for (const char* r : {"r0", "r1", "r2", "r3", "r4"}) dirs.push_back(r);
    if (slow_args.empty()) slow_args = {"3=5", "4=5"};
  }
  const std::size_t n = dirs.size();
  std::vector<replica> replicas;
  for (const std::string& dir : dirs)
    replicas.push_back({demo ? demo->path() / dir : fs::path(dir), dir});
  if (k == 0) k = n / 2 + 1;
  if (k > n) {
    std::cerr << "quorum: --quorum " << k << " is more than the " << n
              << " replicas\n";
    return 2;
  }
  for (const std::string& arg : slow_args) {
    std::size_t i = 0;
    double s = 0;
    const char* end = arg.data() + arg.size();
    std::from_chars_result r = std::from_chars(arg.data(), end, i);
    if (r.ec == std::errc() && r.ptr != end && *r.ptr == '=')
      r = std::from_chars(r.ptr + 1, end, s);
    if (r.ec != std::errc() || r.ptr != end || i >= n || s < 0) {
      std::cerr << "quorum: --slow " << arg << ": not REPLICA=SECONDS with "
                << "REPLICA in 0.." << n - 1 << '\n';
      return 2;
    }
    replicas[i].delay = seconds(s);
  }
  std::string blob = demo_blob(1 << 20);
  if (!input.empty()) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(
        std::fopen(input.c_str(), "rb"), &std::fclose);
    blob.resize(fs::file_size(input));
    if (!f || std::fread(blob.data(), 1, blob.size(), f.get()) != blob.size()) {
      std::cerr << "quorum: " << input << ": cannot read\n";
      return 2;
    }
  }
  if (demo) {
    for (const replica& r : replicas) fs::create_directories(r.dir);
  }

  // Each write records how it ended in its own slot: written, failed (with
  // its error), or cancelled (also when it never started).
  std::vector<std::string> outcome(n, "cancelled");
  std::atomic<std::size_t> written{0};
  std::atomic<std::size_t> failed{0};
  std::optional<progress_line> progress;
  progress.emplace([&] {  // quorum() keeps its group to itself: own counts
    return std::to_string(written.load()) + " written of the " +
           std::to_string(k) + " needed, " + std::to_string(failed.load()) +
           " failed (" + std::to_string(n - k + 1) + " would fail the quorum)";
  });
  const auto began = std::chrono::steady_clock::now();
  errgroup::scheduler io{static_cast<int>(std::min<std::size_t>(n, 64))};
  auto result = errgroup::quorum(
      errgroup::context(), n, k,
      [&](const errgroup::context& ctx, std::size_t i) {
        try {
          write_replica(ctx, replicas[i], i, name, blob);
          outcome[i] = "written";
          ++written;
        } catch (...) {
          errgroup::error e(std::current_exception());
          if (!e.is<errgroup::cancelled_error>()) {
            outcome[i] = e.message();
            ++failed;
          }
          throw;
        }
      },
      io);
  const seconds took = std::chrono::steady_clock::now() - began;
  progress.reset();

  for (std::size_t i = 0; i < n; ++i) {
    const std::string& label = replicas[i].label;
    if (outcome[i].starts_with(label + ": "))
      std::cout << outcome[i] << '\n';  // an error that names the replica
    else
      std::cout << label << ": " << outcome[i] << '\n';
  }
  if (result.err) {
    std::cerr << result.err.message() << '\n';  // "quorum: 1 of 5 succeeded..."
    return 1;
  }
  std::printf("quorum reached: %zu of %zu hold %s, in %.2f s\n",
              result.successes.size(), n, name.c_str(), took.count());
}
