#include "pkg/server/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "pkg/base/files.h"
#include "pkg/cache/breaker.h"
#include "pkg/reapi/resource.h"
#include "pkg/rpc/backend.h"
#include "pkg/server/temp_uploads.h"

namespace ocicache::server {
namespace {

void Say(absl::string_view line) { rpc::LogToStderr(line); }

absl::Status WritePortFile(const std::string& path, int port) {
  return base::WriteFileAtomically(path, absl::StrCat(port, "\n"));
}

}  // namespace

int RunDaemon(DaemonOptions opts) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // Every thread started from here on (gRPC's too) inherits the mask, so the
  // signals are only taken by sigwait below.
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  opts.store.server.clear();
  auto tls = LoadTlsConfig(opts.tls_cert_file, opts.tls_key_file, opts.tls_client_ca_file);
  if (!tls.ok()) {
    Say(absl::StrCat("error: ", tls.status().message()));
    return 1;
  }
  opts.server.tls = *std::move(tls);
  for (const std::string& name : opts.server.reapi_instances.allowed_instances) {
    if (absl::Status s = reapi::ValidateInstanceName(name); !s.ok()) {
      Say(absl::StrCat("error: --reapi_instances: ", s.message()));
      return 1;
    }
  }
  stores::OpenOptions open;
  open.profile = stores::Profile::kServer;
  open.guard_registry_only = true;
  if (!opts.store.repo.empty()) {
    // While the registry is out, one call a second may check with a quick
    // ping whether it is back (cache::Breaker), besides the health prober.
    auto recheck = RegistryProbe(opts.store, absl::Seconds(1), /*attempts=*/1);
    if (!recheck.ok()) {
      Say(absl::StrCat("error: ", recheck.status().message()));
      return 1;
    }
    cache::BreakerOptions bopts;
    bopts.recheck = *std::move(recheck);
    open.breaker =
        std::make_shared<cache::Breaker>(absl::StrCat("registry ", opts.store.repo), bopts);
  }
  auto stores = stores::OpenStores(opts.store, open);
  if (!stores.ok()) {
    Say(absl::StrCat("error: ", stores.status().message()));
    return 1;
  }
  std::string describe = stores->store->Describe();
  // Without a directory tier, uploads are staged in a temporary directory
  // that lives as long as the process (so they resume across broken streams,
  // not across restarts).
  std::unique_ptr<TempUploadDir> temp_uploads;  // removed on every return
  if (opts.server.upload_dir.empty()) {
    if (opts.store.dir.empty()) {
      if (int n = RemoveAbandonedUploadDirs(); n > 0) {
        Say(absl::StrCat("removed ", n, " upload staging directories of stopped servers"));
      }
      auto dir = TempUploadDir::Create();
      if (dir.ok()) {
        temp_uploads = *std::move(dir);
        opts.server.upload_dir = temp_uploads->path();
      } else {
        Say(absl::StrCat("warning: ", dir.status().message(),
                         "; uploads are not staged, so a broken stream starts over"));
      }
    } else {
      opts.server.upload_dir = absl::StrCat(opts.store.dir, "/uploads");
    }
  }
  if (!opts.tokens_file.empty()) {
    auto auth = rpc::TokenAuth::FromFile(opts.tokens_file);
    if (!auth.ok()) {
      Say(absl::StrCat("error: ", auth.status().message()));
      return 1;
    }
    opts.server.auth = *std::move(auth);
  }
  if (!opts.store.repo.empty() && !opts.server.probe) {
    auto probe = RegistryProbe(opts.store, absl::Seconds(5));
    if (!probe.ok()) {
      Say(absl::StrCat("error: ", probe.status().message()));
      return 1;
    }
    opts.server.probe = *std::move(probe);
  }
  if (!opts.server.open_instance) {
    opts.server.open_instance = InstanceOpener(opts.store, stores->breaker);
  }
  if (opts.access_log && !opts.server.service.access_log) {
    opts.server.service.access_log = rpc::LogToStderr;
  }
  auto server = CacheServer::Start(*std::move(stores), opts.server);
  if (!server.ok()) {
    Say(absl::StrCat("error: ", server.status().message()));
      return 1;
  }
  std::printf("listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  // The HTTP port file first: a script that waits for --port_file finds both.
  if (!opts.http_port_file.empty() && (*server)->http_port() != 0) {
    if (absl::Status s = WritePortFile(opts.http_port_file, (*server)->http_port()); !s.ok()) {
      Say(absl::StrCat("error: ", s.message()));
      (*server)->Shutdown(absl::ZeroDuration());
      return 1;
    }
  }
  if (!opts.port_file.empty()) {
    if (absl::Status s = WritePortFile(opts.port_file, (*server)->port()); !s.ok()) {
      Say(absl::StrCat("error: ", s.message()));
      (*server)->Shutdown(absl::ZeroDuration());
      return 1;
    }
  }
  const char* security = opts.server.tls.cert_chain_pem.empty() ? "plaintext"
                         : opts.server.tls.client_ca_pem.empty() ? "TLS"
                                                                 : "TLS, client certificates required";
  Say(absl::StrCat("serving ", describe, " on ", (*server)->address(), " (", security, ", ",
                   (*server)->serving() ? "SERVING" : "NOT_SERVING", ")"));
  if ((*server)->http_port() != 0) {
    Say(absl::StrCat("http cache on ", (*server)->http_url(), " (docs/HTTP.md)"));
  }
  if ((*server)->health_port() != 0) {
    std::string host = opts.server.health_listen.substr(0, opts.server.health_listen.rfind(':'));
    Say(absl::StrCat("health (plaintext, grpc.health.v1 only) on ", host, ":",
                     (*server)->health_port()));
  }
  if ((*server)->metrics_port() != 0) {
    std::string host = opts.server.metrics_listen.substr(0, opts.server.metrics_listen.rfind(':'));
    Say(absl::StrCat("metrics on http://", host, ":", (*server)->metrics_port(), "/metrics"));
  }

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  Say(absl::StrCat("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   ", stopping (calls in flight get ", absl::FormatDuration(opts.shutdown_grace),
                   ")"));
  (*server)->Shutdown(opts.shutdown_grace);
  server->reset();
  Say("stopped");
  return 0;
}

}  // namespace ocicache::server
