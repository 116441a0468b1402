// errgroup/detail/result_slots.hpp: where go_result() and collector keep
// what their tasks return. Not part of the public API; docs/design.md
// ("Typed results") has the picture.
//
// Invariants:
// - A slot is written once, by its task's callable (result_task): the value
//   or the error first, then the state, with a release store. Readers load
//   the state with acquire and touch nothing else of a pending slot.
// - A chunk of slots starts with 1 + capacity references: its owner's (a
//   result handle, or a collector) and one set aside for each slot's task.
//   A task's callable drops its slot's reference when it is destroyed,
//   invoked or not; the owner drops its own and those of the slots it never
//   used. Whoever drops the last frees the chunk, so neither side ever
//   touches freed memory, whichever ends first.
// - A callable destroyed while its slot is still pending was never invoked:
//   the group skipped it (or go() dropped it). It marks the slot skipped
//   with the group's cause.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "errgroup/context.hpp"
#include "errgroup/detail/invoke.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"

namespace errgroup {

// result_state is where a task started by go_result() or a collector is:
// pending until it returns, throws or is skipped, then one of the other
// three for good.
enum class result_state : unsigned char { pending, succeeded, failed, skipped };

namespace detail {

// The value type a value-returning task yields: what f returns, without
// reference or cv.
template <class F>
using result_value_t = std::remove_cvref_t<task_result_t<F>>;

template <class F>
constexpr bool check_result_task() {
  static_assert(callable_with<F>,
                "errgroup: a task must be callable as f() or "
                "f(const errgroup::context&)");
  if constexpr (callable_with<F>) {
    using T = result_value_t<F>;
    static_assert(!std::is_void_v<T> && !error_result<T>,
                  "errgroup: a result task returns a value (and throws on "
                  "failure); use group::go for tasks that return void or an "
                  "error");
    static_assert(std::is_void_v<T> || std::is_destructible_v<T>,
                  "errgroup: a result task's value must be destructible");
  }
  return true;
}

// skip_fallback() is the cause a skipped slot gets when the group's context
// has none (a plain group skipped by the oneTBB work it belongs to): the
// library's cancelled_error. Called once before any task can be skipped, so
// the destructor that uses it never allocates.
inline const error& skip_fallback() {
  static const error e = [] {
    const context_and_cancel cc = with_cancel(isolated, context());
    cc.cancel();
    return cc.ctx.err();
  }();
  return e;
}

// throw_pending(what) throws the std::logic_error for reading a result
// (what: "result::get()") before its task ended.
[[noreturn]] inline void throw_pending(const char* what) {
  throw std::logic_error(std::string("errgroup: ") + what +
                         " before the task ended (call wait() first)");
}

template <class T>
struct result_slot {
  std::atomic<result_state> state{result_state::pending};
  error err;  // failed: the task's error; skipped: the cause
  union {
    T value;  // alive while state is succeeded
  };

  result_slot() noexcept {}
  ~result_slot() {
    if (state.load(std::memory_order_relaxed) == result_state::succeeded)
      value.~T();
  }
  result_slot(const result_slot&) = delete;
  result_slot& operator=(const result_slot&) = delete;

  // ended() is the state, or a std::logic_error naming `what` when the task
  // has not ended yet.
  result_state ended(const char* what) const;
  // reset() makes a slot whose go() threw pending again (no value in it).
  void reset() noexcept {
    err = error();
    state.store(result_state::pending, std::memory_order_relaxed);
  }
};

template <class T>
result_state result_slot<T>::ended(const char* what) const {
  const result_state s = state.load(std::memory_order_acquire);
  if (s == result_state::pending) throw_pending(what);
  return s;
}

// result_chunk is one allocation: a header, then `capacity` slots.
template <class T>
class result_chunk {
 public:
  using slot_type = result_slot<T>;

