// Registry authentication: the challenge a registry sends (WWW-Authenticate),
// Basic credentials, and the Bearer token flow of the distribution spec:
//
//   1. A request without (good) credentials gets 401 and a challenge
//      `Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull"`.
//   2. The client asks the realm for a token:
//        GET <realm>?service=reg&scope=repository:a/b:pull&scope=...   (Basic creds if any)
//      or, holding an identity token (OAuth2 refresh token),
//        POST <realm>  grant_type=refresh_token&refresh_token=...&service=&scope=
//      and reads {"token"|"access_token", "expires_in" (default 60 s)}.
//   3. Requests carry `Authorization: Bearer <token>`; tokens are cached per scope
//      set until shortly before they expire.
#ifndef OCICACHE_PKG_REGISTRY_AUTH_H_
#define OCICACHE_PKG_REGISTRY_AUTH_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/registry/auth_cache.h"
#include "pkg/registry/credentials.h"
#include "pkg/registry/transport.h"

namespace ocicache::registry::internal {

struct Challenge {
  std::string scheme;                         // lowercase: "basic", "bearer", ...
  std::map<std::string, std::string> params;  // lowercase keys: realm, service, scope
  std::string Param(const std::string& key) const;
};

// Every challenge in one WWW-Authenticate value (there may be several).
std::vector<Challenge> ParseWwwAuthenticate(absl::string_view value);
// The challenge to answer among all WWW-Authenticate values: Bearer over Basic.
std::optional<Challenge> PickChallenge(const std::vector<std::string>& values);

// "repository:<repo>:pull" and "repository:<repo>:pull,push".
std::string PullScope(absl::string_view repo);
std::string PushScope(absl::string_view repo);
// Scopes in one canonical form, for use as a cache key and in requests: the
// actions of one resource merged and sorted, then the scopes sorted.
std::vector<std::string> NormalizeScopes(std::vector<std::string> scopes);

struct Token {
  std::string value;
  absl::Time expiry;  // when to stop using it (a little before it expires)
};
// A token endpoint's JSON answer. Missing expires_in means 60 s.
absl::StatusOr<Token> ParseTokenResponse(absl::string_view body, absl::Time now);

// "application/x-www-form-urlencoded" / query-string escaping.
std::string UrlEncode(absl::string_view s);

// Answers challenges for one registry. Thread-safe.
class Authenticator {
 public:
  // Sends a request without auth, retrying temporary failures.
  using SendFn = std::function<absl::StatusOr<HttpResponse>(const HttpRequest&)>;
  // Resolves the credentials to use (called at most once, when first needed).
  using CredentialsFn = std::function<absl::StatusOr<Credentials>()>;

  // With `cache_dir`, what it learns is kept there for the next process, and
  // what an earlier one kept is used (auth_cache.h).
  Authenticator(std::string registry, SendFn send, CredentialsFn credentials,
                std::string cache_dir = "");

  // Whether a challenge (or its absence) is known, from a ping, a 401, or an
  // anonymous request the registry answered.
  bool known() const;
  // Records what GET /v2/ said: its challenge, or none (anonymous access).
  void SetChallenge(std::optional<Challenge> c);
  // A request sent without credentials got an answer other than 401: anonymous
  // access works (until a 401 says otherwise). Keeps a challenge learned meanwhile.
  void NoteAnonymousOk();

  // The Authorization header value for a request needing `scopes`, "" for none.
  // May ask the token realm for a token.
  absl::StatusOr<std::string> Authorization(const std::vector<std::string>& scopes);

  // A request with `scopes`, sent with the Authorization value `sent` ("" for
  // none), got 401 carrying `headers`. Learns the challenge, adds the scopes it
  // names, drops the cached token if it was the one sent. True when one more try
  // with new credentials can help.
  bool OnUnauthorized(const HttpHeaders& headers, std::vector<std::string>* scopes,
                      absl::string_view sent);

  // Tokens fetched from the realm so far.
  int64_t tokens_fetched() const;

 private:
  absl::StatusOr<Credentials> GetCredentials();
  absl::StatusOr<Token> FetchToken(const Challenge& c, const Credentials& creds,
                                   const std::vector<std::string>& scopes);
  std::string CacheKey(const Challenge& c, const std::vector<std::string>& scopes) const;
  // Writes what is known to cache_dir_ (no-op without one). Not under mu_.
  void Persist();

  const std::string registry_;
  const SendFn send_;
  const CredentialsFn credentials_fn_;
  const std::string cache_dir_;

  mutable absl::Mutex mu_;
  bool known_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Challenge> challenge_ ABSL_GUARDED_BY(mu_);
  // challenge_ came from cache_dir_ and has not been confirmed by the registry.
  bool challenge_kept_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Token> tokens_ ABSL_GUARDED_BY(mu_);
  // Tokens an earlier process kept (cache_dir_), any user's; and the user the
  // tokens_ of this process belong to, once credentials are resolved.
  std::vector<AuthCacheState::Entry> kept_ ABSL_GUARDED_BY(mu_);
  std::string user_ ABSL_GUARDED_BY(mu_);
  std::string salt_ ABSL_GUARDED_BY(mu_);  // of cache_dir_'s file (AuthCacheUser)
  int64_t tokens_fetched_ ABSL_GUARDED_BY(mu_) = 0;

  // Serializes token fetches so concurrent callers of one scope fetch once.
  absl::Mutex fetch_mu_;

  absl::Mutex creds_mu_;
  std::optional<absl::StatusOr<Credentials>> creds_ ABSL_GUARDED_BY(creds_mu_);
};

}  // namespace ocicache::registry::internal

#endif  // OCICACHE_PKG_REGISTRY_AUTH_H_
