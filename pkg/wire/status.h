// The one place where absl::Status (below the RPC layer) and grpc::Status (on
// the wire) meet; the server and the client both use it, so codes never drift.
//
// Codes map one to one (absl::StatusCode and grpc::StatusCode share numbers).
// The message is kept. Status payloads (e.g. the registry client's
// "ocicache.registry/temporary") travel in the error details as an
// ocicache.v1.RpcStatus (google.rpc.Status on the wire), so a client can still
// tell a registry's temporary failure from a permanent one.
#ifndef OCICACHE_PKG_WIRE_STATUS_H_
#define OCICACHE_PKG_WIRE_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace ocicache::wire {

grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

}  // namespace ocicache::wire

#endif  // OCICACHE_PKG_WIRE_STATUS_H_
