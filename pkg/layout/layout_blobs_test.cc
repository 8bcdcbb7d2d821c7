// LayoutStore blobs: write, read and stat; verification of size and digest on
// write and on read; quarantine and healing of corrupt blobs; symlinks; mount.
#include "pkg/layout/layout_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pkg/cache/entry.h"
#include "pkg/layout/layout_test_util.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"

namespace ocicache::layout {
namespace {

using ::ocicache::cache::Entry;

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

std::string ReadFd(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// OpenVerifiedBlob hands out the file only once its bytes match the digest: a
// damaged one is quarantined as a read would, and a good one keeps being
// handed out without hashing once verified.
TEST(LayoutStoreTest, OpenVerifiedBlobChecksTheFileFirst) {
  std::string dir = NewDir("openverified");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = Pattern(200000, 6);
  oci::Digest d = oci::Digest::Of(data);
  int64_t size = 0;
  EXPECT_TRUE(absl::IsNotFound(s->OpenVerifiedBlob(d, &size).status()));
  ASSERT_TRUE(PutBlob(*s, data).ok());
  auto fd = s->OpenVerifiedBlob(d, &size);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(size, static_cast<int64_t>(data.size()));
  EXPECT_TRUE(ReadFd(*fd) == data);
  ::close(*fd);

  std::string flipped = data;
  flipped[4242] ^= 0x10;
  WriteFile(BlobPath(dir, d), flipped);
  auto bad = s->OpenVerifiedBlob(d, &size);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_FALSE(Exists(BlobPath(dir, d)));  // moved aside
}

// Writing bytes the store holds in a verified file keeps that file (same
// inode: readers' verified state stays); an unverified one is replaced.
TEST(LayoutStoreTest, RewritingAVerifiedBlobKeepsItsFile) {
  std::string dir = NewDir("rewrite");
  auto s = OpenOrDie(dir);
  ASSERT_TRUE(s);
  std::string data = Pattern(150000, 7);
  oci::Digest d = oci::Digest::Of(data);
  ASSERT_TRUE(PutBlob(*s, data).ok());
  struct stat first;
  ASSERT_EQ(::stat(BlobPath(dir, d).c_str(), &first), 0);
  // Not verified yet: a write of unknown digest replaces the file.
  oci::StringSource again(data);
  ASSERT_TRUE(s->WriteBlob(oci::Digest(), -1, again).ok());
  struct stat second;
  ASSERT_EQ(::stat(BlobPath(dir, d).c_str(), &second), 0);
  EXPECT_NE(first.st_ino, second.st_ino);
  absl::SleepFor(absl::Milliseconds(1100));  // versions younger than 1 s are never noted good
  ASSERT_TRUE(ReadBlobString(*s, d).ok());   // verified now
  oci::StringSource third(data);
  ASSERT_TRUE(s->WriteBlob(oci::Digest(), -1, third).ok());
  struct stat after;
  ASSERT_EQ(::stat(BlobPath(dir, d).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, second.st_ino);
  EXPECT_TRUE(ListNames(dir + "/tmp").empty());  // the temp copy is gone
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

}  // namespace
}  // namespace ocicache::layout
