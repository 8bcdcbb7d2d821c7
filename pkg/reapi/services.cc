#include "pkg/reapi/services.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "pkg/oci/digest.h"
#include "pkg/base/parallel.h"
#include "pkg/rpc/streams.h"
#include "pkg/rpc/uploads.h"

namespace ocicache::reapi {
namespace {

using rpc::Access;
using rpc::Call;

constexpr char kRequestMetadataKey[] = "build.bazel.remote.execution.v2.requestmetadata-bin";

// Appends the client's RequestMetadata (tool, invocation, mnemonic, target) to the log line.
void NoteMetadata(grpc::ServerContext* ctx, Call& call) {
  if (ctx == nullptr) return;
  const auto& md = ctx->client_metadata();
  auto it = md.find(kRequestMetadataKey);
  if (it == md.end()) return;
  v2::RequestMetadata m;
  if (!m.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()))) {
    call.Note(" metadata=unparsable");
    return;
  }
  call.Note(RequestMetadataFields(m));
}

// Every REAPI call starts here: the client's request metadata goes into the
// access log (also for calls refused next), then the token is checked.
absl::Status Begin(grpc::ServerContext* ctx, Call& call) {
  NoteMetadata(ctx, call);
  return call.Authorize();
}

// The same, for a request naming its digest function: this cache hashes with
// SHA-256 only (Capabilities says so), and a request for another function is
// refused rather than answered with SHA-256 digests. Unset (UNKNOWN) means the
// server's only one, as REAPI specifies.
absl::Status Begin(grpc::ServerContext* ctx, Call& call, v2::DigestFunction::Value digest_function) {
  if (absl::Status s = Begin(ctx, call); !s.ok()) return s;
  if (digest_function == v2::DigestFunction::UNKNOWN ||
      digest_function == v2::DigestFunction::SHA256) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "digest_function ", v2::DigestFunction::Value_Name(digest_function),
      ": this cache supports SHA256 only"));
}

void SetRpcStatus(const absl::Status& s, ::google::rpc::Status* out) {
  out->set_code(static_cast<int>(s.code()));
  out->set_message(std::string(s.message()));
}

absl::StatusOr<std::vector<BlobId>> ParseDigests(
    const google::protobuf::RepeatedPtrField<v2::Digest>& digests, absl::string_view field) {
  std::vector<BlobId> out;
  out.reserve(digests.size());
  for (int i = 0; i < digests.size(); ++i) {
    auto id = FromProto(digests[i], absl::StrCat(field, "[", i, "]"));
    if (!id.ok()) return id.status();
    out.push_back(*id);
  }
  return out;
}

}  // namespace

std::string UploadId(absl::string_view instance, absl::string_view uuid, const BlobId& blob) {
  return absl::StrCat("reapi:",
                      oci::Digest::Of(absl::StrCat(instance, "\n", uuid, "\n", blob.str())).hex());
}

// ---- Capabilities ----

grpc::Status CapabilitiesService::GetCapabilities(grpc::ServerContext* ctx,
                                                  const v2::GetCapabilitiesRequest* req,
                                                  v2::ServerCapabilities* resp) {
  Call call(*b_.base, ctx, "Capabilities/GetCapabilities", Access::kRead);
  if (absl::Status s = Begin(ctx, call); !s.ok()) return call.Done(s);
  call.Subject(req->instance_name());
  if (auto inst = b_.instances->Get(req->instance_name()); !inst.ok()) {
    return call.Done(inst.status());
  }
  v2::CacheCapabilities* cache = resp->mutable_cache_capabilities();
  cache->add_digest_functions(v2::DigestFunction::SHA256);
  cache->mutable_action_cache_update_capabilities()->set_update_enabled(
      call.Allows(Access::kWrite));
  auto* range = cache->mutable_cache_priority_capabilities()->add_priorities();
  range->set_min_priority(0);
  range->set_max_priority(0);
  cache->set_max_batch_total_size_bytes(b_.options.max_batch_total_size_bytes);
  cache->set_symlink_absolute_path_strategy(v2::SymlinkAbsolutePathStrategy::ALLOWED);
  for (auto* v : {resp->mutable_deprecated_api_version(), resp->mutable_low_api_version()}) {
    v->set_major(2);
    v->set_minor(0);
  }
  resp->mutable_high_api_version()->set_major(2);
  resp->mutable_high_api_version()->set_minor(3);
  return call.Done(absl::OkStatus());
}

