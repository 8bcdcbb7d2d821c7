// Issue 11, defects 4 and 9, on the real registry.
//
// Defect 4: entries put while the registry was down stayed in the local tier
// for ever; other machines never saw them. Now a tiered store records them in
// a durable backlog (DIR/backlog) and a server pushes them once the registry is
// back, also after being killed in between; metrics and `ocicache status` show
// the backlog.
//
// Defect 9: after concurrent puts of one key the local tier and the registry
// could keep different entries for good. The rule (docs/FORMAT.md, "Concurrent
// puts"): the registry keeps the last Put that reached it, and a local tier
// converges to the registry's entry when a lookup reaches the registry.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/cache/backlog.h"
#include "pkg/cache/breaker.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/client/grpc_store.h"
#include "pkg/layout/layout_store.h"
#include "pkg/stores/stores.h"
#include "test/harness/http_client.h"
#include "test/harness/registry.h"
#include "test/harness/spawn.h"
#include "test/integration/daemon_process.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

using harness::RegistryProcess;
using testing::DaemonProcess;

class BacklogTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto r = RegistryProcess::Start({});
    ASSERT_TRUE(r.ok()) << r.status();
    registry_ = r->release();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(registry_, nullptr);
    ASSERT_EQ(registry_->pid() != 0 ? absl::OkStatus() : registry_->Restart(), absl::OkStatus());
  }

  static std::string NewRepo() {
    static std::atomic<int> n{0};
    return absl::StrCat(registry_->host(), "/backlog/r", n++, "-", getpid());
  }

  // The registry alone, as another machine sees it.
  static std::unique_ptr<cache::Store> Registry(const std::string& repo) {
    stores::StoreConfig c;
    c.repo = repo;
    auto set = stores::OpenStores(c);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? std::move(set->store) : nullptr;
  }

  // A tiered store over a new directory and `repo`, with its own breaker
  // (which the test may open as a failing health probe would).
  struct Tiered {
    std::shared_ptr<cache::Breaker> breaker;
    std::shared_ptr<cache::Backlog> backlog;
    std::unique_ptr<cache::TieredStore> store;
  };
  static Tiered OpenTiered(const std::string& repo, absl::Duration settle_after) {
    Tiered t;
    std::string dir = testing::TempDir("backlog");
    auto local = layout::LayoutStore::Open(dir);
    EXPECT_TRUE(local.ok()) << local.status();
    auto remote = Registry(repo);
    auto backlog = cache::Backlog::Open(dir + "/backlog");
    EXPECT_TRUE(backlog.ok()) << backlog.status();
    if (!local.ok() || remote == nullptr || !backlog.ok()) return t;
    t.breaker = std::make_shared<cache::Breaker>("registry");
    t.backlog = *backlog;
    cache::TieredStoreOptions o;
    o.breaker = t.breaker;
    o.backlog = t.backlog;
    o.settle_after = settle_after;
    o.warn = [](absl::string_view) {};
    t.store = std::make_unique<cache::TieredStore>(*std::move(local), std::move(remote), o);
    return t;
  }

  static cache::Entry Entry(const std::string& key, const std::string& config) {
    cache::Entry e;
    e.key = key;
    e.config = config;
    return e;
  }

  static std::string ConfigOf(cache::Store& s, const std::string& key) {
    auto e = s.Lookup(key, cache::LookupOptions());
    return e.ok() ? e->config : absl::StrCat("<", e.status().ToString(), ">");
  }

  static RegistryProcess* registry_;
};

RegistryProcess* BacklogTest::registry_ = nullptr;

int64_t MetricValue(const std::string& text, const std::string& name) {
  size_t p = text.find("\n" + name + " ");
  if (p == std::string::npos) return -1;
  return std::stoll(text.substr(p + name.size() + 2));
}

