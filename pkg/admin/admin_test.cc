#include "pkg/admin/admin.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::admin {
namespace {

std::string TempDir() {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                  "/admin-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

std::unique_ptr<layout::LayoutStore> Open() {
  auto s = layout::LayoutStore::Open(TempDir());
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

void PutEntry(cache::Store& s, const std::string& key, absl::Duration age) {
  std::string content = "content of " + key;
  oci::StringSource src(content);
  auto d = s.WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  cache::Entry e;
  e.key = key;
  e.blobs.push_back(*d);
  e.created = e.last_used = absl::Now() - age;
  ASSERT_TRUE(s.Put(e).ok());
}

std::vector<std::string> Keys(cache::Store& s) {
  std::vector<std::string> keys;
  EXPECT_TRUE(s.List([&](const cache::EntryInfo& i) {
                 keys.push_back(i.key);
                 return true;
               }).ok());
  std::sort(keys.begin(), keys.end());
  return keys;
}

TEST(AdminTest, GcNeedsACriterion) {
  auto store = Open();
  LocalAdmin admin(*store, store.get(), nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(admin.CollectGarbage({}, nullptr).status()));
  GcRequest neg;
  neg.keep_last = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(admin.CollectGarbage(neg, nullptr).status()));
}

TEST(AdminTest, GcByAgeAndCount) {
  auto store = Open();
  PutEntry(*store, "new", absl::Minutes(1));
  PutEntry(*store, "old", absl::Hours(50));
  PutEntry(*store, "older", absl::Hours(100));
  LocalAdmin admin(*store, store.get(), nullptr);

  GcRequest dry;
  dry.keep_last = 1;
  dry.dry_run = true;
  std::vector<std::string> seen;
  auto r = admin.CollectGarbage(dry, [&](const ProgressEvent& ev) {
    seen.push_back(ev.key);
    EXPECT_EQ(ev.action, "delete");
    EXPECT_EQ(ev.total, 2);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries, 3);
  EXPECT_EQ(r->deleted, 2);
  EXPECT_FALSE(r->local_tier);
  EXPECT_EQ(seen, (std::vector<std::string>{"old", "older"}));
  EXPECT_EQ(Keys(*store).size(), 3u);

  GcRequest by_age;
  by_age.older_than = absl::Hours(75);
  r = admin.CollectGarbage(by_age, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->deleted, 1);
  EXPECT_TRUE(r->local_tier);
  EXPECT_EQ(Keys(*store), (std::vector<std::string>{"new", "old"}));
}

// Entries last used in the same second are kept in key order, so the same
// request picks the same entries whatever order the store lists them in.
TEST(AdminTest, GcBreaksTiesByKey) {
  for (bool reversed : {false, true}) {
    auto store = Open();
    const absl::Duration age = absl::Minutes(5);
    // The same second for all three (PutEntry keeps what it is given).
    absl::Time when = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now() - age));
    std::vector<std::string> keys = {"k1", "-aB/cD_e.f", "m"};
    if (reversed) std::reverse(keys.begin(), keys.end());
    for (const auto& k : keys) PutEntry(*store, k, absl::Now() - when);
    LocalAdmin admin(*store, store.get(), nullptr);
    GcRequest dry;
    dry.keep_last = 1;
    dry.dry_run = true;
    std::vector<std::string> seen;
    auto r = admin.CollectGarbage(dry, [&](const ProgressEvent& ev) {
      seen.push_back(ev.key);
      return true;
    });
    ASSERT_TRUE(r.ok()) << r.status();
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"k1", "m"})) << "reversed=" << reversed;
  }
}

TEST(AdminTest, GcStopsWhenTheCallerSaysSo) {
  auto store = Open();
  PutEntry(*store, "a", absl::Hours(1));
  PutEntry(*store, "b", absl::Hours(2));
  LocalAdmin admin(*store, store.get(), nullptr);
  GcRequest all;
  all.keep_last = 0;
  auto r = admin.CollectGarbage(all, [](const ProgressEvent&) { return false; });
  EXPECT_TRUE(absl::IsCancelled(r.status())) << r.status();
  EXPECT_EQ(Keys(*store).size(), 1u);
}

TEST(AdminTest, SyncBothWays) {
  auto local = Open();
  auto remote = Open();
  PutEntry(*local, "only-local", absl::Minutes(1));
  PutEntry(*remote, "only-remote", absl::Minutes(1));
  PutEntry(*local, "both", absl::Minutes(1));
  PutEntry(*remote, "both", absl::Minutes(1));
  // gocacheprog's local session copy is the directory's own: never pushed.
  PutEntry(*local, "gocacheprog.session.0123.local", absl::Minutes(1));
  LocalAdmin admin(*local, local.get(), remote.get());

  SyncRequest dry;
  dry.dry_run = true;
  auto r = admin.Sync(dry, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pushed, 1);
  EXPECT_EQ(r->pulled, 1);
  EXPECT_EQ(Keys(*remote), (std::vector<std::string>{"both", "only-remote"}));

  SyncRequest up;
  up.direction = SyncDirection::kUp;
  std::vector<std::string> actions;
  r = admin.Sync(up, [&](const ProgressEvent& ev) {
    actions.push_back(ev.action + " " + ev.key);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(actions, (std::vector<std::string>{"push only-local"}));
  EXPECT_EQ(r->local, local->Describe());
  EXPECT_EQ(Keys(*remote), (std::vector<std::string>{"both", "only-local", "only-remote"}));

  r = admin.Sync({}, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pushed, 0);
  EXPECT_EQ(r->pulled, 1);
  EXPECT_EQ(Keys(*local), (std::vector<std::string>{"both", "gocacheprog.session.0123.local",
                                                    "only-local", "only-remote"}));
  auto hit = local->Lookup("only-remote", {});
  ASSERT_TRUE(hit.ok()) << hit.status();
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE(local->ReadBlob(hit->blobs[0].digest, 0, sink).ok());
  EXPECT_EQ(back, "content of only-remote");
}

TEST(AdminTest, SyncNeedsTwoTiers) {
  auto store = Open();
  LocalAdmin admin(*store, store.get(), nullptr);
  EXPECT_TRUE(absl::IsFailedPrecondition(admin.Sync({}, nullptr).status()));
}

// The shard count for a per-repository limit: the fullest shard (mean plus four
// standard deviations of hashing's unevenness) within 80% of the limit.
TEST(AdminTest, ShardsForALimit) {
  EXPECT_EQ(ShardsFor(0, 10000), 1);
  EXPECT_EQ(ShardsFor(5000, 10000), 1);
  EXPECT_EQ(ShardsFor(7800, 10000), 2);  // 7,800 + 4 x 88 > 8,000
  EXPECT_EQ(ShardsFor(100000, 10000), 14);
  EXPECT_EQ(ShardsFor(1000000, 10000), 131);
  EXPECT_EQ(ShardsFor(40, 20), 7);
  EXPECT_EQ(ShardsFor(100000000, 10000), 0);  // more than 256
  EXPECT_EQ(ShardsFor(10, 0), 0);
  for (int64_t n : {1000, 30000, 250000, 1500000}) {
    const int s = ShardsFor(n, 10000);
    ASSERT_GT(s, 0) << n;
    const double mean = static_cast<double>(n) / s;
    EXPECT_LE(mean + 4 * std::sqrt(mean), 8000) << n;
    if (s > 1) {
      const double fewer = static_cast<double>(n) / (s - 1);
      EXPECT_GT(fewer + 4 * std::sqrt(fewer), 8000) << n << ": " << s - 1 << " would do";
    }
  }
}

}  // namespace
}  // namespace ocicache::admin
