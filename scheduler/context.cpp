#include "errgroup/context.hpp"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/detail/_small_object_pool.h>
#include <oneapi/tbb/detail/_task.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task.h>
#include <oneapi/tbb/version.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

#include "errgroup/detail/node.hpp"
#include "service.hpp"

namespace errgroup {
namespace detail {
namespace {
std::atomic<long> g_live_nodes{0};

// bind_here(ctx) binds ctx, a bound context never used, below the calling
// thread's innermost oneTBB context now (oneTBB binds lazily, on first use:
// a later first use elsewhere could bind it below short-lived work).
void bind_here(tbb::task_group_context& ctx) {
  tbb::parallel_for(
      tbb::blocked_range<int>(0, 1), [](const tbb::blocked_range<int>&) {},
      ctx);
}

// make_algo_context(parent) makes a context for algorithms, bound below
// parent (so parent's cancellation reaches it), on any thread: it runs the
// binding inside parent. When parent is cancelled already, nothing runs
// there: the new context is then isolated and cancelled.
algo_context* make_algo_context(tbb::task_group_context& parent,
                                algo_context* older) {
  auto* a = new algo_context(tbb::task_group_context::bound);
  a->older = older;
  bool bound = false;
  try {
    if (tbb::task::current_context() == &parent) {
      bind_here(a->ctx);
      bound = true;
    } else {
      tbb::parallel_for(
          tbb::blocked_range<int>(0, 1),
          [&](const tbb::blocked_range<int>&) {
            bind_here(a->ctx);
            bound = true;
          },
          parent);
    }
  } catch (...) {
    delete a;
    throw;
  }
  if (!bound) {
    delete a;
    a = new algo_context(tbb::task_group_context::isolated);
    a->older = older;
    a->ctx.cancel_group_execution();
  }
  return a;
}

void free_algo_contexts(algo_context* a) noexcept {
  while (a != nullptr) delete std::exchange(a, a->older);
}

// poisoned(a, n): a was cancelled while its owner n was not (an algorithm
// failed or exited early under it): it must not be handed out again.
bool poisoned(algo_context* a, node* n) noexcept {
  return a->ctx.is_group_execution_cancelled() &&
         (n == nullptr || !n->cancelled());
}

thread_local task_frame::top t_top;

// warm_up() spawns one no-op task on the calling thread and waits for it,
// which sets up the thread's task pool. Not with tbb::task_group: its run()
// counts the task in before allocating it, so a failed allocation leaves
// its wait() (and destructor) waiting forever.
void warm_up() {
  namespace d1 = tbb::detail::d1;
  struct noop final : d1::task {
    d1::wait_context* done;
    d1::small_object_allocator alloc;
    noop(d1::wait_context& w, d1::small_object_allocator a)
        : done(&w), alloc(a) {}
    d1::task* finish(const d1::execution_data& ed) {
      d1::wait_context* w = done;
      alloc.delete_object(this, ed);
      w->release();
      return nullptr;
    }
    d1::task* execute(d1::execution_data& ed) override { return finish(ed); }
    d1::task* cancel(d1::execution_data& ed) override { return finish(ed); }
  };
  tbb::task_group_context ctx(tbb::task_group_context::isolated);
  d1::wait_context done{0};
  d1::small_object_allocator alloc;
  noop* t = alloc.new_object<noop>(done, alloc);  // may throw: nothing to undo
  done.reserve();
  try {
    d1::spawn(*t, ctx);
  } catch (...) {
    done.release();
    alloc.delete_object(t);
    throw;
  }
  d1::wait(done, ctx);
}

// first_tbb_call() is tbb::task::current_context(), and the first call
// into oneTBB the library makes on a thread (every group and context is
// made through node::make). oneTBB sets a thread up on its first calls
// there, and its set-up is not exception-safe: when one of its allocations
// fails, the call throws once and oneTBB is then broken on that thread
// (later calls spin forever, or crash). So the first time, we also spawn
// and wait for one task (the thread's task pool), and when that set-up
// fails we remember it and throw on every later call instead.
const tbb::task_group_context* first_tbb_call() {
  enum class setup : unsigned char { none, done, failed };
  thread_local setup state = setup::none;
  if (state == setup::failed)
    throw std::system_error(
        std::make_error_code(std::errc::not_enough_memory),
        "errgroup: oneTBB failed to set up this thread (out of memory) and "
        "cannot be used on it");
  if (state == setup::none) {
    try {
      if (tbb::task::current_context() == nullptr) warm_up();
      state = setup::done;
    } catch (...) {
      state = setup::failed;
      throw;
    }
  }
  return tbb::task::current_context();
}
}  // namespace

const error& cancelled_sentinel() noexcept {
  static const error e = make_error<cancelled_error>();
  return e;
}

const error& deadline_sentinel() noexcept {
  static const error e = make_error<deadline_exceeded_error>();
  return e;
}

// bound_nodes lists the live nodes bound below enclosing oneTBB work, so
// that one of them whose work is cancelled while nobody asks cancelled() is
// still cancelled, within about a poll period: the service polls the list
// while it is not empty. (oneTBB tells nobody that a context was
// cancelled; the tasks it skips tell the group, see group.cpp.)
class bound_nodes {
 public:
  static bound_nodes& instance() {
    static bound_nodes* b = new bound_nodes();  // never destroyed
    return *b;
  }
  static constexpr auto period = std::chrono::milliseconds(1);

