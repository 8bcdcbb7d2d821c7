#include "pkg/layout/layout_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/format.h"
#include "pkg/oci/types.h"

namespace ocicache::layout {
namespace {

using ::ocicache::cache::Entry;
using ::ocicache::cache::LookupOptions;

std::string NewDir(absl::string_view name) {
  static int counter = 0;
  const char* base = std::getenv("TEST_TMPDIR");
  return absl::StrCat(base ? base : "/tmp", "/", name, "-", ::getpid(), "-", ++counter);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, absl::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  std::string cmd = absl::StrCat("ls -A '", dir, "' 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    out.emplace_back(absl::StripTrailingAsciiWhitespace(line));
  }
  ::pclose(p);
  return out;
}

std::string BlobPath(const std::string& dir, const oci::Digest& d) {
  return absl::StrCat(dir, "/blobs/sha256/", d.hex());
}

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2166136261u ^ static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x = x * 16777619u + 7;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// A source that cannot rewind and hands out small, odd-sized chunks.
class TrickleSource : public oci::ByteSource {
 public:
  explicit TrickleSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min({n, data_.size() - pos_, size_t{1000}});
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

absl::StatusOr<std::string> ReadBlobString(LayoutStore& s, const oci::Digest& d,
                                           int64_t offset = 0) {
  std::string out;
  oci::StringSink sink(&out);
  absl::Status st = s.ReadBlob(d, offset, sink);
  if (!st.ok()) return st;
  return out;
}

absl::StatusOr<oci::Descriptor> PutBlob(LayoutStore& s, absl::string_view data) {
  oci::StringSource src(data);
  return s.WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
}

std::unique_ptr<LayoutStore> OpenOrDie(const std::string& dir,
                                       LayoutStore::Options opts = LayoutStore::Options()) {
  auto s = LayoutStore::Open(dir, std::move(opts));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

Entry MakeEntry(const std::string& key, const oci::Descriptor& blob, const std::string& tool) {
  Entry e;
  e.key = key;
  e.config = absl::StrCat("{\"key\":", nlohmann::json(key).dump(), "}");
  oci::Descriptor b = blob;
  b.media_type = "application/vnd.ocicache.test.output";
  e.blobs.push_back(b);
  e.annotations["org.ocicache.tool.go"] = tool;
  return e;
}

// index.json's ref name -> manifest digest; fails the test if it is not an index.
std::map<std::string, std::string> IndexRefs(const std::string& dir) {
  std::map<std::string, std::string> out;
  auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
  EXPECT_TRUE(idx.ok()) << idx.status();
  if (!idx.ok()) return out;
  for (const auto& m : idx->manifests) {
    auto it = m.annotations.find("org.opencontainers.image.ref.name");
    EXPECT_TRUE(it != m.annotations.end());
    if (it == m.annotations.end()) continue;
    EXPECT_EQ(m.media_type, oci::media::kImageManifest);
    EXPECT_FALSE(out.count(it->second)) << "duplicate ref " << it->second;
    out[it->second] = m.digest.str();
  }
  return out;
}

std::string TagOf(absl::string_view key) { return *cache::TagForKey(key); }

std::string RefOf(const std::string& dir, absl::string_view key) {
  return std::string(
      absl::StripTrailingAsciiWhitespace(ReadFile(absl::StrCat(dir, "/refs/", TagOf(key)))));
}

// Runs a shell command; returns its exit status and stdout.
int RunShell(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string FindOnPath(const std::string& prog) {
  const char* path = std::getenv("PATH");
  for (absl::string_view d : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string p = absl::StrCat(d, "/", prog);
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// ---------------------------------------------------------------------------
// Blobs.

TEST(LayoutStoreTest, BlobWriteReadStat) {
  std::string dir = NewDir("blobs");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = Pattern(700 * 1024, 1);
  oci::Digest d = oci::Digest::Of(data);

  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(d).status()));
  EXPECT_TRUE(absl::IsNotFound(ReadBlobString(*s, d).status()));

  auto desc = PutBlob(*s, data);
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_EQ(desc->digest, d);
  EXPECT_EQ(desc->size, static_cast<int64_t>(data.size()));
  auto size = s->StatBlob(d);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, static_cast<int64_t>(data.size()));
  auto back = ReadBlobString(*s, d);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data);
  auto tail = ReadBlobString(*s, d, 12345);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_TRUE(*tail == data.substr(12345));
  EXPECT_TRUE(absl::IsOutOfRange(ReadBlobString(*s, d, data.size() + 1).status()));
  EXPECT_EQ(ReadFile(BlobPath(dir, d)), data);

  // Writing an existing blob succeeds, and no temp file is left behind.
  ASSERT_TRUE(PutBlob(*s, data).ok());
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());
  auto total = s->TotalSize();
  ASSERT_TRUE(total.ok());
  EXPECT_GE(*total, static_cast<int64_t>(data.size()));
}

TEST(LayoutStoreTest, DigestOrSizeMismatchStoresNothing) {
  std::string dir = NewDir("mismatch");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = "the real bytes";
  oci::Digest other = oci::Digest::Of("other bytes");
  {
    oci::StringSource src(data);
    auto r = s->WriteBlob(other, static_cast<int64_t>(data.size()), src);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  {
    oci::StringSource src(data);
    auto r = s->WriteBlob(oci::Digest(), static_cast<int64_t>(data.size()) - 1, src);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  {
    oci::StringSource src(data);
    auto r = s->WriteBlob(oci::Digest(), static_cast<int64_t>(data.size()) + 1, src);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(other).status()));
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(oci::Digest::Of(data)).status()));
  EXPECT_TRUE(ListNames(dir + "/blobs/sha256").empty());
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());

