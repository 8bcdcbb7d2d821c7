#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pkg/cache/format.h"
#include "pkg/base/parallel.h"
#include "pkg/service/services.h"
#include "pkg/wire/convert.h"
#include "pkg/wire/status.h"

namespace ocicache::service {

using rpc::Span;
using rpc::Call;
using rpc::Access;
using base::ParallelFor;
using wire::EntryToProto;
using wire::EntryFromProto;
using wire::EntryInfoToProto;
namespace {

cache::LookupOptions LookupOpts(const google::protobuf::Map<std::string, std::string>& require,
                                bool no_touch) {
  cache::LookupOptions opts;
  opts.require.insert(require.begin(), require.end());
  opts.touch = !no_touch;
  return opts;
}

constexpr int kDefaultPage = 500;
constexpr int kMaxPage = 1000;

}  // namespace

grpc::Status EntriesService::Lookup(grpc::ServerContext* ctx, const v1::LookupRequest* req,
                                    v1::Entry* resp) {
  Call call(b_, ctx, "Entries/Lookup", Access::kRead);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->key());
  if (absl::Status s = cache::ValidateKey(req->key()); !s.ok()) return call.Done(s);
  auto e = b_.store->Lookup(req->key(), LookupOpts(req->require(), req->no_touch()));
  b_.counters->lookups.fetch_add(1, std::memory_order_relaxed);
  if (!e.ok()) {
    if (absl::IsNotFound(e.status())) b_.counters->misses.fetch_add(1, std::memory_order_relaxed);
    return call.Done(e.status());
  }
  b_.counters->hits.fetch_add(1, std::memory_order_relaxed);
  EntryToProto(*e, resp);
  return call.Done(absl::OkStatus());
}

grpc::Status EntriesService::BatchLookup(grpc::ServerContext* ctx,
                                         const v1::BatchLookupRequest* req,
                                         v1::BatchLookupResponse* resp) {
  Call call(b_, ctx, "Entries/BatchLookup", Access::kRead);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(absl::StrCat(req->keys_size(), " keys"));
  if (req->keys_size() > b_.options.max_batch) {
    return call.Done(absl::InvalidArgumentError(absl::StrCat(
        "keys: ", req->keys_size(), " keys, the limit is ", b_.options.max_batch)));
  }
  cache::LookupOptions opts = LookupOpts(req->require(), req->no_touch());
  for (const auto& key : req->keys()) resp->add_results()->set_key(key);
  std::atomic<int64_t> hits{0}, misses{0};
  ParallelFor(req->keys_size(), b_.options.batch_parallelism, [&](size_t i) {
    auto* r = resp->mutable_results(static_cast<int>(i));
    absl::Status s;
    if (ctx->IsCancelled()) {
      s = absl::CancelledError("cancelled");
    } else if (s = cache::ValidateKey(r->key()); s.ok()) {
      auto e = b_.store->Lookup(r->key(), opts);
      if (e.ok()) {
        EntryToProto(*e, r->mutable_entry());
        ++hits;
      } else {
        s = e.status();
        if (absl::IsNotFound(s)) ++misses;
      }
    }
    r->set_code(static_cast<int>(s.code()));
    r->set_message(std::string(s.message()));
  });
  // The reply must fit the message size limit, or the caller gets nothing (a
  // transport RESOURCE_EXHAUSTED). Entries past the limit are left out, their
  // keys answered RESOURCE_EXHAUSTED: the caller asks for them again.
  constexpr size_t kMargin = 64 << 10;  // framing, and the status trailer
  const size_t budget =
      b_.options.max_reply_bytes > 2 * kMargin ? b_.options.max_reply_bytes - kMargin : kMargin;
  size_t used = 0;
  int cut = 0;
  for (auto& r : *resp->mutable_results()) {
    size_t n = r.ByteSizeLong() + 8;
    if (used + n <= budget) {
      used += n;
      continue;
    }
    if (r.code() == static_cast<int>(absl::StatusCode::kOk)) --hits;
    r.clear_entry();
    r.set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
    r.set_message(absl::StrCat("left out: the reply would exceed the server's message size "
                               "limit of ", b_.options.max_reply_bytes,
                               " bytes; look this key up again"));
    used += r.ByteSizeLong() + 8;
    ++cut;
  }
  if (cut > 0) call.Note(absl::StrCat(" left_out=", cut));
  b_.counters->lookups.fetch_add(req->keys_size(), std::memory_order_relaxed);
  b_.counters->hits.fetch_add(hits, std::memory_order_relaxed);
  b_.counters->misses.fetch_add(misses, std::memory_order_relaxed);
  if (ctx->IsCancelled()) return call.Done(absl::CancelledError("cancelled by the client"));
  return call.Done(absl::OkStatus());
}

