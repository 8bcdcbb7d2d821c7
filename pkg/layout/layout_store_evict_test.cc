// LayoutStore with a size bound (Options::max_bytes): LRU eviction of entries
// and the blobs only they referenced, the grace for writes in progress, and
// eviction beside concurrent readers and writers (two stores on one directory
// stand for two processes: each has its own descriptors and flock).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::layout {
namespace {

constexpr int64_t kKiB = 1024;

std::string NewDir(absl::string_view name) {
  static int counter = 0;
  const char* base = std::getenv("TEST_TMPDIR");
  return absl::StrCat(base ? base : "/tmp", "/", name, "-", ::getpid(), "-", ++counter);
}

// Distinct, deterministic content per seed.
std::string Data(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2166136261u ^ static_cast<uint32_t>(seed * 7919 + 1);
  for (size_t i = 0; i < n; ++i) {
    x = x * 16777619u + 7;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Key(int i) { return absl::StrCat("go/build/", i); }

LayoutStore::Options Bounded(int64_t max_bytes, absl::Duration grace = absl::ZeroDuration()) {
  LayoutStore::Options o;
  o.max_bytes = max_bytes;
  o.evict_grace = grace;
  return o;
}

// Writes blob `seed` (n bytes) and an entry for Key(i) naming it.
absl::Status PutEntry(LayoutStore& s, int i, int seed, size_t n) {
  std::string data = Data(n, seed);
  oci::StringSource src(data);
  auto d = s.WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(n), src);
  if (!d.ok()) return d.status();
  cache::Entry e;
  e.key = Key(i);
  e.config = absl::StrCat("{\"i\":", i, "}");
  e.blobs.push_back(*d);
  return s.Put(e);
}

bool Hit(LayoutStore& s, int i) { return s.Lookup(Key(i), cache::LookupOptions()).ok(); }

bool BlobExists(LayoutStore& s, int seed, size_t n) {
  return s.StatBlob(oci::Digest::Of(Data(n, seed))).ok();
}

// Sets the last use of Key(i) (its ref's mtime) to `ago` before now.
void SetLastUse(const std::string& dir, int i, absl::Duration ago) {
  std::string ref = absl::StrCat(dir, "/refs/", *cache::TagForKey(Key(i)));
  timespec t[2];
  t[0] = t[1] = absl::ToTimespec(absl::Now() - ago);
  ASSERT_EQ(::utimensat(AT_FDCWD, ref.c_str(), t, 0), 0) << ref;
}

void SetBlobAge(const std::string& dir, const std::string& data, absl::Duration ago) {
  std::string p = absl::StrCat(dir, "/blobs/sha256/", oci::Digest::Of(data).hex());
  timespec t[2];
  t[0] = t[1] = absl::ToTimespec(absl::Now() - ago);
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), t, 0), 0) << p;
}

TEST(LayoutEvictTest, SizeStaysBoundedAndOldestEntriesGo) {
  std::string dir = NewDir("evict-bound");
  const int64_t max = 1024 * kKiB;
  const size_t blob = 100 * kKiB;
  auto s = LayoutStore::Open(dir, Bounded(max));
  ASSERT_TRUE(s.ok()) << s.status();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(PutEntry(**s, i, i, blob).ok()) << i;
    // Older entries first: give each a distinct last use in the past.
    SetLastUse(dir, i, absl::Seconds(1000 - i));
    auto size = (*s)->TotalSize();
    ASSERT_TRUE(size.ok());
    // At most one write past the bound before the pass that brings it back.
    EXPECT_LE(*size, max + static_cast<int64_t>(blob) + 8 * kKiB) << "after entry " << i;
  }
  auto size = (*s)->TotalSize();
  ASSERT_TRUE(size.ok());
  EXPECT_LE(*size, max);
  // The newest entries are there, the oldest are misses with their blobs gone.
  for (int i = 35; i < 40; ++i) {
    EXPECT_TRUE(Hit(**s, i)) << i;
    EXPECT_TRUE(BlobExists(**s, i, blob)) << i;
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(absl::IsNotFound((*s)->Lookup(Key(i), cache::LookupOptions()).status())) << i;
    EXPECT_FALSE(BlobExists(**s, i, blob)) << i;
  }
  // Evicted entries left index.json too.
  int listed = 0;
  ASSERT_TRUE((*s)->List([&](const cache::EntryInfo&) { return ++listed, true; }).ok());
  EXPECT_LE(listed, 10);
  EXPECT_GE(listed, 5);
}

