// Retry timing: exponential backoff with full jitter, and Retry-After.
#ifndef OCICACHE_PKG_REGISTRY_RETRY_H_
#define OCICACHE_PKG_REGISTRY_RETRY_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ocicache::registry::internal {

// The wait before retry number `retry` (1 = after the first failure): uniform in
// [0, min(max, initial * 2^(retry-1))] ("full jitter").
absl::Duration FullJitterBackoff(absl::Duration initial, absl::Duration max, int retry);

// A Retry-After value, delta-seconds ("120") or an HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT"), as a wait from `now` (never negative).
// nullopt when unparseable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now);

}  // namespace ocicache::registry::internal

#endif  // OCICACHE_PKG_REGISTRY_RETRY_H_
