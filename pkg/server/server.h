// ocicached's gRPC server: the ocicache.v1 services over a set of stores, the
// standard health service and server reflection (grpcurl works), on one port.
//
// Threads: gRPC's synchronous server runs each call on a thread of its pool
// (at most ServerOptions::max_threads; beyond that calls get
// RESOURCE_EXHAUSTED). One more thread probes the backend every
// health_interval: the health status (service "" and each ocicache.v1
// service) is SERVING while the probe succeeds (the registry answers a ping,
// or, without a registry, the local directory is usable) and NOT_SERVING
// otherwise, and also NOT_SERVING while the process is near its fd limit or
// the local tier's disk is full (resources.h). Calls are still answered while
// NOT_SERVING: a tiered store then works from its local tier.
#ifndef OCICACHE_PKG_SERVER_SERVER_H_
#define OCICACHE_PKG_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/server.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/httpcache/handler.h"
#include "pkg/httpcache/server.h"
#include "pkg/stores/stores.h"
#include "pkg/reapi/instance.h"
#include "pkg/reapi/services.h"
#include "pkg/server/metrics.h"
#include "pkg/server/resources.h"
#include "pkg/server/tls.h"
#include "pkg/rpc/backend.h"
#include "pkg/service/services.h"
#include "pkg/rpc/uploads.h"

namespace ocicache::server {

// The documented default address of ocicached.
inline constexpr char kDefaultListen[] = "127.0.0.1:9092";

struct ServerOptions {
  // HOST:PORT; port 0 picks a free port (see CacheServer::address()).
  std::string listen = kDefaultListen;
  // Largest message received or sent; Read/Write chunks are 1 MiB.
  int max_message_bytes = 16 << 20;
  // HTTP/2 streams per connection.
  int max_concurrent_streams = 100;
  // Threads serving calls (each call in flight holds one).
  int max_threads = 64;
  absl::Duration health_interval = absl::Seconds(5);
  // The server sends a keepalive ping on each connection this often and drops
  // one whose ping gets no answer within keepalive_timeout: a call whose
  // client vanished (or whose connection reset went unseen) ends, and frees
  // its thread and any upload it held open.
  absl::Duration keepalive = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Where resumable uploads are staged; empty: no resumable uploads.
  std::string upload_dir;
  rpc::ServiceOptions service;
  // Health probe; default: Ping the registry, or check the local directory.
  std::function<absl::Status()> probe;
  // Besides the probe, health needs fds and local disk space within these.
  ResourceLimits resources;
  // Bearer tokens (service/auth.h); unset: no authentication.
  std::optional<rpc::TokenAuth> auth;
  // HOST:PORT for the Prometheus endpoint (metrics.h); empty: none.
  std::string metrics_listen;
  // REAPI: existence and completeness caches, batch limits.
  reapi::InstanceOptions reapi_instances;
  // Recall lists (cache/recall.h): per namespace of HTTP objects and per REAPI
  // instance, the keys clients used are saved at Shutdown, at most this many,
  // and prefetched by the next server. Only with both a local tier and a
  // registry (where a prefetch has somewhere to copy to); 0: off. Overrides
  // the recall options of http_handler and reapi_instances.
  size_t recall_keys = 0;
  reapi::ReapiOptions reapi;
  // Opens the store of a non-empty REAPI instance name; unset: only the
  // empty instance name is served. See InstanceOpener.
  reapi::StoreOpener open_instance;
  // TLS (and mTLS) on the port (tls.h); no certificate: plaintext.
  TlsConfig tls;
  // The HTTP cache endpoint (pkg/httpcache, docs/HTTP.md): empty http.listen:
  // none. Its TLS is the gRPC port's (`tls`) unless set here.
  httpcache::HttpServerOptions http;
  httpcache::HandlerOptions http_handler;
  // HOST:PORT of a second, plaintext port that serves only grpc.health.v1 (for
  // probes that cannot speak TLS, e.g. Kubernetes' grpc probes); empty: none.
  std::string health_listen;
};

class CacheServer {
 public:
  // Serves `stores` (owned from now on) until Shutdown.
  static absl::StatusOr<std::unique_ptr<CacheServer>> Start(stores::StoreSet stores,
                                                            ServerOptions opts);
  ~CacheServer();  // Shutdown(zero grace) if still running.
  CacheServer(const CacheServer&) = delete;
  CacheServer& operator=(const CacheServer&) = delete;

