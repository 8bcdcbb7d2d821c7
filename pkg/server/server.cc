#include "pkg/server/server.h"

#include <unistd.h>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/server_interceptor.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace ocicache::server {
namespace {

const char* const kServices[] = {"",
                                 "ocicache.v1.Entries",
                                 "ocicache.v1.Blobs",
                                 "ocicache.v1.Admin",
                                 "build.bazel.remote.execution.v2.Capabilities",
                                 "build.bazel.remote.execution.v2.ActionCache",
                                 "build.bazel.remote.execution.v2.ContentAddressableStorage",
                                 "google.bytestream.ByteStream"};

// A request that does not parse (a proto3 string field holding invalid
// UTF-8, or a malformed message) never reaches a handler: gRPC answers
// INTERNAL with no message, and no access-log line is written. This turns
// that answer into INVALID_ARGUMENT with a message, and logs it. Handlers
// never answer INTERNAL without a message (wire::ToGrpc keeps theirs).
class UnparsedRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  UnparsedRequestInterceptor(grpc::experimental::ServerRpcInfo* info,
                             const std::function<void(absl::string_view)>* log)
      : info_(info), log_(log) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status s = m->GetSendStatus();
      if (s.error_code() == grpc::StatusCode::INTERNAL && s.error_message().empty()) {
        m->ModifySendStatus(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            "the request does not parse: a string field is not valid UTF-8, or the message is "
            "malformed"));
        if (*log_) {
          auto* ctx = info_->server_context();
          (*log_)(absl::StrCat(ctx != nullptr ? ctx->peer() : "-", " ", info_->method(),
                               " - INVALID_ARGUMENT 0.0ms 0B \"the request does not parse\""));
        }
      }
    }
    m->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  const std::function<void(absl::string_view)>* log_;
};

class UnparsedRequestInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit UnparsedRequestInterceptorFactory(const std::function<void(absl::string_view)>* log)
      : log_(log) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new UnparsedRequestInterceptor(info, log_);
  }

 private:
  const std::function<void(absl::string_view)>* log_;
};

// "host:port" -> "host"; "[::1]:port" -> "[::1]".
std::string HostPart(const std::string& listen) {
  size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

}  // namespace

reapi::StoreOpener InstanceOpener(const stores::StoreConfig& config,
                                  std::shared_ptr<cache::Breaker> breaker) {
  return [config, breaker](
             absl::string_view instance) -> absl::StatusOr<std::shared_ptr<cache::Store>> {
    stores::StoreConfig c = config;
    c.server.clear();
    if (!c.repo.empty()) c.repo = absl::StrCat(c.repo, "/", instance);
    // The layout sits in a "_layout" subdirectory ('_' cannot start a
    // segment), so instance "a" and instance "a/b" never nest in each other.
    if (!c.dir.empty()) c.dir = absl::StrCat(c.dir, "/instances/", instance, "/_layout");
    stores::OpenOptions open;
    open.profile = stores::Profile::kServer;
    open.breaker = breaker;
    open.guard_registry_only = breaker != nullptr;
    auto set = stores::OpenStores(c, open);
    if (!set.ok()) return set.status();
    // The store keeps the whole set (admin, client pool) alive.
    auto holder = std::make_shared<stores::StoreSet>(*std::move(set));
    return std::shared_ptr<cache::Store>(holder, holder->store.get());
  };
}

std::function<absl::Status()> DefaultProbe(const stores::StoreSet& stores) {
  if (stores.tiers.remote != nullptr) {
    cache::RegistryStore* remote = stores.tiers.remote;
    return [remote] { return remote->client().Ping(); };
  }
  if (stores.tiers.local != nullptr) {
    std::string dir = stores.tiers.local->dir();
    return [dir]() -> absl::Status {
      if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
        return absl::UnavailableError(absl::StrCat(dir, ": ", std::strerror(errno)));
      }
      return absl::OkStatus();
    };
  }
  return [] { return absl::OkStatus(); };
}

absl::StatusOr<std::function<absl::Status()>> RegistryProbe(const stores::StoreConfig& config,
                                                            absl::Duration timeout,
                                                            int attempts) {
  auto ref = registry::ParseRepoRef(config.repo);
  if (!ref.ok()) return ref.status();
  registry::ClientOptions opts = stores::RegistryClientOptions(config);
  opts.retry.max_attempts = attempts;
  opts.connect_timeout = timeout;
  opts.stall_timeout = timeout;
  opts.user_agent = "ocicached-health/0.1";
  auto client = registry::Client::Create(ref->registry, opts);
  if (!client.ok()) return client.status();
  std::shared_ptr<registry::Client> c = *std::move(client);
  return std::function<absl::Status()>([c] { return c->Ping(); });
}

