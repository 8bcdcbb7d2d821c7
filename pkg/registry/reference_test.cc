#include "gtest/gtest.h"
#include "pkg/registry/client.h"

namespace ocicache::registry {
namespace {

TEST(ReferenceTest, RepositoryNames) {
  for (const char* ok : {"a", "cache", "team/cache", "a.b_c__d---e/f0", "x/y/z/9"}) {
    EXPECT_TRUE(IsValidRepositoryName(ok)) << ok;
  }
  for (const char* bad : {"", "A", "team/", "/x", "a//b", "-a", "a-", "a___b", "a..b", "a:tag",
                          "a@sha256:00", "a b"}) {
    EXPECT_FALSE(IsValidRepositoryName(bad)) << bad;
  }
  EXPECT_FALSE(IsValidRepositoryName(std::string(256, 'a')));
}

TEST(ReferenceTest, Tags) {
  for (const char* ok : {"latest", "v1.2.3", "_x", "A-b_C.d", "0"}) {
    EXPECT_TRUE(IsValidTag(ok)) << ok;
  }
  for (const char* bad : {"", ".x", "-x", "a/b", "a:b", "a+b"}) EXPECT_FALSE(IsValidTag(bad)) << bad;
  EXPECT_TRUE(IsValidTag(std::string(128, 'a')));
  EXPECT_FALSE(IsValidTag(std::string(129, 'a')));
}

TEST(ReferenceTest, ParseRepoRef) {
  absl::StatusOr<RepoRef> r = ParseRepoRef("127.0.0.1:5000/team/cache");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "127.0.0.1:5000");
  EXPECT_EQ(r->repository, "team/cache");
  EXPECT_EQ(r->str(), "127.0.0.1:5000/team/cache");

  r = ParseRepoRef("ghcr.io/o/r");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "ghcr.io");
  r = ParseRepoRef("localhost/r");
  ASSERT_TRUE(r.ok());
  r = ParseRepoRef("[::1]:5000/r");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->registry, "[::1]:5000");

  for (const char* bad : {"cache", "team/cache", "ghcr.io/", "ghcr.io/Upper", "ghcr.io/r:tag",
                          "https://ghcr.io/r", ""}) {
    absl::StatusOr<RepoRef> b = ParseRepoRef(bad);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace ocicache::registry
