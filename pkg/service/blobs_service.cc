#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "pkg/cache/format.h"
#include "pkg/cache/place.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/client.h"
#include "pkg/wire/convert.h"
#include "pkg/base/parallel.h"
#include "pkg/rpc/streams.h"
#include "pkg/service/services.h"
#include "pkg/wire/status.h"

namespace ocicache::service {

using rpc::ServiceOptions;
using rpc::Span;
using rpc::Call;
using rpc::Access;
using rpc::UploadStaging;
using rpc::StreamingPush;
using base::ParallelFor;
using wire::DigestFromProto;
using wire::LocationToProto;
using wire::LocationFromProto;
namespace {

std::string HostOfUrl(absl::string_view url) {
  size_t p = url.find("://");
  if (p != absl::string_view::npos) url.remove_prefix(p + 3);
  return std::string(url.substr(0, url.find('/')));
}

}  // namespace

grpc::Status BlobsService::Stat(grpc::ServerContext* ctx, const v1::StatRequest* req,
                                v1::StatResponse* resp) {
  Call call(b_, ctx, "Blobs/Stat", Access::kRead);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->blobs_size() == 1 ? req->blobs(0).digest()
                                      : absl::StrCat(req->blobs_size(), " blobs"));
  if (req->blobs_size() > b_.options.max_batch) {
    return call.Done(absl::InvalidArgumentError(absl::StrCat(
        "blobs: ", req->blobs_size(), " blobs, the limit is ", b_.options.max_batch)));
  }
  std::vector<oci::Digest> digests;
  for (int i = 0; i < req->blobs_size(); ++i) {
    std::string field = absl::StrCat("blobs[", i, "]");
    auto d = DigestFromProto(req->blobs(i).digest(), field + ".digest");
    if (!d.ok()) return call.Done(d.status());
    if (req->blobs(i).size() < 0) {
      return call.Done(absl::InvalidArgumentError(absl::StrCat(field, ".size: negative")));
    }
    digests.push_back(*d);
  }
  std::vector<absl::StatusOr<int64_t>> sizes(digests.size(), absl::UnknownError(""));
  ParallelFor(digests.size(), b_.options.batch_parallelism,
              [&](size_t i) { sizes[i] = b_.store->StatBlob(digests[i]); });
  for (size_t i = 0; i < digests.size(); ++i) {
    const v1::Descriptor& want = req->blobs(static_cast<int>(i));
    if (sizes[i].ok() && (want.size() == 0 || want.size() == *sizes[i])) {
      v1::Descriptor* p = resp->add_present();
      *p = want;
      p->set_size(*sizes[i]);
    } else if (sizes[i].ok() || absl::IsNotFound(sizes[i].status())) {
      *resp->add_missing() = want;
    } else {
      return call.Done(sizes[i].status());
    }
  }
  return call.Done(absl::OkStatus());
}

grpc::Status BlobsService::Read(grpc::ServerContext* ctx, const v1::ReadRequest* req,
                                grpc::ServerWriter<v1::ReadResponse>* writer) {
  Call call(b_, ctx, "Blobs/Read", Access::kRead, Span::kLong);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->digest());
  auto digest = DigestFromProto(req->digest(), "digest");
  if (!digest.ok()) return call.Done(digest.status());
  if (req->read_offset() < 0) {
    return call.Done(absl::InvalidArgumentError("read_offset: negative"));
  }
  if (req->read_limit() < 0) return call.Done(absl::InvalidArgumentError("read_limit: negative"));
  auto size = b_.store->StatBlob(*digest);
  if (!size.ok()) return call.Done(size.status());
  if (req->read_offset() > *size) {
    return call.Done(absl::OutOfRangeError(absl::StrCat(
        "read_offset ", req->read_offset(), " is past the end of ", digest->str(), " (", *size,
        " bytes)")));
  }
  if (req->read_offset() == *size) return call.Done(absl::OkStatus());
  rpc::ChunkSink<v1::ReadResponse> sink(writer, b_.options.read_chunk_bytes, req->read_limit());
  // A v1 reader checks the digest itself (api/ocicache/v1: Read), so bytes
  // passed through from the registry are hashed once, by the client.
  sink.set_receiver_verifies(true);
  // A limit is an exact range: a registry behind this server sends just those bytes.
  absl::Status s =
      req->read_limit() > 0
          ? b_.store->ReadBlobRange(*digest, req->read_offset(),
                                    std::min(req->read_limit(), *size - req->read_offset()), sink)
          : b_.store->ReadBlob(*digest, req->read_offset(), sink);
  if (sink.limit_reached() && absl::IsCancelled(s)) s = absl::OkStatus();
  if (s.ok()) s = sink.Flush();
  call.AddBytes(sink.sent());
  b_.counters->bytes_out.fetch_add(sink.sent(), std::memory_order_relaxed);
  if (sink.client_gone()) return call.Done(absl::CancelledError("the client went away"));
  return call.Done(s);
}

