#include "pkg/cache/recall.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"

namespace ocicache::cache {
namespace {

// Entries and blobs in memory; lookups are counted, and a lookup of `hold`
// waits for `release` (a prefetch in flight).
class MemStore : public Store {
 public:
  absl::StatusOr<int64_t> StatBlob(const oci::Digest& d) override {
    absl::MutexLock l(&mu_);
    auto it = blobs_.find(d.str());
    if (it == blobs_.end()) return absl::NotFoundError("no blob");
    return static_cast<int64_t>(it->second.size());
  }
  absl::Status ReadBlob(const oci::Digest& d, int64_t offset, oci::ByteSink& sink) override {
    std::string data;
    {
      absl::MutexLock l(&mu_);
      auto it = blobs_.find(d.str());
      if (it == blobs_.end()) return absl::NotFoundError("no blob");
      data = it->second.substr(static_cast<size_t>(offset));
    }
    return sink.Write(data);
  }
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override {
    std::string data;
    char buf[4096];
    for (;;) {
      auto n = source.Read(buf, sizeof buf);
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      data.append(buf, *n);
    }
    oci::Descriptor d;
    d.digest = oci::Digest::Of(data);
    d.size = static_cast<int64_t>(data.size());
    if ((expected.valid() && expected.str() != d.digest.str()) || (size >= 0 && size != d.size)) {
      return absl::InvalidArgumentError("mismatch");
    }
    absl::MutexLock l(&mu_);
    blobs_[d.digest.str()] = std::move(data);
    ++blob_writes;
    return d;
  }
  absl::Status MountBlob(const Location&) override { return absl::UnimplementedError("no"); }
  absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions&) override {
    if (key == hold) {
      if (!entered.HasBeenNotified()) entered.Notify();
      release.WaitForNotification();
    }
    absl::MutexLock l(&mu_);
    lookups.push_back(std::string(key));
    auto it = entries_.find(std::string(key));
    if (it == entries_.end()) return absl::NotFoundError("miss");
    return it->second;
  }
  absl::Status Put(const Entry& e) override {
    absl::MutexLock l(&mu_);
    entries_[e.key] = e;
    ++puts;
    return absl::OkStatus();
  }
  absl::Status Delete(absl::string_view key) override {
    absl::MutexLock l(&mu_);
    return entries_.erase(std::string(key)) ? absl::OkStatus() : absl::NotFoundError("miss");
  }
  absl::Status List(const std::function<bool(const EntryInfo&)>&) override {
    return absl::UnimplementedError("no");
  }
  std::string Describe() const override { return "memory"; }

  std::vector<std::string> Lookups() {
    absl::MutexLock l(&mu_);
    return lookups;
  }
  int Puts() {
    absl::MutexLock l(&mu_);
    return puts;
  }

