#include "pkg/cache/format.h"

#include <regex>
#include <set>

#include "gtest/gtest.h"

namespace ocicache::cache {
namespace {

// A registry tag (distribution spec) ...
const std::regex kTagRe("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}");
// ... that is also an OCI image layout ref.name (image-spec annotations.md).
const std::regex kRefNameRe("[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*(/[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*)*");

TEST(TagForKeyTest, GoBuildIdBecomesAValidTag) {
  const std::string key =
      "-aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789_-/AbCdEfGhIjKlMnOpQrSt/uVwXyZ9876543210-_ab";
  auto tag = TagForKey(key);
  ASSERT_TRUE(tag.ok()) << tag.status();
  EXPECT_TRUE(std::regex_match(*tag, kTagRe)) << *tag;
  EXPECT_TRUE(std::regex_match(*tag, kRefNameRe)) << *tag;
}

TEST(TagForKeyTest, DistinctKeysGiveDistinctTags) {
  // Keys that a naive escape would confuse.
  std::vector<std::string> keys = {"a/b", "a_b",  "a_2fb", "ax2fb", "a.b", "a-b", "A/b",
                                   "a//b", "_",   "-",     "x",     ".",   "k.a", "h.a",
                                   "-a-",  "a--b", "x78", std::string(200, 'y'),
                                   std::string(201, 'y')};
  std::set<std::string> tags;
  for (const auto& k : keys) {
    auto t = TagForKey(k);
    ASSERT_TRUE(t.ok()) << k;
    EXPECT_TRUE(std::regex_match(*t, kTagRe)) << *t;
    EXPECT_TRUE(std::regex_match(*t, kRefNameRe)) << *t;
    tags.insert(*t);
  }
  EXPECT_EQ(tags.size(), keys.size());
}

TEST(TagForKeyTest, ExactEncoding) {
  EXPECT_EQ(*TagForKey("abc/DEF-09"), "k.abcx2fDEFx2d09");
  EXPECT_EQ(*TagForKey("x_"), "k.x78x5f");
  EXPECT_EQ(*TagForKey(std::string(64, 'f')), "k." + std::string(64, 'f'));
}

TEST(TagForKeyTest, LongKeysAreHashed) {
  auto t = TagForKey(std::string(300, '/'));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->substr(0, 2), "h.");
  EXPECT_EQ(t->size(), 66u);
}

TEST(TagForKeyTest, RejectsBadKeys) {
  EXPECT_EQ(TagForKey("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TagForKey("a\nb").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TagForKey(std::string("a\0b", 3)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TagForKey(std::string(5000, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShardTest, SpreadsAndIsStable) {
  std::set<std::string> shards;
  for (int i = 0; i < 200; ++i) shards.insert(ShardForKey("key" + std::to_string(i), 4));
  EXPECT_EQ(shards, (std::set<std::string>{"00", "01", "02", "03"}));
  EXPECT_EQ(ShardForKey("x", 16), ShardForKey("x", 16));
  EXPECT_EQ(ShardForKey("x", 1), "");
}

Entry SampleEntry() {
  Entry e;
  e.key = "-abc/def";
  e.config = R"({"diffid":"sha256:00"})";
  // Odd spacing and key order: must come back byte for byte.
  e.descriptor = R"({ "size": 12, "mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",)"
                 R"( "digest":"sha256:)" + std::string(64, 'a') + R"(", "annotations":{"z":"1"}})";
  oci::Descriptor b;
  b.media_type = "application/octet-stream";
  b.digest = oci::Digest::Of("hello");
  b.size = 5;
  e.blobs.push_back(b);
  Location loc;
  loc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  loc.digest = oci::Digest::Of("layer");
  loc.size = 5;
  loc.url = BlobUrl("https://ghcr.io", "org/app", loc.digest);
  e.locations.push_back(loc);
  e.annotations["org.ocicache.tool.go"] = "go1.23.1";
  return e;
}

TEST(FormatTest, RoundTripKeepsEverything) {
  Entry e = SampleEntry();
  absl::Time now = absl::FromUnixSeconds(1700000000);
  auto enc = EncodeEntry(e, now);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->manifest_digest, oci::Digest::Of(enc->manifest));
  ASSERT_EQ(enc->small_blobs.size(), 2u);
  EXPECT_EQ(enc->small_blobs[0].second, e.config);
  EXPECT_EQ(enc->small_blobs[1].second, e.descriptor);
  for (const auto& [d, bytes] : enc->small_blobs) EXPECT_EQ(d.digest, oci::Digest::Of(bytes));

  auto back = DecodeEntry(enc->manifest, e.key);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key, e.key);
  EXPECT_EQ(back->config, e.config);
  EXPECT_EQ(back->descriptor, e.descriptor);
  ASSERT_EQ(back->blobs.size(), 1u);
  EXPECT_EQ(back->blobs[0].digest, e.blobs[0].digest);
  EXPECT_TRUE(back->blobs[0].annotations.empty());
  ASSERT_EQ(back->locations.size(), 1u);
  EXPECT_EQ(back->locations[0].url, e.locations[0].url);
  EXPECT_EQ(back->locations[0].media_type, e.locations[0].media_type);
  EXPECT_EQ(back->annotations, e.annotations);
  EXPECT_EQ(back->created, now);
  EXPECT_EQ(back->last_used, now);
}

TEST(FormatTest, ManifestShapeIsPortable) {
  auto enc = EncodeEntry(SampleEntry(), absl::Now());
  ASSERT_TRUE(enc.ok());
  auto m = oci::Manifest::Parse(enc->manifest);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->artifact_type, format::kArtifactType);
  EXPECT_EQ(m->config.media_type, format::kConfigMediaType);
  ASSERT_EQ(m->layers.size(), 3u);
  EXPECT_EQ(m->layers[2].media_type, format::kLocationMediaType);
  for (const auto& l : m->layers) EXPECT_GT(l.size, 0);
}

