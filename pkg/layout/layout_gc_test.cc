// LayoutStore::Gc: unreferenced old blobs, stale temp files and refs whose
// manifest is gone are removed; live entries, young blobs and temp files in
// progress are kept. (Eviction under a size bound: layout_store_evict_test.cc.)
#include "pkg/layout/layout_store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pkg/cache/entry.h"
#include "pkg/layout/layout_test_util.h"
#include "pkg/oci/digest.h"

namespace ocicache::layout {
namespace {

using ::ocicache::cache::LookupOptions;

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
  // old_unused, and dead's blob, manifest and config blob; its descriptor blob
  // (`{}`, no original descriptor) is live's too and stays.
  EXPECT_EQ(d->blobs_removed, 4);
  EXPECT_EQ(*s->TotalSize(), *before);

  auto g = s->Gc(GcOptions());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->entries, 1);
  EXPECT_EQ(g->blobs_removed, 4);
  EXPECT_EQ(g->bytes_removed, *before - *s->TotalSize());
  EXPECT_EQ(g->temp_files_removed, 1);
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(old_unused->digest).status()));
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(deleted_blob->digest).status()));
  EXPECT_TRUE(absl::IsNotFound(s->StatBlob(*dead_manifest).status()));
  EXPECT_TRUE(s->StatBlob(used->digest).ok());
  EXPECT_TRUE(s->StatBlob(young_unused->digest).ok());
  EXPECT_TRUE(s->Lookup("live", LookupOptions()).ok());
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

}  // namespace
}  // namespace ocicache::layout
