#include "pkg/stores/stores.h"

#include <cstdlib>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "pkg/cache/format.h"
#include "pkg/cache/guarded_store.h"
#include "pkg/cache/records.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/client/grpc_store.h"
#include "pkg/layout/layout_store.h"
#include "pkg/registry/client.h"

namespace ocicache::stores {
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

std::string DefaultAuthCacheDir() {
  std::string xdg = Env("XDG_CACHE_HOME");
  if (!xdg.empty()) return xdg + "/ocicache-auth";
  std::string home = Env("HOME");
  // Without a home there is no directory that is surely ours alone: keep nothing.
  return home.empty() ? std::string() : home + "/.cache/ocicache-auth";
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
  c.auth_cache_dir = Env("OCICACHE_AUTH_CACHE");
  if (c.auth_cache_dir.empty()) c.auth_cache_dir = DefaultAuthCacheDir();
  if (c.auth_cache_dir == "off") c.auth_cache_dir.clear();
  return c;
}

registry::ClientOptions RegistryClientOptions(const StoreConfig& config, Profile profile) {
  registry::ClientOptions opts;
  opts.insecure_http = config.insecure;
  opts.force_tls = config.force_tls;
  opts.ca_file = config.ca_file;
  opts.docker_config_dir = config.docker_config;
  opts.credentials.username = config.username;
  opts.credentials.password = config.password;
  opts.pacer = config.pacer;
  if (profile != Profile::kServer) opts.auth_cache_dir = config.auth_cache_dir;
  switch (profile) {
    case Profile::kInteractive:
    case Profile::kServer:
      break;
    case Profile::kLookup:
      opts.retry.max_attempts = 2;
      opts.retry.initial_backoff = absl::Milliseconds(50);
      opts.retry.max_backoff = absl::Milliseconds(200);
      opts.retry.max_retry_after = absl::Seconds(1);
      opts.connect_timeout = absl::Seconds(3);
      opts.stall_timeout = absl::Seconds(15);
      break;
    case Profile::kBackground:
      opts.stall_timeout = absl::Seconds(30);
      break;
  }
  return opts;
}

namespace {

// The pool of registry clients for `config`: explicit credentials for the
// repository's registry only, other hosts as config allows.
absl::StatusOr<std::shared_ptr<cache::ClientPool>> PoolFor(const StoreConfig& config,
                                                           registry::ClientOptions opts,
                                                           std::optional<registry::RepoRef>* ref) {
  cache::ClientPoolOptions pool_opts;
  pool_opts.restrict_hosts = config.restrict_registries;
  pool_opts.allowed.insert(config.allowed_registries.begin(), config.allowed_registries.end());
  if (!config.repo.empty()) {
    auto r = registry::ParseRepoRef(config.repo);
    if (!r.ok()) return r.status();
    *ref = *std::move(r);
    pool_opts.home = (*ref)->registry;
  }
  return std::make_shared<cache::ClientPool>(std::move(opts), pool_opts);
}

// The registry store of `ref` (config.repo) on a client from `pool`.
absl::StatusOr<std::unique_ptr<cache::RegistryStore>> RegistryIn(
    const StoreConfig& config, const registry::RepoRef& ref,
    const std::shared_ptr<cache::ClientPool>& pool, bool record_writer = false) {
  auto client = pool->Get(ref.registry);
  if (!client.ok()) return client.status();
  cache::RegistryStoreOptions ropts;
  ropts.pool = pool;
  ropts.shards = config.shards;
  // A server records what it puts and touches (listing records, docs/FORMAT.md),
  // so ls and gc need not read one manifest per entry.
  if (record_writer) ropts.record_writer = cache::records::NewWriterName("ocicached");
  return cache::RegistryStore::Create(*client, ref.repository, ropts);
}

}  // namespace

absl::StatusOr<std::unique_ptr<cache::RegistryStore>> OpenRegistry(const StoreConfig& config,
                                                                   registry::ClientOptions opts) {
  if (config.repo.empty()) return absl::InvalidArgumentError("no registry repository configured");
  std::optional<registry::RepoRef> ref;
  auto pool = PoolFor(config, std::move(opts), &ref);
  if (!pool.ok()) return pool.status();
  return RegistryIn(config, *ref, *pool);
}

absl::StatusOr<ServerConnection> ConnectServer(const StoreConfig& config) {
  auto endpoint = client::ResolveServer(
      config.server, {config.server_ca_file, config.server_cert_file, config.server_key_file});
  if (!endpoint.ok()) return endpoint.status();
  ServerConnection c;
  c.channel = client::Dial(endpoint->address, endpoint->dial);
  c.name = config.server;
  if (endpoint->dial.tls && c.name.find("://") == std::string::npos) c.name = "grpcs://" + c.name;
  c.options.token = config.server_token;
  c.options.security = client::SecurityOf(endpoint->dial);
  return c;
}

absl::StatusOr<StoreSet> OpenStores(const StoreConfig& given, OpenOptions open) {
  StoreConfig config = given;
  if (config.no_dir) {
    if (config.repo.empty() && config.server.empty()) {
      return absl::InvalidArgumentError("--no-dir needs --repo: there would be no store at all");
    }
    config.dir.clear();
  }
  layout::LayoutStore::Options local_opts;
  local_opts.max_bytes = config.max_local_bytes;
  local_opts.evict_grace = config.local_evict_grace;
  // A server's puts never wait for index.json (O(entries) to rewrite): a
  // background thread rewrites it at most every 2 s. One-shot commands write it
  // after their change, as before.
  if (open.profile == Profile::kServer) local_opts.index_interval = absl::Seconds(2);
  if (!config.server.empty()) {
    StoreSet set;
    auto server = ConnectServer(config);
    if (!server.ok()) return server.status();
    set.store = std::make_unique<client::GrpcStore>(server->channel, server->name, server->options);
    set.admin = std::make_unique<client::GrpcAdmin>(server->channel, server->name,
                                                    config.server_token, server->options.security);
    return set;
  }
  if (config.repo.empty() && config.dir.empty()) {
    return absl::InvalidArgumentError("no store: set a registry repository or a directory");
  }
  StoreSet set;
  std::unique_ptr<cache::RegistryStore> remote;
  std::optional<registry::RepoRef> ref;
  // Made without a repository too: a server mounts into allowed registries.
  auto pool = PoolFor(config, RegistryClientOptions(config, open.profile), &ref);
  if (!pool.ok()) return pool.status();
  set.pool = *std::move(pool);
  if (ref) {
    auto r = RegistryIn(config, *ref, set.pool, open.profile == Profile::kServer);
    if (!r.ok()) return r.status();
    remote = *std::move(r);
  }
  std::unique_ptr<layout::LayoutStore> local;
  if (!config.dir.empty()) {
    if (ref) {
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
    // Puts the registry did not take wait in DIR/backlog; a server pushes
    // them by itself once the registry is back, the CLI leaves them to the
    // next server or `ocicache sync` (the local tier has them meanwhile).
    auto backlog = cache::Backlog::Open(config.dir + "/backlog");
    if (!backlog.ok()) return backlog.status();
    topts.backlog = *std::move(backlog);
    topts.drain_in_background = open.profile == Profile::kServer;
    topts.fill_in_background = config.fill_in_background && open.profile == Profile::kServer;
    set.tiers.backlog = topts.backlog.get();
    set.store = std::make_unique<cache::TieredStore>(std::move(local), std::move(remote), topts);
  } else if (local) {
    set.store = std::move(local);
  } else if (open.guard_registry_only) {
    set.store = std::make_unique<cache::GuardedStore>(std::move(remote), set.breaker);
  } else {
    set.store = std::move(remote);
  }
  set.admin = std::make_unique<admin::LocalAdmin>(*set.store, set.tiers.local, set.tiers.remote,
                                                   set.tiers.backlog);
  return set;
}

}  // namespace ocicache::stores
