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
// The replica lines and the final count are taken when every write has
// returned, so they are what the directories hold when the program exits: a
// write that was past its last look at the context when the outcome was
// decided still puts its blob in place, and counts ("quorum reached: 503 of
// 1000 hold blob, 501 needed"). A replica that did not get the blob but has
// one from before says so. SIGINT, SIGTERM and SIGHUP cancel the writes
// (signal_guard in common.hpp), which clean up; then the process dies of the
// signal.
//
// Examples, checked by ctest:
//   $ quorum
//   r0: written
//   r1: written
//   r2: written
//   r3: cancelled
//   r4: cancelled
//   quorum reached: 3 of 5 hold blob, 3 needed, in ... s
//
// Two slow replicas: the quorum is reached without them, and they leave
// nothing behind; written again, with other replicas slow, the lines still
// say what each directory holds:
//   $ mkdir r0 r1 r2 r3 r4
//   $ quorum --slow 3=60 --slow 4=60 r0 r1 r2 r3 r4
//   r0: written
//   r1: written
//   r2: written
//   r3: cancelled
//   r4: cancelled
//   quorum reached: 3 of 5 hold blob, 3 needed, in ... s
//   $ find . -type f | sort
//   ./r0/blob
//   ./r1/blob
//   ./r2/blob
//   $ cmp r0/blob r2/blob && echo same
//   same
//   $ quorum --slow 0=60 --slow 1=60 r0 r1 r2 r3 r4
//   r0: cancelled (an older blob is there)
//   r1: cancelled (an older blob is there)
//   r2: written
//   r3: written
//   r4: written
//   quorum reached: 3 of 5 hold blob, 3 needed, in ... s
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
//   quorum failed: 0 of 5 hold blob, 3 needed, in ... s
//   [exit 1]
//   $ find . -type f | sort
//   ./r2
//
// Many replicas: more than K may finish, and the count is theirs; the lines
// that say "written", the count and the blobs on disk agree (N stands for
// the count printed):
//   $ mkdir $(seq -f r%g 0 199) && seq 1 1000 >data
//   $ quorum -i data -k 101 r* >out
//   $ find -name blob | wc -l >n && grep -c ': written$' out | cmp - n
//   $ tail -n 1 out | sed "s/ $(cat n) of / N of /"
//   quorum reached: N of 200 hold blob, 101 needed, in ... s
// and so they do when the quorum fails (half the replicas are missing):
//   $ mkdir $(seq -f r%g 0 2 199) && seq 1 1000 >data
//   $ quorum -i data -k 150 $(seq -f r%g 0 199) >out 2>&1
//   [exit 1]
//   $ find -name blob | wc -l >n && grep -c ': written$' out | cmp - n
//   $ tail -n 1 out | sed "s/ $(cat n) of / N of /"
//   quorum failed: N of 200 hold blob, 150 needed, in ... s
//
// An interrupt cancels the writes; they leave nothing behind (it prints
// "r0: cancelled" and "quorum: interrupted; 0 of 1 hold blob, 1 needed").
// The check is on the disk only. timeout(1) sends SIGINT to the child and
// then to its process group, so it often arrives twice at once; it used to
// count as a second signal, which ends the process without cleaning up
// (signal_guard now waits 0.5 s before it takes a second one as such):
//   $ mkdir r0 && timeout -s INT 2 quorum --slow 0=60 -k 1 r0 &>/dev/null; true
//   $ find . -type f
//
// Bad arguments get one line and exit status 2:
//   $ quorum --quorum 4 r0 r1 r2
//   quorum: --quorum 4 is not in 1..3 (3 replicas)
//   [exit 2]
//   $ quorum -k 0 r0 r1 r2
//   quorum: --quorum 0 is not in 1..3 (3 replicas)
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
#include <stop_token>
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
  const fs::path blob_path = r.dir / name;
  if (::rename(tmp.c_str(), blob_path.c_str()) != 0) fail(dir);
  file.renamed = true;
  // fsync the directory too, which makes the rename durable. If that fails
  // the write failed: the blob goes, so that the replica's line (an error)
  // and its directory agree.
  const int d = ::open(r.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = d >= 0 && ::fsync(d) == 0;
  const int saved = errno;
  if (d >= 0) ::close(d);
  if (!synced) {
    ::unlink(blob_path.c_str());
    errno = saved;
    fail(dir);
  }
}