  // Present already: the source is still checked, and the stored blob is untouched.
  ASSERT_TRUE(PutBlob(*s, data).ok());
  std::string forged = data;
  forged[0] ^= 1;
  oci::StringSource src(forged);
  auto r = s->WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(*ReadBlobString(*s, oci::Digest::Of(data)), data);
}

TEST(LayoutStoreTest, UnknownSizeWrite) {
  auto s = OpenOrDie(NewDir("unknown"));
  ASSERT_TRUE(s);
  std::string data = Pattern(300001, 2);
  TrickleSource src(data);
  auto desc = s->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_EQ(desc->digest, oci::Digest::Of(data));
  EXPECT_EQ(desc->size, 300001);
  EXPECT_EQ(*s->StatBlob(desc->digest), 300001);
  EXPECT_TRUE(*ReadBlobString(*s, desc->digest) == data);

  // Expected digest with unknown size.
  std::string more = Pattern(5000, 3);
  TrickleSource src2(more);
  auto d2 = s->WriteBlob(oci::Digest::Of(more), -1, src2);
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_EQ(d2->size, 5000);
}

TEST(LayoutStoreTest, TruncatedBlobIsDetectedQuarantinedAndHealed) {
  std::string dir = NewDir("truncated");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = Pattern(100000, 4);
  oci::Digest d = oci::Digest::Of(data);
  ASSERT_TRUE(PutBlob(*s, data).ok());
  ASSERT_EQ(::truncate(BlobPath(dir, d).c_str(), 50000), 0);

  auto r = ReadBlobString(*s, d);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "corrupt")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), d.str())) << r.status();
  // Moved aside: the next write heals it, the next read is a plain miss.
  EXPECT_FALSE(Exists(BlobPath(dir, d)));
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(d).status()));
  auto tmp = ListNames(dir + "/tmp");
  ASSERT_EQ(tmp.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(tmp[0], "corrupt-" + d.hex())) << tmp[0];

  ASSERT_TRUE(PutBlob(*s, data).ok());
  auto healed = ReadBlobString(*s, d);
  ASSERT_TRUE(healed.ok()) << healed.status();
  EXPECT_TRUE(*healed == data);

  // A truncated file is also replaced by a write with the expected digest and size,
  // before any read noticed it.
  ASSERT_EQ(::truncate(BlobPath(dir, d).c_str(), 10), 0);
  ASSERT_TRUE(PutBlob(*s, data).ok());
  EXPECT_TRUE(*ReadBlobString(*s, d) == data);

  // Same size, flipped bit: also DataLoss.
  std::string flipped = data;
  flipped[777] ^= 0x40;
  WriteFile(BlobPath(dir, d), flipped);
  EXPECT_EQ(ReadBlobString(*s, d).status().code(), absl::StatusCode::kDataLoss);
}

// A file version read and verified once streams without hashing again; any
// change to the file after that (here: one flipped byte, same size) is a new
// version and is checked again.
TEST(LayoutStoreTest, ChangesAfterAVerifiedReadAreStillDetected) {
  std::string dir = NewDir("verified");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = Pattern(300000, 5);
  oci::Digest d = oci::Digest::Of(data);
  ASSERT_TRUE(PutBlob(*s, data).ok());
  // Versions changed within the last second are never remembered as good.
  absl::SleepFor(absl::Milliseconds(1100));
  for (int i = 0; i < 3; ++i) {
    auto r = ReadBlobString(*s, d);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(*r == data);
  }
  std::string flipped = data;
  flipped[123456] ^= 0x01;
  {
    int fd = ::open(BlobPath(dir, d).c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, flipped.data() + 123456, 1, 123456), 1);
    ::close(fd);
  }
  auto r = ReadBlobString(*s, d);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_FALSE(Exists(BlobPath(dir, d)));  // moved aside
}

TEST(LayoutStoreTest, SymlinkedBlobIsRefused) {
  std::string dir = NewDir("symlink");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = "content reached through a symlink";
  oci::Digest d = oci::Digest::Of(data);
  std::string outside = dir + "-outside";
  WriteFile(outside, data);
  ASSERT_EQ(::symlink(outside.c_str(), BlobPath(dir, d).c_str()), 0);

  auto r = ReadBlobString(*s, d);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "symbolic link")) << r.status();
  EXPECT_FALSE(s->StatBlob(d).ok());
  Entry e = MakeEntry("uses-symlinked-blob", {"x", d, static_cast<int64_t>(data.size())}, "go1");
  EXPECT_EQ(s->Put(e).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFile(outside), data);  // the target is untouched

  // A write replaces the link with a regular file.
  ASSERT_TRUE(PutBlob(*s, data).ok());
  struct stat st;
  ASSERT_EQ(::lstat(BlobPath(dir, d).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(*ReadBlobString(*s, d), data);
}

TEST(LayoutStoreTest, MountBlob) {
  std::string payload = Pattern(4096, 5);
  cache::Location loc;
  loc.media_type = oci::media::kLayerTarGzip;
  loc.digest = oci::Digest::Of(payload);
  loc.size = 4096;
  loc.url = "http://127.0.0.1:1/v2/cache/blobs/" + loc.digest.str();

  {
    auto s = OpenOrDie(NewDir("mount-nofetch"));
    ASSERT_TRUE(s);
    EXPECT_EQ(s->MountBlob(loc).code(), absl::StatusCode::kUnimplemented);
    ASSERT_TRUE(PutBlob(*s, payload).ok());
    EXPECT_TRUE(s->MountBlob(loc).ok());
  }
  {
    int calls = 0;
    LayoutStore::Options opts;
    opts.fetcher = [&](const cache::Location& l, oci::ByteSink& sink) {
      ++calls;
      EXPECT_EQ(l.url, loc.url);
      return sink.Write(payload);
    };
    auto s = OpenOrDie(NewDir("mount-fetch"), opts);
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->MountBlob(loc).ok());
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(*ReadBlobString(*s, loc.digest) == payload);
    ASSERT_TRUE(s->MountBlob(loc).ok());
    EXPECT_EQ(calls, 1);  // present: not fetched again
  }
  {
    LayoutStore::Options opts;
    opts.fetcher = [&](const cache::Location&, oci::ByteSink& sink) {
      return sink.Write(payload.substr(0, 4000) + std::string(96, 'x'));
    };
    std::string dir = NewDir("mount-bad");
    auto s = OpenOrDie(dir, opts);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->MountBlob(loc).code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::IsNotFound(s->StatBlob(loc.digest).status()));
    EXPECT_TRUE(ListNames(dir + "/tmp").empty());
  }
}

