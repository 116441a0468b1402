// samples/crawler.cpp: crawl a web site over HTTP, at most --jobs fetches at a
// time, following its links up to --depth, and stop everything on the first
// hard error or when --timeout passes. Or, with `-` for the URL, fetch the
// URLs that arrive on standard input, one a line, as they arrive.
//
// libcurl fetches, gumbo parses the HTML and CLI11 reads the command line; the
// concurrency is errgroup's. The crawl is breadth-first, one level at a time:
// a level is one context group (errgroup::group g(crawl, io)) whose tasks
// fetch the level's pages, at most --jobs at once (set_limit), each into its
// own slot. After wait() the links they found, deduplicated, make the next
// level. Going level by level keeps the result free of timing: a page's depth
// is its distance from the start, whichever fetch finishes first. `crawl` is
// the context with the deadline: it cancels every level's group.
//
// Streaming (`crawler -`) is Go's channel-fed errgroup: a reader thread sends
// the lines of standard input into a bounded queue (a channel of 2 x --jobs
// URLs, so a fast producer waits for the fetches instead of filling memory),
// and a producer loop receives them and starts a fetch for each with g.go(),
// which waits for a slot at the limit. The loop stops when the channel is
// closed (the input ended) or the group's context is cancelled (a hard error,
// or the deadline); the reader gives up on the same context, also while it
// waits for input that may never come. Each URL's line is printed as soon as
// it is fetched; links are not followed.
//
// Links are taken from <a href> as browsers take them (the HTML and URL
// standards): leading and trailing whitespace is stripped and tabs and
// newlines inside are dropped; the rest is resolved against the document's
// <base href>, if it has one, else against the page's own URL (after
// redirects); an empty href, or one that is only a #fragment, is that URL
// itself; the #fragment is dropped; spaces and non-ASCII bytes are
// percent-encoded, the host is lower-cased and a default port dropped, so
// one page has one URL. Only pages that answer 2xx are parsed for links.
//
// Why `errgroup::scheduler io{jobs}`: a fetch spends its time blocked on a
// socket, not computing. On the default scheduler (one thread per core) a few
// slow pages would hold every thread, and the CPU work of the rest of the
// program would queue behind them. A scheduler of its own gives the fetches
// --jobs threads (oneTBB raises its thread limit for it, above the number of
// cores), so --jobs fetches really are in flight at once, and the default
// scheduler's threads stay free for CPU work.
//
// Cancellation reaches a fetch that is blocked on the network: it waits in
// curl_multi_poll(), and a std::stop_callback on its context's stop_token()
// calls curl_multi_wakeup(), so a hard error elsewhere or the deadline stops
// it at once, not after a socket timeout.
//
// Hard errors: a transport error, HTTP 5xx and, with --strict, a broken link
// (HTTP 4xx); with `-`, also a line that is not an http(s) URL (blank lines
// and lines starting with # are skipped) and an unreadable input. Without
// --strict a broken link is listed and the crawl goes on. Links to other
// sites, and links beyond --depth, are counted, not followed. On a terminal
// a progress line shows how far the crawl is.
//
// By hand: `python3 samples/crawler_site.py &` serves the test site on
// http://127.0.0.1:8000, the crawler's default URL; then run `crawler`.
//
// Examples, checked by ctest ({url} is where crawler_site.py serves the site;
// its /slow/ pages answer after 0.2 s, /stall.html after an hour; the links
// of /misc/ have whitespace in them, are empty, or go through <base href>):
//   $ crawler {url}
//   0  200  {url}/  Home
//   1  200  {url}/about.html  About
//   1  200  {url}/blog/  Blog
//   2  200  {url}/blog/2023.html  2023
//   2  200  {url}/blog/2024.html  2024
//   2  200  {url}/data.csv  (text/csv)
//   1  200  {url}/docs/  Docs
//   2  200  {url}/docs/api.html  API
//   3  200  {url}/docs/deep/1.html  Deep 1
//   2  200  {url}/docs/guide.html  Guide
//   2  200  {url}/misc/base.html  Base
//   2  200  {url}/misc/links.html  Links
//   3  404  {url}/missing.html  broken link, from {url}/blog/2024.html
//   2  200  {url}/slow/1.html  Slow 1
//   2  200  {url}/slow/2.html  Slow 2
//   2  200  {url}/team.html  Team
//   crawled 16 pages to depth 3 in ... s, 1 broken link
//   not followed: 1 link beyond depth 3, 1 link off the site
//
// A hard error stops the crawl: a broken link with --strict,
//   $ crawler --strict {url}
//   crawler: {url}/missing.html: HTTP 404 (linked from {url}/blog/2024.html)
//   [exit 1]
// a transport error,
//   $ crawler http://127.0.0.1:1/
//   crawler: http://127.0.0.1:1/: Failed to connect to 127.0.0.1 port 1 ...
//   [exit 1]
// and the deadline, which also stops a fetch that is stuck (this page would
// answer after an hour; its ctest gives up after 30 s):
//   $ crawler --timeout 0.5 {url}/stall.html
//   crawler: context deadline exceeded (--timeout 0.5 s)
//   [exit 1]
//
// --trace FILE records every fetch (errgroup::trace) and writes it as Chrome
// trace-event JSON, which Perfetto (ui.perfetto.dev) opens; trace_plot.py
// draws it (README.md shows this crawl: a fetch fails, the fetches in flight
// fail with the cancellation, the rest are skipped):
//   $ crawler --jobs 4 --trace crawl.json {url}/flaky.html
//   crawler: {url}/error.html: HTTP 500 (linked from {url}/flaky.html)
//   [exit 1]
//   $ trace_plot.py crawl.json crawl.png
//   crawl.png: 14 tasks on ... threads: ... ok, 1 failed, ... induced, ...
//
// When fetches wait for a slot and none has finished for --stall-after
// seconds (default 10), the URLs holding the slots are printed, once per
// stall (errgroup::group::on_stall). /stall.html never answers here; the
// crawl still ends at --timeout:
//   $ crawler --jobs 1 --stall-after 0.5 --timeout 3 {url}/hang.html
//   crawler: stalled ... s, 1 URL waiting, slots held by {url}/stall.html ...
//   crawler: context deadline exceeded (--timeout 3 s)
//   [exit 1]
//
// URLs from standard input: with one fetch at a time they come out in input
// order, each line as soon as it is fetched; the run ends with the input:
//   $ printf '%s\n' {url}/ '' '# a comment' {url}/missing.html >urls
//   $ printf '%s\n' {url}/data.csv {url}/slow/1.html >>urls
//   $ crawler --jobs 1 - <urls
//   200  {url}/  Home
//   404  {url}/missing.html  broken link, line 4
//   200  {url}/data.csv  (text/csv)
//   200  {url}/slow/1.html  Slow 1
//   fetched 4 URLs in ... s, 1 broken link
// or at the first hard error, or at --timeout, even when the input never
// ends (here a pipe that the crawler itself holds open for writing: fd 3),
//   $ printf '%s\n' {url}/about.html {url}/missing.html {url}/team.html >list
//   $ mkfifo in && exec 3<>in && cat list >&3 && crawler --strict -j 1 - <in
//   200  {url}/about.html  About
//   crawler: {url}/missing.html: HTTP 404 (line 2)
//   [exit 1]
//   $ exec 3<>in && crawler --timeout 0.5 - <in
//   crawler: context deadline exceeded (--timeout 0.5 s)
//   [exit 1]
// and a line that is not an http(s) URL is a hard error too:
//   $ printf '%s\n' {url}/ ftp://example.invalid/ | crawler -j 1 -
//   200  {url}/  Home
//   crawler: line 2: not an http or https URL: ftp://example.invalid/
//   [exit 1]
// A list longer than the queue (2 x --jobs URLs) goes through it whole:
//   $ for i in $(seq 20); do printf '%s\n' {url}/slow/{1,2}.html; done >urls
//   $ crawler --jobs 8 - <urls | sort | uniq -c
//        20 200  {url}/slow/1.html  Slow 1
//        20 200  {url}/slow/2.html  Slow 2
//         1 fetched 40 URLs in ... s, 0 broken links
//
// Bad arguments get one line and exit status 2:
//   $ crawler --jobs 0
//   crawler: --jobs: Value 0 not in range 1 to 256
//   [exit 2]
//   $ crawler --stall-after 1e-10 {url}/
//   crawler: --stall-after: Value 1e-10 not in range 0.001 to 1e9 seconds
//   [exit 2]
//   $ crawler ftp://example.invalid/
//   crawler: not an http or https URL: ftp://example.invalid/
//   [exit 2]
//   $ crawler --help | head -n 1
//   Crawl a web site: at most --jobs fetches at a time, links followed up ...
#include <curl/curl.h>
#include <gumbo.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <errgroup/errgroup.hpp>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common.hpp"

