// The Store conformance suite against real docker-registry processes (no auth,
// htpasswd, token, sharded) and the tiered store, plus the behaviour only a real
// registry shows: one request per lookup, cross-repository mount and copy, and
// degrading to the local tier when the registry goes away.
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/admin/admin.h"
#include "pkg/base/call_scope.h"
#include "pkg/cache/format.h"
#include "pkg/cache/forwarding_store.h"
#include "pkg/cache/place.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store_testsuite.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/layout/layout_store.h"
#include "pkg/registry/client.h"
#include "test/harness/link_proxy.h"
#include "test/harness/registry.h"

namespace ocicache {
namespace {

using harness::RegistryProcess;

// Registries shared by all tests of this binary, started on first use from the
// main thread (see registry.h on PR_SET_PDEATHSIG).
RegistryProcess* Registry(RegistryProcess::Options::Auth auth) {
  static std::unique_ptr<RegistryProcess> regs[3];
  auto& r = regs[auth];
  if (!r) {
    RegistryProcess::Options o;
    o.auth = auth;
    auto started = RegistryProcess::Start(o);
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    r = *std::move(started);
  }
  return r.get();
}

std::string UniqueRepo(const std::string& prefix) {
  static int n = 0;
  return absl::StrCat(prefix, "/r", ++n, "-", getpid());
}

std::string TempDir() {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                  "/layout-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

absl::StatusOr<std::unique_ptr<cache::RegistryStore>> MakeRegistryStore(
    RegistryProcess::Options::Auth auth, int shards = 0, const std::string& repo = "",
    const std::string& via = "") {
  RegistryProcess* reg = Registry(auth);
  if (reg == nullptr) return absl::UnavailableError("registry did not start");
  registry::ClientOptions opts;
  if (auth != RegistryProcess::Options::kNone) {
    opts.credentials.username = reg->options().user;
    opts.credentials.password = reg->options().password;
  }
  opts.retry.max_attempts = 2;
  // `via`: another HOST:PORT reaching the same registry (a link model).
  auto client = registry::Client::Create(via.empty() ? reg->host() : via, opts);
  if (!client.ok()) return client.status();
  cache::RegistryStoreOptions ropts;
  ropts.shards = shards;
  ropts.pool = std::make_shared<cache::ClientPool>(opts);
  return cache::RegistryStore::Create(std::shared_ptr<registry::Client>(std::move(*client)),
                                      repo.empty() ? UniqueRepo("conformance") : repo, ropts);
}

template <typename T>
absl::StatusOr<std::unique_ptr<cache::Store>> Up(absl::StatusOr<std::unique_ptr<T>> s) {
  if (!s.ok()) return s.status();
  return std::unique_ptr<cache::Store>(std::move(*s));
}

absl::StatusOr<std::unique_ptr<cache::TieredStore>> MakeTiered(
    std::unique_ptr<cache::RegistryStore> remote, std::string dir = "",
    cache::TieredStoreOptions topts = {}) {
  auto local = layout::LayoutStore::Open(dir.empty() ? TempDir() : dir);
  if (!local.ok()) return local.status();
  return std::make_unique<cache::TieredStore>(std::move(*local), std::move(remote), topts);
}

using cache::StoreConformanceTest;

INSTANTIATE_TEST_SUITE_P(
    Registries, StoreConformanceTest,
    ::testing::Values(
        cache::StoreFactory{"registry", [] { return Up(MakeRegistryStore(RegistryProcess::Options::kNone)); }, true},
        cache::StoreFactory{"registry_sharded", [] { return Up(MakeRegistryStore(RegistryProcess::Options::kNone, 4)); }, true},
        cache::StoreFactory{"registry_htpasswd", [] { return Up(MakeRegistryStore(RegistryProcess::Options::kHtpasswd)); }, true},
        cache::StoreFactory{"registry_token", [] { return Up(MakeRegistryStore(RegistryProcess::Options::kToken)); }, true},
        cache::StoreFactory{"tiered", [] {
          auto r = MakeRegistryStore(RegistryProcess::Options::kNone);
          if (!r.ok()) return absl::StatusOr<std::unique_ptr<cache::Store>>(r.status());
          return Up(MakeTiered(*std::move(r)));
        }, true},
        cache::StoreFactory{"tiered_background_fill", [] {
          auto r = MakeRegistryStore(RegistryProcess::Options::kNone);
          if (!r.ok()) return absl::StatusOr<std::unique_ptr<cache::Store>>(r.status());
          cache::TieredStoreOptions o;
          o.fill_in_background = true;
          return Up(MakeTiered(*std::move(r), "", o));
        }, true}),
    [](const ::testing::TestParamInfo<cache::StoreFactory>& i) { return i.param.name; });

cache::Entry EntryWithBlob(cache::Store& s, const std::string& key, const std::string& content) {
  oci::StringSource src(content);
  auto d = s.WriteBlob(oci::Digest(), -1, src);
  EXPECT_TRUE(d.ok()) << d.status();
  cache::Entry e;
  e.key = key;
  e.config = R"({"kind":"test"})";
  if (d.ok()) e.blobs.push_back(*d);
  return e;
}

TEST(RegistryStoreTest, LookupIsOneRequest) {
  auto store = MakeRegistryStore(RegistryProcess::Options::kNone);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Put(EntryWithBlob(**store, "one/request", "payload")).ok());
  int64_t before = (*store)->client().request_count();
  ASSERT_TRUE((*store)->Lookup("one/request", {}).ok());
  EXPECT_EQ((*store)->client().request_count() - before, 1);
  before = (*store)->client().request_count();
  EXPECT_TRUE(absl::IsNotFound((*store)->Lookup("one/absent", {}).status()));
  EXPECT_EQ((*store)->client().request_count() - before, 1);
}

// Re-sharding reads each moved entry's manifest once: from the old layout it
// lists, then one manifest GET and one DELETE per moved entry (the blobs are in
// the base repository already). Every entry reads back under the new count.
TEST(ReshardTest, OneManifestReadPerMovedEntry) {
  const std::string repo = UniqueRepo("reshard");
  {
    auto writer = MakeRegistryStore(RegistryProcess::Options::kNone, 0, repo);
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (int i = 0; i < 8; ++i) {
      const std::string key = absl::StrCat("move/", i);
      ASSERT_TRUE((*writer)->Put(EntryWithBlob(**writer, key, "payload " + key)).ok());
    }
  }
  auto from = MakeRegistryStore(RegistryProcess::Options::kNone, 0, repo);
  auto to = MakeRegistryStore(RegistryProcess::Options::kNone, 4, repo);
  ASSERT_TRUE(from.ok() && to.ok());
  int64_t before = (*from)->request_count();
  int64_t listed = 0;
  ASSERT_TRUE((*from)->List([&](const cache::EntryInfo&) { return ++listed, true; }).ok());
  ASSERT_EQ(listed, 8);
  const int64_t list_cost = (*from)->request_count() - before;
  before = (*from)->request_count();
  auto r = admin::Reshard(**from, **to, /*dry_run=*/false, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->moved, 8);  // no shard of 4 is the base repository
  EXPECT_EQ((*from)->request_count() - before, list_cost + 2 * r->moved);
  cache::LookupOptions opts;
  opts.touch = false;
  for (int i = 0; i < 8; ++i) {
    const std::string key = absl::StrCat("move/", i);
    EXPECT_TRUE(absl::IsNotFound((*from)->Lookup(key, opts).status())) << key;
    auto e = (*to)->Lookup(key, opts);
    ASSERT_TRUE(e.ok()) << key << ": " << e.status();
    ASSERT_EQ(e->blobs.size(), 1u);
    std::string got;
    oci::StringSink sink(&got);
    ASSERT_TRUE((*to)->ReadBlob(e->blobs[0].digest, 0, sink).ok());
    EXPECT_EQ(got, "payload " + key);
  }
}

// DeleteManifest deletes the manifest it names: a key put again since keeps
// its newer manifest and its tag.
TEST(RegistryStoreTest, DeleteManifestLeavesANewerManifest) {
  auto store = MakeRegistryStore(RegistryProcess::Options::kNone);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Put(EntryWithBlob(**store, "again/k", "first")).ok());
  cache::LookupOptions opts;
  opts.touch = false;
  oci::Digest first;
  ASSERT_TRUE((*store)->LookupManifest("again/k", opts, &first).ok());
  ASSERT_TRUE((*store)->Put(EntryWithBlob(**store, "again/k", "second")).ok());
  EXPECT_TRUE((*store)->DeleteManifest("again/k", first).ok());
  auto e = (*store)->Lookup("again/k", opts);
  ASSERT_TRUE(e.ok()) << e.status();
  std::string got;
  oci::StringSink sink(&got);
  ASSERT_TRUE((*store)->ReadBlob(e->blobs.at(0).digest, 0, sink).ok());
  EXPECT_EQ(got, "second");
  oci::Digest second;
  ASSERT_TRUE((*store)->LookupManifest("again/k", opts, &second).ok());
  EXPECT_NE(first, second);
  EXPECT_TRUE((*store)->DeleteManifest("again/k", second).ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->Lookup("again/k", opts).status()));
}

