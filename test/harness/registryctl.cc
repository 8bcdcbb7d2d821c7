// registryctl: runs a test docker-registry (and, with --auth=token, its token issuer)
// for shell end-to-end tests.
//
//   registryctl --auth=none|htpasswd|token [--dir=DIR] [--user=U --password=P] [--read_only]
//               [--tls]
//
// Prints exactly one line, "127.0.0.1:PORT", to stdout once GET /v2/ answers, then runs
// until SIGTERM, SIGINT or SIGHUP, stops everything and exits 0. Details (root dir, log
// path, token realm, CA file) go to stderr. With --dir the storage stays in DIR
// (reusable by a later run); without it a temporary directory is used and removed at
// exit. With --tls the registry serves https only, with a certificate from a fresh test
// CA (made at each start) that clients must trust: ROOT/ca.pem (DIR/ca.pem with --dir).
// On a startup failure it prints the reason (with the registry log's tail) to stderr
// and exits 1.
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "test/harness/registry.h"

ABSL_FLAG(std::string, auth, "none", "none, htpasswd or token");
ABSL_FLAG(std::string, dir, "", "root directory (storage, config, log); empty: a temporary one");
ABSL_FLAG(std::string, user, "tester", "user name for htpasswd/token auth");
ABSL_FLAG(std::string, password, "s3cret", "password for htpasswd/token auth");
ABSL_FLAG(bool, read_only, false, "run the registry in read-only maintenance mode");
ABSL_FLAG(bool, access_log, false, "log one line per request in ROOT/registry.log (tests count them)");
ABSL_FLAG(bool, tls, false,
          "serve https with a new test CA's certificate (CA in ROOT/ca.pem, printed on stderr)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using ocicache::harness::RegistryProcess;

  RegistryProcess::Options options;
  std::string auth = absl::GetFlag(FLAGS_auth);
  if (auth == "none") {
    options.auth = RegistryProcess::Options::kNone;
  } else if (auth == "htpasswd") {
    options.auth = RegistryProcess::Options::kHtpasswd;
  } else if (auth == "token") {
    options.auth = RegistryProcess::Options::kToken;
  } else {
    std::cerr << "registryctl: --auth must be none, htpasswd or token, not \"" << auth << "\"\n";
    return 2;
  }
  options.root_dir = absl::GetFlag(FLAGS_dir);
  options.user = absl::GetFlag(FLAGS_user);
  options.password = absl::GetFlag(FLAGS_password);
  options.read_only = absl::GetFlag(FLAGS_read_only);
  options.tls = absl::GetFlag(FLAGS_tls);
  options.access_log = absl::GetFlag(FLAGS_access_log);

  // Block the stop signals before any thread starts, so every thread inherits the mask
  // and sigwait below is the only receiver. (The registry child resets its mask.)
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto registry = RegistryProcess::Start(options);
  if (!registry.ok()) {
    std::cerr << "registryctl: " << registry.status() << "\n";
    return 1;
  }
  std::cout << (*registry)->host() << std::endl;  // endl flushes: the caller waits for it.
  std::cerr << "registryctl: serving " << (*registry)->base_url() << ", root "
            << (*registry)->root_dir() << ", log " << (*registry)->log_path() << "\n";
  if (auto* issuer = (*registry)->token_issuer()) {
    std::cerr << "registryctl: token realm " << issuer->realm() << "\n";
  }
  if (options.tls) std::cerr << "registryctl: TLS CA " << (*registry)->ca_file() << "\n";

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "registryctl: signal " << sig << ", stopping\n";
  registry->reset();  // Stops the registry and issuer; removes a temporary root.
  return 0;
}