// ---------------------------------------------------------------------------
// Entries.

TEST(LayoutStoreTest, PutLookupDeleteList) {
  std::string dir = NewDir("entries");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string out = Pattern(2000, 6);
  auto blob = PutBlob(*s, out);
  ASSERT_TRUE(blob.ok());
  Entry e = MakeEntry("action-1", *blob, "go1.23.1");
  e.annotations["org.ocicache.options"] = "abc";
  ASSERT_TRUE(s->Put(e).ok());

  LookupOptions lo;
  auto got = s->Lookup("action-1", lo);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->key, "action-1");
  EXPECT_EQ(got->config, e.config);
  ASSERT_EQ(got->blobs.size(), 1u);
  EXPECT_EQ(got->blobs[0].digest, blob->digest);
  EXPECT_EQ(got->blobs[0].size, 2000);
  EXPECT_EQ(got->blobs[0].media_type, "application/vnd.ocicache.test.output");
  EXPECT_EQ(got->annotations.at("org.ocicache.tool.go"), "go1.23.1");
  EXPECT_EQ(got->annotations.at("org.ocicache.options"), "abc");
  EXPECT_NE(got->created, absl::InfinitePast());

  // On disk: the ref, the manifest blob, the small blobs, the index row.
  std::string ref = RefOf(dir, "action-1");
  auto md = oci::Digest::Parse(ref);
  ASSERT_TRUE(md.ok()) << ref;
  auto manifest = ReadBlobString(*s, *md);
  ASSERT_TRUE(manifest.ok());
  auto m = oci::Manifest::Parse(*manifest);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(s->StatBlob(m->config.digest).ok());
  EXPECT_TRUE(s->StatBlob(m->layers[0].digest).ok());
  auto refs = IndexRefs(dir);
  EXPECT_EQ(refs, (std::map<std::string, std::string>{{TagOf("action-1"), ref}}));

  std::vector<cache::EntryInfo> listed;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo& i) {
                 listed.push_back(i);
                 return true;
               }).ok());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, "action-1");
  EXPECT_EQ(listed[0].tag, TagOf("action-1"));
  EXPECT_EQ(listed[0].manifest_digest, *md);
  EXPECT_GE(listed[0].size, 2000);

  // Put replaces the entry for that key, in refs and in index.json.
  Entry e2 = e;
  e2.config = "{\"v\":2}";
  ASSERT_TRUE(s->Put(e2).ok());
  EXPECT_EQ(s->Lookup("action-1", lo)->config, "{\"v\":2}");
  std::string ref2 = RefOf(dir, "action-1");
  EXPECT_NE(ref2, ref);
  EXPECT_EQ(IndexRefs(dir), (std::map<std::string, std::string>{{TagOf("action-1"), ref2}}));

  ASSERT_TRUE(s->Delete("action-1").ok());
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("action-1", lo).status()));
  EXPECT_TRUE(absl::IsNotFound(s->Delete("action-1")));
  EXPECT_TRUE(absl::IsNotFound(s->Delete("never-was")));
  int n = 0;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(IndexRefs(dir).empty());
  EXPECT_TRUE(s->StatBlob(blob->digest).ok());  // blobs stay for GC
  EXPECT_EQ(s->Lookup("", lo).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LayoutStoreTest, PutRequiresBlobsPresent) {
  std::string dir = NewDir("precondition");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  oci::Descriptor missing{"x", oci::Digest::Of("not stored"), 10};
  absl::Status st = s->Put(MakeEntry("k", missing, "go1"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), missing.digest.str())) << st;
  EXPECT_TRUE(ListNames(dir + "/refs").empty());
  EXPECT_TRUE(IndexRefs(dir).empty());

  // Present but with another size is not the blob the entry names.
  auto blob = PutBlob(*s, "12345");
  ASSERT_TRUE(blob.ok());
  oci::Descriptor wrong = *blob;
  wrong.size = 6;
  EXPECT_EQ(s->Put(MakeEntry("k", wrong, "go1")).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LayoutStoreTest, RequiredAnnotationMismatchIsAMiss) {
  auto s = OpenOrDie(NewDir("annotations"));
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "payload");
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(s->Put(MakeEntry("key", *blob, "go1.22.0")).ok());

  LookupOptions same;
  same.require["org.ocicache.tool.go"] = "go1.22.0";
  EXPECT_TRUE(s->Lookup("key", same).ok());
  LookupOptions other;
  other.require["org.ocicache.tool.go"] = "go1.23.0";
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("key", other).status()));
  LookupOptions absent;
  absent.require["org.ocicache.options"] = "x";
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("key", absent).status()));
}