TEST(LayoutEvictTest, LookupHitsKeepEntriesAlive) {
  std::string dir = NewDir("evict-lru");
  const int64_t max = 1000 * kKiB;
  const size_t blob = 100 * kKiB;
  auto s = LayoutStore::Open(dir, Bounded(max));
  ASSERT_TRUE(s.ok()) << s.status();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(PutEntry(**s, i, i, blob).ok());
    SetLastUse(dir, i, absl::Seconds(1000 - i));  // 0 is the least recently used
  }
  // Used now: 0 and 1 become the most recently used.
  ASSERT_TRUE(Hit(**s, 0));
  ASSERT_TRUE(Hit(**s, 1));
  // Three more entries push the tier past 1000 KiB: eviction goes to 900 KiB.
  for (int i = 8; i < 11; ++i) ASSERT_TRUE(PutEntry(**s, i, i, blob).ok());
  EXPECT_TRUE(Hit(**s, 0));
  EXPECT_TRUE(Hit(**s, 1));
  EXPECT_FALSE(Hit(**s, 2));
  EXPECT_FALSE(Hit(**s, 3));
  EXPECT_TRUE(Hit(**s, 10));
  auto size = (*s)->TotalSize();
  ASSERT_TRUE(size.ok());
  EXPECT_LE(*size, max);
}

TEST(LayoutEvictTest, SharedBlobStaysWhileAnotherEntryNamesIt) {
  std::string dir = NewDir("evict-shared");
  const size_t blob = 300 * kKiB;
  auto s = LayoutStore::Open(dir, Bounded(2048 * kKiB));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(PutEntry(**s, 0, /*seed=*/100, blob).ok());
  ASSERT_TRUE(PutEntry(**s, 1, /*seed=*/100, blob).ok());  // same blob
  SetLastUse(dir, 0, absl::Seconds(500));
  SetLastUse(dir, 1, absl::Seconds(400));
  // Fill: the shared blob's first owner is the oldest entry.
  for (int i = 2; i < 8; ++i) {
    ASSERT_TRUE(PutEntry(**s, i, i, blob).ok());
    SetLastUse(dir, i, absl::Seconds(300 - i));
  }
  auto st = (*s)->Evict();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_FALSE(Hit(**s, 0));
  // Entry 1 may have gone too, but never its blob before it.
  if (Hit(**s, 1)) EXPECT_TRUE(BlobExists(**s, 100, blob));
  auto size = (*s)->TotalSize();
  ASSERT_TRUE(size.ok());
  EXPECT_LE(*size, 2048 * kKiB);
}

TEST(LayoutEvictTest, GraceKeepsWritesInProgress) {
  std::string dir = NewDir("evict-grace");
  const int64_t max = 500 * kKiB;
  const size_t blob = 100 * kKiB;
  auto s = LayoutStore::Open(dir, Bounded(max, absl::Hours(1)));
  ASSERT_TRUE(s.ok()) << s.status();
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(PutEntry(**s, i, i, blob).ok());
  // All young: nothing may go, even over the bound.
  auto st = (*s)->Evict();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->entries_evicted, 0);
  EXPECT_EQ(st->blobs_removed, 0);
  EXPECT_GT(st->bytes_after, max);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(Hit(**s, i)) << i;

  // A blob written for a Put that has not happened yet (unreferenced, young)
  // stays; an old unreferenced one goes first.
  std::string pending = Data(blob, 1000), stale = Data(blob, 1001);
  for (const std::string* d : {&pending, &stale}) {
    oci::StringSource src(*d);
    ASSERT_TRUE((*s)->WriteBlob(oci::Digest::Of(*d), static_cast<int64_t>(d->size()), src).ok());
  }
  SetBlobAge(dir, stale, absl::Hours(2));
  // Entries 0..3 are old now, their blobs too.
  for (int i = 0; i < 4; ++i) {
    SetLastUse(dir, i, absl::Hours(3) - absl::Seconds(i));
    SetBlobAge(dir, Data(blob, i), absl::Hours(3));
  }
  st = (*s)->Evict();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_FALSE((*s)->StatBlob(oci::Digest::Of(stale)).ok());
  EXPECT_TRUE((*s)->StatBlob(oci::Digest::Of(pending)).ok());
  EXPECT_GE(st->entries_evicted, 1);
  EXPECT_FALSE(Hit(**s, 0));
  for (int i = 4; i < 8; ++i) EXPECT_TRUE(Hit(**s, i)) << i;
  // The pending Put completes.
  cache::Entry e;
  e.key = "pending";
  e.blobs.push_back(oci::Descriptor{"application/octet-stream", oci::Digest::Of(pending),
                                    static_cast<int64_t>(pending.size())});
  EXPECT_TRUE((*s)->Put(e).ok());
}