// A blob of pseudo-random bytes, the same on every machine.
std::string demo_blob(std::size_t size) {
  std::string blob(size, '\0');
  splitmix64 next(42);
  for (char& c : blob) c = static_cast<char>(next() & 0xff);
  return blob;
}

}  // namespace

int run(int argc, char** argv, signal_guard& interrupt) {
  CLI::App app{
      "Write a blob to every replica directory; succeed once --quorum of "
      "them hold it, fail as soon as that is out of reach."};
  std::vector<std::string> dirs;
  long long k = 0;
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
  if (app.count("--quorum") == 0) k = static_cast<long long>(n / 2 + 1);
  if (k < 1 || static_cast<std::size_t>(k) > n) {
    std::cerr << "quorum: --quorum " << k << " is not in 1.." << n << " (" << n
              << (n == 1 ? " replica" : " replicas") << ")\n";
    return 2;
  }
  const auto needed = static_cast<std::size_t>(k);
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
  // its error), or cancelled (also when it never started). A write that
  // passed its last look at the context before the outcome was decided still
  // renames its blob into place: it is written too, and counted.
  std::vector<std::string> outcome(n, "cancelled");
  std::atomic<std::size_t> written{0};
  std::atomic<std::size_t> failed{0};
  std::optional<progress_line> progress;
  progress.emplace([&] {  // quorum() keeps its group to itself: own counts
    return std::to_string(written.load()) + " written of the " +
           std::to_string(needed) + " needed, " +
           std::to_string(failed.load()) + " failed (" +
           std::to_string(n - needed + 1) + " would fail the quorum)";
  });
  // A signal cancels the writes still running (they remove their temporary
  // files) and fails the quorum unless it was reached.
  const errgroup::context_and_cancel run =
      errgroup::with_cancel(errgroup::context());
  const std::stop_callback on_signal(interrupt.token(),
                                     [&run] { run.cancel(); });
  const auto began = std::chrono::steady_clock::now();
  errgroup::scheduler io{static_cast<int>(std::min<std::size_t>(n, 64))};
  const auto result = errgroup::quorum(
      run.ctx, n, needed,
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

  // Every write has returned: the lines and the count are what the replica
  // directories hold now, not a snapshot from when the outcome was decided.
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& label = replicas[i].label;
    if (outcome[i].starts_with(label + ": "))
      std::cout << outcome[i];  // an error that names the replica
    else
      std::cout << label << ": " << outcome[i];
    std::error_code ec;
    if (outcome[i] != "written" && fs::exists(replicas[i].dir / name, ec))
      std::cout << " (an older " << name << " is there)";
    std::cout << '\n';
  }
  std::cout.flush();
  const std::size_t holding = written.load();
  if (interrupt.caught() != 0) {
    std::cerr << "quorum: interrupted; " << holding << " of " << n << " hold "
              << name << ", " << needed << " needed\n";
    return 1;  // main() then dies of the signal
  }
  if (result.err && !result.err.is<errgroup::quorum_error>()) {
    std::cerr << "quorum: " << result.err.message() << '\n';
    return 1;
  }
  std::fprintf(result.err ? stderr : stdout,
               "quorum %s: %zu of %zu hold %s, %zu needed, in %.2f s\n",
               result.err ? "failed" : "reached", holding, n, name.c_str(),
               needed, took.count());
  return result.err ? 1 : 0;
}

int main(int argc, char** argv) {
  signal_guard interrupt;  // first: every thread inherits its signal mask
  const int status = run(argc, argv, interrupt);
  interrupt.reraise();  // after run()'s cleanup: the demo replicas are gone
  return status;
}
