// What the ocicache.v1 servicers share: the stores they adapt, their limits, the
// request counters and the access log. The servicers own none of it.
#ifndef OCICACHE_PKG_RPC_BACKEND_H_
#define OCICACHE_PKG_RPC_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/admin/admin.h"
#include "pkg/base/call_scope.h"
#include "pkg/cache/breaker.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store.h"
#include "pkg/cache/tiers.h"
#include "pkg/rpc/auth.h"
#include "pkg/rpc/uploads.h"

namespace ocicache::rpc {

struct ServiceOptions {
  // Blobs.Read sends chunks of this many bytes.
  size_t read_chunk_bytes = 1 << 20;
  // Blobs.Write refuses blobs declared larger (RESOURCE_EXHAUSTED).
  int64_t max_blob_bytes = int64_t{64} << 30;
  // On a server without a local tier, a resumable upload's first stream is
  // pushed to the registry while it is staged (StreamingPush), so the upload
  // overlaps the receiving; false: only after the last byte (Upload::Commit).
  // With a local tier the commit is a local write and the registry push follows
  // it either way, so staging then committing costs little there, and no store
  // write stays open for as long as gRPC takes to see a broken stream end.
  bool push_while_staging = true;
  // The longest a call that moves no blob stream (Lookup, Put, Stat, REAPI's
  // GetActionResult, ...) waits on the registry: past it the registry counts as
  // unavailable (a miss, or UNAVAILABLE). Blob streams, Mount, List, gc and sync
  // are bounded by the caller's deadline and the client's stall timeout instead.
  // Every call also ends its registry requests when the caller cancels, when
  // its deadline passes, and when the health probe fails (Backend::breaker).
  absl::Duration backend_timeout = absl::Seconds(30);
  // BatchLookup and Stat: at most this many keys or blobs per request...
  int max_batch = 1000;
  // The largest reply message (the server's max message size): a BatchLookup
  // whose entries would not fit answers the keys past it RESOURCE_EXHAUSTED.
  size_t max_reply_bytes = 16 << 20;
  // ...looked up with at most this many threads per request.
  int batch_parallelism = 16;
  // One line per request; null: no access log.
  std::function<void(absl::string_view line)> access_log;
};

// Request counters for Admin.Stats and the metrics endpoint. Relaxed
// atomics: they are statistics.
struct Counters {
  std::atomic<int64_t> lookups{0};
  std::atomic<int64_t> hits{0};
  std::atomic<int64_t> misses{0};
  std::atomic<int64_t> bytes_in{0};
  std::atomic<int64_t> bytes_out{0};
  // Calls that failed with UNAVAILABLE or DEADLINE_EXCEEDED (a backend out of
  // reach), and failed health probes.
  std::atomic<int64_t> backend_errors{0};

  struct CallStats {
    int64_t count = 0;
    double seconds = 0;
  };
  // Every call, by method and status code name.
  void CountCall(absl::string_view method, absl::string_view code, absl::Duration took);
  std::map<std::pair<std::string, std::string>, CallStats> Calls() const;

  // Upper bounds (seconds) of the latency histogram buckets; +Inf is implied.
  static const std::vector<double>& LatencyBuckets();
  struct Histogram {
    std::vector<int64_t> buckets;  // per bound in LatencyBuckets(), not cumulative
    int64_t count = 0;            // all calls, +Inf included
    double sum = 0;               // seconds
  };
  // Call durations by method, every status code together.
  std::map<std::string, Histogram> Latencies() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, CallStats> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Histogram> latencies_ ABSL_GUARDED_BY(mu_);
};

struct Backend {
  cache::Store* store = nullptr;           // required
  admin::Admin* admin = nullptr;           // required for Admin.GarbageCollect / Sync
  cache::Tiers tiers;  // for Stats and Mount; either may be null
  // Registry clients for Mount into other repositories; may be null (then made
  // on first use with default options).
  std::shared_ptr<cache::ClientPool> pool;
  UploadStaging* uploads = nullptr;  // null: Write with upload_id is FAILED_PRECONDITION
  const TokenAuth* auth = nullptr;   // null: no authentication
  Counters* counters = nullptr;      // required
  // The registry's breaker, fed by the health probe; null: no registry.
  std::shared_ptr<cache::Breaker> breaker;
  ServiceOptions options;
  absl::Time started = absl::Now();
};

// How long a call may wait on the registry (ServiceOptions::backend_timeout).
enum class Span {
  kShort,  // capped by backend_timeout
  kLong,   // blob streams and walks: only the caller's deadline and cancellation
};

// One request: checks, counts and logs it, and bounds the registry work done for
// it (a base::CallScope for the handler's thread: the caller's deadline, the
// server's cap for kShort calls, and an end when the caller cancels or the
// registry fails its health check). Every handler makes one, calls Authorize()
// first, and returns Done(status), which converts the status (status.h) and
// writes the access-log line:
// "<peer> <Service/Method> <subject> <CODE> <ms>ms <bytes>B[ notes]".
class Call {
 public:
  Call(const Backend& b, grpc::ServerContext* ctx, absl::string_view method, Access access,
       Span span = Span::kShort);
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // The key or digest the request is about.
  void Subject(absl::string_view s);
  void AddBytes(int64_t n) { bytes_ += n; }
  // Extra " name=value" fields appended to the access-log line (REAPI request metadata).
  void Note(absl::string_view fields) { note_.append(fields.data(), fields.size()); }
  // OK, or why the caller's token does not allow this call (auth.h).
  absl::Status Authorize() const;
  // Whether the caller's token allows calls needing `access`.
  bool Allows(Access access) const;
  grpc::Status Done(const absl::Status& s);

 private:
  static std::string AuthorizationHeader(grpc::ServerContext* ctx);
  // CallLimits::check: whether the call should go on.
  absl::Status Alive() const;
  const Backend& b_;
  grpc::ServerContext* ctx_;
  int64_t probe_epoch_ = 0;
  std::string method_;
  Access access_;
  std::string subject_ = "-";
  int64_t bytes_ = 0;
  std::string note_;
  absl::Time start_;
  std::optional<base::CallScope> scope_;  // last: installed after the fields it reads
};

// The access-log sink ocicached uses: one write(2) per line on stderr.
void LogToStderr(absl::string_view line);

}  // namespace ocicache::rpc

#endif  // OCICACHE_PKG_RPC_BACKEND_H_
