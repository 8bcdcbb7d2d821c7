// Listing records (docs/FORMAT.md, "Listing records") against the real
// docker-registry: a listing reads the records instead of one manifest per
// entry, falls back to manifests for entries no record names, skips rows of
// deleted entries; and a real gc by age, with several writers recording
// concurrently and one writer's records lost, deletes exactly the entries
// older than the cut.
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/admin/admin.h"
#include "pkg/cache/records.h"
#include "pkg/cache/registry_store.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/client.h"
#include "test/harness/registry.h"

namespace ocicache {
namespace {

using cache::Entry;
using cache::EntryInfo;
using cache::RegistryStore;
using harness::RegistryProcess;

std::unique_ptr<RegistryStore> Store(const RegistryProcess& reg, const std::string& repo,
                                     const std::string& writer, int shards = 0) {
  auto client = registry::Client::Create(reg.host());
  EXPECT_TRUE(client.ok()) << client.status();
  cache::RegistryStoreOptions o;
  o.shards = shards;
  o.record_writer = writer;
  o.record_flush_rows = 1 << 20;  // flushed by the test
  o.record_flush_age = absl::Hours(1);
  auto s = RegistryStore::Create(std::move(*client), repo, o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

Entry MakeEntry(RegistryStore& s, const std::string& key, absl::Time used) {
  std::string content = absl::StrCat("content of ", key);
  oci::StringSource src(content);
  auto d = s.WriteBlob(oci::Digest::Of(content), content.size(), src);
  EXPECT_TRUE(d.ok()) << d.status();
  Entry e;
  e.key = key;
  e.config = R"({"k":"v"})";
  if (d.ok()) e.blobs.push_back(*d);
  e.created = used - absl::Hours(1);
  e.last_used = used;
  return e;
}

std::map<std::string, EntryInfo> ListAll(RegistryStore& s, int64_t* requests) {
  std::map<std::string, EntryInfo> out;
  int64_t before = s.request_count();
  absl::Status st = s.List([&](const EntryInfo& i) {
    out[i.key] = i;
    return true;
  });
  EXPECT_TRUE(st.ok()) << st;
  *requests = s.request_count() - before;
  return out;
}

TEST(RecordsTest, AListingReadsRecordsNotOneManifestPerEntry) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  for (int shards : {0, 4}) {
    SCOPED_TRACE(absl::StrCat("shards ", shards));
    const std::string repo = absl::StrCat("records/list", shards);
    auto writer = Store(**reg, repo, "w1", shards);
    auto plain = Store(**reg, repo, "", shards);  // writes no records
    ASSERT_TRUE(writer && plain);
    const absl::Time now = absl::Now();
    for (int i = 0; i < 60; ++i) {
      ASSERT_TRUE(writer->Put(MakeEntry(*writer, absl::StrCat("rec/", i), now)).ok());
    }
    ASSERT_TRUE(plain->Put(MakeEntry(*plain, "unrecorded", now)).ok());
    ASSERT_TRUE(writer->FlushRecords().ok());
    ASSERT_TRUE(plain->Delete("rec/7").ok());  // its row stays in the record

    auto reader = Store(**reg, repo, "", shards);
    int64_t requests = 0;
    auto all = ListAll(*reader, &requests);
    EXPECT_EQ(all.size(), 60u);  // 59 recorded + the unrecorded one
    EXPECT_TRUE(all.count("unrecorded"));
    EXPECT_FALSE(all.count("rec/7"));
    ASSERT_TRUE(all.count("rec/3"));
    EXPECT_EQ(all["rec/3"].size, static_cast<int64_t>(std::string("content of rec/3").size() +
                                                      std::string(R"({"k":"v"})").size()));
    EXPECT_EQ(absl::ToUnixSeconds(all["rec/3"].last_used), absl::ToUnixSeconds(now));
    // Tag lists (1 or 1 + shards), the record (manifest and layer), the one
    // unrecorded manifest: far from one request per entry.
    EXPECT_LE(requests, (shards ? shards + 1 : 1) + 2 + 1 + 2) << requests;
  }
}

// A writer's parts: one is rewritten until it is full, then the next begins;
// a listing reads them all, and rows noted while a full part is pushed go to
// the next one.
TEST(RecordsTest, AWriterFillsPartsInTurn) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto client = registry::Client::Create((*reg)->host());
  ASSERT_TRUE(client.ok());
  cache::RegistryStoreOptions o;
  o.record_writer = "parts";
  o.record_flush_rows = 1 << 20;
  o.record_flush_age = absl::Hours(1);
  o.record_part_rows = 10;
  auto writer = RegistryStore::Create(std::move(*client), "records/parts", o);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const absl::Time now = absl::Now();
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE((*writer)->Put(MakeEntry(**writer, absl::StrCat("p/", i), now)).ok());
    if (i % 4 == 3) ASSERT_TRUE((*writer)->FlushRecords().ok());
  }
  ASSERT_TRUE((*writer)->FlushRecords().ok());
  auto tags = (*writer)->client().ListTags("records/parts");
  ASSERT_TRUE(tags.ok()) << tags.status();
  std::set<std::string> parts;
  for (const auto& t : *tags) {
    if (cache::records::IsRecordTag(t)) parts.insert(t);
  }
  EXPECT_EQ(parts, (std::set<std::string>{"r.parts.1", "r.parts.2", "r.parts.3"}));
  auto reader = Store(**reg, "records/parts", "");
  int64_t requests = 0;
  auto all = ListAll(*reader, &requests);
  EXPECT_EQ(all.size(), 25u);
  EXPECT_LE(requests, 1 + 2 * 3) << requests;
}

// The acceptance check of a real gc: three writers put and touch entries at
// once; one writer's records are then lost. Entries last used before the cut
// are deleted, younger ones kept (including those only the lost writer
// recorded as young: the entry's own manifest decides), and the records are
// merged into one set that lists the survivors cheaply.
TEST(RecordsTest, GcByAgeWithConcurrentWritersAndLostRecords) {
  auto reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  const std::string repo = "records/gc";
  const absl::Time now = absl::Now();
  const absl::Time old = now - absl::Hours(24 * 10), young = now - absl::Hours(2);
  const absl::Time cut = now - absl::Hours(24 * 3);
  std::vector<std::unique_ptr<RegistryStore>> writers;
  for (int w = 0; w < 3; ++w) writers.push_back(Store(**reg, repo, absl::StrCat("w", w)));
  std::set<std::string> want_kept, want_deleted;
  std::vector<std::thread> threads;
  std::vector<std::vector<std::pair<std::string, absl::Time>>> plan(3);
  for (int i = 0; i < 30; ++i) {
    const std::string key = absl::StrCat("gc/", i);
    // Writer 0 puts everything as old; writer 2 re-puts every third key as
    // young (a later use), so only its rows and the manifests say young.
    plan[0].emplace_back(key, old);
    if (i % 3 == 0) {
      plan[2].emplace_back(key, young);
      want_kept.insert(key);
    } else if (i % 3 == 1) {
      plan[1].emplace_back(absl::StrCat("gc/young-", i), young);
      want_kept.insert(absl::StrCat("gc/young-", i));
      want_deleted.insert(key);
    } else {
      want_deleted.insert(key);
    }
  }
  // Writer 0 first (the old puts), then writers 1 and 2 at once.
  for (const auto& [key, t] : plan[0]) ASSERT_TRUE(writers[0]->Put(MakeEntry(*writers[0], key, t)).ok());
  for (int w = 1; w < 3; ++w) {
    threads.emplace_back([&, w] {
      for (const auto& [key, t] : plan[w]) {
        EXPECT_TRUE(writers[w]->Put(MakeEntry(*writers[w], key, t)).ok()) << key;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& w : writers) ASSERT_TRUE(w->FlushRecords().ok());
  // Writer 2's records are lost.
  auto client = registry::Client::Create((*reg)->host());
  ASSERT_TRUE(client.ok());
  auto lost = (*client)->HeadManifest(repo, cache::records::RecordTag("w2", 1));
  ASSERT_TRUE(lost.ok()) << lost.status();
  ASSERT_TRUE((*client)->DeleteManifest(repo, lost->digest).ok());

  auto gc_store = Store(**reg, repo, "");
  admin::LocalAdmin admin(*gc_store, nullptr, gc_store.get());
  admin::GcRequest req;
  req.older_than = now - cut;
  auto r = admin.CollectGarbage(req, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->deleted, static_cast<int64_t>(want_deleted.size()));
  EXPECT_EQ(r->kept_in_use, static_cast<int64_t>(plan[2].size()));
  EXPECT_TRUE(r->records_error.empty()) << r->records_error;

  auto reader = Store(**reg, repo, "");
  int64_t requests = 0;
  auto all = ListAll(*reader, &requests);
  std::set<std::string> left;
  for (const auto& [k, i] : all) left.insert(k);
  EXPECT_EQ(left, want_kept);
  for (const auto& key : want_deleted) {
    EXPECT_TRUE(absl::IsNotFound(reader->Lookup(key, {}).status())) << key;
  }
  // One merged record now: tag list, its manifest and layer.
  EXPECT_LE(requests, 4) << requests;
}

}  // namespace
}  // namespace ocicache
