#!/usr/bin/env python3
"""bench/report.py: turns the bench_* JSON files into results.md and the
data + gnuplot script for plot.png. Called by bench/run.sh:

    report.py RAW_DIR OUT_DIR [GO_RESULTS_DIR]
    report.py --peers RAW_DIR     (bench/run.sh --peers: prints the tables)

RAW_DIR holds bench_*.json (Google Benchmark, with repetitions) and meta.txt
(key=value lines written by run.sh). Every figure is the median over the
repetitions of one process run, in which the alternatives were interleaved
(--benchmark_enable_random_interleaving). Ratios are ratios of medians.

Each section of results.md has one table definition (the *_ROWS tuples
below): a row is a benchmark, what the markdown says about it, its Go figure,
and its label in plot.png (none: not plotted). The same rows make the
markdown table and the section's plot_<name>.dat, which bench/plot.gp draws.

--peers reads the raw directory of bench/run.sh --peers (meta.txt, t<N>/
bench_*.json for each thread count N, go.txt) and prints markdown: the
side-by-side table at the largest N (PEER_ROWS) and, when there are several
thread counts, the scaling table of the same rows.
"""
import glob
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass

# A prefix whose runs saw other processes use more CPU than this (median %)
# is plotted in CPU time rather than wall time.
LOADED_PCT = 25
# Runs at or below this foreign CPU use count as clean in the notes.
CLEAN_PCT = 10


@dataclass(frozen=True)
class Row:
    """One row of a section's table, and of its plot when `plot` is set."""

    key: str  # the benchmark's name after the section's prefix
    what: str  # the markdown's description ("" where the table has none)
    go: str | None  # the Go figure beside it (None: none)
    plot: str | None = None  # the label in plot.png (None: not plotted)
    go_in_plot: bool = True  # whether the plot shows the Go figure too


# ---- the table definitions -----------------------------------------------------

SPAWN_ROWS = (
    Row("group_plain", "errgroup::group (plain)", "spawn.group.plain", "plain"),
    Row("group_context", "with_context(background)", "spawn.group.withcontext",
        "context"),
    Row("group_limit2", "plain, set_limit(2)", "spawn.group.limit2", "limit 2"),
    Row("group_limit64", "plain, set_limit(64)", "spawn.group.limit64",
        "limit 64"),
    Row("tbb_task_group", "raw tbb::task_group run+wait",
        "spawn.waitgroup-baseline", "raw tbb / go"),
    Row("thread_batch", "std::thread per batch (hw threads × N/hw calls)", None,
        "thread batch"),
)

MAP_ROWS = (
    Row("seq", "sequential loop", "map.seq"),
    Row("chunk1_unlimited", "(a) one go() per element", "map.chunk1.unlimited",
        "1/task"),
    Row("chunk1_limitP", "(a) same, set_limit(P)", "map.chunk1.limitP",
        "1/task, lim P"),
    Row("chunk4096_unlimited", "(b) one go() per 4096 elements",
        "map.chunk4096.unlimited", "4096/task"),
    Row("chunk4096_limitP", "(b) same, set_limit(P)", "map.chunk4096.limitP",
        "4096/task, lim P"),
    Row("parallel_map", "(c) errgroup::parallel_map, default options", None,
        "parallel_map"),
    Row("tbb_parallel_for", "tbb::parallel_for, auto_partitioner", None,
        "tbb pfor"),
    Row("tbb_parallel_for_4096",
        "tbb::parallel_for, grain 4096, simple_partitioner", None,
        "tbb pfor 4096"),
)

CANCEL_ROWS = (
    Row("unlimited", "", "cancel.unlimited", "unlimited"),
    Row("limitP", "", "cancel.limitP", "limit P"),
    # Go's unlimited figures stand beside raw tbb::task_group in the table,
    # not in the plot.
    Row("tbb_task_group", "", "cancel.unlimited", "raw tbb::task_group",
        go_in_plot=False),
    Row("nofail_unlimited", "", "cancel.nofail-reference.unlimited"),
)

SEM_IMPLS = ("errgroup", "counting_semaphore", "mutex_cv")
SEM_ROWS = (
    Row("uncontended_acquire", "uncontended acquire(bg,1)+release(1), 2M pairs",
        "sem.uncontended.acquire-release", "acquire"),
    Row("uncontended_try", "uncontended try_acquire(1)+release(1), 2M pairs",
        "sem.uncontended.tryacquire-release", "try"),
    Row("contended_size1_g2", "size 1, 2 threads, 1M pairs",
        "sem.contended.size1.g2", "size1 g2"),
    Row("contended_size1_g8", "size 1, 8 threads, 1M pairs",
        "sem.contended.size1.g8", "size1 g8"),
    Row("weighted_mix_g8", "size 100, 8 threads, weights 1/10, 1M pairs",
        "sem.weighted-mix.size100.g8", "mix g8"),
    Row("saturated_g32",
        "size 100, 32 threads, weights 1/10, yield while held, 500k pairs",
        "sem.weighted-mix-saturated.size100.g32", "saturated g32"),
)

