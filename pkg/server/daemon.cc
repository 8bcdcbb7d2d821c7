#include "pkg/server/daemon.h"

#include <dirent.h>
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

namespace ocicache::server {
namespace {

void Say(absl::string_view line) { rpc::LogToStderr(line); }

absl::Status WritePortFile(const std::string& path, int port) {
  return base::WriteFileAtomically(path, absl::StrCat(port, "\n"));
}

// Removes a directory of plain files (a temporary upload staging directory).
void RemoveFlatDir(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

std::string TempBase() {
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp ? tmp : "/tmp";
}

// A staging directory named after this process, so a later server can tell
// that one left by a killed server from one still in use.
std::string TempUploadDir() {
  std::string tmpl = absl::StrCat(TempBase(), "/ocicached-uploads-", getpid(), "-XXXXXX");
  char* d = ::mkdtemp(tmpl.data());
  return d != nullptr ? std::string(d) : std::string();
}

// Removes the temporary staging directories of servers that died without
// cleaning up (SIGKILL, a crash): those whose process no longer exists.
int RemoveStaleUploadDirs() {
  const std::string base = TempBase();
  const std::string prefix = "ocicached-uploads-";
  std::vector<std::string> stale;
  if (DIR* d = ::opendir(base.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      absl::string_view name = e->d_name;
      if (!absl::ConsumePrefix(&name, prefix)) continue;
      size_t dash = name.find('-');
      int pid = 0;
      if (dash == absl::string_view::npos || !absl::SimpleAtoi(name.substr(0, dash), &pid) ||
          pid <= 0) {
        continue;
      }
      if (::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(base + "/" + e->d_name);
    }
    ::closedir(d);
  }
  for (const auto& dir : stale) RemoveFlatDir(dir);
  return static_cast<int>(stale.size());
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
  std::string temp_uploads;
  if (opts.server.upload_dir.empty()) {
    if (opts.store.dir.empty()) {
      if (int n = RemoveStaleUploadDirs(); n > 0) {
        Say(absl::StrCat("removed ", n, " upload staging directories of stopped servers"));
      }
      temp_uploads = TempUploadDir();
      opts.server.upload_dir = temp_uploads;
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
    if (!temp_uploads.empty()) RemoveFlatDir(temp_uploads);
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
  if (!temp_uploads.empty()) RemoveFlatDir(temp_uploads);
  Say("stopped");
  return 0;
}

}  // namespace ocicache::server