TEST(LayoutStoreTest, KeysWithSlashesAndLeadingDash) {
  std::string dir = NewDir("keys");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::vector<std::string> keys = {
      "-aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789_-/AbCdEfGhIjKlMnOpQrSt/uVwXyZ9876543210-_ab",
      "a/b", "a_2fb", "a_b", "--", "-", "../../etc/passwd", ".hidden", std::string(300, '/'),
      std::string(301, '/')};
  for (size_t i = 0; i < keys.size(); ++i) {
    auto blob = PutBlob(*s, absl::StrCat("blob ", i));
    ASSERT_TRUE(blob.ok());
    ASSERT_TRUE(s->Put(MakeEntry(keys[i], *blob, absl::StrCat("v", i))).ok()) << keys[i];
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    auto e = s->Lookup(keys[i], LookupOptions());
    ASSERT_TRUE(e.ok()) << keys[i] << ": " << e.status();
    EXPECT_EQ(e->key, keys[i]);
    EXPECT_EQ(e->annotations["org.ocicache.tool.go"], absl::StrCat("v", i));
  }
  std::set<std::string> listed;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo& i) { return listed.insert(i.key), true; }).ok());
  EXPECT_EQ(listed, std::set<std::string>(keys.begin(), keys.end()));
  EXPECT_EQ(IndexRefs(dir).size(), keys.size());
  // Nothing escaped the layout.
  for (const auto& n : ListNames(dir)) {
    EXPECT_TRUE(n == "oci-layout" || n == "index.json" || n == "blobs" || n == "refs" ||
                n == "tmp" || n == "ocicache.lock")
        << n;
  }
  EXPECT_EQ(ListNames(dir + "/refs").size(), keys.size());
}

TEST(LayoutStoreTest, TouchRefreshesLastUsedOncePerInterval) {
  std::string dir = NewDir("touch");
  absl::Time now = absl::FromUnixSeconds(1700000000);
  LayoutStore::Options opts;
  opts.clock = [&] { return now; };
  auto s = OpenOrDie(dir, opts);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "touched");
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(s->Put(MakeEntry("t", *blob, "go1")).ok());
  std::string ref0 = RefOf(dir, "t");

  now += absl::Hours(1);
  auto e = s->Lookup("t", LookupOptions());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->last_used, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(RefOf(dir, "t"), ref0);

  now += absl::Hours(48);
  LookupOptions no_touch;
  no_touch.touch = false;
  ASSERT_TRUE(s->Lookup("t", no_touch).ok());
  EXPECT_EQ(RefOf(dir, "t"), ref0);

  e = s->Lookup("t", LookupOptions());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->last_used, now);
  std::string ref1 = RefOf(dir, "t");
  EXPECT_NE(ref1, ref0);
  EXPECT_EQ(IndexRefs(dir).at(TagOf("t")), ref1);
  auto again = s->Lookup("t", no_touch);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->last_used, now);
  EXPECT_EQ(again->created, absl::FromUnixSeconds(1700000000));
}

TEST(LayoutStoreTest, CorruptManifestIsReportedThenHealedByPut) {
  std::string dir = NewDir("corrupt-manifest");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "x");
  ASSERT_TRUE(blob.ok());
  Entry e = MakeEntry("c", *blob, "go1");
  ASSERT_TRUE(s->Put(e).ok());
  auto md = oci::Digest::Parse(RefOf(dir, "c"));
  ASSERT_TRUE(md.ok());
  ASSERT_EQ(::truncate(BlobPath(dir, *md).c_str(), 20), 0);

  LookupOptions lo;
  lo.touch = false;
  EXPECT_EQ(s->Lookup("c", lo).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("c", lo).status()));
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("c", lo).status()));
  ASSERT_TRUE(s->Put(e).ok());
  EXPECT_TRUE(s->Lookup("c", lo).ok());

  // An entry whose blob is gone is a miss.
  ASSERT_TRUE(s->RemoveBlob(blob->digest).ok());
  EXPECT_TRUE(absl::IsNotFound(s->Lookup("c", lo).status()));
  EXPECT_TRUE(absl::IsNotFound(s->RemoveBlob(blob->digest)));
}

// Once the refs and blobs directories have been quiet for a second, a warm
// lookup trusts its memo without a stat of each file; a ref or blob another
// store (another process) adds or removes still shows at once, through the
// directories. A blob truncated in place shows when it is read.
TEST(LayoutStoreTest, QuietDirectoriesStillShowOtherProcessesChanges) {
  std::string dir = NewDir("quiet");
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  ASSERT_TRUE(a && b);
  auto kb = PutBlob(*a, Pattern(3000, 21));
  auto jb = PutBlob(*a, Pattern(4000, 22));
  ASSERT_TRUE(kb.ok() && jb.ok());
  ASSERT_TRUE(a->Put(MakeEntry("k", *kb, "go1")).ok());
  ASSERT_TRUE(a->Put(MakeEntry("j", *jb, "go1")).ok());
  LookupOptions lo;
  lo.touch = false;
  absl::SleepFor(absl::Milliseconds(1100));
  for (int i = 0; i < 2; ++i) {  // checked, then trusted
    ASSERT_TRUE(a->Lookup("k", lo).ok());
    ASSERT_TRUE(a->Lookup("j", lo).ok());
  }

  // Truncated in place (no directory changes): the trusted memo still answers,
  // which shows the stats were skipped; reading the blob finds it out, moves
  // it aside (a change), and from then on the entry is a miss.
  ASSERT_EQ(::truncate(BlobPath(dir, kb->digest).c_str(), 100), 0);
  ASSERT_TRUE(a->Lookup("k", lo).ok());
  std::string got;
  oci::StringSink sink(&got);
  EXPECT_TRUE(absl::IsDataLoss(a->ReadBlob(kb->digest, 0, sink)));
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", lo).status()));

  // Quiet again; then the other store removes j's blob: a miss at once.
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(b->RemoveBlob(jb->digest).ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("j", lo).status()));

  // Quiet again; then the other store deletes the entry: a miss at once.
  ASSERT_TRUE(PutBlob(*b, Pattern(4000, 22)).ok());
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(a->Lookup("j", lo).ok());
  ASSERT_TRUE(b->Delete("j").ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("j", lo).status()));
}