// A server that took puts during an outage pushes them once the registry is
// back, even after being killed in between (the record is on disk).
TEST_F(BacklogTest, ServerPushesPutsMadeDuringAnOutageOnceTheRegistryIsBack) {
  const std::string repo = NewRepo();
  const std::string dir = testing::TempDir("backlog-daemon");
  std::vector<std::string> args = {"--repo=" + repo, "--dir=" + dir, "--health_interval=200ms",
                                   "--metrics_listen=127.0.0.1:0", "--access_log=false"};
  auto d = DaemonProcess::Start(args);
  ASSERT_TRUE(d.ok()) << d.status();
  client::GrpcStore server(client::Dial((*d)->address()), (*d)->address());

  ASSERT_EQ(registry_->Stop(), absl::OkStatus());
  const int kPuts = 30;
  for (int i = 0; i < kPuts; ++i) {
    std::string key = absl::StrCat("outage/", i);
    std::string blob = absl::StrCat("blob of ", key);
    oci::StringSource src(blob);
    auto desc = server.WriteBlob(oci::Digest::Of(blob), blob.size(), src);
    ASSERT_TRUE(desc.ok()) << key << ": " << desc.status();
    cache::Entry e = Entry(key, absl::StrCat(R"({"i":)", i, "}"));
    e.blobs.push_back(*desc);
    ASSERT_EQ(server.Put(e), absl::OkStatus()) << key;  // taken into the directory
  }
  // The backlog shows in the metrics.
  std::string murl;
  for (int i = 0; i < 100 && murl.empty(); ++i) {
    std::string err = (*d)->Stderr();
    size_t p = err.find("metrics on http://");
    if (p != std::string::npos) murl = err.substr(p + 11, err.find('\n', p) - p - 11);
    if (murl.empty()) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_FALSE(murl.empty()) << (*d)->Stderr();
  auto m = harness::HttpDo({.method = "GET", .url = murl});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(MetricValue(m->body, "ocicached_registry_backlog_entries"), kPuts) << m->body;

  // Killed with the backlog on disk; the registry comes back; a new server
  // over the same directory pushes everything without being asked.
  (*d)->Kill();
  ASSERT_EQ(registry_->Restart(), absl::OkStatus());
  auto d2 = DaemonProcess::Start(args);
  ASSERT_TRUE(d2.ok()) << d2.status();
  auto reg = Registry(repo);
  ASSERT_NE(reg, nullptr);
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  int found = 0;
  while (absl::Now() < deadline) {
    found = 0;
    for (int i = 0; i < kPuts; ++i) found += reg->Lookup(absl::StrCat("outage/", i), {}).ok();
    if (found == kPuts) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(found, kPuts) << (*d2)->Stderr();
  for (int i = 0; i < kPuts; ++i) {
    std::string key = absl::StrCat("outage/", i);
    auto e = reg->Lookup(key, {});
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->config, absl::StrCat(R"({"i":)", i, "}"));
    ASSERT_EQ(e->blobs.size(), 1u);
    std::string got;
    oci::StringSink sink(&got);
    ASSERT_EQ(reg->ReadBlob(e->blobs[0].digest, 0, sink), absl::OkStatus());
    EXPECT_EQ(got, absl::StrCat("blob of ", key));
  }
  // And the backlog is empty again (DIR/backlog holds no record).
  auto backlog = cache::Backlog::Open(dir + "/backlog");
  ASSERT_TRUE(backlog.ok());
  for (int i = 0; i < 50 && (*backlog)->Keys(0)->size() > 0; ++i) absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ((*backlog)->Keys(0)->size(), 0u);
}

// Two machines put one key concurrently: the registry keeps the last Put; the
// other machine's local tier takes the registry's entry on its next lookup
// (after settle_after), instead of answering its own for ever.
TEST_F(BacklogTest, LocalTierConvergesToTheRegistrysEntry) {
  const std::string repo = NewRepo();
  Tiered a = OpenTiered(repo, absl::ZeroDuration());
  Tiered b = OpenTiered(repo, absl::ZeroDuration());
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  ASSERT_EQ(a.store->Put(Entry("k", R"({"by":"a"})")), absl::OkStatus());
  ASSERT_EQ(b.store->Put(Entry("k", R"({"by":"b"})")), absl::OkStatus());  // the later one
  auto reg = Registry(repo);
  EXPECT_EQ(ConfigOf(*reg, "k"), R"({"by":"b"})");
  EXPECT_EQ(ConfigOf(a.store->local(), "k"), R"({"by":"a"})");  // before: a kept this for good
  EXPECT_EQ(ConfigOf(*a.store, "k"), R"({"by":"b"})");
  EXPECT_EQ(ConfigOf(a.store->local(), "k"), R"({"by":"b"})");
  EXPECT_EQ(ConfigOf(*b.store, "k"), R"({"by":"b"})");
}

// A drain pushes what the registry lacks, and takes the registry's entry when
// it is newer than the one waiting (put elsewhere while we were cut off).
TEST_F(BacklogTest, DrainPushesWhatTheRegistryLacksAndAdoptsNewerEntries) {
  const std::string repo = NewRepo();
  Tiered a = OpenTiered(repo, absl::Hours(1));
  Tiered b = OpenTiered(repo, absl::Hours(1));
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  a.breaker->NoteProbe(absl::UnavailableError("probe failed"));  // a is cut off
  ASSERT_EQ(a.store->Put(Entry("only-a", R"({"by":"a"})")), absl::OkStatus());
  ASSERT_EQ(a.store->Put(Entry("both", R"({"by":"a"})")), absl::OkStatus());
  EXPECT_EQ(a.store->backlog_size(), 2);
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(b.store->Put(Entry("both", R"({"by":"b"})")), absl::OkStatus());
  // Nothing moves while the registry is out.
  cache::DrainStats none = a.store->DrainBacklog(absl::Seconds(5));
  EXPECT_EQ(none.pushed + none.adopted, 0);
  EXPECT_EQ(none.left, 2);

  a.breaker->NoteProbe(absl::OkStatus());
  cache::DrainStats st = a.store->DrainBacklog(absl::Seconds(30));
  EXPECT_EQ(st.pushed, 1);
  EXPECT_EQ(st.adopted, 1);
  EXPECT_EQ(st.left, 0);
  auto reg = Registry(repo);
  EXPECT_EQ(ConfigOf(*reg, "only-a"), R"({"by":"a"})");
  EXPECT_EQ(ConfigOf(*reg, "both"), R"({"by":"b"})");
  EXPECT_EQ(ConfigOf(a.store->local(), "both"), R"({"by":"b"})");
  EXPECT_EQ(a.backlog->Keys(0)->size(), 0u);
}

// A recorded entry that is gone from the local tier (evicted, deleted) is
// dropped from the backlog: there is nothing to push.
TEST_F(BacklogTest, DrainDropsEntriesNoLongerInTheLocalTier) {
  const std::string repo = NewRepo();
  Tiered a = OpenTiered(repo, absl::Hours(1));
  ASSERT_NE(a.store, nullptr);
  a.breaker->NoteProbe(absl::UnavailableError("probe failed"));
  ASSERT_EQ(a.store->Put(Entry("gone", "{}")), absl::OkStatus());
  ASSERT_EQ(a.store->local().Delete("gone"), absl::OkStatus());
  a.breaker->NoteProbe(absl::OkStatus());
  cache::DrainStats st = a.store->DrainBacklog(absl::Seconds(30));
  EXPECT_EQ(st.dropped, 1);
  EXPECT_EQ(st.left, 0);
  EXPECT_FALSE(Registry(repo)->Lookup("gone", {}).ok());
}

// Behind a proxy that spreads calls, a blob may be written through one server
// and its entry put through another. A blob written during an outage is
// recorded too and pushed when the registry is back; until then a Put on the
// other server answers UNAVAILABLE if that server saw the outage recently (the
// blob may be on its way), FAILED_PRECONDITION otherwise.
TEST_F(BacklogTest, BlobsWrittenDuringAnOutageReachTheRegistryForEntriesPutElsewhere) {
  const std::string repo = NewRepo();
  Tiered a = OpenTiered(repo, absl::Seconds(30));
  Tiered b = OpenTiered(repo, absl::Seconds(30));
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  a.breaker->NoteProbe(absl::UnavailableError("probe failed"));
  b.breaker->NoteProbe(absl::UnavailableError("probe failed"));
  const std::string blob = "written through a during the outage";
  oci::StringSource src(blob);
  auto desc = a.store->WriteBlob(oci::Digest::Of(blob), blob.size(), src);
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_EQ(a.backlog->blob_count(), 1);
  cache::Entry e = Entry("put-through-b", "{}");
  e.blobs.push_back(*desc);
  // b cannot tell: the registry is out.
  EXPECT_EQ(b.store->Put(e).code(), absl::StatusCode::kUnavailable);
  // The registry is back for b, but a has not pushed yet: b saw the outage
  // moments ago, so still UNAVAILABLE (retry), not FAILED_PRECONDITION.
  b.breaker->NoteProbe(absl::OkStatus());
  absl::Status st = b.store->Put(e);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("slow to answer moments ago"), std::string::npos) << st;
  // a pushes its blob; b's Put now succeeds, filling b from the registry.
  a.breaker->NoteProbe(absl::OkStatus());
  cache::DrainStats drained = a.store->DrainBacklog(absl::Seconds(30));
  EXPECT_EQ(drained.pushed, 1);
  EXPECT_EQ(a.backlog->blob_count(), 0);
  ASSERT_EQ(b.store->Put(e), absl::OkStatus());
  EXPECT_EQ(ConfigOf(*Registry(repo), "put-through-b"), "{}");

  // A server whose probe fell across the end of a hang (answered, but after
  // seconds) cannot tell either: another may have seen the hang as an outage.
  Tiered d = OpenTiered(repo, absl::Seconds(30));
  const std::string blob2 = "written through a during a hang";
  a.breaker->NoteProbe(absl::UnavailableError("probe failed"));
  oci::StringSource src2(blob2);
  auto desc2 = a.store->WriteBlob(oci::Digest::Of(blob2), blob2.size(), src2);
  ASSERT_TRUE(desc2.ok()) << desc2.status();
  d.breaker->NoteProbe(absl::OkStatus(), absl::Seconds(9));
  cache::Entry e2 = Entry("put-through-d", "{}");
  e2.blobs.push_back(*desc2);
  st = d.store->Put(e2);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;

  // A server that saw no outage says FAILED_PRECONDITION for a blob nobody has.
  Tiered c = OpenTiered(repo, absl::Seconds(30));
  cache::Entry nobody = Entry("nobody", "{}");
  oci::Descriptor missing;
  missing.media_type = "application/octet-stream";
  missing.digest = oci::Digest::Of("nobody's");
  missing.size = 8;
  nobody.blobs.push_back(missing);
  EXPECT_EQ(c.store->Put(nobody).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ocicache
