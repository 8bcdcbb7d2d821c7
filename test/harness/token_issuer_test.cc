// Tests of the token issuer on its own: encodings, scope parsing, the HTTP policy, and
// that its JWTs are well-formed RS256 signatures by the key in its certificate.
#include "test/harness/token_issuer.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "test/harness/http_client.h"

namespace ocicache::harness {
namespace {

TEST(TokenIssuerTest, Base32MatchesRfc4648Vectors) {
  EXPECT_EQ(Base32NoPadding(""), "");
  EXPECT_EQ(Base32NoPadding("f"), "MY");
  EXPECT_EQ(Base32NoPadding("fo"), "MZXQ");
  EXPECT_EQ(Base32NoPadding("foo"), "MZXW6");
  EXPECT_EQ(Base32NoPadding("foob"), "MZXW6YQ");
  EXPECT_EQ(Base32NoPadding("fooba"), "MZXW6YTB");
  EXPECT_EQ(Base32NoPadding("foobar"), "MZXW6YTBOI");
}

TEST(TokenIssuerTest, LibtrustKeyIdShape) {
  // Expected value computed independently: base32(sha256("abc")[:30]).
  std::string kid = LibtrustKeyId("abc");
  std::vector<std::string> groups = absl::StrSplit(kid, ':');
  ASSERT_EQ(groups.size(), 12u) << kid;
  for (const auto& g : groups) {
    EXPECT_EQ(g.size(), 4u) << kid;
    EXPECT_EQ(g.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), std::string::npos) << kid;
  }
  EXPECT_EQ(kid, "XJ4B:NP4P:AHH6:UQKB:IDPF:3LRC:EOYA:GYND:SYLX:VHFU:CD7W:D4QA");
}

TEST(TokenIssuerTest, ParseScopes) {
  auto a = ParseScopes({"repository:a/b:pull,push", "repository:c/d:pull registry:catalog:*"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ((*a)[0].type, "repository");
  EXPECT_EQ((*a)[0].name, "a/b");
  EXPECT_EQ((*a)[0].actions, (std::vector<std::string>{"pull", "push"}));
  EXPECT_EQ((*a)[1].name, "c/d");
  EXPECT_EQ((*a)[2].type, "registry");
  EXPECT_EQ((*a)[2].name, "catalog");
  EXPECT_EQ((*a)[2].actions, (std::vector<std::string>{"*"}));
  // A registry host with a port in the name keeps its colon.
  auto b = ParseScopes({"repository:localhost:5000/x:pull"});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)[0].name, "localhost:5000/x");
  EXPECT_FALSE(ParseScopes({"repository:a/b"}).ok());
  EXPECT_FALSE(ParseScopes({"nonsense"}).ok());
}

// Splits a JWT and decodes its JSON parts.
struct Jwt {
  nlohmann::json header, claims;
  std::string signing_input, signature;
};

Jwt DecodeJwt(const std::string& token) {
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  EXPECT_EQ(parts.size(), 3u);
  Jwt j;
  if (parts.size() != 3) return j;
  std::string h, c;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(parts[0], &h));
  EXPECT_TRUE(absl::WebSafeBase64Unescape(parts[1], &c));
  EXPECT_TRUE(absl::WebSafeBase64Unescape(parts[2], &j.signature));
  EXPECT_EQ(parts[2].find('='), std::string::npos);  // base64url without padding
  j.header = nlohmann::json::parse(h);
  j.claims = nlohmann::json::parse(c);
  j.signing_input = parts[0] + "." + parts[1];
  return j;
}

// Verifies an RS256 signature with the public key of a PEM certificate, and checks
// that the kid is that key's libtrust id.
void ExpectSignedBy(const Jwt& jwt, const std::string& cert_pem) {
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(cert, nullptr);
  EVP_PKEY* key = X509_get0_pubkey(cert);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 2048);
  unsigned char* der = nullptr;
  int der_len = i2d_PUBKEY(key, &der);
  ASSERT_GT(der_len, 0);
  EXPECT_EQ(jwt.header.value("kid", ""),
            LibtrustKeyId(std::string(reinterpret_cast<char*>(der), der_len)));
  OPENSSL_free(der);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ASSERT_EQ(EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key), 1);
  int ok = EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(jwt.signature.data()),
                            jwt.signature.size(),
                            reinterpret_cast<const unsigned char*>(jwt.signing_input.data()),
                            jwt.signing_input.size());
  EXPECT_EQ(ok, 1) << "JWT signature does not verify";
  EVP_MD_CTX_free(ctx);
  X509_free(cert);
}

class IssuerHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TokenIssuer::Options o;
    o.user = "alice";
    o.password = "pw";
    o.service = "svc";
    o.issuer = "iss";
    auto t = TokenIssuer::Start(o);
    ASSERT_TRUE(t.ok()) << t.status();
    issuer_ = std::move(*t);
  }
  absl::StatusOr<HttpReply> Get(const std::string& query, const std::string& user,
                                const std::string& password) {
    HttpCall call;
    call.url = issuer_->realm() + query;
    call.user = user;
    call.password = password;
    return HttpDo(call);
  }
  std::unique_ptr<TokenIssuer> issuer_;
};

TEST_F(IssuerHttpTest, IssuesSignedTokenWithRequestedAccess) {
  EXPECT_EQ(issuer_->realm().rfind("http://127.0.0.1:", 0), 0u);
  auto reply = Get("?service=svc&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository:c:pull",
                   "alice", "pw");
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->status, 200) << reply->body;
  EXPECT_EQ(reply->header("content-type"), "application/json");
  auto body = nlohmann::json::parse(reply->body);
  ASSERT_TRUE(body["token"].is_string());
  EXPECT_EQ(body["token"], body["access_token"]);
  EXPECT_EQ(body["expires_in"], 300);
  std::string issued_at = body["issued_at"];
  EXPECT_EQ(issued_at.size(), 20u) << issued_at;  // 2024-01-02T03:04:05Z
  EXPECT_EQ(issued_at.back(), 'Z');

  Jwt jwt = DecodeJwt(body["token"]);
  EXPECT_EQ(jwt.header["alg"], "RS256");
  EXPECT_EQ(jwt.header["typ"], "JWT");
  EXPECT_EQ(jwt.header["kid"], issuer_->key_id());
  EXPECT_EQ(jwt.claims["iss"], "iss");
  EXPECT_EQ(jwt.claims["sub"], "alice");
  EXPECT_TRUE(jwt.claims["aud"].is_string());
  EXPECT_EQ(jwt.claims["aud"], "svc");
  int64_t now = absl::ToUnixSeconds(absl::Now());
  EXPECT_NEAR(jwt.claims["iat"].get<int64_t>(), now, 5);
  EXPECT_LE(jwt.claims["nbf"].get<int64_t>(), now + 1);
  EXPECT_EQ(jwt.claims["exp"].get<int64_t>() - jwt.claims["iat"].get<int64_t>(), 300);
  EXPECT_FALSE(jwt.claims["jti"].get<std::string>().empty());
  nlohmann::json want = nlohmann::json::parse(R"([
      {"type":"repository","name":"a/b","actions":["pull","push"]},
      {"type":"repository","name":"c","actions":["pull"]}])");
  EXPECT_EQ(jwt.claims["access"], want);
  ExpectSignedBy(jwt, issuer_->certificate_pem());
  EXPECT_EQ(issuer_->tokens_issued(), 1);
}

TEST_F(IssuerHttpTest, RefusesBadRequests) {
  auto wrong = Get("?service=svc&scope=repository:a:pull", "alice", "nope");
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(wrong->header("www-authenticate"), R"(Basic realm="ocicache-test-token-issuer")");

  auto missing = Get("?service=svc&scope=repository:a:pull", "", "");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->status, 401);

  auto other_user = Get("?service=svc", "bob", "pw");
  ASSERT_TRUE(other_user.ok());
  EXPECT_EQ(other_user->status, 401);

  auto bad_service = Get("?service=other&scope=repository:a:pull", "alice", "pw");
  ASSERT_TRUE(bad_service.ok());
  EXPECT_EQ(bad_service->status, 400);
  EXPECT_NE(bad_service->body.find("unknown service"), std::string::npos) << bad_service->body;

  auto bad_scope = Get("?scope=garbage", "alice", "pw");
  ASSERT_TRUE(bad_scope.ok());
  EXPECT_EQ(bad_scope->status, 400);

  auto post = HttpDo({.method = "POST", .url = issuer_->realm()});
  ASSERT_TRUE(post.ok());
  EXPECT_EQ(post->status, 404);

  EXPECT_EQ(issuer_->tokens_issued(), 0);
  EXPECT_EQ(issuer_->server().request_count(), 6);
}

TEST(TokenIssuerAnonymousTest, AnonymousGetsTokenWithoutAccess) {
  TokenIssuer::Options o;
  o.allow_anonymous = true;
  auto t = TokenIssuer::Start(o);
  ASSERT_TRUE(t.ok()) << t.status();
  auto reply = HttpDo({.url = (*t)->realm() + "?scope=repository:a/b:pull,push"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->status, 200) << reply->body;
  Jwt jwt = DecodeJwt(nlohmann::json::parse(reply->body)["token"]);
  EXPECT_EQ(jwt.claims["sub"], "");
  EXPECT_EQ(jwt.claims["access"], nlohmann::json::array());
  EXPECT_EQ((*t)->tokens_issued(), 1);
}

}  // namespace
}  // namespace ocicache::harness
