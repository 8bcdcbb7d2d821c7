#include "pkg/registry/auth.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "pkg/registry/errors.h"

namespace ocicache::registry::internal {
namespace {

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~/:").find(c) != std::string_view::npos;
}

// A small cursor over a header value.
struct Cursor {
  absl::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  void SkipSpace() {
    while (!done() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }
  void SkipSpaceAndCommas() {
    while (!done() && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) ++i;
  }
  std::string Token() {
    size_t start = i;
    while (!done() && IsTokenChar(s[i])) ++i;
    return std::string(s.substr(start, i - start));
  }
  // A quoted-string (with backslash escapes) or a token.
  std::string Value() {
    if (peek() != '"') {
      size_t start = i;
      while (!done() && s[i] != ',' && s[i] != ' ' && s[i] != '\t') ++i;
      return std::string(s.substr(start, i - start));
    }
    ++i;
    std::string out;
    while (!done() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
      out.push_back(s[i++]);
    }
    if (!done()) ++i;  // closing quote
    return out;
  }
};

}  // namespace

std::string Challenge::Param(const std::string& key) const {
  auto it = params.find(key);
  return it == params.end() ? "" : it->second;
}

std::vector<Challenge> ParseWwwAuthenticate(absl::string_view value) {
  std::vector<Challenge> out;
  Cursor c{value};
  c.SkipSpaceAndCommas();
  while (!c.done()) {
    std::string scheme = c.Token();
    if (scheme.empty()) break;  // garbage: stop
    Challenge ch;
    ch.scheme = absl::AsciiStrToLower(scheme);
    // auth-params until a token not followed by '=' starts the next challenge.
    for (;;) {
      c.SkipSpaceAndCommas();
      size_t mark = c.i;
      std::string key = c.Token();
      c.SkipSpace();
      if (key.empty() || c.peek() != '=') {
        c.i = mark;
        break;
      }
      ++c.i;  // '='
      c.SkipSpace();
      ch.params[absl::AsciiStrToLower(key)] = c.Value();
    }
    out.push_back(std::move(ch));
    c.SkipSpaceAndCommas();
    if (c.i < value.size() && !IsTokenChar(c.peek())) break;
  }
  return out;
}

std::optional<Challenge> PickChallenge(const std::vector<std::string>& values) {
  std::optional<Challenge> basic;
  for (const std::string& v : values) {
    for (Challenge& c : ParseWwwAuthenticate(v)) {
      if (c.scheme == "bearer") return c;
      if (c.scheme == "basic" && !basic) basic = c;
    }
  }
  return basic;
}

std::string PullScope(absl::string_view repo) { return absl::StrCat("repository:", repo, ":pull"); }
std::string PushScope(absl::string_view repo) {
  return absl::StrCat("repository:", repo, ":pull,push");
}

std::vector<std::string> NormalizeScopes(std::vector<std::string> scopes) {
  // "type:name:a,b": the name may hold ':' (host:port), the actions never do.
  // distribution builds a challenge's action list from a Go map, so one scope
  // comes as "pull,push" or "push,pull" at random: actions are a set.
  std::map<std::string, std::set<std::string>> actions;  // "type:name" -> actions
  std::set<std::string> other;
  for (const std::string& s : scopes) {
    const size_t first = s.find(':');
    const size_t last = s.rfind(':');
    if (first == std::string::npos || first == last) {
      if (!s.empty()) other.insert(s);
      continue;
    }
    std::set<std::string>& a = actions[s.substr(0, last)];
    for (absl::string_view x : absl::StrSplit(absl::string_view(s).substr(last + 1), ',',
                                              absl::SkipEmpty())) {
      a.insert(std::string(x));
    }
  }
  std::vector<std::string> out(other.begin(), other.end());
  for (const auto& [resource, a] : actions) {
    out.push_back(absl::StrCat(resource, ":", absl::StrJoin(a, ",")));
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<Token> ParseTokenResponse(absl::string_view body, absl::Time now) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::UnauthenticatedError("token response is not a JSON object");
  }
  Token t;
  for (const char* key : {"token", "access_token"}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
      t.value = it->get<std::string>();
      break;
    }
  }
  if (t.value.empty()) {
    return absl::UnauthenticatedError("token response has no \"token\" or \"access_token\"");
  }
  absl::Duration life = absl::Seconds(60);
  auto exp = j.find("expires_in");
  if (exp != j.end() && exp->is_number() && exp->get<double>() > 0) {
    life = absl::Seconds(exp->get<double>());
  }
  // Stop using it a little early: the request carrying it takes time too.
  t.expiry = now + life - std::min(life / 10, absl::Seconds(30));
  return t;
}

std::string UrlEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (absl::ascii_isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(kHex[ch >> 4]);
      out.push_back(kHex[ch & 15]);
    }
  }
  return out;
}

