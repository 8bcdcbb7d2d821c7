#include "pkg/registry/retry.h"

#include "gtest/gtest.h"

namespace ocicache::registry::internal {
namespace {

TEST(BackoffTest, FullJitterWithinCap) {
  const absl::Duration initial = absl::Milliseconds(100), max = absl::Seconds(1);
  absl::Duration biggest;
  for (int i = 0; i < 200; ++i) {
    absl::Duration d = FullJitterBackoff(initial, max, 1);
    EXPECT_GE(d, absl::ZeroDuration());
    EXPECT_LE(d, initial);
    biggest = std::max(biggest, FullJitterBackoff(initial, max, 3));
    EXPECT_LE(FullJitterBackoff(initial, max, 30), max);
  }
  // Retry 3 may wait up to 400 ms: over 200 draws some exceed the first cap.
  EXPECT_GT(biggest, initial);
  EXPECT_LE(biggest, absl::Milliseconds(400));
}

TEST(RetryAfterTest, SecondsAndDates) {
  absl::Time now = absl::FromUnixSeconds(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(ParseRetryAfter("120", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 0 ", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", now), absl::ZeroDuration());
  EXPECT_FALSE(ParseRetryAfter("soon", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("-5", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("", now).has_value());
}

}  // namespace
}  // namespace ocicache::registry::internal