  // make(g, capacity) returns a chunk of pending slots for tasks of g,
  // holding 1 + capacity references. Throws std::bad_alloc.
  static result_chunk* make(group& g, std::size_t capacity) {
    void* p = allocate(bytes(capacity));
    return ::new (p) result_chunk(g, capacity);
  }

  slot_type& slot(std::size_t i) noexcept { return slots()[i]; }
  group& owner() const noexcept { return *g_; }

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // release(n) drops n references; the last one frees the chunk.
  void release(std::size_t n) noexcept {
    if (refs_.fetch_sub(n, std::memory_order_acq_rel) == n) destroy();
  }

  // How many slots a chunk of T holds at most: about 16 KiB worth, a power
  // of two in [1, 1024].
  static constexpr std::size_t max_capacity() noexcept {
    const std::size_t fit = std::size_t{16384} / sizeof(slot_type);
    return std::bit_floor(std::clamp<std::size_t>(fit, 1, 1024));
  }

 private:
  result_chunk(group& g, std::size_t capacity) noexcept
      : refs_(1 + capacity), g_(&g), capacity_(capacity) {
    for (std::size_t i = 0; i < capacity; ++i) ::new (slots() + i) slot_type();
  }

  static constexpr std::size_t alignment() noexcept {
    return std::max(alignof(result_chunk), alignof(slot_type));
  }
  static constexpr std::size_t header() noexcept {
    return (sizeof(result_chunk) + alignof(slot_type) - 1) /
           alignof(slot_type) * alignof(slot_type);
  }
  static constexpr std::size_t bytes(std::size_t capacity) noexcept {
    return header() + capacity * sizeof(slot_type);
  }
  static void* allocate(std::size_t n) {
    if constexpr (alignment() > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
      return ::operator new(n, std::align_val_t(alignment()));
    else
      return ::operator new(n);
  }
  slot_type* slots() noexcept {
    return std::launder(reinterpret_cast<slot_type*>(
        reinterpret_cast<unsigned char*>(this) + header()));
  }
  void destroy() noexcept {
    for (std::size_t i = 0; i < capacity_; ++i) slots()[i].~slot_type();
    this->~result_chunk();
    if constexpr (alignment() > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
      ::operator delete(this, std::align_val_t(alignment()));
    else
      ::operator delete(this);
  }

  std::atomic<std::size_t> refs_;
  group* g_;  // for the cause of a skip: a task never outlives its group
  std::size_t capacity_;
};

// result_chunks<T> is a collector's entries, in submission order, in
// chunks that grow from min(8, max) slots, doubling, up to
// result_chunk<T>::max_capacity(). One thread at a time uses it.
template <class T>
class result_chunks {
 public:
  using chunk = result_chunk<T>;
  using slot_type = result_slot<T>;

  explicit result_chunks(group& g) noexcept : g_(&g) {}
  // Drops its own references and those of slots never used; tasks still
  // running keep their chunks.
  ~result_chunks() {
    for (std::size_t k = 0; k < chunks_.size(); ++k)
      chunks_[k]->release(1 + capacity(k) - used(k));
  }
  result_chunks(const result_chunks&) = delete;
  result_chunks& operator=(const result_chunks&) = delete;

  std::size_t size() const noexcept { return size_; }

  // at(i) is entry i; std::out_of_range when i >= size().
  slot_type& at(std::size_t i) const {
    if (i >= size_)
      throw std::out_of_range("errgroup: collector entry " + std::to_string(i) +
                              " of " + std::to_string(size_));
    const auto [k, off] = locate(i);
    return chunks_[k]->slot(off);
  }

  // push() adds an entry and returns its chunk and slot; the slot's task
  // reference is the caller's to hand to a result_task. Throws
  // std::bad_alloc with nothing added.
  std::pair<chunk*, slot_type*> push() {
    const auto [k, off] = locate(size_);
    if (k == chunks_.size()) {
      if (chunks_.size() == chunks_.capacity())
        chunks_.reserve(chunks_.empty() ? 4 : 2 * chunks_.size());
      chunks_.push_back(chunk::make(*g_, capacity(k)));
    }
    ++size_;
    return {chunks_[k], &chunks_[k]->slot(off)};
  }

  // pop() takes back the last entry, whose task never started and whose
  // reference is gone (its result_task was destroyed, or never built): the
  // reference is set aside again and the slot made pending, for the next
  // push().
  void pop() noexcept {
    const auto [k, off] = locate(--size_);
    chunks_[k]->retain();
    chunks_[k]->slot(off).reset();
  }

 private:
  static constexpr std::size_t max_ = chunk::max_capacity();
  static constexpr std::size_t first_ = max_ < 8 ? max_ : 8;
  static constexpr auto growing_ =
      static_cast<std::size_t>(std::bit_width(max_ / first_));
  static constexpr std::size_t grown_ =
      first_ * ((std::size_t{1} << growing_) - 1);

  static constexpr std::size_t capacity(std::size_t k) noexcept {
    return k < growing_ ? first_ << k : max_;
  }
  // locate(i) is {chunk, offset} of entry i.
  static constexpr std::pair<std::size_t, std::size_t> locate(
      std::size_t i) noexcept {
    if (i < grown_) {
      const auto k =
          static_cast<std::size_t>(std::bit_width(i / first_ + 1)) - 1;
      return {k, i - first_ * ((std::size_t{1} << k) - 1)};
    }
    return {growing_ + (i - grown_) / max_, (i - grown_) % max_};
  }
  // used(k) is how many slots of chunk k hold entries.
  std::size_t used(std::size_t k) const noexcept {
    const auto [last, off] = locate(size_);
    return k < last ? capacity(k) : k == last ? off : 0;
  }

  group* g_;
  std::vector<chunk*> chunks_;
  std::size_t size_ = 0;
};

// result_task is the callable the group runs for a value-returning f: it
// holds one reference of its chunk and writes f's value, or its throw, into
// its slot. Its error result fails the group as a throw from f would.
template <class T, class F>
class result_task {
 public:
  // Adopts one reference of c for slot s; drops it if building f throws.
  template <class G>
  result_task(result_chunk<T>* c, result_slot<T>* s, G&& f) try
      : f_(std::forward<G>(f)), chunk_(c), slot_(s) {
  } catch (...) {
    c->release(1);
  }
  // f_ is moved first: if that throws, o keeps its reference.
  result_task(result_task&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
      : f_(std::move(o.f_)),
        chunk_(std::exchange(o.chunk_, nullptr)),
        slot_(o.slot_) {}
  result_task(const result_task&) = delete;
  result_task& operator=(const result_task&) = delete;
  result_task& operator=(result_task&&) = delete;

  ~result_task() {
    if (chunk_ == nullptr) return;
    if (slot_->state.load(std::memory_order_relaxed) == result_state::pending)
      skip();  // never invoked
    chunk_->release(1);
  }

  error operator()(const context& c) {
    try {
      // The value is built in place: a prvalue from f is neither copied nor
      // moved.
      ::new (static_cast<void*>(std::addressof(slot_->value)))
          T(invoke_with(f_, c));
    } catch (...) {
      error e(std::current_exception());
      slot_->err = e;
      slot_->state.store(result_state::failed, std::memory_order_release);
      return e;
    }
    slot_->state.store(result_state::succeeded, std::memory_order_release);
    return {};
  }

 private:
  void skip() noexcept {
    error cause = chunk_->owner().get_context().cause();
    slot_->err = cause ? std::move(cause) : skip_fallback();
    slot_->state.store(result_state::skipped, std::memory_order_release);
  }

  F f_;  // first: see the move constructor
  result_chunk<T>* chunk_;
  result_slot<T>* slot_;
};

}  // namespace detail
}  // namespace errgroup
