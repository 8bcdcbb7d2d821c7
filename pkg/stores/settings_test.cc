#include "pkg/stores/settings.h"

#include <cstdlib>

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

// The auth cache: on by default for the short-lived front ends, off with
// OCICACHE_AUTH_CACHE=off, and never for a server.
TEST(SettingsTest, AuthCacheForShortLivedProcessesOnly) {
  ::setenv("HOME", "/home/someone", 1);
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("OCICACHE_AUTH_CACHE");
  auto c = ConfigFromEnv();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->auth_cache_dir, "/home/someone/.cache/ocicache-auth");
  EXPECT_EQ(RegistryClientOptions(*c, Profile::kLookup).auth_cache_dir, c->auth_cache_dir);
  EXPECT_EQ(RegistryClientOptions(*c, Profile::kInteractive).auth_cache_dir, c->auth_cache_dir);
  EXPECT_EQ(RegistryClientOptions(*c, Profile::kServer).auth_cache_dir, "");
  ::setenv("OCICACHE_AUTH_CACHE", "off", 1);
  c = ConfigFromEnv();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(RegistryClientOptions(*c, Profile::kLookup).auth_cache_dir, "");
  ::setenv("OCICACHE_AUTH_CACHE", "/elsewhere", 1);
  c = ConfigFromEnv();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->auth_cache_dir, "/elsewhere");
  ::unsetenv("OCICACHE_AUTH_CACHE");
}

}  // namespace
}  // namespace ocicache::stores