// Warm lookups answer from a memo of decoded entries while the ref file is
// unchanged; every change another store (another process) makes is still seen.
TEST(LayoutStoreTest, WarmLookupsSeeChangesFromOtherProcesses) {
  std::string dir = NewDir("memo");
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  ASSERT_TRUE(a && b);
  auto blob = PutBlob(*a, Pattern(3000, 9));
  ASSERT_TRUE(blob.ok());
  Entry e = MakeEntry("k", *blob, "go1");
  e.config = "{\"v\":1}";
  ASSERT_TRUE(a->Put(e).ok());
  LookupOptions lo;
  lo.touch = false;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(a->Lookup("k", lo)->config, "{\"v\":1}");

  // Replaced by the other store: the new entry.
  Entry e2 = e;
  e2.config = "{\"v\":2}";
  ASSERT_TRUE(b->Put(e2).ok());
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");

  // Its manifest truncated: never a hit; healed by a Put.
  auto md = oci::Digest::Parse(RefOf(dir, "k"));
  ASSERT_TRUE(md.ok());
  ASSERT_EQ(::truncate(BlobPath(dir, *md).c_str(), 20), 0);
  EXPECT_FALSE(a->Lookup("k", lo).ok());
  EXPECT_FALSE(a->Lookup("k", lo).ok());
  ASSERT_TRUE(b->Put(e2).ok());
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");

  // Its blob gone: a miss.
  ASSERT_TRUE(b->RemoveBlob(blob->digest).ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", lo).status()));
  ASSERT_TRUE(PutBlob(*b, Pattern(3000, 9)).ok());
  EXPECT_EQ(a->Lookup("k", lo)->config, "{\"v\":2}");

  // Deleted by the other store: a miss.
  ASSERT_TRUE(b->Delete("k").ok());
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", lo).status()));

  // A required annotation is checked against the remembered entry too.
  ASSERT_TRUE(b->Put(e).ok());
  ASSERT_TRUE(a->Lookup("k", lo).ok());
  LookupOptions want = lo;
  want.require["org.ocicache.tool.go"] = "go2";
  EXPECT_TRUE(absl::IsNotFound(a->Lookup("k", want).status()));
  want.require["org.ocicache.tool.go"] = "go1";
  EXPECT_TRUE(a->Lookup("k", want).ok());
}

// ---------------------------------------------------------------------------
// index.json.

TEST(LayoutStoreTest, UnparsableIndexIsRebuiltAndForeignEntriesKept) {
  std::string dir = NewDir("index");
  {
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "b");
    ASSERT_TRUE(blob.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(s->Put(MakeEntry(absl::StrCat("k", i), *blob, "g")).ok());
    WriteFile(dir + "/index.json", "");  // e.g. after a power loss
    ASSERT_TRUE(s->Put(MakeEntry("k3", *blob, "g")).ok());
    EXPECT_EQ(IndexRefs(dir).size(), 4u);
  }
  // Another image in the same layout (what `skopeo copy ... oci:DIR:latest` adds).
  std::string foreign_manifest = "{\"schemaVersion\":2}";
  {
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    ASSERT_TRUE(PutBlob(*s, foreign_manifest).ok());
  }
  auto idx = nlohmann::json::parse(ReadFile(dir + "/index.json"));
  idx["manifests"].push_back(
      {{"mediaType", oci::media::kImageManifest},
       {"digest", oci::Digest::Of(foreign_manifest).str()},
       {"size", foreign_manifest.size()},
       {"annotations",
        {{"org.opencontainers.image.ref.name", "latest"},
         // Brackets, quotes and a fake ref name inside a string must not confuse
         // the index scanner.
         {"org.example.tricky", "}],\"{\\\",\"org.opencontainers.image.ref.name\":\"k.x\""}}}});
  WriteFile(dir + "/index.json", idx.dump());
  {
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "b");
    ASSERT_TRUE(s->Put(MakeEntry("k4", *blob, "g")).ok());
    ASSERT_TRUE(s->Delete("k0").ok());
    auto refs = IndexRefs(dir);
    EXPECT_EQ(refs.size(), 5u);
    EXPECT_EQ(refs["latest"], oci::Digest::Of(foreign_manifest).str());
    EXPECT_FALSE(refs.count(TagOf("k0")));
    // Gc keeps the foreign image's manifest and the index row.
    GcOptions gc;
    gc.min_age = absl::ZeroDuration();
    ASSERT_TRUE(s->Gc(gc).ok());
    EXPECT_TRUE(s->StatBlob(oci::Digest::Of(foreign_manifest)).ok());
    EXPECT_EQ(IndexRefs(dir).count("latest"), 1u);
  }
  {
    // A new instance reads index.json as written by the store (the fast path).
    auto s = OpenOrDie(dir);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "b");
    ASSERT_TRUE(s->Put(MakeEntry("k5", *blob, "g")).ok());
    auto refs = IndexRefs(dir);
    EXPECT_EQ(refs.size(), 6u);
    EXPECT_EQ(refs.count("latest"), 1u);
    EXPECT_EQ(refs.count("k.x"), 0u);
    auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
    ASSERT_TRUE(idx.ok());
    bool found = false;
    for (const auto& m : idx->manifests) {
      auto it = m.annotations.find("org.example.tricky");
      if (it == m.annotations.end()) continue;
      found = true;
      EXPECT_EQ(it->second, "}],\"{\\\",\"org.opencontainers.image.ref.name\":\"k.x\"");
    }
    EXPECT_TRUE(found);
  }
}

