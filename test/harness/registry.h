// Runs Debian's real docker-registry (distribution 2.8.2, /usr/bin/docker-registry) on
// 127.0.0.1 for integration tests, with no auth, htpasswd (bcrypt) or token auth; in
// token mode it also runs a TokenIssuer at the realm.
//
// Files in root_dir(): config.yml, registry.log (the registry's stdout and stderr),
// storage/ (blobs and manifests), htpasswd or token-cert.pem, http-secret, and with
// TLS ca.pem, server.pem and server-key.pem.
//
// TLS (Options.tls): each Start() makes a fresh test CA and a server certificate
// signed by it for IP:127.0.0.1 and DNS:localhost (test_pki.h), and the registry
// serves https only (a plain HTTP request gets Go's "400 Bad Request: Client sent an
// HTTP request to an HTTPS server"). Clients trust ca_file(). Restart() keeps them.
//
// The child runs in its own process group with PR_SET_PDEATHSIG=SIGKILL, so it dies with
// the test even when the test is killed. Note the Linux rule: the death signal follows the
// *thread* that forked, so call Start() and Restart() from a thread that outlives the
// registry (normally the test's main thread).
//
//   auto reg = RegistryProcess::Start({.auth = RegistryProcess::Options::kToken});
//   ASSERT_TRUE(reg.ok()) << reg.status();
//   std::string url = "http://" + (*reg)->host() + "/v2/";
//
//   auto tls = RegistryProcess::Start({.tls = true});
//   HttpDo({.url = (*tls)->base_url() + "/v2/", .ca_file = (*tls)->ca_file()});
#ifndef OCICACHE_TEST_HARNESS_REGISTRY_H_
#define OCICACHE_TEST_HARNESS_REGISTRY_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "test/harness/token_issuer.h"

namespace ocicache::harness {

class RegistryProcess {
 public:
  struct Options {
    enum Auth { kNone, kHtpasswd, kToken };
    Auth auth = kNone;
    std::string user = "tester";
    std::string password = "s3cret";
    bool read_only = false;  // storage.maintenance.readonly: writes answer 405.
    bool tls = false;        // Serve https with a test CA's certificate (see above).
    bool access_log = false;  // One line per request in registry.log (benchmarks count them).
    // Empty: a new temporary directory, removed by the destructor. Otherwise this
    // directory (created if missing, never removed), so a second RegistryProcess can
    // serve the same storage after the first one is gone.
    std::string root_dir;
    std::string binary = "/usr/bin/docker-registry";
    int start_timeout_ms = 10000;  // Bound on waiting for GET /v2/ to answer.
  };

  // Service and issuer names written to the config in token mode.
  static constexpr char kService[] = "ocicache-test-registry";
  static constexpr char kIssuer[] = "ocicache-test-issuer";
  // Realm of the htpasswd Basic challenge.
  static constexpr char kBasicRealm[] = "ocicache-test-registry";

  // Writes the config, starts the registry (and issuer) and waits until GET /v2/ answers
  // (200, or 401 with auth). On failure the error carries the tail of registry.log.
  static absl::StatusOr<std::unique_ptr<RegistryProcess>> Start(Options options);
  // Stops the registry and the issuer, then removes root_dir() if Start made it.
  ~RegistryProcess();
  RegistryProcess(const RegistryProcess&) = delete;
  RegistryProcess& operator=(const RegistryProcess&) = delete;

  std::string host() const;      // "127.0.0.1:PORT"; the same across Restart().
  std::string base_url() const;  // "http://127.0.0.1:PORT", or https:// with TLS.
  // With TLS, the test CA's certificate (root_dir()/ca.pem) that clients must trust;
  // empty without TLS.
  std::string ca_file() const;
  const std::string& root_dir() const { return root_dir_; }
  std::string log_path() const;  // root_dir()/registry.log
  const Options& options() const { return options_; }
  pid_t pid() const { return pid_; }  // 0 while stopped.
  // The issuer in token mode, else nullptr. Its realm is the one in the challenge.
  TokenIssuer* token_issuer() { return issuer_.get(); }

  // SIGTERM to the registry's process group, SIGKILL after 5 s; reaps it. Idempotent.
  // The token issuer keeps running.
  absl::Status Stop();
  // Stop(), then start again on the same port, storage and config.
  absl::Status Restart();

  // The last `max_bytes` of registry.log, for messages.
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  RegistryProcess() = default;
  absl::Status WriteConfig();
  absl::Status Launch();  // Forks the registry and waits for readiness.

  Options options_;
  std::string root_dir_;
  bool owns_root_dir_ = false;
  int port_ = 0;
  pid_t pid_ = 0;
  std::unique_ptr<TokenIssuer> issuer_;
};

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_REGISTRY_H_
