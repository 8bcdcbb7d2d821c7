#include "pkg/service/uploads.h"

#include <sys/stat.h>
#include <utime.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::service {
namespace {

std::string TempDir() {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                  "/uploads-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

class UploadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = UploadStaging::Open(TempDir() + "/uploads");
    ASSERT_TRUE(s.ok()) << s.status();
    staging_ = *std::move(s);
    auto l = layout::LayoutStore::Open(TempDir());
    ASSERT_TRUE(l.ok()) << l.status();
    store_ = *std::move(l);
  }
  std::unique_ptr<UploadStaging> staging_;
  std::unique_ptr<layout::LayoutStore> store_;
};

TEST_F(UploadsTest, ResumeAcrossStreams) {
  std::string data(300000, 'r');
  oci::Digest d = oci::Digest::Of(data);
  {
    auto up = staging_->Begin("up-1", d, 300000, 0);
    ASSERT_TRUE(up.ok()) << up.status();
    ASSERT_TRUE((*up)->Append(data.substr(0, 100000)).ok());
  }  // the stream broke
  auto q = staging_->Query("up-1");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->committed, 100000);
  EXPECT_FALSE(q->complete);
  EXPECT_TRUE(absl::IsOutOfRange(staging_->Begin("up-1", d, 300000, 200000).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(staging_->Begin("up-1", d, 299999, 0).status()));
  {
    auto stale = staging_->Begin("up-1", d, 300000, 100000);
    ASSERT_TRUE(stale.ok()) << stale.status();
    EXPECT_EQ((*stale)->state().committed, 100000);
    // One stream at a time: a resume takes the upload over from a stream the
    // server has not yet seen break; that one can no longer write, finish or
    // discard it.
    // A stream for another blob under the same id takes nothing over.
    EXPECT_TRUE(absl::IsInvalidArgument(staging_->Begin("up-1", d, 299999, 100000).status()));
    ASSERT_TRUE((*stale)->Append(data.substr(100000, 10)).ok());
    auto up = staging_->Begin("up-1", d, 300000, 100000);
    ASSERT_TRUE(up.ok()) << up.status();
    EXPECT_EQ((*up)->state().committed, 100000);  // rewound below the stale stream's writes
    EXPECT_TRUE(absl::IsAborted((*stale)->Append(data.substr(100010, 10))));
    EXPECT_TRUE(absl::IsAborted((*stale)->MarkComplete(d, 300000)));
    (*stale)->Discard();
    stale->reset();  // its end does not release the new stream's claim
    EXPECT_EQ((*up)->state().committed, 100000);
    ASSERT_TRUE((*up)->Append(data.substr(100000)).ok());
    auto desc = (*up)->Commit(*store_);
    ASSERT_TRUE(desc.ok()) << desc.status();
    EXPECT_EQ(desc->digest, d);
  }
  q = staging_->Query("up-1");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->complete);
  EXPECT_EQ(q->committed, 300000);
  auto size = store_->StatBlob(d);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 300000);
  // Beginning a completed upload says so.
  auto again = staging_->Begin("up-1", d, 300000, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->state().complete);
}

TEST_F(UploadsTest, RewindToAnEarlierOffset) {
  std::string data = "0123456789";
  auto up = staging_->Begin("rw", oci::Digest(), -1, 0);
  ASSERT_TRUE(up.ok());
  ASSERT_TRUE((*up)->Append("01234XXXXX").ok());
  up->reset();
  up = staging_->Begin("rw", oci::Digest(), -1, 5);
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE((*up)->Append("56789").ok());
  auto desc = (*up)->Commit(*store_);
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_EQ(desc->digest, oci::Digest::Of(data));
  EXPECT_EQ(desc->size, 10);
}

TEST_F(UploadsTest, MismatchDiscards) {
  auto up = staging_->Begin("bad", oci::Digest::Of("other"), 5, 0);
  ASSERT_TRUE(up.ok());
  ASSERT_TRUE((*up)->Append("hello").ok());
  EXPECT_TRUE(absl::IsInvalidArgument((*up)->Commit(*store_).status()));
  up->reset();
  EXPECT_TRUE(absl::IsNotFound(staging_->Query("bad").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->StatBlob(oci::Digest::Of("hello")).status()));
}

TEST_F(UploadsTest, TooManyBytesDiscards) {
  auto up = staging_->Begin("big", oci::Digest(), 3, 0);
  ASSERT_TRUE(up.ok());
  EXPECT_TRUE(absl::IsInvalidArgument((*up)->Append("four")));
  up->reset();
  EXPECT_TRUE(absl::IsNotFound(staging_->Query("big").status()));
}

TEST_F(UploadsTest, IdsAreValidated) {
  EXPECT_TRUE(absl::IsInvalidArgument(staging_->Begin("", oci::Digest(), -1, 0).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(staging_->Begin(std::string(1000, 'i'), oci::Digest(), -1, 0).status()));
  // Path-like ids are only names: the file is named by the id's hash.
  auto up = staging_->Begin("../../etc/passwd", oci::Digest(), -1, 0);
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_TRUE(absl::IsNotFound(staging_->Query("unknown").status()));
}

TEST_F(UploadsTest, OldUploadsExpire) {
  UploadStaging::Options opts;
  opts.ttl = absl::Hours(1);
  std::string dir = TempDir();
  auto staging = UploadStaging::Open(dir, opts);
  ASSERT_TRUE(staging.ok());
  {
    auto up = (*staging)->Begin("old", oci::Digest(), -1, 0);
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->Append("abc").ok());
  }
  std::string stem = oci::Digest::Of("old").hex();
  for (const char* ext : {".part", ".meta"}) {
    struct utimbuf t = {time(nullptr) - 7200, time(nullptr) - 7200};
    ASSERT_EQ(utime((dir + "/" + stem + ext).c_str(), &t), 0);
  }
  (*staging)->Expire();
  EXPECT_TRUE(absl::IsNotFound((*staging)->Query("old").status()));
}

}  // namespace
}  // namespace ocicache::service