// ---- ActionCache ----

grpc::Status ActionCacheService::GetActionResult(grpc::ServerContext* ctx,
                                                 const v2::GetActionResultRequest* req,
                                                 v2::ActionResult* resp) {
  Call call(*b_.base, ctx, "ActionCache/GetActionResult", Access::kRead);
  if (absl::Status s = Begin(ctx, call, req->digest_function()); !s.ok()) {
    return call.Done(s);
  }
  call.Subject(absl::StrCat(req->instance_name(), req->instance_name().empty() ? "" : "/",
                            req->action_digest().hash()));
  auto action = FromProto(req->action_digest(), "action_digest");
  if (!action.ok()) return call.Done(action.status());
  auto inst = b_.instances->Get(req->instance_name());
  if (!inst.ok()) return call.Done(inst.status());
  rpc::Counters* c = b_.base->counters;
  c->lookups.fetch_add(1, std::memory_order_relaxed);
  auto result = (*inst)->GetActionResult(*action);
  if (result.ok()) {
    c->hits.fetch_add(1, std::memory_order_relaxed);
    *resp = *std::move(result);
    return call.Done(absl::OkStatus());
  }
  if (absl::IsNotFound(result.status())) c->misses.fetch_add(1, std::memory_order_relaxed);
  return call.Done(result.status());
}

grpc::Status ActionCacheService::UpdateActionResult(grpc::ServerContext* ctx,
                                                    const v2::UpdateActionResultRequest* req,
                                                    v2::ActionResult* resp) {
  Call call(*b_.base, ctx, "ActionCache/UpdateActionResult", Access::kWrite);
  if (absl::Status s = Begin(ctx, call, req->digest_function()); !s.ok()) {
    return call.Done(s);
  }
  call.Subject(absl::StrCat(req->instance_name(), req->instance_name().empty() ? "" : "/",
                            req->action_digest().hash()));
  auto action = FromProto(req->action_digest(), "action_digest");
  if (!action.ok()) return call.Done(action.status());
  if (!req->has_action_result()) {
    return call.Done(absl::InvalidArgumentError("action_result: missing"));
  }
  auto inst = b_.instances->Get(req->instance_name());
  if (!inst.ok()) return call.Done(inst.status());
  auto stored = (*inst)->UpdateActionResult(*action, req->action_result());
  if (!stored.ok()) return call.Done(stored.status());
  *resp = *std::move(stored);
  return call.Done(absl::OkStatus());
}

// ---- ContentAddressableStorage ----

grpc::Status CasService::FindMissingBlobs(grpc::ServerContext* ctx,
                                          const v2::FindMissingBlobsRequest* req,
                                          v2::FindMissingBlobsResponse* resp) {
  Call call(*b_.base, ctx, "CAS/FindMissingBlobs", Access::kRead);
  if (absl::Status s = Begin(ctx, call, req->digest_function()); !s.ok()) {
    return call.Done(s);
  }
  call.Subject(absl::StrCat(req->blob_digests_size(), " blobs"));
  auto blobs = ParseDigests(req->blob_digests(), "blob_digests");
  if (!blobs.ok()) return call.Done(blobs.status());
  auto inst = b_.instances->Get(req->instance_name());
  if (!inst.ok()) return call.Done(inst.status());
  size_t unchecked = 0;
  auto missing = (*inst)->FindMissing(*blobs, b_.options.max_find_missing_checks, &unchecked);
  if (!missing.ok()) return call.Done(missing.status());
  for (const BlobId& b : *missing) *resp->add_missing_blob_digests() = ToProto(b);
  call.Note(absl::StrCat(" missing=", missing->size()));
  if (unchecked > 0) call.Note(absl::StrCat(" unchecked=", unchecked));
  return call.Done(absl::OkStatus());
}

