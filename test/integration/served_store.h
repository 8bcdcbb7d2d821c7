// Test helpers: an in-process ocicached (server::CacheServer on 127.0.0.1:0)
// and a cache::Store that talks to it through the real gRPC client and owns it,
// so the Store conformance suite runs through the whole RPC path.
#ifndef OCICACHE_TEST_INTEGRATION_SERVED_STORE_H_
#define OCICACHE_TEST_INTEGRATION_SERVED_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pkg/stores/stores.h"
#include "pkg/client/grpc_store.h"
#include "pkg/server/server.h"

namespace ocicache::testing {

// A new directory under $TEST_TMPDIR (or /tmp).
std::string TempDir(const std::string& prefix = "served");

// Starts a server over `stores` on 127.0.0.1:0 with uploads staged in a temp
// directory; opts.listen and opts.upload_dir are filled in when empty.
absl::StatusOr<std::unique_ptr<server::CacheServer>> StartServer(stores::StoreSet stores,
                                                                 server::ServerOptions opts = {});

// A GrpcStore that owns the server it talks to.
class ServedStore : public client::GrpcStore {
 public:
  explicit ServedStore(std::unique_ptr<server::CacheServer> server,
                       client::GrpcStoreOptions opts = {})
      : client::GrpcStore(client::Dial(server->address()), server->address(), opts),
        server_(std::move(server)) {}
  ~ServedStore() override { server_->Shutdown(absl::Seconds(1)); }
  server::CacheServer& server() { return *server_; }

 private:
  std::unique_ptr<server::CacheServer> server_;
};

// A server over a fresh LayoutStore, and the client store for it. Like
// ocicached, it contacts no registry on a caller's behalf but `allowed_registries`.
absl::StatusOr<std::unique_ptr<ServedStore>> ServeLayout(
    server::ServerOptions opts = {}, std::vector<std::string> allowed_registries = {});
// A server over the stores `config` names (stores::OpenStores).
absl::StatusOr<std::unique_ptr<ServedStore>> ServeConfig(const stores::StoreConfig& config,
                                                        server::ServerOptions opts = {});

}  // namespace ocicache::testing

#endif  // OCICACHE_TEST_INTEGRATION_SERVED_STORE_H_
