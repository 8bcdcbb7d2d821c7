#include "pkg/cache/store_testsuite.h"

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/cache/format.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"

namespace ocicache::cache {

void StoreConformanceTest::SetUp() {
  auto s = GetParam().make();
  ASSERT_TRUE(s.ok()) << s.status();
  store_ = *std::move(s);
}

namespace {

using ::absl::StatusCode;

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u + seed;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x);
  }
  return s;
}

// A source producing `n` pseudo-random bytes without holding them.
class PatternSource : public oci::ByteSource {
 public:
  PatternSource(int64_t n, int seed) : left_(n), x_(2463534242u + seed) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t k = static_cast<size_t>(std::min<int64_t>(left_, n));
    for (size_t i = 0; i < k; ++i) {
      x_ ^= x_ << 13;
      x_ ^= x_ >> 17;
      x_ ^= x_ << 5;
      buf[i] = static_cast<char>(x_);
    }
    left_ -= k;
    return k;
  }

 private:
  int64_t left_;
  uint32_t x_;
};

class HashSink : public oci::ByteSink {
 public:
  absl::Status Write(absl::string_view chunk) override {
    h.Update(chunk);
    return absl::OkStatus();
  }
  oci::Sha256 h;
};

absl::StatusOr<oci::Descriptor> WriteString(Store& s, const std::string& data) {
  oci::StringSource src(data);
  return s.WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
}

std::string ReadString(Store& s, const oci::Digest& d, int64_t offset = 0) {
  std::string out;
  oci::StringSink sink(&out);
  absl::Status st = s.ReadBlob(d, offset, sink);
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

Entry MakeEntry(Store& s, const std::string& key, int seed) {
  std::string blob = Pattern(1000 + seed, seed);
  auto d = WriteString(s, blob);
  EXPECT_TRUE(d.ok()) << d.status();
  Entry e;
  e.key = key;
  e.config = absl::StrCat(R"({"seed":)", seed, "}");
  e.descriptor = absl::StrCat(R"({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", )",
                              R"("size": 7, "digest": "sha256:)", std::string(64, 'c'), R"("})");
  oci::Descriptor b;
  b.media_type = "application/octet-stream";
  b.digest = d.ok() ? d->digest : oci::Digest();
  b.size = static_cast<int64_t>(blob.size());
  b.annotations["org.example.name"] = "object";
  e.blobs.push_back(b);
  Location loc;
  loc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  loc.digest = oci::Digest::Of("elsewhere");
  loc.size = 9;
  loc.url = BlobUrl("https://registry.example", "team/app", loc.digest);
  e.locations.push_back(loc);
  e.annotations["org.ocicache.tool.go"] = "go1.23.4";
  return e;
}

TEST_P(StoreConformanceTest, BlobWriteStatRead) {
  std::string data = Pattern(100000, 1);
  auto d = WriteString(*store_, data);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, oci::Digest::Of(data));
  EXPECT_EQ(d->size, 100000);
  auto size = store_->StatBlob(d->digest);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 100000);
  EXPECT_EQ(ReadString(*store_, d->digest), data);
  EXPECT_EQ(ReadString(*store_, d->digest, 99990), data.substr(99990));
}

TEST_P(StoreConformanceTest, BlobWriteWithUnknownDigestAndSize) {
  std::string data = Pattern(70000, 2);
  oci::StringSource src(data);
  auto d = store_->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, oci::Digest::Of(data));
  EXPECT_EQ(d->size, 70000);
  EXPECT_EQ(ReadString(*store_, d->digest), data);
}

TEST_P(StoreConformanceTest, BlobWriteIsIdempotent) {
  std::string data = Pattern(5000, 3);
  ASSERT_TRUE(WriteString(*store_, data).ok());
  auto again = WriteString(*store_, data);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->digest, oci::Digest::Of(data));
}

