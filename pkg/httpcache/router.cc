#include "pkg/httpcache/router.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace ocicache::httpcache {
namespace {

constexpr size_t kMaxKeySegments = 16;
constexpr size_t kMaxSegmentBytes = 255;
constexpr size_t kMaxNamespaceBytes = 64;
constexpr size_t kMaxHashBytes = 128;
constexpr size_t kMaxTeamBytes = 100;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// [A-Za-z0-9._-], not "." or "..": a key segment that no file system or URL
// normalisation can read as a step up or aside.
bool IsSafeSegment(absl::string_view s, size_t max) {
  if (s.empty() || s.size() > max || s == "." || s == "..") return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// A namespace: [a-z0-9][a-z0-9._-]*, at most 64 bytes.
bool IsNamespace(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNamespaceBytes) return false;
  if (!absl::ascii_isdigit(static_cast<unsigned char>(s[0])) &&
      !absl::ascii_islower(static_cast<unsigned char>(s[0]))) {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) &&
        !absl::ascii_islower(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// A turbo or nx hash: [A-Za-z0-9_-], at most 128 bytes (turbo sends 16 hex,
// nx a decimal string).
bool IsToolHash(absl::string_view s) {
  if (s.empty() || s.size() > kMaxHashBytes) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

Routed Error(int code, std::string message, std::string allow = "") {
  Routed r;
  r.error = code;
  r.message = std::move(message);
  r.allow = std::move(allow);
  return r;
}

// Routes `method` on a URL that takes `allowed` (space separated). HEAD is
// allowed wherever GET is.
bool MethodIn(absl::string_view method, absl::string_view allowed) {
  for (absl::string_view m : absl::StrSplit(allowed, ' ')) {
    if (m == method) return true;
    if (m == "GET" && method == "HEAD") return true;
  }
  return false;
}

Routed MethodNotAllowed(absl::string_view method, absl::string_view allowed) {
  std::vector<std::string> allow;
  for (absl::string_view m : absl::StrSplit(allowed, ' ')) {
    allow.emplace_back(m);
    if (m == "GET") allow.emplace_back("HEAD");
  }
  std::string list = absl::StrJoin(allow, ", ");
  return Error(405, absl::StrCat("method ", absl::CHexEscape(method.substr(0, 16)),
                                 " is not allowed here (allowed: ", list, ")"),
               list);
}

Routed Object(Protocol p, std::string key, absl::string_view method, absl::string_view allowed) {
  if (!MethodIn(method, allowed)) return MethodNotAllowed(method, allowed);
  Routed r;
  r.route.protocol = p;
  r.route.target = Target::kObject;
  r.route.group = key.substr(0, key.rfind(':'));
  r.route.key = std::move(key);
  r.route.writes = method == "PUT" || method == "DELETE";
  return r;
}

Routed Fixed(Protocol p, Target t, absl::string_view method, absl::string_view allowed) {
  if (!MethodIn(method, allowed)) return MethodNotAllowed(method, allowed);
  Routed r;
  r.route.protocol = p;
  r.route.target = t;
  return r;
}

constexpr char kSpaces[] =
    "the URL spaces are /cache/<namespace>/<key>, [/<instance>]/ac/<sha256>, "
    "[/<instance>]/cas/<sha256>, /v8/artifacts/<hash>, /v1/cache/<hash> and /status "
    "(docs/HTTP.md)";

Routed Kv(absl::string_view method, const std::vector<absl::string_view>& segs) {
  // segs[0] == "cache"
  if (segs.size() < 3) {
    return Error(400, "a key/value URL is /cache/<namespace>/<key>: namespace or key missing");
  }
  if (!IsNamespace(segs[1])) {
    return Error(400, "the namespace of /cache/<namespace>/<key> must match [a-z0-9][a-z0-9._-]*, "
                      "at most 64 bytes");
  }
  if (segs.size() - 2 > kMaxKeySegments) {
    return Error(400, absl::StrCat("a key has at most ", kMaxKeySegments, " path segments"));
  }
  for (size_t i = 2; i < segs.size(); ++i) {
    if (!IsSafeSegment(segs[i], kMaxSegmentBytes)) {
      return Error(400, "each key segment must match [A-Za-z0-9._-]+ (at most 255 bytes) and "
                        "not be \".\" or \"..\"");
    }
  }
  std::vector<absl::string_view> key(segs.begin() + 2, segs.end());
  return Object(Protocol::kKv, KvKey(segs[1], absl::StrJoin(key, "/")), method,
                "GET PUT DELETE");
}

Routed Turbo(absl::string_view method, const std::vector<absl::string_view>& segs,
             const std::map<std::string, std::string>& query) {
  // segs[0] == "v8"
  if (segs.size() < 2 || segs[1] != "artifacts") {
    return Error(404, absl::StrCat("Turborepo's API here is /v8/artifacts only; ", kSpaces));
  }
  if (segs.size() == 2) return Fixed(Protocol::kTurbo, Target::kTurboQuery, method, "POST");
  if (segs.size() != 3) return Error(400, "a Turborepo artifact URL is /v8/artifacts/<hash>");
  if (segs[2] == "status") return Fixed(Protocol::kTurbo, Target::kTurboStatus, method, "GET");
  if (segs[2] == "events") return Fixed(Protocol::kTurbo, Target::kTurboEvents, method, "POST");
  if (!IsToolHash(segs[2])) {
    return Error(400, "a Turborepo hash must match [A-Za-z0-9_-]+, at most 128 bytes");
  }
  // The team: teamId wins over slug (turbo sends one of them); none is "".
  std::string team;
  for (const char* q : {"teamId", "slug"}) {
    auto it = query.find(q);
    if (it != query.end() && !it->second.empty()) {
      team = it->second;
      break;
    }
  }
  if (!team.empty() && !IsSafeSegment(team, kMaxTeamBytes)) {
    return Error(400, "teamId and slug must match [A-Za-z0-9._-]+, at most 100 bytes");
  }
  return Object(Protocol::kTurbo, TurboKey(team, segs[2]), method, "GET PUT");
}

Routed Nx(absl::string_view method, const std::vector<absl::string_view>& segs) {
  // segs[0] == "v1"
  if (segs.size() != 3 || segs[1] != "cache") {
    return Error(404, absl::StrCat("Nx's API here is /v1/cache/<hash>; ", kSpaces));
  }
  if (!IsToolHash(segs[2])) return Error(400, "an Nx hash must match [A-Za-z0-9_-]+, at most 128 bytes");
  return Object(Protocol::kNx, NxKey(segs[2]), method, "GET PUT");
}

Routed Bazel(absl::string_view method, const std::vector<absl::string_view>& segs) {
  size_t n = segs.size();
  absl::string_view kind = segs[n - 2];
  absl::string_view hash = segs[n - 1];
  if (hash.size() != 64 || !IsLowerHex(hash)) {
    return Error(400, absl::StrCat("/", kind, "/ takes a SHA-256 digest: 64 lowercase hex digits"));
  }
  std::string instance;
  for (size_t i = 0; i + 2 < n; ++i) {
    // The REAPI service validates the name itself; this only keeps the path sane.
    if (!IsSafeSegment(segs[i], kMaxSegmentBytes)) {
      return Error(400, "an instance prefix must be path segments of [A-Za-z0-9._-]");
    }
    if (i > 0) instance += '/';
    absl::StrAppend(&instance, segs[i]);
  }
  if (kind == "ac" && IsCcacheBazelName(hash)) {
    return Object(Protocol::kKv, CcacheAcKey(instance, hash), method, "GET PUT DELETE");
  }
  if (!MethodIn(method, "GET PUT")) return MethodNotAllowed(method, "GET PUT");
  Routed r;
  r.route.protocol = Protocol::kBazel;
  r.route.target = kind == "ac" ? Target::kActionResult : Target::kCasBlob;
  r.route.instance = std::move(instance);
  r.route.hash = std::string(hash);
  r.route.writes = method == "PUT";
  return r;
}

}  // namespace

const char* ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kBazel: return "bazel";
    case Protocol::kKv: return "kv";
    case Protocol::kTurbo: return "turbo";
    case Protocol::kNx: return "nx";
    case Protocol::kServer: return "server";
  }
  return "server";
}

std::string KvKey(absl::string_view ns, absl::string_view key_path) {
  return absl::StrCat("http:kv:", ns, ":", key_path);
}
std::string TurboKey(absl::string_view team, absl::string_view hash) {
  return absl::StrCat("http:turbo:", team, ":", hash);
}
std::string NxKey(absl::string_view hash) { return absl::StrCat("http:nx:", hash); }
std::string CcacheAcKey(absl::string_view instance, absl::string_view hash) {
  return absl::StrCat("http:ccache-ac:", instance, ":", hash);
}

bool IsCcacheBazelName(absl::string_view hex64) {
  return hex64.size() == 64 && hex64.substr(40, 24) == hex64.substr(0, 24);
}

Routed RouteRequest(absl::string_view method, absl::string_view path,
                    const std::map<std::string, std::string>& query) {
  if (path.size() > kMaxPathBytes) {
    return Error(414, absl::StrCat("the path is longer than ", kMaxPathBytes, " bytes"));
  }
  if (path.empty() || path[0] != '/') return Error(400, "the path must start with /");
  for (char c : path) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') {
      return Error(400, "the path holds a control character or a backslash");
    }
  }
  absl::string_view rest = path.substr(1);
  std::vector<absl::string_view> segs = absl::StrSplit(rest, '/');
  // Empty segments ("//", a trailing "/") name nothing: refuse them rather
  // than guess, so one object never has two URLs.
  for (absl::string_view s : segs) {
    if (s.empty()) return Error(400, absl::StrCat("the path has an empty segment; ", kSpaces));
    if (s == "." || s == "..") return Error(400, "the path has a \".\" or \"..\" segment");
  }
  if (segs.size() == 1 && segs[0] == "status") {
    return Fixed(Protocol::kServer, Target::kStatus, method, "GET");
  }
  if (segs[0] == "cache") return Kv(method, segs);
  if (segs[0] == "v8") return Turbo(method, segs, query);
  if (segs[0] == "v1") return Nx(method, segs);
  if (segs.size() >= 2 && (segs[segs.size() - 2] == "ac" || segs[segs.size() - 2] == "cas")) {
    return Bazel(method, segs);
  }
  return Error(404, absl::StrCat("no cache at this path; ", kSpaces));
}

}  // namespace ocicache::httpcache