// PutFresh after WriteBlob: no HEAD of the blob, small blobs uploaded without a
// HEAD first: config + descriptor (POST and PUT each) + the manifest PUT. The entry
// reads back like one stored with Put, also from a sharded store (mount kept).
TEST(RegistryStoreTest, PutFreshSkipsChecks) {
  for (int shards : {0, 4}) {
    auto store = MakeRegistryStore(RegistryProcess::Options::kNone, shards);
    ASSERT_TRUE(store.ok()) << store.status();
    cache::Entry e = EntryWithBlob(**store, "fresh/one", "fresh payload");
    int64_t before = (*store)->client().request_count();
    ASSERT_TRUE((*store)->PutFresh(e).ok());
    const int64_t mount = shards > 0 ? 1 : 0;
    EXPECT_EQ((*store)->client().request_count() - before, 5 + mount) << shards;
    auto got = (*store)->Lookup("fresh/one", {});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->config, e.config);
    ASSERT_EQ(got->blobs.size(), 1u);
    EXPECT_EQ(got->blobs[0].digest, e.blobs[0].digest);
    // Put checks the blob (HEAD) and asks before uploading small blobs; those this
    // store has seen already are skipped: HEAD blob + manifest PUT.
    before = (*store)->client().request_count();
    ASSERT_TRUE((*store)->Put(e).ok());
    EXPECT_EQ((*store)->client().request_count() - before, 2 + mount) << shards;
    // Another entry without a descriptor of its own shares the `{}` descriptor
    // blob, which this store has uploaded: config POST and PUT, manifest PUT.
    cache::Entry e2 = EntryWithBlob(**store, "fresh/two", "another payload");
    e2.config = R"({"kind":"test","n":2})";  // a config of its own, as Go's are
    before = (*store)->client().request_count();
    ASSERT_TRUE((*store)->PutFresh(e2).ok());
    EXPECT_EQ((*store)->client().request_count() - before, 3 + mount) << shards;
    ASSERT_TRUE((*store)->Lookup("fresh/two", {}).ok());
  }
}