  // add(n) lists n and starts polling if nobody polls. Throws (n listed:
  // its destructor unlists it) when the poll cannot be scheduled.
  void add(node& n) {
    void* old = nullptr;
    {
      std::lock_guard lock(mu_);
      n.bound_next_ = head_;
      if (head_ != nullptr) head_->bound_prev_ = &n;
      head_ = &n;
      if (!polling_) {
        old = schedule_locked();
        polling_ = true;
      }
    }
    if (old != nullptr) service::instance().release(old);
  }
  void remove(node& n) noexcept {
    std::lock_guard lock(mu_);
    (n.bound_prev_ ? n.bound_prev_->bound_next_ : head_) = n.bound_next_;
    if (n.bound_next_ != nullptr) n.bound_next_->bound_prev_ = n.bound_prev_;
    n.bound_prev_ = n.bound_next_ = nullptr;
  }

 private:
  // schedule_locked() queues the next poll and returns the handle of the
  // last one, to release outside the lock (a release may wait for a poll,
  // which takes the lock). The service never calls back under its lock.
  void* schedule_locked() {
    void* fresh =
        service::instance().at(std::chrono::steady_clock::now() + period,
                               &bound_nodes::poll_entry, this);
    return std::exchange(entry_, fresh);
  }
  static void poll_entry(void* self) noexcept {
    static_cast<bound_nodes*>(self)->poll();
  }
  void poll() noexcept {
    // Nodes whose work was cancelled are collected under the lock (alive:
    // a dying node leaves the list first) and cancelled outside it.
    std::shared_ptr<node> found;
    void* old = nullptr;
    {
      std::lock_guard lock(mu_);
      for (node* n = head_; n != nullptr; n = n->bound_next_) {
        if (n->done_.load(std::memory_order_acquire) ||
            !n->spawn_ctx_.is_group_execution_cancelled())
          continue;
        if (auto sp = n->weak_from_this().lock()) {
          sp->poll_next_ = std::move(found);
          found = std::move(sp);
        }
      }
      polling_ = false;
      if (head_ != nullptr) {
        try {
          old = schedule_locked();
          polling_ = true;
        } catch (...) {
          // Out of memory: the next bound node starts polling again.
        }
      }
    }
    // This very call's handle: released from the call, freed at once.
    if (old != nullptr) service::instance().release(old);
    while (found) {
      std::shared_ptr<node> n = std::move(found);
      found = std::move(n->poll_next_);
      n->notice_enclosing();
    }
  }

