#include "test/fuzz/http_fuzzer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "pkg/httpcache/handler.h"
#include "pkg/httpcache/router.h"
#include "pkg/httpcache/server.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/reapi/instance.h"

namespace ocicache::fuzz {
namespace {

HttpFuzzStats stats;

[[noreturn]] void Die(absl::string_view why, absl::string_view input) {
  std::fprintf(stderr, "http fuzz invariant broken: %s\ninput (C-escaped): \"%s\"\n",
               std::string(why).c_str(), absl::CHexEscape(input).c_str());
  std::abort();
}

struct Server {
  std::string dir;
  std::unique_ptr<layout::LayoutStore> store;
  std::unique_ptr<reapi::Instances> instances;
  std::unique_ptr<httpcache::Handler> handler;
  std::unique_ptr<httpcache::HttpServer> http;
};

Server& TheServer() {
  static Server* s = [] {
    auto* srv = new Server;
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base = tmp != nullptr ? tmp : "/tmp";
    char pattern[4096];
    std::snprintf(pattern, sizeof pattern, "%s/http-fuzz.XXXXXX", base.c_str());
    if (mkdtemp(pattern) == nullptr) std::abort();
    srv->dir = pattern;
    auto st = layout::LayoutStore::Open(srv->dir + "/layout");
    if (!st.ok()) Die(st.status().ToString(), "");
    srv->store = *std::move(st);
    srv->instances = std::make_unique<reapi::Instances>(srv->store.get(), nullptr,
                                                        reapi::InstanceOptions{});
    httpcache::HandlerOptions ho;
    ho.max_body_bytes = 1 << 20;
    srv->handler = std::make_unique<httpcache::Handler>(srv->store.get(), srv->instances.get(),
                                                        nullptr, nullptr, ho);
    httpcache::HttpServerOptions so;
    so.listen = "127.0.0.1:0";
    so.max_body_bytes = 1 << 20;
    so.idle_timeout = absl::Seconds(1);
    auto h = httpcache::HttpServer::Start(srv->handler.get(), so);
    if (!h.ok()) Die(h.status().ToString(), "");
    srv->http = *std::move(h);
    return srv;
  }();
  return *s;
}

bool keep_write_side_open = false;

// Sends `bytes`, closes the write side (see KeepWriteSideOpen), and reads the
// answer (at most 1 s).
std::string Exchange(const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(TheServer().http->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    Die("cannot connect to the server", bytes);
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (!keep_write_side_open) shutdown(fd, SHUT_WR);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (4 << 20)) break;
  }
  close(fd);
  return out;
}

void RouterInput(absl::string_view rest, absl::string_view input) {
  std::vector<std::string> parts = absl::StrSplit(rest, absl::MaxSplits('\n', 2));
  parts.resize(3);
  std::map<std::string, std::string> query;
  for (absl::string_view kv : absl::StrSplit(parts[2], '&', absl::SkipEmpty())) {
    std::vector<std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    p.resize(2);
    query[p[0]] = p[1];
  }
  httpcache::Routed r = httpcache::RouteRequest(parts[0], parts[1], query);
  if (r.error != 0) {
    ++stats.route_errors;
    switch (r.error) {
      case 400: case 404: case 411: case 413: case 414: break;
      case 405:
        if (r.allow.empty()) Die("405 without the allowed methods", input);
        break;
      default:
        Die(absl::StrCat("router answered ", r.error), input);
    }
    if (r.message.empty()) Die("an error without a message", input);
    return;
  }
  ++stats.routed;
  const httpcache::Route& route = r.route;
  if (route.target == httpcache::Target::kObject) {
    if (!absl::StartsWith(route.key, "http:")) Die("object key outside http:", input);
    for (absl::string_view seg : absl::StrSplit(route.key, absl::ByAnyChar("/:"))) {
      if (seg == "." || seg == "..") Die("a key with a . or .. segment", input);
    }
    for (char c : route.key) {
      if (static_cast<unsigned char>(c) < 0x20) Die("a control character in a key", input);
    }
  }
  if (route.target == httpcache::Target::kActionResult ||
      route.target == httpcache::Target::kCasBlob) {
    if (!oci::Digest::FromHex(route.hash).ok()) Die("a routed hash that is not sha256 hex", input);
  }
  bool write_method = parts[0] == "PUT" || parts[0] == "DELETE";
  if (route.writes != write_method) Die("writes does not follow the method", input);
}

void RawInput(absl::string_view rest, absl::string_view input) {
  ++stats.raw;
  std::string answer = Exchange(std::string(rest));
  if (answer.empty()) return;  // closed without an answer (garbage)
  if (!absl::StartsWith(answer, "HTTP/1.")) Die(absl::StrCat("not a status line: ", answer.substr(0, 80)), input);
  ++stats.answered;
  // Every answer on the connection (keep-alive may carry several).
  size_t pos = 0;
  while ((pos = answer.find("HTTP/1.", pos)) != std::string::npos) {
    if (pos + 12 > answer.size()) break;
    char cls = answer[pos + 9];
    if (cls >= '1' && cls <= '5') {
      ++stats.status[cls - '0'];
      // 503 (a store out of reach) and 505 (libmicrohttpd's answer to an
      // HTTP version it does not speak) are the only 5xx allowed.
      if (cls == '5' && answer.compare(pos + 9, 3, "503") != 0 &&
          answer.compare(pos + 9, 3, "505") != 0) {
        Die(absl::StrCat("a 5xx answer: ", answer.substr(pos, 200)), input);
      }
    }
    pos += 12;
  }
  if (stats.raw % 64 == 0) CheckServerAlive();
}

}  // namespace

