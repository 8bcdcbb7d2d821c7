// A small blocking HTTP client over libcurl for tests and for the harness's own
// readiness checks. Not the product's registry client: it has no retries and no auth
// logic, and it exists so tests can say exactly what goes on the wire.
#ifndef OCICACHE_TEST_HARNESS_HTTP_CLIENT_H_
#define OCICACHE_TEST_HARNESS_HTTP_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ocicache::harness {

struct HttpCall {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value" lines.
  // Sent for any method other than GET/HEAD/DELETE, even when empty.
  std::string body;
  bool chunked = false;  // Send the body with Transfer-Encoding: chunked (size not announced).
  bool expect_continue = false;  // Keep curl's "Expect: 100-continue" (removed by default).
  std::string user, password;    // Basic credentials when user is non-empty.
  int timeout_ms = 10000;        // Whole-call bound.
  // https: PEM bundle of CAs to trust instead of the system's bundle file (the system
  // CA directory stays trusted). Verification is never switched off.
  std::string ca_file;
};

struct HttpReply {
  long status = 0;
  std::map<std::string, std::string> headers;  // Final response's, names lowercased.
  std::string body;
  bool reused_connection = false;  // The call opened no new connection.
  bool got_100_continue = false;   // A "100 Continue" came before the final response.

  std::string header(absl::string_view name) const;  // "" when absent.
};

// One curl easy handle reused across calls, so connections are kept alive.
// Not thread-safe: use one per thread.
class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Any HTTP status is a reply; transport failures (refused, reset, timeout,
  // truncated body) are Unavailable/DeadlineExceeded with curl's message.
  absl::StatusOr<HttpReply> Do(const HttpCall& call);

 private:
  void* curl_;  // CURL*; kept opaque so users need not include curl.h.
};

// One call on a fresh handle.
absl::StatusOr<HttpReply> HttpDo(const HttpCall& call);

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_HTTP_CLIENT_H_
