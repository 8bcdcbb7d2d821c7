// The REAPI domain layer over a real LayoutStore, without gRPC: the existence
// cache, the completeness check, result storage and instance lookup. A thin
// decorator hides blobs (as a registry GC would) and counts StatBlob calls.
#include "pkg/reapi/instance.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pkg/cache/forwarding_store.h"
#include "nlohmann/json.hpp"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/zstd_stream.h"

namespace ocicache::reapi {
namespace {

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/reapi-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d != nullptr ? std::string(d) : std::string();
}

// Forwards to a store, except that hidden blobs are absent; counts StatBlob.
class HidingStore : public cache::ForwardingStore {
 public:
  explicit HidingStore(std::unique_ptr<cache::Store> inner) : ForwardingStore(std::move(inner)) {}

  void Hide(const oci::Digest& d) {
    absl::MutexLock l(&mu_);
    hidden_.insert(d);
  }
  int64_t stats() const { return stats_.load(); }

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& d) override {
    stats_.fetch_add(1);
    if (IsHidden(d)) return absl::NotFoundError("hidden");
    return ForwardingStore::StatBlob(d);
  }
  absl::Status ReadBlob(const oci::Digest& d, int64_t offset, oci::ByteSink& sink) override {
    if (IsHidden(d)) return absl::NotFoundError("hidden");
    return ForwardingStore::ReadBlob(d, offset, sink);
  }
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& d, int64_t size,
                                            oci::ByteSource& src) override {
    {
      absl::MutexLock l(&mu_);
      hidden_.erase(d);
    }
    return ForwardingStore::WriteBlob(d, size, src);
  }
  std::string Describe() const override { return "hiding(" + ForwardingStore::Describe() + ")"; }

 private:
  bool IsHidden(const oci::Digest& d) {
    absl::MutexLock l(&mu_);
    return hidden_.count(d) > 0;
  }
  absl::Mutex mu_;
  std::set<oci::Digest> hidden_;
  std::atomic<int64_t> stats_{0};
};

BlobId B(absl::string_view content) {
  return BlobId{oci::Digest::Of(content), static_cast<int64_t>(content.size())};
}

std::shared_ptr<HidingStore> NewStore() {
  auto layout = layout::LayoutStore::Open(TempDir());
  EXPECT_TRUE(layout.ok()) << layout.status();
  return std::make_shared<HidingStore>(*std::move(layout));
}

InstanceOptions Ttl(absl::Duration ttl) {
  InstanceOptions o;
  o.exists_ttl = ttl;
  o.complete_ttl = ttl;
  return o;
}

TEST(Instance, ExistenceCacheAnswersRepeatedChecks) {
  auto store = NewStore();
  Instance inst("", store, Ttl(absl::Minutes(10)));
  ASSERT_TRUE(inst.WriteBytes(B("a"), "a").ok());
  ASSERT_TRUE(inst.WriteBytes(B("b"), "b").ok());
  int64_t before = store->stats();
  for (int i = 0; i < 3; ++i) {
    auto missing = inst.FindMissing({B("a"), B("b"), B(""), B("a")});
    ASSERT_TRUE(missing.ok());
    EXPECT_TRUE(missing->empty());
  }
  EXPECT_EQ(store->stats(), before);  // written blobs are known, the empty blob always
  for (int i = 0; i < 3; ++i) {
    auto missing = inst.FindMissing({B("absent"), B("absent")});
    ASSERT_TRUE(missing.ok());
    EXPECT_EQ(missing->size(), 1u);  // duplicates reported once
  }
  EXPECT_EQ(store->stats(), before + 3);  // absence is asked every time
  // The right hash with another size is absent.
  auto wrong = inst.Exists(BlobId{oci::Digest::Of("a"), 2});
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(*wrong);
}

