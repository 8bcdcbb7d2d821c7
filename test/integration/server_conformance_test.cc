// The Store conformance suite through the gRPC client (client::GrpcStore)
// against an in-process ocicached backed by a local directory, and by a tiered
// store over a real docker-registry; plus admin (gc, sync) through the server.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/cache/store_testsuite.h"
#include "pkg/client/grpc_store.h"
#include "test/harness/registry.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

using harness::RegistryProcess;
using testing::ServedStore;

RegistryProcess* Registry() {
  static std::unique_ptr<RegistryProcess> reg;
  if (!reg) {
    auto started = RegistryProcess::Start({});
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    reg = *std::move(started);
  }
  return reg.get();
}

std::string UniqueRepo(const std::string& prefix) {
  static int n = 0;
  return absl::StrCat(prefix, "/r", ++n, "-", getpid());
}

stores::StoreConfig TieredConfig() {
  stores::StoreConfig c;
  RegistryProcess* reg = Registry();
  c.repo = absl::StrCat(reg != nullptr ? reg->host() : "127.0.0.1:1", "/",
                        UniqueRepo("served"));
  c.dir = testing::TempDir("tiered");
  return c;
}

template <typename T>
absl::StatusOr<std::unique_ptr<cache::Store>> Up(absl::StatusOr<std::unique_ptr<T>> s) {
  if (!s.ok()) return s.status();
  return std::unique_ptr<cache::Store>(std::move(*s));
}

using cache::StoreConformanceTest;

INSTANTIATE_TEST_SUITE_P(
    Served, StoreConformanceTest,
    ::testing::Values(
        cache::StoreFactory{"served_layout", [] { return Up(testing::ServeLayout()); }},
        cache::StoreFactory{"served_tiered",
                            [] { return Up(testing::ServeConfig(TieredConfig())); }, true}),
    [](const ::testing::TestParamInfo<cache::StoreFactory>& i) { return i.param.name; });

void PutEntry(cache::Store& s, const std::string& key) {
  std::string content = "content of " + key;
  oci::StringSource src(content);
  auto d = s.WriteBlob(oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  cache::Entry e;
  e.key = key;
  e.blobs.push_back(*d);
  ASSERT_TRUE(s.Put(e).ok());
}

TEST(ServedAdminTest, GcAndSyncThroughTheServer) {
  stores::StoreConfig cfg = TieredConfig();
  auto served = testing::ServeConfig(cfg);
  ASSERT_TRUE(served.ok()) << served.status();
  ServedStore& store = **served;
  client::GrpcAdmin admin(client::Dial(store.server().address()), store.server().address());

  for (int i = 0; i < 3; ++i) PutEntry(store, absl::StrCat("gc/", i));
  admin::GcRequest gc;
  gc.keep_last = 1;
  std::vector<std::string> deleted;
  auto r = admin.CollectGarbage(gc, [&](const admin::ProgressEvent& ev) {
    deleted.push_back(ev.key);
    EXPECT_EQ(ev.action, "delete");
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries, 3);
  EXPECT_EQ(r->deleted, 2);
  EXPECT_EQ(deleted.size(), 2u);
  EXPECT_TRUE(r->local_tier);
  EXPECT_TRUE(absl::IsInvalidArgument(admin.CollectGarbage({}, nullptr).status()));

  // An entry only in the registry (written by another machine) comes down.
  stores::StoreConfig other = cfg;
  other.dir = testing::TempDir("other");
  auto other_set = stores::OpenStores(other);
  ASSERT_TRUE(other_set.ok()) << other_set.status();
  PutEntry(*other_set->store, "from/elsewhere");
  admin::SyncRequest down;
  down.direction = admin::SyncDirection::kDown;
  auto s = admin.Sync(down, nullptr);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->pulled, 1);
  EXPECT_EQ(s->pushed, 0);
  EXPECT_NE(s->local.find("dir:"), std::string::npos) << s->local;

  auto stats = admin.Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->registry_requests(), 0);
  EXPECT_GT(stats->local_tier_bytes(), 0);
  EXPECT_NE(stats->store().find("tiered"), std::string::npos) << stats->store();
}

// Two servers over one registry: the second finishes a Write early because the
// registry has the blob, and the entry naming it must still store.
TEST(ServedReplicasTest, SameBlobThroughTwoServers) {
  stores::StoreConfig cfg = TieredConfig();
  stores::StoreConfig cfg_b = cfg;
  cfg_b.dir = testing::TempDir("replica-b");
  auto a = testing::ServeConfig(cfg);
  auto b = testing::ServeConfig(cfg_b);
  ASSERT_TRUE(a.ok() && b.ok());
  std::string data(100000, 's');
  for (auto* store : {a->get(), b->get()}) {
    oci::StringSource src(data);
    auto d = store->WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
    ASSERT_TRUE(d.ok()) << d.status();
    cache::Entry e;
    e.key = absl::StrCat("same/", store->server().port());
    e.blobs.push_back(*d);
    ASSERT_TRUE(store->Put(e).ok()) << store->Put(e);
    auto got = store->Lookup(e.key, {});
    ASSERT_TRUE(got.ok()) << got.status();
    std::string back;
    oci::StringSink sink(&back);
    ASSERT_TRUE(store->ReadBlob(d->digest, 0, sink).ok());
    EXPECT_EQ(back, data);
  }
}

TEST(ServedAdminTest, SyncNeedsTwoTiers) {
  auto served = testing::ServeLayout();
  ASSERT_TRUE(served.ok()) << served.status();
  client::GrpcAdmin admin(client::Dial((*served)->server().address()), "x");
  EXPECT_TRUE(absl::IsFailedPrecondition(admin.Sync({}, nullptr).status()));
}

// A registry answer that is final (not temporary) stays final through the
// server: the status payloads travel with the status.
TEST(ServedStatusTest, RegistryErrorsKeepTheirKind) {
  stores::StoreConfig cfg;
  RegistryProcess* reg = Registry();
  ASSERT_NE(reg, nullptr);
  cfg.repo = absl::StrCat(reg->host(), "/", UniqueRepo("nodir"));
  auto served = testing::ServeConfig(cfg);
  ASSERT_TRUE(served.ok()) << served.status();
  auto miss = (*served)->Lookup("absent", {});
  EXPECT_TRUE(absl::IsNotFound(miss.status())) << miss.status();
  EXPECT_FALSE(registry::IsTemporary(miss.status()));
}

}  // namespace
}  // namespace ocicache
