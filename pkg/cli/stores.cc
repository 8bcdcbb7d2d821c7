#include "pkg/cli/stores.h"

#include <cstdlib>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "pkg/cache/format.h"
#include "pkg/cache/guarded_store.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/client/grpc_store.h"
#include "pkg/registry/client.h"

namespace ocicache::cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

bool EnvBool(const char* name) {
  std::string v = Env(name);
  return v == "1" || v == "true" || v == "yes";
}

}  // namespace

std::string DefaultDir() {
  std::string xdg = Env("XDG_CACHE_HOME");
  if (!xdg.empty()) return xdg + "/ocicache";
  std::string home = Env("HOME");
  return (home.empty() ? std::string("/tmp") : home) + "/.cache/ocicache";
}

absl::StatusOr<StoreConfig> ConfigFromEnv() {
  StoreConfig c;
  c.server = Env("OCICACHE_SERVER");
  c.server_token = Env("OCICACHE_SERVER_TOKEN");
  c.server_ca_file = Env("OCICACHE_SERVER_CA");
  c.server_cert_file = Env("OCICACHE_SERVER_CERT");
  c.server_key_file = Env("OCICACHE_SERVER_KEY");
  c.repo = Env("OCICACHE_REPO");
  if (c.repo.empty()) c.repo = Env("KOCACHE_REPO");
  c.dir = Env("OCICACHE_DIR");
  if (c.dir.empty()) c.dir = DefaultDir();
  if (std::string s = Env("OCICACHE_SHARDS"); !s.empty()) {
    if (!absl::SimpleAtoi(s, &c.shards) || c.shards < 1 || c.shards > 256) {
      return absl::InvalidArgumentError("OCICACHE_SHARDS takes a number from 1 to 256");
    }
  }
  c.insecure = EnvBool("OCICACHE_INSECURE");
  c.force_tls = EnvBool("OCICACHE_TLS");
  c.ca_file = Env("OCICACHE_CA_FILE");
  c.username = Env("OCICACHE_USERNAME");
  c.password = Env("OCICACHE_PASSWORD");
  c.docker_config = Env("DOCKER_CONFIG");
  return c;
}

registry::ClientOptions RegistryClientOptions(const StoreConfig& config) {
  registry::ClientOptions opts;
  opts.insecure_http = config.insecure;
  opts.force_tls = config.force_tls;
  opts.ca_file = config.ca_file;
  opts.docker_config_dir = config.docker_config;
  opts.credentials.username = config.username;
  opts.credentials.password = config.password;
  return opts;
}

absl::StatusOr<StoreSet> OpenStores(const StoreConfig& config,
                                    layout::LayoutStore::Options local_opts) {
  OpenOptions open;
  open.local = std::move(local_opts);
  return OpenStores(config, std::move(open));
}

absl::StatusOr<StoreSet> OpenStores(const StoreConfig& config, OpenOptions open) {
  layout::LayoutStore::Options& local_opts = open.local;
  if (!config.server.empty()) {
    StoreSet set;
    auto endpoint = client::ResolveServer(
        config.server, {config.server_ca_file, config.server_cert_file, config.server_key_file});
    if (!endpoint.ok()) return endpoint.status();
    auto channel = client::Dial(endpoint->address, endpoint->dial);
    // Messages name the server as given, with the scheme when TLS is implied.
    std::string name = config.server;
    if (endpoint->dial.tls && name.find("://") == std::string::npos) name = "grpcs://" + name;
    client::GrpcStoreOptions opts;
    opts.token = config.server_token;
    opts.security = client::SecurityOf(endpoint->dial);
    set.store = std::make_unique<client::GrpcStore>(channel, name, opts);
    set.admin = std::make_unique<client::GrpcAdmin>(channel, name, config.server_token,
                                                    opts.security);
    return set;
  }
  if (config.repo.empty() && config.dir.empty()) {
    return absl::InvalidArgumentError("no store: set a registry repository or a directory");
  }
  StoreSet set;
  std::unique_ptr<cache::RegistryStore> remote;
  cache::ClientPoolOptions pool_opts;
  pool_opts.restrict_hosts = config.restrict_registries;
  pool_opts.allowed.insert(config.allowed_registries.begin(), config.allowed_registries.end());
  std::optional<registry::RepoRef> ref;
  if (!config.repo.empty()) {
    auto r = registry::ParseRepoRef(config.repo);
    if (!r.ok()) return r.status();
    ref = *std::move(r);
    pool_opts.home = ref->registry;
  }
  // Made without a repository too: a server mounts into allowed registries.
  set.pool = std::make_shared<cache::ClientPool>(RegistryClientOptions(config), pool_opts);
  if (ref) {
    auto client = set.pool->Get(ref->registry);
    if (!client.ok()) return client.status();
    cache::RegistryStoreOptions ropts;
    ropts.pool = set.pool;
    ropts.shards = config.shards;
    auto r = cache::RegistryStore::Create(*client, ref->repository, ropts);
    if (!r.ok()) return r.status();
    remote = *std::move(r);
  }
  std::unique_ptr<layout::LayoutStore> local;
  if (!config.dir.empty()) {
    if (ref && !local_opts.fetcher) {
      std::shared_ptr<cache::ClientPool> pool = set.pool;
      local_opts.fetcher = [pool](const cache::Location& loc, oci::ByteSink& sink) -> absl::Status {
        std::string base, from_repo;
        oci::Digest d;
        if (absl::Status s = cache::ParseBlobUrl(loc.url, &base, &from_repo, &d); !s.ok()) return s;
        size_t p = base.find("://");
        auto client = pool->Get(base.substr(p == std::string::npos ? 0 : p + 3));
        if (!client.ok()) return client.status();
        return (*client)->GetBlob(from_repo, d, loc.size, sink);
      };
    }
    auto l = layout::LayoutStore::Open(config.dir, local_opts);
    if (!l.ok()) return l.status();
    local = *std::move(l);
  }
  set.tiers.local = local.get();
  set.tiers.remote = remote.get();
  if (remote) {
    set.breaker = open.breaker != nullptr
                      ? open.breaker
                      : std::make_shared<cache::Breaker>(remote->Describe());
  }
  if (local && remote) {
    cache::TieredStoreOptions topts;
    topts.breaker = set.breaker;
    set.store = std::make_unique<cache::TieredStore>(std::move(local), std::move(remote), topts);
  } else if (local) {
    set.store = std::move(local);
  } else if (open.guard_registry_only) {
    set.store = std::make_unique<cache::GuardedStore>(std::move(remote), set.breaker);
  } else {
    set.store = std::move(remote);
  }
  set.admin = std::make_unique<admin::LocalAdmin>(*set.store, set.tiers.local, set.tiers.remote);
  return set;
}

}  // namespace ocicache::cli