Authenticator::Authenticator(std::string registry, SendFn send, CredentialsFn credentials,
                             std::string cache_dir)
    : registry_(std::move(registry)),
      send_(std::move(send)),
      credentials_fn_(std::move(credentials)),
      cache_dir_(std::move(cache_dir)) {
  if (cache_dir_.empty()) return;
  AuthCacheState kept = LoadAuthCache(cache_dir_, registry_, absl::Now());
  absl::MutexLock l(&mu_);
  salt_ = kept.salt.empty() ? NewAuthCacheSalt() : kept.salt;
  if (kept.known && kept.challenge) {
    known_ = true;
    challenge_ = Challenge{kept.challenge->first, kept.challenge->second};
    challenge_kept_ = true;
  }
  kept_ = std::move(kept.tokens);
}

void Authenticator::Persist() {
  if (cache_dir_.empty()) return;
  AuthCacheState state;
  {
    absl::MutexLock l(&mu_);
    if (!challenge_) return;  // anonymous access: nothing worth keeping
    state.known = true;
    state.salt = salt_;
    state.challenge.emplace(challenge_->scheme, challenge_->params);
    for (const auto& [key, t] : tokens_) state.tokens.push_back({user_, key, t.value, t.expiry});
    for (const auto& e : kept_) {
      if (e.user == user_ && tokens_.count(e.key) > 0) continue;  // replaced here
      state.tokens.push_back(e);
    }
  }
  SaveAuthCache(cache_dir_, registry_, state, absl::Now());
}

bool Authenticator::known() const {
  absl::MutexLock l(&mu_);
  return known_;
}

void Authenticator::SetChallenge(std::optional<Challenge> c) {
  {
    absl::MutexLock l(&mu_);
    known_ = true;
    challenge_ = std::move(c);
    challenge_kept_ = false;
  }
  Persist();
}

void Authenticator::NoteAnonymousOk() {
  absl::MutexLock l(&mu_);
  known_ = true;
}

int64_t Authenticator::tokens_fetched() const {
  absl::MutexLock l(&mu_);
  return tokens_fetched_;
}

absl::StatusOr<Credentials> Authenticator::GetCredentials() {
  absl::MutexLock l(&creds_mu_);
  if (!creds_) creds_ = credentials_fn_();
  return *creds_;
}

std::string Authenticator::CacheKey(const Challenge& c,
                                    const std::vector<std::string>& scopes) const {
  return absl::StrCat(c.Param("realm"), " ", c.Param("service"), " ", absl::StrJoin(scopes, " "));
}

absl::StatusOr<std::string> Authenticator::Authorization(const std::vector<std::string>& raw) {
  std::optional<Challenge> ch;
  {
    absl::MutexLock l(&mu_);
    ch = challenge_;
  }
  if (!ch) return std::string();
  if (ch->scheme != "basic" && ch->scheme != "bearer") return std::string();

  absl::StatusOr<Credentials> creds = GetCredentials();
  if (!creds.ok()) return creds.status();

  if (ch->scheme == "basic") {
    if (creds->username.empty() && creds->password.empty()) return std::string();
    return absl::StrCat("Basic ", absl::Base64Escape(
                                      absl::StrCat(creds->username, ":", creds->password)));
  }

  // Bearer. A registry token (password without username) is used as is.
  if (creds->username.empty() && creds->identity_token.empty() && !creds->password.empty()) {
    return absl::StrCat("Bearer ", creds->password);
  }
  std::vector<std::string> scopes = NormalizeScopes(raw);
  std::string key = CacheKey(*ch, scopes);
  auto cached = [&]() -> std::optional<std::string> {
    absl::MutexLock l(&mu_);
    auto it = tokens_.find(key);
    if (it != tokens_.end() && absl::Now() < it->second.expiry) return it->second.value;
    if (cache_dir_.empty()) return std::nullopt;
    // Tokens kept for later processes belong to these exact credentials (the
    // same for the whole process: resolved once).
    if (user_.empty()) {
      user_ = AuthCacheUser(salt_, creds->username, creds->password, creds->identity_token);
    }
    // One an earlier process with them fetched for the same scopes.
    for (const auto& e : kept_) {
      if (e.user == user_ && e.key == key && absl::Now() < e.expiry) {
        tokens_[key] = Token{e.token, e.expiry};
        return e.token;
      }
    }
    return std::nullopt;
  };
  if (auto t = cached()) return absl::StrCat("Bearer ", *t);

  absl::MutexLock fetch(&fetch_mu_);
  if (auto t = cached()) return absl::StrCat("Bearer ", *t);  // fetched meanwhile
  {
    // Another request dropped the challenge read above (a stale kept one) or
    // learned a new one while this one waited: this request learns it too.
    absl::MutexLock l(&mu_);
    if (!challenge_ || CacheKey(*challenge_, scopes) != key) return std::string();
  }
  absl::StatusOr<Token> t = FetchToken(*ch, *creds, scopes);
  if (!t.ok()) {
    // A challenge kept by an earlier process may be stale (the realm moved or
    // is gone): forget it and let this request learn the registry's own.
    absl::MutexLock l(&mu_);
    if (challenge_kept_) {
      challenge_kept_ = false;
      known_ = false;
      challenge_.reset();
      return std::string();
    }
    return t.status();
  }
  {
    absl::MutexLock l(&mu_);
    ++tokens_fetched_;
    tokens_[key] = *t;
  }
  Persist();
  return absl::StrCat("Bearer ", t->value);
}

