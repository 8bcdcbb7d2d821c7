#include "pkg/registry/retry.h"

#include <algorithm>
#include <string>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace ocicache::registry::internal {

absl::Duration FullJitterBackoff(absl::Duration initial, absl::Duration max, int retry) {
  absl::Duration cap = initial;
  for (int i = 1; i < retry && cap < max; ++i) cap *= 2;
  cap = std::min(cap, max);
  if (cap <= absl::ZeroDuration()) return absl::ZeroDuration();
  thread_local absl::BitGen gen;
  int64_t us = absl::ToInt64Microseconds(cap);
  return absl::Microseconds(absl::Uniform<int64_t>(absl::IntervalClosed, gen, 0, us));
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  int64_t secs;
  if (absl::SimpleAtoi(value, &secs)) {
    if (secs < 0) return std::nullopt;
    return absl::Seconds(secs);
  }
  // IMF-fixdate, the form RFC 9110 requires senders to use.
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value), absl::UTCTimeZone(), &t,
                       &err)) {
    return std::nullopt;
  }
  return std::max(absl::ZeroDuration(), t - now);
}

}  // namespace ocicache::registry::internal
