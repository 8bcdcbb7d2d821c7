#include "pkg/client/grpc_store.h"

#include <grpcpp/support/status.h>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace ocicache::client {
namespace {

// gRPC says only "Socket closed" both when a TLS port drops a plaintext
// client after its handshake and when a connection breaks mid-stream. Before
// the server spoke, it is explained as a TLS mismatch (not worth a retry);
// after, it is a break (UNAVAILABLE, retried by the callers).
TEST(FromServerTest, SocketClosedIsATlsHintOnlyBeforeTheServerSpoke) {
  grpc::Status closed(grpc::StatusCode::UNAVAILABLE, "Socket closed");
  absl::Status early = FromServer(closed, "127.0.0.1:9", Security::kPlaintext);
  EXPECT_TRUE(absl::IsFailedPrecondition(early)) << early;
  EXPECT_TRUE(absl::StrContains(early.message(), "if it serves TLS, use grpcs://")) << early;

  absl::Status late = FromServer(closed, "127.0.0.1:9", Security::kPlaintext, true);
  EXPECT_TRUE(absl::IsUnavailable(late)) << late;
  EXPECT_TRUE(absl::StrContains(late.message(), "127.0.0.1:9")) << late;
  EXPECT_FALSE(absl::StrContains(late.message(), "TLS")) << late;

  absl::Status mtls = FromServer(closed, "h:1", Security::kTls, true);
  EXPECT_TRUE(absl::IsUnavailable(mtls)) << mtls;
  EXPECT_TRUE(absl::IsFailedPrecondition(FromServer(closed, "h:1", Security::kTls)));

  // Other errors are as the server said.
  grpc::Status miss(grpc::StatusCode::NOT_FOUND, "miss: k");
  EXPECT_TRUE(absl::IsNotFound(FromServer(miss, "h:1", Security::kPlaintext, true)));
}

}  // namespace
}  // namespace ocicache::client
