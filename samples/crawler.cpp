// samples/crawler.cpp: crawl a web site over HTTP, at most --jobs fetches at a
// time, following its links up to --depth, and stop everything on the first
// hard error or when --timeout passes.
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
// (HTTP 4xx). Without --strict a broken link is listed and the crawl goes on.
// Links to other sites, and links beyond --depth, are counted, not followed.
//
// By hand: `python3 samples/crawler_site.py &` serves the test site on
// http://127.0.0.1:8000, the crawler's default URL; then run `crawler`.
//
// Examples, checked by ctest ({url} is where crawler_site.py serves the site;
// its /slow/ pages answer after 0.2 s, /stall.html after an hour):
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
//   3  404  {url}/missing.html  broken link, from {url}/blog/2024.html
//   2  200  {url}/slow/1.html  Slow 1
//   2  200  {url}/slow/2.html  Slow 2
//   2  200  {url}/team.html  Team
//   crawled 14 pages to depth 3 in ... s, 1 broken link
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
// Bad arguments get one line and exit status 2:
//   $ crawler --jobs 0
//   crawler: --jobs: Value 0 not in range 1 to 256
//   [exit 2]
//   $ crawler ftp://example.invalid/
//   crawler: not an http or https URL: ftp://example.invalid/
//   [exit 2]
//   $ crawler --help | head -n 1
//   Crawl a web site: at most --jobs fetches at a time, links followed up ...
#include <curl/curl.h>
#include <gumbo.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <errgroup/errgroup.hpp>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
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

// A URL as libcurl's URL API parses it: `href` resolved against `base` (when
// given), without its #fragment; null when it is not an http(s) URL.
url_ptr parse_url(const std::string& href, CURLU* base = nullptr) {
  url_ptr u(base != nullptr ? curl_url_dup(base) : curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, href.c_str(), 0) != CURLUE_OK)
    return nullptr;
  curl_url_set(u.get(), CURLUPART_FRAGMENT, nullptr, 0);
  char* scheme = nullptr;
  if (curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
    return nullptr;
  const curl_string owned(scheme);
  const std::string_view s = scheme;
  return s == "http" || s == "https" ? std::move(u) : nullptr;
}