TEST(LayoutStoreTest, DeferredIndexIsWrittenOnFlushAndClose) {
  std::string dir = NewDir("defer");
  LayoutStore::Options opts;
  opts.index_interval = absl::InfiniteDuration();
  {
    auto s = OpenOrDie(dir, opts);
    ASSERT_TRUE(s);
    auto blob = PutBlob(*s, "d");
    ASSERT_TRUE(blob.ok());
    ASSERT_TRUE(s->Put(MakeEntry("d1", *blob, "g")).ok());
    EXPECT_TRUE(IndexRefs(dir).empty());
    EXPECT_TRUE(s->Lookup("d1", LookupOptions()).ok());  // lookups do not need the index
    ASSERT_TRUE(s->Flush().ok());
    EXPECT_EQ(IndexRefs(dir).size(), 1u);
    ASSERT_TRUE(s->Put(MakeEntry("d2", *blob, "g")).ok());
    EXPECT_EQ(IndexRefs(dir).size(), 1u);
  }
  EXPECT_EQ(IndexRefs(dir).size(), 2u);

  // A finite interval: the first change is written, the next ones wait for it.
  std::string dir2 = NewDir("interval");
  opts.index_interval = absl::Hours(1);
  auto s = OpenOrDie(dir2, opts);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "d");
  ASSERT_TRUE(s->Put(MakeEntry("i1", *blob, "g")).ok());
  EXPECT_EQ(IndexRefs(dir2).size(), 1u);
  ASSERT_TRUE(s->Put(MakeEntry("i2", *blob, "g")).ok());
  EXPECT_EQ(IndexRefs(dir2), (std::map<std::string, std::string>{{TagOf("i1"), RefOf(dir2, "i1")}}));
  ASSERT_TRUE(s->Delete("i1").ok());  // deletions are never deferred
  EXPECT_TRUE(IndexRefs(dir2).empty());
  ASSERT_TRUE(s->Flush().ok());
  EXPECT_EQ(IndexRefs(dir2), (std::map<std::string, std::string>{{TagOf("i2"), RefOf(dir2, "i2")}}));
}

// ---------------------------------------------------------------------------
// Opening.

TEST(LayoutStoreTest, OpenCreatesAValidLayout) {
  std::string dir = NewDir("fresh") + "/nested/cache";
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Describe(), "dir:" + dir);
  auto layout = nlohmann::json::parse(ReadFile(dir + "/oci-layout"));
  EXPECT_EQ(layout["imageLayoutVersion"], "1.0.0");
  auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_TRUE(idx->manifests.empty());
  struct stat st;
  EXPECT_EQ(::stat((dir + "/blobs/sha256").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(OpenOrDie(dir) != nullptr);  // and opens again
}

TEST(LayoutStoreTest, OpenRefusesWhatIsNotALayout) {
  std::string dir = NewDir("unrelated");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  WriteFile(dir + "/index.json", "{\"some\":\"other tool\"}");
  auto s = LayoutStore::Open(dir);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_TRUE(absl::StrContains(s.status().message(), "oci-layout")) << s.status();
  EXPECT_EQ(ListNames(dir), std::vector<std::string>{"index.json"});  // nothing written

  std::string home = NewDir("home");
  ASSERT_EQ(::mkdir(home.c_str(), 0755), 0);
  WriteFile(home + "/notes.txt", "mine");
  EXPECT_EQ(LayoutStore::Open(home).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ListNames(home), std::vector<std::string>{"notes.txt"});

  std::string future = NewDir("future");
  ASSERT_EQ(::mkdir(future.c_str(), 0755), 0);
  WriteFile(future + "/oci-layout", "{\"imageLayoutVersion\":\"2.0.0\"}");
  EXPECT_EQ(LayoutStore::Open(future).status().code(), absl::StatusCode::kFailedPrecondition);

  std::string file = NewDir("file");
  WriteFile(file, "x");
  EXPECT_FALSE(LayoutStore::Open(file).ok());
}

// ---------------------------------------------------------------------------
// Gc.

void Age(const std::string& path, absl::Duration age) {
  struct timespec ts[2];
  ts[0] = ts[1] = absl::ToTimespec(absl::Now() - age);
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << path;
}

TEST(LayoutStoreTest, GcRemovesUnreferencedOldBlobsAndTempFiles) {
  std::string dir = NewDir("gc");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto used = PutBlob(*s, Pattern(1000, 7));
  auto old_unused = PutBlob(*s, Pattern(2000, 8));
  auto young_unused = PutBlob(*s, Pattern(3000, 9));
  ASSERT_TRUE(used.ok() && old_unused.ok() && young_unused.ok());
  ASSERT_TRUE(s->Put(MakeEntry("live", *used, "g")).ok());
  auto deleted_blob = PutBlob(*s, Pattern(500, 10));
  ASSERT_TRUE(s->Put(MakeEntry("dead", *deleted_blob, "g")).ok());
  auto dead_manifest = oci::Digest::Parse(RefOf(dir, "dead"));
  ASSERT_TRUE(dead_manifest.ok());
  ASSERT_TRUE(s->Delete("dead").ok());

  // Everything is old except young_unused.
  for (const auto& n : ListNames(dir + "/blobs/sha256")) Age(dir + "/blobs/sha256/" + n, absl::Hours(2));
  Age(BlobPath(dir, young_unused->digest), absl::Minutes(5));
  WriteFile(dir + "/tmp/blob-stale", "half a blob");
  Age(dir + "/tmp/blob-stale", absl::Hours(3));
  WriteFile(dir + "/tmp/blob-inflight", "being written");

  auto before = s->TotalSize();
  ASSERT_TRUE(before.ok());
  GcOptions dry;
  dry.dry_run = true;
  auto d = s->Gc(dry);
  ASSERT_TRUE(d.ok()) << d.status();
  // old_unused, and dead's blob, manifest, config blob and descriptor blob.
  EXPECT_EQ(d->blobs_removed, 5);
  EXPECT_EQ(*s->TotalSize(), *before);

  auto g = s->Gc(GcOptions());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->entries, 1);
  EXPECT_EQ(g->blobs_removed, 5);
  EXPECT_EQ(g->bytes_removed, *before - *s->TotalSize());
  EXPECT_EQ(g->temp_files_removed, 1);
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(old_unused->digest).status()));
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(deleted_blob->digest).status()));
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(*dead_manifest).status()));
  EXPECT_TRUE(s->StatBlob(used->digest).ok());
  EXPECT_TRUE(s->StatBlob(young_unused->digest).ok());
  EXPECT_FALSE(Exists(dir + "/tmp/blob-stale"));
  EXPECT_TRUE(Exists(dir + "/tmp/blob-inflight"));
  EXPECT_TRUE(s->Lookup("live", LookupOptions()).ok());
  EXPECT_EQ(IndexRefs(dir).size(), 1u);

  // A ref whose manifest is gone is dropped.
  auto live_manifest = oci::Digest::Parse(RefOf(dir, "live"));
  ASSERT_TRUE(s->RemoveBlob(*live_manifest).ok());
  auto g2 = s->Gc(GcOptions());
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(g2->broken_refs_removed, 1);
  EXPECT_EQ(g2->entries, 0);
  EXPECT_TRUE(ListNames(dir + "/refs").empty());
  EXPECT_TRUE(IndexRefs(dir).empty());
}

