#include "pkg/registry/auth.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ocicache::registry::internal {
namespace {

TEST(WwwAuthenticateTest, Bearer) {
  std::vector<Challenge> cs = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push")");
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].scheme, "bearer");
  EXPECT_EQ(cs[0].Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(cs[0].Param("service"), "registry.docker.io");
  EXPECT_EQ(cs[0].Param("scope"), "repository:samalba/my-app:pull,push");
}

TEST(WwwAuthenticateTest, BasicSpacesEscapesAndTokens) {
  std::vector<Challenge> cs =
      ParseWwwAuthenticate(R"(basic   Realm = "a \"quoted\", realm" , charset=UTF-8)");
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].scheme, "basic");
  EXPECT_EQ(cs[0].Param("realm"), "a \"quoted\", realm");
  EXPECT_EQ(cs[0].Param("charset"), "UTF-8");
}

TEST(WwwAuthenticateTest, SeveralChallengesInOneValue) {
  std::vector<Challenge> cs = ParseWwwAuthenticate(
      R"(Basic realm="r1", Bearer realm="https://t/token",service="s")");
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].scheme, "basic");
  EXPECT_EQ(cs[0].Param("realm"), "r1");
  EXPECT_EQ(cs[1].scheme, "bearer");
  EXPECT_EQ(cs[1].Param("service"), "s");
}

