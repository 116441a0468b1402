// tests/faultinj/inject.cpp: see inject.hpp.
#include "inject.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <link.h>
#include <oneapi/tbb/detail/_small_object_pool.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

// A hook for gdb: `break faultinj_injected` stops where the allocation fails.
extern "C" __attribute__((noinline)) void faultinj_injected() noexcept {
  asm volatile("");
}

namespace faultinj {
namespace {

constexpr int max_frames = 64;

std::atomic<int> g_mode{-1};  // the armed mode, -1 while disarmed
std::atomic<long> g_calls{0};
std::atomic<long> g_activity{0};  // every allocation, armed or not
long g_target = 0;
std::atomic<bool> g_fired{false};
std::atomic<long> g_live_new{0};
std::atomic<long> g_live_pool{0};
thread_local int t_exempt = 0;
thread_local bool t_scenario_thread = false;

// The pool blocks allocated on scenario threads and not given back yet: an
// open-addressing set of pointers, no heap. Each process runs the scenario
// once, a few hundred blocks; a full set stops the count (pool_overflow).
constexpr std::size_t pool_slots = 1 << 14;
void* const tombstone = reinterpret_cast<void*>(std::uintptr_t{1});
std::atomic<void*> g_pool_set[pool_slots];
std::atomic<bool> g_pool_overflow{false};

std::size_t slot_of(void* p) noexcept {
  auto h = reinterpret_cast<std::uintptr_t>(p) >> 4;
  h ^= h >> 17;
  h *= 0x9e3779b97f4a7c15ULL;
  return static_cast<std::size_t>(h >> 40) % pool_slots;
}

void pool_insert(void* p) noexcept {
  for (std::size_t i = slot_of(p), k = 0; k < pool_slots;
       ++k, i = (i + 1) % pool_slots) {
    void* expected = nullptr;
    if (g_pool_set[i].compare_exchange_strong(expected, p)) {
      g_live_pool.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  g_pool_overflow.store(true);
}

void pool_erase(void* p) noexcept {
  for (std::size_t i = slot_of(p), k = 0; k < pool_slots;
       ++k, i = (i + 1) % pool_slots) {
    void* here = g_pool_set[i].load();
    if (here == nullptr) return;  // not one of ours
    if (here == p && g_pool_set[i].compare_exchange_strong(here, tombstone)) {
      g_live_pool.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
  }
}

void pool_allocated(void* p) noexcept {
  if (t_scenario_thread) pool_insert(p);
}

void* g_site[max_frames];
int g_site_depth = 0;
std::uint64_t g_fired_site = 0;

// Sites: an allocation's site is a hash of the innermost return addresses
// of its stack. Children fork()ed from one parent share its mappings of the
// program and of the libraries loaded at start, so a site's hash is the
// same in all of them.
constexpr int site_frames = 16;
std::uint64_t g_target_site = 0;  // fail the first allocation from here
bool g_record_sites = false;
constexpr std::size_t site_slots = 1 << 12;
std::atomic<std::uint64_t> g_sites[site_slots];  // a set, 0: empty
void* g_site_stacks[site_slots][site_frames];    // each site's stack
int g_site_depths[site_slots];

void* g_stack_root = nullptr;  // set_stack_root()

// The modules loaded at start (warm_up()): a site hashes a return address
// as its module's name and the offset in it, so that it does not depend on
// where the module was loaded (--site HASH replays a site in a new process).
struct module_range {
  std::uintptr_t base = 0, lo = 0, hi = 0;
  std::uint64_t name = 0;  // a hash of the file's base name
};
constexpr int max_modules = 64;
module_range g_modules[max_modules];
int g_module_count = 0;

constexpr std::uint64_t fnv_basis = 0xcbf29ce484222325ULL;
constexpr std::uint64_t fnv_prime = 0x100000001b3ULL;

std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
  return (h ^ v) * fnv_prime;
}

int add_module(dl_phdr_info* info, std::size_t, void*) noexcept {
  if (g_module_count == max_modules) return 1;
  module_range m;
  m.base = info->dlpi_addr;
  m.lo = ~std::uintptr_t{0};
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    m.lo = std::min<std::uintptr_t>(m.lo, m.base + ph.p_vaddr);
    m.hi = std::max<std::uintptr_t>(m.hi, m.base + ph.p_vaddr + ph.p_memsz);
  }
  const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  if (const char* slash = std::strrchr(name, '/')) name = slash + 1;
  m.name = fnv_basis;
  for (const char* c = name; *c != '\0'; ++c)
    m.name = mix(m.name, static_cast<unsigned char>(*c));
  g_modules[g_module_count++] = m;
  return 0;
}

// site_hash(frames, depth) hashes the frames up to the stack root: what the
// harness did before it started the scenario is no part of a site.
std::uint64_t site_hash(void* const* frames, int depth) noexcept {
  std::uint64_t h = fnv_basis;
  for (int i = 0; i < depth; ++i) {
    auto pc = reinterpret_cast<std::uintptr_t>(frames[i]);
    for (int m = 0; m < g_module_count; ++m) {
      if (pc >= g_modules[m].lo && pc < g_modules[m].hi) {
        h = mix(h, g_modules[m].name);
        pc -= g_modules[m].base;
        break;
      }
    }
    h = mix(h, pc);
    if (frames[i] == g_stack_root) break;
  }
  return h != 0 ? h : 1;
}

void record_site(std::uint64_t h, void* const* frames, int depth) noexcept {
  for (std::size_t i = h % site_slots, k = 0; k < site_slots;
       ++k, i = (i + 1) % site_slots) {
    std::uint64_t here = g_sites[i].load();
    if (here == h) return;
    if (here == 0 && g_sites[i].compare_exchange_strong(here, h)) {
      std::memcpy(g_site_stacks[i], frames,
                  static_cast<std::size_t>(depth) * sizeof(void*));
      g_site_depths[i] = depth;
      return;
    }
    if (here == h) return;
  }
}

// should_fail(m) counts one allocation of kind m and reports whether it is
// the one to fail: the target-th one, or the first one from the target
// site.
bool should_fail(mode m) noexcept {
  g_activity.fetch_add(1, std::memory_order_relaxed);
  if (g_mode.load(std::memory_order_relaxed) != static_cast<int>(m) ||
      t_exempt != 0)
    return false;
  const long n = g_calls.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool by_site = g_target_site != 0;
  if (!by_site && !g_record_sites && n != g_target) return false;
  void* frames[site_frames];
  const int depth = backtrace(frames, site_frames);
  const std::uint64_t h = site_hash(frames, depth);
  if (g_record_sites) record_site(h, frames, depth);
  if (by_site ? h != g_target_site || g_fired.exchange(true) : n != g_target)
    return false;
  g_site_depth = backtrace(g_site, max_frames);
  g_fired_site = h;
  g_fired.store(true, std::memory_order_release);
  faultinj_injected();
  return true;
}

void* allocate(std::size_t n, std::size_t align) noexcept {
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  if (p != nullptr) g_live_new.fetch_add(1, std::memory_order_relaxed);
  return p;
}

void* new_throwing(std::size_t n, std::size_t align) {
  if (should_fail(mode::new_delete)) throw std::bad_alloc();
  void* p = allocate(n, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* new_nothrow(std::size_t n, std::size_t align) noexcept {
  if (should_fail(mode::new_delete)) return nullptr;
  return allocate(n, align);
}

void release(void* p) noexcept {
  if (p == nullptr) return;
  g_live_new.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}

// ---- printing without the heap

void put(int fd, const char* s, std::size_t n) noexcept {
  while (n > 0) {
    const ssize_t w = ::write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

void put(int fd, const char* s) noexcept { put(fd, s, std::strlen(s)); }

// frame_name(pc, buf) writes the demangled function around pc into buf
// (or "?"), and reports the module and the offset in it through the rest.
struct frame_info {
  const char* name = "?";  // demangled (malloc'ed, see demangled) or a symbol
  char* demangled = nullptr;
  std::size_t offset = 0;  // from the function's start
  const char* module = "?";
  std::size_t module_offset = 0;
  bool known = false;
};

frame_info describe(void* frame) noexcept {
  frame_info f;
  // A return address points after the call: look up the call itself.
  const auto pc = reinterpret_cast<std::uintptr_t>(frame) - 1;
  Dl_info info{};
  void* entry = nullptr;
  if (dladdr1(reinterpret_cast<void*>(pc), &info, &entry, RTLD_DL_SYMENT) == 0)
    return f;
  const auto* sym = static_cast<const ElfW(Sym)*>(entry);
  if (info.dli_fname != nullptr) {
    const char* slash = std::strrchr(info.dli_fname, '/');
    f.module = slash != nullptr ? slash + 1 : info.dli_fname;
    f.module_offset = pc - reinterpret_cast<std::uintptr_t>(info.dli_fbase);
  }
  const auto start = reinterpret_cast<std::uintptr_t>(info.dli_saddr);
  // dladdr finds the nearest exported symbol below pc: it is ours only when
  // pc lies inside it (local functions have no dynamic symbol).
  if (info.dli_sname == nullptr || sym == nullptr ||
      pc >= start + std::max<std::uintptr_t>(sym->st_size, 1))
    return f;
  f.known = true;
  f.offset = pc - start;
  int status = 0;
  f.demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
  f.name = status == 0 && f.demangled != nullptr ? f.demangled : info.dli_sname;
  return f;
}

void print_frames(int fd, void* const* frames, int depth) noexcept {
  for (int i = 0; i < depth; ++i) {
    frame_info f = describe(frames[i]);
    char line[128];
    std::snprintf(line, sizeof line, "    #%d ", i);
    put(fd, line);
    put(fd, f.name);
    if (f.known) {
      std::snprintf(line, sizeof line, "+0x%zx", f.offset);
      put(fd, line);
    }
    std::snprintf(line, sizeof line, " (%s+0x%zx)\n", f.module,
                  f.module_offset);
    put(fd, line);
    std::free(f.demangled);
  }
}

bool starts_with(const char* s, const char* prefix) noexcept {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

// short_name(name, out) drops template arguments, parameter lists and return
// types: "void ns::f<int>(int)" becomes "ns::f".
void short_name(const char* name, char* out, std::size_t size) noexcept {
  static constexpr char anon[] = "(anonymous namespace)";
  std::size_t n = 0;
  int angle = 0;
  int paren = 0;
  for (const char* p = name; *p != '\0' && n + 1 < size; ++p) {
    if (starts_with(p, anon)) {
      p += sizeof anon - 2;
      if (angle == 0 && paren == 0)
        for (const char* a = "{anon}"; *a != '\0' && n + 1 < size; ++a)
          out[n++] = *a;
      continue;
    }
    if (starts_with(p, "operator")) {  // keep operator(), operator<...
      for (const char* a = "operator"; *a != '\0' && n + 1 < size; ++a)
        out[n++] = *a;
      p += 7;
      if (p[1] == '(' && p[2] == ')') {
        if (angle == 0 && paren == 0 && n + 3 < size) {
          out[n++] = '(';
          out[n++] = ')';
        }
        p += 2;
      }
      continue;
    }
    if (*p == '{') {  // "{lambda()#1}": kept whole
      const char* close = std::strchr(p, '}');
      const char* stop = close != nullptr ? close : p + std::strlen(p) - 1;
      for (; p <= stop && n + 1 < size; ++p)
        if (angle == 0 && paren == 0) out[n++] = *p;
      --p;
      continue;
    }
    const char c = *p;
    // The parameter list ends the name, unless a nested name follows
    // ("f(int)::{lambda()#1}::operator()() const").
    if (c == ')' && paren == 1 && angle == 0 && !starts_with(p + 1, "::"))
      break;
    if (c == '<') ++angle;
    if (c == '(') ++paren;
    if (angle == 0 && paren == 0) {
      if (c == ' ') {
        n = 0;  // what came before was a return type
        continue;
      }
      out[n++] = c;
    }
    if (c == '>') --angle;
    if (c == ')') --paren;
    if (paren < 0 || angle < 0) paren = angle = 0;
  }
  out[n] = '\0';
}

// A frame of the injector itself or of the C++ runtime and library.
bool boring(const frame_info& f) noexcept {
  if (!f.known) return true;
  static constexpr const char* prefixes[] = {
      "operator new", "faultinj_", "std::",       "__gnu_cxx::",   "void std::",
      "__cxa",        "_Unwind",   "void* std::", "void __gnu_cxx"};
  for (const char* p : prefixes)
    if (starts_with(f.name, p)) return true;
  return starts_with(f.module, "libstdc++") || starts_with(f.module, "libc.");
}

// summarize(fd, frames, depth) writes the innermost frames that are not the
// injector's or the C++ runtime's: "f1 <- f2 <- ...".
void summarize(int fd, void* const* frames, int depth) noexcept {
  int shown = 0;
  for (int i = 0; i < depth && shown < 6; ++i) {
    frame_info f = describe(frames[i]);
    if (!boring(f)) {
      char name[256];
      short_name(f.name, name, sizeof name);
      if (shown++ > 0) put(fd, " <- ");
      put(fd, name);
    }
    std::free(f.demangled);
  }
  if (shown == 0) put(fd, "(no frame outside the C++ runtime)");
}

}  // namespace

void arm(const target& t) noexcept {
  g_calls.store(0, std::memory_order_relaxed);
  g_target = t.nth;
  g_target_site = t.site;
  g_record_sites = t.record_sites;
  g_fired.store(false, std::memory_order_relaxed);
  g_site_depth = 0;
  g_fired_site = 0;
  g_mode.store(static_cast<int>(t.kind), std::memory_order_release);
}

armed_stats disarm() noexcept {
  g_mode.store(-1, std::memory_order_release);
  const bool fired = g_fired.load(std::memory_order_acquire);
  return {g_calls.load(std::memory_order_relaxed), fired,
          fired ? g_fired_site : 0};
}

void print_recorded_sites(int fd) noexcept {
  for (std::size_t i = 0; i < site_slots; ++i) {
    const std::uint64_t h = g_sites[i].load();
    if (h == 0) continue;
    char line[64];
    std::snprintf(line, sizeof line, "recorded_site: %016llx ",
                  static_cast<unsigned long long>(h));
    put(fd, line);
    summarize(fd, g_site_stacks[i], g_site_depths[i]);
    put(fd, "\n");
  }
}

long live_new_blocks() noexcept {
  return g_live_new.load(std::memory_order_relaxed);
}

long live_pool_blocks() noexcept {
  return g_pool_overflow.load() ? -1
                                : g_live_pool.load(std::memory_order_relaxed);
}

void scenario_thread() noexcept { t_scenario_thread = true; }

void set_stack_root(void* return_address) noexcept {
  g_stack_root = return_address;
}

long activity() noexcept { return g_activity.load(std::memory_order_relaxed); }

exempt_scope::exempt_scope() noexcept { ++t_exempt; }
exempt_scope::~exempt_scope() { --t_exempt; }

void print_site(int fd) noexcept {
  if (!g_fired.load(std::memory_order_acquire)) return;
  print_frames(fd, g_site, g_site_depth);
}

void print_site_summary(int fd) noexcept {
  if (!g_fired.load(std::memory_order_acquire)) return;
  put(fd, "site: ");
  summarize(fd, g_site, g_site_depth);
  char line[64];
  std::snprintf(line, sizeof line, "\nsite_hash: %016llx\n",
                static_cast<unsigned long long>(g_fired_site));
  put(fd, line);
}

void print_stack(int fd) noexcept {
  void* frames[max_frames];
  print_frames(fd, frames, backtrace(frames, max_frames));
}

void warm_up() noexcept {
  void* frames[4];
  backtrace(frames, 4);
  g_module_count = 0;
  dl_iterate_phdr(add_module, nullptr);
}

}  // namespace faultinj

// ---- the global operator new and delete

void* operator new(std::size_t n) { return faultinj::new_throwing(n, 0); }
void* operator new[](std::size_t n) { return faultinj::new_throwing(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return faultinj::new_nothrow(n, 0);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return faultinj::new_nothrow(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return faultinj::new_throwing(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return faultinj::new_throwing(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a,
                   const std::nothrow_t&) noexcept {
  return faultinj::new_nothrow(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a,
                     const std::nothrow_t&) noexcept {
  return faultinj::new_nothrow(n, static_cast<std::size_t>(a));
}

void operator delete(void* p) noexcept { faultinj::release(p); }
void operator delete[](void* p) noexcept { faultinj::release(p); }
void operator delete(void* p, std::size_t) noexcept { faultinj::release(p); }
void operator delete[](void* p, std::size_t) noexcept { faultinj::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept {
  faultinj::release(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  faultinj::release(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  faultinj::release(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  faultinj::release(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  faultinj::release(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  faultinj::release(p);
}
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  faultinj::release(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  faultinj::release(p);
}

// ---- oneTBB's small object pool (every oneTBB task is allocated there)
//
// The program's definitions take precedence over libtbb's (ELF symbol
// interposition); each forwards to libtbb's own, found with RTLD_NEXT.
namespace tbb::detail::r1 {
namespace {

template <class Fn>
Fn next_definition(const char* mangled) noexcept {
  void* sym = dlsym(RTLD_NEXT, mangled);
  if (sym == nullptr) {
    faultinj::put(2, "faultinj: libtbb has no ");
    faultinj::put(2, mangled);
    faultinj::put(2, "\n");
    std::abort();
  }
  Fn fn;
  static_assert(sizeof fn == sizeof sym);
  std::memcpy(&fn, &sym, sizeof fn);
  return fn;
}

}  // namespace

void* allocate(d1::small_object_pool*& pool, std::size_t n,
               const d1::execution_data& ed) {
  using fn = void* (*)(d1::small_object_pool*&, std::size_t,
                       const d1::execution_data&);
  static const fn real = next_definition<fn>(
      "_ZN3tbb6detail2r18allocateERPNS0_2d117small_object_poolEmRKNS2_14"
      "execution_dataE");
  if (faultinj::should_fail(faultinj::mode::tbb_pool)) throw std::bad_alloc();
  void* p = real(pool, n, ed);
  faultinj::pool_allocated(p);
  return p;
}

void* allocate(d1::small_object_pool*& pool, std::size_t n) {
  using fn = void* (*)(d1::small_object_pool*&, std::size_t);
  static const fn real = next_definition<fn>(
      "_ZN3tbb6detail2r18allocateERPNS0_2d117small_object_poolEm");
  if (faultinj::should_fail(faultinj::mode::tbb_pool)) throw std::bad_alloc();
  void* p = real(pool, n);
  faultinj::pool_allocated(p);
  return p;
}

void deallocate(d1::small_object_pool& pool, void* p, std::size_t n,
                const d1::execution_data& ed) {
  using fn = void (*)(d1::small_object_pool&, void*, std::size_t,
                      const d1::execution_data&);
  static const fn real = next_definition<fn>(
      "_ZN3tbb6detail2r110deallocateERNS0_2d117small_object_poolEPvmRKNS2_"
      "14execution_dataE");
  faultinj::pool_erase(p);
  real(pool, p, n, ed);
}

void deallocate(d1::small_object_pool& pool, void* p, std::size_t n) {
  using fn = void (*)(d1::small_object_pool&, void*, std::size_t);
  static const fn real = next_definition<fn>(
      "_ZN3tbb6detail2r110deallocateERNS0_2d117small_object_poolEPvm");
  faultinj::pool_erase(p);
  real(pool, p, n);
}

}  // namespace tbb::detail::r1