TEST(FormatTest, EmptyEntryStillHasALayer) {
  Entry e;
  e.key = "k";
  auto enc = EncodeEntry(e, absl::Now());
  ASSERT_TRUE(enc.ok());
  auto m = oci::Manifest::Parse(enc->manifest);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].size, 2);
  EXPECT_EQ(m->config.size, 2);
}

// An entry without an original descriptor stores `{}`: every such entry names the
// same descriptor blob, so a writer uploads it once, not once per entry. An entry
// an older writer stored with its first blob's descriptor still reads.
TEST(FormatTest, EntriesWithoutADescriptorShareOneDescriptorBlob) {
  auto blob_entry = [](const std::string& key, const std::string& bytes) {
    Entry e;
    e.key = key;
    e.config = R"({"kind":"go-action"})";
    oci::Descriptor b;
    b.media_type = "application/octet-stream";
    b.digest = oci::Digest::Of(bytes);
    b.size = static_cast<int64_t>(bytes.size());
    e.blobs.push_back(b);
    return e;
  };
  auto one = EncodeEntry(blob_entry("one", "first object"), absl::Now());
  auto two = EncodeEntry(blob_entry("two", "second object"), absl::Now());
  ASSERT_TRUE(one.ok() && two.ok());
  auto m1 = oci::Manifest::Parse(one->manifest);
  auto m2 = oci::Manifest::Parse(two->manifest);
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ(m1->layers[0].digest, oci::Digest::Of("{}"));
  EXPECT_EQ(m1->layers[0].digest, m2->layers[0].digest);
  EXPECT_EQ(DecodeEntry(one->manifest, "one")->descriptor, "{}");

  Entry old = blob_entry("old", "older object");
  oci::Descriptor first = old.blobs[0];
  old.descriptor = first.ToJson().dump();  // what writers before stored
  auto enc = EncodeEntry(old, absl::Now());
  ASSERT_TRUE(enc.ok());
  auto back = DecodeEntry(enc->manifest, "old");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->descriptor, old.descriptor);
  ASSERT_EQ(back->blobs.size(), 1u);
  EXPECT_EQ(back->blobs[0].digest, first.digest);
}

TEST(FormatTest, KeyMismatchIsAMiss) {
  auto enc = EncodeEntry(SampleEntry(), absl::Now());
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(DecodeEntry(enc->manifest, "other").status().code(), absl::StatusCode::kNotFound);
}

