#!/usr/bin/env bash
# .ci/tbb-versions.sh: errgroup built and tested against the newest and the
# oldest oneTBB it supports, next to Debian 12's 2021.8 (every other CI job).
#
#   bash .ci/tbb-versions.sh                # 2023.1.0, then 2021.5.0
#   bash .ci/tbb-versions.sh 2021.5.0       # only that one
#
# For each version:
# 1. oneTBB from its release tarball in ../shared/third_party/onetbb/ (checked
#    against SHA256SUMS there first; no network) into
#    build/tbb-<version>/install: libtbb only (Release; no tests, examples,
#    tbbmalloc or tbbbind). Cached: an install whose stamp names the tarball's
#    SHA256 and the same build settings is reused; sources and objects are
#    deleted after the install.
# 2. errgroup configured against it in build/compat-<version> (Release,
#    warnings as errors, no samples or benchmarks; TBB_DIR names the install,
#    so the distro's oneTBB cannot be picked), and errgroup_tests built.
# 3. Proof that the tests run with that libtbb: ldd must resolve libtbb.so.12
#    inside the install (CMake's build RPATH; no LD_LIBRARY_PATH is set), and
#    the tbb_compat suite prints the runtime version and checks it
#    (ERRGROUP_EXPECT_TBB, tests/tbb_compat_test.cpp).
# 4. The doctest binary, run directly (one process, like .ci/tsan.sh), with the
#    suites listed for the version below (every suite, for both). Any failure,
#    or a run longer than TEST_TIMEOUT seconds, fails the script.
#
# Time on 2 cores, cold (nothing under build/): about 5 min (each oneTBB
# 40 s, each errgroup_tests build 60-90 s, each test run 15-25 s); with both
# oneTBB installs cached and errgroup built, about 35 s.
#
# Environment:
#   ONETBB_TARBALLS=DIR  the tarballs and SHA256SUMS (default:
#                        <repo>/../shared/third_party/onetbb)
#   TBB_VERSIONS_JOBS=N  build jobs (default: nproc)
#   TEST_TIMEOUT=S       limit of one version's test run (default 600)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null
repo=$PWD