absl::StatusOr<std::unique_ptr<CacheServer>> CacheServer::Start(stores::StoreSet stores,
                                                                 ServerOptions opts) {
  if (stores.store == nullptr) return absl::InvalidArgumentError("no store to serve");
  std::unique_ptr<CacheServer> s(new CacheServer());
  s->stores_ = std::move(stores);
  s->opts_ = std::move(opts);
  if (!s->opts_.probe) s->opts_.probe = DefaultProbe(s->stores_);
  if (s->stores_.admin == nullptr) {
    s->stores_.admin = std::make_unique<admin::LocalAdmin>(*s->stores_.store, s->stores_.tiers.local,
                                                           s->stores_.tiers.remote);
  }
  if (!s->opts_.upload_dir.empty()) {
    auto u = rpc::UploadStaging::Open(s->opts_.upload_dir);
    if (!u.ok()) return u.status();
    s->uploads_ = *std::move(u);
  }

  rpc::Backend& b = s->backend_;
  b.store = s->stores_.store.get();
  b.admin = s->stores_.admin.get();
  b.tiers = s->stores_.tiers;
  b.pool = s->stores_.pool;
  b.breaker = s->stores_.breaker;
  b.uploads = s->uploads_.get();
  b.auth = s->opts_.auth ? &*s->opts_.auth : nullptr;
  b.counters = &s->counters_;
  b.options = s->opts_.service;
  b.options.max_reply_bytes = static_cast<size_t>(s->opts_.max_message_bytes);
  b.started = absl::Now();
  s->entries_ = std::make_unique<service::EntriesService>(b);
  s->blobs_ = std::make_unique<service::BlobsService>(b);
  s->admin_ = std::make_unique<service::AdminService>(b);
  // Prefetching copies registry entries into the local tier: only with both.
  const size_t recall_keys =
      b.tiers.local != nullptr && b.tiers.remote != nullptr ? s->opts_.recall_keys : 0;
  reapi::InstanceOptions instance_opts = s->opts_.reapi_instances;
  instance_opts.recall.max_keys = recall_keys;
  instance_opts.recall.log = s->opts_.service.access_log;
  s->reapi_instances_ = std::make_unique<reapi::Instances>(b.store, s->opts_.open_instance,
                                                           std::move(instance_opts));
  s->reapi_backend_.base = &s->backend_;
  s->reapi_backend_.instances = s->reapi_instances_.get();
  s->reapi_backend_.options = s->opts_.reapi;
  s->reapi_capabilities_ = std::make_unique<reapi::CapabilitiesService>(s->reapi_backend_);
  s->reapi_action_cache_ = std::make_unique<reapi::ActionCacheService>(s->reapi_backend_);
  s->reapi_cas_ = std::make_unique<reapi::CasService>(s->reapi_backend_);
  s->reapi_bytestream_ = std::make_unique<reapi::ByteStreamService>(s->reapi_backend_);

  // Both are process-wide switches read by ServerBuilder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(s->opts_.listen, ServerCredentials(s->opts_.tls), &s->port_);
  builder.RegisterService(s->entries_.get());
  builder.RegisterService(s->blobs_.get());
  builder.RegisterService(s->admin_.get());
  builder.RegisterService(s->reapi_capabilities_.get());
  builder.RegisterService(s->reapi_action_cache_.get());
  builder.RegisterService(s->reapi_cas_.get());
  builder.RegisterService(s->reapi_bytestream_.get());
  {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(
        std::make_unique<UnparsedRequestInterceptorFactory>(&s->opts_.service.access_log));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  builder.SetMaxReceiveMessageSize(s->opts_.max_message_bytes);
  builder.SetMaxSendMessageSize(s->opts_.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, s->opts_.max_concurrent_streams);
  // gRPC sets SO_REUSEPORT by default: a second server on a busy port would
  // share it silently instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients ping every minute while calls are open (client::Dial); allow it.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(s->opts_.keepalive)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(s->opts_.keepalive_timeout)));
  // Pings are sent on connections that are idle of data too.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  grpc::ResourceQuota quota("ocicached");
  quota.SetMaxThreads(s->opts_.max_threads);
  // A fixed 4 MiB receive window per stream. With gRPC's default BDP probing
  // the window grows while an upload outpaces the registry behind us, and the
  // data waiting in it showed as 30-66 MiB of extra RSS during a 1 GiB
  // Blobs.Write (13-14 MiB with this, at the same speed on loopback).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 4 << 20);
  builder.SetResourceQuota(quota);
  // gRPC's sync server keeps 1 to 2 threads polling by default: a thread that
  // finishes a call while 2 others poll exits, and one that takes a call when
  // none is left polling starts a new thread, so steady concurrent calls
  // create and destroy a thread for a good share of them. Keeping up to 16
  // idle pollers (threads are still capped by max_threads) cut the server CPU
  // per warm Lookup by 30-40% in bench/server_bench.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 16);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    if (s->server_ != nullptr) s->server_->Shutdown();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", s->opts_.listen,
                                               " (address in use, or not a HOST:PORT)"));
  }
  s->address_ = absl::StrCat(HostPart(s->opts_.listen), ":", s->port_);
  if (!s->opts_.health_listen.empty()) {
    grpc::ServerBuilder hb;  // no services: the default health service only
    hb.AddListeningPort(s->opts_.health_listen, grpc::InsecureServerCredentials(), &s->health_port_);
    hb.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    s->health_server_ = hb.BuildAndStart();
    if (s->health_server_ == nullptr || s->health_port_ == 0) {
      s->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", s->opts_.health_listen,
                                                 " for health checks"));
    }
  }
  if (!s->opts_.http.listen.empty()) {
    httpcache::HandlerOptions ho = s->opts_.http_handler;
    ho.store_description = b.store->Describe();
    ho.started = b.started;
    ho.access_log = s->opts_.service.access_log;
    ho.recall.max_keys = recall_keys;
    ho.recall.local = b.tiers.local;  // small objects travel in one pack
    s->http_handler_ = std::make_unique<httpcache::Handler>(b.store, s->reapi_instances_.get(),
                                                            b.auth, b.breaker, std::move(ho));
    httpcache::HttpServerOptions hs = s->opts_.http;
    if (hs.cert_chain_pem.empty()) {
      hs.cert_chain_pem = s->opts_.tls.cert_chain_pem;
      hs.key_pem = s->opts_.tls.key_pem;
      hs.client_ca_pem = s->opts_.tls.client_ca_pem;
    }
    auto h = httpcache::HttpServer::Start(s->http_handler_.get(), std::move(hs));
    if (!h.ok()) {
      s->server_->Shutdown();
      return h.status();
    }
    s->http_ = *std::move(h);
  }
  if (!s->opts_.metrics_listen.empty()) {
    CacheServer* srv = s.get();
    auto m = MetricsHttpServer::Start(s->opts_.metrics_listen, [srv] {
      MetricsSnapshot snap;
      snap.serving = srv->serving();
      snap.uptime = absl::Now() - srv->backend_.started;
      if (srv->stores_.tiers.remote != nullptr) {
        snap.registry_requests = srv->stores_.tiers.remote->client().request_count();
      }
      if (srv->stores_.tiers.backlog != nullptr) {
        snap.registry_backlog = srv->stores_.tiers.backlog->size();
        snap.registry_backlog_blobs = srv->stores_.tiers.backlog->blob_count();
      }
      if (srv->stores_.tiers.local != nullptr) {
        auto size = srv->stores_.tiers.local->TotalSize();
        if (size.ok()) snap.local_tier_bytes = *size;
        snap.local_tier_limit_bytes = srv->stores_.tiers.local->max_bytes();
        snap.local_evicted_entries = srv->stores_.tiers.local->entries_evicted();
        snap.local_evicted_bytes = srv->stores_.tiers.local->bytes_evicted();
      }
      for (const auto& st : srv->reapi_instances_->AllStats()) {
        snap.reapi.push_back({st.instance, st.hits, st.misses});
      }
      snap.reapi_open_instances = static_cast<int64_t>(srv->reapi_instances_->open_count());
      snap.reapi_closed_instances = srv->reapi_instances_->closed_count();
      snap.resources = MeasureResources(
          srv->stores_.tiers.local != nullptr ? srv->stores_.tiers.local->dir() : std::string());
      std::string text = RenderMetrics(srv->counters_, snap);
      if (srv->http_handler_ != nullptr) text += srv->http_handler_->stats().RenderPrometheus();
      return text;
    });
    if (!m.ok()) {
      s->server_->Shutdown();
      if (s->http_ != nullptr) s->http_->Stop(absl::ZeroDuration());
      return m.status();
    }
    s->metrics_ = *std::move(m);
  }
  s->Probe();
  s->prober_ = std::thread([srv = s.get()] { srv->ProbeLoop(); });
  return s;
}