// A key snapshot is the repository's tag lists (one request per repository): a
// repository the registry has never seen holds nothing; afterwards the snapshot
// holds exactly the keys put before it, in the plain and the sharded layout, and
// a repository holding more entries than asked for says so.
TEST(RegistryStoreTest, AKeySnapshotHoldsTheKeysPutBeforeIt) {
  for (int shards : {0, 4}) {
    auto store = MakeRegistryStore(RegistryProcess::Options::kNone, shards);
    ASSERT_TRUE(store.ok()) << store.status();
    int64_t before = (*store)->client().request_count();
    auto empty = (*store)->SnapshotKeys(100);
    ASSERT_TRUE(empty.ok()) << empty.status();
    EXPECT_EQ((*store)->client().request_count() - before, std::max(1, shards));
    EXPECT_EQ((*empty)->size(), 0u);
    EXPECT_FALSE((*empty)->MayHold("snap/a"));

    for (const char* k : {"snap/a", "snap/b", "snap/c"}) {
      ASSERT_TRUE((*store)->Put(EntryWithBlob(**store, k, k)).ok()) << k;
    }
    auto three = (*store)->SnapshotKeys(100);
    ASSERT_TRUE(three.ok()) << three.status();
    EXPECT_EQ((*three)->size(), 3u) << shards;
    for (const char* k : {"snap/a", "snap/b", "snap/c"}) EXPECT_TRUE((*three)->MayHold(k)) << k;
    EXPECT_FALSE((*three)->MayHold("snap/d"));
    EXPECT_FALSE((*empty)->MayHold("snap/a"));  // a snapshot does not change
    EXPECT_TRUE(absl::IsResourceExhausted((*store)->SnapshotKeys(2).status()));
  }
}

TEST(RegistryStoreTest, MountFromRecordedLocationSameRegistry) {
  auto a = MakeRegistryStore(RegistryProcess::Options::kNone);
  auto b = MakeRegistryStore(RegistryProcess::Options::kNone);
  ASSERT_TRUE(a.ok() && b.ok());
  std::string data(200000, 'm');
  oci::StringSource src(data);
  auto d = (*a)->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  cache::Location loc = (*a)->LocationOf(*d);
  EXPECT_TRUE(absl::IsNotFound((*b)->StatBlob(d->digest).status()));
  int64_t before = (*b)->client().request_count();
  ASSERT_TRUE((*b)->MountBlob(loc).ok());
  // HEAD (absent) + mount POST: no download, no upload.
  EXPECT_LE((*b)->client().request_count() - before, 2);
  auto size = (*b)->StatBlob(d->digest);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 200000);
}

TEST(RegistryStoreTest, CopyFromRecordedLocationOtherRegistry) {
  auto a = MakeRegistryStore(RegistryProcess::Options::kNone);
  auto b = MakeRegistryStore(RegistryProcess::Options::kHtpasswd);
  ASSERT_TRUE(a.ok() && b.ok());
  std::string data(300000, 'c');
  oci::StringSource src(data);
  auto d = (*a)->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE((*b)->MountBlob((*a)->LocationOf(*d)).ok());
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE((*b)->ReadBlob(d->digest, 0, sink).ok());
  EXPECT_EQ(back, data);
}

