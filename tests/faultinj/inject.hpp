// tests/faultinj/inject.hpp: the allocation failure injector of
// errgroup_faultinj (inject.cpp). Arm it before the threads that allocate
// exist; counting, failing and disarming are thread-safe.
//
// The program replaces the global operator new / new[] (every overload: plain,
// nothrow, aligned, aligned nothrow) and operator delete to match. While armed,
// each call counts as one allocation, on any thread; the target-th one, or
// the first one from a target site, fails: the throwing forms throw
// std::bad_alloc, the nothrow forms return nullptr. Only one allocation
// fails. The backtrace of the failed call is kept for the report.
//
// It also interposes oneTBB's small object pool (tbb::detail::r1::allocate
// and deallocate, where every oneTBB task, ours included, is allocated): the
// blocks allocated on a scenario thread (scenario_thread()) are tracked until
// given back, so a task whose memory never is shows up as a leak. Other
// threads are left out: oneTBB's workers and the library's service thread
// allocate at any time. In mode::tbb_pool the target-th r1::allocate call
// fails (std::bad_alloc, as oneTBB throws when its allocator fails) instead of
// the target-th operator new. That hook is oneTBB's exported ABI, not a
// documented extension point: it covers the allocations oneTBB makes through
// its pool, not the ones it makes with its own cache_aligned_allocate.
#pragma once

#include <cstddef>
#include <cstdint>

namespace faultinj {

enum class mode {
  new_delete,  // fail the target-th global operator new / new[]
  tbb_pool,    // fail the target-th tbb::detail::r1::allocate
};

// Which allocation fails. An allocation's site is a hash of the innermost
// return addresses of its stack (16 frames, up to the stack root), each as
// its module and the offset in it: runs of one build agree on it.
struct target {
  mode kind = mode::new_delete;
  long nth = 0;               // fail the nth allocation (0: none)
  std::uint64_t site = 0;     // or: fail the first allocation from this site
  bool record_sites = false;  // keep every site seen (recorded_sites())
};

// arm(t) starts counting allocations of kind t.kind from zero, failing the
// one t names.
void arm(const target& t) noexcept;

struct armed_stats {
  long calls = 0;          // allocations of the armed kind counted
  bool fired = false;      // one was failed
  std::uint64_t site = 0;  // the site of the failed one
};
// disarm() stops counting and failing, and reports what happened.
armed_stats disarm() noexcept;

// print_recorded_sites(fd) writes each site seen while armed with
// record_sites, one a line: "recorded_site: <16 hex digits> f1 <- f2 ...".
void print_recorded_sites(int fd) noexcept;

// Live blocks: operator new blocks not yet deleted, counted since the program
// started, and oneTBB pool blocks allocated on a scenario thread and not yet
// deallocated (-1: too many to track).
long live_new_blocks() noexcept;
long live_pool_blocks() noexcept;

// scenario_thread() marks the calling thread as one that runs the scenario
// (the main thread, a thread that runs its tasks): its oneTBB pool blocks
// are tracked from now on.
void scenario_thread() noexcept;

// exempt_scope: allocations on this thread while one is alive are neither
// counted nor failed (the harness's own allocations in the scenario).
class exempt_scope {
 public:
  exempt_scope() noexcept;
  ~exempt_scope();
  exempt_scope(const exempt_scope&) = delete;
  exempt_scope& operator=(const exempt_scope&) = delete;
};

// set_stack_root(ra): ra is the return address of the call that starts the
// scenario (on the main thread); a site's stack ends there, so that it does
// not depend on where the harness started the scenario from.
void set_stack_root(void* return_address) noexcept;

// activity() counts every allocation call (operator new, oneTBB pool),
// armed or not: it moves while the program makes progress.
long activity() noexcept;

// print_site(fd) writes the stack of the failed allocation, one frame a line
// ("    #k function+0xoff (module+0xoff)"), or nothing when none failed.
void print_site(int fd) noexcept;
// print_site_summary(fd) writes "site: f1 <- f2 <- ...\n": the 6 innermost
// frames of the failed allocation that are not the injector's or the C++
// runtime's, then "site_hash: <16 hex digits>\n"; or nothing when none
// failed.
void print_site_summary(int fd) noexcept;
// print_stack(fd) writes the calling thread's stack as print_site does.
void print_stack(int fd) noexcept;

// warm_up() loads what backtraces need (libgcc_s) while nothing is armed,
// and notes where the modules loaded so far are (for site hashes).
void warm_up() noexcept;

}  // namespace faultinj
