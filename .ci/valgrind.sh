#!/usr/bin/env bash
# .ci/valgrind.sh: errgroup_tests under valgrind memcheck; fails on any memory
# error and on any definite leak.
#
#   bash .ci/valgrind.sh                  # all but 4 stress/timing cases
#   VALGRIND_EXCLUDE= bash .ci/valgrind.sh  # every test case (~7 min more)
#   VALGRIND_SUITES=group,weighted bash .ci/valgrind.sh
#
# Builds errgroup_tests with g++, RelWithDebInfo (the distro oneTBB), then runs
#   valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
# with ERRGROUP_TBB_FINALIZE=1, which makes tests/misuse_test.cpp call
# tbb::finalize() at exit so that oneTBB joins its workers. When the library
# still holds oneTBB objects at exit (process-wide schedulers and the worker
# limit), finalize fails and says so on stderr; the workers' thread-local
# blocks are then "possibly lost", which --errors-for-leak-kinds=definite does
# not count. Memory errors and definite leaks fail the job.
#
# Environment:
#   VALGRIND_BUILD_DIR=DIR  build directory (default build/ci-valgrind)
#   VALGRIND_SUITES=LIST    doctest --test-suite filter (comma-separated
#                           wildcards; default: every suite)
#   VALGRIND_EXCLUDE=LIST   doctest --test-case-exclude filter; default: the
#                           few stress and timing cases listed below
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null

build=${VALGRIND_BUILD_DIR:-build/ci-valgrind}
start=$SECONDS

./run.sh deps valgrind >&2

mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=g++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DERRGROUP_BUILD_SAMPLES=OFF -DERRGROUP_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  exit 1
}
cmake --build "$build" --target errgroup_tests
tests_bin=$(find "$build" -name errgroup_tests -type f -perm -u+x | head -n 1)
echo "valgrind: built $tests_bin ($((SECONDS - start)) s)"

# The subset: every suite, minus the test cases that are stress loops (valgrind
# runs one thread at a time, ~50x slower: these three alone take 5.5 of the 7
# minutes of a full run and find nothing the rest does not) or that depend on
# a short deadline passing before a task starts (valgrind's slowdown breaks
# that assumption). Override with VALGRIND_SUITES / VALGRIND_EXCLUDE.
suites=${VALGRIND_SUITES:-*}
default_exclude='*100000 tasks blocked in go*'
default_exclude+=',concurrent cancels: exactly one cause wins*'
default_exclude+=',a context cancelled at once with its parent*'
default_exclude+=',a deadline on the parent cancels the derived context*'
exclude=${VALGRIND_EXCLUDE-$default_exclude}

log=$build/valgrind.log
t0=$SECONDS
rc=0
ERRGROUP_TBB_FINALIZE=1 valgrind --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=definite --num-callers=30 \
  "$tests_bin" --no-intro --test-suite="$suites" ${exclude:+--test-case-exclude="$exclude"} \
  >"$log" 2>&1 || rc=$?
grep -E '^\[doctest\] (test cases|assertions|Status)' "$log" || true
sed -n '/LEAK SUMMARY/,/suppressed:/p;/ERROR SUMMARY/p' "$log" | sed 's/^==[0-9]*== //'
echo "valgrind: exit $rc, $((SECONDS - t0)) s under valgrind, $((SECONDS - start)) s in all (log: $log)"
if ((rc != 0)); then
  echo "valgrind: FAILED; first errors:" >&2
  grep -n -m 20 -E 'Invalid|uninitialised|definitely lost|Mismatched|overlap|FAILED|ERROR:' "$log" >&2 || true
  exit 1
fi
if ! grep -q 'definitely lost: 0 bytes in 0 blocks' "$log" && grep -q 'definitely lost:' "$log"; then
  echo "valgrind: definite leaks" >&2
  exit 1
fi
echo "valgrind: ok"
