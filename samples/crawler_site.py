#!/usr/bin/env python3
"""crawler_site.py: a small web site with a known link graph, for the crawler.

  python3 crawler_site.py [--port 8000] [--root DIR] [--delay 0.2]

Writes the site below into DIR (default: a temporary directory, removed at
exit) and serves it with http.server on 127.0.0.1 until stopped. The first
line on stdout is the base address, http://127.0.0.1:PORT. --port 0 picks a
free port. Pages under /slow/ are answered after --delay seconds; /stall.html
only after an hour, for the crawler's --timeout test; /error.html is an HTTP
500. Three pages are linked from nowhere: /stall.html, /flaky.html (a crawl
that fails in the middle: --trace) and /hang.html (a crawl that hangs:
--stall-after).

Depth  page              links to
  0    /                 about.html blog/ docs/ #top http://example.invalid/
                         mailto:team@example.invalid
  1    /about.html       / team.html data.csv misc/links.html misc/base.html
  1    /blog/            2023.html 2024.html ../slow/1.html
  1    /docs/            guide.html#install api.html ../slow/2.html
  2    /team.html        about.html
  2    /data.csv         (not HTML)
  2    /blog/2023.html   2024.html ../
  2    /blog/2024.html   ../missing.html (broken: 404) ../docs/api.html
  2    /slow/1.html      2.html
  2    /slow/2.html      1.html
  2    /docs/guide.html  api.html deep/1.html
  2    /docs/api.html    guide.html
  2    /misc/links.html  "" #top " ../team.html\n" "..\t/data.csv" (the page
                         itself, and two links with whitespace in them)
  2    /misc/base.html   api.html guide.html "" (<base href="../docs/">: the
                         links are /docs/api.html, /docs/guide.html, /docs/)
  3    /docs/deep/1.html 2.html
  4    /docs/deep/2.html 1.html

       /flaky.html       slow/3.html .. slow/8.html error.html (HTTP 500)
                         slow/9.html .. slow/14.html (no links)
       /hang.html        stall.html about.html team.html
"""
import argparse
import functools
import http.server
import os
import shutil
import signal
import sys
import tempfile
import time

PAGES = {
    "index.html": ("Home", ["about.html", "blog/", "docs/", "#top",
                            "http://example.invalid/",
                            "mailto:team@example.invalid"]),
    "about.html": ("About", ["/", "team.html", "data.csv", "misc/links.html",
                             "misc/base.html"]),
    "team.html": ("Team", ["about.html"]),
    "blog/index.html": ("Blog", ["2023.html", "2024.html", "../slow/1.html"]),
    "blog/2023.html": ("2023", ["2024.html", "../"]),
    "blog/2024.html": ("2024", ["../missing.html", "../docs/api.html"]),
    "docs/index.html": ("Docs", ["guide.html#install", "api.html",
                                 "../slow/2.html"]),
    "docs/guide.html": ("Guide", ["api.html", "deep/1.html"]),
    "docs/api.html": ("API", ["guide.html"]),
    "docs/deep/1.html": ("Deep 1", ["2.html"]),
    "docs/deep/2.html": ("Deep 2", ["1.html"]),
    "slow/1.html": ("Slow 1", ["2.html"]),
    "slow/2.html": ("Slow 2", ["1.html"]),
    "misc/links.html": ("Links", ["", "#top", " ../team.html\n", "..\t/data.csv"]),
    "misc/base.html": ("Base", ["api.html", "guide.html", ""]),
    "stall.html": ("Stall", []),
    "flaky.html": ("Flaky", [f"slow/{i}.html" for i in range(3, 9)] +
                   ["error.html"] + [f"slow/{i}.html" for i in range(9, 15)]),
    "hang.html": ("Hang", ["stall.html", "about.html", "team.html"]),
}
PAGES.update({f"slow/{i}.html": (f"Slow {i}", []) for i in range(3, 15)})

# <base href> of a page: its links are resolved against that, not the page.
BASES = {"misc/base.html": "../docs/"}


def write_site(root):
    for path, (title, links) in PAGES.items():
        anchors = "\n".join(f'<li><a href="{href}">{href.strip()}</a></li>'
                             for href in links)
        base = f'<base href="{BASES[path]}">' if path in BASES else ""
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "w", encoding="utf-8") as f:
            f.write(f"<!DOCTYPE html>\n<html><head><title>{title}</title>{base}</head>\n"
                    f"<body><h1 id=top>{title}</h1>\n<ul>\n{anchors}\n</ul></body></html>\n")
    with open(os.path.join(root, "data.csv"), "w", encoding="utf-8") as f:
        f.write("page,links\n" + "".join(f"{p},{len(l)}\n" for p, (_, l) in PAGES.items()))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A crawler that gives up hangs up: that is no error of the site.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(http.server.SimpleHTTPRequestHandler):
    delay = 0.2

    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(self.delay)
        elif self.path == "/stall.html":
            time.sleep(3600)
        elif self.path == "/error.html":
            self.send_error(500)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--root", help="where to write the site")
    parser.add_argument("--delay", type=float, default=0.2,
                        help="seconds before a /slow/ page is answered")
    args = parser.parse_args()

    root = args.root or tempfile.mkdtemp(prefix="crawler-site-")
    write_site(root)
    Handler.delay = args.delay
    server = Server(("127.0.0.1", args.port),
                    functools.partial(Handler, directory=root))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