// DecodeEntry remembers what it decoded (by the manifest's bytes): a second
// decode gives the same entry, still checks the key, and other bytes (here one
// more annotation) are decoded anew.
TEST(FormatTest, DecodingAgainGivesTheSameEntry) {
  Entry e = SampleEntry();
  e.key = "decoded-twice";
  absl::Time now = absl::FromUnixSeconds(1700000000);
  auto enc = EncodeEntry(e, now);
  ASSERT_TRUE(enc.ok());
  auto first = DecodeEntry(enc->manifest, e.key);
  auto second = DecodeEntry(enc->manifest, e.key);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(second->key, e.key);
  EXPECT_EQ(second->config, first->config);
  EXPECT_EQ(second->descriptor, first->descriptor);
  ASSERT_EQ(second->blobs.size(), 1u);
  EXPECT_EQ(second->blobs[0].digest, first->blobs[0].digest);
  EXPECT_EQ(second->annotations, first->annotations);
  EXPECT_EQ(second->last_used, now);
  EXPECT_EQ(DecodeEntry(enc->manifest, "another-key").status().code(),
            absl::StatusCode::kNotFound);

  e.annotations["org.example.more"] = "yes";
  auto enc2 = EncodeEntry(e, now);
  ASSERT_TRUE(enc2.ok());
  auto third = DecodeEntry(enc2->manifest, e.key);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->annotations.at("org.example.more"), "yes");
  EXPECT_EQ(DecodeEntry(enc->manifest, e.key)->annotations.count("org.example.more"), 0u);
}

TEST(FormatTest, ForeignManifestIsDataLoss) {
  oci::Manifest m;
  m.config = oci::EmptyDescriptor();
  m.layers.push_back(oci::EmptyDescriptor());
  EXPECT_EQ(DecodeEntry(m.Serialize(), "").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeEntry("garbage", "").status().code(), absl::StatusCode::kDataLoss);
}

TEST(FormatTest, RejectsBadEntries) {
  Entry e = SampleEntry();
  e.config = "not json";
  EXPECT_EQ(EncodeEntry(e, absl::Now()).status().code(), absl::StatusCode::kInvalidArgument);
  e = SampleEntry();
  e.config = "{\"a\":\"" + std::string(70000, 'x') + "\"}";
  EXPECT_EQ(EncodeEntry(e, absl::Now()).status().code(), absl::StatusCode::kResourceExhausted);
  e = SampleEntry();
  e.annotations["org.ocicache.entry.key"] = "x";
  EXPECT_EQ(EncodeEntry(e, absl::Now()).status().code(), absl::StatusCode::kInvalidArgument);
  e = SampleEntry();
  e.locations[0].url = "ftp://x";
  EXPECT_EQ(EncodeEntry(e, absl::Now()).status().code(), absl::StatusCode::kInvalidArgument);
  e = SampleEntry();
  for (int i = 0; i < 3000; ++i) e.locations.push_back(e.locations[0]);
  EXPECT_EQ(EncodeEntry(e, absl::Now()).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(FormatTest, RequiredAnnotations) {
  Entry e = SampleEntry();
  LookupOptions opts;
  EXPECT_TRUE(SatisfiesLookup(e, opts));
  opts.require["org.ocicache.tool.go"] = "go1.23.1";
  EXPECT_TRUE(SatisfiesLookup(e, opts));
  opts.require["org.ocicache.tool.go"] = "go1.22.0";
  EXPECT_FALSE(SatisfiesLookup(e, opts));
  opts.require.clear();
  opts.require["org.ocicache.options"] = "abc";
  EXPECT_FALSE(SatisfiesLookup(e, opts));
}

TEST(FormatTest, TouchAtMostDaily) {
  Entry e;
  absl::Time now = absl::Now();
  e.last_used = now - absl::Hours(1);
  EXPECT_FALSE(NeedsTouch(e, now));
  e.last_used = now - absl::Hours(25);
  EXPECT_TRUE(NeedsTouch(e, now));
}

TEST(FormatTest, BlobUrlRoundTrip) {
  oci::Digest d = oci::Digest::Of("x");
  std::string url = BlobUrl("http://127.0.0.1:5000", "a/b/c", d);
  std::string base, repo;
  oci::Digest got;
  ASSERT_TRUE(ParseBlobUrl(url, &base, &repo, &got).ok());
  EXPECT_EQ(base, "http://127.0.0.1:5000");
  EXPECT_EQ(repo, "a/b/c");
  EXPECT_EQ(got, d);
  EXPECT_FALSE(ParseBlobUrl("https://x/v2/blobs/sha256:00", &base, &repo, &got).ok());
  EXPECT_FALSE(ParseBlobUrl("nonsense", &base, &repo, &got).ok());
}

}  // namespace
}  // namespace ocicache::cache
