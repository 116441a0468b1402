// tests/misuse_messages.hpp: the exact texts of the misuse errors
// (group/group.cpp, weighted/weighted.cpp, scheduler/gate.cpp,
// scheduler/scheduler.cpp), shared by the misuse table and the group fuzzer.
#pragma once

#include <string>

namespace misuse_messages {

inline std::string limit_active(long long n) {
  return "errgroup: modify limit while " + std::to_string(n) +
         " tasks in the group are still active";
}
inline const std::string limit_zero =
    "errgroup: go() with limit 0 could never start a task";
inline const std::string wait_self =
    "errgroup: wait() called from a task of the same group would wait for "
    "itself";
inline const std::string go_after_wait =
    "errgroup: go() on a context group after its wait() returned (its "
    "context is done)";
inline const std::string units_negative = "errgroup: go() with negative units";
inline const std::string units_too_many =
    "errgroup: go() asks for more units than the budget's size";
inline const std::string sem_negative_size = "semaphore: negative size";
inline const std::string sem_too_large =
    "semaphore: size too large (the largest is weighted::max_size, 2^61)";
inline const std::string sem_acquire_negative =
    "semaphore: acquire of a negative weight";
inline const std::string sem_try_negative =
    "semaphore: try_acquire of a negative weight";
inline const std::string sem_release_negative =
    "semaphore: release of a negative weight";
inline const std::string sem_acquire_too_many =
    "semaphore: acquire of more than the semaphore's size";
inline const std::string sem_over_release =
    "semaphore: released more than held";
inline const std::string sched_zero =
    "errgroup: scheduler needs max_concurrency >= 1";

}  // namespace misuse_messages