  std::mutex mu_;
  node* head_ = nullptr;   // guarded by mu_
  bool polling_ = false;   // guarded by mu_
  void* entry_ = nullptr;  // the last poll's handle, guarded by mu_
};

// node_ops runs node operations without recursion: a thread's list of
// nodes whose stop callbacks must still run (a cancellation reaching the
// children of the children...), and one of parents to release (a dying
// chain). The outermost call on the thread drains its list. Each list links
// its nodes through a member of its own; a node is in each at most once (it
// is cancelled once; it is released by its last owner).
struct node_ops {
  struct list {
    std::shared_ptr<node> node::*next;
    std::shared_ptr<node> head;
    bool draining = false;
  };
  static list& notifying() noexcept {
    thread_local list l{&node::notify_next_, nullptr, false};
    return l;
  }
  static list& releasing() noexcept {
    thread_local list l{&node::release_next_, nullptr, false};
    return l;
  }
  // run(l, n, op): op(n) now if nobody drains l on this thread, else later.
  template <class Op>
  static void run(list& l, std::shared_ptr<node> n, Op op) noexcept {
    if (l.draining) {
      (*n).*l.next = std::move(l.head);
      l.head = std::move(n);
      return;
    }
    l.draining = true;
    op(n);
    n.reset();
    while (l.head) {
      std::shared_ptr<node> next = std::move(l.head);
      l.head = std::move((*next).*l.next);
      op(next);
    }
    l.draining = false;
  }
};

std::size_t pending_timers() noexcept {
  return service::instance().size(&node::deadline_passed);
}

void node::deadline_passed(void* self) noexcept {
  // The service holds no reference: take one, or find the node dying (its
  // destructor then waits for this call in release()).
  if (auto n = static_cast<node*>(self)->weak_from_this().lock())
    n->cancel(deadline_sentinel(), deadline_sentinel());
}

long node::live_nodes() noexcept { return g_live_nodes.load(); }

node::node(tbb::task_group_context::kind_type k) : spawn_ctx_(k) {
  g_live_nodes.fetch_add(1, std::memory_order_relaxed);
}

void node::link::operator()() const noexcept {
  child->cancel(child->parent_->err(), child->parent_->cause());
}

std::shared_ptr<node> node::make(const std::shared_ptr<node>& parent,
                                 bool belongs) {
  const bool in_task = first_tbb_call() != nullptr && belongs;
  std::shared_ptr<node> n(new node(in_task
                                       ? tbb::task_group_context::bound
                                       : tbb::task_group_context::isolated));
  if (parent) {
    n->parent_ = parent;
    n->deadline_ = parent->deadline_;
  }
  if (in_task) n->bind_here(true);
  // Runs link at once when the parent is already cancelled.
  if (parent) n->link_.emplace(parent->src_.get_token(), link{n.get()});
  return n;
}

std::shared_ptr<node> node::make_bound(const std::shared_ptr<node>& parent,
                                       tbb::task_group_context& tbb) {
  std::shared_ptr<node> n(new node(tbb::task_group_context::bound));
  if (parent) {
    n->parent_ = parent;
    n->deadline_ = parent->deadline_;
  }
  // Bind inside tbb: a body running under it binds spawn_ctx_ below it.
  bool ran = false;
  tbb::parallel_for(
      tbb::blocked_range<int>(0, 1),
      [&](const tbb::blocked_range<int>&) {
        n->bind_here(false);
        ran = true;
      },
      tbb);
  if (!ran) n->cancel(cancelled_sentinel(), cancelled_sentinel());
  if (parent) n->link_.emplace(parent->src_.get_token(), link{n.get()});
  return n;
}

void node::bind_here(bool belongs) {
  // Made in a task of one of our groups: that node's spawn context is our
  // parent in oneTBB's tree and must outlive ours.
  if (belongs)
    if (task_frame* f = task_frame::current())
      enclosing_ = f->owner().shared_from_this();
  detail::bind_here(spawn_ctx_);
  bound_ = true;
  bound_nodes::instance().add(*this);
}

bool node::notice_enclosing() noexcept {
  if (!spawn_ctx_.is_group_execution_cancelled()) return false;
  // Only oneTBB's propagation cancels spawn_ctx_ before done_ is set: the
  // enclosing work was cancelled.
  cancel(cancelled_sentinel(), cancelled_sentinel(), origin::enclosing_work);
  return true;
}

node::~node() {
  link_.reset();  // waits for a parent cancellation running on this node
  if (bound_) bound_nodes::instance().remove(*this);
  if (void* h = timer_.load(std::memory_order_acquire))
    service::instance().release(h);
  free_algo_contexts(algo_);
  g_live_nodes.fetch_sub(1, std::memory_order_relaxed);
  // Releasing the parent may destroy it, and its parent...: one at a time.
  // Only its last owner defers it (it is then in the list once); any other
  // release destroys nothing.
  if (parent_ && parent_.use_count() == 1)
    node_ops::run(node_ops::releasing(), std::move(parent_),
                  [](std::shared_ptr<node>&) {});
}

void node::set_deadline(context::clock::time_point t) {
  if (deadline_ && *deadline_ <= t) return;  // the parent's comes first
  deadline_ = t;
  if (t <= context::clock::now()) {
    cancel(deadline_sentinel(), deadline_sentinel());
    return;
  }
  if (t == context::clock::time_point::max() || cancelled()) return;  // never
  timer_.store(service::instance().at(t, &node::deadline_passed, this),
               std::memory_order_release);
  // A cancel that came meanwhile found no timer to take out.
  if (cancelled()) service::instance().cancel(timer_.load());
}

bool node::cancel(const error& err, const error& cause, origin from) noexcept {
  {
    std::lock_guard lock(mu_);
    if (done_.load(std::memory_order_relaxed)) return false;
    err_ = err;
    cause_ = cause ? cause : err;
    if (from == origin::enclosing_work)
      by_enclosing_.store(true, std::memory_order_relaxed);
    done_.store(true, std::memory_order_release);
  }
  // Our algorithm contexts are bound below spawn_ctx_: oneTBB cancels them.
  spawn_ctx_.cancel_group_execution();
  if (void* h = timer_.load(std::memory_order_acquire))
    service::instance().cancel(h);
  notify();
  return true;
}

void node::notify() noexcept {
  // request_stop() runs the children's links on this thread, which cancel
  // the children, whose request_stop()...: run them one at a time instead.
  std::shared_ptr<node> self = weak_from_this().lock();
  if (!self) {
    // Dying: no child holds it, so no recursion follows.
    src_.request_stop();
    return;
  }
  node_ops::run(node_ops::notifying(), std::move(self),
                [](std::shared_ptr<node>& n) { n->src_.request_stop(); });
}

tbb::task_group_context& node::algo_context() {
  const bool live = !cancelled();  // may cancel: before we lock
  std::lock_guard lock(mu_);
  if (algo_ == nullptr || (live && algo_->ctx.is_group_execution_cancelled()))
    algo_ = make_algo_context(spawn_ctx_, algo_);
  return algo_->ctx;
}

// The oneTBB internals read here: task_group_context's private layout, the
// same (checked against the headers) in every release from 2021.4
// (TBB_INTERFACE_VERSION 12040) through 2021.5, and again in every release
// from 2021.6 (12060) through 2023.1 (12190):
//
//   byte  0  my_cpu_ctl_env (8)      byte 12  my_version (1)
//   byte  8  my_cancellation_requested (4)
//   byte 13  my_traits: bit 0 fp_settings, 1 concurrent_wait, 2 bound,
//            3 proxy (until 2021.5; reserved, always 0, since 2021.6)
//   byte 14  my_state (until 2021.5) / my_may_have_children (since 2021.6)
//   byte 15  my_lifetime_state (until 2021.5) / my_state (since 2021.6):
//            created 0, locked 1, isolated 2, bound 3, dead 4; since 2021.6
//            also proxy 0xff (until 2021.5 a proxy is marked by the trait)
//   byte 16  my_parent, or for a proxy my_actual_context (a union)
//   ... padding to 128 bytes (max_nfs_size).
//
// Both the state and the parent are set before the context's first task
// runs, and a context's parents outlive it. Offsets of private members cannot
// be checked at compile time: the asserts below check what can be (the
// version, the size, the alignment), and tests/tbb_compat_test.cpp checks
// runs_under() against oneTBB's binding at run time. Before supporting a new
// oneTBB, compare its task_group_context with the map above.
namespace {
static_assert(TBB_INTERFACE_VERSION >= 12050,
              "errgroup needs oneTBB 2021.5 or newer");
static_assert(sizeof(tbb::task_group_context) == 128,
              "errgroup assumes oneTBB's task_group_context layout");
constexpr std::size_t state_offset = 15;
constexpr std::size_t parent_offset = 16;
static_assert(alignof(tbb::task_group_context) >= alignof(void*) &&
                  parent_offset % alignof(void*) == 0 &&
                  parent_offset + sizeof(void*) <=
                      sizeof(tbb::task_group_context),
              "task_group_context::my_parent is a pointer at byte 16");
static_assert(std::atomic<std::uint8_t>::is_always_lock_free &&
                  std::atomic<tbb::task_group_context*>::is_always_lock_free,
              "the state and the parent are read with __atomic builtins");
constexpr std::uint8_t state_bound = 3;  // lifetime_state / state ::bound
#if TBB_INTERFACE_VERSION < 12060
bool is_proxy(const unsigned char* c) noexcept {
  return (c[13] & 0x8) != 0;  // my_traits.proxy
}
#else
bool is_proxy(const unsigned char* c) noexcept {
  return __atomic_load_n(c + state_offset, __ATOMIC_ACQUIRE) == 0xff;
}
#endif

const tbb::task_group_context* parent_of(
    const tbb::task_group_context* ctx) noexcept {
  const auto* c = reinterpret_cast<const unsigned char*>(ctx);
  tbb::task_group_context* p = nullptr;
  __atomic_load(
      reinterpret_cast<tbb::task_group_context* const*>(c + parent_offset), &p,
      __ATOMIC_ACQUIRE);
  if (is_proxy(c)) return p;
  if (__atomic_load_n(c + state_offset, __ATOMIC_ACQUIRE) != state_bound)
    return nullptr;
  return p;
}
}  // namespace

bool runs_under(const tbb::task_group_context& ctx) noexcept {
  for (const tbb::task_group_context* c = tbb::task::current_context();
       c != nullptr; c = parent_of(c))
    if (c == &ctx) return true;
  return false;
}

task_frame::task_frame(node& owner) noexcept : owner_(&owner), outer_(t_top) {
  t_top = {&owner.spawn_context(), this};
}

task_frame::~task_frame() {
  t_top = outer_;
  free_algo_contexts(algo_);
}

task_frame* task_frame::current() noexcept {
  const top t = t_top;
  if (t.frame == nullptr || t.ctx != tbb::task::current_context())
    return nullptr;
  return t.frame;
}

task_frame::suspend_scope::suspend_scope() noexcept : saved_(t_top) {
  t_top = {};
}

task_frame::suspend_scope::~suspend_scope() { t_top = saved_; }

tbb::task_group_context& task_frame::algo_context() {
  if (algo_ == nullptr || poisoned(algo_, owner_))
    algo_ = make_algo_context(owner_->spawn_context(), algo_);
  return algo_->ctx;
}

}  // namespace detail

bool context::cancelled() const noexcept { return node_ && node_->cancelled(); }

error context::err() const { return node_ ? node_->err() : error(); }

error context::cause() const { return node_ ? node_->cause() : error(); }

std::stop_token context::stop_token() const noexcept {
  return node_ ? node_->stop_source().get_token() : std::stop_token();
}

std::optional<context::clock::time_point> context::deadline() const noexcept {
  return node_ ? node_->deadline() : std::nullopt;
}

tbb::task_group_context& context::tbb_context() const {
  // A task of ours asking for its own context (or background's, which is
  // what a plain group's task has) gets one of its own.
  if (detail::task_frame* f = detail::task_frame::current())
    if (!node_ || node_.get() == &f->owner()) return f->algo_context();
  if (node_) return node_->algo_context();
  // Background, outside our tasks: one per thread, replaced when poisoned.
  struct per_thread {
    detail::algo_context* head = nullptr;
    ~per_thread() { detail::free_algo_contexts(head); }
  };
  thread_local per_thread t;
  if (t.head == nullptr || detail::poisoned(t.head, nullptr)) {
    auto* a = new detail::algo_context(tbb::task_group_context::isolated);
    a->older = t.head;
    t.head = a;
  }
  return t.head->ctx;
}

bool context::wait_until(clock::time_point t) const {
  if (!node_) {
    std::this_thread::sleep_until(t);
    return false;
  }
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  std::stop_callback cb(stop_token(), [&] {
    std::lock_guard lock(mu);
    fired = true;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait_until(lock, t, [&] { return fired; });
  return cancelled();
}

void cancel_func::operator()() const {
  node_->cancel(detail::cancelled_sentinel(), detail::cancelled_sentinel());
}

void cancel_func::operator()(error cause) const {
  node_->cancel(detail::cancelled_sentinel(), cause);
}

context_and_cancel with_cancel(const context& parent) {
  auto n = detail::node::make(parent.node());
  return {context(n), cancel_func(n)};
}

context_and_cancel with_cancel(isolated_t, const context& parent) {
  auto n = detail::node::make(parent.node(), /*belongs=*/false);
  return {context(n), cancel_func(n)};
}

context_and_cancel with_tbb_context(const context& parent,
                                    tbb::task_group_context& tbb) {
  auto n = detail::node::make_bound(parent.node(), tbb);
  return {context(n), cancel_func(n)};
}

context_and_cancel with_deadline(const context& parent,
                                 context::clock::time_point t) {
  auto n = detail::node::make(parent.node());
  n->set_deadline(t);
  return {context(n), cancel_func(n)};
}

}  // namespace errgroup