namespace {

template <auto free_fn>
struct deleter {
  template <class T>
  void operator()(T* p) const {
    free_fn(p);
  }
};
using easy_ptr = std::unique_ptr<CURL, deleter<curl_easy_cleanup>>;
using multi_ptr = std::unique_ptr<CURLM, deleter<curl_multi_cleanup>>;
using url_ptr = std::unique_ptr<CURLU, deleter<curl_url_cleanup>>;
using curl_string = std::unique_ptr<char, deleter<curl_free>>;

std::string part(CURLU* u, CURLUPart what, unsigned flags = 0) {
  char* s = nullptr;
  if (curl_url_get(u, what, &s, flags) != CURLUE_OK) return "";
  return curl_string(s).get();
}

// clean_href(href) is href as the URL standard reads it: without leading and
// trailing C0 controls and spaces (which covers HTML's ASCII whitespace),
// without tabs and newlines anywhere, and with the bytes that may not stand
// in a URL percent-encoded: other controls, space, " < > ` { }, and every
// non-ASCII byte (UTF-8).
std::string clean_href(std::string_view href) {
  auto c0_or_space = [](char c) {
    return static_cast<unsigned char>(c) <= 0x20;
  };
  while (!href.empty() && c0_or_space(href.front())) href.remove_prefix(1);
  while (!href.empty() && c0_or_space(href.back())) href.remove_suffix(1);
  std::string out;
  for (const char c : href) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '\t' || c == '\n' || c == '\r') continue;
    if (b <= 0x20 || b >= 0x7f ||
        std::string_view("\"<>`{}").find(c) != std::string_view::npos) {
      constexpr char hex[] = "0123456789ABCDEF";
      out += '%';
      out += hex[b >> 4];
      out += hex[b & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// parse_url(href, base) is href resolved against base (when given), as the
// top comment says: an http(s) URL without its #fragment, with the host in
// lower case and no default port; null when it is not an http(s) URL.
url_ptr parse_url(std::string_view href, CURLU* base = nullptr) {
  const std::string ref = clean_href(href);
  url_ptr u(base != nullptr ? curl_url_dup(base) : curl_url());
  if (!u) throw std::bad_alloc();
  // libcurl resolves "" and "#x" to the base's directory: they are the base.
  if (base == nullptr || (!ref.empty() && ref.front() != '#')) {
    if (curl_url_set(u.get(), CURLUPART_URL, ref.c_str(), 0) != CURLUE_OK)
      return nullptr;
  }
  curl_url_set(u.get(), CURLUPART_FRAGMENT, nullptr, 0);
  const std::string scheme = part(u.get(), CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https") return nullptr;
  std::string host = part(u.get(), CURLUPART_HOST);
  if (std::any_of(host.begin(), host.end(),
                  [](char c) { return c >= 'A' && c <= 'Z'; })) {
    for (char& c : host)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    curl_url_set(u.get(), CURLUPART_HOST, host.c_str(), 0);
  }
  const std::string port = part(u.get(), CURLUPART_PORT);
  if (port == (scheme == "http" ? "80" : "443"))
    curl_url_set(u.get(), CURLUPART_PORT, nullptr, 0);
  return u;
}

// scheme://host:port, the part of a URL that says which site it is on.
std::string origin(CURLU* u) {
  return part(u, CURLUPART_SCHEME) + "://" + part(u, CURLUPART_HOST) + ":" +
         part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
}

struct page {
  std::string url{};
  std::string from{};  // the page that linked to it first ("" for the start)
  int depth = 0;
  long status = 0;
  std::string type{};                   // Content-Type
  std::string title{};                  // HTML only
  std::vector<std::string> links{};     // on this site, absolute
  std::vector<std::string> external{};  // on other sites
};

// collapse(text) strips and collapses ASCII whitespace, as document.title.
std::string collapse(std::string_view text) {
  std::string out;
  bool space = false;
  for (const char c : text) {
    if (std::string_view(" \t\n\f\r").find(c) != std::string_view::npos) {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      out += c;
      space = false;
    }
  }
  return out;
}

// parse_html(body, url, site, p) fills in p's title (whitespace collapsed)
// and links: the hrefs of its <a> elements resolved against its first
// <base href> (itself resolved against url), or against url when there is
// none. Links whose origin is not `site` go to p.external.
void parse_html(const std::string& body, CURLU* url, const std::string& site,
                page& p) {
  std::unique_ptr<GumboOutput, void (*)(GumboOutput*)> doc(
      gumbo_parse_with_options(&kGumboDefaultOptions, body.data(), body.size()),
      [](GumboOutput* out) {
        gumbo_destroy_output(&kGumboDefaultOptions, out);
      });
  const char* base_href = nullptr;
  std::vector<const char*> hrefs;
  std::vector<const GumboNode*> stack{doc->root};
  while (!stack.empty()) {
    const GumboNode* node = stack.back();
    stack.pop_back();
    if (node->type != GUMBO_NODE_ELEMENT) continue;
    const GumboElement& e = node->v.element;
    if (e.tag == GUMBO_TAG_TITLE && p.title.empty() && e.children.length > 0) {
      const auto* text = static_cast<const GumboNode*>(e.children.data[0]);
      if (text->type == GUMBO_NODE_TEXT) p.title = collapse(text->v.text.text);
    }
    if (e.tag == GUMBO_TAG_A || (e.tag == GUMBO_TAG_BASE && !base_href)) {
      const GumboAttribute* href = gumbo_get_attribute(&e.attributes, "href");
      if (href != nullptr && e.tag == GUMBO_TAG_A) hrefs.push_back(href->value);
      if (href != nullptr && e.tag == GUMBO_TAG_BASE) base_href = href->value;
    }
    for (unsigned i = e.children.length; i-- > 0;)  // in document order
      stack.push_back(static_cast<const GumboNode*>(e.children.data[i]));
  }
  url_ptr base = base_href != nullptr ? parse_url(base_href, url) : nullptr;
  for (const char* href : hrefs) {
    if (url_ptr u = parse_url(href, base ? base.get() : url)) {
      (origin(u.get()) == site ? p.links : p.external)
          .push_back(part(u.get(), CURLUPART_URL));
    }
  }
}

struct body_sink {
  static constexpr std::size_t limit = 16 << 20;
  std::string data;
  bool too_big = false;

  static std::size_t write(char* bytes, std::size_t, std::size_t n,
                           void* self) {
    auto& sink = *static_cast<body_sink*>(self);
    if (sink.data.size() + n > limit) {
      sink.too_big = true;
      return 0;  // aborts the transfer
    }
    sink.data.append(bytes, n);
    return n;
  }
};

void check(CURLMcode code) {
  if (code != CURLM_OK) throw std::runtime_error(curl_multi_strerror(code));
}

bool is_html(std::string type) {
  for (char& c : type)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return type.starts_with("text/html");
}

// fetch(ctx, site, p) fetches p.url and fills in p. Throws on a transport
// error, and ctx.err() as soon as ctx is cancelled.
void fetch(const errgroup::context& ctx, const std::string& site, page& p) {
  easy_ptr easy(curl_easy_init());
  multi_ptr multi(curl_multi_init());
  if (!easy || !multi) throw std::bad_alloc();
  CURL* e = easy.get();
  body_sink body;
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(e, CURLOPT_URL, p.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_USERAGENT, "errgroup-crawler/0.1");
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &body_sink::write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);

  check(curl_multi_add_handle(multi.get(), e));
  struct detach {
    CURLM* m;
    CURL* e;
    ~detach() { curl_multi_remove_handle(m, e); }
  } attached{multi.get(), e};
  std::stop_callback wake(ctx.stop_token(),
                          [m = multi.get()] { curl_multi_wakeup(m); });
  for (int running = 1;;) {
    check(curl_multi_perform(multi.get(), &running));
    if (running == 0) break;
    ctx.err().throw_if();  // cancelled: give up the transfer
    check(curl_multi_poll(multi.get(), nullptr, 0, 1000, nullptr));
  }
  int left = 0;
  const CURLMsg* msg = curl_multi_info_read(multi.get(), &left);
  const CURLcode rc = msg != nullptr ? msg->data.result : CURLE_FAILED_INIT;
  if (body.too_big) throw std::runtime_error(p.url + ": larger than 16 MiB");
  if (rc != CURLE_OK) {
    throw std::runtime_error(
        p.url + ": " + (error[0] != '\0' ? error : curl_easy_strerror(rc)));
  }

  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &p.status);
  char* type = nullptr;
  curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &type);
  p.type = type != nullptr ? type : "";
  if (p.status / 100 == 2 && is_html(p.type)) {
    char* final_url = nullptr;  // after redirects: relative links start there
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &final_url);
    if (url_ptr base = parse_url(final_url)) {
      parse_html(body.data, base.get(), site, p);
    }
  }
}

