#!/usr/bin/env bash
# run.sh: install what is missing, then build and run errgroup.
#
#   ./run.sh samples    build the samples (Release) and run them: ctest -L sample
#   ./run.sh test       build everything (Debug, warnings as errors) and run the
#                       whole suite: unit tests, samples, consumer tests
#   ./run.sh deps [PKG...]  only install the missing Debian packages (plus PKG...)
#
# Environment:
#   ERRGROUP_WERROR=0|1     warnings as errors (default: 1 for test, 0 for samples)
#   ERRGROUP_BUILD_DIR=DIR  build there instead of build/<preset>
set -euo pipefail

# Debian packages the build, the tests, the benchmarks and the samples need
# (python3-doc: the real HTML tree that the test sample.crawler.python_docs
# crawls; without it that test is skipped; gnuplot-nox: bench plots and
# samples/trace_plot.py).
PACKAGES="libtbb-dev doctest-dev cmake g++ ninja-build pkg-config libbenchmark-dev
  libcurl4-openssl-dev libgumbo-dev libcli11-dev libssl-dev zlib1g-dev python3
  python3-doc gnuplot-nox"

cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
  sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# Installs the packages in $PACKAGES and "$@" that dpkg does not list as
# installed: as root directly, else through sudo if it needs no password, else
# prints the command to run and fails.
ensure_packages() {
  local missing=() pkg
  for pkg in $PACKAGES "$@"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  echo "run.sh: missing Debian packages: ${missing[*]}" >&2
  local sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      echo "run.sh: install them with:" >&2
      echo "  sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# Configures, builds and tests with a preset from CMakePresets.json: that is
# `cmake --workflow --preset NAME`. ERRGROUP_WERROR or ERRGROUP_BUILD_DIR
# change the preset's settings, so then the three steps are spelled out.
# $2 is the default for ERRGROUP_WERROR; the rest goes to ctest.
workflow() {
  local preset=$1 werror=OFF
  [[ "${ERRGROUP_WERROR:-$2}" =~ ^(1|[Oo][Nn]|[Tt][Rr][Uu][Ee]|[Yy][Ee][Ss])$ ]] && werror=ON
  shift 2
  if [[ -z "${ERRGROUP_WERROR:-}" && -z "${ERRGROUP_BUILD_DIR:-}" ]]; then
    cmake --workflow --preset "$preset"
    return
  fi
  local dir=${ERRGROUP_BUILD_DIR:-build/$preset}
  cmake --preset "$preset" -B "$dir" -DERRGROUP_WARNINGS_AS_ERRORS="$werror"
  cmake --build "$dir"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j 2 --timeout 300 "$@"
}

case "${1:-}" in
  samples)
    ensure_packages
    workflow samples 0 -L sample
    ;;
  test)
    ensure_packages
    workflow dev 1
    ;;
  deps)
    shift
    ensure_packages "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
