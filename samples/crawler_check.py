#!/usr/bin/env python3
"""crawler_check.py: crawl a real HTML tree with the crawler and without it.

  crawler_check.py --bin DIR [--tree DIR] [--start index.html] [--depth 3]
                   [--jobs 8 [--jobs 1 ...]] [--timeout 120]

Serves TREE (default: the Python documentation of Debian's python3-doc) with
`python3 -m http.server` on 127.0.0.1, crawls it from START to DEPTH with the
crawler sample once for each --jobs, and once with an independent crawler
written here with Python's standard library only (urllib.request,
html.parser, urllib.parse), and compares what they print: every page with its
depth, HTTP status and title (or Content-Type, or where a broken link is
from), then the broken, beyond-depth and off-site link counts. Timings are
printed, not compared. Exit status: 0 the same, 1 they differ, 77 (CTest's
SKIP_RETURN_CODE) no tree is installed.

Both follow the HTML and URL standards for <a href>: leading and trailing
whitespace stripped, tabs and newlines dropped, an empty or fragment-only
href is the base URL, <base href> is the base when present, fragments are
dropped, dot segments removed, spaces and non-ASCII bytes percent-encoded,
host lower-cased, default port dropped. The independent one resolves with
urllib.parse.urljoin (RFC 3986), parses with html.parser and fetches with
urllib, one level at a time as the crawler does, in the same order, so that
"broken link, from X" names the same page.
"""
import argparse
import concurrent.futures
import glob
import html.parser
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TREES = ["/usr/share/doc/python3/html", "/usr/share/doc/python3-doc/html",
         *sorted(glob.glob("/usr/share/doc/python3.*/html"), reverse=True)]
SKIP = 77


def clean_href(href):
    """href as the URL standard reads it (see crawler.cpp's clean_href)."""
    href = href.strip("".join(map(chr, range(0x21))))
    href = re.sub("[\t\n\r]", "", href)
    out = []
    for b in href.encode("utf-8", "surrogateescape"):
        if b <= 0x20 or b >= 0x7F or chr(b) in '"<>`{}':
            out.append(f"%{b:02X}")
        else:
            out.append(chr(b))
    return "".join(out)


def remove_dot_segments(path):
    """RFC 3986, 5.2.4."""
    segments = path.split("/")
    out = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out)


def resolve(href, base):
    """href resolved against base: a normalized http(s) URL, or None."""
    ref = clean_href(href)
    url = base if base is not None and (not ref or ref.startswith("#")) \
        else urllib.parse.urljoin(base or "", ref)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[parts.scheme]:
        host += f":{port}"
    path = remove_dot_segments(parts.path) or "/"
    return urllib.parse.urlunsplit((parts.scheme, host, path, parts.query, ""))


def origin(url):
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme, parts.hostname,
            parts.port or {"http": 80, "https": 443}[parts.scheme])