// check_status(p, strict, where) throws when p's status is a hard error:
// HTTP 5xx, or 4xx with --strict. `where` says where the URL came from.
void check_status(const page& p, bool strict, const std::string& where) {
  if (p.status >= 500 || (strict && p.status >= 400)) {
    throw std::runtime_error(p.url + ": HTTP " + std::to_string(p.status) +
                             (where.empty() ? "" : " (" + where + ")"));
  }
}

std::string plural(std::size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string fixed2(double seconds) {
  std::ostringstream s;
  s.precision(2);
  s << std::fixed << seconds;
  return s.str();
}

// Reports a crawl's error on stderr; returns the exit status.
int report(const errgroup::error& err, double timeout) {
  std::cerr << "crawler: " << err.message();
  if (err.is<errgroup::deadline_exceeded_error>())
    std::cerr << " (--timeout " << timeout << " s)";
  std::cerr << '\n';
  return 1;
}

struct options {
  std::string start = "http://127.0.0.1:8000/";
  int max_depth = 3;
  int jobs = 8;
  double timeout = 30;  // 0: none
  bool strict = false;
  std::string trace_file{};  // --trace: where the trace goes ("": none)
  double stall_after = 10;   // --stall-after, seconds
};

// observe(g, o, tr, name, progress) sets up what --trace and --stall-after
// ask of a group: it records into tr under `name`, and a stall (fetches
// waiting for a slot while none has finished for --stall-after seconds)
// prints which URLs hold the slots, once per stall.
void observe(errgroup::group& g, const options& o, errgroup::trace& tr,
             const std::string& name, progress_line& progress) {
  if (!o.trace_file.empty()) g.trace_to(tr, name);
  g.on_stall(
      [&progress](const errgroup::group::stall_report& r) {
        std::ostringstream line;
        line << "crawler: stalled "
             << fixed2(
                    std::chrono::duration<double>(r.since_last_finish).count())
             << " s, " << plural(static_cast<std::size_t>(r.waiting), "URL")
             << " waiting, slots held by";
        const char* sep = " ";
        for (const auto& t : r.holding) {
          line << sep << t.label << " ("
               << fixed2(std::chrono::duration<double>(t.elapsed).count())
               << " s)";
          sep = ", ";
        }
        progress.println(line.str(), stderr);
      },
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(o.stall_after)));
}

