#!/usr/bin/env bash
# Build oneTBB 2021.8 with ThreadSanitizer from Debian's own source package, and cache the install.
#
#   .ci/tsan-tbb.sh [CACHE_DIR]        # CACHE_DIR defaults to <repo>/build/tsan-tbb
#
# The install prefix is CACHE_DIR/install (TBBConfig.cmake is in CACHE_DIR/install/lib/cmake/TBB).
# On success, the prefix is the only line printed on stdout; progress goes to stderr. Use it with:
#
#   prefix=$(.ci/tsan-tbb.sh)
#   cmake -S . -B build/tsan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DERRGROUP_SANITIZER=thread \
#         -DCMAKE_PREFIX_PATH="$prefix"
#
# Why: the distro libtbb.so is not instrumented, so TSan cannot see the hand-off inside it and reports
# false races in TBB's header code. The oneTBB maintainers advise rebuilding it with
# TBB_SANITIZE=thread (oneTBB issues #1290 and #358).
#
# How:
# - The default apt sources have no deb-src entries. The script derives deb-src entries from the
#   machine's own apt sources (one-line and deb822 files; only suites of this Debian release) and
#   writes them to a PRIVATE sources list and lists directory under CACHE_DIR. The system apt
#   configuration and state are not touched by that step.
# - Missing tools (clang, TSan runtime, cmake, ninja-build, dpkg-dev) are installed with apt-get.
# - Cached: if the install exists and its stamp matches the key (oneTBB series, compiler, flags),
#   it exits at once. Everything downloaded or built stays under CACHE_DIR; nothing is vendored.
#
# Notes:
# - The instrumented libtbb.so has unresolved __tsan_* symbols: only load it into programs built with
#   -fsanitize=thread (the runtime in the executable provides them).
#   A program built without it fails to link ("undefined reference to __tsan_...").
# - Built with clang++ for the clang++ TSan job. A g++ -fsanitize=thread program also links and runs
#   clean against it (GCC 12's libtsan.so.2 exports every __tsan_* symbol it uses); this mix is
#   untested upstream. The reverse does not work: a g++-built copy (TSAN_TBB_CXX=g++, use another
#   CACHE_DIR) has DT_NEEDED libtsan.so.2, and a clang++ TSan program then crashes at start-up.
# - Sources and the build tree are deleted after a successful install, so TSan reports show file:line
#   for libtbb frames, but the files are gone.
#
# Environment overrides (optional):
#   TSAN_TBB_CXX           compiler (default: clang++)
#   TSAN_TBB_SOURCES_LIST  a ready-made one-line sources.list with deb-src entries (skips derivation)
set -Eeuo pipefail

readonly SERIES=2021.8            # oneTBB series the project targets; the Debian source must match it
readonly SRCPKG=onetbb            # Debian source package
readonly SCRIPT_REV=1             # bump to force a rebuild of every cache after editing this script
CXX=${TSAN_TBB_CXX:-clang++}

log() { printf 'tsan-tbb: %s\n' "$*" >&2; }
CUR_LOG=
die() {
  trap - ERR
  if [[ -n $CUR_LOG && -s $CUR_LOG && -n ${CI:-} ]]; then
    { echo "---- last lines of $CUR_LOG ----"; tail -n 25 "$CUR_LOG"; echo "----"; } >&2
  fi
  printf 'tsan-tbb: error: %s%s\n' "$*" "${CUR_LOG:+ (log: $CUR_LOG)}" >&2
  exit 1
}
trap 'die "unexpected failure (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

# ---- paths -------------------------------------------------------------------------------------
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-$script_dir/../build/tsan-tbb}
mkdir -p -- "$cache" || die "cannot create cache directory '$cache'"
cache=$(cd -- "$cache" && pwd)
[[ $cache != / ]] || die "refusing to use / as cache directory"
prefix=$cache/install
config=$prefix/lib/cmake/TBB/TBBConfig.cmake
stamp=$cache/stamp
logs=$cache/logs

cmake_args=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
  -DTBB_SANITIZE=thread
  -DTBB_TEST=OFF
  -DTBBMALLOC_BUILD=OFF
  -DTBB_STRICT=OFF
  -DTBB_DISABLE_HWLOC_AUTOMATIC_SEARCH=ON
  -DTBB_EXAMPLES=OFF
  -DCMAKE_INSTALL_LIBDIR=lib
)