CacheServer::~CacheServer() { Shutdown(absl::ZeroDuration()); }

bool CacheServer::serving() {
  absl::MutexLock l(&mu_);
  return serving_;
}

ResourceUsage CacheServer::resources() {
  absl::MutexLock l(&mu_);
  return usage_;
}

void CacheServer::Probe() {
  const absl::Time probe_start = absl::Now();
  absl::Status backend = opts_.probe();
  // Calls stop waiting on a registry that fails its probe, and skip it until
  // it passes again. A slow answer is a hang that ended (cache::Breaker).
  if (stores_.breaker != nullptr) stores_.breaker->NoteProbe(backend, absl::Now() - probe_start);
  if (!backend.ok()) counters_.backend_errors.fetch_add(1, std::memory_order_relaxed);
  std::string dir = stores_.tiers.local != nullptr ? stores_.tiers.local->dir() : std::string();
  ResourceUsage usage = MeasureResources(dir);
  const int64_t floor = MinFreeBytes(usage, opts_.resources);
  if (usage.disk_free_bytes >= 0 && usage.disk_free_bytes < 2 * floor) {
    // The disk is (nearly) full. The local tier is a cache: make room before
    // writes fail, half-written uploads first.
    if (uploads_ != nullptr) uploads_->Expire(absl::Minutes(1));
    int64_t freed = 0;
    if (stores_.tiers.local != nullptr) {
      auto r = stores_.tiers.local->ReleaseSpace(2 * floor - usage.disk_free_bytes);
      if (r.ok()) freed = *r;
    }
    ResourceUsage after = MeasureResources(dir);
    // Said when something was freed (a disk that stays full shows as NOT_SERVING).
    if (opts_.service.access_log && (freed > 0 || after.disk_free_bytes > usage.disk_free_bytes)) {
      opts_.service.access_log(absl::StrCat(
          "disk low: ", usage.disk_free_bytes >> 20, " MiB free; evicted ", freed >> 20,
          " MiB from the local tier and expired idle uploads; now ", after.disk_free_bytes >> 20,
          " MiB free"));
    }
    usage = after;
  }
  absl::Status s = backend;
  if (s.ok()) s = CheckResources(usage, opts_.resources);
  bool ok = s.ok();
  bool changed;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    changed = !probed_ || ok != serving_;
    probed_ = true;
    serving_ = ok;
    usage_ = usage;
  }
  for (grpc::Server* srv : {server_.get(), health_server_.get()}) {
    auto* health = srv != nullptr ? srv->GetHealthCheckService() : nullptr;
    if (health == nullptr) continue;
    for (const char* name : kServices) health->SetServingStatus(name, ok);
  }
  if (changed && opts_.service.access_log) {
    opts_.service.access_log(ok ? std::string("health: SERVING")
                                : absl::StrCat("health: NOT_SERVING: ", s.message()));
  }
}

