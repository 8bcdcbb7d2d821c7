#include "pkg/registry/auth_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pkg/base/files.h"
#include "pkg/oci/digest.h"

namespace ocicache::registry::internal {

namespace {

constexpr int kVersion = 1;
constexpr size_t kMaxFileBytes = 1 << 20;
constexpr size_t kMaxTokens = 64;

// Only what this user alone could have written.
bool OursAlone(const struct stat& st) {
  return st.st_uid == ::geteuid() && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

}  // namespace

std::string NewAuthCacheSalt() {
  char raw[16] = {0};
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!::read(fd, raw, sizeof raw);
    ::close(fd);
  }
  return absl::BytesToHexString(absl::string_view(raw, sizeof raw));
}

std::string AuthCacheUser(const std::string& salt, const std::string& username,
                          const std::string& password, const std::string& identity_token) {
  return oci::Digest::Of(absl::StrCat("ocicache auth cache v1\n", salt, "\n", username.size(),
                                      ":", username, "\n", password.size(), ":", password,
                                      "\n", identity_token))
      .hex();
}

std::string AuthCachePath(const std::string& dir, const std::string& registry) {
  return absl::StrCat(dir, "/", oci::Digest::Of(registry).hex().substr(0, 32), ".json");
}

AuthCacheState LoadAuthCache(const std::string& dir, const std::string& registry,
                             absl::Time now) {
  AuthCacheState out;
  if (dir.empty()) return out;
  struct stat dst;
  if (::stat(dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode) || !OursAlone(dst)) return out;
  const std::string path = AuthCachePath(dir, registry);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return out;
  struct stat st;
  std::string text;
  // Tokens are secrets: a file others may read was not written by us.
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && OursAlone(st) &&
      (st.st_mode & (S_IRGRP | S_IROTH)) == 0 && static_cast<size_t>(st.st_size) <= kMaxFileBytes) {
    text.resize(static_cast<size_t>(st.st_size));
    ssize_t n = ::read(fd, text.data(), text.size());
    text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  if (text.empty()) return out;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("version", 0) != kVersion ||
      !j.contains("registry") || !j["registry"].is_string() ||
      j["registry"].get<std::string>() != registry) {
    return out;
  }
  if (!j.contains("salt") || !j["salt"].is_string() || j["salt"].get<std::string>().size() != 32) {
    return out;
  }
  out.salt = j["salt"].get<std::string>();
  const nlohmann::json& ch = j.contains("challenge") ? j["challenge"] : nlohmann::json();
  if (ch.is_object() && ch.contains("scheme") && ch["scheme"].is_string() &&
      ch.contains("params") && ch["params"].is_object()) {
    std::map<std::string, std::string> params;
    for (const auto& [k, v] : ch["params"].items()) {
      if (!v.is_string()) return AuthCacheState();
      params[k] = v.get<std::string>();
    }
    out.challenge.emplace(ch["scheme"].get<std::string>(), std::move(params));
    out.known = true;
  }
  if (!out.known) return out;
  if (j.contains("tokens") && j["tokens"].is_array()) {
    for (const auto& t : j["tokens"]) {
      if (!t.is_object() || !t.contains("user") || !t["user"].is_string() ||
          !t.contains("key") || !t["key"].is_string() || !t.contains("token") ||
          !t["token"].is_string() || !t.contains("expires") || !t["expires"].is_number_integer()) {
        continue;
      }
      AuthCacheState::Entry e;
      e.user = t["user"].get<std::string>();
      e.key = t["key"].get<std::string>();
      e.token = t["token"].get<std::string>();
      e.expiry = absl::FromUnixSeconds(t["expires"].get<int64_t>());
      if (e.expiry > now && !e.token.empty()) out.tokens.push_back(std::move(e));
    }
  }
  return out;
}

void SaveAuthCache(const std::string& dir, const std::string& registry,
                   const AuthCacheState& state, absl::Time now) {
  if (dir.empty() || !state.known || !state.challenge || state.salt.size() != 32) return;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return;
  struct stat dst;
  if (::stat(dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode) || !OursAlone(dst)) return;
  nlohmann::json j;
  j["version"] = kVersion;
  j["registry"] = registry;
  j["salt"] = state.salt;
  j["challenge"] = {{"scheme", state.challenge->first}, {"params", state.challenge->second}};
  nlohmann::json tokens = nlohmann::json::array();
  for (const auto& e : state.tokens) {
    if (e.expiry <= now) continue;
    if (tokens.size() >= kMaxTokens) break;
    tokens.push_back({{"user", e.user},
                      {"key", e.key},
                      {"token", e.token},
                      {"expires", absl::ToUnixSeconds(e.expiry)}});
  }
  j["tokens"] = std::move(tokens);
  base::AtomicFile::Options opts;
  opts.mode = 0600;
  (void)base::WriteFileAtomically(AuthCachePath(dir, registry), j.dump(), opts);
}

}  // namespace ocicache::registry::internal