TEST(RegistryStoreTest, LocationsAreKeptInTheEntry) {
  auto a = MakeRegistryStore(RegistryProcess::Options::kNone);
  ASSERT_TRUE(a.ok());
  cache::Entry e = EntryWithBlob(**a, "with/location", "content");
  e.locations.push_back((*a)->LocationOf(e.blobs[0]));
  ASSERT_TRUE((*a)->Put(e).ok());
  auto got = (*a)->Lookup("with/location", {});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->locations.size(), 1u);
  EXPECT_EQ(got->locations[0].url, e.locations[0].url);
}

// ko pushed a layer to app/one; the cache records that location. Placing it in
// app/two on the same registry mounts it (no bytes move); on another registry it
// is copied. Each new place is recorded in the entry.
TEST(PlaceBlobTest, MountsOrCopiesAndRecords) {
  auto cache_store = MakeRegistryStore(RegistryProcess::Options::kNone);
  auto app_one = MakeRegistryStore(RegistryProcess::Options::kNone, 0, UniqueRepo("app"));
  auto app_two = MakeRegistryStore(RegistryProcess::Options::kNone, 0, UniqueRepo("app"));
  auto elsewhere = MakeRegistryStore(RegistryProcess::Options::kHtpasswd, 0, UniqueRepo("app"));
  ASSERT_TRUE(cache_store.ok() && app_one.ok() && app_two.ok() && elsewhere.ok());
  std::string layer(500000, 'L');
  oci::StringSource src(layer);
  auto d = (*app_one)->WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok());
  oci::Descriptor original = *d;
  original.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  cache::Entry e;
  e.key = "ko/buildid/1";
  e.config = R"({"diffid":"sha256:00"})";
  e.descriptor = original.ToJson().dump();
  e.locations.push_back((*app_one)->LocationOf(original));
  ASSERT_TRUE((*cache_store)->Put(e).ok());

  int64_t before = (*app_two)->client().request_count();
  auto placed = cache::PlaceBlob(**cache_store, e.key, d->digest, **app_two);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ(placed->by, cache::PlacedBy::kLocation);
  // HEAD (absent), HEAD in MountBlob, mount POST: no upload of 500 KB.
  EXPECT_LE((*app_two)->client().request_count() - before, 4);
  EXPECT_TRUE((*app_two)->StatBlob(d->digest).ok());

  auto other = cache::PlaceBlob(**cache_store, e.key, d->digest, **elsewhere);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->by, cache::PlacedBy::kLocation);
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE((*elsewhere)->ReadBlob(d->digest, 0, sink).ok());
  EXPECT_EQ(back, layer);

  auto again = cache::PlaceBlob(**cache_store, e.key, d->digest, **app_two);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->by, cache::PlacedBy::kAlreadyPresent);

  auto got = (*cache_store)->Lookup(e.key, {});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->locations.size(), 3u);
  EXPECT_EQ(got->locations[1].url, placed->location.url);
  EXPECT_EQ(got->locations[2].url, other->location.url);
  EXPECT_EQ(got->descriptor, e.descriptor);

  EXPECT_TRUE(absl::IsNotFound(
      cache::PlaceBlob(**cache_store, e.key, oci::Digest::Of("unknown"), **app_two).status()));
}

TEST(TieredStoreTest, OutageDegradesToLocalAndRecovers) {
  RegistryProcess::Options o;
  auto reg = RegistryProcess::Start(o);
  ASSERT_TRUE(reg.ok()) << reg.status();
  registry::ClientOptions copts;
  copts.retry.max_attempts = 1;
  auto client = registry::Client::Create((*reg)->host(), copts);
  ASSERT_TRUE(client.ok());
  auto remote = cache::RegistryStore::Create(std::shared_ptr<registry::Client>(std::move(*client)),
                                             "tiered/outage");
  ASSERT_TRUE(remote.ok());
  std::vector<std::string> warnings;
  cache::TieredStoreOptions topts;
  topts.retry_after = absl::ZeroDuration();
  topts.warn = [&](absl::string_view w) { warnings.emplace_back(w); };
  std::string dir = TempDir();
  auto tiered = MakeTiered(*std::move(remote), dir, topts);
  ASSERT_TRUE(tiered.ok()) << tiered.status();
  cache::TieredStore& t = **tiered;

  ASSERT_TRUE(t.Put(EntryWithBlob(t, "before", "written while up")).ok());
  ASSERT_TRUE((*reg)->Stop().ok());
  // Local hits still work; misses stay misses; writes stay local; one warning.
  EXPECT_TRUE(t.Lookup("before", {}).ok());
  EXPECT_TRUE(absl::IsNotFound(t.Lookup("absent", {}).status()));
  EXPECT_TRUE(t.Put(EntryWithBlob(t, "during", "written while down")).ok());
  EXPECT_TRUE(t.Lookup("during", {}).ok());
  EXPECT_FALSE(warnings.empty());
  ASSERT_TRUE((*reg)->Restart().ok());
  EXPECT_TRUE(t.Put(EntryWithBlob(t, "after", "written after")).ok());
  // The registry has what was written while it was up and after, not during.
  EXPECT_TRUE(t.remote().Lookup("before", {}).ok());
  EXPECT_TRUE(t.remote().Lookup("after", {}).ok());
  EXPECT_TRUE(absl::IsNotFound(t.remote().Lookup("during", {}).status()));
}

