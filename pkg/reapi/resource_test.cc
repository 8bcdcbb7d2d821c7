#include "pkg/reapi/resource.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ocicache::reapi {
namespace {

const std::string kHash(64, 'a');
const std::string kEmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(InstanceName, AcceptsRegistryPathComponents) {
  for (const char* ok : {"", "a", "team", "a/b", "ci/linux-x86_64", "a.b_c__d--e/0", "x9"}) {
    EXPECT_TRUE(ValidateInstanceName(ok).ok()) << ok;
  }
}

TEST(InstanceName, RefusesWhatARegistryOrTheParserWouldNot) {
  for (const char* bad : {"A", "a//b", "/a", "a/", "a/../b", "..", ".", "a..b", "-a", "a-",
                          "a b", "a/blobs", "uploads", "compressed-blobs/x", "a___b", "é"}) {
    absl::Status s = ValidateInstanceName(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateInstanceName(std::string(101, 'a')).ok());
  EXPECT_TRUE(ValidateInstanceName(std::string(100, 'a')).ok());
}

TEST(ReadResource, ParsesWithAndWithoutInstance) {
  auto r = ParseReadResource("blobs/" + kHash + "/123");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->instance, "");
  EXPECT_EQ(r->blob.digest.hex(), kHash);
  EXPECT_EQ(r->blob.size, 123);

  r = ParseReadResource("ci/linux/blobs/" + kHash + "/0");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->instance, "ci/linux");
  EXPECT_EQ(r->blob.size, 0);
}

TEST(ReadResource, RefusesMalformedNames) {
  for (const std::string& bad : std::vector<std::string>{
           std::string(""), std::string("blobs"), "blobs/" + kHash, "blobs/" + kHash + "/",
        "blobs/" + kHash + "/-1", "blobs/" + kHash + "/+1", "blobs/" + kHash + "/1x",
        "blobs/" + kHash + "/1/extra", "blobs/ABC/1", "blobs/" + std::string(63, 'a') + "/1",
        "Bad/blobs/" + kHash + "/1", "uploads/u/blobs/" + kHash + "/1",
        "compressed-blobs/zstd/" + kHash + "/1", "a/b/" + kHash + "/1",
        "blobs/" + kHash + "/99999999999999999999999",
        // Leading white space and a leading '/' (an empty instance segment).
        "blobs/" + kHash + "/ 3145735", "blobs/" + kHash + "/\t1", "/blobs/" + kHash + "/1",
        "a//b/blobs/" + kHash + "/1"}) {
    auto r = ParseReadResource(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(WriteResource, ParsesUuidBlobAndIgnoresMetadata) {
  auto w = ParseWriteResource("uploads/1234-uuid/blobs/" + kHash + "/42");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->instance, "");
  EXPECT_EQ(w->uuid, "1234-uuid");
  EXPECT_EQ(w->blob.size, 42);

  w = ParseWriteResource("a/b/uploads/u/blobs/" + kHash + "/42/some/metadata");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->instance, "a/b");
  EXPECT_EQ(w->uuid, "u");

  // A uuid that looks like a keyword is still the uuid.
  w = ParseWriteResource("uploads/blobs/blobs/" + kHash + "/1");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->uuid, "blobs");
}

TEST(WriteResource, RefusesMalformedNames) {
  for (const std::string& bad : std::vector<std::string>{
           "blobs/" + kHash + "/1", std::string("uploads/u"), "uploads//blobs/" + kHash + "/1",
        "uploads/u/blobs/" + kHash, "uploads/u/other/" + kHash + "/1",
        "uploads/u/compressed-blobs/zstd/" + kHash + "/1", "uploads/u/blobs/xyz/1",
        "UP/uploads/u/blobs/" + kHash + "/1", "uploads/" + std::string(129, 'u') + "/blobs/" +
        kHash + "/1"}) {
    auto w = ParseWriteResource(bad);
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(BlobId, EmptyBlobIsRecognised) {
  auto e = MakeBlobId(kEmptyHash, 0, "d");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->empty());
  auto other = MakeBlobId(kHash, 0, "d");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->empty());
  auto sized = MakeBlobId(kEmptyHash, 1, "d");
  ASSERT_TRUE(sized.ok());
  EXPECT_FALSE(sized->empty());
  EXPECT_EQ(MakeBlobId(kHash, -1, "d").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->str(), kEmptyHash + "/0");
}

}  // namespace
}  // namespace ocicache::reapi