# The cache key: everything that decides the binary, known without network access.
cache_key() {
  local v
  v=$("$CXX" --version 2>/dev/null | head -n 1) || return 1
  [[ -n $v ]] || return 1
  printf 'rev=%s\nseries=%s\npackage=%s\ncxx=%s\ncxx-version=%s\ncmake-args=%s\n' \
    "$SCRIPT_REV" "$SERIES" "$SRCPKG" "$CXX" "$v" "${cmake_args[*]}"
}
# Stamp = key lines, plus informational lines starting with '#'.
is_cached() {
  local key
  [[ -f $config && -f $stamp ]] || return 1
  key=$(cache_key) || return 1
  [[ "$(grep -v '^#' "$stamp")" == "$key" ]]
}
done_ok() {
  printf '%s\n' "$prefix"
  exit 0
}

if is_cached; then
  log "cached: $(grep '^# debian-source=' "$stamp" | cut -d= -f2-) in $prefix"
  done_ok
fi

# One build at a time per cache directory (e.g. two CI steps sharing a workspace).
if command -v flock >/dev/null; then
  exec 9>"$cache/.lock"
  flock 9
  if is_cached; then log "cached (built by a concurrent run)"; done_ok; fi
fi

mkdir -p "$logs"

# ---- tools -------------------------------------------------------------------------------------
SUDO=()
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=(sudo -n); fi
fi
apt_updated=
apt_install() {
  CUR_LOG=$logs/apt-install.log
  [[ $(id -u) == 0 || ${#SUDO[@]} -gt 0 ]] || die "need root (or sudo) to install: $*"
  log "installing: $*"
  local cmd=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  if ! "${cmd[@]}" >>"$CUR_LOG" 2>&1; then
    # A fresh image often has empty package lists: update the system lists once and retry.
    [[ -z $apt_updated ]] || die "apt-get install $* failed"
    apt_updated=1
    "${SUDO[@]}" apt-get update -q >>"$CUR_LOG" 2>&1 || die "apt-get update failed"
    "${cmd[@]}" >>"$CUR_LOG" 2>&1 || die "apt-get install $* failed"
  fi
  CUR_LOG=
}

missing=()
if ! command -v "$CXX" >/dev/null; then
  case $CXX in
    clang++) missing+=(clang) ;;
    clang++-[0-9]*) missing+=("clang-${CXX#clang++-}") ;;
    *) die "compiler '$CXX' not found" ;;
  esac
fi
command -v cmake >/dev/null       || missing+=(cmake)
command -v ninja >/dev/null       || missing+=(ninja-build)
command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
command -v xz >/dev/null          || missing+=(xz-utils)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
command -v "$CXX" >/dev/null || die "compiler '$CXX' still not found after installing packages"

# The TSan runtime is only a Recommends of clang-NN (libclang-rt-NN-dev), so check that it links.
tsan_link_test() {
  local d=$cache/tsan-check
  mkdir -p "$d"
  printf 'int main() { return 0; }\n' >"$d/t.cpp"
  "$CXX" -fsanitize=thread "$d/t.cpp" -o "$d/t" >"$d/log" 2>&1 && "$d/t" >>"$d/log" 2>&1
}
if ! tsan_link_test; then
  major=$("$CXX" -dumpversion 2>/dev/null | cut -d. -f1)
  [[ $("$CXX" --version | head -n 1) == *clang* && -n $major ]] ||
    die "'$CXX' cannot build a -fsanitize=thread program (see $cache/tsan-check/log)"
  apt_install "libclang-rt-$major-dev"
  tsan_link_test || die "'$CXX' cannot build a -fsanitize=thread program (see $cache/tsan-check/log)"
fi
rm -rf "$cache/tsan-check"

if is_cached; then log "cached: $prefix"; done_ok; fi
key=$(cache_key)

# ---- private deb-src sources -------------------------------------------------------------------
aptdir=$cache/apt
rm -rf "$aptdir"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
srclist=$aptdir/sources.list

# shellcheck disable=SC1091
codename=$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}") || codename=
[[ -n $codename ]] || die "cannot read VERSION_CODENAME from /etc/os-release"

