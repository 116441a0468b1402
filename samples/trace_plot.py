#!/usr/bin/env python3
"""trace_plot.py: draw an errgroup trace (Chrome trace-event JSON) as a PNG.

  trace_plot.py TRACE.json OUT.png [--title TEXT]

TRACE.json is what errgroup::trace::write_chrome_json() writes (the
crawler's --trace FILE). The picture has a row per thread and time across:
a bar per task from its start to its end, coloured by how it ended (ok,
failed, induced: failed after the cancellation), a cross per skipped task
where it was dropped, and a vertical line at each group's first failure and
at its cancellation. gnuplot (Debian's gnuplot-nox) draws it. Prints one
line: the PNG, and the tasks counted by outcome.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

COLOURS = {"ok": "#4c9a2a", "failed": "#d62728", "induced": "#ff9f1c",
           "skipped": "#7f7f7f"}


def gp_string(text):
    """A gnuplot string literal (single quotes double inside; a line break
    would end the command, so it becomes a space)."""
    text = text.replace("\r", " ").replace("\n", " ")
    return "'" + text.replace("'", "''") + "'"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("png")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    if shutil.which("gnuplot") is None:
        sys.exit("trace_plot.py: gnuplot is missing (apt-get install gnuplot-nox)")
    try:
        with open(args.trace, encoding="utf-8") as f:
            events = json.load(f)["traceEvents"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"trace_plot.py: {args.trace}: {e}")

    tasks = [e for e in events if "outcome" in e.get("args", {})]
    marks = [e for e in events if e.get("ph") == "i" and e.get("s") == "g"]
    threads = sorted({e["tid"] for e in tasks + marks})
    row = {tid: i for i, tid in enumerate(threads)}
    counts = {k: 0 for k in COLOURS}
    for e in tasks:
        counts[e["args"]["outcome"]] += 1

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "tasks.dat")
        present = [o for o in COLOURS if counts[o] > 0]
        if not present:
            sys.exit(f"trace_plot.py: {args.trace} has no tasks")
        end = max([e["ts"] + e.get("dur", 0) for e in tasks + marks] + [1]) / 1000.0
        names = []  # bars wide enough get the end of their label
        with open(data, "w", encoding="utf-8") as f:
            # A block per outcome that occurs: x_lo x_hi row (ms)
            for outcome in present:
                for e in tasks:
                    if e["args"]["outcome"] != outcome:
                        continue
                    lo = e["ts"] / 1000.0
                    hi = lo + e.get("dur", 0) / 1000.0
                    f.write(f"{lo} {hi} {row[e['tid']]}\n")
                    if hi - lo > end / 12:
                        names.append((lo, row[e["tid"]],
                                      e["name"].rstrip("/").rsplit("/", 1)[-1]))
                f.write("\n\n")
        lines = [
            "set terminal pngcairo size 1200,%d font 'DejaVu Sans,11' noenhanced"
            % (200 + 40 * len(threads)),
            f"set output {gp_string(args.png)}",
            f"set title {gp_string(args.title or os.path.basename(args.trace))}",
            "set xlabel 'time since the trace began (ms)'",
            f"set xrange [0:{end * 1.08}]",
            f"set yrange [-0.7:{len(threads) - 0.3}]",
            "set ytics (" + ", ".join(f"'thread {tid}' {row[tid]}" for tid in threads) + ")",
            "set grid xtics lc rgb '#dddddd'",
            "set key outside bottom center horizontal",
            "set style fill solid 0.9 border rgb '#333333'",
            "set tmargin 4",
        ]
        for n, e in enumerate(marks, start=1):
            x = e["ts"] / 1000.0
            colour = "#d62728" if e["name"] == "first failure" else "#1f77b4"
            lines.append(f"set arrow {n} from {x}, graph 0 to {x}, graph 1 nohead "
                         f"lw 2 dt 2 lc rgb '{colour}'")
            y = 1.02 + 0.06 * ((n - 1) % 2)  # marks at one time stay readable
            lines.append(f"set label {n} {gp_string(e['name'])} at {x}, graph {y} "
                         f"center tc rgb '{colour}'")
        for n, (x, y, text) in enumerate(names, start=len(marks) + 1):
            lines.append(f"set label {n} {gp_string(text)} at {x + end / 200}, {y} "
                         "left front font ',9'")
        plots = []
        for i, outcome in enumerate(present):
            colour = COLOURS[outcome]
            title = f"{outcome} ({counts[outcome]})"
            if outcome == "skipped":
                plots.append(f"{gp_string(data)} index {i} using 1:3 with points pt 2 ps 1.5 "
                             f"lc rgb '{colour}' title {gp_string(title)}")
            else:
                plots.append(f"{gp_string(data)} index {i} using (($1+$2)/2):3:1:2:($3-0.3):($3+0.3) "
                             f"with boxxyerror lc rgb '{colour}' title {gp_string(title)}")
        lines.append("plot " + ", \\\n     ".join(plots))
        script = os.path.join(tmp, "plot.gp")
        with open(script, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["gnuplot", script], check=True)
    summary = ", ".join(f"{counts[o]} {o}" for o in COLOURS)
    print(f"{args.png}: {len(tasks)} tasks on {len(threads)} threads: {summary}")


if __name__ == "__main__":
    main()
