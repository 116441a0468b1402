// samples/parallel_map.cpp: Go's MD5All example with errgroup::parallel_map.
// Hash every file under a directory with SHA-256 (OpenSSL's libcrypto), at
// most --jobs files at once, and stop at the first file that cannot be read;
// then map a large array through a CPU-bound function and compare the time
// with a plain loop.
//
// parallel_map(ctx, names, f, {.limit = jobs, .grain = 1}) runs f on every
// file name, one task per file (grain 1: files are big units of work), at
// most `jobs` at once, and returns the digests in input order. The first
// failure cancels the map's context: files not started are never opened, and
// a file being hashed stops at its next 64 KiB block, because f checks the
// context between blocks. Paths are listed in sorted order, so the output is
// too, whatever order the tasks finish in.
//
// With no DIR it hashes a tree it generates in a temporary directory (the
// same bytes on every machine). Symbolic links are followed, and a dangling
// one is an unreadable file, as for sha256sum. Exit status: 0 done, 1 a file
// could not be hashed, 2 bad arguments.
//
// Examples, checked by ctest:
//   $ parallel_map
//   7c55c85609b7d978ac2515e2cdd53bacdb6022c1118451d5529bce3715e74b23  1k
//   b9ea831dae1a0bdb7d55abbacb547a0bf5023bf26c44aa626a854f5453f830fa  a/4k
//   28b957736733dbf14ca6b585797a32ad496e8f1ca3c25c028e0747747de04d7a  a/64k
//   3c497d30853d4002f4c0e4d7feb78837a51f6f163e551f4d0f8a7f4671137df2  a/b/1m
//   0cde6f3800a8d313d2d7d85762351a352c4f6254110244ba5fc224b5635c912d  a/b/4m
//   b15a8bd9ddb0c0b90c924f2c820268b6a5869e884749f5650b05219bc9a4e625  c/256k
//   6b5d7d496f474da7c38317f30721b8f687a9c5317f4f655fea3da57c35ee2822  c/8m
//   2d9cec45dfe1e42f5d40cfe46ca8ace285da93d72ec96edcef3e7002cab8e992  c/d/2m
//   3eec709b463aafca3fe9f80f864f3866dae5c20a599d88cfecd876b6dd31006c  c/d/3m
//   0f1eb21e9e38a4cfc6336c500ffc028cb4c0824805ed3f81dd5c64a071c02a04  c/d/e/5m
//   e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty
//   b859c4bd1232b653344946be27cbff9a7d2d6c92bf16a15049bae496eb0adea2  tiny
//   12 files, 23.3 MiB, at most 4 at once, in ... s
//   Collatz steps of 1..1048576: 138299831 in all, at most 524 (from 837799)
//   parallel_map ... s, a loop ... s: ... times as fast on ... threads
//
// The digests are sha256sum's:
//   $ mkdir -p tree/sub && printf 'hello\n' > tree/a.txt && : > tree/sub/nil
//   $ parallel_map --numbers 0 tree
//   5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a.txt
//   e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  sub/nil
//   2 files, 6 B, at most 4 at once, in ... s
//   $ cd tree && sha256sum a.txt sub/nil
//   5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a.txt
//   e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  sub/nil
//
// An unreadable file stops everything:
//   $ mkdir -p tree/sub && printf 'hello\n' > tree/a.txt
//   $ ln -s nowhere tree/sub/broken
//   $ parallel_map tree
//   parallel_map: sub/broken: No such file or directory
//   [exit 1]
//
// Bad arguments get one line and exit status 2:
//   $ parallel_map no/such/dir
//   parallel_map: dir: Directory does not exist: no/such/dir
//   [exit 2]
//   $ parallel_map --jobs 0
//   parallel_map: --jobs: Value 0 not in range 1 to 1024
//   [exit 2]
//   $ parallel_map --help | head -n 1
//   Hash every file under DIR with SHA-256, at most --jobs at once, then ...
#include <openssl/evp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <errgroup/errgroup.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "common.hpp"

namespace fs = std::filesystem;

namespace {

using file_ptr = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

struct digest {
  std::string hex;
  std::uintmax_t bytes = 0;
};

// sha256(ctx, path, name) returns the SHA-256 of the file at path, read in
// 64 KiB blocks. Throws std::system_error naming `name` when the file cannot
// be read, and ctx.err() as soon as ctx is cancelled.
digest sha256(const errgroup::context& ctx, const fs::path& path,
              const std::string& name) {
  file_ptr f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw std::system_error(errno, std::generic_category(), name);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> md(EVP_MD_CTX_new(),
                                                        &EVP_MD_CTX_free);
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL: cannot start SHA-256");
  std::vector<unsigned char> block(64 << 10);
  digest d;
  while (const std::size_t n =
             std::fread(block.data(), 1, block.size(), f.get())) {
    ctx.err().throw_if();  // the map failed elsewhere: stop reading
    EVP_DigestUpdate(md.get(), block.data(), n);
    d.bytes += n;
  }
  if (std::ferror(f.get()) != 0)
    throw std::system_error(errno, std::generic_category(), name);
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(md.get(), sum, &len);
  static constexpr char hex[] = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    d.hex += hex[sum[i] >> 4];
    d.hex += hex[sum[i] & 15];
  }
  return d;
}

