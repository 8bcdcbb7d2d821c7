#include "pkg/rpc/auth.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "pkg/oci/digest.h"

namespace ocicache::rpc {
namespace {

constexpr size_t kMinTokenBytes = 16;

}  // namespace

absl::StatusOr<TokenAuth> TokenAuth::Parse(absl::string_view text) {
  TokenAuth auth;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields =
        absl::StrSplit(absl::StripAsciiWhitespace(line), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("tokens line ", n, ": want \"TOKEN SCOPE\""));
    }
    if (fields[0].size() < kMinTokenBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens line ", n, ": a token needs at least ", kMinTokenBytes, " characters"));
    }
    Access access;
    if (fields[1] == "read" || fields[1] == "ro") {
      access = Access::kRead;
    } else if (fields[1] == "write" || fields[1] == "rw") {
      access = Access::kWrite;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens line ", n, ": scope \"", fields[1], "\" is not read or write"));
    }
    auth.by_hash_[oci::Digest::Of(fields[0]).hex()] = access;
  }
  if (auth.by_hash_.empty()) return absl::InvalidArgumentError("the tokens file has no token");
  return auth;
}

absl::StatusOr<TokenAuth> TokenAuth::FromFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::InvalidArgumentError(absl::StrCat("cannot read tokens file ", path));
  std::stringstream ss;
  ss << f.rdbuf();
  auto auth = Parse(ss.str());
  if (!auth.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", auth.status().message()));
  }
  return auth;
}

absl::Status TokenAuth::Check(absl::string_view authorization, Access need) const {
  absl::string_view token = absl::StripAsciiWhitespace(authorization);
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError("this server needs a token (authorization: Bearer TOKEN)");
  }
  auto it = by_hash_.find(oci::Digest::Of(absl::StripAsciiWhitespace(token)).hex());
  if (it == by_hash_.end()) return absl::UnauthenticatedError("unknown token");
  if (need == Access::kWrite && it->second != Access::kWrite) {
    return absl::PermissionDeniedError("the token is read-only");
  }
  return absl::OkStatus();
}

}  // namespace ocicache::rpc