// save_trace(tr, o) writes the trace to --trace FILE, if asked; false (and
// a line on stderr) when it cannot.
bool save_trace(const errgroup::trace& tr, const options& o) {
  if (o.trace_file.empty()) return true;
  std::ofstream out(o.trace_file);
  if (out) tr.write_chrome_json(out);
  if (out.flush()) return true;
  std::cerr << "crawler: --trace: cannot write " << o.trace_file << '\n';
  return false;
}

// crawl_site(o, start) crawls the site from `start`, level by level.
int crawl_site(const options& o, CURLU* start) {
  const std::string site = origin(start);
  const auto began = std::chrono::steady_clock::now();
  auto [crawl, cancel] = errgroup::with_timeout(
      errgroup::context(), std::chrono::duration<double>(o.timeout));
  errgroup::scheduler io{o.jobs};  // see the top comment

  std::vector<page> crawled;
  std::vector<page> level{page{.url = part(start, CURLUPART_URL)}};
  std::set<std::string> seen{level[0].url};
  std::set<std::string> beyond;
  std::set<std::string> external;
  errgroup::trace tr;
  for (int depth = 0; !level.empty(); ++depth) {
    errgroup::group g(crawl, io);  // a context group, as with_context()
    g.set_limit(o.jobs);
    progress_line progress([&g, depth, pages = level.size(), &crawled] {
      const auto s = g.counters();
      const auto done = static_cast<std::size_t>(s.succeeded + s.failed);
      return "depth " + std::to_string(depth) + ": " + std::to_string(done) +
             " of " + std::to_string(pages) + " fetched, " +
             std::to_string(s.running) + " in flight, " +
             plural(crawled.size() + done, "page") + " in all";
    });
    observe(g, o, tr, "depth " + std::to_string(depth), progress);
    for (page& p : level) {  // labelled: stalls and the trace name the URL
      g.go(p.url, [&p, &site, strict = o.strict](const errgroup::context& c) {
        fetch(c, site, p);
        check_status(p, strict, p.from.empty() ? "" : "linked from " + p.from);
      });
    }
    const errgroup::error err = g.wait();
    progress.stop();
    if (err) {
      save_trace(tr, o);
      return report(err, o.timeout);
    }

    std::vector<page> next;
    for (page& p : level) {
      external.insert(p.external.begin(), p.external.end());
      for (std::string& link : p.links) {
        if (!seen.insert(link).second) continue;
        if (depth == o.max_depth)
          beyond.insert(link);
        else
          next.push_back(page{.url = link, .from = p.url, .depth = depth + 1});
      }
      crawled.push_back(std::move(p));
    }
    level = std::move(next);
  }
  const std::chrono::duration<double> took =
      std::chrono::steady_clock::now() - began;
  if (!save_trace(tr, o)) return 1;

  std::sort(crawled.begin(), crawled.end(),
            [](const page& a, const page& b) { return a.url < b.url; });
  std::size_t broken = 0;
  for (const page& p : crawled) {
    std::cout << p.depth << "  " << p.status << "  " << p.url;
    if (p.status >= 400) {
      ++broken;
      std::cout << "  broken link, from " << p.from;
    } else if (!p.title.empty()) {
      std::cout << "  " << p.title;
    } else {
      std::cout << "  (" << p.type << ")";
    }
    std::cout << '\n';
  }
  std::cout << "crawled " << plural(crawled.size(), "page") << " to depth "
            << o.max_depth << " in " << fixed2(took.count()) << " s, "
            << plural(broken, "broken link")
            << "\nnot followed: " << plural(beyond.size(), "link")
            << " beyond depth " << o.max_depth << ", "
            << plural(external.size(), "link") << " off the site\n";
  return 0;
}