grpc::Status CasService::BatchUpdateBlobs(grpc::ServerContext* ctx,
                                          const v2::BatchUpdateBlobsRequest* req,
                                          v2::BatchUpdateBlobsResponse* resp) {
  Call call(*b_.base, ctx, "CAS/BatchUpdateBlobs", Access::kWrite);
  if (absl::Status s = Begin(ctx, call, req->digest_function()); !s.ok()) {
    return call.Done(s);
  }
  call.Subject(absl::StrCat(req->requests_size(), " blobs"));
  int64_t total = 0;
  for (const auto& r : req->requests()) total += static_cast<int64_t>(r.data().size());
  if (total > b_.options.max_batch_total_size_bytes) {
    return call.Done(absl::InvalidArgumentError(
        absl::StrCat("the batch holds ", total, " bytes, the limit is ",
                     b_.options.max_batch_total_size_bytes, " (max_batch_total_size_bytes)")));
  }
  auto inst = b_.instances->Get(req->instance_name());
  if (!inst.ok()) return call.Done(inst.status());
  std::vector<absl::Status> results(req->requests_size());
  base::ParallelFor(results.size(), b_.base->options.batch_parallelism, [&](size_t i) {
    const auto& r = req->requests(static_cast<int>(i));
    auto id = FromProto(r.digest(), absl::StrCat("requests[", i, "].digest"));
    if (!id.ok()) {
      results[i] = id.status();
    } else if (r.compressor() != v2::Compressor::IDENTITY) {
      results[i] = absl::InvalidArgumentError("compressor: only IDENTITY is supported");
    } else {
      auto have = (*inst)->Exists(*id);
      if (have.ok() && *have && static_cast<int64_t>(r.data().size()) == id->size &&
          oci::Digest::Of(r.data()) == id->digest) {
        results[i] = absl::OkStatus();
      } else {
        results[i] = (*inst)->WriteBytes(*id, r.data());
      }
    }
  });
  for (size_t i = 0; i < results.size(); ++i) {
    auto* out = resp->add_responses();
    *out->mutable_digest() = req->requests(static_cast<int>(i)).digest();
    SetRpcStatus(results[i], out->mutable_status());
  }
  call.AddBytes(total);
  b_.base->counters->bytes_in.fetch_add(total, std::memory_order_relaxed);
  return call.Done(absl::OkStatus());
}

grpc::Status CasService::BatchReadBlobs(grpc::ServerContext* ctx,
                                        const v2::BatchReadBlobsRequest* req,
                                        v2::BatchReadBlobsResponse* resp) {
  Call call(*b_.base, ctx, "CAS/BatchReadBlobs", Access::kRead);
  if (absl::Status s = Begin(ctx, call, req->digest_function()); !s.ok()) {
    return call.Done(s);
  }
  call.Subject(absl::StrCat(req->digests_size(), " blobs"));
  int64_t total = 0;
  for (const auto& d : req->digests()) total += std::max<int64_t>(d.size_bytes(), 0);
  if (total > b_.options.max_batch_total_size_bytes) {
    return call.Done(absl::InvalidArgumentError(
        absl::StrCat("the batch asks for ", total, " bytes, the limit is ",
                     b_.options.max_batch_total_size_bytes, " (max_batch_total_size_bytes)")));
  }
  auto inst = b_.instances->Get(req->instance_name());
  if (!inst.ok()) return call.Done(inst.status());
  std::vector<absl::StatusOr<std::string>> data(req->digests_size(), std::string());
  base::ParallelFor(data.size(), b_.base->options.batch_parallelism, [&](size_t i) {
    auto id = FromProto(req->digests(static_cast<int>(i)), absl::StrCat("digests[", i, "]"));
    if (!id.ok()) {
      data[i] = id.status();
      return;
    }
    data[i] = (*inst)->ReadAll(*id, b_.options.max_batch_total_size_bytes);
  });
  int64_t sent = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    auto* out = resp->add_responses();
    *out->mutable_digest() = req->digests(static_cast<int>(i));
    if (data[i].ok()) {
      sent += static_cast<int64_t>(data[i]->size());
      out->set_data(*std::move(data[i]));
      SetRpcStatus(absl::OkStatus(), out->mutable_status());
    } else {
      SetRpcStatus(data[i].status(), out->mutable_status());
    }
  }
  call.AddBytes(sent);
  b_.base->counters->bytes_out.fetch_add(sent, std::memory_order_relaxed);
  return call.Done(absl::OkStatus());
}

