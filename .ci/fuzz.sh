#!/usr/bin/env bash
# .ci/fuzz.sh: build the libFuzzer targets of tests/fuzz (clang,
# -fsanitize=fuzzer,address,undefined) and fuzz each one for a bounded time.
#
#   bash .ci/fuzz.sh                 # every target, FUZZ_SECONDS each
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh fuzz_group
#
# Environment:
#   FUZZ_SECONDS=60          fuzzing time per target
#   FUZZ_BUILD_DIR=DIR       build directory (default build/fuzz)
#   FUZZ_UPDATE_CORPUS=1     merge the inputs that add coverage into the corpus
#                            kept in the repo, tests/fuzz/corpus/<target>/
#                            (0: leave the repo alone)
#   FUZZ_MAX_LEN=256         largest input libFuzzer makes
#
# Each target first replays its corpus (a regression test), then fuzzes with
# new inputs written to a scratch directory; afterwards `-merge=1` minimizes
# the old corpus plus the new inputs into the smallest set with the same
# coverage, which replaces the corpus (the hand-written seed-* files are always
# kept), so it stays small (the script fails past 1 MiB). A crash, a model mismatch or a hang
# (-timeout) stops the run: the input is saved as
# $FUZZ_BUILD_DIR/artifacts/<target>/crash-* (or timeout-*), and the script
# prints how to replay it and exits non-zero.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
exec </dev/null

seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD_DIR:-build/fuzz}
update=${FUZZ_UPDATE_CORPUS:-1}
max_len=${FUZZ_MAX_LEN:-256}
targets=("$@")
((${#targets[@]} > 0)) || targets=(fuzz_weighted fuzz_group)

./run.sh deps clang libclang-rt-14-dev >&2

start=$SECONDS
mkdir -p "$build"
cmake -S tests/fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  exit 1
}
cmake --build "$build" --target "${targets[@]}"
echo "fuzz: built in $((SECONDS - start)) s"

status=0
for t in "${targets[@]}"; do
  corpus=$root/tests/fuzz/corpus/$t
  scratch=$build/new-corpus/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  rm -rf "$scratch"
  mkdir -p "$scratch"
  log=$build/$t.log
  echo "---- $t: ${seconds} s (corpus: $(find "$corpus" -type f | wc -l) files) ----"
  t0=$SECONDS
  # -timeout: one input may take at most 30 s (the targets' own waits give up
  # after 20 s with a MISMATCH message).
  if ! "$build/$t" -max_total_time="$seconds" -max_len="$max_len" -timeout=30 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$scratch" "$corpus" >"$log" 2>&1; then
    status=1
    grep -E 'MISMATCH|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
    for a in "$artifacts"/*; do
      [[ -f $a ]] && echo "fuzz: $t failed on $a; replay: FUZZ_TRACE=1 $build/$t $a" >&2
    done
    continue
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/^#[0-9]*[[:space:]]*DONE .*cov: \([0-9]*\).*/\1/p' "$log")
  echo "$t: ${execs:-?} runs in $((SECONDS - t0)) s (${rate:-?} exec/s), coverage ${cov:-?}," \
    "$(find "$scratch" -type f | wc -l) new inputs"
  if [[ $update == 1 ]]; then
    # Minimize the old corpus plus the new inputs into a fresh directory (the
    # smallest set with the same coverage), keep the hand-written seed-*
    # files, and make that the corpus.
    before=$(find "$corpus" -type f | wc -l)
    merged=$build/merged-corpus/$t
    rm -rf "$merged"
    mkdir -p "$merged"
    if ! "$build/$t" -merge=1 -max_len="$max_len" "$merged" "$corpus" "$scratch" \
      >"$build/$t.merge.log" 2>&1; then
      tail -n 20 "$build/$t.merge.log" >&2
      status=1
      continue
    fi
    find "$corpus" -type f ! -name 'seed-*' -delete
    cp -n "$merged"/* "$corpus"/ 2>/dev/null || true
    echo "$t: corpus $before -> $(find "$corpus" -type f | wc -l) files," \
      "$(cat "$corpus"/* | wc -c) bytes"
  fi
done

total=$(find tests/fuzz/corpus -type f -exec cat {} + | wc -c)
if ((total >= 1048576)); then
  echo "fuzz: tests/fuzz/corpus holds $total bytes (limit 1 MiB)" >&2
  status=1
fi
echo "fuzz: done in $((SECONDS - start)) s"
exit $status
