#include "test/harness/token_issuer.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace ocicache::harness {
namespace {

constexpr char kBasicChallenge[] = R"(Basic realm="ocicache-test-token-issuer")";

// OpenSSL's error queue as text, for messages.
std::string SslError(absl::string_view what) {
  std::string out(what);
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, ": ", buf);
  }
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

std::string Base64Url(absl::string_view s) { return absl::WebSafeBase64Escape(s); }  // No padding.

std::string Sha256(absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  return absl::BytesToHexString(raw);
}

FakeResponse ErrorJson(int status, absl::string_view code, absl::string_view message) {
  nlohmann::json error = nlohmann::json::object();
  error["code"] = std::string(code);
  error["message"] = std::string(message);
  nlohmann::json j = nlohmann::json::object();
  j["errors"] = nlohmann::json::array({error});
  return FakeResponse::Json(status, j.dump());
}

}  // namespace

std::string Base32NoPadding(absl::string_view data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : data) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kAlphabet[(acc >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (5 - bits)) & 31]);
  return out;
}

std::string LibtrustKeyId(absl::string_view spki_der) {
  std::string b32 = Base32NoPadding(Sha256(spki_der).substr(0, 30));  // 48 characters.
  std::vector<absl::string_view> groups;
  for (size_t i = 0; i < b32.size(); i += 4) groups.push_back(absl::string_view(b32).substr(i, 4));
  return absl::StrJoin(groups, ":");
}

absl::StatusOr<std::vector<TokenAccess>> ParseScopes(const std::vector<std::string>& scopes) {
  std::vector<TokenAccess> out;
  for (const std::string& param : scopes) {
    for (absl::string_view scope : absl::StrSplit(param, ' ', absl::SkipEmpty())) {
      size_t first = scope.find(':');
      size_t last = scope.rfind(':');
      if (first == absl::string_view::npos || first == last || first == 0 || last == first + 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad scope \"", scope, "\": want type:name:actions"));
      }
      TokenAccess a;
      a.type = std::string(scope.substr(0, first));
      a.name = std::string(scope.substr(first + 1, last - first - 1));
      a.actions = absl::StrSplit(scope.substr(last + 1), ',', absl::SkipEmpty());
      out.push_back(std::move(a));
    }
  }
  return out;
}

struct TokenIssuer::Key {
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey;
};

absl::StatusOr<std::unique_ptr<TokenIssuer>> TokenIssuer::Start(Options options) {
  std::unique_ptr<TokenIssuer> t(new TokenIssuer);
  t->options_ = std::move(options);
  t->key_ = std::make_unique<Key>();

  // RSA-2048 key and a self-signed certificate carrying it (the registry only extracts
  // the public key from the bundle; validity and extensions are not checked with `kid`).
  t->key_->pkey.reset(EVP_RSA_gen(2048));
  EVP_PKEY* pkey = t->key_->pkey.get();
  if (pkey == nullptr) return absl::InternalError(SslError("token issuer: RSA key generation"));
  std::unique_ptr<X509, X509Free> cert(X509_new());
  if (cert == nullptr) return absl::InternalError(SslError("token issuer: X509_new"));
  X509_set_version(cert.get(), 2);  // v3
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ocicache test token issuer"),
                             -1, -1, 0);
  if (X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), pkey) != 1 ||
      X509_sign(cert.get(), pkey, EVP_sha256()) <= 0) {
    return absl::InternalError(SslError("token issuer: building the certificate"));
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert.get()) != 1) {
    return absl::InternalError(SslError("token issuer: PEM-encoding the certificate"));
  }
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio.get(), &pem);
  t->cert_pem_.assign(pem, static_cast<size_t>(pem_len));

  unsigned char* der = nullptr;
  int der_len = i2d_PUBKEY(pkey, &der);
  if (der_len <= 0) return absl::InternalError(SslError("token issuer: DER-encoding the public key"));
  t->key_id_ = LibtrustKeyId(absl::string_view(reinterpret_cast<char*>(der), der_len));
  OPENSSL_free(der);

  TokenIssuer* raw = t.get();
  auto server = FakeHttpServer::Start([raw](const FakeRequest& r) { return raw->Handle(r); });
  if (!server.ok()) return server.status();
  t->server_ = std::move(*server);
  return t;
}