MEMORY_SIZE_ROWS = (
    ("sizeof_group", "sizeof(errgroup::group)"),
    ("sizeof_context", "sizeof(errgroup::context)"),
    ("sizeof_node", "sizeof(errgroup::detail::node)"),
    ("sizeof_weighted", "sizeof(errgroup::weighted)"),
    ("sizeof_task_small_fn",
     "one task of a lambda capturing 2 pointers, bytes (oneTBB small-object pool)"),
    ("sizeof_tbb_task_group", "sizeof(tbb::task_group) (reference)"),
    ("sizeof_tbb_task_group_context",
     "sizeof(tbb::task_group_context) (inside each node)"),
)
# The groups measured for allocations per go(); all but the reference have
# the target of none.
MEMORY_ALLOC_GROUPS = ("plain", "context", "limit2", "tbb_task_group")
MEMORY_ALLOC_REFERENCE = "tbb_task_group"
MEMORY_PEAK_RSS_ROWS = (
    ("nested", "from worker threads: 100,000 outer tasks each call inner.go() "
               "(inner limit 2, held until all wait)"),
    ("external", "from an external thread: 100,000 inner.go() (blocks at the "
                 "limit)"),
)

# Side by side (--peers): one row per figure; its cells are the variants of
# each column. A C++ variant is a benchmark name, a Go one a figure of go.txt.
PEER_COLUMNS = ("errgroup", "reference: raw oneTBB / std", "Taskflow",
                "stdexec", "Go x/sync")


@dataclass(frozen=True)
class Var:
    """A variant: C++ benchmark `name` (or Go figure, go=True), its label."""

    name: str
    label: str = ""
    go: bool = False


def Go(fig, label=""):
    return Var(fig, label, go=True)


@dataclass(frozen=True)
class PeerRow:
    figure: str
    unit: str
    counter: str  # the C++ counter; "speedup": median map/seq ÷ median ms
    cells: tuple  # one tuple of Var per PEER_COLUMNS entry (empty: none)
    # A second figure shown beside each value: (C++ counter, the Go figure's
    # last name part, label), e.g. the tasks that did full work.
    extra: tuple | None = None


PEER_ROWS = (
    PeerRow("spawn+wait 1M empty tasks", "ns/task", "ns_per_task", (
        (Var("spawn/group_plain"),),
        (Var("spawn/tbb_task_group", "task_group"),),
        (Var("spawn/taskflow_task_group", "TaskGroup"),
         Var("spawn/taskflow_silent_async", "silent_async"),
         Var("spawn/taskflow_graph", "graph")),
        (Var("spawn/stdexec_async_scope", "async_scope"),
         Var("spawn/stdexec_counting_scope", "counting_scope")),
        (Go("spawn.group.plain"),
         Go("spawn.waitgroup-baseline", "WaitGroup")))),
    PeerRow("spawn+wait 1M, limit 2", "ns/task", "ns_per_task", (
        (Var("spawn/group_limit2"),),
        (),
        (Var("spawn/taskflow_limit2", "graph+Semaphore"),),
        (Var("spawn/stdexec_limit2", "by hand"),),
        (Go("spawn.group.limit2"),))),
    PeerRow("map 2^20, 4096/task", "speedup", "speedup", (
        (Var("map/chunk4096_unlimited"),),
        (Var("map/tbb_parallel_for", "parallel_for"),),
        (Var("map/taskflow_task_group_4096", "TaskGroup"),
         Var("map/taskflow_for_each_index", "for_each_index")),
        (Var("map/stdexec_async_scope_4096", "async_scope"),
         Var("map/stdexec_bulk_chunked", "bulk_chunked")),
        (Go("map.chunk4096.unlimited.speedup"),))),
    PeerRow("first error → wait returns, 10k tasks", "µs", "fail_to_wait_us", (
        (Var("cancel/unlimited", "unlimited"),),
        (Var("cancel/tbb_task_group", "task_group"),),
        (Var("cancel/taskflow_graph", "graph"),
         Var("cancel/taskflow_task_group", "TaskGroup")),
        (Var("cancel/stdexec_async_scope", "async_scope"),),
        (Go("cancel.unlimited.fail-to-wait"),)),
        extra=("full_work", "full-work", "full work")),
    PeerRow("semaphore acquire+release, uncontended", "ns", "ns_per_op", (
        (Var("sem/uncontended_acquire/errgroup", "weighted"),
         Var("sem/uncontended_acquire/errgroup_barging", "barging")),
        (Var("sem/uncontended_acquire/counting_semaphore",
             "counting_semaphore"),),
        (), (),
        (Go("sem.uncontended.acquire-release"),))),
    PeerRow("semaphore size 1, 8 OS threads", "ns/op", "ns_per_op", (
        (Var("sem/contended_size1_g8/errgroup", "weighted"),
         Var("sem/contended_size1_g8/errgroup_barging", "barging")),
        (Var("sem/contended_size1_g8/counting_semaphore",
             "counting_semaphore"),
         Var("sem/contended_size1_g8/spin_yield", "spin_yield floor")),
        (), (),
        (Go("sem.contended.size1.g8", "8 goroutines"),))),
    PeerRow("weighted mix size 100, 32 OS threads, yield while held", "ns/op",
            "ns_per_op", (
                (Var("sem/saturated_g32/errgroup", "weighted"),
         Var("sem/saturated_g32/errgroup_barging", "barging")),
                (Var("sem/saturated_g32/spin_yield", "spin_yield floor"),),
                (), (),
                (Go("sem.weighted-mix-saturated.size100.g32",
                    "32 goroutines"),))),
)

