#!/usr/bin/env bash
# bench/peers/run.sh (also reached as bench/run.sh --peers DIR): errgroup, raw
# oneTBB, Taskflow and stdexec side by side in one process per workload, and
# Go's x/sync in the same session; writes one results file and the table.
#
#   bench/run.sh --peers DIR [options] [BUILD_DIR]
#
#   --peers DIR     a checkout of shared/peers/cpp (Taskflow and stdexec
#                   headers under DIR/third_party/); Go's harness is taken
#                   from DIR/../go (override: GO_PEER_DIR)
#   BUILD_DIR       Release build with -DERRGROUP_BENCH_PEERS=DIR (default:
#                   build/bench-peers; stdexec needs g++: CXX=g++ is used
#                   when the build directory is new)
#   --threads LIST  comma-separated thread counts (default: the CPUs, e.g. 2);
#                   "--threads 1,2" is the scaling run. Each C++ binary runs
#                   with --threads=N (global_control, the peers' pools, limit
#                   P = N) under taskset on CPUs 0..N-1 when N < CPUs (so
#                   OS-thread figures get N CPUs, as Go under GOMAXPROCS=N);
#                   Go runs with PROCS=LIST
#   --reps N        repetitions per figure, interleaved (default 7); Go: -runs N
#   --out DIR       where <date>-peers.txt / .md go (default: bench/results;
#                   --quick: BUILD_DIR/peers-quick)
#   --no-build      use the binaries already in BUILD_DIR
#   --no-guard      no CPU guard (here and in Go's run)
#   --no-go         skip Go (also skipped, with a note, when go is missing)
#   --quick         smoke run: tiny sizes, 1 repetition (not a measurement)
#
# Output: OUT/<date>-peers.txt (the settings, every console line of every
# process, Go's output and the tables) and OUT/<date>-peers.md (the tables);
# the JSON and Go's output in OUT/raw-peers/. Print the tables again with
#   python3 bench/report.py --peers bench/results/raw-peers
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(cd "$here/.." && pwd)"
root="$(cd "$bench/.." && pwd)"
command_line="bench/run.sh $*"
cd "$root"

peers=
build_dir=build/bench-peers
threads=$(nproc)
reps=7
out=
do_build=1
guard=1
with_go=1
quick=0
while (($#)); do
  case "$1" in
    --peers) peers=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-guard) guard=0; shift ;;
    --no-go) with_go=0; shift ;;
    --quick) quick=1; reps=1; shift ;;
    -h | --help) sed -n '2,30s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "run.sh --peers: unknown option $1" >&2; exit 2 ;;
    *) build_dir=$1; shift ;;
  esac
done
if [[ -z $peers || ! -d $peers ]]; then
  echo "run.sh: --peers DIR (a shared/peers/cpp checkout) is required" >&2
  exit 2
fi
peers="$(cd "$peers" && pwd)"
if [[ -z $out ]]; then
  if ((quick)); then out=$build_dir/peers-quick; else out=$bench/results; fi
fi
go_dir=${GO_PEER_DIR:-$peers/../go}
IFS=', ' read -ra thread_list <<<"$threads"
cpus=$(nproc)

