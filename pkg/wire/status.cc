#include "pkg/wire/status.h"

#include <string>

#include "absl/strings/cord.h"
#include "api/ocicache/v1/cache.pb.h"

namespace ocicache::wire {
namespace {

// gRPC carries the message in a header: keep it one reasonable line.
constexpr size_t kMaxMessage = 4096;

bool KnownCode(int code) { return code >= 0 && code <= 16; }

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  std::string message(s.message().substr(0, kMaxMessage));
  v1::RpcStatus details;
  s.ForEachPayload([&details](absl::string_view url, const absl::Cord& payload) {
    auto* any = details.add_details();
    any->set_type_url(std::string(url));
    any->set_value(std::string(payload));
  });
  auto code = static_cast<grpc::StatusCode>(s.code());
  if (!KnownCode(static_cast<int>(s.code()))) code = grpc::StatusCode::UNKNOWN;
  if (details.details().empty()) return grpc::Status(code, message);
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  return grpc::Status(code, message, details.SerializeAsString());
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  int code = static_cast<int>(s.error_code());
  absl::Status out(KnownCode(code) ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown,
                   s.error_message());
  if (!s.error_details().empty()) {
    v1::RpcStatus details;
    if (details.ParseFromString(s.error_details())) {
      for (const auto& any : details.details()) {
        if (any.type_url().empty()) continue;
        out.SetPayload(any.type_url(), absl::Cord(any.value()));
      }
    }
  }
  return out;
}

}  // namespace ocicache::wire