  int port() const { return port_; }
  // HOST:PORT with the bound port, e.g. "127.0.0.1:40123".
  const std::string& address() const { return address_; }
  // The metrics endpoint's port; 0 without one.
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  // The HTTP cache endpoint's port and URL; 0 and "" without one.
  int http_port() const { return http_ ? http_->port() : 0; }
  std::string http_url() const { return http_ ? http_->url() : std::string(); }
  // The health-only port; 0 without one.
  int health_port() const { return health_port_; }
  cache::Store& store() { return *stores_.store; }
  const rpc::Counters& counters() const { return counters_; }
  // The last probe's result.
  bool serving();
  // What the last probe measured.
  ResourceUsage resources();

  // Stops accepting calls, lets calls in flight finish for `grace`, cancels the
  // rest and waits for them. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  CacheServer() = default;
  void ProbeLoop();
  void Probe();

  stores::StoreSet stores_;
  ServerOptions opts_;
  std::unique_ptr<rpc::UploadStaging> uploads_;
  rpc::Counters counters_;
  rpc::Backend backend_;
  std::unique_ptr<service::EntriesService> entries_;
  std::unique_ptr<service::BlobsService> blobs_;
  std::unique_ptr<service::AdminService> admin_;
  std::unique_ptr<reapi::Instances> reapi_instances_;
  reapi::ReapiBackend reapi_backend_;
  std::unique_ptr<reapi::CapabilitiesService> reapi_capabilities_;
  std::unique_ptr<reapi::ActionCacheService> reapi_action_cache_;
  std::unique_ptr<reapi::CasService> reapi_cas_;
  std::unique_ptr<reapi::ByteStreamService> reapi_bytestream_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<httpcache::Handler> http_handler_;
  std::unique_ptr<httpcache::HttpServer> http_;
  std::unique_ptr<MetricsHttpServer> metrics_;
  std::unique_ptr<grpc::Server> health_server_;  // health_listen
  int health_port_ = 0;
  int port_ = 0;
  std::string address_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool probed_ ABSL_GUARDED_BY(mu_) = false;
  ResourceUsage usage_ ABSL_GUARDED_BY(mu_);
  std::thread prober_;
};

// The stores of REAPI instance "a/b" for a server configured with `config`:
// repository REPO/a/b and directory DIR/instances/a/b/_layout (each only if the
// server has a repository or a directory), opened as stores::OpenStores does. The
// instance's layout gets the same bound (config.max_local_bytes) as the default
// one, each on its own. With `breaker` (the
// server's, fed by its health probe) every instance's registry shares it, and
// a registry-only instance sits behind it (cache::GuardedStore).
reapi::StoreOpener InstanceOpener(const stores::StoreConfig& config,
                                  std::shared_ptr<cache::Breaker> breaker = nullptr);

// The default health probe for a set of stores: the registry's Ping (with the
// store's own client and its retries), else the local directory.
std::function<absl::Status()> DefaultProbe(const stores::StoreSet& stores);

// A probe for the registry `config` names with its own client, bounded in
// time: `attempts` tries, each abandoned after `timeout` without an answer, so a
// registry that hangs turns the server NOT_SERVING instead of stalling the probe.
absl::StatusOr<std::function<absl::Status()>> RegistryProbe(const stores::StoreConfig& config,
                                                            absl::Duration timeout,
                                                            int attempts = 2);

}  // namespace ocicache::server

#endif  // OCICACHE_PKG_SERVER_SERVER_H_
