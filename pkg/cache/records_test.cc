#include "pkg/cache/records.h"

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ocicache::cache::records {
namespace {

EntryInfo Row(const std::string& key, int64_t created, int64_t used, int64_t size) {
  EntryInfo r;
  r.key = key;
  r.tag = "k." + key;
  r.manifest_digest = oci::Digest::Of(key);
  r.created = absl::FromUnixSeconds(created);
  r.last_used = absl::FromUnixSeconds(used);
  r.size = size;
  return r;
}

TEST(RecordsTest, RowsRoundTripAndBadLinesAreSkipped) {
  EntryInfo a = Row("a", 100, 200, 5);
  a.annotations["org.ocicache.tool.go"] = "go1.23";
  EntryInfo b = Row("b\n\"quoted\"", 300, 300, 7);
  std::string jsonl = EncodeRows({a, b});
  jsonl += "not json\n{\"k\":\"x\"}\n";
  int64_t bad = 0;
  std::vector<EntryInfo> rows = DecodeRows(jsonl, &bad);
  EXPECT_EQ(bad, 2);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].key, "a");
  EXPECT_EQ(rows[0].tag, "k.a");
  EXPECT_EQ(rows[0].manifest_digest, a.manifest_digest);
  EXPECT_EQ(rows[0].created, a.created);
  EXPECT_EQ(rows[0].last_used, a.last_used);
  EXPECT_EQ(rows[0].size, 5);
  EXPECT_EQ(rows[0].annotations, a.annotations);
  EXPECT_EQ(rows[1].key, b.key);
}

TEST(RecordsTest, TheRowLastUsedLatestWinsWithTheEarliestCreated) {
  std::map<std::string, EntryInfo> by_tag;
  MergeRow(by_tag, Row("k", 100, 150, 1));
  MergeRow(by_tag, Row("k", 50, 120, 2));   // older use, earlier creation
  MergeRow(by_tag, Row("k", 300, 400, 3));  // a newer put of the key
  ASSERT_EQ(by_tag.size(), 1u);
  const EntryInfo& m = by_tag.begin()->second;
  EXPECT_EQ(m.last_used, absl::FromUnixSeconds(400));
  EXPECT_EQ(m.size, 3);
  EXPECT_EQ(m.created, absl::FromUnixSeconds(50));
}

TEST(RecordsTest, ManifestNamesItsLayerAndTagsAreValid) {
  oci::Descriptor layer;
  layer.digest = oci::Digest::Of("rows");
  layer.size = 4;
  std::string m = EncodeRecordManifest(layer, "w1", 1, absl::FromUnixSeconds(1000));
  auto got = RecordLayer(m);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->digest, layer.digest);
  EXPECT_EQ(got->media_type, kLayerMediaType);
  EXPECT_FALSE(RecordLayer(R"({"schemaVersion":2,"layers":[]})").ok());

  std::string w = NewWriterName("ocicached");
  std::string tag = RecordTag(w, 12);
  EXPECT_TRUE(IsRecordTag(tag));
  EXPECT_LE(tag.size(), 128u);
  for (char c : w) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') << w;
  EXPECT_FALSE(IsRecordTag("k.r.x"));
}

}  // namespace
}  // namespace ocicache::cache::records
