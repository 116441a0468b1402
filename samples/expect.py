#!/usr/bin/env python3
"""expect.py: run an example from a sample's top comment and check its output.

  expect.py [--serve SCRIPT] --bin DIR --scratch DIR SOURCE N COUNT

An example is a shell transcript in the top comment of SOURCE, indented by
three spaces after the `//`: one or more `$ command` lines, each followed by
what it prints (stdout, then stderr) and, when it does not exit with 0, by
`[exit STATUS]`. A line ending in a backslash continues on the next one.

  //   $ mkdir tree && printf 'hello\\n' > tree/a.txt
  //   $ parallel_map tree
  //   5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a.txt
  //   ...

Example N (1-based, in file order) runs with bash, one command at a time, in
a fresh SCRATCH directory, with the samples' DIR first on PATH and LC_ALL=C.
SOURCE must have COUNT examples, so that each has its test. Every line must
match its expected line; `...` in an expected line matches any text.

With --serve, an example that mentions `{url}` first starts SCRIPT (python3):
it prints its base address on its first line and is stopped at the end. That
address stands in for `{url}` in the commands and in the output.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys


def examples(source):
    """Returns the examples of SOURCE's top comment: lists of steps."""
    found, steps = [], None
    with open(source, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.startswith("//"):
                break
            body = line[2:]
            if steps and steps[-1]["cmd"].endswith("\\") and body.startswith("   "):
                steps[-1]["cmd"] = steps[-1]["cmd"][:-1] + " " + body.strip()
            elif body.startswith("   $ "):
                if steps is None:
                    steps = []
                    found.append(steps)
                steps.append({"cmd": body[5:], "out": [], "status": 0})
            elif body.startswith("   ") and steps is not None:
                status = re.fullmatch(r"\[exit (\d+)\]", body[3:])
                if status:
                    steps[-1]["status"] = int(status[1])
                else:
                    steps[-1]["out"].append(body[3:])
            else:
                steps = None
    return found


def line_matches(expected, actual):
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def start_server(script, root):
    server = subprocess.Popen(
        [sys.executable, script, "--port", "0", "--root", root],
        stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    if not url.startswith("http://"):
        server.kill()
        sys.exit(f"expect.py: {script} printed no address (got {url!r})")
    return server, url


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help="web server script to start first")
    parser.add_argument("--bin", required=True, help="directory of the samples")
    parser.add_argument("--scratch", required=True, help="working directory")
    parser.add_argument("source", help="the sample's .cpp file")
    parser.add_argument("n", type=int, help="which example, from 1")
    parser.add_argument("count", type=int, help="how many examples SOURCE has")
    args = parser.parse_args()

    found = examples(args.source)
    if len(found) != args.count or not 1 <= args.n <= len(found):
        sys.exit(f"expect.py: {args.source} has {len(found)} examples, not "
                 f"{args.count} (a test for each), or no example {args.n}")
    shutil.rmtree(args.scratch, ignore_errors=True)
    os.makedirs(args.scratch)
    env = dict(os.environ, LC_ALL="C",
               PATH=os.path.abspath(args.bin) + os.pathsep + os.environ["PATH"])

    server, url = None, None
    failed = False
    try:
        if args.serve and any("{url}" in step["cmd"] for step in found[args.n - 1]):
            server, url = start_server(args.serve, args.scratch + ".site")
        for step in found[args.n - 1]:
            cmd = step["cmd"].replace("{url}", url) if url else step["cmd"]
            run = subprocess.run(["bash", "-c", cmd], cwd=args.scratch, env=env,
                                 capture_output=True, text=True, timeout=100)
            actual = (run.stdout + run.stderr).splitlines()
            if url:
                actual = [line.replace(url, "{url}") for line in actual]
            print(f"$ {step['cmd']}")
            for line in actual:
                print(line)
            if run.returncode != 0:
                print(f"[exit {run.returncode}]")
            ok = (run.returncode == step["status"] and len(actual) == len(step["out"])
                  and all(map(line_matches, step["out"], actual)))
            if not ok:
                print("expect.py: MISMATCH; expected:")
                for line in step["out"]:
                    print(f"  {line}")
                if step["status"] != 0:
                    print(f"  [exit {step['status']}]")
                failed = True
                break
    finally:
        if server:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
