#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/client/grpc_store.h"

namespace ocicache::client {
namespace {

admin::ProgressEvent EventFromProto(const v1::Progress& p) {
  admin::ProgressEvent ev;
  ev.done = p.done();
  ev.total = p.total();
  ev.key = p.key();
  ev.action = p.action();
  ev.bytes = p.bytes();
  return ev;
}

// Reads a Progress stream: events to `progress`, the last message to `last`.
template <typename Reader>
absl::Status ReadProgress(grpc::ClientContext& ctx, Reader& reader,
                          const admin::ProgressFn& progress, v1::Progress* last,
                          absl::string_view target, Security security) {
  v1::Progress msg;
  bool got_last = false;
  while (reader->Read(&msg)) {
    if (msg.has_gc_result() || msg.has_sync_result()) {
      *last = msg;
      got_last = true;
      continue;
    }
    if (progress && !progress(EventFromProto(msg))) {
      ctx.TryCancel();
      while (reader->Read(&msg)) {
      }
      reader->Finish();
      return absl::CancelledError("maintenance stopped by the caller");
    }
  }
  absl::Status s = FromServer(reader->Finish(), target, security);
  if (!s.ok()) return s;
  if (!got_last) {
    return absl::InternalError(absl::StrCat("ocicached ", target, " sent no result"));
  }
  return absl::OkStatus();
}

}  // namespace

GrpcAdmin::GrpcAdmin(std::shared_ptr<grpc::Channel> channel, std::string target,
                     std::string token, Security security)
    : target_(std::move(target)),
      token_(std::move(token)),
      security_(security),
      stub_(v1::Admin::NewStub(channel)) {}

void GrpcAdmin::Prepare(grpc::ClientContext* ctx) const {
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
}

absl::StatusOr<admin::GcResult> GrpcAdmin::CollectGarbage(const admin::GcRequest& req,
                                                          const admin::ProgressFn& progress) {
  v1::GarbageCollectRequest r;
  if (req.older_than) r.set_older_than_seconds(absl::ToInt64Seconds(*req.older_than));
  if (req.keep_last) r.set_keep_last(*req.keep_last);
  r.set_dry_run(req.dry_run);
  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto reader = stub_->GarbageCollect(&ctx, r);
  v1::Progress last;
  if (absl::Status s = ReadProgress(ctx, reader, progress, &last, target_, security_); !s.ok()) return s;
  const auto& g = last.gc_result();
  admin::GcResult out;
  out.entries = g.entries();
  out.deleted = g.deleted();
  out.bytes = g.bytes();
  out.dry_run = g.dry_run();
  out.local_tier = g.local_tier();
  out.local_blobs_removed = g.local_blobs_removed();
  out.local_bytes_freed = g.local_bytes_freed();
  return out;
}

absl::StatusOr<admin::SyncResult> GrpcAdmin::Sync(const admin::SyncRequest& req,
                                                  const admin::ProgressFn& progress) {
  v1::SyncRequest r;
  switch (req.direction) {
    case admin::SyncDirection::kBoth:
      r.set_direction(v1::SyncRequest::BOTH);
      break;
    case admin::SyncDirection::kUp:
      r.set_direction(v1::SyncRequest::UP);
      break;
    case admin::SyncDirection::kDown:
      r.set_direction(v1::SyncRequest::DOWN);
      break;
  }
  r.set_dry_run(req.dry_run);
  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto reader = stub_->Sync(&ctx, r);
  v1::Progress last;
  if (absl::Status s = ReadProgress(ctx, reader, progress, &last, target_, security_); !s.ok()) return s;
  const auto& y = last.sync_result();
  admin::SyncResult out;
  out.pushed = y.pushed();
  out.pulled = y.pulled();
  out.dry_run = y.dry_run();
  out.local = y.local();
  out.remote = y.remote();
  return out;
}

absl::StatusOr<v1::StatsResponse> GrpcAdmin::Stats() {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::StatsResponse resp;
  if (absl::Status s = FromServer(stub_->Stats(&ctx, v1::StatsRequest(), &resp), target_, security_);
      !s.ok()) {
    return s;
  }
  return resp;
}

absl::StatusOr<admin::StatusReport> GrpcAdmin::Status() {
  auto st = Stats();
  if (!st.ok()) return st.status();
  admin::StatusReport r;
  r.store = st->store();
  r.backlog = st->has_registry_backlog() ? st->registry_backlog() : -1;
  r.local_tier_bytes = st->local_tier_bytes();
  r.lookups = st->lookups();
  r.hits = st->hits();
  r.misses = st->misses();
  r.uptime_seconds = st->uptime_seconds();
  return r;
}

}  // namespace ocicache::client