grpc::Status CasService::GetTree(grpc::ServerContext* ctx, const v2::GetTreeRequest* req,
                                 grpc::ServerWriter<v2::GetTreeResponse>* writer) {
  Call call(*b_.base, ctx, "CAS/GetTree", Access::kRead, rpc::Span::kLong);
  if (absl::Status s = Begin(ctx, call, req->digest_function()); !s.ok()) {
    return call.Done(s);
  }
  call.Subject(req->root_digest().hash());
  auto root = FromProto(req->root_digest(), "root_digest");
  if (!root.ok()) return call.Done(root.status());
  if (req->page_size() < 0) return call.Done(absl::InvalidArgumentError("page_size: negative"));
  int64_t skip = 0;
  if (!req->page_token().empty() &&
      (!absl::SimpleAtoi(req->page_token(), &skip) || skip < 0)) {
    return call.Done(absl::InvalidArgumentError(
        absl::StrCat("page_token \"", req->page_token(), "\" was not made by this server")));
  }
  auto inst = b_.instances->Get(req->instance_name());
  if (!inst.ok()) return call.Done(inst.status());
  const int page = req->page_size() > 0 ? std::min(req->page_size(), 10000)
                                        : b_.options.tree_page_size;
  constexpr size_t kMaxPageBytes = 2 << 20;
  int64_t index = 0;
  bool gone = false;
  v2::GetTreeResponse pending;
  size_t pending_bytes = 0;
  absl::Status s = (*inst)->WalkTree(*root, [&](const v2::Directory& dir) {
    if (index++ < skip) return true;
    size_t n = dir.ByteSizeLong();
    if (pending.directories_size() >= page || pending_bytes + n > kMaxPageBytes) {
      pending.set_next_page_token(absl::StrCat(index - 1));
      if (!writer->Write(pending)) {
        gone = true;
        return false;
      }
      pending.Clear();
      pending_bytes = 0;
    }
    *pending.add_directories() = dir;
    pending_bytes += n;
    return true;
  });
  if (gone) return call.Done(absl::CancelledError("the client went away"));
  if (!s.ok()) return call.Done(s);
  if (!writer->Write(pending)) return call.Done(absl::CancelledError("the client went away"));
  return call.Done(absl::OkStatus());
}

// ---- ByteStream ----

