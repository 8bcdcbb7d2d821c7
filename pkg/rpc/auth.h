// Bearer tokens for the ocicache.v1 services, each with a scope: "read" allows
// the calls that change nothing (Lookup, BatchLookup, List, Stat, Read,
// QueryWrite, Stats), "write" allows every call. Clients send
// "authorization: Bearer TOKEN" metadata. Without a token the call is
// UNAUTHENTICATED; a read token on a write call is PERMISSION_DENIED. Health
// and reflection stay open (probes, grpcurl).
//
// Tokens file: one "TOKEN SCOPE" per line; '#' starts a comment; tokens are at
// least 16 characters. Only SHA-256 hashes of the tokens are kept in memory and
// compared. gRPC on the port is plaintext: tokens protect against mistakes and
// casual access on a trusted network, not against an eavesdropper.
#ifndef OCICACHE_PKG_RPC_AUTH_H_
#define OCICACHE_PKG_RPC_AUTH_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ocicache::rpc {

enum class Access { kRead, kWrite };

class TokenAuth {
 public:
  // Parses a tokens file's text; InvalidArgument naming the line otherwise.
  static absl::StatusOr<TokenAuth> Parse(absl::string_view text);
  static absl::StatusOr<TokenAuth> FromFile(const std::string& path);

  size_t size() const { return by_hash_.size(); }
  // `authorization` is the metadata value ("Bearer TOKEN"), empty if absent.
  absl::Status Check(absl::string_view authorization, Access need) const;

 private:
  std::map<std::string, Access> by_hash_;  // hex sha256(token) -> scope
};

}  // namespace ocicache::rpc

#endif  // OCICACHE_PKG_RPC_AUTH_H_
