// ocicached's life: open the stores, serve them, say where, stop on a signal.
// cmd/ocicached/main.cc only copies its flags into DaemonOptions.
#ifndef OCICACHE_PKG_SERVER_DAEMON_H_
#define OCICACHE_PKG_SERVER_DAEMON_H_

#include <string>

#include "absl/time/time.h"
#include "pkg/stores/stores.h"
#include "pkg/server/server.h"

namespace ocicache::server {

struct DaemonOptions {
  stores::StoreConfig store;  // store.server is ignored: ocicached serves, it does not proxy
  ServerOptions server;
  // Also write the bound port (one line) here, atomically.
  std::string port_file;
  // The HTTP cache endpoint's bound port, likewise (written before port_file).
  std::string http_port_file;
  // Bearer tokens with scopes (service/auth.h); empty: no authentication.
  std::string tokens_file;
  // After SIGTERM/SIGINT: how long calls in flight may take before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  bool access_log = true;  // one line per call on stderr
  // PEM files for TLS on the port (tls.h): certificate chain and key, and for
  // mTLS the CA that client certificates must chain to. Empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

// Runs until SIGTERM or SIGINT: opens the stores, starts the server, prints
// "listening on HOST:PORT" on stdout, and on a signal stops accepting calls,
// drains them for shutdown_grace and returns 0. Staged uploads go to
// server.upload_dir, else <dir>/uploads, else a new temporary directory.
// Returns 1 (with one line on stderr) if the server cannot start.
// Blocks SIGTERM and SIGINT in the calling thread first: call it before
// starting other threads.
int RunDaemon(DaemonOptions opts);

}  // namespace ocicache::server

#endif  // OCICACHE_PKG_SERVER_DAEMON_H_
