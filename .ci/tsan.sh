#!/usr/bin/env bash
# .ci/tsan.sh: the ThreadSanitizer job. No suppressions file.
#
#   bash .ci/tsan.sh
#
# 1. Builds (or reuses) a TSan-instrumented oneTBB with .ci/tsan-tbb.sh: the
#    distro libtbb.so is not instrumented, and TSan would report false races
#    on every task handoff inside it.
# 2. Configures clang++ RelWithDebInfo with -fsanitize=thread against it
#    (ERRGROUP_TBB_SANITIZED=ON: oneTBB's resumable tasks are used, as in a
#    normal build) and builds errgroup_tests and errgroup_soak.
# 3. Runs the whole doctest suite in one process, then the soak with
#    ERRGROUP_SOAK_OPS operations (default 100000), with
#    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1.
# Exits non-zero on any ThreadSanitizer report (or any test failure).
#
# Environment:
#   TSAN_BUILD_DIR=DIR      build directory (default build/ci-tsan)
#   ERRGROUP_SOAK_OPS=N     soak operations under TSan (default 100000)
#   ERRGROUP_SOAK_SEED=S    soak seed (default: from the clock; printed)
#   TSAN_DOCTEST_ARGS=...   extra doctest arguments (e.g. -ts=group)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null

build=${TSAN_BUILD_DIR:-build/ci-tsan}
export ERRGROUP_SOAK_OPS=${ERRGROUP_SOAK_OPS:-100000}
start=$SECONDS

./run.sh deps clang libclang-rt-14-dev >&2
prefix=$(bash .ci/tsan-tbb.sh)
echo "tsan: instrumented oneTBB in $prefix ($((SECONDS - start)) s)"

mkdir -p "$build"
cmake -S . -B "$build" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DERRGROUP_SANITIZER=thread \
  -DERRGROUP_TBB_SANITIZED=ON \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DERRGROUP_BUILD_SAMPLES=OFF \
  -DERRGROUP_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  exit 1
}
targets=(errgroup_tests)
# (Captured first: with pipefail, `... | grep -q` fails when grep stops
# reading early and the writer gets SIGPIPE.)
help=$(cmake --build "$build" --target help)
if grep -q '^errgroup_soak:' <<<"$help"; then
  targets+=(errgroup_soak)
else
  echo "tsan: warning: no errgroup_soak target (tests/CMakeLists.txt lacks add_subdirectory(soak))" >&2
fi
cmake --build "$build" --target "${targets[@]}"
echo "tsan: built ($((SECONDS - start)) s)"

# Both programs must load the instrumented libtbb, not the distro one.
tests_bin=$(find "$build" -name errgroup_tests -type f -perm -u+x | head -n 1)
libs=$(ldd "$tests_bin")
if ! grep -q "$prefix/lib/libtbb" <<<"$libs"; then
  echo "tsan: $tests_bin does not load $prefix/lib/libtbb.so:" >&2
  grep tbb <<<"$libs" >&2 || true
  exit 1
fi

export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:exitcode=66${TSAN_EXTRA_OPTIONS:+:$TSAN_EXTRA_OPTIONS}"
logs=$build/tsan-logs
mkdir -p "$logs"
status=0

# run NAME CMD...: runs CMD with TSan; fails on a non-zero exit or a report.
run() {
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "---- $name: $* ----"
  "$@" >"$logs/$name.log" 2>&1 || rc=$?
  if grep -q 'WARNING: ThreadSanitizer' "$logs/$name.log"; then
    echo "tsan: $name: ThreadSanitizer report (exit $rc):" >&2
    sed -n '/WARNING: ThreadSanitizer/,/^SUMMARY: ThreadSanitizer/p' "$logs/$name.log" >&2
    status=1
  elif ((rc != 0)); then
    echo "tsan: $name failed (exit $rc); last lines of $logs/$name.log:" >&2
    tail -n 40 "$logs/$name.log" >&2
    status=1
  fi
  tail -n 3 "$logs/$name.log"
  echo "---- $name: exit $rc, $((SECONDS - t0)) s ----"
}

# shellcheck disable=SC2086
run doctest "$tests_bin" --no-intro ${TSAN_DOCTEST_ARGS:-}
soak_bin=$(find "$build" -name errgroup_soak -type f -perm -u+x | head -n 1)
if [[ -n $soak_bin ]]; then
  run soak "$soak_bin" --hang-seconds 120
fi

echo "tsan: $([[ $status == 0 ]] && echo ok || echo FAILED), $((SECONDS - start)) s"
exit $status
