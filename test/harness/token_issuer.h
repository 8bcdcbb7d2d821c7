// A Docker-registry token issuer (the "realm" of `auth.token`) for tests: an HTTP
// server on 127.0.0.1 answering GET /token?service=..&scope=.. with an RS256 JWT that
// docker-registry 2.8.2 accepts.
//
// Policy (deliberately simple and strict, so client bugs show):
// - Basic credentials must match Options.user/password; wrong ones get 401 with
//   `WWW-Authenticate: Basic realm="ocicache-test-token-issuer"`.
// - Missing credentials get the same 401, unless Options.allow_anonymous is set: then
//   the token carries no access at all (every repository operation is then denied).
// - An authenticated user gets exactly the actions it asks for, on every scope.
// - After authentication: `service`, when given, must equal Options.service (else 400;
//   it may be omitted), and every scope must parse as type:name:actions (else 400).
// - Only GET /token; anything else is 404 (docker's own clients fall back to GET on 404).
// The key is an RSA-2048 key made at Start, with a self-signed certificate that the
// registry's `rootcertbundle` points at; the JWT names it by its libtrust key id (`kid`).
#ifndef OCICACHE_TEST_HARNESS_TOKEN_ISSUER_H_
#define OCICACHE_TEST_HARNESS_TOKEN_ISSUER_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "test/harness/fake_http.h"

namespace ocicache::harness {

// RFC 4648 base32 (A-Z2-7) without '=' padding.
std::string Base32NoPadding(absl::string_view data);

// The libtrust key id of a DER SubjectPublicKeyInfo: base32 of the first 30 bytes of its
// SHA-256, 48 characters in 12 groups of 4 joined by ':'.
std::string LibtrustKeyId(absl::string_view spki_der);

// One entry of the JWT `access` claim.
struct TokenAccess {
  std::string type;  // "repository", "registry", ...
  std::string name;  // "a/b", "catalog"
  std::vector<std::string> actions;
};

// Parses scope strings "type:name:action1,action2"; one string may hold several scopes
// separated by spaces. The name is everything between the first and the last ':'.
absl::StatusOr<std::vector<TokenAccess>> ParseScopes(const std::vector<std::string>& scopes);

class TokenIssuer {
 public:
  struct Options {
    std::string user = "tester";
    std::string password = "s3cret";
    std::string service = "ocicache-test-registry";  // The JWT `aud`.
    std::string issuer = "ocicache-test-issuer";     // The JWT `iss`.
    int expires_in_s = 300;
    bool allow_anonymous = false;  // See the policy above.
  };

  // Generates the key and certificate and starts serving.
  static absl::StatusOr<std::unique_ptr<TokenIssuer>> Start(Options options);
  ~TokenIssuer();

  std::string realm() const;  // "http://127.0.0.1:PORT/token"
  const Options& options() const { return options_; }
  const std::string& certificate_pem() const { return cert_pem_; }
  const std::string& key_id() const { return key_id_; }
  // Tokens handed out so far (answers with status 200).
  int tokens_issued() const { return tokens_issued_.load(); }
  // The underlying server, for its request log.
  FakeHttpServer& server() { return *server_; }

  // Signs a JWT for `subject` with this issuer's key, iss and aud. Tests use it to make
  // tokens the endpoint would not give (expired ones, wider scopes).
  absl::StatusOr<std::string> Sign(absl::string_view subject, const std::vector<TokenAccess>& access,
                                   absl::Time issued_at, absl::Duration ttl) const;

 private:
  struct Key;
  TokenIssuer() = default;
  FakeResponse Handle(const FakeRequest& req);

  Options options_;
  std::unique_ptr<Key> key_;
  std::string cert_pem_;
  std::string key_id_;
  std::atomic<int> tokens_issued_{0};
  std::unique_ptr<FakeHttpServer> server_;  // Last: stopped first on destruction.
};

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_TOKEN_ISSUER_H_