grpc::Status BlobsService::Write(grpc::ServerContext* ctx,
                                 grpc::ServerReader<v1::WriteRequest>* reader,
                                 v1::WriteResponse* resp) {
  Call call(b_, ctx, "Blobs/Write", Access::kWrite, Span::kLong);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  v1::WriteRequest first;
  if (!reader->Read(&first)) {
    return call.Done(absl::InvalidArgumentError("an empty write stream"));
  }
  call.Subject(first.digest().empty() ? std::string("(digest unknown)") : first.digest());
  auto digest = DigestFromProto(first.digest(), "digest", /*allow_empty=*/true);
  if (!digest.ok()) return call.Done(digest.status());
  if (first.size() < -1) {
    return call.Done(absl::InvalidArgumentError(absl::StrCat("size: invalid (", first.size(), ")")));
  }
  if (first.size() > b_.options.max_blob_bytes) {
    return call.Done(absl::ResourceExhaustedError(absl::StrCat(
        "size: ", first.size(), " bytes, the server's limit is ", b_.options.max_blob_bytes)));
  }
  if (!first.upload_id().empty()) {
    return call.Done(WriteResumable(reader, first, *digest, resp, call));
  }
  if (first.write_offset() != 0) {
    return call.Done(absl::InvalidArgumentError(
        "write_offset: must start at 0 (only uploads with an upload_id resume)"));
  }
  // Finish early: the blob is here already.
  if (digest->valid() && first.size() >= 0) {
    auto have = b_.store->StatBlob(*digest);
    if (have.ok() && *have == first.size()) {
      resp->set_committed_size(*have);
      resp->set_digest(digest->str());
      resp->set_complete(true);
      return call.Done(absl::OkStatus());
    }
  }
  rpc::UploadSource<v1::WriteRequest>::Options uopts;
  uopts.size = first.size();
  uopts.max_bytes = b_.options.max_blob_bytes;
  rpc::UploadSource<v1::WriteRequest> src(reader, first, uopts);
  auto d = b_.store->WriteBlob(*digest, first.size(), src);
  call.AddBytes(src.received());
  b_.counters->bytes_in.fetch_add(src.received(), std::memory_order_relaxed);
  if (!src.error().ok()) return call.Done(src.error());
  if (!d.ok()) return call.Done(d.status());
  resp->set_committed_size(d->size);
  resp->set_digest(d->digest.str());
  resp->set_complete(true);
  return call.Done(absl::OkStatus());
}