// ---------------------------------------------------------------------------
// Concurrency.

// Child process body: opens the layout (maybe creating it) and puts `n` entries
// from each of two threads. Returns an exit code.
int PutMany(const std::string& dir, const std::string& prefix, int n) {
  auto s = LayoutStore::Open(dir);
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", s.status().ToString().c_str());
    return 2;
  }
  std::atomic<int> failures{0};
  auto work = [&](int t) {
    for (int i = 0; i < n; ++i) {
      std::string key = absl::StrCat(prefix, "/", t, "/", i);
      auto blob = PutBlob(**s, absl::StrCat("output of ", key));
      absl::Status st = blob.ok() ? (*s)->Put(MakeEntry(key, *blob, "go")) : blob.status();
      if (!st.ok()) {
        std::fprintf(stderr, "put %s: %s\n", key.c_str(), st.ToString().c_str());
        ++failures;
      }
    }
  };
  std::thread t1(work, 0), t2(work, 1);
  t1.join();
  t2.join();
  return failures.load() == 0 ? 0 : 1;
}

TEST(LayoutStoreTest, TwoProcessesPutConcurrently) {
  std::string dir = NewDir("procs");  // created by the children, racing
  std::vector<pid_t> pids;
  for (const char* prefix : {"-procA", "procB"}) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) ::_exit(PutMany(dir, prefix, 100));
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }

  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::set<std::string> tags;
  LookupOptions lo;
  lo.touch = false;
  for (const char* prefix : {"-procA", "procB"}) {
    for (int t = 0; t < 2; ++t) {
      for (int i = 0; i < 100; ++i) {
        std::string key = absl::StrCat(prefix, "/", t, "/", i);
        auto e = s->Lookup(key, lo);
        ASSERT_TRUE(e.ok()) << key << ": " << e.status();
        EXPECT_EQ(*ReadBlobString(*s, e->blobs.at(0).digest), "output of " + key);
        tags.insert(TagOf(key));
      }
    }
  }
  int listed = 0;
  ASSERT_TRUE(s->List([&](const cache::EntryInfo&) { return ++listed, true; }).ok());
  EXPECT_EQ(listed, 400);
  auto refs = IndexRefs(dir);
  EXPECT_EQ(refs.size(), 400u);
  for (const auto& tag : tags) {
    ASSERT_TRUE(refs.count(tag)) << tag;
    EXPECT_EQ(refs[tag], absl::StripTrailingAsciiWhitespace(ReadFile(dir + "/refs/" + tag)));
  }
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());
}

// A writer killed at an arbitrary point leaves only complete, verifiable files
// under their final names; stray temp files are Gc's.
TEST(LayoutStoreTest, KilledWriterLeavesNoPartialFiles) {
  std::string dir = NewDir("killed");
  ASSERT_TRUE(OpenOrDie(dir));
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = LayoutStore::Open(dir);
    if (!s.ok()) ::_exit(2);
    for (int i = 0;; ++i) {
      std::string data = Pattern(2 << 20, i);  // big enough to be caught mid-write
      auto blob = PutBlob(**s, data);
      if (!blob.ok() || !(*s)->Put(MakeEntry(absl::StrCat("killed/", i), *blob, "go")).ok()) {
        ::_exit(3);
      }
    }
  }
  ::usleep(400 * 1000);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited early with " << WEXITSTATUS(status);

  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  for (const auto& name : ListNames(dir + "/blobs/sha256")) {
    std::string data = ReadFile(dir + "/blobs/sha256/" + name);
    EXPECT_EQ(oci::Digest::Of(data).hex(), name) << "partial blob under its final name";
  }
  int entries = 0;
  for (const auto& tag : ListNames(dir + "/refs")) {
    auto d = oci::Digest::Parse(absl::StripTrailingAsciiWhitespace(ReadFile(dir + "/refs/" + tag)));
    ASSERT_TRUE(d.ok()) << "partial ref " << tag;
    EXPECT_TRUE(s->StatBlob(*d).ok()) << tag;
    ++entries;
  }
  EXPECT_GT(entries, 0);
  auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_GE(idx->manifests.size() + 1, static_cast<size_t>(entries));  // at most the last one lags
  GcOptions gc;
  gc.min_age = absl::ZeroDuration();
  auto g = s->Gc(gc);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->entries, entries);
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());
  EXPECT_EQ(IndexRefs(dir).size(), static_cast<size_t>(entries));
}