void CacheServer::ProbeLoop() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), opts_.health_interval)) return;
    }
    Probe();
  }
}

void CacheServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    stopping_ = true;
    stopped_ = true;
  }
  if (prober_.joinable()) prober_.join();
  if (metrics_ != nullptr) metrics_->Stop();
  // HTTP and gRPC stop taking requests together; each lets its requests in
  // flight finish within `grace`.
  std::thread http_stop;
  if (http_ != nullptr) http_stop = std::thread([this, grace] { http_->Stop(grace); });
  if (server_ != nullptr) {
    auto* health = server_->GetHealthCheckService();
    if (health != nullptr) health->Shutdown();  // NOT_SERVING to watchers from now on
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  if (health_server_ != nullptr) {
    health_server_->GetHealthCheckService()->Shutdown();
    health_server_->Shutdown(absl::ToChronoTime(absl::Now()));
    health_server_->Wait();
  }
  if (http_stop.joinable()) http_stop.join();
  // No call is in flight now: save what they used for the next server.
  for (absl::Status saved :
       {http_handler_ != nullptr ? http_handler_->SaveRecall(absl::Seconds(10)) : absl::OkStatus(),
        reapi_instances_ != nullptr ? reapi_instances_->SaveRecall(absl::Seconds(10))
                                    : absl::OkStatus()}) {
    if (!saved.ok() && opts_.service.access_log) {
      opts_.service.access_log(absl::StrCat("warning: ", saved.message()));
    }
  }
}

}  // namespace ocicache::server