suite_ok() { [[ $1 == "$codename" || $1 == "$codename"-* || $1 == "$codename"/* ]]; }

# One-line format: "deb [opts] uri suite comp..." -> "deb-src [opts] uri suite comp..."
from_one_line() {
  local line opts rest uri suite comps
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*(deb|deb-src)[[:space:]]+(.*)$ ]] || continue
    rest=${BASH_REMATCH[2]}
    opts=
    if [[ $rest =~ ^\[([^]]*)\][[:space:]]*(.*)$ ]]; then
      opts="[${BASH_REMATCH[1]}] "
      rest=${BASH_REMATCH[2]}
    fi
    read -r uri suite comps <<<"$rest" || true
    [[ -n $uri && -n $suite && -n $comps ]] || continue
    suite_ok "$suite" || continue
    printf 'deb-src %s%s %s %s\n' "$opts" "$uri" "$suite" "$comps"
  done <"$1"
}

# deb822 format (.sources): each stanza with Types deb -> one-line deb-src entries.
from_deb822() {
  awk -v codename="$codename" '
    function flush(   n, u, s, i, j, opts, comps, types, uris, suites, ok) {
      if (!have) return
      have = 0
      if (tolower(f["enabled"]) == "no") return
      if (f["types"] !~ /(^|[ \t])deb(-src)?([ \t]|$)/) return
      if (f["components"] == "") return
      opts = ""
      if (f["signed-by"] != "" && !multiline["signed-by"]) {
        sb = f["signed-by"]; gsub(/[ \t]+/, ",", sb); opts = opts " signed-by=" sb
      }
      if (f["trusted"] != "") opts = opts " trusted=" f["trusted"]
      if (opts != "") opts = "[" substr(opts, 2) "] "
      n = split(f["uris"], uris, /[ \t]+/)
      m = split(f["suites"], suites, /[ \t]+/)
      for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
        s = suites[j]
        ok = (s == codename || index(s, codename "-") == 1 || index(s, codename "/") == 1)
        if (uris[i] != "" && ok) printf "deb-src %s%s %s %s\n", opts, uris[i], s, f["components"]
      }
    }
    /^#/ { next }
    /^[ \t]*$/ { flush(); delete f; delete multiline; last = ""; next }
    /^[ \t]/ { if (last != "") multiline[last] = 1; next }
    {
      have = 1
      k = tolower(substr($0, 1, index($0, ":") - 1))
      v = substr($0, index($0, ":") + 1)
      gsub(/^[ \t]+|[ \t]+$/, "", v)
      f[k] = v; last = k
    }
    END { flush() }
  ' "$1"
}

if [[ -n ${TSAN_TBB_SOURCES_LIST:-} ]]; then
  cp -- "$TSAN_TBB_SOURCES_LIST" "$srclist" 2>/dev/null || die "cannot read TSAN_TBB_SOURCES_LIST=$TSAN_TBB_SOURCES_LIST"
else
  # Read the files the system apt actually uses (honours a non-default Dir::Etc configuration).
  eval "$(apt-config shell SYS_LIST Dir::Etc::SourceList/f SYS_PARTS Dir::Etc::SourceParts/d)"
  {
    [[ -f ${SYS_LIST:-} ]] && from_one_line "$SYS_LIST"
    if [[ -d ${SYS_PARTS:-} ]]; then
      for f in "$SYS_PARTS"/*.list; do [[ -f $f ]] && from_one_line "$f"; done
      for f in "$SYS_PARTS"/*.sources; do [[ -f $f ]] && from_deb822 "$f"; done
    fi
    true
  } | awk '!seen[$0]++' >"$srclist"
fi
[[ -s $srclist ]] || die "no apt source for Debian '$codename' found to derive a deb-src entry from (set TSAN_TBB_SOURCES_LIST)"
log "deb-src entries: $(sed 's/\[[^]]*\] //' "$srclist" | cut -d' ' -f2-3 | paste -sd';' | sed 's/;/; /g')"

apt_priv=(
  -o "Dir::Etc::SourceList=$srclist"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$aptdir/lists"
  -o "Dir::Cache=$aptdir/cache"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root"
)
CUR_LOG=$logs/apt-source.log
: >"$CUR_LOG"
log "fetching Debian source package '$SRCPKG' (private apt lists in $aptdir)"
if ! apt-get "${apt_priv[@]}" -q update >>"$CUR_LOG" 2>&1; then
  log "warning: private 'apt-get update' reported errors; trying the source download anyway"
fi
# Pick the version: among the source versions of the oneTBB series, the one matching the installed
# libtbb-dev (identical headers) if available, else the newest. A newer series (e.g. from
# backports) is never picked.
upstream_of() { local v=${1#*:}; printf '%s' "${v%-*}"; }
in_series() { local u; u=$(upstream_of "$1"); [[ $u == "$SERIES" || $u == "$SERIES".* ]]; }
all_versions=$(apt-cache "${apt_priv[@]}" showsrc "$SRCPKG" 2>>"$CUR_LOG" | sed -n 's/^Version: *//p' | sort -u || true)
[[ -n $all_versions ]] || die "source package '$SRCPKG' not found through the derived deb-src entries"
debver=
installed=$(dpkg-query -W -f='${Version}' libtbb-dev 2>/dev/null || true)
if [[ -n $installed ]] && in_series "$installed" && grep -qxF -- "$installed" <<<"$all_versions"; then
  debver=$installed
else
  while IFS= read -r v; do
    in_series "$v" || continue
    if [[ -z $debver ]] || dpkg --compare-versions "$v" gt "$debver"; then debver=$v; fi
  done <<<"$all_versions"
fi
[[ -n $debver ]] ||
  die "no $SRCPKG source of the oneTBB $SERIES series available (found: $(paste -sd' ' <<<"$all_versions"))"

src=$cache/src
rm -rf "$src"
mkdir -p "$src"
(cd "$src" && apt-get "${apt_priv[@]}" -q source --download-only "$SRCPKG=$debver") >>"$CUR_LOG" 2>&1 ||
  die "apt-get source $SRCPKG=$debver failed"
dsc=$(compgen -G "$src/${SRCPKG}_*.dsc" | head -n 1 || true)
[[ -n $dsc ]] || die "no .dsc downloaded for $SRCPKG $debver"
log "building $SRCPKG $debver with $CXX -fsanitize=thread"

# apt already checked the files against the signed InRelease; dpkg-source's own .dsc signature
# check only warns when no Debian keyring is installed.
CUR_LOG=$logs/extract.log
dpkg-source -x "$dsc" "$src/tree" >"$CUR_LOG" 2>&1 || die "dpkg-source -x failed"

# ---- build and install -------------------------------------------------------------------------
obj=$cache/obj
rm -rf "$obj" "$prefix" "$stamp"
CUR_LOG=$logs/configure.log
cmake -S "$src/tree" -B "$obj" "${cmake_args[@]}" \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_INSTALL_PREFIX="$prefix" >"$CUR_LOG" 2>&1 ||
  die "cmake configure of oneTBB failed"
CUR_LOG=$logs/build.log
cmake --build "$obj" --parallel "$(nproc 2>/dev/null || echo 2)" >"$CUR_LOG" 2>&1 || die "oneTBB build failed"
CUR_LOG=$logs/install.log
cmake --install "$obj" >"$CUR_LOG" 2>&1 || die "oneTBB install failed"
[[ -f $config ]] || die "install did not produce $config"

# ---- smoke test: a task_group program must be TSan-clean against the new library ---------------
CUR_LOG=$logs/smoke.log
t=$cache/smoke
mkdir -p "$t"
cat >"$t/smoke.cpp" <<'EOF'
#include <oneapi/tbb/task_group.h>
#include <oneapi/tbb/version.h>
#include <cstdio>
int main() {
  int out[64] = {};
  for (int round = 0; round < 20; ++round) {
    tbb::task_group tg;
    for (int i = 0; i < 64; ++i) tg.run([&out, i, round] { out[i] = i + round; });
    tg.wait();
    for (int i = 0; i < 64; ++i) if (out[i] != i + round) return 2;
  }
  std::printf("oneTBB %d.%d ok\n", TBB_VERSION_MAJOR, TBB_VERSION_MINOR);
  return 0;
}
EOF
"$CXX" -std=c++20 -g -fsanitize=thread -I"$prefix/include" "$t/smoke.cpp" -o "$t/smoke" \
  -L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -ltbb -lpthread >"$CUR_LOG" 2>&1 || die "smoke test does not compile"
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$t/smoke" >>"$CUR_LOG" 2>&1 ||
  die "smoke test failed or TSan reported a race against the instrumented oneTBB"
CUR_LOG=

# ---- stamp, clean up ---------------------------------------------------------------------------
{
  printf '%s\n' "$key"
  printf '# debian-source=%s %s\n' "$SRCPKG" "$debver"
  printf '# built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$stamp.tmp"
mv -f "$stamp.tmp" "$stamp"
rm -rf "$src" "$obj" "$aptdir" "$t"
log "installed $SRCPKG $debver (TSan) into $prefix"
done_ok