TEST(LayoutStoreTest, ThreadsReplacingOneKeyLeaveIndexAndRefAgreeing) {
  std::string dir = NewDir("samekey");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "same");
  ASSERT_TRUE(blob.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Entry e = MakeEntry("shared", *blob, "go");
        e.config = absl::StrCat("{\"writer\":", t, ",\"i\":", i, "}");
        EXPECT_TRUE(s->Put(e).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(IndexRefs(dir), (std::map<std::string, std::string>{
                                {TagOf("shared"), RefOf(dir, "shared")}}));
}

// ---------------------------------------------------------------------------
// Other tools.

TEST(LayoutStoreTest, SkopeoReadsTheLayout) {
  std::string skopeo = FindOnPath("skopeo");
  ASSERT_FALSE(skopeo.empty()) << "skopeo is required for this test and is not on PATH ("
                               << (std::getenv("PATH") ? std::getenv("PATH") : "") << ")";
  std::string dir = NewDir("skopeo");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, Pattern(10000, 11));
  ASSERT_TRUE(blob.ok());
  std::string key = "go/build/id";
  Entry e = MakeEntry(key, *blob, "go1.23");
  cache::Location loc;
  loc.media_type = oci::media::kLayerTarGzip;
  loc.digest = oci::Digest::Of("elsewhere");
  loc.size = 9;
  loc.url = "https://registry.example/v2/cache/blobs/" + loc.digest.str();
  e.locations.push_back(loc);
  ASSERT_TRUE(s->Put(e).ok());
  std::string tag = TagOf(key);
  auto md = oci::Digest::Parse(RefOf(dir, key));
  ASSERT_TRUE(md.ok());
  auto manifest = ReadBlobString(*s, *md);
  ASSERT_TRUE(manifest.ok());

  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string env = absl::StrCat("HOME='", tmp ? tmp : "/tmp", "' TMPDIR='", tmp ? tmp : "/tmp",
                                 "' ");
  std::string out;
  int rc = RunShell(absl::StrCat(env, skopeo, " inspect --raw oci:", dir, ":", tag, " 2>&1"), &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(out), *manifest);

  // A copy to another layout keeps the manifest byte for byte, and that layout
  // opens as a store with the entry (refs imported from its index.json).
  std::string copy = NewDir("skopeo-copy");
  rc = RunShell(absl::StrCat(env, skopeo, " --insecure-policy copy --preserve-digests oci:", dir, ":",
                        tag, " oci:", copy, ":", tag, " 2>&1"),
           &out);
  ASSERT_EQ(rc, 0) << out;
  rc = RunShell(absl::StrCat(env, skopeo, " inspect --raw oci:", copy, ":", tag, " 2>&1"), &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(out), *manifest);
  auto c = OpenOrDie(copy);
  ASSERT_TRUE(c);
  auto got = c->Lookup(key, LookupOptions());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->config, e.config);
  ASSERT_EQ(got->locations.size(), 1u);
  EXPECT_EQ(got->locations[0].url, loc.url);
  EXPECT_TRUE(*ReadBlobString(*c, blob->digest) == Pattern(10000, 11));

  // Copied into a layout that is already a store: the next Gc imports the entry.
  std::string live = NewDir("skopeo-live");
  auto l = OpenOrDie(live);
  ASSERT_TRUE(l);
  rc = RunShell(absl::StrCat(env, skopeo, " --insecure-policy copy --preserve-digests oci:", dir,
                             ":", tag, " oci:", live, ":", tag, " 2>&1"),
                &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::IsNotFound(l->Lookup(key, LookupOptions()).status()));  // refs are the truth
  GcOptions gc;
  gc.min_age = absl::ZeroDuration();
  auto g = l->Gc(gc);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->refs_imported, 1);
  EXPECT_EQ(g->entries, 1);
  auto imported = l->Lookup(key, LookupOptions());
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->config, e.config);
  EXPECT_EQ(IndexRefs(live).at(tag), md->str());
}

// skopeo (containers/image) accepts only names matching the image-spec grammar for
// org.opencontainers.image.ref.name: component ::= alphanum (separator alphanum)*,
// separator ::= [-._:@+] | "--". Go build ids start with '-' and contain '/'.
TEST(LayoutStoreTest, SkopeoReadsEveryKeyShape) {
  std::string skopeo = FindOnPath("skopeo");
  ASSERT_FALSE(skopeo.empty()) << "skopeo is required for this test and is not on PATH";
  const std::regex ref_name(
      "[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*(/[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*)*");
  std::string dir = NewDir("skopeo-keys");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  auto blob = PutBlob(*s, "k");
  ASSERT_TRUE(blob.ok());
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string env = absl::StrCat("HOME='", tmp ? tmp : "/tmp", "' ");
  for (std::string key : {"-aBcDeFgHiJkLmNoPqRs/tUvWxYz0123456789_-/AbCdEfGhIjKlMnOpQrSt/u-_",
                          "/leading-slash", "trailing-", "a---b", "plain"}) {
    ASSERT_TRUE(s->Put(MakeEntry(key, *blob, "g")).ok());
    std::string tag = TagOf(key);
    EXPECT_TRUE(std::regex_match(tag, ref_name))
        << "cache::TagForKey(\"" << key << "\") = \"" << tag
        << "\" is not a valid OCI layout ref name (annotations.md grammar)";
    std::string out;
    int rc = RunShell(absl::StrCat(env, skopeo, " inspect --raw oci:", dir, ":", tag, " 2>&1"), &out);
    EXPECT_EQ(rc, 0) << key << ": " << out;
  }
}

}  // namespace
}  // namespace ocicache::layout
