#include "pkg/reapi/convert.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/oci/digest.h"

namespace ocicache::reapi {
namespace {

v2::Digest D(absl::string_view content) {
  v2::Digest d;
  d.set_hash(oci::Digest::Of(content).hex());
  d.set_size_bytes(static_cast<int64_t>(content.size()));
  return d;
}

BlobId B(absl::string_view content) {
  return BlobId{oci::Digest::Of(content), static_cast<int64_t>(content.size())};
}

TEST(Convert, DigestRoundTripAndErrors) {
  auto id = FromProto(D("abc"), "d");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, B("abc"));
  EXPECT_EQ(ToProto(*id).SerializeAsString(), D("abc").SerializeAsString());
  v2::Digest bad;
  EXPECT_EQ(FromProto(bad, "x").status().code(), absl::StatusCode::kInvalidArgument);
  bad.set_hash("ABCD");
  EXPECT_EQ(FromProto(bad, "x").status().code(), absl::StatusCode::kInvalidArgument);
  v2::Digest neg = D("abc");
  neg.set_size_bytes(-3);
  EXPECT_EQ(FromProto(neg, "x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Convert, DirectBlobsNamesEveryOutput) {
  v2::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("out/a");
  *f->mutable_digest() = D("a");
  auto* f2 = r.add_output_files();
  f2->set_path("out/a2");
  *f2->mutable_digest() = D("a");  // duplicate content
  auto* d = r.add_output_directories();
  d->set_path("out/dir");
  *d->mutable_tree_digest() = D("tree");
  *r.mutable_stdout_digest() = D("out");
  *r.mutable_stderr_digest() = D("");
  auto blobs = DirectBlobs(r);
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  EXPECT_EQ(blobs->size(), 4u);  // a, tree, out, the empty blob
  auto has = [&](const BlobId& b) {
    return std::find(blobs->begin(), blobs->end(), b) != blobs->end();
  };
  EXPECT_TRUE(has(B("a")));
  EXPECT_TRUE(has(B("tree")));
  EXPECT_TRUE(has(B("out")));
  EXPECT_TRUE(has(B("")));
}

TEST(Convert, DirectBlobsRefusesBadDigests) {
  v2::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("x");
  f->mutable_digest()->set_hash("nothex");
  auto blobs = DirectBlobs(r);
  EXPECT_EQ(blobs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(blobs.status().message().find("output_files[0]"), absl::string_view::npos);

  v2::ActionResult r2;
  r2.add_output_files()->set_path("no digest");
  EXPECT_EQ(DirectBlobs(r2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Convert, TreeFileBlobsWalksRootAndChildren) {
  v2::Tree t;
  auto* f = t.mutable_root()->add_files();
  f->set_name("a");
  *f->mutable_digest() = D("1");
  auto* c = t.add_children();
  auto* g = c->add_files();
  g->set_name("b");
  *g->mutable_digest() = D("2");
  auto* h = c->add_files();
  h->set_name("c");
  *h->mutable_digest() = D("1");
  auto files = TreeFileBlobs(t);
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 2u);
}

TEST(Convert, ActionEntryRoundTripInline) {
  v2::ActionResult r;
  r.set_exit_code(3);
  *r.mutable_stdout_digest() = D("out");
  std::string encoded = r.SerializeAsString();
  BlobId action = B("action");
  cache::Entry e = ActionEntry(action, encoded, std::nullopt,
                               {Unpacked(B("out")), Unpacked(B("")), Unpacked(B("out")),
                                Unpacked(B("x"))});
  EXPECT_EQ(e.key, "ac:" + action.digest.str());
  // The empty blob and duplicates are not layers.
  ASSERT_EQ(e.blobs.size(), 2u);
  EXPECT_EQ(e.annotations.at(kAnnotationAction), action.str());
  auto j = nlohmann::json::parse(e.config);
  EXPECT_EQ(j["reapi"], "v2");
  auto stored = ReadActionEntry(e);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_FALSE(stored->blob.has_value());
  EXPECT_EQ(stored->inline_bytes, encoded);
  EXPECT_EQ(EntryBlobs(e).size(), 2u);
}

TEST(Convert, ActionEntryWithResultBlob) {
  BlobId result_blob = B("serialized result");
  cache::Entry e = ActionEntry(B("action"), "ignored", result_blob,
                               {Unpacked(result_blob), Unpacked(B("x"))});
  ASSERT_EQ(e.blobs.size(), 2u);
  EXPECT_EQ(e.blobs[0].digest, result_blob.digest);
  auto stored = ReadActionEntry(e);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(stored->blob.has_value());
  EXPECT_EQ(*stored->blob, result_blob);
}

TEST(Convert, AnEntryWithAPackedLayerIsV3AndNamesItsFrame) {
  BlobId raw{oci::Digest::Of("big"), 5 << 20};
  oci::Descriptor frame;
  frame.digest = oci::Digest::Of("frame");
  frame.size = 12345;
  cache::Entry e = ActionEntry(B("action"), "r", std::nullopt,
                               {Packed(raw, frame), Unpacked(B("x")), Packed(raw, frame)});
  EXPECT_EQ(nlohmann::json::parse(e.config)["reapi"], "v3");
  ASSERT_EQ(e.blobs.size(), 2u);
  EXPECT_EQ(e.blobs[0].digest, frame.digest);
  EXPECT_EQ(e.blobs[0].media_type, "application/zstd");
  auto p = PackedLayer(e.blobs[0]);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->raw, raw);
  EXPECT_FALSE(PackedLayer(e.blobs[1]).has_value());
  auto stored = ReadActionEntry(e);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->inline_bytes, "r");

  // Not packed: a raw size below the minimum, or annotations missing.
  oci::Descriptor small = Packed(BlobId{raw.digest, 1000}, frame).stored;
  EXPECT_FALSE(PackedLayer(small).has_value());
  oci::Descriptor bare = e.blobs[0];
  bare.annotations.erase(kAnnotationRawSize);
  EXPECT_FALSE(PackedLayer(bare).has_value());

  // A mapping entry reads back only for its own digest and size.
  cache::Entry m = MappingEntry(Packed(raw, frame));
  EXPECT_EQ(m.key, "cas:" + raw.digest.str());
  EXPECT_TRUE(ReadMappingEntry(m, raw).ok());
  EXPECT_TRUE(ReadMappingEntry(m, BlobId{raw.digest, -1}).ok());
  EXPECT_EQ(ReadMappingEntry(m, BlobId{raw.digest, raw.size + 1}).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadMappingEntry(m, BlobId{oci::Digest::Of("other"), raw.size}).status().code(),
            absl::StatusCode::kDataLoss);
  m.config = R"({"cas":"v2"})";
  EXPECT_EQ(ReadMappingEntry(m, raw).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Convert, ReadActionEntryRefusesOtherEntries) {
  cache::Entry e;
  e.key = "go-build-id";
  e.config = "{}";
  EXPECT_EQ(ReadActionEntry(e).status().code(), absl::StatusCode::kDataLoss);
  e.config = R"({"reapi":"v2","result":"%%%"})";
  EXPECT_EQ(ReadActionEntry(e).status().code(), absl::StatusCode::kDataLoss);
  e.config = R"({"reapi":"v2","resultBlob":"abc/x"})";
  EXPECT_EQ(ReadActionEntry(e).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Convert, RequestMetadataFields) {
  v2::RequestMetadata md;
  md.mutable_tool_details()->set_tool_name("bazel");
  md.mutable_tool_details()->set_tool_version("4.2.3");
  md.set_tool_invocation_id("inv-1");
  md.set_action_mnemonic("CppCompile");
  md.set_target_id("//a:b c\"d");
  EXPECT_EQ(RequestMetadataFields(md),
            " tool=bazel/4.2.3 inv=inv-1 mnemonic=CppCompile target=//a:b_c_d");
  EXPECT_EQ(RequestMetadataFields(v2::RequestMetadata()), "");
}

}  // namespace
}  // namespace ocicache::reapi