// channel<T> is a Go channel with a buffer: a FIFO queue of at most capacity
// values between threads. send() waits while it is full, receive() while it
// is empty; both give up when their context is cancelled. close() ends it:
// receive() then drains what is left, and closed_by() says why it was closed
// (an exception, or null for the end of the input).
template <class T>
class channel {
 public:
  explicit channel(std::size_t capacity) : capacity_(capacity) {}

  // send(v, ctx) queues v; false when ctx was cancelled or the channel closed
  // first.
  bool send(T v, const errgroup::context& ctx) {
    std::unique_lock lock(mu_);
    if (!cv_.wait(lock, ctx.stop_token(),
                  [&] { return closed_ || queue_.size() < capacity_; }) ||
        closed_)
      return false;
    queue_.push_back(std::move(v));
    cv_.notify_all();
    return true;
  }

  // receive(ctx) returns the next value; nullopt once the channel is closed
  // and empty, or when ctx is cancelled first.
  std::optional<T> receive(const errgroup::context& ctx) {
    std::unique_lock lock(mu_);
    if (!cv_.wait(lock, ctx.stop_token(),
                  [&] { return closed_ || !queue_.empty(); }) ||
        queue_.empty())
      return std::nullopt;
    T v = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return v;
  }

  void close(std::exception_ptr why = nullptr) {
    const std::lock_guard lock(mu_);
    closed_ = true;
    why_ = std::move(why);
    cv_.notify_all();
  }