// A call that must not wait (an HTTP read on ocicached's event loop) gets
// what the local tier has, is told when it wanted the registry, and leaves the
// registry's state alone: no request, no open breaker.
TEST(TieredStoreTest, ALocalOnlyCallNeverAsksTheRegistry) {
  auto remote = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/localonly");
  ASSERT_TRUE(remote.ok());
  auto first = MakeTiered(*std::move(remote));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->Put(EntryWithBlob(**first, "remote/only", "in the registry")).ok());
  auto remote2 = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/localonly");
  ASSERT_TRUE(remote2.ok());
  auto second = MakeTiered(*std::move(remote2), TempDir());  // a fresh local tier
  ASSERT_TRUE(second.ok());
  cache::TieredStore& t = **second;
  ASSERT_TRUE(t.Put(EntryWithBlob(t, "local/too", "here")).ok());
  auto local_only = [](auto fn) {
    auto wanted = std::make_shared<std::atomic<bool>>(false);
    base::CallScope scope({.local_only = wanted});
    fn();
    return wanted->load();
  };
  // A local hit: answered, nothing wanted.
  EXPECT_FALSE(local_only([&] { EXPECT_TRUE(t.Lookup("local/too", {}).ok()); }));
  // A local miss the registry has: a miss here, and the want is noted.
  EXPECT_TRUE(local_only([&] {
    EXPECT_TRUE(absl::IsNotFound(t.Lookup("remote/only", {}).status()));
  }));
  EXPECT_FALSE(t.degraded());  // the refusal opened no breaker
  // The same call where it may wait finds it.
  EXPECT_TRUE(t.Lookup("remote/only", {}).ok());
}

// A remote whose StatBlob answers after `delay` (a registry just back from
// hanging); a LayoutStore behind it otherwise.
class SlowStatStore : public cache::ForwardingStore {
 public:
  // `error`: what StatBlob answers after the delay instead of asking `s`.
  SlowStatStore(std::unique_ptr<cache::Store> s, absl::Duration delay,
                absl::Status error = absl::OkStatus())
      : ForwardingStore(std::move(s)), delay_(delay), error_(std::move(error)) {}
  absl::StatusOr<int64_t> StatBlob(const oci::Digest& d) override {
    absl::SleepFor(delay_);
    if (!error_.ok()) return error_;
    return ForwardingStore::StatBlob(d);
  }
  std::string Describe() const override { return "slow " + ForwardingStore::Describe(); }

 private:
  absl::Duration delay_;
  absl::Status error_;
};

// An entry naming a blob no store here has (as if written through another replica).
cache::Entry EntryNamingAbsentBlob(const std::string& key) {
  cache::Entry e;
  e.key = key;
  e.config = "{}";
  const std::string bytes = "written through another replica: " + key;
  e.blobs.push_back(oci::Descriptor{oci::media::kOctetStream, oci::Digest::Of(bytes),
                                    static_cast<int64_t>(bytes.size())});
  return e;
}

// A Put naming a blob no tier has: the caller's mistake (FAILED_PRECONDITION)
// when the registry says so promptly, but UNAVAILABLE when it said so only
// after a long wait: it was hanging, and a blob written through another
// replica meanwhile waits in that replica's backlog (the chaos test's
// registry-paused phase).
TEST(TieredStoreTest, APutLackingABlobIsUnavailableWhileTheRegistryWasSlowToSay) {
  for (bool slow : {false, true}) {
    auto remote_layout = layout::LayoutStore::Open(TempDir());
    ASSERT_TRUE(remote_layout.ok());
    auto local = layout::LayoutStore::Open(TempDir());
    ASSERT_TRUE(local.ok());
    cache::TieredStoreOptions o;
    cache::BreakerOptions bo;
    bo.slow_answer = absl::Milliseconds(200);
    o.breaker = std::make_shared<cache::Breaker>("the registry", bo);
    cache::TieredStore t(*std::move(local),
                         std::make_unique<SlowStatStore>(*std::move(remote_layout),
                                                         absl::Milliseconds(slow ? 400 : 0)),
                         o);
    absl::Status s = t.Put(EntryNamingAbsentBlob("names/a/missing/blob"));
    if (slow) {
      EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    } else {
      EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
    }
  }
}