std::string part(CURLU* u, CURLUPart what, unsigned flags = 0) {
  char* s = nullptr;
  if (curl_url_get(u, what, &s, flags) != CURLUE_OK) return "";
  return curl_string(s).get();
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

// parse_html(body, base, site, p) fills in p's title and links, resolved
// against base. Links whose origin is not `site` go to p.external.
void parse_html(const std::string& body, CURLU* base, const std::string& site,
                page& p) {
  std::unique_ptr<GumboOutput, void (*)(GumboOutput*)> doc(
      gumbo_parse_with_options(&kGumboDefaultOptions, body.data(), body.size()),
      [](GumboOutput* out) {
        gumbo_destroy_output(&kGumboDefaultOptions, out);
      });
  std::vector<const GumboNode*> stack{doc->root};
  while (!stack.empty()) {
    const GumboNode* node = stack.back();
    stack.pop_back();
    if (node->type != GUMBO_NODE_ELEMENT) continue;
    const GumboElement& e = node->v.element;
    if (e.tag == GUMBO_TAG_TITLE && p.title.empty() && e.children.length > 0) {
      const auto* text = static_cast<const GumboNode*>(e.children.data[0]);
      if (text->type == GUMBO_NODE_TEXT) p.title = text->v.text.text;
    }
    if (e.tag == GUMBO_TAG_A) {
      const GumboAttribute* href = gumbo_get_attribute(&e.attributes, "href");
      if (href != nullptr) {
        if (url_ptr u = parse_url(href->value, base)) {
          (origin(u.get()) == site ? p.links : p.external)
              .push_back(part(u.get(), CURLUPART_URL));
        }
      }
    }
    for (unsigned i = e.children.length; i-- > 0;)  // in document order
      stack.push_back(static_cast<const GumboNode*>(e.children.data[i]));
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
  if (p.type.starts_with("text/html")) {
    char* final_url = nullptr;  // after redirects: relative links start there
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &final_url);
    if (url_ptr base = parse_url(final_url)) {
      parse_html(body.data, base.get(), site, p);
    }
  }
}

std::string plural(std::size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Crawl a web site: at most --jobs fetches at a time, links followed up "
      "to --depth, everything stopped on the first hard error or at "
      "--timeout."};
  std::string start = "http://127.0.0.1:8000/";
  int max_depth = 3;
  int jobs = 8;
  double timeout = 30;
  bool strict = false;
  app.add_option("url", start, "Where to start")->capture_default_str();
  app.add_option("-d,--depth", max_depth, "How many links away to go")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("-j,--jobs", jobs, "Fetches at once")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("-t,--timeout", timeout, "Seconds for the whole crawl")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--strict", strict, "A broken link is a hard error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "crawler: " << e.what() << '\n';
    return 2;
  }
  url_ptr start_url = parse_url(start);
  if (!start_url) {
    std::cerr << "crawler: not an http or https URL: " << start << '\n';
    return 2;
  }
  const std::string site = origin(start_url.get());

  curl_global_init(CURL_GLOBAL_DEFAULT);
  const auto began = std::chrono::steady_clock::now();
  auto [crawl, cancel] = errgroup::with_timeout(
      errgroup::context(), std::chrono::duration<double>(timeout));
  errgroup::scheduler io{jobs};  // see the top comment

  std::vector<page> crawled;
  std::vector<page> level{page{.url = part(start_url.get(), CURLUPART_URL)}};
  std::set<std::string> seen{level[0].url};
  std::set<std::string> beyond;
  std::set<std::string> external;
  for (int depth = 0; !level.empty(); ++depth) {
    errgroup::group g(crawl, io);  // a context group, as with_context()
    g.set_limit(jobs);
    progress_line progress([&g, depth, pages = level.size()] {
      const auto s = g.counters();
      std::ostringstream line;
      line << "depth " << depth << ": " << s.succeeded + s.failed << " of "
           << pages << " fetched, " << s.running << " in flight";
      return line.str();
    });
    for (page& p : level) {
      g.go([&p, &site, strict](const errgroup::context& c) {
        fetch(c, site, p);
        if (p.status >= 500 || (strict && p.status >= 400)) {
          throw std::runtime_error(
              p.url + ": HTTP " + std::to_string(p.status) +
              (p.from.empty() ? "" : " (linked from " + p.from + ")"));
        }
      });
    }
    if (errgroup::error err = g.wait()) {
      std::cerr << "crawler: " << err.message();
      if (err.is<errgroup::deadline_exceeded_error>())
        std::cerr << " (--timeout " << timeout << " s)";
      std::cerr << '\n';
      curl_global_cleanup();
      return 1;
    }

    std::vector<page> next;
    for (page& p : level) {
      external.insert(p.external.begin(), p.external.end());
      for (std::string& link : p.links) {
        if (!seen.insert(link).second) continue;
        if (depth == max_depth)
          beyond.insert(link);
        else
          next.push_back(page{.url = link, .from = p.url, .depth = depth + 1});
      }
      crawled.push_back(std::move(p));
    }
    level = std::move(next);
  }
  curl_global_cleanup();
  const std::chrono::duration<double> took =
      std::chrono::steady_clock::now() - began;

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
  std::cout.precision(2);
  std::cout << "crawled " << plural(crawled.size(), "page") << " to depth "
            << max_depth << " in " << std::fixed << took.count() << " s, "
            << plural(broken, "broken link")
            << "\nnot followed: " << plural(beyond.size(), "link")
            << " beyond depth " << max_depth << ", "
            << plural(external.size(), "link") << " off the site\n";
}
