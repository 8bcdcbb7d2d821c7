#include "pkg/wire/convert.h"

#include "gtest/gtest.h"

namespace ocicache::wire {
namespace {

cache::Entry Sample() {
  cache::Entry e;
  e.key = "-go/build id/ünïcode";
  e.config = R"({"a":1})";
  e.descriptor = R"({"mediaType":"x"})";
  oci::Descriptor b;
  b.media_type = "application/octet-stream";
  b.digest = oci::Digest::Of("blob");
  b.size = 4;
  b.annotations["org.opencontainers.image.title"] = "out.bin";
  b.urls.push_back("https://example.com/blob");
  e.blobs.push_back(b);
  cache::Location l;
  l.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  l.digest = oci::Digest::Of("layer");
  l.size = 5;
  l.url = "https://ghcr.io/v2/team/app/blobs/" + l.digest.str();
  e.locations.push_back(l);
  e.annotations["org.ocicache.tool.go"] = "go1.23.4";
  e.created = absl::FromUnixNanos(1700000000123456789);
  e.last_used = absl::FromUnixSeconds(1700000100);
  return e;
}

TEST(ConvertTest, EntryRoundTrip) {
  cache::Entry e = Sample();
  v1::Entry p;
  EntryToProto(e, &p);
  auto back = EntryFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key, e.key);
  EXPECT_EQ(back->config, e.config);
  EXPECT_EQ(back->descriptor, e.descriptor);
  ASSERT_EQ(back->blobs.size(), 1u);
  EXPECT_EQ(back->blobs[0].digest, e.blobs[0].digest);
  EXPECT_EQ(back->blobs[0].size, 4);
  EXPECT_EQ(back->blobs[0].annotations, e.blobs[0].annotations);
  EXPECT_EQ(back->blobs[0].urls, e.blobs[0].urls);
  ASSERT_EQ(back->locations.size(), 1u);
  EXPECT_EQ(back->locations[0].url, e.locations[0].url);
  EXPECT_EQ(back->annotations, e.annotations);
  EXPECT_EQ(back->created, e.created);
  EXPECT_EQ(back->last_used, e.last_used);
}

TEST(ConvertTest, UnsetTimesStayUnset) {
  cache::Entry e;
  e.key = "k";
  v1::Entry p;
  EntryToProto(e, &p);
  EXPECT_FALSE(p.has_created());
  auto back = EntryFromProto(p);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->created, absl::InfinitePast());
}

TEST(ConvertTest, BadFieldsAreNamed) {
  v1::Entry p;
  EntryToProto(Sample(), &p);

  v1::Entry bad = p;
  bad.set_key("");
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
  bad = p;
  bad.set_key("a\nb");
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
  bad = p;
  bad.mutable_blobs(0)->set_digest("sha256:nothex");
  auto s = EntryFromProto(bad).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("entry.blobs[0].digest"), absl::string_view::npos) << s;
  bad = p;
  bad.mutable_blobs(0)->set_digest("");
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
  bad = p;
  bad.mutable_blobs(0)->set_size(-5);
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
  bad = p;
  bad.mutable_locations(0)->set_url("");
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
  bad = p;
  bad.mutable_created()->set_nanos(-1);
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
  bad = p;
  bad.mutable_last_used()->set_seconds(int64_t{1} << 62);
  EXPECT_TRUE(absl::IsInvalidArgument(EntryFromProto(bad).status()));
}

TEST(ConvertTest, LocationsMayHaveUnknownSize) {
  v1::Location l;
  l.set_digest(oci::Digest::Of("x").str());
  l.set_size(-1);
  l.set_url("http://127.0.0.1:5000/v2/a/blobs/" + l.digest());
  EXPECT_FALSE(LocationFromProto(l, "from").ok());
  EXPECT_TRUE(LocationFromProto(l, "from", /*allow_unknown_size=*/true).ok());
  l.set_size(-2);
  EXPECT_FALSE(LocationFromProto(l, "from", true).ok());
}

TEST(ConvertTest, EntryInfoRoundTrip) {
  cache::EntryInfo i;
  i.key = "k";
  i.tag = "k.k";
  i.manifest_digest = oci::Digest::Of("m");
  i.size = 77;
  i.last_used = absl::FromUnixSeconds(1700000000);
  i.annotations["a"] = "b";
  v1::EntryInfo p;
  EntryInfoToProto(i, &p);
  auto back = EntryInfoFromProto(p);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->manifest_digest, i.manifest_digest);
  EXPECT_EQ(back->size, 77);
  EXPECT_EQ(back->last_used, i.last_used);
  EXPECT_EQ(back->created, absl::InfinitePast());
  EXPECT_EQ(back->annotations, i.annotations);
}

TEST(ConvertTest, Utf8) {
  EXPECT_TRUE(CheckUtf8("plain ascii", "key").ok());
  EXPECT_TRUE(CheckUtf8("ünïcode ✓ 𝄞", "key").ok());
  EXPECT_FALSE(CheckUtf8("\xff", "key").ok());
  EXPECT_FALSE(CheckUtf8("a\xc3", "key").ok());          // cut short
  EXPECT_FALSE(CheckUtf8("\xc0\xaf", "key").ok());       // overlong '/'
  EXPECT_FALSE(CheckUtf8("\xed\xa0\x80", "key").ok());   // surrogate
  EXPECT_FALSE(CheckUtf8("\xf4\x90\x80\x80", "key").ok());  // past U+10FFFF
  cache::Entry e = Sample();
  EXPECT_TRUE(CheckEntryUtf8(e).ok());
  e.annotations["x"] = "\xfe";
  EXPECT_FALSE(CheckEntryUtf8(e).ok());
}

}  // namespace
}  // namespace ocicache::wire
