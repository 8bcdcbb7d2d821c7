// What one process learnt about a registry's authentication, kept for the next
// process on this machine: the registry's challenge (so the first request goes
// out with credentials instead of collecting a 401 first) and the Bearer tokens
// fetched, per user, until shortly before they expire (so a short-lived process
// such as `ocicache-go` per ko binary or `ocicache gocacheprog` per build does
// not fetch the token again). Two round trips per process on a token registry.
//
// One JSON file per registry in a directory of the user's (0700; the files
// 0600, written atomically). A file another user could have written (not ours,
// or group/world writable) is ignored: a planted challenge could send our
// credentials to another realm. Concurrent processes: the last writer wins,
// which only costs another fetch. Credentials themselves are never written.
#ifndef OCICACHE_PKG_REGISTRY_AUTH_CACHE_H_
#define OCICACHE_PKG_REGISTRY_AUTH_CACHE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace ocicache::registry::internal {

// The file's contents. Format (version 1):
//   {"version":1,"registry":R,"salt":HEX,"challenge":{"scheme":S,"params":{...}},
//    "tokens":[{"user":U,"key":K,"token":T,"expires":UNIX_SECONDS},...]}
// U names the credentials a token was fetched with: a salted SHA-256 of user
// name, password and identity token (AuthCacheUser), so a process with other
// credentials (a wrong password) never uses it.
// Only registries that ask for credentials are kept (anonymous access costs
// no round trip to learn).
struct AuthCacheState {
  bool known = false;  // a challenge was learnt
  std::string salt;    // 32 hex digits
  std::optional<std::pair<std::string, std::map<std::string, std::string>>> challenge;
  struct Entry {
    std::string user;
    std::string key;
    std::string token;
    absl::Time expiry;
  };
  std::vector<Entry> tokens;
};

// A new random salt (32 hex digits).
std::string NewAuthCacheSalt();
// The "user" of tokens fetched with these credentials, under `salt`.
std::string AuthCacheUser(const std::string& salt, const std::string& username,
                          const std::string& password, const std::string& identity_token);

// The file of `registry` in `dir`.
std::string AuthCachePath(const std::string& dir, const std::string& registry);
// Reads it; nothing (known = false) when absent, unreadable, not ours, open to
// others or malformed, or written for another registry. Expired tokens are left out.
AuthCacheState LoadAuthCache(const std::string& dir, const std::string& registry,
                             absl::Time now);
// Writes it (best effort: a cache that cannot be written is only slower).
void SaveAuthCache(const std::string& dir, const std::string& registry,
                   const AuthCacheState& state, absl::Time now);

}  // namespace ocicache::registry::internal

#endif  // OCICACHE_PKG_REGISTRY_AUTH_CACHE_H_
