#include "test/integration/served_store.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "pkg/admin/admin.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::testing {

std::string TempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/", prefix, "-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d != nullptr ? std::string(d) : std::string();
}

absl::StatusOr<std::unique_ptr<server::CacheServer>> StartServer(stores::StoreSet stores,
                                                                 server::ServerOptions opts) {
  if (opts.listen == server::kDefaultListen) opts.listen = "127.0.0.1:0";
  if (opts.upload_dir.empty()) opts.upload_dir = TempDir("uploads");
  return server::CacheServer::Start(std::move(stores), std::move(opts));
}

absl::StatusOr<std::unique_ptr<ServedStore>> ServeLayout(
    server::ServerOptions opts, std::vector<std::string> allowed_registries) {
  auto local = layout::LayoutStore::Open(TempDir("layout"));
  if (!local.ok()) return local.status();
  stores::StoreSet set;
  cache::ClientPoolOptions pool;
  pool.restrict_hosts = true;
  pool.allowed.insert(allowed_registries.begin(), allowed_registries.end());
  set.pool = std::make_shared<cache::ClientPool>(registry::ClientOptions(), pool);
  set.tiers.local = local->get();
  set.store = *std::move(local);
  set.admin = std::make_unique<admin::LocalAdmin>(*set.store, set.tiers.local, nullptr);
  auto server = StartServer(std::move(set), std::move(opts));
  if (!server.ok()) return server.status();
  return std::make_unique<ServedStore>(*std::move(server));
}

absl::StatusOr<std::unique_ptr<ServedStore>> ServeConfig(const stores::StoreConfig& config,
                                                        server::ServerOptions opts) {
  auto set = stores::OpenStores(config);
  if (!set.ok()) return set.status();
  auto server = StartServer(*std::move(set), std::move(opts));
  if (!server.ok()) return server.status();
  return std::make_unique<ServedStore>(*std::move(server));
}

}  // namespace ocicache::testing