absl::Status BlobsService::WriteResumable(grpc::ServerReader<v1::WriteRequest>* reader,
                                          const v1::WriteRequest& first,
                                          const oci::Digest& digest, v1::WriteResponse* resp,
                                          Call& call) {
  if (b_.uploads == nullptr) {
    return absl::FailedPreconditionError("this server does not keep resumable uploads");
  }
  auto up = b_.uploads->Begin(first.upload_id(), digest, first.size(), first.write_offset());
  if (!up.ok()) return up.status();
  UploadStaging::Upload& u = **up;
  auto respond = [&]() {
    resp->set_committed_size(u.state().committed);
    resp->set_complete(u.state().complete);
    if (u.state().complete) resp->set_digest(u.state().digest.str());
    return absl::OkStatus();
  };
  if (u.state().complete) return respond();
  if (digest.valid() && first.size() >= 0) {
    auto have = b_.store->StatBlob(digest);
    if (have.ok() && *have == first.size()) {
      if (absl::Status s = u.MarkComplete(digest, *have); !s.ok()) return s;
      return respond();
    }
  }
  // A new upload to a registry-only server is pushed while it arrives; a
  // resumed one (its earlier bytes are only in the staged file) is stored from
  // the file at the end (ServiceOptions::push_while_staging).
  // The push, hooked to the upload so that a resume taking it over stops the
  // push at once (the store then does not hold a half-written blob until this
  // stream is seen to end); unhooked before the push goes away.
  struct HookedPush {
    UploadStaging::Upload& u;
    std::unique_ptr<StreamingPush> push;
    void Reset() {
      if (push == nullptr) return;
      u.OnSuperseded(nullptr);
      push.reset();
    }
    ~HookedPush() { Reset(); }
  } hooked{u, nullptr};
  if (b_.options.push_while_staging && b_.tiers.local == nullptr && u.state().committed == 0) {
    hooked.push = std::make_unique<StreamingPush>(*b_.store, digest, first.size());
    u.StageDirect();  // the staged copy is the fallback now: keep it out of the page cache
    StreamingPush* p = hooked.push.get();
    u.OnSuperseded([p] { p->Abandon(); });
  }
  StreamingPush* const push = hooked.push.get();
  v1::WriteRequest msg = first;
  for (;;) {
    if (msg.write_offset() != u.state().committed) {
      return absl::InvalidArgumentError(absl::StrCat("write_offset ", msg.write_offset(),
                                                     " does not follow the committed size ",
                                                     u.state().committed));
    }
    if (u.state().committed + static_cast<int64_t>(msg.data().size()) > b_.options.max_blob_bytes) {
      u.Discard();
      return absl::ResourceExhaustedError(absl::StrCat(
          "more than the server's limit of ", b_.options.max_blob_bytes, " bytes per blob"));
    }
    if (absl::Status s = u.Append(msg.data()); !s.ok()) return s;
    const auto n = static_cast<int64_t>(msg.data().size());
    call.AddBytes(n);
    b_.counters->bytes_in.fetch_add(n, std::memory_order_relaxed);
    if (push != nullptr) push->Feed(msg.mutable_data());  // after staging: takes the bytes
    if (msg.finish_write()) break;
    if (!reader->Read(&msg)) return respond();  // paused: the bytes stay staged
  }
  // Finished short of the declared size: Commit says so (and keeps the upload).
  if (first.size() >= 0 && u.state().committed != first.size()) hooked.Reset();
  if (hooked.push != nullptr) {
    auto d = hooked.push->Finish();
    if (d.ok()) {
      if (absl::Status s = u.MarkComplete(d->digest, d->size); !s.ok()) return s;
      return respond();
    }
    // Wrong digest or size: the staged bytes would fail the same way.
    if (absl::IsInvalidArgument(d.status())) {
      u.Discard();
      return d.status();
    }
    // Anything else (the registry went away, a takeover): Commit decides, from the file.
  }
  auto d = u.Commit(*b_.store);
  if (!d.ok()) return d.status();
  return respond();
}

grpc::Status BlobsService::QueryWrite(grpc::ServerContext* ctx, const v1::QueryWriteRequest* req,
                                      v1::QueryWriteResponse* resp) {
  Call call(b_, ctx, "Blobs/QueryWrite", Access::kRead);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->upload_id());
  if (b_.uploads == nullptr) {
    return call.Done(absl::FailedPreconditionError("this server does not keep resumable uploads"));
  }
  auto st = b_.uploads->Query(req->upload_id());
  if (!st.ok()) return call.Done(st.status());
  resp->set_committed_size(st->committed);
  resp->set_complete(st->complete);
  return call.Done(absl::OkStatus());
}