// A put lacking a blob whose registry check ended other than NotFound (the
// call's own deadline, say, while the registry hangs) cannot tell: UNAVAILABLE,
// never the caller's mistake (chaos_test: puts during a registry pause).
TEST(TieredStoreTest, APutLackingABlobIsUnavailableWhenTheCheckDidNotEnd) {
  for (const absl::Status& why : {absl::DeadlineExceededError("the call's deadline"),
                                  absl::CancelledError("the caller went away")}) {
    auto remote_layout = layout::LayoutStore::Open(TempDir());
    ASSERT_TRUE(remote_layout.ok());
    auto local = layout::LayoutStore::Open(TempDir());
    ASSERT_TRUE(local.ok());
    cache::TieredStore t(*std::move(local),
                         std::make_unique<SlowStatStore>(*std::move(remote_layout),
                                                         absl::ZeroDuration(), why),
                         cache::TieredStoreOptions{});
    absl::Status s = t.Put(EntryNamingAbsentBlob("names/an/unknown/blob"));
    EXPECT_TRUE(absl::IsUnavailable(s)) << why << ": " << s;
  }
}

TEST(TieredStoreTest, RegistryHitFillsAnEmptyLocalTier) {
  auto remote = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/fill");
  ASSERT_TRUE(remote.ok());
  auto first = MakeTiered(*std::move(remote));
  ASSERT_TRUE(first.ok());
  std::string content(100000, 'f');
  ASSERT_TRUE((*first)->Put(EntryWithBlob(**first, "fill/me", content)).ok());
  // A "fresh VM": a new, empty local directory over the same registry.
  auto remote2 = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/fill");
  ASSERT_TRUE(remote2.ok());
  std::string dir = TempDir();
  auto second = MakeTiered(*std::move(remote2), dir);
  ASSERT_TRUE(second.ok());
  auto hit = (*second)->Lookup("fill/me", {});
  ASSERT_TRUE(hit.ok()) << hit.status();
  // The local tier alone now answers, blob included.
  auto local = layout::LayoutStore::Open(dir);
  ASSERT_TRUE(local.ok());
  auto e = (*local)->Lookup("fill/me", {});
  ASSERT_TRUE(e.ok()) << e.status();
  std::string back;
  oci::StringSink sink(&back);
  ASSERT_TRUE((*local)->ReadBlob(e->blobs[0].digest, 0, sink).ok());
  EXPECT_EQ(back, content);
}

// A hit of many blobs copies them into the local tier in parallel: over a
// link with a 40 ms round trip, 48 blob copies one after another would take
// at least 48 round trips (about 2 s); in parallel they take a few, on several
// connections at once.
TEST(TieredStoreTest, ARegistryHitCopiesItsBlobsInParallel) {
  auto remote = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/many");
  ASSERT_TRUE(remote.ok());
  auto first = MakeTiered(*std::move(remote));
  ASSERT_TRUE(first.ok());
  cache::Entry e;
  e.key = "many/blobs";
  e.config = R"({"kind":"test"})";
  for (int i = 0; i < 48; ++i) {
    const std::string bytes = absl::StrCat("blob number ", i, std::string(1000, 'x'));
    oci::StringSource src(bytes);
    auto d = (*first)->WriteBlob(oci::Digest(), -1, src);
    ASSERT_TRUE(d.ok()) << d.status();
    e.blobs.push_back(*d);
  }
  ASSERT_TRUE((*first)->Put(e).ok());

  harness::LinkOptions link;
  link.one_way_delay = absl::Milliseconds(20);
  auto proxy = harness::LinkProxy::Start(Registry(RegistryProcess::Options::kNone)->host(), link);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto remote2 =
      MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/many", (*proxy)->address());
  ASSERT_TRUE(remote2.ok());
  auto second = MakeTiered(*std::move(remote2));
  ASSERT_TRUE(second.ok());
  absl::Time t0 = absl::Now();
  auto hit = (*second)->Lookup("many/blobs", {});
  absl::Duration took = absl::Now() - t0;
  ASSERT_TRUE(hit.ok()) << hit.status();
  for (const auto& b : hit->blobs) EXPECT_TRUE((*second)->local().StatBlob(b.digest).ok());
  EXPECT_GE((*proxy)->connections(), 4);  // sequential copies reuse one connection
  EXPECT_LT(took, absl::Milliseconds(48 * 40)) << "as slow as one copy after another";
}

