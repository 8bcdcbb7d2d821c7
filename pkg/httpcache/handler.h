// The HTTP cache protocols over ocicache's stores, apart from any HTTP library:
// a request in, a response out (server.h carries them over libmicrohttpd).
//
// Objects of the key/value, Turborepo and Nx URL spaces are entries of the
// server's default store (docs/FORMAT.md, "HTTP cache objects"); bazel's /ac/
// and /cas/ are the REAPI instances the gRPC endpoint serves, so an action
// stored over one protocol is a hit over the other.
//
// Reads never fail a build: anything but a hit (a miss, a registry out of
// reach, a timeout) is 404, with the reason in the access log. Writes with the
// registry out of reach land in the local tier, which pushes them later (the
// tiered store's backlog).
#ifndef OCICACHE_PKG_HTTPCACHE_HANDLER_H_
#define OCICACHE_PKG_HTTPCACHE_HANDLER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pkg/base/files.h"
#include "pkg/cache/breaker.h"
#include "pkg/cache/recall.h"
#include "pkg/cache/store.h"
#include "pkg/httpcache/router.h"
#include "pkg/httpcache/stats.h"
#include "pkg/oci/stream.h"
#include "pkg/reapi/instance.h"
#include "pkg/rpc/auth.h"

namespace ocicache::httpcache {

struct Request {
  std::string method;
  std::string path;  // decoded, without the query
  std::map<std::string, std::string> query;
  // Header values by lower-case name (the last one wins).
  std::map<std::string, std::string> headers;
  int64_t content_length = -1;  // -1: none (no body, or chunked)
  bool chunked = false;
  std::string peer;

  std::string Header(absl::string_view lower_name) const;
  bool HasBody() const { return content_length > 0 || chunked; }
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body: `body`, or when `stream` is set, what it writes (`size` bytes;
  // -1: unknown, sent chunked). A stream that fails midway cuts the
  // connection: the client sees a short body, never a wrong one.
  std::string body;
  std::function<absl::Status(oci::ByteSink&)> stream;
  // Or a verified blob file (cache::BlobStore::OpenVerifiedBlob) to send as
  // it is, `size` bytes: the server sends it with sendfile where it can.
  std::shared_ptr<base::UniqueFd> file;
  int64_t size = -1;
  // For the access log and metrics.
  std::string note;
  int64_t body_bytes() const {
    return stream || file ? size : static_cast<int64_t>(body.size());
  }
};

struct HandlerOptions {
  // Largest request body (413 beyond).
  int64_t max_body_bytes = int64_t{16} << 30;
  // Largest /ac/ body and Turborepo query (ActionResults are small).
  int64_t max_message_bytes = 16 << 20;
  // Objects up to this size are kept inside their entry (one GET answers a
  // hit); larger ones are a blob of their own.
  int64_t max_inline_bytes = 16 << 10;
  // Bodies up to this size are answered from memory; larger ones stream.
  int64_t max_buffered_bytes = 1 << 20;
  // Objects larger than max_inline_bytes whose first bytes compress (plain
  // tars, text; not gzip'd or zstd'd bodies) are stored as zstd at this level
  // (docs/FORMAT.md, "HTTP cache objects"); 0: every object as it was sent.
  int zstd_level = 3;
  // A read waits at most this long on the registry; then it is a miss (404).
  absl::Duration read_timeout = absl::Seconds(5);
  // A write waits at most this long on the registry before the tiered store
  // keeps it for later (and a registry-only server answers 503).
  absl::Duration write_timeout = absl::Seconds(60);
  // Written by the server's /status page.
  std::string store_description;
  absl::Time started = absl::Now();
  std::function<void(absl::string_view line)> access_log;
  // Recall lists of the object URL spaces (cache/recall.h): the keys clients
  // used are saved at stop (SaveRecall) and prefetched by the next server on
  // its first request in the namespace. max_keys = 0: off (servers without
  // both a local tier and a registry, where a prefetch would copy nothing).
  cache::RecallOptions recall{.max_keys = 0};
};

// One request in progress: what Begin decided, for Body and End.
struct Exchange {
  Request request;
  Routed routed;
  absl::Time start;
  // Set by Begin or Precheck when the answer is known before the body: the
  // server sends it (reading and dropping any body first, so the connection
  // stays usable).
  std::optional<Response> early;
  // Whether Precheck ran (Body runs it otherwise).
  bool prechecked = false;
  int64_t bytes_in = 0;
  // What the stores keep of an accepted body (the zstd frame of a compressed
  // object); -1: bytes_in, as sent.
  int64_t bytes_stored = -1;
};

class Handler {
 public:
  // `store` (the default store) and `instances` are not owned; `auth` may be
  // null (no authentication), as may `breaker` (no registry).
  Handler(cache::Store* store, reapi::Instances* instances, const rpc::TokenAuth* auth,
          std::shared_ptr<cache::Breaker> breaker, HandlerOptions opts);
  ~Handler();
  Handler(const Handler&) = delete;
  Handler& operator=(const Handler&) = delete;

