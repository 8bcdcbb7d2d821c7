#include "pkg/httpcache/stats.h"

#include "absl/strings/str_cat.h"

namespace ocicache::httpcache {

const std::vector<double>& Stats::LatencyBuckets() {
  static const auto* b = new std::vector<double>{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                 0.25,  0.5,    1,     2.5,  5,     10,   30};
  return *b;
}

void Stats::Count(httpcache::Protocol p, absl::string_view method, int status, Outcome outcome,
                  int64_t bytes_in, int64_t bytes_out, int64_t bytes_stored,
                  absl::Duration took) {
  double s = absl::ToDoubleSeconds(took);
  absl::MutexLock l(&mu_);
  Protocol& c = by_protocol_[static_cast<size_t>(p)];
  ++c.requests[{std::string(method.substr(0, 16)), status}];
  if (outcome == Outcome::kHit) ++c.hits;
  if (outcome == Outcome::kMiss) ++c.misses;
  c.bytes_in += bytes_in;
  c.bytes_out += bytes_out;
  c.bytes_stored += bytes_stored;
  const auto& bounds = LatencyBuckets();
  if (c.buckets.empty()) c.buckets.assign(bounds.size(), 0);
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (s <= bounds[i]) {
      ++c.buckets[i];
      break;
    }
  }
  ++c.count;
  c.seconds += s;
}

Stats::Protocol Stats::Get(httpcache::Protocol p) const {
  absl::MutexLock l(&mu_);
  return by_protocol_[static_cast<size_t>(p)];
}

std::string Stats::RenderPrometheus() const {
  std::array<Protocol, kProtocolCount> all;
  {
    absl::MutexLock l(&mu_);
    all = by_protocol_;
  }
  auto name = [](size_t i) { return ProtocolName(static_cast<httpcache::Protocol>(i)); };
  std::string out;
  absl::StrAppend(&out,
                  "# HELP ocicached_http_requests_total HTTP cache requests by protocol, method "
                  "and status code.\n# TYPE ocicached_http_requests_total counter\n");
  for (size_t i = 0; i < all.size(); ++i) {
    for (const auto& [k, n] : all[i].requests) {
      absl::StrAppend(&out, "ocicached_http_requests_total{protocol=\"", name(i), "\",method=\"",
                      k.first, "\",code=\"", k.second, "\"} ", n, "\n");
    }
  }
  struct Family {
    const char* metric;
    const char* help;
    int64_t Protocol::*field;
  };
  for (const Family& f : {
           Family{"ocicached_http_hits_total", "HTTP cache reads answered with the object.",
                  &Protocol::hits},
           Family{"ocicached_http_misses_total",
                  "HTTP cache reads answered 404 (absent, or the registry out of reach).",
                  &Protocol::misses},
           Family{"ocicached_http_received_bytes_total", "HTTP request body bytes received.",
                  &Protocol::bytes_in},
           Family{"ocicached_http_sent_bytes_total", "HTTP response body bytes sent.",
                  &Protocol::bytes_out},
           Family{"ocicached_http_stored_bytes_total",
                  "Bytes stored for accepted PUT bodies (after compression, where it paid).",
                  &Protocol::bytes_stored},
       }) {
    absl::StrAppend(&out, "# HELP ", f.metric, " ", f.help, "\n# TYPE ", f.metric, " counter\n");
    for (size_t i = 0; i < all.size(); ++i) {
      absl::StrAppend(&out, f.metric, "{protocol=\"", name(i), "\"} ", all[i].*f.field, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP ocicached_http_request_duration_seconds HTTP cache request latency by "
                  "protocol.\n# TYPE ocicached_http_request_duration_seconds histogram\n");
  const auto& bounds = LatencyBuckets();
  for (size_t i = 0; i < all.size(); ++i) {
    const Protocol& c = all[i];
    int64_t cum = 0;
    for (size_t b = 0; b < bounds.size(); ++b) {
      if (!c.buckets.empty()) cum += c.buckets[b];
      absl::StrAppend(&out, "ocicached_http_request_duration_seconds_bucket{protocol=\"", name(i),
                      "\",le=\"", bounds[b], "\"} ", cum, "\n");
    }
    absl::StrAppend(&out, "ocicached_http_request_duration_seconds_bucket{protocol=\"", name(i),
                    "\",le=\"+Inf\"} ", c.count, "\n");
    absl::StrAppend(&out, "ocicached_http_request_duration_seconds_sum{protocol=\"", name(i),
                    "\"} ", c.seconds, "\n");
    absl::StrAppend(&out, "ocicached_http_request_duration_seconds_count{protocol=\"", name(i),
                    "\"} ", c.count, "\n");
  }
  return out;
}

}  // namespace ocicache::httpcache