grpc::Status ByteStreamService::Read(grpc::ServerContext* ctx, const bs::ReadRequest* req,
                                     grpc::ServerWriter<bs::ReadResponse>* writer) {
  Call call(*b_.base, ctx, "ByteStream/Read", Access::kRead, rpc::Span::kLong);
  if (absl::Status s = Begin(ctx, call); !s.ok()) return call.Done(s);
  call.Subject(req->resource_name());
  auto r = ParseReadResource(req->resource_name());
  if (!r.ok()) return call.Done(r.status());
  if (req->read_limit() < 0) return call.Done(absl::InvalidArgumentError("read_limit: negative"));
  auto inst = b_.instances->Get(r->instance);
  if (!inst.ok()) return call.Done(inst.status());
  rpc::ChunkSink<bs::ReadResponse> sink(writer, b_.base->options.read_chunk_bytes,
                                        req->read_limit());
  absl::Status s = (*inst)->Read(r->blob, req->read_offset(), sink);
  if (sink.limit_reached() && absl::IsCancelled(s)) s = absl::OkStatus();
  if (s.ok()) s = sink.Flush();
  call.AddBytes(sink.sent());
  b_.base->counters->bytes_out.fetch_add(sink.sent(), std::memory_order_relaxed);
  if (sink.client_gone()) return call.Done(absl::CancelledError("the client went away"));
  return call.Done(s);
}

grpc::Status ByteStreamService::Write(grpc::ServerContext* ctx,
                                      grpc::ServerReader<bs::WriteRequest>* reader,
                                      bs::WriteResponse* resp) {
  Call call(*b_.base, ctx, "ByteStream/Write", Access::kWrite, rpc::Span::kLong);
  if (absl::Status s = Begin(ctx, call); !s.ok()) return call.Done(s);
  bs::WriteRequest first;
  if (!reader->Read(&first)) return call.Done(absl::InvalidArgumentError("an empty write stream"));
  call.Subject(first.resource_name());
  return call.Done(DoWrite(reader, first, resp, call));
}

absl::Status ByteStreamService::DoWrite(grpc::ServerReader<bs::WriteRequest>* reader,
                                        const bs::WriteRequest& first, bs::WriteResponse* resp,
                                        Call& call) {
  auto w = ParseWriteResource(first.resource_name());
  if (!w.ok()) return w.status();
  const BlobId& blob = w->blob;
  if (blob.size > b_.base->options.max_blob_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("blob of ", blob.size,
                                                     " bytes, the server's limit is ",
                                                     b_.base->options.max_blob_bytes));
  }
  if (first.write_offset() < 0 || first.write_offset() > blob.size) {
    return absl::OutOfRangeError(absl::StrCat("write_offset ", first.write_offset(),
                                              " is outside the blob's ", blob.size, " bytes"));
  }
  auto inst = b_.instances->Get(w->instance);
  if (!inst.ok()) return inst.status();
  rpc::Counters* counters = b_.base->counters;
  auto count_in = [&](int64_t n) {
    call.AddBytes(n);
    counters->bytes_in.fetch_add(n, std::memory_order_relaxed);
  };

  // Finish early: the blob is here already (the empty blob always is).
  auto have = (*inst)->Exists(blob);
  if (!have.ok()) return have.status();
  if (*have) {
    resp->set_committed_size(blob.size);
    call.Note(" early=1");
    return absl::OkStatus();
  }
  // All of it in one message: nothing to stage.
  if (first.write_offset() == 0 && first.finish_write()) {
    count_in(static_cast<int64_t>(first.data().size()));
    if (absl::Status s = (*inst)->WriteBytes(blob, first.data()); !s.ok()) return s;
    resp->set_committed_size(blob.size);
    return absl::OkStatus();
  }

  rpc::UploadStaging* staging = b_.base->uploads;
  std::unique_ptr<rpc::UploadStaging::Upload> up;
  if (staging != nullptr) {
    auto u = staging->Begin(UploadId(w->instance, w->uuid, blob), blob.digest, blob.size,
                            first.write_offset());
    if (!u.ok()) return u.status();
    up = *std::move(u);
    if (up->state().complete) {
      resp->set_committed_size(blob.size);
      return absl::OkStatus();
    }
  } else if (first.write_offset() != 0) {
    return absl::FailedPreconditionError("this server does not keep resumable uploads");
  }

  if (first.write_offset() == 0) {
    // Stream straight into the store, staging a copy for a resume.
    rpc::UploadSource<bs::WriteRequest>::Options uopts;
    uopts.size = blob.size;
    uopts.size_source = "the size in the resource name";
    if (up != nullptr) {
      rpc::UploadStaging::Upload* staged = up.get();
      uopts.on_data = [staged](absl::string_view data) { return staged->Append(data); };
    }
    rpc::UploadSource<bs::WriteRequest> src(reader, first, uopts);
    absl::Status s = (*inst)->Write(blob, src);
    count_in(src.received());
    if (s.ok()) {
      if (up != nullptr) up->Discard();
      resp->set_committed_size(blob.size);
      return absl::OkStatus();
    }
    if (!src.error().ok()) {
      if (absl::IsCancelled(src.error())) {
        // The stream ended early: what arrived is staged, QueryWriteStatus says how much.
        resp->set_committed_size(up != nullptr ? up->state().committed : 0);
        return absl::OkStatus();
      }
      if (up != nullptr) up->Discard();
      return src.error();
    }
    if (absl::IsInvalidArgument(s) && up != nullptr) up->Discard();
    return s;
  }

  // A resumed upload: append to what is staged, then store the staged file.
  bs::WriteRequest msg = first;
  for (;;) {
    if (msg.write_offset() != up->state().committed) {
      return absl::InvalidArgumentError(absl::StrCat("write_offset ", msg.write_offset(),
                                                     " does not follow the committed size ",
                                                     up->state().committed));
    }
    if (absl::Status s = up->Append(msg.data()); !s.ok()) return s;
    count_in(static_cast<int64_t>(msg.data().size()));
    if (msg.finish_write()) break;
    if (!reader->Read(&msg)) {
      resp->set_committed_size(up->state().committed);
      return absl::OkStatus();
    }
  }
  // Through the instance, as a blob sent in one stream is (packed where it pays).
  auto d = up->Commit([&](const oci::Digest& digest, int64_t size,
                          oci::ByteSource& src) -> absl::StatusOr<oci::Descriptor> {
    if (absl::Status s = (*inst)->Write(BlobId{digest, size}, src); !s.ok()) return s;
    oci::Descriptor written;
    written.digest = digest;
    written.size = size;
    return written;
  });
  if (!d.ok()) return d.status();
  resp->set_committed_size(blob.size);
  return absl::OkStatus();
}

