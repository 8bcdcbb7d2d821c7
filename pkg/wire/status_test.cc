#include "pkg/wire/status.h"

#include "absl/strings/cord.h"
#include "gtest/gtest.h"
#include "pkg/registry/client.h"

namespace ocicache::wire {
namespace {

TEST(StatusTest, OkIsOk) {
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpc(grpc::Status::OK).ok());
}

TEST(StatusTest, EveryCodeRoundTrips) {
  for (int c = 1; c <= 16; ++c) {
    absl::Status s(static_cast<absl::StatusCode>(c), "message");
    grpc::Status g = ToGrpc(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), c);
    EXPECT_EQ(g.error_message(), "message");
    absl::Status back = FromGrpc(g);
    EXPECT_EQ(back.code(), s.code());
    EXPECT_EQ(back.message(), "message");
  }
}

TEST(StatusTest, NamedCodesMatch) {
  EXPECT_EQ(ToGrpc(absl::NotFoundError("miss")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpc(absl::DataLossError("x")).error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")).code(),
            absl::StatusCode::kUnavailable);
}

TEST(StatusTest, PayloadsTravel) {
  // A registry's 429 that is not temporary any more (after retries) keeps saying so.
  absl::Status s = absl::ResourceExhaustedError("registry: 429 TOOMANYREQUESTS");
  s.SetPayload("ocicache.registry/temporary", absl::Cord("0"));
  s.SetPayload("example.com/other", absl::Cord(std::string("\0\1binary", 8)));
  ASSERT_FALSE(registry::IsTemporary(s));
  absl::Status back = FromGrpc(ToGrpc(s));
  EXPECT_EQ(back.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(registry::IsTemporary(back));
  auto other = back.GetPayload("example.com/other");
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(std::string(*other), std::string("\0\1binary", 8));
}

TEST(StatusTest, GarbageDetailsAreIgnored) {
  grpc::Status g(grpc::StatusCode::INTERNAL, "boom", "\xff\xff not a proto");
  absl::Status s = FromGrpc(g);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.message(), "boom");
}

TEST(StatusTest, LongMessagesAreCut) {
  std::string long_message(100000, 'm');
  EXPECT_LE(ToGrpc(absl::InternalError(long_message)).error_message().size(), 4096u);
}

}  // namespace
}  // namespace ocicache::wire