absl::StatusOr<Token> Authenticator::FetchToken(const Challenge& c, const Credentials& creds,
                                                const std::vector<std::string>& scopes) {
  const std::string realm = c.Param("realm");
  if (realm.empty()) {
    return absl::UnauthenticatedError("Bearer challenge without a realm");
  }
  const std::string service = c.Param("service");
  const std::string prefix = absl::StrCat("token from ", realm);
  HttpRequest req;
  if (!creds.identity_token.empty()) {
    // OAuth2 refresh-token grant (docker's identity tokens).
    req.method = "POST";
    req.url = realm;
    req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
    req.body = absl::StrCat("grant_type=refresh_token&client_id=ocicache&service=",
                            UrlEncode(service), "&scope=", UrlEncode(absl::StrJoin(scopes, " ")),
                            "&refresh_token=", UrlEncode(creds.identity_token));
  } else {
    std::string url = realm;
    char sep = url.find('?') == std::string::npos ? '?' : '&';
    if (!service.empty()) {
      absl::StrAppend(&url, std::string(1, sep), "service=", UrlEncode(service));
      sep = '&';
    }
    for (const std::string& s : scopes) {
      absl::StrAppend(&url, std::string(1, sep), "scope=", UrlEncode(s));
      sep = '&';
    }
    req.url = url;
    if (!creds.username.empty() || !creds.password.empty()) {
      req.headers.push_back(absl::StrCat(
          "Authorization: Basic ",
          absl::Base64Escape(absl::StrCat(creds.username, ":", creds.password))));
    }
  }
  req.headers.push_back("Accept: application/json");
  req.max_body = 1 << 20;
  absl::StatusOr<HttpResponse> resp = send_(req);
  if (!resp.ok()) return Annotate(resp.status(), prefix);
  if (resp->status != 200) {
    absl::Status s = HttpError(prefix, resp->status, resp->body);
    // A realm rejecting our credentials is an authentication failure whatever its
    // status, unless it is a temporary server problem.
    if (!IsTemporary(s) && s.code() != absl::StatusCode::kUnauthenticated) {
      return MakeError(absl::StatusCode::kUnauthenticated, s.message(), RegistryErrorCode(s),
                       false);
    }
    return s;
  }
  absl::StatusOr<Token> t = ParseTokenResponse(resp->body, absl::Now());
  if (!t.ok()) return Annotate(t.status(), prefix);
  return t;
}

bool Authenticator::OnUnauthorized(const HttpHeaders& headers, std::vector<std::string>* scopes,
                                   absl::string_view sent) {
  std::optional<Challenge> ch = PickChallenge(headers.GetAll("www-authenticate"));
  if (!ch) return false;
  absl::MutexLock l(&mu_);
  bool was_basic = known_ && challenge_ && challenge_->scheme == "basic";
  known_ = true;
  if (ch->scheme == "bearer") {
    // The token we sent (if any) did not do: forget it, also as kept by an
    // earlier process. A token cached by another request meanwhile (this one
    // went out without it) is kept.
    kept_.erase(std::remove_if(kept_.begin(), kept_.end(),
                               [&](const AuthCacheState::Entry& e) {
                                 return sent == absl::StrCat("Bearer ", e.token);
                               }),
                kept_.end());
    auto drop_if_sent = [&](const std::string& key) {
      auto it = tokens_.find(key);
      if (it != tokens_.end() && sent == absl::StrCat("Bearer ", it->second.value)) {
        tokens_.erase(it);
      }
    };
    if (challenge_) drop_if_sent(CacheKey(*challenge_, NormalizeScopes(*scopes)));
    for (absl::string_view s : absl::StrSplit(ch->Param("scope"), ' ', absl::SkipEmpty())) {
      scopes->push_back(std::string(s));
    }
    *scopes = NormalizeScopes(*scopes);
    drop_if_sent(CacheKey(*ch, *scopes));
    challenge_ = ch;
    challenge_kept_ = false;
    return true;
  }
  challenge_ = ch;
  challenge_kept_ = false;
  // Basic: a retry helps unless Basic credentials were sent already.
  return ch->scheme == "basic" && !(was_basic && !sent.empty());
}

}  // namespace ocicache::registry::internal