class LinkParser(html.parser.HTMLParser):
    """Collects the hrefs of <a>, the first <base href> and the title."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs, self.base, self.title = [], None, None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href is not None:
            self.hrefs.append(href)
        elif tag == "base" and href is not None and self.base is None:
            self.base = href
        elif tag == "title" and self.title is None:
            self._in_title, self.title = True, ""

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def collapse(text):
    """Strips and collapses ASCII whitespace, as document.title does."""
    return " ".join(re.split("[\t\n\f\r ]+", text.strip("\t\n\f\r "))) if text else ""


def fetch(url, site, timeout):
    """Returns (status, content type, title, same-site links, off-site links)."""
    request = urllib.request.Request(url, headers={
        "User-Agent": "errgroup-crawler-check/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, final = resp.status, resp.geturl()
            ctype = resp.headers.get("Content-Type", "")
            body = resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), "", [], []
    title, links, external = "", [], []
    if status // 100 == 2 and ctype.lower().startswith("text/html"):
        parser = LinkParser()
        parser.feed(body.decode("utf-8", "replace"))
        parser.close()
        title = collapse(parser.title)
        doc = resolve(final, None)
        base = resolve(parser.base, doc) if parser.base is not None else None
        for href in parser.hrefs:
            link = resolve(href, base or doc)
            if link is not None:
                (links if origin(link) == site else external).append(link)
    return status, ctype, title, links, external


def reference_crawl(start, depth_limit, jobs, timeout):
    """The crawl of crawler.cpp's crawl_site(), in Python; returns its lines."""
    start = resolve(start, None)
    site = origin(start)
    crawled = []  # (url, depth, status, text)
    level = [(start, "", 0)]
    seen, beyond, external = {start}, set(), set()
    broken = 0
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        depth = 0
        while level:
            results = list(pool.map(lambda p: fetch(p[0], site, timeout), level))
            next_level = []
            for (url, came_from, d), (status, ctype, title, links, ext) in \
                    zip(level, results):
                if status >= 500:
                    raise RuntimeError(f"{url}: HTTP {status}")
                external.update(ext)
                for link in links:
                    if link in seen:
                        continue
                    seen.add(link)
                    if depth == depth_limit:
                        beyond.add(link)
                    else:
                        next_level.append((link, url, depth + 1))
                if status >= 400:
                    broken += 1
                    text = f"broken link, from {came_from}"
                else:
                    text = title or f"({ctype})"
                crawled.append((url, d, status, text))
            level = next_level
            depth += 1
    lines = [f"{d}  {status}  {url}  {text}"
             for url, d, status, text in sorted(crawled)]
    lines.append(f"crawled {plural(len(crawled), 'page')} to depth "
                 f"{depth_limit} in ... s, {plural(broken, 'broken link')}")
    lines.append(f"not followed: {plural(len(beyond), 'link')} beyond depth "
                 f"{depth_limit}, {plural(len(external), 'link')} off the site")
    return lines


def plural(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary(lines):
    return lines[-2].replace(" in ... s", "") + "; " + lines[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="directory of the samples")
    parser.add_argument("--tree", help="HTML tree to serve (default: python3-doc)")
    parser.add_argument("--start", default="index.html", help="first page")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--jobs", type=int, action="append",
                        help="crawler --jobs (repeatable; default 8)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds for each crawl")
    args = parser.parse_args()
    jobs_list = args.jobs or [8]

    trees = [args.tree] if args.tree else TREES
    tree = next((t for t in trees if os.path.isfile(os.path.join(t, "index.html"))),
                None)
    if tree is None:
        print(f"crawler_check.py: SKIP: no HTML tree at {', '.join(trees)} "
              "(apt-get install python3-doc)")
        return SKIP
    tree = os.path.realpath(tree)

    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
         "--directory", tree, "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = server.stdout.readline()
        port = re.search(r"port (\d+)", banner)
        if not port:
            print(f"crawler_check.py: http.server printed {banner!r}")
            return 1
        start = f"http://127.0.0.1:{port[1]}/{args.start}"
        print(f"serving {tree} at http://127.0.0.1:{port[1]}/; "
              f"crawling from {start} to depth {args.depth}")

        began = time.monotonic()
        expected = reference_crawl(start, args.depth, max(jobs_list),
                                   args.timeout)
        took = time.monotonic() - began
        print(f"independent crawl (Python, {max(jobs_list)} threads): "
              f"{summary(expected)}; {took:.2f} s")

        failed = False
        for jobs in jobs_list:
            cmd = [os.path.join(args.bin, "crawler"), "--jobs", str(jobs),
                   "--depth", str(args.depth), "--timeout", str(args.timeout),
                   start]
            run = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=args.timeout + 30)
            actual = run.stdout.splitlines()
            seconds = "?"
            if len(actual) >= 2:
                match = re.search(r" in ([0-9.]+) s,", actual[-2])
                if match:
                    seconds = match[1]
                actual[-2] = re.sub(r" in [0-9.]+ s,", " in ... s,", actual[-2])
            if run.returncode != 0 or actual != expected:
                failed = True
                print(f"crawler --jobs {jobs}: exit {run.returncode}, "
                      f"{run.stderr.strip()}")
                missing = [l for l in expected if l not in set(actual)]
                extra = [l for l in actual if l not in set(expected)]
                for line in missing[:20]:
                    print(f"  only in the independent crawl: {line}")
                for line in extra[:20]:
                    print(f"  only in the crawler's:         {line}")
            else:
                print(f"crawler --jobs {jobs}: the same pages, depths, statuses "
                      f"and titles; {summary(actual)}; {seconds} s")
        return 1 if failed else 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