grpc::Status ByteStreamService::QueryWriteStatus(grpc::ServerContext* ctx,
                                                 const bs::QueryWriteStatusRequest* req,
                                                 bs::QueryWriteStatusResponse* resp) {
  Call call(*b_.base, ctx, "ByteStream/QueryWriteStatus", Access::kRead);
  if (absl::Status s = Begin(ctx, call); !s.ok()) return call.Done(s);
  call.Subject(req->resource_name());
  auto w = ParseWriteResource(req->resource_name());
  if (!w.ok()) return call.Done(w.status());
  auto inst = b_.instances->Get(w->instance);
  if (!inst.ok()) return call.Done(inst.status());
  auto have = (*inst)->Exists(w->blob);
  if (!have.ok()) return call.Done(have.status());
  if (*have) {
    resp->set_committed_size(w->blob.size);
    resp->set_complete(true);
    return call.Done(absl::OkStatus());
  }
  if (b_.base->uploads != nullptr) {
    auto st = b_.base->uploads->Query(UploadId(w->instance, w->uuid, w->blob));
    if (st.ok()) {
      resp->set_committed_size(st->committed);
      resp->set_complete(st->complete);
      return call.Done(absl::OkStatus());
    }
    if (!absl::IsNotFound(st.status())) return call.Done(st.status());
  }
  // Unknown upload: nothing committed, start from 0.
  resp->set_committed_size(0);
  resp->set_complete(false);
  return call.Done(absl::OkStatus());
}

}  // namespace ocicache::reapi