TokenIssuer::~TokenIssuer() {
  if (server_) server_->Stop();  // No handler runs once this returns.
}

std::string TokenIssuer::realm() const { return server_->base_url() + "/token"; }

absl::StatusOr<std::string> TokenIssuer::Sign(absl::string_view subject,
                                              const std::vector<TokenAccess>& access,
                                              absl::Time issued_at, absl::Duration ttl) const {
  nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"kid", key_id_}};
  nlohmann::json access_json = nlohmann::json::array();
  for (const TokenAccess& a : access) {
    access_json.push_back({{"type", a.type}, {"name", a.name}, {"actions", a.actions}});
  }
  int64_t iat = absl::ToUnixSeconds(issued_at);
  nlohmann::json claims = {
      {"iss", options_.issuer},
      {"sub", std::string(subject)},
      {"aud", options_.service},  // A string: distribution 2.8.2 rejects an array.
      {"exp", iat + absl::ToInt64Seconds(ttl)},
      {"nbf", iat},
      {"iat", iat},
      {"jti", RandomHex(16)},
      {"access", access_json},
  };
  std::string signing_input =
      absl::StrCat(Base64Url(header.dump()), ".", Base64Url(claims.dump()));

  // RS256 = RSASSA-PKCS1-v1_5 with SHA-256, OpenSSL's default padding for RSA keys.
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  size_t sig_len = 0;
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError(SslError("token issuer: signing"));
  }
  std::string sig(sig_len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError(SslError("token issuer: signing"));
  }
  sig.resize(sig_len);
  return absl::StrCat(signing_input, ".", Base64Url(sig));
}

FakeResponse TokenIssuer::Handle(const FakeRequest& req) {
  if (req.method != "GET" || req.path() != "/token") {
    return FakeResponse::Text(404, "token issuer: only GET /token\n");
  }
  // Credentials first, as real issuers do. Basic: "Basic base64(user:password)".
  std::string auth = req.header("authorization");
  std::string subject;
  bool anonymous = auth.empty();
  if (anonymous) {
    if (!options_.allow_anonymous) {
      return ErrorJson(401, "UNAUTHORIZED", "credentials required")
          .WithHeader("WWW-Authenticate", kBasicChallenge);
    }
    // Anonymous: a valid token that grants nothing (subject "", access []).
  } else {
    std::string decoded;
    bool ok = absl::StartsWithIgnoreCase(auth, "basic ") &&
              absl::Base64Unescape(absl::string_view(auth).substr(6), &decoded);
    size_t colon = decoded.find(':');
    if (!ok || colon == std::string::npos || decoded.substr(0, colon) != options_.user ||
        decoded.substr(colon + 1) != options_.password) {
      return ErrorJson(401, "UNAUTHORIZED", "wrong user name or password")
          .WithHeader("WWW-Authenticate", kBasicChallenge);
    }
    subject = options_.user;
  }

  std::string service = req.query_value("service");
  if (!service.empty() && service != options_.service) {
    return ErrorJson(400, "DENIED",
                     absl::StrCat("unknown service \"", service, "\", want \"", options_.service, "\""));
  }
  auto access = ParseScopes(req.query_values("scope"));
  if (!access.ok()) return ErrorJson(400, "DENIED", access.status().message());
  if (anonymous) access->clear();

  absl::Time now = absl::Now();
  auto token = Sign(subject, *access, now, absl::Seconds(options_.expires_in_s));
  if (!token.ok()) return ErrorJson(500, "UNKNOWN", token.status().message());
  tokens_issued_++;
  nlohmann::json body = {
      {"token", *token},
      {"access_token", *token},
      {"expires_in", options_.expires_in_s},
      {"issued_at", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone())},
  };
  return FakeResponse::Json(200, body.dump());
}

}  // namespace ocicache::harness
