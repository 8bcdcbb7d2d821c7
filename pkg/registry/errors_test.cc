#include "pkg/registry/errors.h"

#include "gtest/gtest.h"

namespace ocicache::registry::internal {
namespace {

TEST(ErrorBodyTest, DistributionJson) {
  ErrorBody e = ParseErrorBody(
      R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},
                   {"code":"OTHER","message":"m"}]})");
  EXPECT_EQ(e.code, "MANIFEST_UNKNOWN");
  EXPECT_EQ(e.message, "manifest unknown");
  EXPECT_EQ(e.detail, R"({"Tag":"x"})");
  EXPECT_EQ(e.more, 1);
}

TEST(ErrorBodyTest, PlainTextAndOtherJson) {
  ErrorBody e = ParseErrorBody("404 page not found\nmore lines\n");
  EXPECT_EQ(e.code, "");
  EXPECT_EQ(e.message, "404 page not found...");
  e = ParseErrorBody(R"({"error":"invalid_grant","error_description":"bad refresh token"})");
  EXPECT_EQ(e.message, "bad refresh token");
  e = ParseErrorBody(R"({"errors":[]})");
  EXPECT_EQ(e.code, "");
  e = ParseErrorBody(std::string(1000, 'x'));
  EXPECT_LE(e.message.size(), 310u);
  e = ParseErrorBody("");
  EXPECT_EQ(e.message, "");
}

TEST(HttpErrorTest, MessageCodeAndPayloads) {
  absl::Status s = HttpError("registry 127.0.0.1:5000: GET manifest cache/x:tag", 404,
                             R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(),
            "registry 127.0.0.1:5000: GET manifest cache/x:tag: 404 MANIFEST_UNKNOWN: manifest unknown");
  EXPECT_EQ(RegistryErrorCode(s), "MANIFEST_UNKNOWN");
  EXPECT_FALSE(IsTemporary(s));

  s = HttpError("p", 503, "upstream down");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "p: 503 Service Unavailable: upstream down");
  EXPECT_EQ(RegistryErrorCode(s), "");
  EXPECT_TRUE(IsTemporary(s));

  s = HttpError("p", 429, "");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "p: 429 Too Many Requests");
  EXPECT_TRUE(IsTemporary(s));

  EXPECT_EQ(HttpError("p", 400, "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpError("p", 401, "").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HttpError("p", 403, "").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(HttpError("p", 405, "").code(), absl::StatusCode::kUnimplemented);
  EXPECT_FALSE(IsTemporary(HttpError("p", 501, "")));
}

TEST(HttpErrorTest, MessageIsOneLine) {
  absl::Status s = HttpError("p", 500, R"({"errors":[{"code":"X","message":"a\r\nb"}]})");
  EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos) << s;
}

TEST(StatusHelpersTest, AnnotateKeepsPayloads) {
  absl::Status s = MakeError(absl::StatusCode::kUnavailable, "refused", "", true);
  absl::Status a = Annotate(s, "registry h: GET /v2/");
  EXPECT_EQ(a.message(), "registry h: GET /v2/: refused");
  EXPECT_TRUE(IsTemporary(a));
  // Statuses from elsewhere are judged by code.
  EXPECT_TRUE(IsTemporary(absl::UnavailableError("x")));
  EXPECT_FALSE(IsTemporary(absl::NotFoundError("x")));
  EXPECT_FALSE(IsTemporary(absl::OkStatus()));
  EXPECT_FALSE(IsTemporary(MakeError(absl::StatusCode::kUnavailable, "tls", "", false)));
}

}  // namespace
}  // namespace ocicache::registry::internal