  std::exception_ptr closed_by() const {
    const std::lock_guard lock(mu_);
    return why_;
  }

  std::size_t size() const {
    const std::lock_guard lock(mu_);
    return queue_.size();
  }

  // drained() reports whether the channel is closed and empty.
  bool drained() const {
    const std::lock_guard lock(mu_);
    return closed_ && queue_.empty();
  }

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<T> queue_;     // guarded by mu_
  bool closed_ = false;     // guarded by mu_
  std::exception_ptr why_;  // guarded by mu_
};

struct input_line {
  std::string text;
  std::size_t number = 0;  // from 1
};

// read_lines(fd, ctx, on_line) calls on_line(line) for each line of fd until
// the input ends (then it returns true), on_line returns false, or ctx is
// cancelled: that also ends a read that waits for input (poll() on fd and on
// an eventfd that a stop_callback signals). Throws std::system_error when
// reading fails, and std::length_error for a line longer than 64 KiB.
template <class F>
bool read_lines(int fd, const errgroup::context& ctx, F on_line) {
  auto fail = [](const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
  };
  const int wake = ::eventfd(0, EFD_CLOEXEC);
  if (wake < 0) fail("eventfd");
  const struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } wake_closer{wake};
  const std::stop_callback on_cancel(ctx.stop_token(), [wake] {
    const std::uint64_t one = 1;
    if (::write(wake, &one, sizeof one) < 0) {
    }  // cannot fail: the counter is far from its maximum
  });
  constexpr std::size_t max_line = 64 << 10;
  std::string buffer;
  std::size_t number = 0;
  char chunk[16 << 10];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail("standard input");
    }
    if (fds[1].revents != 0) return false;  // cancelled
    const ::ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) fail("standard input");
    if (n == 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    std::size_t begin = 0;
    for (std::size_t end; (end = buffer.find('\n', begin)) != buffer.npos;
         begin = end + 1) {
      if (!on_line(input_line{buffer.substr(begin, end - begin), ++number}))
        return false;
    }
    buffer.erase(0, begin);
    if (buffer.size() > max_line)
      throw std::length_error("line " + std::to_string(number + 1) +
                              " is longer than 64 KiB");
  }
  return buffer.empty() || on_line(input_line{std::move(buffer), ++number});
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && static_cast<unsigned char>(s.front()) <= 0x20)
    s.remove_prefix(1);
  while (!s.empty() && static_cast<unsigned char>(s.back()) <= 0x20)
    s.remove_suffix(1);
  return s;
}

