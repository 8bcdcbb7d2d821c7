#include "pkg/cache/backlog.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ocicache::cache {
namespace {

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/backlog-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d != nullptr ? std::string(d) : std::string();
}

TEST(Backlog, RecordsSurviveReopeningAndComeBackOldestFirst) {
  std::string dir = TempDir() + "/backlog";
  {
    auto b = Backlog::Open(dir);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_TRUE((*b)->Add("first").ok());
    ASSERT_TRUE((*b)->Add("second/with/slashes and spaces").ok());
    ASSERT_TRUE((*b)->Add("first").ok());  // again: one record
    ASSERT_TRUE((*b)->AddBlob(oci::Digest::Of("a blob")).ok());
    EXPECT_EQ((*b)->size(), 2);
    EXPECT_EQ((*b)->blob_count(), 1);
    // Make the order certain: "first" is the older record.
    std::string first = dir + "/" + oci::Digest::Of("first").hex();
    struct timespec times[2] = {{1, 0}, {1, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, first.c_str(), times, 0), 0);
  }
  auto b = Backlog::Open(dir);  // another process, later
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->size(), 2);
  EXPECT_EQ((*b)->blob_count(), 1);
  auto keys = (*b)->Keys(0);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0], "first");
  EXPECT_EQ((*keys)[1], "second/with/slashes and spaces");
  EXPECT_EQ((*b)->Keys(1)->size(), 1u);
  auto blobs = (*b)->Blobs(0);
  ASSERT_TRUE(blobs.ok());
  ASSERT_EQ(blobs->size(), 1u);
  EXPECT_EQ((*blobs)[0], oci::Digest::Of("a blob"));

  ASSERT_TRUE((*b)->Remove("first").ok());
  ASSERT_TRUE((*b)->Remove("never recorded").ok());
  ASSERT_TRUE((*b)->RemoveBlob(oci::Digest::Of("a blob")).ok());
  EXPECT_EQ((*b)->size(), 1);
  EXPECT_EQ((*b)->blob_count(), 0);
  EXPECT_EQ((*b)->Keys(0)->size(), 1u);
}

TEST(Backlog, SkipsFilesThatAreNotWholeRecords) {
  std::string dir = TempDir() + "/backlog";
  auto b = Backlog::Open(dir);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Add("good").ok());
  // A temporary file of a write in progress, and a record whose content does
  // not match its name (torn or tampered): neither is a key.
  std::ofstream(dir + "/.tmp-123") << "half";
  std::ofstream(dir + "/" + oci::Digest::Of("other").hex()) << "not other";
  auto keys = (*b)->Keys(0);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0], "good");
}

}  // namespace
}  // namespace ocicache::cache