TEST(WwwAuthenticateTest, PickPrefersBearer) {
  std::optional<Challenge> c =
      PickChallenge({R"(Basic realm="x")", R"(Bearer realm="https://t/token")"});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->scheme, "bearer");
  c = PickChallenge({R"(Basic realm="x")"});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->scheme, "basic");
  EXPECT_FALSE(PickChallenge({"Negotiate abc"}).has_value());
  EXPECT_FALSE(PickChallenge({}).has_value());
  EXPECT_FALSE(PickChallenge({""}).has_value());
}

TEST(ScopesTest, Forms) {
  EXPECT_EQ(PullScope("a/b"), "repository:a/b:pull");
  EXPECT_EQ(PushScope("a/b"), "repository:a/b:pull,push");
  EXPECT_EQ(NormalizeScopes({"b", "a", "", "b"}), (std::vector<std::string>{"a", "b"}));
  // Actions are a set: the registry's challenge may list them in any order, and
  // the scopes one request collects (its own and the challenge's) merge.
  EXPECT_EQ(NormalizeScopes({"repository:a/b:push,pull"}),
            (std::vector<std::string>{"repository:a/b:pull,push"}));
  EXPECT_EQ(NormalizeScopes({"repository:a/b:pull,push", "repository:a/b:push,pull",
                             "repository:a/b:pull"}),
            (std::vector<std::string>{"repository:a/b:pull,push"}));
  // A name with a port keeps its ':'; other resources stay apart.
  EXPECT_EQ(NormalizeScopes({"repository:localhost:5000/x:pull", "repository:c:pull",
                             "repository:localhost:5000/x:push"}),
            (std::vector<std::string>{"repository:c:pull",
                                      "repository:localhost:5000/x:pull,push"}));
}

TEST(TokenResponseTest, TokenAccessTokenAndExpiry) {
  absl::Time now = absl::FromUnixSeconds(1000000);
  absl::StatusOr<Token> t = ParseTokenResponse(R"({"token":"abc","expires_in":300})", now);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->value, "abc");
  EXPECT_GT(t->expiry, now + absl::Seconds(240));
  EXPECT_LT(t->expiry, now + absl::Seconds(300));

  t = ParseTokenResponse(R"({"access_token":"xyz"})", now);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->value, "xyz");
  // 60 s by default.
  EXPECT_GT(t->expiry, now + absl::Seconds(50));
  EXPECT_LE(t->expiry, now + absl::Seconds(60));

  EXPECT_EQ(ParseTokenResponse(R"({"token":""})", now).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ParseTokenResponse("<html>", now).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(UrlEncodeTest, Reserved) {
  EXPECT_EQ(UrlEncode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
  EXPECT_EQ(UrlEncode("a b~-_."), "a%20b~-_.");
}

// The authenticator with a fake token realm: caching per scope set, Basic to the
// realm, refresh-token grant, and what a 401 teaches it.
class AuthenticatorTest : public ::testing::Test {
 protected:
  AuthenticatorTest()
      : auth_("reg.example.com",
              [this](const HttpRequest& r) -> absl::StatusOr<HttpResponse> {
                requests_.push_back(r);
                HttpResponse resp;
                resp.status = realm_status_;
                resp.body = absl::StrCat(R"({"token":"tok)", requests_.size(), R"("})");
                return resp;
              },
              [this]() -> absl::StatusOr<Credentials> {
                ++creds_calls_;
                return creds_;
              }) {}

  static HttpHeaders Challenge401(const std::string& value) {
    HttpHeaders h;
    h.entries.emplace_back("www-authenticate", value);
    return h;
  }

  Authenticator auth_;
  std::vector<HttpRequest> requests_;
  long realm_status_ = 200;
  Credentials creds_;
  int creds_calls_ = 0;
};

TEST_F(AuthenticatorTest, AnonymousWhenNoChallenge) {
  auth_.SetChallenge(std::nullopt);
  absl::StatusOr<std::string> a = auth_.Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "");
  EXPECT_TRUE(requests_.empty());
  EXPECT_EQ(creds_calls_, 0);  // credentials are looked up only when needed
}

TEST_F(AuthenticatorTest, BasicChallenge) {
  creds_ = {"user", "pass", ""};
  auth_.SetChallenge(PickChallenge({R"(Basic realm="r")"}));
  absl::StatusOr<std::string> a = auth_.Authorization({});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Basic dXNlcjpwYXNz");
  // A 401 after answering Basic: retrying cannot help.
  std::vector<std::string> scopes;
  EXPECT_FALSE(auth_.OnUnauthorized(Challenge401(R"(Basic realm="r")"), &scopes, *a));
  // A 401 to a request that went out before the challenge was known (no
  // Authorization): one more try with the credentials helps.
  EXPECT_TRUE(auth_.OnUnauthorized(Challenge401(R"(Basic realm="r")"), &scopes, ""));
}

TEST_F(AuthenticatorTest, BearerTokensCachedPerScopeSet) {
  creds_ = {"user", "pass", ""};
  auth_.SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token?x=1",service="svc")"}));
  absl::StatusOr<std::string> a = auth_.Authorization({"repository:b:pull", "repository:a:pull"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "Bearer tok1");
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].method, "GET");
  EXPECT_EQ(requests_[0].url,
            "http://127.0.0.1:1/token?x=1&service=svc&scope=repository%3Aa%3Apull"
            "&scope=repository%3Ab%3Apull");
  EXPECT_NE(std::find(requests_[0].headers.begin(), requests_[0].headers.end(),
                      "Authorization: Basic dXNlcjpwYXNz"),
            requests_[0].headers.end());

  // Same set, other order: cached.
  a = auth_.Authorization({"repository:a:pull", "repository:b:pull"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok1");
  EXPECT_EQ(requests_.size(), 1u);
  EXPECT_EQ(auth_.tokens_fetched(), 1);

  // Another set: another token.
  a = auth_.Authorization({"repository:a:pull,push"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok2");
  EXPECT_EQ(auth_.tokens_fetched(), 2);

  // A 401 naming a scope: it is added, the old token dropped, a new one fetched.
  std::vector<std::string> scopes = {"repository:a:pull,push"};
  EXPECT_TRUE(auth_.OnUnauthorized(
      Challenge401(R"(Bearer realm="http://127.0.0.1:1/token?x=1",service="svc",scope="repository:c:pull")"),
      &scopes, *a));
  EXPECT_EQ(scopes, (std::vector<std::string>{"repository:a:pull,push", "repository:c:pull"}));
  a = auth_.Authorization(scopes);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok3");
  EXPECT_EQ(creds_calls_, 1);
}

TEST_F(AuthenticatorTest, RealmRejectsCredentials) {
  creds_ = {"user", "wrong", ""};
  realm_status_ = 403;
  auth_.SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  absl::StatusOr<std::string> a = auth_.Authorization({"repository:a:pull"});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnauthenticated) << a.status();
  EXPECT_EQ(std::string(a.status().message()).find("wrong"), std::string::npos);
}

TEST_F(AuthenticatorTest, IdentityTokenUsesRefreshGrant) {
  creds_.identity_token = "refresh-secret";
  auth_.SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token",service="s v")"}));
  absl::StatusOr<std::string> a = auth_.Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].method, "POST");
  EXPECT_EQ(requests_[0].url, "http://127.0.0.1:1/token");
  EXPECT_EQ(requests_[0].body,
            "grant_type=refresh_token&client_id=ocicache&service=s%20v"
            "&scope=repository%3Aa%3Apull&refresh_token=refresh-secret");
}