// files(root) returns the path, relative to root, of every file under root:
// regular files and symbolic links that do not lead to a directory. Sorted.
std::vector<std::string> files(const fs::path& root) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(root)) {
    const fs::file_status s = e.symlink_status();
    if (fs::is_regular_file(s) || (fs::is_symlink(s) && !e.is_directory()))
      names.push_back(e.path().lexically_relative(root).generic_string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// write_demo_tree(dir) writes the generated tree: files from 0 B to 8 MiB
// of pseudo-random bytes.
void write_demo_tree(const fs::path& dir) {
  struct file {
    const char* name;
    std::size_t size;
  };
  constexpr file tree[] = {
      {"empty", 0},        {"tiny", 100},         {"1k", 1 << 10},
      {"a/4k", 4 << 10},   {"a/64k", 64 << 10},   {"a/b/1m", 1 << 20},
      {"a/b/4m", 4 << 20}, {"c/256k", 256 << 10}, {"c/8m", 8 << 20},
      {"c/d/2m", 2 << 20}, {"c/d/3m", 3 << 20},   {"c/d/e/5m", 5 << 20},
  };
  splitmix64 next(0);
  for (const file& f : tree) {
    const fs::path path = dir / f.name;
    fs::create_directories(path.parent_path());
    std::vector<std::uint64_t> words((f.size + 7) / 8);
    for (std::uint64_t& w : words) w = next();
    file_ptr out(std::fopen(path.c_str(), "wb"), &std::fclose);
    if (!out || (f.size > 0 &&
                 std::fwrite(words.data(), 1, f.size, out.get()) != f.size))
      throw std::system_error(errno, std::generic_category(), path);
  }
}

// The CPU-bound function: how many steps n takes to reach 1 in the Collatz
// sequence (n -> n / 2 or 3n + 1).
std::uint32_t collatz_steps(std::uint64_t n) {
  std::uint32_t steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Hash every file under DIR with SHA-256, at most --jobs at once, then "
      "map --numbers numbers through a CPU-bound function."};
  std::string dir;
  int jobs = 4;
  std::size_t count = 1 << 20;
  app.add_option("dir", dir, "Directory to hash (default: a generated tree)")
      ->check(CLI::ExistingDirectory);
  app.add_option("-j,--jobs", jobs, "Files hashed at once")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("-n,--numbers", count, "Array size for the map; 0: skip it")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "parallel_map: " << e.what() << '\n';
    return 2;
  }

  std::optional<temp_dir> demo;
  fs::path root = dir;
  std::vector<std::string> names;
  try {
    if (dir.empty()) {
      root = demo.emplace("parallel_map").path();
      write_demo_tree(root);
    }
    names = files(root);
  } catch (const fs::filesystem_error& e) {
    std::cerr << "parallel_map: " << e.path1().string() << ": "
              << e.code().message() << '\n';
    return 1;
  }

  // 1. Hash the files: Go's MD5All, bounded.
  auto began = std::chrono::steady_clock::now();
  std::atomic<std::size_t> hashed{0};
  std::optional<progress_line> progress;
  progress.emplace([&] {
    return "hashed " + std::to_string(hashed.load()) + " of " +
           std::to_string(names.size()) + " files";
  });
  auto [digests, err] = errgroup::parallel_map(
      errgroup::context(), names,
      [&](const errgroup::context& c, const std::string& name) {
        digest d = sha256(c, root / name, name);
        ++hashed;
        return d;
      },
      errgroup::map_options{.limit = jobs, .grain = 1});
  progress.reset();
  if (err) {
    std::cerr << "parallel_map: " << err.message() << '\n';
    return 1;
  }
  std::uintmax_t bytes = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    std::cout << digests[i].hex << "  " << names[i] << '\n';
    bytes += digests[i].bytes;
  }
  std::printf("%zu files, %s, at most %d at once, in %.2f s\n", names.size(),
              human(double(bytes)).c_str(), jobs, seconds_since(began));
  if (count == 0) return 0;

  // 2. Map an array through a CPU-bound function, then do it with a loop.
  std::vector<std::uint64_t> numbers(count);
  std::iota(numbers.begin(), numbers.end(), 1);
  began = std::chrono::steady_clock::now();
  auto [steps, map_err] =
      errgroup::parallel_map(errgroup::context(), numbers, collatz_steps);
  const double parallel = seconds_since(began);
  if (map_err) {
    std::cerr << "parallel_map: " << map_err.message() << '\n';
    return 1;
  }
  began = std::chrono::steady_clock::now();
  std::vector<std::uint32_t> looped(count);
  std::transform(numbers.begin(), numbers.end(), looped.begin(), collatz_steps);
  const double sequential = seconds_since(began);
  if (steps != looped) {
    std::cerr << "parallel_map: the map and the loop disagree\n";
    return 1;
  }
  const auto longest = std::max_element(steps.begin(), steps.end());
  std::printf("Collatz steps of 1..%zu: %llu in all, at most %u (from %zu)\n",
              count,
              static_cast<unsigned long long>(std::accumulate(
                  steps.begin(), steps.end(), std::uint64_t{0})),
              *longest, static_cast<std::size_t>(longest - steps.begin()) + 1);
  std::printf(
      "parallel_map %.3f s, a loop %.3f s: %.1f times as fast on %d threads\n",
      parallel, sequential, sequential / parallel,
      errgroup::scheduler::default_scheduler().max_concurrency());
}