// Background-fill tests: an entry of `n` blobs of about `bytes` each put in
// the registry's `repo` through a tiered store (as another machine would),
// and the blobs' contents.
struct PutBlobs {
  cache::Entry entry;
  std::vector<std::string> contents;
  int64_t total = 0;
};
PutBlobs PutEntryOfBlobs(const std::string& repo, const std::string& key, int n, int bytes) {
  PutBlobs out;
  auto remote = MakeRegistryStore(RegistryProcess::Options::kNone, 0, repo);
  EXPECT_TRUE(remote.ok()) << remote.status();
  if (!remote.ok()) return out;
  auto writer = MakeTiered(*std::move(remote));
  EXPECT_TRUE(writer.ok()) << writer.status();
  if (!writer.ok()) return out;
  out.entry.key = key;
  out.entry.config = R"({"kind":"test"})";
  for (int i = 0; i < n; ++i) {
    out.contents.push_back(absl::StrCat(key, " blob ", i, std::string(bytes, 'a' + i % 26)));
    out.total += static_cast<int64_t>(out.contents.back().size());
    oci::StringSource src(out.contents.back());
    auto d = (*writer)->WriteBlob(oci::Digest(), -1, src);
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return out;
    out.entry.blobs.push_back(*d);
  }
  absl::Status s = (*writer)->Put(out.entry);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// A tiered store with background fills over a new, empty local tier, whose
// registry `repo` is reached through a link of `bits_per_second` (and a 10 ms
// round trip).
struct SlowTiered {
  std::unique_ptr<harness::LinkProxy> proxy;
  std::unique_ptr<cache::TieredStore> store;
};
SlowTiered BackgroundFillOverSlowLink(const std::string& repo, int64_t bits_per_second) {
  SlowTiered out;
  harness::LinkOptions link;
  link.one_way_delay = absl::Milliseconds(5);
  link.bits_per_second = bits_per_second;
  auto proxy = harness::LinkProxy::Start(Registry(RegistryProcess::Options::kNone)->host(), link);
  EXPECT_TRUE(proxy.ok()) << proxy.status();
  if (!proxy.ok()) return out;
  out.proxy = *std::move(proxy);
  auto remote =
      MakeRegistryStore(RegistryProcess::Options::kNone, 0, repo, out.proxy->address());
  EXPECT_TRUE(remote.ok()) << remote.status();
  if (!remote.ok()) return out;
  cache::TieredStoreOptions o;
  o.fill_in_background = true;
  auto store = MakeTiered(*std::move(remote), TempDir(), o);
  EXPECT_TRUE(store.ok()) << store.status();
  if (store.ok()) out.store = *std::move(store);
  return out;
}

// Waits (at most 60 s) until `store`'s local tier holds `key`'s entry.
absl::StatusOr<cache::Entry> LocalEntry(cache::TieredStore& store, const std::string& key,
                                        const cache::LookupOptions& opts = {}) {
  const absl::Time end = absl::Now() + absl::Seconds(60);
  absl::StatusOr<cache::Entry> local = absl::NotFoundError("not yet");
  cache::LookupOptions peek = opts;
  peek.touch = false;
  while (absl::Now() < end && !(local = store.local().Lookup(key, peek)).ok()) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  return local;
}

// A server's hit (fill_in_background) is answered before its blobs are copied:
// over a link whose bandwidth makes the copy take about 2 s, the lookup takes
// a manifest GET. Reads of the blobs meanwhile get the right bytes (waiting for
// the copy in flight, not fetching twice), and the local tier ends up with the
// entry without any further call.
TEST(TieredStoreTest, ABackgroundFillAnswersBeforeCopying) {
  PutBlobs put = PutEntryOfBlobs("tiered/lazy", "lazy/blobs", 24, 100000);
  ASSERT_EQ(put.entry.blobs.size(), 24u);
  SlowTiered second = BackgroundFillOverSlowLink("tiered/lazy", 10'000'000);  // 2.4 MB: ~2 s
  ASSERT_NE(second.store, nullptr);
  absl::Time t0 = absl::Now();
  auto hit = second.store->Lookup("lazy/blobs", {});
  absl::Duration took = absl::Now() - t0;
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_LT(took, absl::Seconds(1)) << "the hit waited for its blobs to be copied";
  // Present, as the completeness checks of callers ask, without a copy first.
  for (const auto& b : hit->blobs) EXPECT_TRUE(second.store->StatBlob(b.digest).ok());
  for (size_t i = 0; i < hit->blobs.size(); ++i) {
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(second.store->ReadBlob(hit->blobs[i].digest, 0, sink).ok()) << i;
    EXPECT_EQ(back, put.contents[i]) << i;
  }
  auto local = LocalEntry(*second.store, "lazy/blobs");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->blobs.size(), 24u);
}

