#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/service/services.h"
#include "pkg/wire/convert.h"
#include "pkg/wire/status.h"

namespace ocicache::service {

using rpc::Counters;
using rpc::Span;
using rpc::Call;
using rpc::Access;
namespace {

v1::Progress ProgressToProto(const admin::ProgressEvent& ev) {
  v1::Progress p;
  p.set_done(ev.done);
  p.set_total(ev.total);
  p.set_key(ev.key);
  p.set_action(ev.action);
  p.set_bytes(ev.bytes);
  return p;
}

}  // namespace

grpc::Status AdminService::GarbageCollect(grpc::ServerContext* ctx,
                                          const v1::GarbageCollectRequest* req,
                                          grpc::ServerWriter<v1::Progress>* writer) {
  Call call(b_, ctx, "Admin/GarbageCollect", Access::kWrite, Span::kLong);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  admin::GcRequest gc;
  if (req->has_older_than_seconds()) {
    if (req->older_than_seconds() < 0) {
      return call.Done(absl::InvalidArgumentError("older_than_seconds: negative"));
    }
    gc.older_than = absl::Seconds(req->older_than_seconds());
  }
  if (req->has_keep_last()) {
    if (req->keep_last() < 0) return call.Done(absl::InvalidArgumentError("keep_last: negative"));
    gc.keep_last = req->keep_last();
  }
  if (!gc.older_than && !gc.keep_last) {
    return call.Done(absl::InvalidArgumentError(
        "set older_than_seconds and/or keep_last: an empty request deletes nothing"));
  }
  gc.dry_run = req->dry_run();
  auto r = b_.admin->CollectGarbage(
      gc, [&](const admin::ProgressEvent& ev) { return writer->Write(ProgressToProto(ev)); });
  if (!r.ok()) return call.Done(r.status());
  call.Subject(absl::StrCat(r->deleted, " of ", r->entries, " entries"));
  v1::Progress last;
  last.set_done(r->deleted);
  last.set_total(r->deleted);
  auto* out = last.mutable_gc_result();
  out->set_entries(r->entries);
  out->set_deleted(r->deleted);
  out->set_bytes(r->bytes);
  out->set_dry_run(r->dry_run);
  out->set_local_tier(r->local_tier);
  out->set_local_blobs_removed(r->local_blobs_removed);
  out->set_local_bytes_freed(r->local_bytes_freed);
  if (!writer->Write(last)) return call.Done(absl::CancelledError("the client went away"));
  return call.Done(absl::OkStatus());
}

grpc::Status AdminService::Sync(grpc::ServerContext* ctx, const v1::SyncRequest* req,
                                grpc::ServerWriter<v1::Progress>* writer) {
  Call call(b_, ctx, "Admin/Sync", Access::kWrite, Span::kLong);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  admin::SyncRequest sync;
  switch (req->direction()) {
    case v1::SyncRequest::BOTH:
      sync.direction = admin::SyncDirection::kBoth;
      break;
    case v1::SyncRequest::UP:
      sync.direction = admin::SyncDirection::kUp;
      break;
    case v1::SyncRequest::DOWN:
      sync.direction = admin::SyncDirection::kDown;
      break;
    default:
      return call.Done(absl::InvalidArgumentError(
          absl::StrCat("direction: unknown value ", static_cast<int>(req->direction()))));
  }
  sync.dry_run = req->dry_run();
  auto r = b_.admin->Sync(
      sync, [&](const admin::ProgressEvent& ev) { return writer->Write(ProgressToProto(ev)); });
  if (!r.ok()) return call.Done(r.status());
  call.Subject(absl::StrCat(r->pushed, " up, ", r->pulled, " down"));
  v1::Progress last;
  last.set_done(r->pushed + r->pulled);
  last.set_total(r->pushed + r->pulled);
  auto* out = last.mutable_sync_result();
  out->set_pushed(r->pushed);
  out->set_pulled(r->pulled);
  out->set_dry_run(r->dry_run);
  out->set_local(r->local);
  out->set_remote(r->remote);
  if (!writer->Write(last)) return call.Done(absl::CancelledError("the client went away"));
  return call.Done(absl::OkStatus());
}

grpc::Status AdminService::Stats(grpc::ServerContext* ctx, const v1::StatsRequest*,
                                 v1::StatsResponse* resp) {
  Call call(b_, ctx, "Admin/Stats", Access::kRead);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  const Counters& c = *b_.counters;
  resp->set_lookups(c.lookups.load(std::memory_order_relaxed));
  resp->set_hits(c.hits.load(std::memory_order_relaxed));
  resp->set_misses(c.misses.load(std::memory_order_relaxed));
  resp->set_bytes_in(c.bytes_in.load(std::memory_order_relaxed));
  resp->set_bytes_out(c.bytes_out.load(std::memory_order_relaxed));
  resp->set_registry_errors(c.backend_errors.load(std::memory_order_relaxed));
  if (b_.tiers.remote != nullptr) resp->set_registry_requests(b_.tiers.remote->client().request_count());
  if (b_.tiers.local != nullptr) {
    auto size = b_.tiers.local->TotalSize();
    if (size.ok()) resp->set_local_tier_bytes(*size);
  }
  if (b_.tiers.backlog != nullptr) resp->set_registry_backlog(b_.tiers.backlog->size());
  resp->set_store(b_.store->Describe());
  resp->set_uptime_seconds(absl::ToInt64Seconds(absl::Now() - b_.started));
  return call.Done(absl::OkStatus());
}

}  // namespace ocicache::service
