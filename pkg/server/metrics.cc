#include "pkg/server/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ocicache::server {
namespace {

void Metric(std::string* out, const char* name, const char* type, const char* help,
            int64_t value) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                  value, "\n");
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(n);
  }
  return true;
}

}  // namespace

std::string RenderMetrics(const rpc::Counters& c, const MetricsSnapshot& snap) {
  std::string out;
  auto load = [](const std::atomic<int64_t>& a) { return a.load(std::memory_order_relaxed); };
  Metric(&out, "ocicached_serving", "gauge", "1 while the health probe succeeds.",
         snap.serving ? 1 : 0);
  Metric(&out, "ocicached_uptime_seconds", "gauge", "Seconds since the server started.",
         absl::ToInt64Seconds(snap.uptime));
  Metric(&out, "ocicached_lookups_total", "counter", "Entry lookups (each BatchLookup key counts).",
         load(c.lookups));
  Metric(&out, "ocicached_hits_total", "counter", "Lookups that found an entry.", load(c.hits));
  Metric(&out, "ocicached_misses_total", "counter", "Lookups that found none.", load(c.misses));
  Metric(&out, "ocicached_blob_bytes_received_total", "counter", "Blob bytes uploaded by clients.",
         load(c.bytes_in));
  Metric(&out, "ocicached_blob_bytes_sent_total", "counter", "Blob bytes read by clients.",
         load(c.bytes_out));
  Metric(&out, "ocicached_backend_errors_total", "counter",
         "Calls failed with UNAVAILABLE or DEADLINE_EXCEEDED, and failed health probes.",
         load(c.backend_errors));
  if (snap.registry_requests >= 0) {
    Metric(&out, "ocicached_registry_requests_total", "counter",
           "HTTP requests sent to the registry.", snap.registry_requests);
  }
  if (snap.registry_backlog >= 0) {
    Metric(&out, "ocicached_registry_backlog_entries", "gauge",
           "Entries put while the registry was unreachable, still to be pushed to it.",
           snap.registry_backlog);
    Metric(&out, "ocicached_registry_backlog_blobs", "gauge",
           "Blobs written while the registry was unreachable, still to be pushed to it.",
           snap.registry_backlog_blobs);
  }
  if (snap.local_tier_bytes >= 0) {
    Metric(&out, "ocicached_local_tier_bytes", "gauge", "Bytes of blobs in the local tier.",
           snap.local_tier_bytes);
  }
  if (snap.local_tier_limit_bytes > 0) {
    Metric(&out, "ocicached_local_tier_limit_bytes", "gauge",
           "The local tier's bound (--max_local_size).", snap.local_tier_limit_bytes);
    Metric(&out, "ocicached_local_evicted_entries_total", "counter",
           "Entries evicted from the local tier (least recently used first).",
           snap.local_evicted_entries);
    Metric(&out, "ocicached_local_evicted_bytes_total", "counter",
           "Blob bytes removed from the local tier by eviction.", snap.local_evicted_bytes);
  }
  if (snap.resources.open_fds >= 0) {
    Metric(&out, "ocicached_open_fds", "gauge", "File descriptors the process has open.",
           snap.resources.open_fds);
  }
  if (snap.resources.max_fds > 0) {
    Metric(&out, "ocicached_max_fds", "gauge", "The process's fd limit (soft RLIMIT_NOFILE).",
           snap.resources.max_fds);
  }
  if (snap.resources.disk_free_bytes >= 0) {
    Metric(&out, "ocicached_local_disk_free_bytes", "gauge",
           "Bytes free on the local tier's filesystem.", snap.resources.disk_free_bytes);
  }
  Metric(&out, "ocicached_reapi_open_instances", "gauge",
         "REAPI instances (non-empty names) open now (--reapi_max_open_instances).",
         snap.reapi_open_instances);
  Metric(&out, "ocicached_reapi_closed_instances_total", "counter",
         "REAPI instances closed to stay within --reapi_max_open_instances.",
         snap.reapi_closed_instances);
  if (!snap.reapi.empty()) {
    struct Family {
      const char* name;
      const char* type;
      const char* help;
    };
    const Family families[] = {
        {"ocicached_reapi_action_cache_hits_total", "counter",
         "REAPI GetActionResult hits (complete results), by instance name."},
        {"ocicached_reapi_action_cache_misses_total", "counter",
         "REAPI GetActionResult misses (absent or incomplete results), by instance name."},
        {"ocicached_reapi_action_cache_hit_ratio", "gauge",
         "hits / (hits + misses) since start, by instance name; 0 before any lookup."}};
    for (int f = 0; f < 3; ++f) {
      absl::StrAppend(&out, "# HELP ", families[f].name, " ", families[f].help, "\n# TYPE ",
                      families[f].name, " ", families[f].type, "\n");
      for (const auto& r : snap.reapi) {
        absl::StrAppend(&out, families[f].name, "{instance=\"", absl::CHexEscape(r.instance),
                        "\"} ");
        if (f == 0) {
          absl::StrAppend(&out, r.hits, "\n");
        } else if (f == 1) {
          absl::StrAppend(&out, r.misses, "\n");
        } else {
          int64_t n = r.hits + r.misses;
          absl::StrAppend(&out, absl::StrFormat("%.6f", n > 0 ? double(r.hits) / n : 0.0), "\n");
        }
      }
    }
  }
  {
    int64_t lookups = load(c.lookups);
    double ratio = lookups > 0 ? static_cast<double>(load(c.hits)) / lookups : 0;
    absl::StrAppend(&out,
                    "# HELP ocicached_hit_ratio Hits over lookups since start (0 before any lookup).\n"
                    "# TYPE ocicached_hit_ratio gauge\n"
                    "ocicached_hit_ratio ",
                    absl::StrFormat("%.6f", ratio), "\n");
  }
  auto calls = c.Calls();
  absl::StrAppend(&out,
                  "# HELP ocicached_calls_total Calls by method and status code.\n"
                  "# TYPE ocicached_calls_total counter\n");
  for (const auto& [key, stats] : calls) {
    absl::StrAppend(&out, "ocicached_calls_total{method=\"", key.first, "\",code=\"", key.second,
                    "\"} ", stats.count, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP ocicached_call_seconds_total Time spent in calls, by method and status code.\n"
                  "# TYPE ocicached_call_seconds_total counter\n");
  for (const auto& [key, stats] : calls) {
    absl::StrAppend(&out, "ocicached_call_seconds_total{method=\"", key.first, "\",code=\"",
                    key.second, "\"} ", absl::StrFormat("%.6f", stats.seconds), "\n");
  }
  absl::StrAppend(&out,
                  "# HELP ocicached_call_duration_seconds Call latency by method, every status code.\n"
                  "# TYPE ocicached_call_duration_seconds histogram\n");
  const std::vector<double>& bounds = rpc::Counters::LatencyBuckets();
  for (const auto& [method, h] : c.Latencies()) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < bounds.size() && i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i];
      absl::StrAppend(&out, "ocicached_call_duration_seconds_bucket{method=\"", method, "\",le=\"",
                      bounds[i], "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, "ocicached_call_duration_seconds_bucket{method=\"", method,
                    "\",le=\"+Inf\"} ", h.count, "\n");
    absl::StrAppend(&out, "ocicached_call_duration_seconds_sum{method=\"", method, "\"} ",
                    absl::StrFormat("%.6f", h.sum), "\n");
    absl::StrAppend(&out, "ocicached_call_duration_seconds_count{method=\"", method, "\"} ",
                    h.count, "\n");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::string()> render) {
  size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address \"", listen, "\" is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(port);
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port_str.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address \"", listen, "\": unknown host"));
  }
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->render_ = std::move(render);
  s->listen_fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (s->listen_fd_ >= 0) setsockopt(s->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool ok = s->listen_fd_ >= 0 && ::bind(s->listen_fd_, res->ai_addr, res->ai_addrlen) == 0 &&
            ::listen(s->listen_fd_, 16) == 0;
  freeaddrinfo(res);
  if (!ok) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, " for metrics: ", std::strerror(errno)));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(s->wake_, O_CLOEXEC) != 0) return absl::InternalError("pipe");
  s->thread_ = std::thread([srv = s.get()] { srv->Run(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (thread_.joinable()) {
    char x = 0;
    (void)::write(wake_[1], &x, 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_[0], &wake_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void MetricsHttpServer::Run() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN)) return;
    if (fds[0].revents & POLLIN) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Serve(fd);
      ::close(fd);
    }
  }
}

void MetricsHttpServer::Serve(int fd) {
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string req;
  char buf[2048];
  while (req.size() < 8192 && req.find("\r\n\r\n") == std::string::npos &&
         req.find("\n\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    req.append(buf, n);
  }
  std::string line = req.substr(0, req.find_first_of("\r\n"));
  std::string status = "404 Not Found", body = "not found: try GET /metrics\n";
  std::string type = "text/plain; charset=utf-8";
  if (absl::StartsWith(line, "GET /metrics ") || line == "GET /metrics") {
    status = "200 OK";
    body = render_();
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (!absl::StartsWith(line, "GET ")) {
    status = "400 Bad Request";
    body = "bad request\n";
  }
  SendAll(fd, absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                           "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n",
                           body));
}

}  // namespace ocicache::server