TEST_F(AuthenticatorTest, RegistryTokenSentAsIs) {
  creds_.password = "registry-token";
  auth_.SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  absl::StatusOr<std::string> a = auth_.Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer registry-token");
  EXPECT_TRUE(requests_.empty());
}

// ---- The auth cache kept for later processes (auth_cache.h) -----------------

class AuthCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    base_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/authcache-XXXXXX");
    ASSERT_NE(mkdtemp(base_.data()), nullptr);
    dir_ = base_ + "/auth";
  }

  // A new authenticator on dir_, as a new process would make.
  std::unique_ptr<Authenticator> Process(const Credentials& creds) {
    return std::make_unique<Authenticator>(
        "reg.example.com",
        [this](const HttpRequest& r) -> absl::StatusOr<HttpResponse> {
          ++fetches_;
          HttpResponse resp;
          resp.status = 200;
          resp.body = absl::StrCat(R"({"token":"tok)", fetches_, R"(","expires_in":300})");
          return resp;
        },
        [creds]() -> absl::StatusOr<Credentials> { return creds; }, dir_);
  }

  std::string base_, dir_;
  int fetches_ = 0;
};

TEST_F(AuthCacheTest, ALaterProcessUsesTheChallengeAndTheTokenOfItsUser) {
  const Credentials alice{"alice", "a-pass", ""};
  auto p1 = Process(alice);
  EXPECT_FALSE(p1->known());
  p1->SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token",service="svc")"}));
  absl::StatusOr<std::string> a = p1->Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "Bearer tok1");

  // Known before any request, and the same token without a fetch.
  auto p2 = Process(alice);
  EXPECT_TRUE(p2->known());
  a = p2->Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "Bearer tok1");
  EXPECT_EQ(fetches_, 1);
  EXPECT_EQ(p2->tokens_fetched(), 0);
  // Other scopes: a fetch.
  a = p2->Authorization({"repository:a:pull,push"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok2");

  // Another user never gets alice's tokens, nor does alice with another
  // password (a wrong one must fail as it would without the cache).
  auto p3 = Process(Credentials{"bob", "b-pass", ""});
  a = p3->Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok3");
  auto wrong = Process(Credentials{"alice", "not-a-pass", ""});
  a = wrong->Authorization({"repository:a:pull"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok4");
  EXPECT_EQ(fetches_, 4);

  // Both users' tokens are kept side by side; the file holds no password.
  auto p4 = Process(alice);
  a = p4->Authorization({"repository:a:pull,push"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok2");
  std::ifstream in(AuthCachePath(dir_, "reg.example.com"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("a-pass"), std::string::npos);
  EXPECT_EQ(text.find("b-pass"), std::string::npos);
  EXPECT_EQ(text.find("alice"), std::string::npos);
  EXPECT_NE(text.find("tok3"), std::string::npos);

  // A kept token the registry refused is not used again.
  std::vector<std::string> scopes = {"repository:a:pull"};
  auto p5 = Process(alice);
  a = p5->Authorization(scopes);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok1");
  HttpHeaders h;
  h.entries.emplace_back("www-authenticate",
                         R"(Bearer realm="http://127.0.0.1:1/token",service="svc")");
  EXPECT_TRUE(p5->OnUnauthorized(h, &scopes, *a));
  a = p5->Authorization(scopes);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "Bearer tok5");
}

TEST_F(AuthCacheTest, ExpiredTokensAreDropped) {
  auto p1 = Process(Credentials{"alice", "a-pass", ""});
  p1->SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  ASSERT_TRUE(p1->Authorization({"repository:a:pull"}).ok());
  EXPECT_EQ(LoadAuthCache(dir_, "reg.example.com", absl::Now()).tokens.size(), 1u);
  EXPECT_TRUE(LoadAuthCache(dir_, "reg.example.com", absl::Now() + absl::Minutes(10)).tokens.empty());
}

TEST_F(AuthCacheTest, FilesOthersCouldWriteOrReadAreIgnored) {
  auto p1 = Process(Credentials{"alice", "a-pass", ""});
  p1->SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  ASSERT_TRUE(p1->Authorization({"repository:a:pull"}).ok());
  const std::string path = AuthCachePath(dir_, "reg.example.com");
  ASSERT_TRUE(LoadAuthCache(dir_, "reg.example.com", absl::Now()).known);
  // Readable by others: not a file we wrote.
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_FALSE(LoadAuthCache(dir_, "reg.example.com", absl::Now()).known);
  EXPECT_FALSE(Process(Credentials{"alice", "a-pass", ""})->known());
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  // A directory others may write into.
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  EXPECT_FALSE(LoadAuthCache(dir_, "reg.example.com", absl::Now()).known);
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_TRUE(LoadAuthCache(dir_, "reg.example.com", absl::Now()).known);
  // Another registry's file, or one that does not parse: nothing.
  EXPECT_FALSE(LoadAuthCache(dir_, "other.example.com", absl::Now()).known);
  {
    std::ofstream out(path, std::ios::trunc);
    out << "{not json";
  }
  EXPECT_FALSE(LoadAuthCache(dir_, "reg.example.com", absl::Now()).known);
  auto p2 = Process(Credentials{"alice", "a-pass", ""});
  EXPECT_FALSE(p2->known());
}

TEST_F(AuthCacheTest, AnonymousAccessIsNotKept) {
  auto p1 = Process(Credentials{});
  p1->SetChallenge(std::nullopt);
  p1->NoteAnonymousOk();
  EXPECT_FALSE(Process(Credentials{})->known());
  struct stat st;
  EXPECT_NE(::stat(AuthCachePath(dir_, "reg.example.com").c_str(), &st), 0);
}

// A kept challenge whose realm no longer answers is dropped: the request goes
// out without credentials and learns the registry's current challenge.
TEST_F(AuthCacheTest, AKeptChallengeWhoseRealmFailsIsForgotten) {
  auto p1 = Process(Credentials{"alice", "a-pass", ""});
  p1->SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  ASSERT_TRUE(p1->Authorization({"repository:a:pull"}).ok());
  auto p2 = std::make_unique<Authenticator>(
      "reg.example.com",
      [](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
        return absl::UnavailableError("connection refused");
      },
      []() -> absl::StatusOr<Credentials> { return Credentials{"alice", "a-pass", ""}; }, dir_);
  EXPECT_TRUE(p2->known());
  absl::StatusOr<std::string> a = p2->Authorization({"repository:other:pull"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "");
  EXPECT_FALSE(p2->known());
  // A challenge the registry itself gave is not forgotten so.
  p2->SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  EXPECT_FALSE(p2->Authorization({"repository:other:pull"}).ok());
}

// Requests in flight together when the kept challenge turns out stale: the
// one that fetches drops it, and those that waited for it to finish do not
// try the stale realm again and fail, they too go out without credentials.
// (Sixteen upload threads of a build hit this on a registry that reused the
// port of an earlier token registry.)
TEST_F(AuthCacheTest, RequestsWaitingOnAStaleKeptChallengeAllLearnTheNewOne) {
  auto p1 = Process(Credentials{"alice", "a-pass", ""});
  p1->SetChallenge(PickChallenge({R"(Bearer realm="http://127.0.0.1:1/token")"}));
  ASSERT_TRUE(p1->Authorization({"repository:a:pull"}).ok());
  std::atomic<int> fetches{0};
  auto p2 = std::make_unique<Authenticator>(
      "reg.example.com",
      [&](const HttpRequest&) -> absl::StatusOr<HttpResponse> {
        fetches.fetch_add(1);
        absl::SleepFor(absl::Milliseconds(100));  // the others queue behind it
        return absl::UnavailableError("connection refused");
      },
      []() -> absl::StatusOr<Credentials> { return Credentials{"alice", "a-pass", ""}; }, dir_);
  ASSERT_TRUE(p2->known());
  std::vector<absl::StatusOr<std::string>> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = p2->Authorization({"repository:b:push,pull"}); });
  }
  for (auto& t : threads) t.join();
  for (const auto& a : got) {
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(*a, "");
  }
  EXPECT_EQ(fetches.load(), 1);
  EXPECT_FALSE(p2->known());
}

}  // namespace
}  // namespace ocicache::registry::internal