grpc::Status BlobsService::Mount(grpc::ServerContext* ctx, const v1::MountRequest* req,
                                 v1::MountResponse* resp) {
  Call call(b_, ctx, "Blobs/Mount", Access::kWrite, Span::kLong);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->from().digest());
  if (!req->has_from()) return call.Done(absl::InvalidArgumentError("from: missing"));
  auto from = LocationFromProto(req->from(), "from", /*allow_unknown_size=*/true);
  if (!from.ok()) return call.Done(from.status());
  if (from->media_type.empty()) from->media_type = oci::media::kOctetStream;
  oci::Descriptor desc;
  desc.media_type = from->media_type;
  desc.digest = from->digest;
  desc.size = from->size;

  if (req->target_repository().empty()) {
    if (!req->key().empty()) {
      return call.Done(absl::InvalidArgumentError("key: only with target_repository"));
    }
    auto present = b_.store->StatBlob(from->digest);
    bool had = present.ok();
    if (had && from->size >= 0 && *present != from->size) {
      // Same digest, another size: the caller's descriptor is wrong.
      return call.Done(absl::InvalidArgumentError(absl::StrCat(
          "from.size: ", from->size, " bytes, but ", from->digest.str(), " has ", *present)));
    }
    if (!had) {
      if (absl::Status s = b_.store->MountBlob(*from); !s.ok()) return call.Done(s);
    }
    auto size = b_.store->StatBlob(from->digest);
    if (size.ok()) desc.size = *size;
    cache::Location here{desc.media_type, desc.digest, desc.size, ""};
    if (b_.tiers.remote != nullptr) here = b_.tiers.remote->LocationOf(desc);
    LocationToProto(here, resp->mutable_location());
    resp->set_placed_by(had ? v1::MountResponse::ALREADY_PRESENT : v1::MountResponse::LOCATION);
    resp->set_mounted(had || (b_.tiers.remote != nullptr &&
                              HostOfUrl(from->url) == b_.tiers.remote->client().registry()));
    return call.Done(absl::OkStatus());
  }

  auto ref = registry::ParseRepoRef(req->target_repository());
  if (!ref.ok()) {
    return call.Done(absl::InvalidArgumentError(
        absl::StrCat("target_repository: ", ref.status().message())));
  }
  std::shared_ptr<cache::ClientPool> pool = b_.pool;
  if (pool == nullptr) {
    // Stores opened without a pool: no credentials, and no host but those allowed (none).
    cache::ClientPoolOptions none;
    none.restrict_hosts = true;
    pool = std::make_shared<cache::ClientPool>(registry::ClientOptions(), none);
  }
  auto client = pool->Get(ref->registry);
  if (!client.ok()) return call.Done(client.status());
  cache::RegistryStoreOptions ropts;
  ropts.pool = pool;
  auto target = cache::RegistryStore::Create(*client, ref->repository, ropts);
  if (!target.ok()) return call.Done(target.status());

  cache::Placement placed;
  if (!req->key().empty()) {
    if (absl::Status s = cache::ValidateKey(req->key()); !s.ok()) return call.Done(s);
    auto p = cache::PlaceBlob(*b_.store, req->key(), from->digest, **target);
    if (!p.ok()) return call.Done(p.status());
    placed = *p;
  } else {
    auto have = (*target)->StatBlob(from->digest);
    if (have.ok()) {
      placed.by = cache::PlacedBy::kAlreadyPresent;
      desc.size = *have;
    } else if (absl::IsNotFound(have.status())) {
      if (absl::Status s = (*target)->MountBlob(*from); !s.ok()) return call.Done(s);
      placed.by = cache::PlacedBy::kLocation;
    } else {
      return call.Done(have.status());
    }
    placed.location = (*target)->LocationOf(desc);
  }
  LocationToProto(placed.location, resp->mutable_location());
  switch (placed.by) {
    case cache::PlacedBy::kAlreadyPresent:
      resp->set_placed_by(v1::MountResponse::ALREADY_PRESENT);
      resp->set_mounted(true);
      break;
    case cache::PlacedBy::kLocation:
      resp->set_placed_by(v1::MountResponse::LOCATION);
      resp->set_mounted(HostOfUrl(from->url) == ref->registry);
      break;
    case cache::PlacedBy::kCacheCopy:
      resp->set_placed_by(v1::MountResponse::CACHE_COPY);
      break;
  }
  return call.Done(absl::OkStatus());
}

}  // namespace ocicache::service