mkdir -p "$out/raw-peers"
out="$(cd "$out" && pwd)"
raw=$out/raw-peers
rm -rf "${raw:?}"/*
stamp=$(date -u +%Y-%m-%dT%H%MZ)
((quick)) && stamp=$stamp-quick
txt=$out/$stamp-peers.txt
md=$out/$stamp-peers.md
: >"$txt"
log() { tee -a "$txt"; }

if ((do_build)); then
  if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    CXX=${CXX:-g++} nice cmake -S . -B "$build_dir" "${gen[@]}" \
      -DCMAKE_BUILD_TYPE=Release -DERRGROUP_BUILD_BENCH=ON \
      -DERRGROUP_BUILD_TESTS=OFF -DERRGROUP_BUILD_SAMPLES=OFF \
      -DERRGROUP_INSTALL=OFF -DERRGROUP_BENCH_PEERS="$peers" | grep 'bench peers'
  else
    nice cmake -S . -B "$build_dir" -DERRGROUP_BENCH_PEERS="$peers" |
      grep 'bench peers'
  fi
  nice cmake --build "$build_dir" -j2 --target bench_spawn bench_map \
    bench_cancel bench_semaphore
fi

# The figures of the table, per binary (Google Benchmark filters).
declare -A filter=(
  [spawn]='^spawn/(group_plain|group_limit2|tbb_task_group|taskflow_[a-z0-9_]+|stdexec_[a-z0-9_]+)/'
  [map]='^map/(seq|chunk4096_unlimited|tbb_parallel_for|taskflow_[a-z0-9_]+|stdexec_[a-z0-9_]+)/'
  [cancel]='^cancel/(unlimited|tbb_task_group|taskflow_[a-z_]+|stdexec_[a-z_]+)/'
  [semaphore]='^sem/(uncontended_acquire|contended_size1_g8|saturated_g32)/(errgroup|errgroup_barging|counting_semaphore|spin_yield)/'
)

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
git_desc=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git status --porcelain 2>/dev/null | grep -v '^??' | wc -l || true)
((dirty > 0)) && git_desc="$git_desc + $dirty modified tracked files"
go_ver=$(go version 2>/dev/null || echo 'not installed')
{
  echo "command=$command_line"
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git=$git_desc"
  echo "machine=$cpus CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
  echo "compiler=$("$cxx" --version | head -1), Release (-O3 -DNDEBUG), all variants in one binary"
  echo "tbb=libtbb-dev $(dpkg-query -W -f='${Version}' libtbb-dev 2>/dev/null || echo '?')"
  echo "benchmark=libbenchmark-dev $(dpkg-query -W -f='${Version}' libbenchmark-dev 2>/dev/null || echo '?')"
  tf_ver=$(sed -n 's/^#define TF_VERSION \([0-9]*\).*/\1/p' "$peers/third_party/taskflow/taskflow/taskflow.hpp")
  sx_ref=$(sed -n 's/^| stdexec | tag `\([^`]*\)`.*/\1/p' "$peers/README.md" 2>/dev/null)
  built="Taskflow TF_VERSION $tf_ver"
  if [[ -f $build_dir/bench/liberrgroup_bench_stdexec.a ]]; then
    built="$built, stdexec ${sx_ref:-(ref unknown)}"
  else
    built="$built, stdexec not built (see the CMake output)"
  fi
  echo "peers=$built, headers from $peers"
  echo "go=$go_ver, x/sync $(dpkg-query -W -f='${Version}' golang-golang-x-sync-dev 2>/dev/null || echo '?')"
  echo "threads=${thread_list[*]}"
  echo "reps=$reps"
  echo "mode=$( ((quick)) && echo 'QUICK (smoke sizes, not a measurement)' || echo full), CPU guard $( ((guard && !quick)) && echo on || echo off)"
  echo "load_start=$(loadavg)"
} >"$raw/meta.txt"
sed 's/^/# /' "$raw/meta.txt" | log

export ERRGROUP_BENCH_GUARD=$guard
flags=(--benchmark_enable_random_interleaving=true --benchmark_min_time=0
       --benchmark_format=console --benchmark_out_format=json
       --benchmark_repetitions="$reps")
((quick)) && flags+=(--quick) || flags+=(--benchmark_min_warmup_time=0.001)
for n in "${thread_list[@]}"; do
  pin=()
  ((n < cpus)) && pin=(taskset -c "0-$((n - 1))")
  mkdir -p "$raw/t$n"
  for name in spawn map cancel semaphore; do
    echo "== threads $n: bench_$name ${pin[*]} (load $(loadavg))" | log
    "${pin[@]}" "$build_dir/bench/bench_$name" "${flags[@]}" --threads="$n" \
      --benchmark_filter="${filter[$name]}" \
      --benchmark_out="$raw/t$n/bench_$name.json" 2>&1 |
      grep -v -E '_(mean|median|stddev|cv) |^\*\*\*WARNING' | log
  done
done

if ((with_go)) && command -v go >/dev/null && [[ -x $go_dir/run.sh ]]; then
  go_flags=(-runs "$reps" -label "bench/run.sh --peers, same session")
  if ((quick)); then
    go_flags+=(-spawn-n 10000 -map-n 16384 -cancel-tasks 1000 -cancel-units 10
               -sem-ops 20000)
  fi
  if ((guard && !quick)); then
    go_flags+=(-max-foreign "${ERRGROUP_BENCH_MAX_FOREIGN:-10}"
               -retries "${ERRGROUP_BENCH_RETRIES:-6}"
               -quiet-wait "${ERRGROUP_BENCH_QUIET_WAIT:-30}s")
  else
    go_flags+=(-retries 1 -quiet-wait 0s)
  fi
  procs=$(printf '%s\n' "${thread_list[@]}" | sort -rn | tr '\n' ' ')
  echo "== Go: PROCS=\"$procs\" $go_dir/run.sh ${go_flags[*]} (load $(loadavg))" | log
  PROCS="$procs" "$go_dir/run.sh" "${go_flags[@]}" 2>&1 | tee "$raw/go.txt" | log
else
  echo "# Go skipped: $( ((with_go)) && echo "go or $go_dir/run.sh not found" || echo --no-go)" | log
fi
echo "load_end=$(loadavg)" >>"$raw/meta.txt"
echo "# load_end=$(loadavg)" | log

python3 "$bench/report.py" --peers "$raw" >"$md"
{ echo; cat "$md"; } | log
echo "wrote $txt and $md" >&2
