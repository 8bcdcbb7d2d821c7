// The REAPI v2 cache servicers: Capabilities, ActionCache,
// ContentAddressableStorage and google.bytestream.ByteStream. Thin adapters:
// each handler parses and checks the wire fields, picks the Instance,
// calls it, and converts the result and status (pkg/wire/status.h). They
// share rpc::Backend with the ocicache.v1 services: the same tokens
// (reads need a read token, writes a write token), counters and access log
// (with the client's requestmetadata-bin fields appended).
#ifndef OCICACHE_PKG_REAPI_SERVICES_H_
#define OCICACHE_PKG_REAPI_SERVICES_H_

#include <cstdint>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "pkg/reapi/instance.h"
#include "pkg/rpc/backend.h"

namespace ocicache::reapi {

namespace bs = ::google::bytestream;

struct ReapiOptions {
  // Largest total of blob bytes in one Batch call (advertised in Capabilities).
  int64_t max_batch_total_size_bytes = 4 << 20;
  // GetTree: directories per response when the client does not say.
  int tree_page_size = 1000;
  // FindMissingBlobs looks up at most this many blobs not known present in
  // one call; the rest are reported missing (Instance::FindMissing).
  size_t max_find_missing_checks = 4096;
};

// Everything the four servicers share; not owned.
struct ReapiBackend {
  const rpc::Backend* base = nullptr;
  Instances* instances = nullptr;
  ReapiOptions options;
};

class CapabilitiesService final : public v2::Capabilities::Service {
 public:
  explicit CapabilitiesService(const ReapiBackend& b) : b_(b) {}
  grpc::Status GetCapabilities(grpc::ServerContext* ctx, const v2::GetCapabilitiesRequest* req,
                               v2::ServerCapabilities* resp) override;

 private:
  const ReapiBackend& b_;
};

class ActionCacheService final : public v2::ActionCache::Service {
 public:
  explicit ActionCacheService(const ReapiBackend& b) : b_(b) {}
  grpc::Status GetActionResult(grpc::ServerContext* ctx, const v2::GetActionResultRequest* req,
                               v2::ActionResult* resp) override;
  grpc::Status UpdateActionResult(grpc::ServerContext* ctx,
                                  const v2::UpdateActionResultRequest* req,
                                  v2::ActionResult* resp) override;

 private:
  const ReapiBackend& b_;
};

class CasService final : public v2::ContentAddressableStorage::Service {
 public:
  explicit CasService(const ReapiBackend& b) : b_(b) {}
  grpc::Status FindMissingBlobs(grpc::ServerContext* ctx, const v2::FindMissingBlobsRequest* req,
                                v2::FindMissingBlobsResponse* resp) override;
  grpc::Status BatchUpdateBlobs(grpc::ServerContext* ctx, const v2::BatchUpdateBlobsRequest* req,
                                v2::BatchUpdateBlobsResponse* resp) override;
  grpc::Status BatchReadBlobs(grpc::ServerContext* ctx, const v2::BatchReadBlobsRequest* req,
                              v2::BatchReadBlobsResponse* resp) override;
  grpc::Status GetTree(grpc::ServerContext* ctx, const v2::GetTreeRequest* req,
                       grpc::ServerWriter<v2::GetTreeResponse>* writer) override;

 private:
  const ReapiBackend& b_;
};

class ByteStreamService final : public bs::ByteStream::Service {
 public:
  explicit ByteStreamService(const ReapiBackend& b) : b_(b) {}
  grpc::Status Read(grpc::ServerContext* ctx, const bs::ReadRequest* req,
                    grpc::ServerWriter<bs::ReadResponse>* writer) override;
  grpc::Status Write(grpc::ServerContext* ctx, grpc::ServerReader<bs::WriteRequest>* reader,
                     bs::WriteResponse* resp) override;
  grpc::Status QueryWriteStatus(grpc::ServerContext* ctx, const bs::QueryWriteStatusRequest* req,
                                bs::QueryWriteStatusResponse* resp) override;

 private:
  absl::Status DoWrite(grpc::ServerReader<bs::WriteRequest>* reader, const bs::WriteRequest& first,
                       bs::WriteResponse* resp, rpc::Call& call);
  const ReapiBackend& b_;
};

// The staging id of a ByteStream upload (pkg/rpc/uploads.h): a hash of
// instance, uuid and blob, so ids stay short and uploads of different
// instances never meet.
std::string UploadId(absl::string_view instance, absl::string_view uuid, const BlobId& blob);

}  // namespace ocicache::reapi

#endif  // OCICACHE_PKG_REAPI_SERVICES_H_
