#!/usr/bin/env bash
# bench/run.sh: build the benchmarks (Release), run every bench_* with JSON
# output, and write bench/results/results.md and bench/results/plot.png.
#
#   bench/run.sh [options] [BUILD_DIR]
#
#   BUILD_DIR       where to configure and build (default: build/bench-release)
#   --reps N        repetitions per figure (default 7; memory figures: 1)
#   --out DIR       results directory (default: bench/results; --quick:
#                   BUILD_DIR/bench-quick)
#   --only LIST     comma-separated binaries to run (spawn,map,cancel,
#                   semaphore,memory); the report uses the JSON files present
#   --no-build      use the binaries already in BUILD_DIR
#   --no-guard      do not wait for / retry against other processes' CPU use
#   --quick         smoke run: tiny workloads, 1 repetition
#   --report-only   only regenerate results.md and plot.png from OUT/raw
#   --peers DIR     errgroup, raw oneTBB, Taskflow, stdexec and Go side by
#                   side (bench/peers/run.sh; its options: --peers --help)
#
# Environment: GO_PEER_RESULTS (default: ../shared/peers/go/results next to
# the repository, else /work/shared/peers/go/results) for Go's figures;
# ERRGROUP_BENCH_MAX_FOREIGN / _RETRIES / _QUIET_WAIT tune the CPU guard
# (see bench/common.hpp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for a in "$@"; do
  if [[ $a == --peers ]]; then exec "$here/peers/run.sh" "$@"; fi
done
root="$(cd "$here/.." && pwd)"
cd "$root"

build_dir=build/bench-release
reps=7
out=
only=spawn,map,cancel,semaphore,memory
do_build=1
guard=1
quick=0
report_only=0
while (($#)); do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-guard) guard=0; shift ;;
    --quick) quick=1; shift ;;
    --report-only) report_only=1; do_build=0; shift ;;
    -h | --help) sed -n '2,27s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build_dir=$1; shift ;;
  esac
done
if [[ -z $out ]]; then
  if ((quick)); then out=$build_dir/bench-quick; else out=$here/results; fi
fi
mkdir -p "$out/raw"
out="$(cd "$out" && pwd)"

go_results=${GO_PEER_RESULTS:-}
if [[ -z $go_results ]]; then
  for d in "$root/../shared/peers/go/results" /work/shared/peers/go/results; do
    if [[ -d $d ]]; then go_results=$d; break; fi
  done
fi

if ((do_build)); then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    cmake -S . -B "$build_dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DERRGROUP_BUILD_BENCH=ON -DERRGROUP_BUILD_TESTS=OFF \
      -DERRGROUP_BUILD_SAMPLES=OFF -DERRGROUP_INSTALL=OFF
  else
    cmake -S . -B "$build_dir" -DERRGROUP_BUILD_BENCH=ON >/dev/null
  fi
  cmake --build "$build_dir" --target bench_spawn bench_map bench_cancel \
    bench_semaphore bench_memory
fi

if ((!report_only)); then
  loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
  tbb_ver=$(dpkg-query -W -f='${Version}' libtbb-dev 2>/dev/null || echo '?')
  bm_ver=$(dpkg-query -W -f='${Version}' libbenchmark-dev 2>/dev/null || echo '?')
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt" 2>/dev/null)
  git_desc=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
  dirty=$(git status --porcelain 2>/dev/null | grep -v '^??' | wc -l || true)
  ((dirty > 0)) && git_desc="$git_desc + $dirty modified tracked files"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git=$git_desc"
    echo "machine=$(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
    echo "compiler=$("${cxx:-c++}" --version | head -1), Release (-O3 -DNDEBUG)"
    echo "tbb=libtbb-dev $tbb_ver"
    echo "benchmark=libbenchmark-dev $bm_ver"
    echo "reps=$reps"
    echo "mode=$( ((quick)) && echo 'QUICK (smoke sizes, not a measurement)' || echo 'full')$( ((guard && !quick)) && echo ", CPU guard on (quiet wait ${ERRGROUP_BENCH_QUIET_WAIT:-30} s, up to ${ERRGROUP_BENCH_RETRIES:-6} attempts while other processes use > ${ERRGROUP_BENCH_MAX_FOREIGN:-10} % CPU)")"
    echo "load_start=$(loadavg)"
  } >"$out/raw/meta.txt"

  flags=(--benchmark_enable_random_interleaving=true --benchmark_min_time=0
         --benchmark_format=console --benchmark_out_format=json)
  ((quick)) && flags+=(--quick)
  export ERRGROUP_BENCH_GUARD=$guard
  IFS=, read -ra names <<<"$only"
  for name in "${names[@]}"; do
    exe=$build_dir/bench/bench_$name
    r=$reps warm=(--benchmark_min_warmup_time=0.001)
    if [[ $name == memory ]] || ((quick)); then r=1 warm=(); fi
    echo "== bench_$name (repetitions: $r)" >&2
    "$exe" "${flags[@]}" "${warm[@]}" --benchmark_repetitions="$r" \
      --benchmark_out="$out/raw/bench_$name.json" 2>"$out/raw/bench_$name.log" |
      grep -v -E '_(mean|stddev|cv)' || { cat "$out/raw/bench_$name.log" >&2; exit 1; }
    grep '^#' "$out/raw/bench_$name.log" >&2 || true
  done
  echo "load_end=$(loadavg)" >>"$out/raw/meta.txt"
fi

python3 "$here/report.py" "$out/raw" "$out" "$go_results"
gnuplot -e "dir='$out'" "$here/plot.gp"
rm -f "$out"/plot_*.dat "$out/plot_targets.gp"
echo "wrote $out/results.md and $out/plot.png" >&2