const HttpFuzzStats& HttpStats() { return stats; }

void KeepWriteSideOpen(bool open) { keep_write_side_open = open; }

void CheckServerAlive() {
  std::string answer = Exchange("GET /status HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
  if (!absl::StartsWith(answer, "HTTP/1.1 200")) {
    Die(absl::StrCat("the server stopped serving: ", answer.substr(0, 120)), "");
  }
}

std::vector<std::string> HttpSeeds() {
  std::string h = oci::Digest::Of("x").hex();
  std::vector<std::string> out = {
      std::string("\x00", 1) + "GET\n/cache/ccache/ab/cdef\n",
      std::string("\x00", 1) + "PUT\n/ac/" + h + "\n",
      std::string("\x00", 1) + "GET\n/team/x/cas/" + h + "\n",
      std::string("\x00", 1) + "PUT\n/v8/artifacts/0123456789abcdef\nteamId=team_a&slug=s",
      std::string("\x00", 1) + "POST\n/v8/artifacts/events\n",
      std::string("\x00", 1) + "PUT\n/v1/cache/1234567890\n",
      std::string("\x00", 1) + "GET\n/status\n",
      "\x01GET /cache/ns/k HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      "\x01PUT /cache/ns/k HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
      "\x01PUT /cache/ns/k HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "\x01PUT /cas/" + h + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
      "\x01PUT /v8/artifacts/abc?teamId=t HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-artifact-duration: 5\r\n"
      "Content-Length: 3\r\n\r\nabc",
      "\x01POST /v8/artifacts?teamId=t HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 16\r\n\r\n"
      "{\"hashes\":[\"a\"]}",
      "\x01PUT /v1/cache/77 HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
      "\x01GET /ac/" + h + " HTTP/1.1\r\nHost: a\r\n\r\nGET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      "\x01PUT /ac/" + h + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 4\r\n\r\n\x0a\x02\x08\x01",
  };
  return out;
}

}  // namespace ocicache::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocicache::fuzz;
  if (size == 0) return 0;
  ++stats.inputs;
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  if (data[0] % 2 == 0) {
    RouterInput(input.substr(1), input);
  } else {
    RawInput(input.substr(1), input);
  }
  return 0;
}
