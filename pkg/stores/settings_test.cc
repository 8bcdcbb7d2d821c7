#include "pkg/stores/settings.h"

#include "gtest/gtest.h"

namespace ocicache::stores {
namespace {

TEST(SettingsTest, FlagsApplyWithEitherSpelling) {
  StoreConfig c;
  ASSERT_TRUE(ApplyStoreFlag(&c, "repo", "127.0.0.1:5000/team/cache").ok());
  ASSERT_TRUE(ApplyStoreFlag(&c, "ca_file", "/ca.pem").ok());
  ASSERT_TRUE(ApplyStoreFlag(&c, "docker-config", "/d").ok());
  ASSERT_TRUE(ApplyStoreFlag(&c, "shards", "16").ok());
  ASSERT_TRUE(ApplyStoreFlag(&c, "tls", "true").ok());
  EXPECT_EQ(c.repo, "127.0.0.1:5000/team/cache");
  EXPECT_EQ(c.ca_file, "/ca.pem");
  EXPECT_EQ(c.docker_config, "/d");
  EXPECT_EQ(c.shards, 16);
  EXPECT_TRUE(c.force_tls);
  EXPECT_TRUE(absl::IsNotFound(ApplyStoreFlag(&c, "listen", "x")));
}

TEST(SettingsTest, BadValuesAreInvalid) {
  StoreConfig c;
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyStoreFlag(&c, "shards", "300")));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyStoreFlag(&c, "shards", "x")));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyStoreFlag(&c, "insecure", "maybe")));
}

TEST(SettingsTest, NoDirNeedsARepoAndClearsTheDirectory) {
  StoreConfig c;
  c.dir = "/cache";
  ASSERT_TRUE(ApplyStoreFlag(&c, "no-dir", "true").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(FinishStoreConfig(&c)));
  c.repo = "127.0.0.1:5000/c";
  ASSERT_TRUE(FinishStoreConfig(&c).ok());
  EXPECT_TRUE(c.dir.empty());
}

}  // namespace
}  // namespace ocicache::stores