// A blob is fetched from the registry once when a read copies it while a
// background fill of its entry is under way: the fill listed it as missing
// before the read's copy, and on reaching it finds it local instead of
// fetching it again (before, Bazel's download of a 300-file tree fetched 187
// blobs twice). Counted as the bytes the link carried.
TEST(TieredStoreTest, AReadDuringABackgroundFillFetchesNoBlobTwice) {
  PutBlobs put = PutEntryOfBlobs("tiered/once", "once/blobs", 64, 50000);
  ASSERT_EQ(put.entry.blobs.size(), 64u);
  SlowTiered second = BackgroundFillOverSlowLink("tiered/once", 10'000'000);  // 3.2 MB: ~2.6 s
  ASSERT_NE(second.store, nullptr);
  auto hit = second.store->Lookup(put.entry.key, {});
  ASSERT_TRUE(hit.ok()) << hit.status();
  // The last blobs of the list, read (and copied first: a read goes before a
  // background copy) while the fill works through the start of its list.
  for (int i = 63; i >= 60; --i) {
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(second.store->ReadBlob(hit->blobs[i].digest, 0, sink).ok()) << i;
    EXPECT_EQ(back, put.contents[i]) << i;
  }
  auto local = LocalEntry(*second.store, put.entry.key);
  ASSERT_TRUE(local.ok()) << local.status();
  // Every blob once, plus the manifest and HTTP headers (about 45 KB; the
  // four read blobs fetched twice would be 200 KB more).
  EXPECT_LT(second.proxy->bytes_down(), put.total + 100'000) << "blobs fetched twice";
  EXPECT_GE(second.proxy->bytes_down(), put.total);
}

// A put through a tiered store while a background copy of the same key's
// registry entry is in flight is the newer entry: the copy, when it ends, must
// not put the registry's older entry over it in the local tier.
TEST(TieredStoreTest, ABackgroundFillKeepsAnEntryPutMeanwhile) {
  PutBlobs older = PutEntryOfBlobs("tiered/meanwhile", "meanwhile/key", 16, 100000);
  ASSERT_EQ(older.entry.blobs.size(), 16u);
  SlowTiered second = BackgroundFillOverSlowLink("tiered/meanwhile", 5'000'000);  // 1.6 MB: ~2.5 s
  ASSERT_NE(second.store, nullptr);
  auto hit = second.store->Lookup(older.entry.key, {});
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_EQ(hit->config, older.entry.config);

  // The newer entry, while the copy runs (it takes seconds on this link).
  cache::Entry newer;
  newer.key = older.entry.key;
  newer.config = R"({"which":"newer"})";
  ASSERT_TRUE(second.store->Put(newer).ok());
  // The copy ends: every blob of the older entry is local.
  const absl::Time end = absl::Now() + absl::Seconds(60);
  auto all_local = [&] {
    for (const auto& b : older.entry.blobs) {
      if (!second.store->local().StatBlob(b.digest).ok()) return false;
    }
    return true;
  };
  while (!all_local() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(all_local()) << "the background copy did not end";
  // The copy puts its entry right after its last blob; give it time to, then
  // the local tier must still hold the newer entry.
  absl::SleepFor(absl::Milliseconds(500));
  auto local = LocalEntry(*second.store, older.entry.key);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->config, newer.config);
}

// The other side of the rule above: a local entry older than the registry's
// (one a lookup's annotations did not match) is replaced by a background fill.
TEST(TieredStoreTest, ABackgroundFillReplacesAnOlderLocalEntry) {
  auto remote = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/replace");
  ASSERT_TRUE(remote.ok());
  auto writer = MakeTiered(*std::move(remote));
  ASSERT_TRUE(writer.ok());
  auto remote2 = MakeRegistryStore(RegistryProcess::Options::kNone, 0, "tiered/replace");
  ASSERT_TRUE(remote2.ok());
  cache::TieredStoreOptions o;
  o.fill_in_background = true;
  auto reader = MakeTiered(*std::move(remote2), TempDir(), o);
  ASSERT_TRUE(reader.ok());
  cache::Entry e;
  e.key = "replace/key";
  e.annotations["org.example.tool"] = "v1";
  ASSERT_TRUE((*reader)->Put(e).ok());
  absl::SleepFor(absl::Milliseconds(1100));  // entry times are whole seconds
  e.annotations["org.example.tool"] = "v2";
  ASSERT_TRUE((*writer)->Put(e).ok());
  cache::LookupOptions want;
  want.require["org.example.tool"] = "v2";
  auto hit = (*reader)->Lookup(e.key, want);
  ASSERT_TRUE(hit.ok()) << hit.status();
  auto local = LocalEntry(**reader, e.key, want);
  EXPECT_TRUE(local.ok()) << "the older local entry was kept: " << local.status();
}

}  // namespace
}  // namespace ocicache