  std::string hold;
  absl::Notification entered;  // a lookup of `hold` began
  absl::Notification release;

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> blobs_;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> lookups;
  int puts = 0;
  int blob_writes = 0;
};

// The group's stats once its prefetch has ended (at most 10 s).
Recall::GroupStats WaitDone(Recall& r, const std::string& group) {
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (absl::Now() < until) {
    for (const auto& g : r.Stats()) {
      if (g.group == group && g.done) return g;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  ADD_FAILURE() << "the prefetch of " << group << " did not end";
  return {};
}

void PutObject(Store& s, const std::string& key) {
  Entry e;
  e.key = key;
  ASSERT_TRUE(s.Put(e).ok());
}

TEST(RecallListTest, KeysRoundTripInOrder) {
  std::vector<std::string> keys = {"http:kv:ccache:ab/cdef", "http:kv:ccache:01/23", "z"};
  std::string blob = FormatRecallList(keys);
  EXPECT_EQ(blob, "ocicache-recall 1\nhttp:kv:ccache:ab/cdef\nhttp:kv:ccache:01/23\nz\n");
  auto back = ParseRecallList(blob);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, keys);
}

TEST(RecallListTest, KeysThatCannotBeLinesAreLeftOut) {
  std::string blob = FormatRecallList({"a", "", "two\nlines", "b"});
  auto back = ParseRecallList(blob);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, (std::vector<std::string>{"a", "b"}));
}

TEST(RecallListTest, AnythingElseIsRefused) {
  EXPECT_TRUE(absl::IsDataLoss(ParseRecallList("").status()));
  EXPECT_TRUE(absl::IsDataLoss(ParseRecallList("ocicache-recall 2\na\n").status()));
  EXPECT_TRUE(absl::IsDataLoss(ParseRecallList("{\"keys\":[]}").status()));
  auto empty = ParseRecallList("ocicache-recall 1\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(RecallListTest, TheListIsBoundedInBytes) {
  std::vector<std::string> keys(5000, std::string(1000, 'k'));
  for (size_t i = 0; i < keys.size(); ++i) keys[i] += std::to_string(i);
  std::string blob = FormatRecallList(keys);
  EXPECT_LE(blob.size(), size_t{4} << 20);
  auto back = ParseRecallList(blob);
  ASSERT_TRUE(back.ok());
  EXPECT_GT(back->size(), 4000u);
  EXPECT_LT(back->size(), keys.size());
  EXPECT_EQ(back->front(), keys.front());
}

TEST(RecallTest, SavesWhatWasUsedAndTheNextOnePrefetchesIt) {
  MemStore store;
  for (const char* k : {"g:a", "g:b", "g:c"}) PutObject(store, k);
  {
    Recall r(&store, RecallOptions{});
    r.Begin("g");  // no list yet
    EXPECT_EQ(WaitDone(r, "g").listed, 0);
    r.Note("g", "g:b");
    r.Note("g", "g:a");
    r.Note("g", "g:b");  // once
    r.Stop();
    ASSERT_TRUE(r.Save().ok());
  }
  auto list = store.Lookup(RecallKey("g"), {});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->config, R"({"recall":"ocicache.recall.v1","group":"g","keys":2})");

  RecallOptions one_at_a_time;
  one_at_a_time.parallel = 1;
  Recall next(&store, one_at_a_time);
  size_t before = store.Lookups().size();
  next.Begin("g");
  Recall::GroupStats g = WaitDone(next, "g");
  EXPECT_EQ(g.listed, 2);
  EXPECT_EQ(g.prefetched, 2);
  EXPECT_EQ(g.failed, 0);
  std::vector<std::string> all = store.Lookups();
  std::vector<std::string> looked(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  // The list first, then its keys in their order of first use.
  EXPECT_EQ(looked, (std::vector<std::string>{RecallKey("g"), "g:b", "g:a"}));
  // A second Begin does nothing.
  next.Begin("g");
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(store.Lookups().size(), before + 3);
  // The same keys used: nothing to save.
  next.Note("g", "g:a");
  next.Note("g", "g:b");
  int puts = store.Puts();
  ASSERT_TRUE(next.Save().ok());
  EXPECT_EQ(store.Puts(), puts);
}

TEST(RecallTest, SmallEntriesTravelInAPackStraightIntoTheLocalTier) {
  MemStore store, local_a, local_b;
  Entry small;
  small.key = "g:small";
  small.config = R"({"data":"aGk="})";
  small.created = absl::FromUnixSeconds(1700000000);
  ASSERT_TRUE(store.Put(small).ok());
  ASSERT_TRUE(local_a.Put(small).ok());
  Entry big;  // names a blob: not packed
  big.key = "g:big";
  std::string content = "content";
  oci::StringSource src(content);
  auto d = store.WriteBlob(oci::Digest::Of(content), 7, src);
  ASSERT_TRUE(d.ok());
  big.blobs.push_back(*d);
  ASSERT_TRUE(store.Put(big).ok());
  ASSERT_TRUE(local_a.Put(big).ok());
  Entry other = small;  // another group's entry in the local tier: never packed
  other.key = "h:x";
  ASSERT_TRUE(local_a.Put(other).ok());
  {
    RecallOptions o;
    o.local = &local_a;
    Recall r(&store, o);
    r.Note("g", "g:small");
    r.Note("g", "g:big");
    r.Note("g", "g:gone");  // not in the local tier: listed, not packed
    r.Stop();
    ASSERT_TRUE(r.Save().ok());
  }
  auto list = store.Lookup(RecallKey("g"), {});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->blobs.size(), 2u);
  EXPECT_EQ(list->config, R"({"recall":"ocicache.recall.v1","group":"g","keys":3,"packed":1})");

  RecallOptions o;
  o.local = &local_b;
  o.parallel = 1;
  Recall next(&store, o);
  size_t before = store.Lookups().size();
  next.Begin("g");
  Recall::GroupStats g = WaitDone(next, "g");
  EXPECT_EQ(g.listed, 3);
  EXPECT_EQ(g.packed, 1);
  EXPECT_EQ(g.prefetched, 1);  // g:big
  EXPECT_EQ(g.failed, 1);      // g:gone
  std::vector<std::string> all = store.Lookups();
  std::vector<std::string> looked(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  EXPECT_EQ(looked, (std::vector<std::string>{RecallKey("g"), "g:big", "g:gone"}));
  auto got = local_b.Lookup("g:small", {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->config, small.config);
  EXPECT_EQ(got->created, small.created);
  EXPECT_FALSE(local_b.Lookup("h:x", {}).ok());
  // The same keys used again: nothing to save, unless one was written here
  // (the pack would hold its older version).
  for (const char* k : {"g:small", "g:big", "g:gone"}) next.Note("g", k);
  int puts = store.Puts();
  ASSERT_TRUE(next.Save().ok());
  EXPECT_EQ(store.Puts(), puts);
  next.Note("g", "g:small", /*written=*/true);
  ASSERT_TRUE(next.Save().ok());
  EXPECT_EQ(store.Puts(), puts + 1);
}

TEST(RecallTest, ABrokenPackFallsBackToLookups) {
  MemStore store, local;
  PutObject(store, "g:a");
  std::string list_blob = FormatRecallList({"g:a"});
  std::string pack_blob = "ocicache-recall-pack 1\n99999\n{}";
  Entry list;
  list.key = RecallKey("g");
  for (const std::string* b : {&list_blob, &pack_blob}) {
    oci::StringSource src(*b);
    auto d = store.WriteBlob(oci::Digest::Of(*b), static_cast<int64_t>(b->size()), src);
    ASSERT_TRUE(d.ok());
    list.blobs.push_back(*d);
  }
  ASSERT_TRUE(store.Put(list).ok());
  RecallOptions o;
  o.local = &local;
  Recall r(&store, o);
  r.Begin("g");
  Recall::GroupStats g = WaitDone(r, "g");
  EXPECT_EQ(g.packed, 0);
  EXPECT_EQ(g.prefetched, 1);
}

TEST(RecallTest, AGroupStartedAfterTheOthersEndedStillPrefetches) {
  MemStore store;
  PutObject(store, "a:1");
  PutObject(store, "b:1");
  {
    Recall r(&store, RecallOptions{});
    r.Note("a", "a:1");
    r.Note("b", "b:1");
    ASSERT_TRUE(r.Save().ok());
  }
  Recall r(&store, RecallOptions{});
  r.Begin("a");
  EXPECT_EQ(WaitDone(r, "a").prefetched, 1);
  r.Begin("a");  // every prefetch has ended: the idle pool goes
  r.Begin("b");  // and a new one serves the next group
  EXPECT_EQ(WaitDone(r, "b").prefetched, 1);
}

// With an index, the groups the last process used are prefetched when the
// next one starts (Preload), before any request; groups outside the index's
// prefix are never read; an unchanged index is not written again.
TEST(RecallTest, TheIndexStartsTheLastProcessesGroupsBeforeAnyRequest) {
  MemStore store;
  for (const char* k : {"http:a:1", "http:a:2", "http:b:1", "other:x"}) PutObject(store, k);
  RecallOptions o;
  o.index = "http";
  {
    Recall r(&store, o);
    r.Preload();  // no index yet: nothing starts
    r.Begin("http:a");
    r.Begin("http:b");
    WaitDone(r, "http:a");
    WaitDone(r, "http:b");
    r.Note("http:a", "http:a:2");
    r.Note("http:a", "http:a:1");
    r.Note("http:b", "http:b:1");
    r.Stop();
    ASSERT_TRUE(r.Save().ok());
  }
  auto index = store.Lookup(RecallKey("http"), {});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->config, R"({"recall":"ocicache.recall.v1","index":"http","groups":2})");
  // A hand-made name outside the prefix in the index is ignored.
  {
    std::string blob = FormatRecallList({"http:a", "http:b", "other"});
    oci::StringSource src(blob);
    auto d = store.WriteBlob(oci::Digest::Of(blob), static_cast<int64_t>(blob.size()), src);
    ASSERT_TRUE(d.ok());
    Entry e = *index;
    e.blobs = {*d};
    ASSERT_TRUE(store.Put(e).ok());
  }
  size_t before = store.Lookups().size();
  Recall next(&store, o);
  next.Preload();
  next.Preload();  // once
  Recall::GroupStats a = WaitDone(next, "http:a");
  Recall::GroupStats b = WaitDone(next, "http:b");
  EXPECT_EQ(a.listed, 2);
  EXPECT_EQ(a.prefetched, 2);
  EXPECT_EQ(b.prefetched, 1);
  std::vector<std::string> all = store.Lookups();
  std::vector<std::string> looked(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  EXPECT_EQ(std::count(looked.begin(), looked.end(), RecallKey("http")), 1);
  for (const std::string& k : looked) {
    EXPECT_TRUE(absl::StartsWith(k, "recall:http") || absl::StartsWith(k, "http:")) << k;
  }
  // The same groups used again (and the lists unchanged): nothing written.
  next.Note("http:a", "http:a:2");
  next.Note("http:a", "http:a:1");
  next.Note("http:b", "http:b:1");
  int puts = store.Puts();
  next.Stop();
  ASSERT_TRUE(next.Save().ok());
  // (The index read named "other" too, skipped: what it names of its own
  // prefix is what was used.)
  EXPECT_EQ(store.Puts(), puts);
  int after = store.Puts();
  Recall third(&store, o);
  third.Preload();
  WaitDone(third, "http:a");
  WaitDone(third, "http:b");
  third.Note("http:a", "http:a:2");
  third.Note("http:a", "http:a:1");
  third.Note("http:b", "http:b:1");
  third.Stop();
  ASSERT_TRUE(third.Save().ok());
  EXPECT_EQ(store.Puts(), after);
}

TEST(RecallTest, KeysOutsideTheGroupAreNotFetched) {
  MemStore store;
  std::string blob = FormatRecallList({"g:one", "other:secret", "ac:sha256:00", "g:two", "g"});
  oci::StringSource src(blob);
  auto d = store.WriteBlob(oci::Digest::Of(blob), static_cast<int64_t>(blob.size()), src);
  ASSERT_TRUE(d.ok());
  Entry list;
  list.key = RecallKey("g");
  list.blobs.push_back(*d);
  ASSERT_TRUE(store.Put(list).ok());
  PutObject(store, "g:one");
  Recall r(&store, RecallOptions{});
  r.Begin("g");
  Recall::GroupStats g = WaitDone(r, "g");
  EXPECT_EQ(g.listed, 2);
  EXPECT_EQ(g.prefetched, 1);  // g:one
  EXPECT_EQ(g.failed, 1);      // g:two is gone
  for (const std::string& k : store.Lookups()) {
    EXPECT_TRUE(k == RecallKey("g") || k == "g:one" || k == "g:two") << k;
  }
}

TEST(RecallTest, ARequestForAKeyInFlightWaitsForItsPrefetch) {
  MemStore store;
  PutObject(store, "g:slow");
  {
    Recall r(&store, RecallOptions{});
    r.Note("g", "g:slow");
    ASSERT_TRUE(r.Save().ok());
  }
  store.hold = "g:slow";
  Recall r(&store, RecallOptions{});
  r.Begin("g");
  // Once the prefetch is on it, ask: the wait ends when the prefetch does.
  ASSERT_TRUE(store.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::Notification waited;
  std::thread asker([&] {
    r.AwaitPrefetch("g:slow", absl::Now() + absl::Seconds(10));
    waited.Notify();
  });
  EXPECT_FALSE(waited.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  store.release.Notify();
  EXPECT_TRUE(waited.WaitForNotificationWithTimeout(absl::Seconds(10)));
  asker.join();
  EXPECT_EQ(WaitDone(r, "g").prefetched, 1);
  // A key nobody fetches does not wait at all.
  absl::Time t = absl::Now();
  r.AwaitPrefetch("g:other", absl::Now() + absl::Seconds(10));
  EXPECT_LT(absl::Now() - t, absl::Seconds(1));
}

TEST(RecallTest, OffMeansNothingIsFetchedOrSaved) {
  MemStore store;
  RecallOptions off;
  off.max_keys = 0;
  Recall r(&store, off);
  r.Begin("g");
  r.Note("g", "g:a");
  ASSERT_TRUE(r.Save().ok());
  EXPECT_TRUE(store.Lookups().empty());
  EXPECT_EQ(store.Puts(), 0);
  EXPECT_TRUE(r.Stats().empty());
}

TEST(RecallTest, GroupsAreBounded) {
  MemStore store;
  RecallOptions o;
  o.max_groups = 2;
  o.max_keys = 3;
  Recall r(&store, o);
  for (const char* g : {"a", "b", "c"}) r.Note(g, absl::StrCat(g, ":1"));
  for (int i = 0; i < 5; ++i) r.Note("a", absl::StrCat("a:", i));
  auto stats = r.Stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].group, "a");
  EXPECT_EQ(stats[0].noted, 3);
}

}  // namespace
}  // namespace ocicache::cache
