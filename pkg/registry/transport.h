// One HTTP exchange over libcurl, with nothing registry-specific: no auth, no
// retries (those are in auth.h and client.cc). Bodies stream from a ByteSource and
// into a ByteSink so blobs never sit in memory.
//
// Thread-safe. Each Do() borrows an easy handle from a pool (one thread uses a
// handle at a time; idle handles keep their connections alive). DNS and TLS
// sessions are shared between handles; connections are not (unsafe in curl 7.88).
#ifndef OCICACHE_PKG_REGISTRY_TRANSPORT_H_
#define OCICACHE_PKG_REGISTRY_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/pacer.h"

namespace ocicache::registry::internal {

// Response headers in arrival order, names lowercased, values trimmed.
struct HttpHeaders {
  std::vector<std::pair<std::string, std::string>> entries;
  std::optional<std::string> Get(absl::string_view lower_name) const;
  std::vector<std::string> GetAll(absl::string_view lower_name) const;
};

struct HttpResponse {
  long status = 0;
  HttpHeaders headers;
  // The body, unless a 2xx body went to HttpRequest::sink. Error bodies are cut at
  // 64 KiB.
  std::string body;
  // Bytes of a 2xx body delivered to the sink.
  int64_t sink_bytes = 0;
};

struct HttpRequest {
  std::string method = "GET";  // GET HEAD PUT POST PATCH DELETE
  std::string url;
  std::vector<std::string> headers;  // "Name: value"

  // Request body: `body`, or `body_size` bytes read from `body_source` when set
  // (fewer bytes is an InvalidArgument error; the extra bytes of a longer source are
  // not read).
  std::string body;
  oci::ByteSource* body_source = nullptr;
  int64_t body_size = 0;

  // A 2xx response body goes to `sink` when set, else to HttpResponse::body (more
  // than max_body bytes is then an error).
  oci::ByteSink* sink = nullptr;
  size_t max_body = 16 << 20;
  // Called with a 2xx response's headers before its first body byte; an error
  // aborts the transfer and is returned by Do().
  std::function<absl::Status(long status, const HttpHeaders& headers)> on_headers;

  bool follow_redirects = false;  // GET/HEAD only
};

struct TransportOptions {
  std::string ca_file;  // added to the system CAs
  std::string user_agent = "ocicache";
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration stall_timeout = absl::Seconds(60);
  bool http2 = false;   // HTTP/1.1 unless set
  size_t max_idle_handles = 16;
  // Each exchange takes a turn first (rate and budget); null: none.
  std::shared_ptr<RequestPacer> pacer;
};

class Transport {
 public:
  explicit Transport(TransportOptions opts);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Sends one request and returns the response, whatever its status. A non-OK
  // result means there is no complete response: a connection failure or timeout
  // (Unavailable, temporary per IsTemporary unless it is a TLS verification
  // failure), or the error returned by body_source, sink or on_headers (as is).
  absl::StatusOr<HttpResponse> Do(const HttpRequest& req);

  // Requests sent (each followed redirect counts too).
  int64_t request_count() const { return requests_.load(); }

 private:
  struct Share;
  void* Acquire();
  void Release(void* handle);

  TransportOptions opts_;
  std::unique_ptr<Share> share_;
  std::atomic<int64_t> requests_{0};
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ocicache::registry::internal

#endif  // OCICACHE_PKG_REGISTRY_TRANSPORT_H_
