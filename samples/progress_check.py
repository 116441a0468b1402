#!/usr/bin/env python3
"""progress_check.py: the samples' progress line, on a pseudo-terminal.

  progress_check.py --bin DIR --site crawler_site.py

Off a terminal the samples print no progress (their transcripts, checked by
expect.py, would not match otherwise). On one, progress_line (common.hpp)
rewrites one line, "\\r\\033[K" + status, every 100 ms, cut to the terminal's
width, and erases it ("\\r\\033[K") before anything else is printed and at the
end. This runs samples with stdout and stderr on a pty 60 columns wide and
checks that progress was drawn, that no status is wider than 59 columns or
spans lines, and that what is left once the progress is taken out is exactly
the output, each line whole:

  crawler -       URLs written to its stdin one at a time, each line awaited,
                  and the progress awaited while the input is still open (the
                  group lives until the input ends: no timing is assumed);
  crawler --timeout 1 .../stall.html
                  a fetch that hangs until the deadline: progress for 1 s,
                  then the error on a line of its own;
  weighted_batch  the demo batch: its report, whole; progress is required
                  only when the batch took over a second.

Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time

COLUMNS = 60
ERASE = b"\r\x1b[K"


class Tty:
    """A command running with stdout and stderr on a new pseudo-terminal."""

    def __init__(self, cmd, stdin=subprocess.DEVNULL):
        master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # keep "\n" as it is written
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 24, COLUMNS, 0, 0))
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=slave,
                                     stderr=slave, close_fds=True)
        os.close(slave)
        self.master = master
        self.data = b""
        self.eof = False

    def _read(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        ready, _, _ = select.select([self.master], [], [], left)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.data += chunk
        return True

    def expect(self, pattern, timeout=20):
        """Reads until pattern (bytes regex) matches what was read so far."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.data):
            if not self._read(deadline):
                raise AssertionError(
                    f"no {pattern!r} within {timeout} s; got {self.data!r}")

    def finish(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        status = self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        os.close(self.master)
        return status


def split_progress(data):
    """Returns (the output without progress, the statuses drawn)."""
    text, statuses = [], []
    for segment in data.split(ERASE):
        end = segment.rfind(b"\n") + 1
        text.append(segment[:end])
        if segment[end:]:
            statuses.append(segment[end:].decode("utf-8", "replace"))
    return b"".join(text).decode("utf-8", "replace"), statuses


def check_statuses(name, statuses, pattern, required=True):
    errors = []
    if required and not statuses:
        errors.append(f"{name}: no progress line drawn")
    for s in statuses:
        if len(s) > COLUMNS - 1 or "\n" in s or "\x1b" in s:
            errors.append(f"{name}: bad progress line {s!r}")
        elif not re.fullmatch(pattern, s) and len(s) < COLUMNS - 1:
            errors.append(f"{name}: progress line {s!r} is not {pattern!r}")
    return errors


def check_lines(name, actual, expected):
    lines = actual.splitlines()
    ok = len(lines) == len(expected) and all(
        re.fullmatch(e, a) for e, a in zip(expected, lines))
    return [] if ok else [f"{name}: output {lines!r}, expected {expected!r}"]


def crawler_stream(bin_dir, url):
    """URLs one at a time on stdin; progress while the input stays open."""
    read_end, write_end = os.pipe()
    tty = Tty([os.path.join(bin_dir, "crawler"), "--jobs", "2", "-"],
              stdin=read_end)
    os.close(read_end)
    os.write(write_end, f"{url}/about.html\n".encode())
    tty.expect(rb"200  \S+/about\.html  About\n")
    tty.expect(re.escape(ERASE) + rb"\d+ fetched, \d+ in flight, \d+ queued")
    os.write(write_end, f"{url}/team.html\n".encode())
    tty.expect(rb"200  \S+/team\.html  Team\n")
    os.close(write_end)
    status = tty.finish()
    text, statuses = split_progress(tty.data)
    errors = [] if status == 0 else [f"crawler -: exit {status}"]
    errors += check_statuses("crawler -", statuses,
                             r"\d+ fetched, \d+ in flight, \d+ queued")
    errors += check_lines("crawler -", text.replace(url, "{url}"), [
        re.escape("200  {url}/about.html  About"),
        re.escape("200  {url}/team.html  Team"),
        r"fetched 2 URLs in [0-9.]+ s, 0 broken links"])
    return errors, statuses


def crawler_deadline(bin_dir, url):
    tty = Tty([os.path.join(bin_dir, "crawler"), "--timeout", "1",
               f"{url}/stall.html"])
    status = tty.finish()
    text, statuses = split_progress(tty.data)
    errors = [] if status == 1 else [f"crawler --timeout: exit {status}"]
    errors += check_statuses(
        "crawler --timeout", statuses,
        r"depth 0: 0 of 1 fetched, 1 in flight, 0 pages in all")
    errors += check_lines("crawler --timeout", text, [
        re.escape("crawler: context deadline exceeded (--timeout 1 s)")])
    return errors, statuses


def weighted_batch(bin_dir):
    began = time.monotonic()
    tty = Tty([os.path.join(bin_dir, "weighted_batch")])
    status = tty.finish(timeout=100)
    took = time.monotonic() - began
    text, statuses = split_progress(tty.data)
    errors = [] if status == 0 else [f"weighted_batch: exit {status}"]
    errors += check_statuses(
        "weighted_batch", statuses,
        r"\d of 8 files, \d+ running, \d+ waiting; [0-9.]+ [KM]?i?B of 64 MiB "
        r"in use", required=took > 1)
    errors += check_lines("weighted_batch", text, [
        *[r"\S+ +[0-9.]+ [KM]?i?B -> +[0-9.]+ [KM]?i?B  weight +[0-9.]+ [KM]?i?B"] * 8,
        r"8 files, 53\.3 MiB -> 8\.8 MiB \(16\.5%\) in [0-9.]+ s",
        r"budget 64 MiB: peak in use [0-9.]+ MiB, never above it"])
    return errors, statuses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="directory of the samples")
    parser.add_argument("--site", required=True, help="crawler_site.py")
    args = parser.parse_args()

    errors = []
    with tempfile.TemporaryDirectory(prefix="progress-check-") as root:
        server = subprocess.Popen(
            [sys.executable, args.site, "--port", "0", "--root", root],
            stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()
            for name, run in [("crawler -", lambda: crawler_stream(args.bin, url)),
                              ("crawler --timeout",
                               lambda: crawler_deadline(args.bin, url)),
                              ("weighted_batch", lambda: weighted_batch(args.bin))]:
                try:
                    found, statuses = run()
                except (AssertionError, subprocess.TimeoutExpired) as e:
                    found, statuses = [f"{name}: {e}"], []
                errors += found
                print(f"{name}: {len(statuses)} progress lines drawn"
                      + (f", the last: {statuses[-1]!r}" if statuses else ""))
        finally:
            server.terminate()
            server.wait(timeout=10)
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