// stream_urls(o) fetches the URLs on standard input, as the top comment says.
int stream_urls(const options& o) {
  const auto began = std::chrono::steady_clock::now();
  const errgroup::context_and_cancel run =
      o.timeout > 0
          ? errgroup::with_timeout(errgroup::context(),
                                   std::chrono::duration<double>(o.timeout))
          : errgroup::with_cancel(errgroup::context());
  errgroup::scheduler io{o.jobs};
  errgroup::group g(run.ctx, io);  // a context group, as with_context()
  const errgroup::context ctx = g.get_context();
  g.set_limit(o.jobs);
  errgroup::trace tr;

  channel<input_line> urls(2 * static_cast<std::size_t>(o.jobs));
  std::mutex mu;
  std::size_t fetched = 0;  // guarded by mu
  std::size_t broken = 0;   // guarded by mu
  progress_line progress([&g, &urls] {
    const auto s = g.counters();
    return std::to_string(s.succeeded) + " fetched, " +
           std::to_string(s.running) + " in flight, " +
           std::to_string(s.waiting + static_cast<std::int64_t>(urls.size())) +
           " queued";
  });
  observe(g, o, tr, "stdin", progress);

  // The producer of the channel: the lines of standard input.
  std::jthread reader([&urls, &ctx] {
    try {
      // Closed at the end of the input only: a cancelled ctx ends receive().
      if (read_lines(STDIN_FILENO, ctx, [&](input_line line) {
            return urls.send(std::move(line), ctx);
          }))
        urls.close();
    } catch (...) {
      urls.close(std::current_exception());
    }
  });

  // The producer loop: a fetch for each URL received, at most o.jobs at once
  // (go() waits for a slot). It ends when the channel is closed, or when the
  // group's context is cancelled by a hard error or the deadline.
  while (std::optional<input_line> line = urls.receive(ctx)) {
    const std::string_view text = trim(line->text);
    if (text.empty() || text.front() == '#') continue;
    const std::string where = "line " + std::to_string(line->number);
    url_ptr u = parse_url(text);
    if (!u) {  // a hard error, recorded as the group's error
      g.go([msg = where + ": not an http or https URL: " + std::string(text)] {
        return errgroup::make_error<std::runtime_error>(msg);
      });
      break;
    }
    std::string url = part(u.get(), CURLUPART_URL);
    g.go(url,
         [&, where, url, site = origin(u.get())](const errgroup::context& c) {
           page p{.url = url};
           fetch(c, site, p);
           check_status(p, o.strict, where);
           std::string out = std::to_string(p.status) + "  " + p.url + "  ";
           if (p.status >= 400)
             out += "broken link, " + where;
           else
             out += p.title.empty() ? "(" + p.type + ")" : p.title;
           const std::lock_guard lock(mu);
           ++fetched;
           if (p.status >= 400) ++broken;
           progress.println(out);
         });
  }
  // Stopped by the context, not by the end of the input: as Go's loop
  // returns ctx.Err(), that is the error (the deadline; a task's error comes
  // first).
  const errgroup::error stopped =
      urls.drained() ? errgroup::error() : ctx.err();
  if (std::exception_ptr why = urls.closed_by())  // the input failed
    g.go([why] { return why; });
  errgroup::error err = g.wait();  // cancels ctx: the reader stops too
  if (!err) err = stopped;
  reader.join();
  progress.stop();
  const bool saved = save_trace(tr, o);
  if (err) return report(err, o.timeout);
  if (!saved) return 1;
  const std::chrono::duration<double> took =
      std::chrono::steady_clock::now() - began;
  std::cout << "fetched " << plural(fetched, "URL") << " in "
            << fixed2(took.count()) << " s, " << plural(broken, "broken link")
            << '\n';
  return 0;
}