readonly SCRIPT_REV=1 # bump to rebuild every cached oneTBB after editing
tarballs=${ONETBB_TARBALLS:-$repo/../shared/third_party/onetbb}
jobs=${TBB_VERSIONS_JOBS:-$(nproc 2>/dev/null || echo 2)}
test_timeout=${TEST_TIMEOUT:-600}
versions=("$@")
((${#versions[@]} > 0)) || versions=(2023.1.0 2021.5.0)

# The doctest suites run per version (doctest -ts filter: comma-separated
# wildcards, e.g. 'error,context,group*'); '*' is all of them. Every suite
# passes against both.
declare -A suites=(
  [2023.1.0]='*'
  [2021.5.0]='*'
)

# oneTBB's build: what goes into the cache stamp besides the tarball's hash.
tbb_cmake_args=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_INSTALL_LIBDIR=lib
  -DTBB_TEST=OFF
  -DTBB_EXAMPLES=OFF
  -DTBB_STRICT=OFF # no -Werror: g++ 12 warns in 2021.5's sources
  -DTBBMALLOC_BUILD=OFF
  -DTBBMALLOC_PROXY_BUILD=OFF
  -DTBB_ENABLE_IPO=OFF # 2023.1: no -flto (2021.5 has no switch: always on)
  -DTBB_DISABLE_HWLOC_AUTOMATIC_SEARCH=ON
)

log() { printf 'tbb-versions: %s\n' "$*"; }
die() {
  printf 'tbb-versions: error: %s\n' "$*" >&2
  exit 1
}
# run_logged LOG CMD...: CMD's output goes to LOG; on failure its tail is shown.
run_logged() {
  local out=$1
  shift
  if ! "$@" >"$out" 2>&1; then
    printf -- '---- last lines of %s ----\n' "$out" >&2
    tail -n 40 "$out" >&2
    die "failed: $*"
  fi
}

./run.sh deps >/dev/null # cmake, ninja, g++, doctest, libtbb-dev (unused here)

# ---- 1. verify every tarball first -----------------------------------------
[[ -f $tarballs/SHA256SUMS ]] || die "no $tarballs/SHA256SUMS"
declare -A sha
for v in "${versions[@]}"; do
  [[ -v suites[$v] ]] || die "unknown version $v (known: ${!suites[*]})"
  file=oneTBB-$v.tar.gz
  line=$(grep -E "^[0-9a-f]{64}  $file\$" "$tarballs/SHA256SUMS") ||
    die "$file is not listed in $tarballs/SHA256SUMS"
  (cd "$tarballs" && sha256sum --quiet -c - <<<"$line") ||
    die "$tarballs/$file does not match SHA256SUMS"
  sha[$v]=${line%% *}
  log "$file: sha256 ${sha[$v]} ok"
done

# ---- 2. oneTBB builds (cached) ---------------------------------------------
cache_key() { # cache_key VERSION
  printf 'rev=%s\ntarball-sha256=%s\ncxx=%s\ncmake-args=%s\n' "$SCRIPT_REV" \
    "${sha[$1]}" "$(c++ --version | head -n 1)" "${tbb_cmake_args[*]}"
}

build_tbb() { # build_tbb VERSION: leaves build/tbb-VERSION/install
  local v=$1 dir=$repo/build/tbb-$1 t0=$SECONDS
  local prefix=$dir/install key
  key=$(cache_key "$v")
  if [[ -f $prefix/lib/cmake/TBB/TBBConfig.cmake && -f $dir/stamp &&
    "$(<"$dir/stamp")" == "$key" ]]; then
    log "oneTBB $v: cached in $prefix"
    return
  fi
  log "oneTBB $v: building into $prefix"
  rm -rf "$dir"
  mkdir -p "$dir/src" "$dir/logs"
  tar -xzf "$tarballs/oneTBB-$v.tar.gz" -C "$dir/src" --strip-components=1
  run_logged "$dir/logs/configure.log" cmake -S "$dir/src" -B "$dir/obj" \
    "${tbb_cmake_args[@]}" -DCMAKE_INSTALL_PREFIX="$prefix"
  run_logged "$dir/logs/build.log" cmake --build "$dir/obj" --parallel "$jobs"
  run_logged "$dir/logs/install.log" cmake --install "$dir/obj"
  [[ -f $prefix/lib/cmake/TBB/TBBConfig.cmake ]] || die "no TBBConfig.cmake in $prefix"
  rm -rf "$dir/src" "$dir/obj"
  printf '%s\n' "$key" >"$dir/stamp"
  log "oneTBB $v: built in $((SECONDS - t0)) s"
}

# ---- 3. errgroup against each ----------------------------------------------
test_against() { # test_against VERSION
  local v=$1 t0=$SECONDS
  local prefix=$repo/build/tbb-$v/install build=$repo/build/compat-$v
  mkdir -p "$build"
  run_logged "$build/configure.log" cmake -S "$repo" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DTBB_DIR="$prefix/lib/cmake/TBB" \
    -DERRGROUP_WARNINGS_AS_ERRORS=ON \
    -DERRGROUP_BUILD_SAMPLES=OFF \
    -DERRGROUP_BUILD_BENCH=OFF
  # The line CMakeLists.txt prints: the version find_package(TBB) found.
  grep -F 'errgroup: oneTBB' "$build/configure.log" | sed 's/^-- /tbb-versions: /'
  grep -qF "errgroup: oneTBB $v at $prefix/lib/cmake/TBB" "$build/configure.log" ||
    die "configured against another oneTBB than $prefix"
  run_logged "$build/build.log" cmake --build "$build" --parallel "$jobs" \
    --target errgroup_tests
  local bin=$build/tests/errgroup_tests
  log "errgroup against oneTBB $v: built in $((SECONDS - t0)) s"

  # The binary must load this libtbb (RUNPATH), not the distro's.
  local libs
  libs=$(ldd "$bin")
  echo "ldd $bin:"
  grep -E 'libtbb' <<<"$libs" || true
  readelf -d "$bin" | grep -E 'RUNPATH|RPATH' || true
  grep -qE "libtbb\.so\.12 => $prefix/lib/libtbb\.so\.12 " <<<"$libs" ||
    die "$bin does not load $prefix/lib/libtbb.so.12"

  # The runtime version, as the program sees it (TBB_runtime_version()):
  # "2021.5" for 2021.5.0 (its version string has no patch number).
  local expect=$v
  [[ $v == 2021.* ]] && expect=${v%.*}
  ERRGROUP_EXPECT_TBB=$expect "$bin" --no-intro -ts=tbb_compat -tc='*runtime*'

  local t1=$SECONDS rc=0
  log "errgroup_tests -ts='${suites[$v]}' against oneTBB $v"
  ERRGROUP_EXPECT_TBB=$expect timeout -k 10 "$test_timeout" \
    "$bin" --no-intro -ts="${suites[$v]}" >"$build/tests.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    printf -- '---- last lines of %s ----\n' "$build/tests.log" >&2
    tail -n 60 "$build/tests.log" >&2
    ((rc == 124)) && die "errgroup_tests timed out after $test_timeout s against oneTBB $v"
    die "errgroup_tests failed (exit $rc) against oneTBB $v"
  fi
  grep -E '^\[doctest\] (test cases|assertions|Status)' "$build/tests.log" |
    sed "s/^/  $v: /"
  log "oneTBB $v: tests passed in $((SECONDS - t1)) s (total $((SECONDS - t0)) s)"
}

start=$SECONDS
for v in "${versions[@]}"; do build_tbb "$v"; done
for v in "${versions[@]}"; do test_against "$v"; done
log "ok: ${versions[*]} in $((SECONDS - start)) s"
