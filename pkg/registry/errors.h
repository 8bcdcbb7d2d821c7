// Structured registry errors: absl::Status values whose message is one line
// ("registry <host>: <op>: <status> <CODE>: <message>") and whose payloads carry
// the registry's error code and whether a retry may succeed. Internal to
// //pkg/registry; callers use RegistryErrorCode / IsTemporary from client.h.
#ifndef OCICACHE_PKG_REGISTRY_ERRORS_H_
#define OCICACHE_PKG_REGISTRY_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ocicache::registry {

// Also declared in client.h.
std::string RegistryErrorCode(const absl::Status& s);
bool IsTemporary(const absl::Status& s);

namespace internal {

// A status with the given registry code ("" for none) and temporariness.
absl::Status MakeError(absl::StatusCode code, absl::string_view message,
                       absl::string_view registry_code, bool temporary);

// Returns `s` with `prefix + ": "` in front of its message, payloads kept.
absl::Status Annotate(const absl::Status& s, absl::string_view prefix);

// The first error of a distribution-spec error body {"errors":[{code,message,detail}]}.
// Bodies that are not such JSON (plain text, HTML) give code "" and a message made
// of the body's first line, trimmed and shortened.
struct ErrorBody {
  std::string code;
  std::string message;
  std::string detail;  // a short rendering of "detail", if any
  int more = 0;        // further entries in "errors"
};
ErrorBody ParseErrorBody(absl::string_view body);

// Statuses retried by the client: 408, 429, 500, 502, 503, 504.
bool IsRetryableHttpStatus(long http_status);

// The absl code for an HTTP status (see client.h for the table).
absl::StatusCode CodeForHttpStatus(long http_status);

// "Not Found" for 404, etc. ("" when unknown).
absl::string_view ReasonPhrase(long http_status);

// The error for an HTTP response: "<prefix>: 404 MANIFEST_UNKNOWN: manifest unknown".
absl::Status HttpError(absl::string_view prefix, long http_status, absl::string_view body);

}  // namespace internal
}  // namespace ocicache::registry

#endif  // OCICACHE_PKG_REGISTRY_ERRORS_H_