grpc::Status EntriesService::Put(grpc::ServerContext* ctx, const v1::PutRequest* req,
                                 v1::PutResponse* resp) {
  Call call(b_, ctx, "Entries/Put", Access::kWrite);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->entry().key());
  if (!req->has_entry()) return call.Done(absl::InvalidArgumentError("entry: missing"));
  auto e = EntryFromProto(req->entry());
  if (!e.ok()) return call.Done(e.status());
  // A recorded location is a blob URL naming its own digest, as Mount needs it.
  for (size_t i = 0; i < e->locations.size(); ++i) {
    const cache::Location& l = e->locations[i];
    std::string base, repo;
    oci::Digest named;
    absl::Status s = cache::ParseBlobUrl(l.url, &base, &repo, &named);
    if (s.ok() && named != l.digest) {
      s = absl::InvalidArgumentError(absl::StrCat("names ", named.str(), ", not ", l.digest.str()));
    }
    if (!s.ok()) {
      return call.Done(absl::InvalidArgumentError(
          absl::StrCat("entry.locations[", i, "].url: ", s.message())));
    }
  }
  // Times come from the server's clock: a client's future time would keep an
  // entry from gc and give it a negative age.
  const absl::Time now = absl::Now();
  e->created = std::min(e->created, now);
  e->last_used = std::min(e->last_used, now);
  if (absl::Status s = b_.store->Put(*e); !s.ok()) return call.Done(s);
  auto tag = cache::TagForKey(e->key);
  if (tag.ok()) resp->set_tag(*tag);
  return call.Done(absl::OkStatus());
}

grpc::Status EntriesService::Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                                    v1::DeleteResponse*) {
  Call call(b_, ctx, "Entries/Delete", Access::kWrite);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  call.Subject(req->key());
  if (absl::Status s = cache::ValidateKey(req->key()); !s.ok()) return call.Done(s);
  return call.Done(b_.store->Delete(req->key()));
}

grpc::Status EntriesService::List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  grpc::ServerWriter<v1::ListResponse>* writer) {
  Call call(b_, ctx, "Entries/List", Access::kRead, Span::kLong);
  if (absl::Status s = call.Authorize(); !s.ok()) return call.Done(s);
  if (req->page_size() < 0) {
    return call.Done(absl::InvalidArgumentError(
        absl::StrCat("page_size: negative (", req->page_size(), ")")));
  }
  int page_size = req->page_size() == 0 ? kDefaultPage : std::min(req->page_size(), kMaxPage);
  v1::ListResponse page;
  bool client_gone = false;
  int64_t n = 0;
  absl::Status s = b_.store->List([&](const cache::EntryInfo& info) {
    EntryInfoToProto(info, page.add_entries());
    ++n;
    if (page.entries_size() >= page_size) {
      if (!writer->Write(page)) {
        client_gone = true;
        return false;
      }
      page.Clear();
    }
    return true;
  });
  call.Subject(absl::StrCat(n, " entries"));
  if (client_gone) return call.Done(absl::CancelledError("the client went away"));
  if (!s.ok()) return call.Done(s);
  if (page.entries_size() > 0 && !writer->Write(page)) {
    return call.Done(absl::CancelledError("the client went away"));
  }
  return call.Done(absl::OkStatus());
}

}  // namespace ocicache::service
