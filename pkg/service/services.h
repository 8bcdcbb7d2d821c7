// The ocicache.v1 servicers (api/ocicache/v1/cache.proto): thin adapters over a
// cache::Store and an admin::Admin. Each handler validates the wire fields,
// calls the domain interface, and converts the result and the status (status.h
// is the one converter). They use gRPC's synchronous API: every call runs on
// one of the server's threads and may block in the store.
#ifndef OCICACHE_PKG_SERVICE_SERVICES_H_
#define OCICACHE_PKG_SERVICE_SERVICES_H_

#include "api/ocicache/v1/cache.grpc.pb.h"
#include "pkg/rpc/backend.h"

namespace ocicache::service {

class EntriesService final : public v1::Entries::Service {
 public:
  explicit EntriesService(const rpc::Backend& b) : b_(b) {}

  grpc::Status Lookup(grpc::ServerContext* ctx, const v1::LookupRequest* req,
                      v1::Entry* resp) override;
  grpc::Status BatchLookup(grpc::ServerContext* ctx, const v1::BatchLookupRequest* req,
                           v1::BatchLookupResponse* resp) override;
  grpc::Status Put(grpc::ServerContext* ctx, const v1::PutRequest* req,
                   v1::PutResponse* resp) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                      v1::DeleteResponse* resp) override;
  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                    grpc::ServerWriter<v1::ListResponse>* writer) override;

 private:
  const rpc::Backend& b_;
};

class BlobsService final : public v1::Blobs::Service {
 public:
  explicit BlobsService(const rpc::Backend& b) : b_(b) {}

  grpc::Status Stat(grpc::ServerContext* ctx, const v1::StatRequest* req,
                    v1::StatResponse* resp) override;
  grpc::Status Read(grpc::ServerContext* ctx, const v1::ReadRequest* req,
                    grpc::ServerWriter<v1::ReadResponse>* writer) override;
  grpc::Status Write(grpc::ServerContext* ctx, grpc::ServerReader<v1::WriteRequest>* reader,
                     v1::WriteResponse* resp) override;
  grpc::Status QueryWrite(grpc::ServerContext* ctx, const v1::QueryWriteRequest* req,
                          v1::QueryWriteResponse* resp) override;
  grpc::Status Mount(grpc::ServerContext* ctx, const v1::MountRequest* req,
                     v1::MountResponse* resp) override;

 private:
  absl::Status WriteResumable(grpc::ServerReader<v1::WriteRequest>* reader,
                              const v1::WriteRequest& first, const oci::Digest& digest,
                              v1::WriteResponse* resp, rpc::Call& call);
  const rpc::Backend& b_;
};

class AdminService final : public v1::Admin::Service {
 public:
  explicit AdminService(const rpc::Backend& b) : b_(b) {}

  grpc::Status GarbageCollect(grpc::ServerContext* ctx, const v1::GarbageCollectRequest* req,
                              grpc::ServerWriter<v1::Progress>* writer) override;
  grpc::Status Sync(grpc::ServerContext* ctx, const v1::SyncRequest* req,
                    grpc::ServerWriter<v1::Progress>* writer) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest* req,
                     v1::StatsResponse* resp) override;

 private:
  const rpc::Backend& b_;
};

}  // namespace ocicache::service

#endif  // OCICACHE_PKG_SERVICE_SERVICES_H_
