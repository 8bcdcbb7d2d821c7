// Checks that the generated API code builds, round-trips, and keeps the field
// numbers the wire depends on.
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "api/ocicache/v1/cache.pb.h"
#include "gtest/gtest.h"

namespace ocicache::v1 {
namespace {

TEST(CacheProtoTest, EntryRoundTrip) {
  Entry e;
  e.set_key("-go/build/id");
  e.set_config(R"({"a":1})");
  e.set_original_descriptor(R"({"mediaType":"x"})");
  auto* b = e.add_blobs();
  b->set_digest("sha256:" + std::string(64, 'a'));
  b->set_size(5);
  (*e.mutable_annotations())["org.ocicache.tool.go"] = "go1.23.5";
  e.mutable_created()->set_seconds(1700000000);
  std::string wire = e.SerializeAsString();
  Entry back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.key(), "-go/build/id");
  EXPECT_EQ(back.blobs(0).size(), 5);
  EXPECT_EQ(back.annotations().at("org.ocicache.tool.go"), "go1.23.5");
  EXPECT_EQ(back.created().seconds(), 1700000000);
}

TEST(CacheProtoTest, FieldNumbersAreStable) {
  const auto* d = Entry::descriptor();
  EXPECT_EQ(d->FindFieldByName("key")->number(), 1);
  EXPECT_EQ(d->FindFieldByName("last_used")->number(), 8);
  EXPECT_EQ(WriteRequest::descriptor()->FindFieldByName("finish_write")->number(), 6);
}

TEST(CacheProtoTest, ServicesAreGenerated) {
  EXPECT_STREQ(Entries::service_full_name(), "ocicache.v1.Entries");
  EXPECT_STREQ(Blobs::service_full_name(), "ocicache.v1.Blobs");
  EXPECT_STREQ(Admin::service_full_name(), "ocicache.v1.Admin");
}

}  // namespace
}  // namespace ocicache::v1
