// group/spill.cpp: the spill, which keeps oneTBB's queue of a context group
// without a limit short, so that a cancellation has little to skip there.
//
// oneTBB skips a cancelled group's queued tasks one by one, as threads pop
// them (~75 ns each with two threads, contended); 10,000 queued took ~0.8 ms
// after the first error. So go() on such a group spawns while fewer than
// window_ of its tasks are queued in oneTBB (spawned, not started), and
// otherwise appends the task to the spill. Tasks that start or finish move
// spilled tasks to oneTBB, up to the window, first in first out (when, see
// unspill()); a cancellation drops the whole spill in one pass.
//
// Invariant: while the spill holds a task, a task of the group is queued in
// oneTBB or running, and will look at the spill when it starts or
// finishes. go() appends, then counts what is queued and running; a task
// counts itself started (or done), then looks at the spill's size; with
// both orders sequentially consistent, one of them sees the other. If go()
// finds nothing queued or running, it moves tasks out itself.
//
// Only tasks queued in oneTBB count towards the window, not running ones:
// tasks suspended in a wait (a semaphore, a slot) leave their threads to
// others, and the tasks they wait for must still reach oneTBB. A spilled
// task starts when a queued one would, so the spill adds no deadlock that
// oneTBB's own queue would not have.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "group_state.hpp"

namespace errgroup::detail {
namespace {

// How often go() looks at the counters (every this many submissions); in
// between it keeps the last answer.
constexpr std::int64_t look_every = 32;
// How many spilled tasks are taken out under the lock at a time.
constexpr std::int64_t batch_size = 64;

}  // namespace

std::int64_t group_state::queued() const noexcept {
  // Submitted first: a task counted done but not yet submitted makes the
  // answer smaller, never larger (a spill is then emptied once too often,
  // never stranded).
  const std::int64_t submitted =
      hot_.submitted.load(std::memory_order_seq_cst) >> 1;
  return submitted - spill_.size.load(std::memory_order_seq_cst) -
         run_.running.load(std::memory_order_seq_cst) -
         run_.succeeded.load(std::memory_order_seq_cst) -
         failed_.load(std::memory_order_seq_cst) -
         skipped_.load(std::memory_order_seq_cst);
}

bool group_state::spills() noexcept {
  if (((hot_.submitted.load(std::memory_order_relaxed) >> 1) % look_every) == 0)
    spilling_.store(
        queued() >= window_ || spill_.size.load(std::memory_order_relaxed) > 0,
        std::memory_order_relaxed);
  return spilling_.load(std::memory_order_relaxed);
}

void group_state::spill(group_task& t) noexcept {
  t.next_spilled_ = nullptr;
  {
    std::lock_guard lock(spill_.mu);
    (spill_.tail != nullptr ? spill_.tail->next_spilled_ : spill_.head) = &t;
    spill_.tail = &t;
    // The size before the count: queued() never counts t as in oneTBB.
    spill_.size.fetch_add(1, std::memory_order_seq_cst);
    hot_.submitted.fetch_add(one_submitted, std::memory_order_seq_cst);
  }
  // Nobody queued or running would look at the spill: we move tasks out.
  if (queued() + run_.running.load(std::memory_order_seq_cst) <= 0)
    unspill(/*thief=*/false);
}

std::int64_t group_state::take_spilled(group_task** out,
                                       std::int64_t most) noexcept {
  std::lock_guard lock(spill_.mu);
  std::int64_t n = 0;
  while (n < most && spill_.head != nullptr) {
    group_task* t = spill_.head;
    spill_.head = t->next_spilled_;
    t->waiting_at_ = nullptr;  // waits nowhere now
    out[n++] = t;
  }
  if (spill_.head == nullptr) spill_.tail = nullptr;
  spill_.size.fetch_sub(n, std::memory_order_seq_cst);
  return n;
}

void group_state::unspill(bool thief) noexcept {
  // Before the lock: noticing a cancellation runs drop_spill().
  if (has_context_ && node_->cancelled()) {
    drop_spill();
    return;
  }
  // Tasks moved here go to this thread's own queue, which it runs first,
  // newest first. A thread that runs its own queue would then run the
  // spill before its older tasks (and a first error late), so only a
  // thief (its task came from another thread's queue) refills, at half the
  // window; anybody refills once nothing is queued.
  const std::int64_t q = queued();
  if (q > 0 && !(thief && q < window_ / 2)) return;  // those will look
  for (std::int64_t left = window_ - q; left > 0;) {
    group_task* batch[batch_size];
    const std::int64_t n = take_spilled(batch, std::min(left, batch_size));
    if (n == 0) return;
    left -= n;
    for (std::int64_t i = 0; i < n; ++i) {
      try {
        spawn(*batch[i], /*count=*/0);  // counted submitted when spilled
      } catch (...) {
        // Out of memory: spawn() counted the task skipped and abandoned
        // it; the group reports the failure.
        record(error(std::current_exception()));
      }
    }
  }
}

void group_state::drop_spill() noexcept {
  std::int64_t dropped = 0;
  for (;;) {
    group_task* batch[batch_size];
    const std::int64_t n = take_spilled(batch, batch_size);
    if (n == 0) break;
    // Never invoked: the captures are released now, outside the lock (a
    // destructor may call go()). Spilled tasks hold no slot and no units.
    for (std::int64_t i = 0; i < n; ++i) batch[i]->destroy(nullptr);
    dropped += n;
  }
  if (dropped == 0) return;
  count_done(skipped_, dropped);
  // Last: wait() may return and the group go away.
  constexpr std::int64_t most = std::numeric_limits<std::uint32_t>::max();
  for (; dropped > most; dropped -= most)
    hot_.wait.release(static_cast<std::uint32_t>(most));
  hot_.wait.release(static_cast<std::uint32_t>(dropped));
}

}  // namespace errgroup::detail