# ---- formatting ----------------------------------------------------------------


def fmt(x):
    """A figure for the markdown: about three significant digits."""
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def dat(x):
    """A value in a plot .dat file; '?' is gnuplot's missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "?"
    return f"{x:.6g}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def status(ok):
    if ok is None:
        return "n/a"
    return "**met**" if ok else "**MISSED**"


# ---- inputs --------------------------------------------------------------------


class Results:
    """The repetitions of every benchmark in RAW_DIR, and run.sh's meta.txt."""

    def __init__(self, raw_dir):
        self.runs = {}  # name -> list of per-repetition dicts
        self.errors = {}  # name -> error message
        self.contexts = {}  # JSON file name -> its "context"
        for path in sorted(glob.glob(os.path.join(raw_dir, "bench_*.json"))):
            with open(path) as f:
                doc = json.load(f)
            self.contexts[os.path.basename(path)] = doc.get("context", {})
            for bench in doc.get("benchmarks", []):
                if bench.get("run_type") != "iteration":
                    continue
                name = re.sub(r"/(iterations:\d+|manual_time|real_time)", "",
                              bench["name"])
                if bench.get("error_occurred"):
                    self.errors[name] = bench.get("error_message", "error")
                    continue
                self.runs.setdefault(name, []).append(bench)
        self.meta = {}
        meta_path = os.path.join(raw_dir, "meta.txt")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                for line in f:
                    if "=" in line:
                        key, value = line.rstrip("\n").split("=", 1)
                        self.meta[key] = value

    def context(self, json_name):
        return self.contexts.get(json_name, {})

    def first(self, name):
        """The first repetition of name, or {}."""
        return self.runs.get(name, [{}])[0]

    def values(self, name, key):
        return [r[key] for r in self.runs.get(name, []) if key in r]

    def median(self, name, key):
        v = self.values(name, key)
        return statistics.median(v) if v else None

    def spread(self, name, key):
        v = self.values(name, key)
        if not v:
            return ""
        return f"{fmt(min(v))}–{fmt(max(v))}"

    def reps(self, name):
        return len(self.runs.get(name, []))

    def foreign(self, prefix):
        return [r["foreign_cpu_pct"] for n, rs in self.runs.items()
                if n.startswith(prefix) for r in rs if "foreign_cpu_pct" in r]

    def foreign_note(self, prefix):
        fs = self.foreign(prefix)
        if not fs:
            return ""
        clean = sum(1 for x in fs if x <= CLEAN_PCT)
        return (f"CPU used by other processes during the accepted runs: median "
                f"{statistics.median(fs):.0f} %, max {max(fs):.0f} %; {clean} of "
                f"{len(fs)} runs at ≤ {CLEAN_PCT} %.\n")

    def loaded(self, prefix):
        """Whether other processes loaded the machine during prefix's runs."""
        fs = self.foreign(prefix)
        return (statistics.median(fs) if fs else 0.0) > LOADED_PCT


class GoFigures:
    """Go's figures from GO_RESULTS_DIR: runs A and B (and the newest)."""

    def __init__(self, go_dir):
        self.figures = {}  # (run, "P2/figure") -> value; run in A, B, newest
        if not go_dir or not os.path.isdir(go_dir):
            return
        for path in sorted(glob.glob(os.path.join(go_dir, "*.txt"))):
            base = os.path.basename(path)
            run = "A" if "runA" in base else "B" if "runB" in base else "newest"
            with open(path) as f:
                for line in f:
                    m = re.match(r"^(P\d+/\S+)\s+([0-9.]+)\s+(\S+)", line)
                    if m:
                        self.figures[(run, m.group(1))] = float(m.group(2))

    def pair(self, fig, procs="P2"):
        a = self.figures.get(("A", f"{procs}/{fig}"))
        b = self.figures.get(("B", f"{procs}/{fig}"))
        if a is None and b is None:
            return None
        return (a, b)

    def text(self, fig):
        """'A / B' for the markdown; '—' for no figure."""
        v = self.pair(fig) if fig else None
        if v is None:
            return "—"
        return f"{fmt(v[0])} / {fmt(v[1])}"

    def mean(self, fig):
        """The mean of runs A and B, for the plot; None for no figure."""
        v = self.pair(fig) if fig else None
        if v is None:
            return None
        xs = [x for x in v if x is not None]
        return sum(xs) / len(xs)


# ---- sections ------------------------------------------------------------------


class Section:
    """A section's markdown lines, its targets and its plot rows."""

    def __init__(self):
        self.md = []
        self.targets = []  # (target, measured, met)
        self.plot = []  # (label, [values])
        self.plot_columns = "cpp go"  # the .dat file's columns after the label
        self.plot_vars = {}  # gnuplot variables for plot_targets.gp