  // Stops prefetching and stores the recall lists of the namespaces used
  // (nothing without recall). Call once no request is in flight.
  absl::Status SaveRecall(absl::Duration timeout);

  // Routes and authorizes the request, checks its declared size; never
  // touches a store, so it never waits. Body (when `early` is unset) comes
  // next, then End.
  std::unique_ptr<Exchange> Begin(Request request);
  // The answers the stores give before a body is read (a CAS blob present,
  // an Nx hash taken): may set `early`. Reads only; Body runs it when the
  // server did not (e.g. because it would have waited on the registry).
  void Precheck(Exchange& ex);
  // Serves the request; `body` is its body (null for requests without one).
  // Must read the body to its end for the response to be a success.
  Response Body(Exchange& ex, oci::ByteSource* body);
  // Counts and logs the exchange once the response is sent (or failed).
  void End(const Exchange& ex, int status, int64_t bytes_out, absl::string_view note);

  const Stats& stats() const { return stats_; }
  // The /status document.
  std::string StatusJson() const;

 private:
  Response Serve(Exchange& ex, oci::ByteSource* body);
  Response GetObject(Exchange& ex);
  Response PutObject(Exchange& ex, oci::ByteSource* body);
  Response DeleteObject(Exchange& ex);
  Response GetActionResult(Exchange& ex, reapi::Instance& inst, const oci::Digest& digest);
  Response PutActionResult(Exchange& ex, reapi::Instance& inst, const oci::Digest& digest,
                           oci::ByteSource* body);
  Response GetCasBlob(Exchange& ex, std::shared_ptr<reapi::Instance> inst,
                      const oci::Digest& digest);
  Response PutCasBlob(Exchange& ex, reapi::Instance& inst, const oci::Digest& digest,
                      oci::ByteSource* body);
  Response TurboQuery(Exchange& ex, oci::ByteSource* body);
  // An error response in the style of the request's protocol.
  Response Error(const Exchange& ex, int status, absl::string_view message) const;
  // A read that did not hit: 404, the reason kept for the log.
  Response Miss(const Exchange& ex, const absl::Status& why) const;
  std::optional<Response> Authorize(const Exchange& ex) const;

  cache::Store* store_;
  reapi::Instances* instances_;
  const rpc::TokenAuth* auth_;
  std::shared_ptr<cache::Breaker> breaker_;
  const HandlerOptions opts_;
  Stats stats_;
  std::unique_ptr<cache::Recall> recall_;  // null: recall off
};

// "Bearer T" for Authorization: Bearer T, and for Basic with password T (any
// user name; standard or URL-safe base64, padded or not); "" otherwise.
std::string BearerFromAuthorization(absl::string_view header);

// Reads a whole body of at most `max` bytes (ResourceExhausted beyond).
absl::StatusOr<std::string> ReadBody(oci::ByteSource& body, int64_t max);

}  // namespace ocicache::httpcache

#endif  // OCICACHE_PKG_HTTPCACHE_HANDLER_H_