// seconds(s) checks an argument in seconds: a number from 0.001 to 1e9
// (whole nanoseconds, far from overflowing a clock's duration). Returns
// what is wrong, or nothing.
std::string seconds(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(v >= 0.001 && v <= 1e9))
    return "Value " + s + " not in range 0.001 to 1e9 seconds";
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Crawl a web site: at most --jobs fetches at a time, links followed up "
      "to --depth, everything stopped on the first hard error or at "
      "--timeout. With - for the URL, fetch the URLs on standard input, one "
      "a line."};
  options o;
  app.add_option("url", o.start,
                 "Where to start, or - to fetch the URLs on standard input")
      ->capture_default_str();
  app.add_option("-d,--depth", o.max_depth, "How many links away to go")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("-j,--jobs", o.jobs, "Fetches at once")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("-t,--timeout", o.timeout,
                 "Seconds for the whole run (default: 30, none with -)")
      ->check(seconds);
  app.add_flag("--strict", o.strict, "A broken link is a hard error");
  app.add_option("--trace", o.trace_file,
                 "Write a trace of the fetches to FILE (Chrome trace-event "
                 "JSON: Perfetto opens it; samples/trace_plot.py draws it)");
  app.add_option("--stall-after", o.stall_after,
                 "Seconds without a finished fetch, while others wait, "
                 "before the URLs holding the slots are printed")
      ->check(seconds)
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "crawler: " << e.what() << '\n';
    return 2;
  }
  const bool streaming = o.start == "-";
  if (app.count("--timeout") == 0) o.timeout = streaming ? 0 : 30;
  url_ptr start = streaming ? nullptr : parse_url(o.start);
  if (!streaming && !start) {
    std::cerr << "crawler: not an http or https URL: " << o.start << '\n';
    return 2;
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  const int status = streaming ? stream_urls(o) : crawl_site(o, start.get());
  curl_global_cleanup();
  return status;
}