def spawn_section(res, go):
    sec = Section()
    prefix = "spawn/"
    tbb = res.median(prefix + "tbb_task_group", "ns_per_task")
    tbb_cpu = res.median(prefix + "tbb_task_group", "cpu_ns_per_task")
    plain = res.median(prefix + "group_plain", "ns_per_task")
    plain_cpu = res.median(prefix + "group_plain", "cpu_ns_per_task")
    sec.md += [
        "## 1. spawn+wait: 1,000,000 empty tasks, fresh group, then wait()\n",
        "ns per task = wall / N (creating the group, every go(), wait()). Go's "
        "`spawn.waitgroup-baseline` (raw `go` + `sync.WaitGroup`) sits beside "
        "raw `tbb::task_group`.\n",
        "| variant | what | median ns/task | range | × tbb::task_group | × group_plain | CPU ns/task (all threads) | CPU × tbb::task_group | reps | Go P2 ns/task (A / B) | Go figure |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    plot_metric = "cpu_ns_per_task" if res.loaded(prefix) else "ns_per_task"
    for row in SPAWN_ROWS:
        name = prefix + row.key
        v = res.median(name, "ns_per_task")
        cpu = res.median(name, "cpu_ns_per_task")
        sec.md.append(
            f"| `{row.key}` | {row.what} | {fmt(v)} | {res.spread(name, 'ns_per_task')} | "
            f"{fmt(ratio(v, tbb))} | {fmt(ratio(v, plain))} | {fmt(cpu)} | "
            f"{fmt(ratio(cpu, tbb_cpu))} | {res.reps(name)} | "
            f"{go.text(row.go)} | {('`' + row.go + '`') if row.go else ''} |")
        sec.plot.append((row.plot, [res.median(name, plot_metric),
                                    go.mean(row.go)]))
    sec.md.append("")
    sec.md.append(res.foreign_note(prefix))
    for key, base, base_cpu, base_name, limit in (
            ("group_plain", tbb, tbb_cpu, "raw tbb::task_group", 1.15),
            ("group_context", tbb, tbb_cpu, "raw tbb::task_group", 1.15),
            ("group_limit2", plain, plain_cpu, "unlimited group", 2.0),
            ("group_limit64", plain, plain_cpu, "unlimited group", 2.0)):
        v = res.median(prefix + key, "ns_per_task")
        r = ratio(v, base)
        rc = ratio(res.median(prefix + key, "cpu_ns_per_task"), base_cpu)
        sec.targets.append((f"spawn+wait `{key}` ≤ {limit:g}× {base_name}",
                            f"{fmt(r)}× ({fmt(v)} vs {fmt(base)} ns/task); CPU time: {fmt(rc)}×",
                            None if r is None else r <= limit))
    plot_tbb = res.median(prefix + "tbb_task_group", plot_metric)
    plot_plain = res.median(prefix + "group_plain", plot_metric)
    sec.plot_vars = {
        "tbb_ns": dat(plot_tbb) if plot_tbb else "NaN",
        "plain_ns": dat(plot_plain) if plot_plain else "NaN",
    }
    return sec


def map_section(res, go):
    sec = Section()
    prefix = "map/"
    seq = res.median(prefix + "seq", "ms")
    pf_speed = ratio(seq, res.median(prefix + "tbb_parallel_for", "ms"))
    ctx = res.context("bench_map.json")
    sec.md += [
        "## 2. map: 2^20 doubles × 200 iterations of x = x*1.0000001 + 0.5\n",
        f"Checksum {ctx.get('map_checksum', '?')} against Go's 105382941.32586102: "
        f"**{ctx.get('map_checksum_vs_go', '?')}** (n = {ctx.get('map_n', '?')}; "
        "every variant's output is compared bit for bit with the sequential "
        f"one after each run). P = {ctx.get('map_P', '?')}. speedup = median seq / median variant.\n",
        "| variant | what | median ms | range | speedup | × tbb::parallel_for speedup | reps | Go P2 ms (A / B) | Go P2 speedup (A / B) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in MAP_ROWS:
        name = prefix + row.key
        v = res.median(name, "ms")
        speedup = ratio(seq, v)
        go_speedup = row.go + ".speedup" if row.go and row.key != "seq" else None
        if row.plot and v is not None:
            sec.plot.append((row.plot, [speedup, go.mean(go_speedup)]))
        if name in res.errors:
            sec.md.append(f"| `{row.key}` | {row.what} | error: {res.errors[name]} | | | | | | |")
        elif v is not None:
            sec.md.append(
                f"| `{row.key}` | {row.what} | {fmt(v)} | {res.spread(name, 'ms')} | {fmt(speedup)} | "
                f"{fmt(ratio(speedup, pf_speed))} | {res.reps(name)} | {go.text(row.go)} | "
                f"{go.text(go_speedup)} |")
    sec.md.append("")
    sec.md.append(res.foreign_note(prefix))
    chunked = ratio(seq, res.median(prefix + "chunk4096_unlimited", "ms"))
    r = ratio(chunked, pf_speed)
    sec.targets.append(("map, 4096 elements/task: speedup ≥ 0.98× tbb::parallel_for's",
                        f"{fmt(r)}× (speedup {fmt(chunked)} vs {fmt(pf_speed)})",
                        None if r is None else r >= 0.98))
    if res.median(prefix + "parallel_map", "ms") is not None:
        mapped = ratio(seq, res.median(prefix + "parallel_map", "ms"))
        sec.targets.append(("(info) map, parallel_map: speedup vs tbb::parallel_for's",
                            f"{fmt(ratio(mapped, pf_speed))}× (speedup {fmt(mapped)} vs {fmt(pf_speed)})",
                            None))
    sec.plot_vars = {"pf_speed": dat(pf_speed) if pf_speed else "NaN"}
    return sec


def cancel_section(res, go):
    sec = Section()
    prefix = "cancel/"
    ctx = res.context("bench_cancel.json")
    sec.md += [
        "## 3. first-error cancellation: 10,000 tasks × 100 units of ~1 µs, task #100 fails at start\n",
        f"Spin calibrated at start: {ctx.get('spin_iters', '?')} LCG iterations ≈ 1 µs "
        f"(Go: 898–949). P = {ctx.get('cancel_P', '?')}. *fail→wait* = the failing task returns → "
        "wait() returns. *skipped* = tasks never invoked (errgroup drops queued "
        "work once the context is cancelled; Go starts every goroutine, golang/go#61611).\n",
        "| figure | wait ms | fail→wait µs (range) | full-work | partial | saw cancel before unit 1 | skipped | reps | Go P2 wait ms | Go P2 fail→wait µs | Go P2 full-work |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in CANCEL_ROWS:
        name = prefix + row.key
        ftw = res.median(name, "fail_to_wait_us")
        if row.plot:  # plotted also when it did not run
            go_ftw = row.go + ".fail-to-wait" if row.go_in_plot else None
            sec.plot.append((row.plot, [ftw, go.mean(go_ftw)]))
        if name not in res.runs:
            continue
        sec.md.append(
            f"| `{row.key}` | {fmt(res.median(name, 'wait_ms'))} | "
            f"{fmt(ftw) + ' (' + res.spread(name, 'fail_to_wait_us') + ')' if ftw is not None else '—'} | "
            f"{fmt(res.median(name, 'full_work'))} | {fmt(res.median(name, 'partial_work'))} | "
            f"{fmt(res.median(name, 'none_work'))} | "
            f"{fmt(res.median(name, 'skipped'))} | {res.reps(name)} | {go.text(row.go + '.wait')} | "
            f"{go.text(row.go + '.fail-to-wait')} | {go.text(row.go + '.full-work')} |")
    sec.md.append("")
    sec.md.append(res.foreign_note(prefix))
    sec.md.append("Ideal for `nofail_unlimited`: 10,000 × 100 µs / P = "
                  f"{fmt(10000 * 100 / 1000 / float(ctx.get('cancel_P', 2) or 2))} ms "
                  "(checks the calibration).\n")
    tbb = res.median(prefix + "tbb_task_group", "fail_to_wait_us")
    for key in ("unlimited", "limitP"):
        v = res.median(prefix + key, "fail_to_wait_us")
        best = min(res.values(prefix + key, "fail_to_wait_us") or [float("nan")])
        sec.targets.append((f"cancel `{key}`: failure → wait() ≤ 0.5 ms at 10,000 tasks",
                            f"{fmt(v)} µs, best run {fmt(best)} µs "
                            f"(raw tbb::task_group: {fmt(tbb)} µs; Go P2: {go.text('cancel.' + key + '.fail-to-wait')} µs)",
                            None if v is None else v <= 500))
    return sec


def sem_section(res, go):
    sec = Section()
    sec.md += [
        "## 4. semaphores: ns per acquire+release pair\n",
        "Threads are `std::thread`s (outside oneTBB), so a waiting "
        "`errgroup::weighted::acquire` blocks its thread. `counting_semaphore` "
        "is `std::counting_semaphore<>` (single units only, so not in the "
        "weighted figures); `mutex_cv` is a plain mutex + condition_variable "
        "semaphore (not FIFO), for reference; *atomic CAS floor* is one CAS to take "
        "and one to give back on a bare atomic (uncontended only): the floor "
        "for any CAS-based semaphore on this machine. Go's `sem.uncontended.chan-reference` "
        f"(buffered channel) is {go.text('sem.uncontended.chan-reference')} ns.\n",
        "| figure | what | errgroup::weighted | range | errgroup CPU ns/pair | std::counting_semaphore | mutex+condvar | atomic CAS floor | errgroup ÷ mutex_cv | reps | Go P2 (A / B) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    loaded = res.loaded("sem/")
    sec.plot_columns = "errgroup counting mutexcv go"
    plot_metric = "cpu_ns_per_op" if loaded else "ns_per_op"
    for row in SEM_ROWS:
        ours = f"sem/{row.key}/errgroup"
        vals = {i: res.median(f"sem/{row.key}/{i}", "ns_per_op")
                for i in SEM_IMPLS + ("atomic_floor",)}
        sec.md.append(
            f"| `{row.key}` | {row.what} | {fmt(vals['errgroup'])} | {res.spread(ours, 'ns_per_op')} | "
            f"{fmt(res.median(ours, 'cpu_ns_per_op'))} | "
            f"{fmt(vals['counting_semaphore']) if vals['counting_semaphore'] is not None else 'n/a'} | "
            f"{fmt(vals['mutex_cv'])} | {fmt(vals['atomic_floor']) if vals['atomic_floor'] is not None else 'n/a'} | "
            f"{fmt(ratio(vals['errgroup'], vals['mutex_cv']))} | "
            f"{res.reps(ours)} | {go.text(row.go)} |")
        sec.plot.append((row.plot, [res.median(f"sem/{row.key}/{i}", plot_metric)
                                    for i in SEM_IMPLS] + [go.mean(row.go)]))
    sec.md.append("")
    sec.md.append(res.foreign_note("sem/"))
    for row, what in ((SEM_ROWS[0], "acquire+release"), (SEM_ROWS[1], "try_acquire+release")):
        ours, floor = f"sem/{row.key}/errgroup", f"sem/{row.key}/atomic_floor"
        v = res.median(ours, "ns_per_op")
        vc = res.median(ours, "cpu_ns_per_op")
        sec.targets.append((f"semaphore uncontended {what} ≤ 20 ns",
                            f"{fmt(v)} ns wall, {fmt(vc)} ns CPU time (bare-CAS floor: "
                            f"{fmt(res.median(floor, 'ns_per_op'))} ns wall, "
                            f"{fmt(res.median(floor, 'cpu_ns_per_op'))} ns CPU; Go P2: {go.text(row.go)} ns)",
                            None if v is None else (vc if loaded and vc is not None else v) <= 20))
    return sec


def memory_section(res):
    sec = Section()
    sec.md.append("## 5. memory\n")
    sizes = res.first("memory/sizes")
    sec.md.append("| object | bytes |\n|---|---:|")
    for key, what in MEMORY_SIZE_ROWS:
        if key in sizes:
            sec.md.append(f"| {what} | {fmt(sizes[key])} |")
    sec.md.append("")
    node = res.first("memory/context_node")
    if node:
        sec.md += [
            "**Bytes per context node** (counting operator new over 1,000 "
            "children of one root; malloc = mallinfo2 delta, includes "
            "malloc headers):\n",
            "| measure | value |\n|---|---:|",
            f"| operator new calls per node::make(parent) | {fmt(node.get('new_calls_per_node'))} |",
            f"| operator new bytes per node | {fmt(node.get('new_bytes_per_node'))} |",
            f"| malloc bytes per node (mallinfo2) | {fmt(node.get('malloc_bytes_per_node'))} |",
            f"| operator new calls / bytes per with_cancel(parent) | {fmt(node.get('with_cancel_new_calls'))} / {fmt(node.get('with_cancel_new_bytes'))} |",
            "",
            f"Allocation sizes in order: {node.get('label', '')}. For a node: "
            "`sizeof(node)`, then the `shared_ptr` control block (the node "
            "is made with `shared_ptr(new node)`, not `make_shared`), then "
            "the `std::stop_source` state.\n"]
    sec.md += [
        "**Heap allocations per go()** (global operator new replaced by a "
        "counting one; 100,000 go() of a lambda capturing 2 pointers; group "
        "construction excluded, wait() included):\n",
        "| group | operator new calls per go() | bytes per go() | malloc delta bytes per go() |\n|---|---:|---:|---:|"]
    for key in MEMORY_ALLOC_GROUPS:
        run = res.first(f"memory/allocs_per_go/{key}")
        if not run:
            continue
        sec.md.append(f"| `{key}` | {run.get('new_calls_per_go', 0):.6g} | "
                      f"{run.get('new_bytes_per_go', 0):.4g} | {run.get('malloc_delta_bytes_per_go', 0):.4g} |")
        if key != MEMORY_ALLOC_REFERENCE:
            v = run.get("new_calls_per_go")
            sec.targets.append((f"0 operator new per go() (`{key}` group)",
                                f"{v:.6g} per go() ({run.get('go_calls', 0):.0f} calls)",
                                v is not None and v * run.get("go_calls", 1) < 1))
    sec.md += [
        "",
        "**Peak RSS** while 100,000 go() calls meet a limit-2 group (each "
        "scenario in a fresh child process; growth = VmHWM after − VmRSS "
        "before, after resetting VmHWM):\n",
        "| scenario | peak waiting go() | peak RSS growth KiB | bytes per go() | operator new per go() | time ms |\n|---|---:|---:|---:|---:|---:|"]
    for key, what in MEMORY_PEAK_RSS_ROWS:
        name = f"memory/peak_rss/{key}"
        run = res.first(name)
        if run:
            sec.md.append(f"| `{key}`: {what} | {fmt(run.get('peak_waiting'))} | "
                          f"{fmt(run.get('peak_rss_growth_kb'))} | {fmt(run.get('bytes_per_go'))} | "
                          f"{run.get('new_calls_per_go', 0):.4g} | {fmt(run.get('real_time'))} |")
        elif name in res.errors:
            sec.md.append(f"| `{key}` | error: {res.errors[name]} | | | | |")
    sec.md.append("")
    return sec


# ---- output --------------------------------------------------------------------


def header(res):
    meta = res.meta
    md = ["# errgroup benchmarks: C++/oneTBB against Go's x/sync, side by side\n",
          "Generated by `bench/run.sh`. Every figure is the **median** over "
          f"{meta.get('reps', '?')} repetitions of one process run per binary, with "
          "the alternatives of each comparison **interleaved** in random order "
          "(`--benchmark_enable_random_interleaving`) after one warm-up run each; "
          "ratios are ratios of medians, so they hold on a noisy machine. "
          "*range* is min–max over the repetitions. Go figures are the P2 "
          "(GOMAXPROCS=2) medians of runs A / B from "
          "`shared/peers/go/results/go1.19.8_xsync-v0.1.0_run{A,B}.txt`, "
          "measured on this machine with the same workload definitions.\n"]
    ctx0 = next(iter(res.contexts.values()), {})
    md.append("| | |\n|---|---|")
    for key, value in [
        ("date", meta.get("date", ctx0.get("date", ""))),
        ("git", meta.get("git", "")),
        ("machine", meta.get("machine", f"{ctx0.get('num_cpus', '?')} CPUs")),
        ("compiler", meta.get("compiler", "")),
        ("oneTBB", meta.get("tbb", "")),
        ("Google Benchmark", meta.get("benchmark", "")),
        ("load average before / after",
         f"{meta.get('load_start', '?')} / {meta.get('load_end', '?')}"),
        ("mode", meta.get("mode", "full")),
    ]:
        md.append(f"| {key} | {value} |")
    md.append("")
    return md


def write_markdown(path, res, sections):
    md = header(res)
    md.append("## Targets\n")
    md.append("| target | measured | status |\n|---|---|---|")
    for sec in sections:
        for target, measured, ok in sec.targets:
            md.append(f"| {target} | {measured} | {status(ok)} |")
    md.append("")
    if res.errors:
        md.append("**Errors:** " + "; ".join(f"`{k}`: {v}" for k, v in res.errors.items()) + "\n")
    for sec in sections:
        md.extend(sec.md)
    md.append("![plot](plot.png)\n")
    with open(path, "w") as f:
        f.write("\n".join(md))


def write_plot(out_dir, res, sections):
    """plot_<name>.dat for each plotted section (name -> Section, in plot
    order), and plot_targets.gp."""
    for name, sec in sections.items():
        with open(os.path.join(out_dir, f"plot_{name}.dat"), "w") as f:
            f.write(f"# label {sec.plot_columns}\n")
            for label, values in sec.plot:
                f.write(f'"{label}" ' + " ".join(dat(v) for v in values) + "\n")
    loaded = {name: res.loaded(name + "/") for name in sections}
    loaded_note = "\\n[machine loaded by other processes: wall times inflated]"
    lines = [f"n_{name} = {len(sec.plot)}" for name, sec in sections.items()]
    lines += [
        f"tbb_ns = {sections['spawn'].plot_vars['tbb_ns']}",
        f"plain_ns = {sections['spawn'].plot_vars['plain_ns']}",
        f'spawn_metric = "{"CPU ns / task (all threads)" if loaded["spawn"] else "ns / task"}"',
        f'sem_metric = "{"CPU ns / pair" if loaded["sem"] else "ns / pair"}"',
        'spawn_note = "{}"'.format(
            "\\n[machine loaded: CPU time of all threads shown; Go: wall]"
            if loaded["spawn"] else ""),
        'sem_note = "{}"'.format(
            "\\n[machine loaded: CPU time shown; Go: wall]" if loaded["sem"] else ""),
        f'map_note = "{loaded_note if loaded["map"] else ""}"',
        f'cancel_note = "{loaded_note if loaded["cancel"] else ""}"',
        f"pf_speed = {sections['map'].plot_vars['pf_speed']}",
    ]
    with open(os.path.join(out_dir, "plot_targets.gp"), "w") as f:
        f.write("".join(line + "\n" for line in lines))


def peer_value(res, go_figs, procs, row, var):
    """The figure of one variant at one thread count, or None."""
    if var.go:
        return go_figs.get(f"P{procs}/{var.name}")
    if row.counter == "speedup":
        return ratio(res.median("map/seq", "ms"), res.median(var.name, "ms"))
    return res.median(var.name, row.counter)


def peer_extra(res, go_figs, procs, row, var):
    """Row.extra of one variant, as ", <value> <label>", or ""."""
    if row.extra is None:
        return ""
    counter, go_part, label = row.extra
    if var.go:
        v = go_figs.get(f"P{procs}/{var.name.rsplit('.', 1)[0]}.{go_part}")
    else:
        v = res.median(var.name, counter) if res else None
    return f", {v:,.0f} {label}" if v is not None else ""


def peer_text(res, go_figs, procs, row, var, label=""):
    """One variant's figure for a table cell: "value (label; extra)"."""
    if not var.go and res is not None and var.name in res.errors:
        return "error" + (f" ({label})" if label else "")
    v = peer_value(res, go_figs, procs, row, var)
    text = fmt(v) + ("×" if row.counter == "speedup" and v is not None else "")
    notes = [label] if label else []
    if v is not None and row.extra is not None:
        extra = peer_extra(res, go_figs, procs, row, var)
        if extra:
            notes.append(extra[2:])
    return text + (f" ({'; '.join(notes)})" if notes else "")


def peer_cell(res, go_figs, procs, row, variants):
    if not variants:
        return "n/a"
    return "; ".join(peer_text(res, go_figs, procs, row, var, var.label)
                     for var in variants)


def read_go(path):
    """P<N>/<figure> -> value from Go's run.sh output."""
    figs = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                m = re.match(r"^(P\d+/\S+)\s+([0-9.]+)\s+(\S+)", line)
                if m:
                    figs[m.group(1)] = float(m.group(2))
    return figs


def peers_report(raw_dir):
    """The markdown of bench/run.sh --peers: the side-by-side table at the
    largest thread count, then the scaling table over all of them."""
    meta = Results(raw_dir).meta  # only meta.txt
    runs = {}
    for d in sorted(glob.glob(os.path.join(raw_dir, "t*"))):
        m = re.match(r"t(\d+)$", os.path.basename(d))
        if m:
            runs[int(m.group(1))] = Results(d)
    go_figs = read_go(os.path.join(raw_dir, "go.txt"))
    if not runs:
        sys.exit(f"report.py --peers: no t<N>/bench_*.json in {raw_dir}")
    top = max(runs)
    res = runs[top]
    md = [
        f"### errgroup and its peers side by side ({top} threads)\n",
        f"Command: `{meta.get('command', 'bench/run.sh --peers DIR')}`; "
        f"{meta.get('date', '?')}, git {meta.get('git', '?')}; "
        f"{meta.get('machine', '?')}; {meta.get('compiler', '?')}; "
        f"{meta.get('tbb', '?')}; peers: {meta.get('peers', '?')}; Go: "
        f"{meta.get('go', '?')}; load average "
        f"{meta.get('load_start', '?')} → {meta.get('load_end', '?')}; "
        f"{meta.get('mode', '')}.\n",
        f"Every C++ column comes from one process per workload (`bench_spawn`, "
        f"`bench_map`, `bench_cancel`, `bench_semaphore`, all with "
        f"`--threads={top}`), the variants' {meta.get('reps', '?')} repetitions "
        "interleaved in random order; each cell is the median. Go's column "
        f"is `shared/peers/go/run.sh` (GOMAXPROCS={top}, median of "
        f"{meta.get('reps', '?')} runs) in the same session. Where a column "
        "has several variants the first is the one compared; map speedup = "
        "median sequential ÷ median variant in the same process.\n",
        "| figure | unit | " + " | ".join(PEER_COLUMNS) + " |",
        "|---|---|" + "---:|" * len(PEER_COLUMNS)]
    for row in PEER_ROWS:
        cells = [peer_cell(res, go_figs, top, row, c) for c in row.cells]
        md.append(f"| {row.figure} | {row.unit} | " + " | ".join(cells) + " |")
    md.append("")
    note = res.foreign_note("")
    if note:
        md.append(note)
    if not go_figs:
        md.append("Go: not run in this session (no go.txt figures).\n")
    counts = sorted(set(runs) | {int(k[1:k.index("/")]) for k in go_figs})
    if len(counts) > 1:
        md += [
            "### Scaling: each figure at " +
            ", ".join(str(n) for n in counts) + " threads\n",
            "C++: `--threads=N` (oneTBB under `global_control(max_allowed_"
            "parallelism, N)`, `tf::Executor(N)`, `static_thread_pool(N)`, "
            "limit P = N), pinned with `taskset` to CPUs 0..N-1 when N is "
            "below the machine's CPUs; Go: GOMAXPROCS=N. Any N: "
            "`bench/run.sh --peers DIR --threads 1,2,4`.\n",
            "| figure | unit | column | variant | " +
            " | ".join(f"{n} thr" for n in counts) + " |",
            "|---|---|---|---|" + "---:|" * len(counts)]
        for row in PEER_ROWS:
            for col, variants in zip(PEER_COLUMNS, row.cells):
                for var in variants:
                    vals = [peer_text(runs.get(n), go_figs, n, row, var)
                            if var.go or n in runs else "—" for n in counts]
                    md.append(f"| {row.figure} | {row.unit} | {col} | "
                              f"{var.label or var.name} | " + " | ".join(vals) + " |")
        md.append("")
    return "\n".join(md)


def main(argv):
    if len(argv) == 3 and argv[1] == "--peers":
        print(peers_report(argv[2]))
        return
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} RAW_DIR OUT_DIR [GO_RESULTS_DIR]")
    raw_dir, out_dir = argv[1], argv[2]
    res = Results(raw_dir)
    go = GoFigures(argv[3] if len(argv) > 3 else "")
    spawn = spawn_section(res, go)
    mapping = map_section(res, go)
    cancel = cancel_section(res, go)
    sem = sem_section(res, go)
    memory = memory_section(res)
    results_md = os.path.join(out_dir, "results.md")
    write_markdown(results_md, res, [spawn, mapping, cancel, sem, memory])
    write_plot(out_dir, res,
               {"spawn": spawn, "map": mapping, "cancel": cancel, "sem": sem})
    print(results_md)


if __name__ == "__main__":
    main(sys.argv)
