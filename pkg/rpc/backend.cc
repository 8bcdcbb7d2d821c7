#include "pkg/rpc/backend.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pkg/base/files.h"
#include "pkg/wire/status.h"

namespace ocicache::rpc {
namespace {

const char* CodeName(grpc::StatusCode c) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",         "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",     "DATA_LOSS",
      "UNAUTHENTICATED"};
  int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

}  // namespace

void Counters::CountCall(absl::string_view method, absl::string_view code, absl::Duration took) {
  absl::MutexLock l(&mu_);
  CallStats& c = calls_[{std::string(method), std::string(code)}];
  ++c.count;
  double secs = absl::ToDoubleSeconds(took);
  c.seconds += secs;
  const std::vector<double>& bounds = LatencyBuckets();
  Histogram& h = latencies_[std::string(method)];
  if (h.buckets.empty()) h.buckets.resize(bounds.size());
  auto it = std::lower_bound(bounds.begin(), bounds.end(), secs);
  if (it != bounds.end()) ++h.buckets[it - bounds.begin()];
  ++h.count;
  h.sum += secs;
}

const std::vector<double>& Counters::LatencyBuckets() {
  // From a warm local lookup (well under a millisecond) to a large blob stream.
  static const auto* b = new std::vector<double>{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                                 30,     60,    300};
  return *b;
}

std::map<std::string, Counters::Histogram> Counters::Latencies() const {
  absl::MutexLock l(&mu_);
  return latencies_;
}

std::map<std::pair<std::string, std::string>, Counters::CallStats> Counters::Calls() const {
  absl::MutexLock l(&mu_);
  return calls_;
}

Call::Call(const Backend& b, grpc::ServerContext* ctx, absl::string_view method, Access access,
           Span span)
    : b_(b), ctx_(ctx), method_(method), access_(access), start_(absl::Now()) {
  if (b_.breaker != nullptr) probe_epoch_ = b_.breaker->probe_epoch();
  base::CallLimits limits;
  if (ctx_ != nullptr) {
    absl::Time deadline = absl::FromChrono(ctx_->deadline());
    // gRPC's "no deadline" is the clock's maximum, some centuries away.
    if (deadline - start_ < absl::Hours(24 * 365)) limits.deadline = deadline;
  }
  if (span == Span::kShort && b_.options.backend_timeout > absl::ZeroDuration()) {
    limits.cap = start_ + b_.options.backend_timeout;
  }
  limits.check = [this] { return Alive(); };
  scope_.emplace(std::move(limits));
}

absl::Status Call::Alive() const {
  if (ctx_ != nullptr && ctx_->IsCancelled()) return absl::CancelledError("the caller cancelled");
  if (b_.breaker != nullptr) return b_.breaker->ProbeEpochChanged(probe_epoch_);
  return absl::OkStatus();
}

void Call::Subject(absl::string_view s) {
  constexpr size_t kMax = 200;
  std::string shown(s.substr(0, kMax));
  subject_ = absl::StrCat("\"", absl::CHexEscape(shown), s.size() > kMax ? "...\"" : "\"");
}

absl::Status Call::Authorize() const {
  if (b_.auth == nullptr) return absl::OkStatus();
  return b_.auth->Check(AuthorizationHeader(ctx_), access_);
}

bool Call::Allows(Access access) const {
  return b_.auth == nullptr || b_.auth->Check(AuthorizationHeader(ctx_), access).ok();
}

std::string Call::AuthorizationHeader(grpc::ServerContext* ctx) {
  std::string header;
  if (ctx != nullptr) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it != md.end()) header.assign(it->second.data(), it->second.size());
  }
  return header;
}

grpc::Status Call::Done(const absl::Status& result) {
  absl::Status s = result;
  if (base::IsDiskFull(s)) {
    // The server's own disk, not the caller's request: another replica, or
    // this one after its prober freed space, can take the call.
    s = absl::UnavailableError(absl::StrCat("the server's disk is full: ", s.message()));
  }
  if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) {
    b_.counters->backend_errors.fetch_add(1, std::memory_order_relaxed);
  }
  grpc::Status out = wire::ToGrpc(s);
  absl::Duration took = absl::Now() - start_;
  b_.counters->CountCall(method_, CodeName(out.error_code()), took);
  if (b_.options.access_log) {
    double ms = absl::ToDoubleMilliseconds(took);
    std::string line = absl::StrFormat("%s %s %s %s %.1fms %dB", ctx_ != nullptr ? ctx_->peer() : "-",
                                       method_, subject_, CodeName(out.error_code()), ms, bytes_);
    line += note_;
    if (!s.ok()) {
      absl::StrAppend(&line, " \"", absl::CHexEscape(s.message().substr(0, 300)), "\"");
    }
    b_.options.access_log(line);
  }
  return out;
}

void LogToStderr(absl::string_view line) {
  std::string out =
      absl::StrCat("ocicached: ", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone()),
                   line, "\n");
  absl::string_view rest = out;
  while (!rest.empty()) {
    ssize_t n = ::write(2, rest.data(), rest.size());
    if (n <= 0) return;
    rest.remove_prefix(n);
  }
}

}  // namespace ocicache::rpc
