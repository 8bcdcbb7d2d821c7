#include "pkg/httpcache/router.h"

#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "pkg/httpcache/handler.h"

namespace ocicache::httpcache {
namespace {

// sha256("x"): a real digest (64 equal digits would read as a ccache name).
const std::string kHash = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";

Routed R(const std::string& method, const std::string& path,
         std::map<std::string, std::string> query = {}) {
  return RouteRequest(method, path, query);
}

TEST(Router, EachUrlSpaceNamesItsObject) {
  Routed r = R("GET", "/cache/ccache/ab/cdef");
  ASSERT_EQ(r.error, 0) << r.message;
  EXPECT_EQ(r.route.protocol, Protocol::kKv);
  EXPECT_EQ(r.route.key, "http:kv:ccache:ab/cdef");
  EXPECT_FALSE(r.route.writes);
  EXPECT_TRUE(R("PUT", "/cache/gradle/0123").route.writes);
  EXPECT_TRUE(R("DELETE", "/cache/gradle/0123").route.writes);

  r = R("HEAD", "/v8/artifacts/0123456789abcdef", {{"slug", "s"}, {"teamId", "team_x"}});
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.route.key, "http:turbo:team_x:0123456789abcdef");  // teamId wins over slug
  EXPECT_EQ(R("GET", "/v8/artifacts/00", {{"slug", "s"}}).route.key, "http:turbo:s:00");
  EXPECT_EQ(R("GET", "/v8/artifacts/00").route.key, "http:turbo::00");
  EXPECT_EQ(R("GET", "/v8/artifacts/status").route.target, Target::kTurboStatus);
  EXPECT_EQ(R("POST", "/v8/artifacts/events").route.target, Target::kTurboEvents);
  EXPECT_EQ(R("POST", "/v8/artifacts").route.target, Target::kTurboQuery);

  r = R("PUT", "/v1/cache/123456");
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.route.key, "http:nx:123456");

  r = R("GET", "/ac/" + kHash);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.route.target, Target::kActionResult);
  EXPECT_EQ(r.route.instance, "");
  r = R("PUT", "/team/x/cas/" + kHash);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.route.target, Target::kCasBlob);
  EXPECT_EQ(r.route.instance, "team/x");
  EXPECT_EQ(R("GET", "/status").route.target, Target::kStatus);
}

TEST(Router, CcacheBazelLayoutNamesAreObjectsNotActionResults) {
  std::string digest40 = "0123456789abcdef0123456789abcdef01234567";
  std::string name = digest40 + digest40.substr(0, 24);
  ASSERT_TRUE(IsCcacheBazelName(name));
  Routed r = R("PUT", "/ccache/ac/" + name);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.route.protocol, Protocol::kKv);
  EXPECT_EQ(r.route.key, "http:ccache-ac:ccache:" + name);
  EXPECT_FALSE(IsCcacheBazelName(std::string(40, 'a') + std::string(24, 'b')));
}

TEST(Router, RefusesWhatNamesNothingWithAClearStatus) {
  struct Case {
    std::string method, path;
    int want;
  };
  for (const Case& c : std::vector<Case>{
           {"GET", "", 400},
           {"GET", "cache/a/b", 400},
           {"GET", "/cache/a/../b", 400},
           {"GET", "/cache/a/./b", 400},
           {"GET", "/cache/a//b", 400},
           {"GET", "/cache/a/b/", 400},
           {"GET", "/cache/A/b", 400},
           {"GET", "/cache/a/b\\c", 400},
           {"GET", std::string("/cache/a/b\0c", 12), 400},
           {"GET", "/cache/a/b%c", 400},
           {"GET", "/cache/a", 400},
           {"GET", "/ac/" + std::string(64, 'G'), 400},
           {"GET", "/ac/" + std::string(65, 'a'), 400},
           {"GET", "/cas/" + std::string(64, 'A'), 400},
           {"GET", "/v8/artifacts/a/b", 400},
           {"GET", "/v8/artifacts/a.b", 400},
           {"GET", "/v8/other", 404},
           {"GET", "/v1/other/1", 404},
           {"GET", "/elsewhere", 404},
           {"POST", "/cache/a/b", 405},
           {"GET", "/v8/artifacts/events", 405},
           {"PUT", "/status", 405},
           {"DELETE", "/ac/" + kHash, 405},
           {"GET", "/" + std::string(kMaxPathBytes + 1, 'a'), 414},
       }) {
    Routed r = R(c.method, c.path);
    EXPECT_EQ(r.error, c.want) << c.method << " " << absl::CHexEscape(c.path.substr(0, 80));
    EXPECT_FALSE(r.message.empty());
    if (r.error == 405) {
      EXPECT_FALSE(r.allow.empty());
    }
  }
  EXPECT_EQ(R("GET", "/v8/artifacts/ab", {{"teamId", "../x"}}).error, 400);
}

TEST(Authorization, BearerAndBasicInBothAlphabets) {
  EXPECT_EQ(BearerFromAuthorization("Bearer tok"), "Bearer tok");
  EXPECT_EQ(BearerFromAuthorization("bearer  tok "), "Bearer tok");
  std::string userpass = "user:p?>?>";  // '/' and '+' in standard base64
  EXPECT_EQ(BearerFromAuthorization("Basic " + absl::Base64Escape(userpass)), "Bearer p?>?>");
  EXPECT_EQ(BearerFromAuthorization("Basic " + absl::WebSafeBase64Escape(userpass)),
            "Bearer p?>?>");
  EXPECT_EQ(BearerFromAuthorization("Basic " + absl::Base64Escape(":only-password")),
            "Bearer only-password");
  EXPECT_EQ(BearerFromAuthorization("Basic " + absl::Base64Escape("no-colon")), "");
  EXPECT_EQ(BearerFromAuthorization("Basic !!!"), "");
  EXPECT_EQ(BearerFromAuthorization("Digest abc"), "");
  EXPECT_EQ(BearerFromAuthorization(""), "");
}

}  // namespace
}  // namespace ocicache::httpcache