TEST(Instance, WriteBytesVerifiesDigestAndSize) {
  Instance inst("", NewStore(), Ttl(absl::Minutes(1)));
  EXPECT_EQ(inst.WriteBytes(B("x"), "y").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(inst.WriteBytes(BlobId{oci::Digest::Of("x"), 5}, "x").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(inst.WriteBytes(B(""), "").ok());
  auto e = inst.Exists(B("x"));
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(*e);
}

v2::ActionResult ResultWithTree(const std::string& tree_bytes) {
  v2::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("out");
  *f->mutable_digest() = ToProto(B("file"));
  auto* d = r.add_output_directories();
  d->set_path("dir");
  *d->mutable_tree_digest() = ToProto(B(tree_bytes));
  return r;
}

std::string TreeBytes() {
  v2::Tree t;
  auto* f = t.add_children()->add_files();
  f->set_name("inner");
  *f->mutable_digest() = ToProto(B("inner"));
  return t.SerializeAsString();
}

TEST(Instance, CompletenessCheckWithoutCache) {
  auto store = NewStore();
  Instance inst("", store, Ttl(absl::ZeroDuration()));
  std::string tree = TreeBytes();
  v2::ActionResult r = ResultWithTree(tree);
  ASSERT_TRUE(inst.WriteBytes(B("file"), "file").ok());
  ASSERT_TRUE(inst.WriteBytes(B(tree), tree).ok());
  auto s = inst.UpdateActionResult(B("act"), r);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);  // "inner" missing
  ASSERT_TRUE(inst.WriteBytes(B("inner"), "inner").ok());
  ASSERT_TRUE(inst.UpdateActionResult(B("act"), r).ok());
  auto got = inst.GetActionResult(B("act"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->SerializeAsString(), r.SerializeAsString());
  EXPECT_EQ(inst.hits(), 1);

  store->Hide(B("inner").digest);  // only the tree names it
  EXPECT_EQ(inst.GetActionResult(B("act")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(inst.misses(), 1);
  ASSERT_TRUE(inst.WriteBytes(B("inner"), "inner").ok());
  EXPECT_TRUE(inst.GetActionResult(B("act")).ok());
  EXPECT_EQ(inst.GetActionResult(B("other")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(inst.hits(), 2);
  EXPECT_EQ(inst.misses(), 2);
}

TEST(Instance, CompleteResultsAreRememberedForTheTtl) {
  auto store = NewStore();
  Instance inst("", store, Ttl(absl::Minutes(10)));
  std::string tree = TreeBytes();
  for (absl::string_view b : {absl::string_view("file"), absl::string_view("inner"),
                              absl::string_view(tree)}) {
    ASSERT_TRUE(inst.WriteBytes(B(b), b).ok());
  }
  ASSERT_TRUE(inst.UpdateActionResult(B("act"), ResultWithTree(tree)).ok());
  int64_t before = store->stats();
  ASSERT_TRUE(inst.GetActionResult(B("act")).ok());
  EXPECT_EQ(store->stats(), before);  // no existence check at all
  // Behind the server's back: still a hit within the TTL (documented), but a
  // read of the lost blob is NOT_FOUND and forgets it.
  store->Hide(B("file").digest);
  EXPECT_TRUE(inst.GetActionResult(B("act")).ok());
  oci::NullSink sink;
  EXPECT_EQ(inst.Read(B("file"), 0, sink).code(), absl::StatusCode::kNotFound);
  auto e = inst.Exists(B("file"));
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(*e);
}

TEST(Instance, ReadOffsets) {
  Instance inst("", NewStore(), Ttl(absl::Minutes(1)));
  ASSERT_TRUE(inst.WriteBytes(B("hello world"), "hello world").ok());
  std::string out;
  oci::StringSink sink(&out);
  ASSERT_TRUE(inst.Read(B("hello world"), 6, sink).ok());
  EXPECT_EQ(out, "world");
  out.clear();
  ASSERT_TRUE(inst.Read(B("hello world"), 11, sink).ok());
  EXPECT_EQ(out, "");
  EXPECT_EQ(inst.Read(B("hello world"), 12, sink).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(inst.Read(B("hello world"), -1, sink).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(inst.Read(B("nope"), 0, sink).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(inst.Read(B(""), 0, sink).ok());
  EXPECT_EQ(inst.ReadAll(B("hello world"), 5).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// Issue 11, defect 7: FindMissingBlobs with 20,000 digests made 20,000
// registry requests in one call. Now at most max_checks blobs not known
// present are looked up; the rest are reported missing (safe: the client
// uploads them again), never present.
// Text-like bytes that compress (an object file's symbol tables and code do
// about 3x), and random bytes that do not.
std::string Compressible(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) absl::StrAppend(&s, "symbol_", i % 5000, " = ", i, ";\n");
  s.resize(n);
  return s;
}

std::string Random(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (char& c : s) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<char>(seed >> 24);
  }
  return s;
}

std::string ReadAllOf(Instance& inst, const BlobId& b, int64_t offset = 0) {
  std::string out;
  oci::StringSink sink(&out);
  absl::Status s = inst.Read(b, offset, sink);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(Instance, LargeBlobsThatCompressAreStoredPackedAndReadBackWhole) {
  auto store = NewStore();
  const std::string text = Compressible(3 << 20);
  const BlobId id = B(text);
  {
    Instance inst("", store, Ttl(absl::Minutes(10)));
    ASSERT_TRUE(inst.WriteBytes(id, text).ok());
    auto e = inst.Exists(id);
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(*e);
    EXPECT_EQ(ReadAllOf(inst, id), text);
  }
  // Not under its own digest: a mapping entry names a zstd frame, much smaller.
  EXPECT_TRUE(absl::IsNotFound(store->StatBlob(id.digest).status()));
  auto mapping = store->Lookup(MappingKey(id.digest), {});
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  auto packed = ReadMappingEntry(*mapping, id);
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->stored.media_type, "application/zstd");
  EXPECT_LT(packed->stored.size, id.size / 4);
  EXPECT_TRUE(store->StatBlob(packed->stored.digest).ok());

  // A server that never saw it finds it by its digest: exists, size, whole
  // and from offsets (the middle of the frame, the last byte).
  Instance fresh("", store, Ttl(absl::Minutes(10)));
  auto missing = fresh.FindMissing({id});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->empty());
  auto size = fresh.Size(id.digest);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, id.size);
  EXPECT_EQ(ReadAllOf(fresh, id), text);
  EXPECT_EQ(ReadAllOf(fresh, id, 1234567), text.substr(1234567));
  EXPECT_EQ(ReadAllOf(fresh, id, id.size - 1), text.substr(text.size() - 1));
  // Another size under the same hash is absent.
  auto other = fresh.Exists(BlobId{id.digest, id.size + 1});
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*other);
}

TEST(Instance, SmallIncompressibleOrUnpackedBlobsAreStoredAsTheyAre) {
  auto store = NewStore();
  Instance inst("", store, Ttl(absl::Minutes(10)));
  const std::string random = Random(2 << 20, 7);
  const std::string small = Compressible((1 << 20) - 1);  // below kMinPackedBytes
  for (const std::string* data : {&random, &small}) {
    ASSERT_TRUE(inst.WriteBytes(B(*data), *data).ok());
    auto size = store->StatBlob(B(*data).digest);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(*size, static_cast<int64_t>(data->size()));
    EXPECT_EQ(ReadAllOf(inst, B(*data)), *data);
  }
  EXPECT_TRUE(absl::IsNotFound(store->Lookup(MappingKey(B(random).digest), {}).status()));
  InstanceOptions off = Ttl(absl::Minutes(10));
  off.zstd_level = 0;
  Instance plain("", store, off);
  const std::string text = Compressible(2 << 20);
  ASSERT_TRUE(plain.WriteBytes(B(text), text).ok());
  EXPECT_TRUE(store->StatBlob(B(text).digest).ok());
}

TEST(Instance, APackedWriteOfWrongBytesStoresNoMapping) {
  auto store = NewStore();
  Instance inst("", store, Ttl(absl::Minutes(10)));
  const std::string text = Compressible(2 << 20);
  std::string other = text;
  other[100] = '#';
  const BlobId id = B(text);
  oci::StringSource wrong(other);
  EXPECT_EQ(inst.Write(id, wrong).code(), absl::StatusCode::kInvalidArgument);
  const std::string longer = text + "x";
  oci::StringSource too_long(longer);
  EXPECT_EQ(inst.Write(id, too_long).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::IsNotFound(store->Lookup(MappingKey(id.digest), {}).status()));
  auto e = inst.Exists(id);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(*e);
}

TEST(Instance, APackedBlobWhoseFrameIsLostOrWrongIsNotServed) {
  auto store = NewStore();
  const std::string text = Compressible(2 << 20);
  const BlobId id = B(text);
  {
    Instance inst("", store, Ttl(absl::Minutes(10)));
    ASSERT_TRUE(inst.WriteBytes(id, text).ok());
  }
  auto mapping = store->Lookup(MappingKey(id.digest), {});
  ASSERT_TRUE(mapping.ok());
  auto packed = ReadMappingEntry(*mapping, id);
  ASSERT_TRUE(packed.ok());

  // A mapping naming the frame of other bytes (a writer's bug, a forged
  // entry): the read ends in DataLoss, however far in it starts.
  std::string other = text;
  other[text.size() - 10] = '#';
  {
    oci::StringSource src(other);
    oci::ZstdSource frame(src, 3, -1);
    auto d = store->WriteBlob(oci::Digest(), -1, frame);
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE(store->Put(MappingEntry(Packed(id, *d))).ok());
  }
  Instance fresh("", store, Ttl(absl::Minutes(10)));
  std::string out;
  oci::StringSink sink(&out);
  EXPECT_EQ(fresh.Read(id, 0, sink).code(), absl::StatusCode::kDataLoss);
  out.clear();
  EXPECT_EQ(fresh.Read(id, 5, sink).code(), absl::StatusCode::kDataLoss);

  // Its frame gone (a registry's GC): NOT_FOUND, and forgotten.
  ASSERT_TRUE(store->Put(MappingEntry(*packed)).ok());
  Instance again("", store, Ttl(absl::Minutes(10)));
  ASSERT_EQ(ReadAllOf(again, id), text);
  store->Hide(packed->stored.digest);
  out.clear();
  EXPECT_EQ(again.Read(id, 0, sink).code(), absl::StatusCode::kNotFound);
}

TEST(Instance, AnActionResultNamesItsPackedOutputsByTheirFrames) {
  auto store = NewStore();
  const std::string text = Compressible(2 << 20);
  const std::string random = Random(2 << 20, 11);
  v2::ActionResult r;
  for (const std::string* data : {&text, &random}) {
    auto* f = r.add_output_files();
    f->set_path(data == &text ? "lib.a" : "blob.bin");
    *f->mutable_digest() = ToProto(B(*data));
  }
  {
    Instance inst("", store, Ttl(absl::Minutes(10)));
    ASSERT_TRUE(inst.WriteBytes(B(text), text).ok());
    ASSERT_TRUE(inst.WriteBytes(B(random), random).ok());
    ASSERT_TRUE(inst.UpdateActionResult(B("act"), r).ok());
  }
  auto e = store->Lookup(ActionKey(B("act")), {});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(nlohmann::json::parse(e->config)["reapi"], "v3");
  ASSERT_EQ(e->blobs.size(), 2u);
  int packed_layers = 0;
  for (const oci::Descriptor& l : e->blobs) {
    auto p = PackedLayer(l);
    if (!p.has_value()) {
      EXPECT_EQ(l.digest, B(random).digest);
      continue;
    }
    ++packed_layers;
    EXPECT_EQ(p->raw, B(text));
    EXPECT_TRUE(store->StatBlob(l.digest).ok());
  }
  EXPECT_EQ(packed_layers, 1);

  // A fresh server answers it and reads the packed output without asking
  // for its mapping: the result's layer says where it is.
  Instance fresh("", store, Ttl(absl::Minutes(10)));
  auto got = fresh.GetActionResult(B("act"));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(store->Delete(MappingKey(B(text).digest)).ok());
  EXPECT_EQ(ReadAllOf(fresh, B(text)), text);
  EXPECT_EQ(ReadAllOf(fresh, B(random)), random);
  // Its frame gone: the result is incomplete, a miss.
  auto frame = std::find_if(e->blobs.begin(), e->blobs.end(),
                            [](const oci::Descriptor& l) { return PackedLayer(l).has_value(); });
  store->Hide(frame->digest);
  Instance later("", store, Ttl(absl::Minutes(10)));
  EXPECT_EQ(later.GetActionResult(B("act")).status().code(), absl::StatusCode::kNotFound);
}

TEST(Instance, StoringAResultLooksEachBlobUpOnceEvenWithoutTheCache) {
  auto store = NewStore();
  Instance inst("", store, Ttl(absl::ZeroDuration()));  // --reapi_cache_ttl=0
  std::string tree = TreeBytes();
  for (absl::string_view b : {absl::string_view("file"), absl::string_view("inner"),
                              absl::string_view(tree)}) {
    ASSERT_TRUE(inst.WriteBytes(B(b), b).ok());
  }
  const int64_t before = store->stats();
  ASSERT_TRUE(inst.UpdateActionResult(B("act"), ResultWithTree(tree)).ok());
  // "file" and the tree (direct), "inner" (in the tree): the stored form of
  // each comes from the presence check, not from a second lookup. The tree's
  // read asks once more.
  EXPECT_EQ(store->stats() - before, 4);
}

TEST(InstanceTest, FindMissingBoundsTheLookupsOfOneCall) {
  auto store = NewStore();
  Instance inst("", store, InstanceOptions());
  std::vector<BlobId> present, absent;
  for (int i = 0; i < 30; ++i) {
    present.push_back(B(absl::StrCat("present ", i)));
    ASSERT_TRUE(inst.WriteBytes(present.back(), absl::StrCat("present ", i)).ok());
    absent.push_back(B(absl::StrCat("absent ", i)));
  }
  Instance fresh("", store, InstanceOptions());  // an empty existence cache
  std::vector<BlobId> all = present;
  all.insert(all.end(), absent.begin(), absent.end());
  int64_t before = store->stats();
  size_t unchecked = 0;
  auto missing = fresh.FindMissing(all, 10, &unchecked);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(store->stats() - before, 10);  // 10 lookups, not 60
  EXPECT_EQ(unchecked, 50u);
  // The 10 checked were present; everything else is reported missing.
  EXPECT_EQ(missing->size(), 50u);
  std::set<BlobId> reported(missing->begin(), missing->end());
  for (const BlobId& b : absent) EXPECT_TRUE(reported.count(b)) << b.str();
  // Blobs known present cost no lookup and are not reported missing.
  before = store->stats();
  missing = fresh.FindMissing(all, 10, &unchecked);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->size(), 40u);  // 10 known + 10 newly checked present
  EXPECT_EQ(store->stats() - before, 10);
  // Unbounded (the default, used by UpdateActionResult): every blob is checked.
  missing = fresh.FindMissing(all);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->size(), 30u);
}

TEST(Instances, OpensEachNameOnceAndRefusesBadOnes) {
  auto def = NewStore();
  int opened = 0;
  Instances none(def.get(), nullptr, InstanceOptions());
  EXPECT_TRUE(none.Get("").ok());
  EXPECT_EQ(none.Get("a").status().code(), absl::StatusCode::kInvalidArgument);

  Instances insts(def.get(), [&](absl::string_view name)
                                 -> absl::StatusOr<std::shared_ptr<cache::Store>> {
    ++opened;
    if (name == "broken") return absl::UnavailableError("cannot open");
    return std::shared_ptr<cache::Store>(NewStore());
  }, InstanceOptions());
  auto a1 = insts.Get("team/a");
  auto a2 = insts.Get("team/a");
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(*a1, *a2);
  EXPECT_EQ(opened, 1);
  EXPECT_EQ((*a1)->name(), "team/a");
  EXPECT_EQ(insts.Get("Team").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(opened, 1);
  EXPECT_EQ(insts.Get("broken").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(insts.AllStats().size(), 2u);  // "" and team/a
  auto def_inst = insts.Get("");
  ASSERT_TRUE(def_inst.ok());
  EXPECT_EQ(&(*def_inst)->store(), def.get());
}

// Issue 11, defect 3: every name used to keep its store (about 7 fds) open
// for ever. Now at most max_open_instances are open; the least recently used
// idle one is closed first, and one a call holds lives until it lets go.
TEST(Instances, KeepsAtMostMaxOpenStoresOpen) {
  auto def = NewStore();
  auto live = std::make_shared<int>(0);
  InstanceOptions opts;
  opts.max_open_instances = 3;
  Instances insts(def.get(), [live](absl::string_view)
                                 -> absl::StatusOr<std::shared_ptr<cache::Store>> {
    ++*live;
    auto inner = NewStore();
    return std::shared_ptr<cache::Store>(inner.get(), [live, inner](cache::Store*) mutable {
      --*live;
      inner.reset();
    });
  }, opts);
  auto held = insts.Get("held");  // a call in flight keeps it
  ASSERT_TRUE(held.ok());
  for (int i = 0; i < 50; ++i) {
    auto inst = insts.Get(absl::StrCat("n", i));
    ASSERT_TRUE(inst.ok());
    (*inst)->GetActionResult(B("x")).IgnoreError();  // one miss each
    EXPECT_LE(*live, 4) << "after " << i;              // 3 open + at most the held one
  }
  EXPECT_EQ(insts.open_count(), 3u);
  EXPECT_EQ(insts.closed_count(), 48);
  // The held instance was closed (not recently used) but still works.
  EXPECT_TRUE((*held)->FindMissing({B("y")}).ok());
  held->reset();
  EXPECT_EQ(*live, 3);
  // Recently used names stay open; a closed one opens again.
  auto n49 = insts.Get("n49");
  ASSERT_TRUE(n49.ok());
  EXPECT_EQ(insts.closed_count(), 48);
  ASSERT_TRUE(insts.Get("n0").ok());
  EXPECT_EQ(insts.closed_count(), 49);
  EXPECT_EQ(*live, 3);
  // Closed instances' counts stay in the stats.
  int64_t misses = 0;
  for (const auto& st : insts.AllStats()) misses += st.misses;
  EXPECT_EQ(misses, 50);
}

TEST(Instances, ServesOnlyAllowedNamesWhenListed) {
  auto def = NewStore();
  int opened = 0;
  InstanceOptions opts;
  opts.allowed_instances = {"ci", "team/a"};
  Instances insts(def.get(), [&](absl::string_view)
                                 -> absl::StatusOr<std::shared_ptr<cache::Store>> {
    ++opened;
    return std::shared_ptr<cache::Store>(NewStore());
  }, opts);
  EXPECT_TRUE(insts.Get("").ok());
  EXPECT_TRUE(insts.Get("ci").ok());
  EXPECT_TRUE(insts.Get("team/a").ok());
  auto other = insts.Get("team/b");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(other.status().message()), testing::HasSubstr("--reapi_instances"));
  EXPECT_EQ(opened, 2);
}

}  // namespace
}  // namespace ocicache::reapi
