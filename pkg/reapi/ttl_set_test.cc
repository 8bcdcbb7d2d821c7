#include "pkg/reapi/ttl_set.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ocicache::reapi {
namespace {

TEST(TtlSet, RemembersForTheTtlOnly) {
  TtlSet set(10, absl::Seconds(60));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_FALSE(set.Contains("a", t0));
  set.Add("a", t0);
  EXPECT_TRUE(set.Contains("a", t0 + absl::Seconds(59)));
  EXPECT_FALSE(set.Contains("a", t0 + absl::Seconds(60)));
  set.Add("a", t0 + absl::Seconds(60));  // refreshed
  EXPECT_TRUE(set.Contains("a", t0 + absl::Seconds(61)));
  set.Remove("a");
  EXPECT_FALSE(set.Contains("a", t0 + absl::Seconds(61)));
}

TEST(TtlSet, StaysBoundedAndDropsTheOldest) {
  TtlSet set(100, absl::Hours(1));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 1000; ++i) set.Add(absl::StrCat("k", i), t0 + absl::Seconds(i));
  EXPECT_LE(set.size(), 100u);
  EXPECT_TRUE(set.Contains("k999", t0 + absl::Seconds(1000)));
  EXPECT_FALSE(set.Contains("k0", t0 + absl::Seconds(1000)));
}

TEST(TtlSet, ExpiredEntriesGoFirst) {
  TtlSet set(4, absl::Seconds(10));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  set.Add("old1", t0);
  set.Add("old2", t0);
  set.Add("new1", t0 + absl::Seconds(20));
  set.Add("new2", t0 + absl::Seconds(20));
  set.Add("new3", t0 + absl::Seconds(21));  // full: the expired two are dropped
  EXPECT_EQ(set.size(), 3u);
  EXPECT_TRUE(set.Contains("new1", t0 + absl::Seconds(21)));
  EXPECT_TRUE(set.Contains("new3", t0 + absl::Seconds(21)));
}

TEST(TtlSet, ZeroSizeOrTtlRemembersNothing) {
  TtlSet none(0, absl::Hours(1));
  none.Add("a");
  EXPECT_FALSE(none.Contains("a"));
  TtlSet instant(10, absl::ZeroDuration());
  instant.Add("a");
  EXPECT_FALSE(instant.Contains("a"));
}

}  // namespace
}  // namespace ocicache::reapi