TEST_P(StoreConformanceTest, BlobDigestMismatchStoresNothing) {
  std::string data = Pattern(4000, 4);
  oci::Digest wrong = oci::Digest::Of("something else");
  oci::StringSource src(data);
  auto d = store_->WriteBlob(wrong, static_cast<int64_t>(data.size()), src);
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(store_->StatBlob(wrong).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->StatBlob(oci::Digest::Of(data)).status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, BlobSizeMismatchStoresNothing) {
  std::string data = Pattern(4000, 5);
  oci::StringSource src(data);
  auto d = store_->WriteBlob(oci::Digest::Of(data), 4001, src);
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(store_->StatBlob(oci::Digest::Of(data)).status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, MissingBlobIsNotFound) {
  oci::Digest d = oci::Digest::Of("never written");
  EXPECT_EQ(store_->StatBlob(d).status().code(), StatusCode::kNotFound);
  oci::NullSink sink;
  EXPECT_EQ(store_->ReadBlob(d, 0, sink).code(), StatusCode::kNotFound);
}

// Exact ranges: the bytes asked for and no more, anywhere in the blob; a range
// past the end is OutOfRange; an empty range reads nothing.
TEST_P(StoreConformanceTest, ReadBlobRangeIsExact) {
  const std::string data = Pattern(300000, 11);
  auto d = WriteString(*store_, data);
  ASSERT_TRUE(d.ok()) << d.status();
  struct Case {
    int64_t offset, length;
  };
  for (Case c : {Case{0, 1}, Case{0, 1000}, Case{12345, 54321}, Case{299999, 1},
                 Case{250000, 50000}, Case{0, 300000}}) {
    std::string got;
    oci::StringSink sink(&got);
    absl::Status st = store_->ReadBlobRange(d->digest, c.offset, c.length, sink);
    ASSERT_TRUE(st.ok()) << c.offset << "+" << c.length << ": " << st;
    EXPECT_EQ(got, data.substr(c.offset, c.length)) << c.offset << "+" << c.length;
  }
  std::string none;
  oci::StringSink empty(&none);
  EXPECT_TRUE(store_->ReadBlobRange(d->digest, 100, 0, empty).ok());
  EXPECT_TRUE(none.empty());
  std::string past;
  oci::StringSink past_sink(&past);
  absl::Status st = store_->ReadBlobRange(d->digest, 299000, 2000, past_sink);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange) << st;
  oci::NullSink null;
  EXPECT_EQ(store_->ReadBlobRange(oci::Digest::Of("never written"), 0, 10, null).code(),
            StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, LargeBlobStreams) {
  const int64_t n = 24 << 20;
  PatternSource src(n, 6);
  auto d = store_->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, n);
  HashSink sink;
  ASSERT_TRUE(store_->ReadBlob(d->digest, 0, sink).ok());
  EXPECT_EQ(sink.h.size(), n);
  EXPECT_EQ(sink.h.Finish(), d->digest);
}

TEST_P(StoreConformanceTest, EntryRoundTrip) {
  for (const std::string& key : std::vector<std::string>{"plain", "-leading/dash/and/slashes", "with space & ünïcode",
                                std::string(300, 'L')}) {
    Entry e = MakeEntry(*store_, key, 7);
    ASSERT_TRUE(store_->Put(e).ok()) << key;
    auto got = store_->Lookup(key, {});
    ASSERT_TRUE(got.ok()) << key << ": " << got.status();
    EXPECT_EQ(got->key, key);
    EXPECT_EQ(got->config, e.config);
    EXPECT_EQ(got->descriptor, e.descriptor);  // byte for byte
    ASSERT_EQ(got->blobs.size(), 1u);
    EXPECT_EQ(got->blobs[0].digest, e.blobs[0].digest);
    EXPECT_EQ(got->blobs[0].annotations.at("org.example.name"), "object");
    ASSERT_EQ(got->locations.size(), 1u);
    EXPECT_EQ(got->locations[0].url, e.locations[0].url);
    EXPECT_EQ(got->annotations.at("org.ocicache.tool.go"), "go1.23.4");
    EXPECT_LT(absl::Now() - got->created, absl::Minutes(5));
  }
}

TEST_P(StoreConformanceTest, MissingEntryIsNotFound) {
  EXPECT_EQ(store_->Lookup("no such key", {}).status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, MalformedKeyIsInvalid) {
  EXPECT_EQ(store_->Lookup("", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Lookup("a\nb", {}).status().code(), StatusCode::kInvalidArgument);
  Entry e;
  e.key = "";
  EXPECT_EQ(store_->Put(e).code(), StatusCode::kInvalidArgument);
}

TEST_P(StoreConformanceTest, PutNeedsItsBlobs) {
  Entry e = MakeEntry(*store_, "needs-blobs", 8);
  e.blobs[0].digest = oci::Digest::Of("absent blob");
  EXPECT_EQ(store_->Put(e).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Lookup("needs-blobs", {}).status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, RequiredAnnotationsDecideHits) {
  ASSERT_TRUE(store_->Put(MakeEntry(*store_, "versioned", 9)).ok());
  LookupOptions opts;
  opts.require["org.ocicache.tool.go"] = "go1.23.4";
  EXPECT_TRUE(store_->Lookup("versioned", opts).ok());
  opts.require["org.ocicache.tool.go"] = "go1.24.0";
  EXPECT_EQ(store_->Lookup("versioned", opts).status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, PutReplaces) {
  Entry e = MakeEntry(*store_, "replace-me", 10);
  ASSERT_TRUE(store_->Put(e).ok());
  e.config = R"({"version":2})";
  ASSERT_TRUE(store_->Put(e).ok());
  auto got = store_->Lookup("replace-me", {});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->config, R"({"version":2})");
}

TEST_P(StoreConformanceTest, DeleteAndList) {
  std::set<std::string> keys;
  for (int i = 0; i < 5; ++i) {
    std::string key = absl::StrCat("list/", i);
    ASSERT_TRUE(store_->Put(MakeEntry(*store_, key, 20 + i)).ok());
    keys.insert(key);
  }
  std::set<std::string> listed;
  ASSERT_TRUE(store_->List([&](const EntryInfo& info) {
                      listed.insert(info.key);
                      EXPECT_GT(info.size, 1000);
                      EXPECT_TRUE(info.manifest_digest.valid());
                      return true;
                    })
                  .ok());
  EXPECT_EQ(listed, keys);
  ASSERT_TRUE(store_->Delete("list/2").ok());
  EXPECT_EQ(store_->Lookup("list/2", {}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("list/2").code(), StatusCode::kNotFound);
  listed.clear();
  ASSERT_TRUE(store_->List([&](const EntryInfo& info) {
                      listed.insert(info.key);
                      return true;
                    })
                  .ok());
  keys.erase("list/2");
  EXPECT_EQ(listed, keys);
  int seen = 0;
  ASSERT_TRUE(store_->List([&](const EntryInfo&) { return ++seen < 2; }).ok());
  EXPECT_EQ(seen, 2);
}

TEST_P(StoreConformanceTest, OldEntriesAreTouchedOnHit) {
  Entry e = MakeEntry(*store_, "old", 11);
  e.created = absl::Now() - absl::Hours(72);
  e.last_used = absl::Now() - absl::Hours(48);
  ASSERT_TRUE(store_->Put(e).ok());
  LookupOptions no_touch;
  no_touch.touch = false;
  auto first = store_->Lookup("old", no_touch);
  ASSERT_TRUE(first.ok());
  EXPECT_GT(absl::Now() - first->last_used, absl::Hours(47));
  ASSERT_TRUE(store_->Lookup("old", {}).ok());
  auto after = store_->Lookup("old", no_touch);
  ASSERT_TRUE(after.ok());
  EXPECT_LT(absl::Now() - after->last_used, absl::Minutes(5));
  EXPECT_GT(absl::Now() - after->created, absl::Hours(71));
}

TEST_P(StoreConformanceTest, ConcurrentPutsAndLookups) {
  constexpr int kThreads = 6, kPerThread = 8;
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = absl::StrCat("concurrent/", t, "/", i);
        absl::Status put = store_->Put(MakeEntry(*store_, key, t * 100 + i));
        absl::Status got = store_->Lookup(key, {}).status();
        std::lock_guard<std::mutex> l(mu);
        if (!put.ok()) failures.push_back(absl::StrCat("put ", key, ": ", put.ToString()));
        if (!got.ok()) failures.push_back(absl::StrCat("lookup ", key, ": ", got.ToString()));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, first: " << failures[0];
  int n = 0;
  ASSERT_TRUE(store_->List([&](const EntryInfo&) { ++n; return true; }).ok());
  EXPECT_EQ(n, kThreads * kPerThread);
}

TEST_P(StoreConformanceTest, MountOfPresentBlobSucceeds) {
  std::string data = Pattern(3000, 12);
  auto d = WriteString(*store_, data);
  ASSERT_TRUE(d.ok());
  Location loc;
  loc.media_type = "application/octet-stream";
  loc.digest = d->digest;
  loc.size = d->size;
  loc.url = BlobUrl("https://registry.example", "elsewhere", d->digest);
  EXPECT_TRUE(store_->MountBlob(loc).ok());
}

}  // namespace
}  // namespace ocicache::cache
