#include "pkg/rpc/auth.h"

#include "gtest/gtest.h"

namespace ocicache::rpc {
namespace {

TEST(TokenAuthTest, ParseAndCheck) {
  auto auth = TokenAuth::Parse(
      "# CI readers\n"
      "reader-0123456789abcdef read\n"
      "\n"
      "writer-0123456789abcdef   write  # the build farm\n");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->size(), 2u);
  EXPECT_TRUE(auth->Check("Bearer reader-0123456789abcdef", Access::kRead).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(auth->Check("Bearer reader-0123456789abcdef", Access::kWrite)));
  EXPECT_TRUE(auth->Check("Bearer writer-0123456789abcdef", Access::kWrite).ok());
  EXPECT_TRUE(auth->Check("Bearer writer-0123456789abcdef", Access::kRead).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(auth->Check("", Access::kRead)));
  EXPECT_TRUE(absl::IsUnauthenticated(auth->Check("Bearer nope-0123456789abcdef", Access::kRead)));
  EXPECT_TRUE(absl::IsUnauthenticated(auth->Check("Basic dXNlcjpwYXNz", Access::kRead)));
  EXPECT_TRUE(absl::IsUnauthenticated(auth->Check("reader-0123456789abcdef", Access::kRead)));
}

TEST(TokenAuthTest, BadFiles) {
  EXPECT_FALSE(TokenAuth::Parse("").ok());
  EXPECT_FALSE(TokenAuth::Parse("# only comments\n").ok());
  EXPECT_FALSE(TokenAuth::Parse("short read\n").ok());
  EXPECT_FALSE(TokenAuth::Parse("long-enough-token-here admin\n").ok());
  EXPECT_FALSE(TokenAuth::Parse("long-enough-token-here\n").ok());
  EXPECT_FALSE(TokenAuth::FromFile("/nonexistent/tokens").ok());
}

}  // namespace
}  // namespace ocicache::rpc