TEST(LayoutEvictTest, UnboundedStoreNeverEvicts) {
  std::string dir = NewDir("evict-none");
  auto s = LayoutStore::Open(dir);
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(PutEntry(**s, i, i, 100 * kKiB).ok());
  auto st = (*s)->Evict();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->entries_evicted, 0);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Hit(**s, i));
}

TEST(LayoutEvictTest, OpeningWithASmallerBoundEvicts) {
  std::string dir = NewDir("evict-reopen");
  {
    auto s = LayoutStore::Open(dir);
    ASSERT_TRUE(s.ok());
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(PutEntry(**s, i, i, 100 * kKiB).ok());
      SetLastUse(dir, i, absl::Seconds(100 - i));
    }
  }
  auto s = LayoutStore::Open(dir, Bounded(500 * kKiB));
  ASSERT_TRUE(s.ok());
  auto size = (*s)->TotalSize();
  ASSERT_TRUE(size.ok());
  EXPECT_LE(*size, 500 * kKiB);
  EXPECT_TRUE(Hit(**s, 9));
  EXPECT_FALSE(Hit(**s, 0));
}

// Writers in two stores (as two processes would) and readers at once, with the
// tier far too small for what is written: every hit reads back exactly what was
// written, nothing reads as corrupt, and the tier ends bounded.
TEST(LayoutEvictTest, ConcurrentReadersAndWritersStaySafe) {
  std::string dir = NewDir("evict-concurrent");
  const int64_t max = 800 * kKiB;
  const size_t blob = 64 * kKiB;
  auto a = LayoutStore::Open(dir, Bounded(max));
  auto b = LayoutStore::Open(dir, Bounded(max));
  ASSERT_TRUE(a.ok() && b.ok());
  constexpr int kPerWriter = 60;
  std::atomic<int> hits{0}, bad{0}, put_failures{0};
  std::atomic<bool> done{false};
  auto writer = [&](LayoutStore* s, int base) {
    for (int i = 0; i < kPerWriter; ++i) {
      absl::Status st = PutEntry(*s, base + i, base + i, blob);
      // A blob evicted between WriteBlob and Put (grace 0) is a clean failure.
      if (!st.ok()) {
        ++put_failures;
        if (!absl::IsFailedPrecondition(st)) ++bad;
      }
    }
  };
  auto reader = [&](LayoutStore* s) {
    for (int round = 0; round < 2000 && !done.load(); ++round) {
      int i = round % (2 * kPerWriter) + (round % 2 ? 1000 : 0);
      auto e = s->Lookup(Key(i), cache::LookupOptions());
      if (!e.ok()) {
        if (!absl::IsNotFound(e.status())) ++bad;
        continue;
      }
      std::string got;
      oci::StringSink sink(&got);
      absl::Status r = s->ReadBlob(e->blobs[0].digest, 0, sink);
      if (absl::IsNotFound(r)) continue;  // evicted after the lookup
      if (!r.ok() || got != Data(blob, i)) {
        ++bad;
        continue;
      }
      ++hits;
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(writer, a->get(), 0);
  threads.emplace_back(writer, b->get(), 1000);
  std::thread r1(reader, a->get()), r2(reader, b->get());
  for (auto& t : threads) t.join();
  done = true;
  r1.join();
  r2.join();
  std::printf("concurrent eviction: %d verified hits, %d puts refused\n", hits.load(), put_failures.load());
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LT(put_failures.load(), kPerWriter);  // most puts succeed
  auto st = (*a)->Evict();
  ASSERT_TRUE(st.ok()) << st.status();
  auto size = (*a)->TotalSize();
  ASSERT_TRUE(size.ok());
  EXPECT_LE(*size, max);
  // The last entries written are still there and intact.
  int last_hits = Hit(**a, kPerWriter - 1) + Hit(**a, 1000 + kPerWriter - 1);
  EXPECT_GE(last_hits, 1);
  // Nothing was left half-written in tmp/.
  auto left = (*a)->Gc(GcOptions{absl::ZeroDuration(), /*dry_run=*/true});
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->temp_files_removed, 0);
}

}  // namespace
}  // namespace ocicache::layout
