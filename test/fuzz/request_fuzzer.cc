#include "test/fuzz/request_fuzzer.h"

#include <grpcpp/client_context.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "pkg/admin/admin.h"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/registry/client.h"
#include "pkg/rpc/backend.h"
#include "pkg/wire/convert.h"
#include "pkg/service/services.h"
#include "pkg/wire/status.h"
#include "pkg/rpc/uploads.h"

namespace ocicache::fuzz {
namespace {

using google::protobuf::util::MessageDifferencer;

FuzzStats g_stats;
const uint8_t* g_input = nullptr;
size_t g_input_size = 0;

[[noreturn]] void Broken(const std::string& what) {
  std::fprintf(stderr, "request fuzzer: invariant broken: %s\ninput (%zu bytes, C-escaped): \"%s\"\n",
               what.c_str(), g_input_size,
               absl::CEscape(absl::string_view(reinterpret_cast<const char*>(g_input),
                                               g_input_size))
                   .c_str());
  std::abort();
}

// The servicers over a LayoutStore in a temporary directory, on gRPC's
// in-process channel.
struct Harness {
  std::string dir;
  std::unique_ptr<layout::LayoutStore> store;
  std::unique_ptr<admin::LocalAdmin> admin;
  std::unique_ptr<rpc::UploadStaging> uploads;
  rpc::Counters counters;
  rpc::Backend backend;
  std::unique_ptr<service::EntriesService> entries_svc;
  std::unique_ptr<service::BlobsService> blobs_svc;
  std::unique_ptr<service::AdminService> admin_svc;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Entries::Stub> entries;
  std::unique_ptr<v1::Blobs::Stub> blobs;
  std::unique_ptr<v1::Admin::Stub> admins;
  oci::Digest blob;  // present, referenced by entry "seed/key"
};

Harness* MakeHarness() {
  // Invalid UTF-8 in a string field is a parse failure; do not log each one.
  google::protobuf::SetLogHandler(nullptr);
  auto* h = new Harness();
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/request-fuzzer-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) Broken("cannot make a temporary directory");
  h->dir = tmpl;
  auto store = layout::LayoutStore::Open(h->dir + "/layout");
  if (!store.ok()) Broken(store.status().ToString());
  h->store = *std::move(store);
  auto uploads = rpc::UploadStaging::Open(h->dir + "/uploads");
  if (!uploads.ok()) Broken(uploads.status().ToString());
  h->uploads = *std::move(uploads);
  h->admin = std::make_unique<admin::LocalAdmin>(*h->store, h->store.get(), nullptr);

  std::string data(20000, 'f');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 251);
  oci::StringSource src(data);
  auto d = h->store->WriteBlob(oci::Digest(), -1, src);
  if (!d.ok()) Broken(d.status().ToString());
  h->blob = d->digest;
  cache::Entry e;
  e.key = "seed/key";
  e.blobs.push_back(*d);
  e.annotations["org.ocicache.tool"] = "v1";
  if (absl::Status s = h->store->Put(e); !s.ok()) Broken(s.ToString());

  rpc::Backend& b = h->backend;
  b.store = h->store.get();
  b.admin = h->admin.get();
  b.tiers.local = h->store.get();
  b.uploads = h->uploads.get();
  b.counters = &h->counters;
  b.options.read_chunk_bytes = 4096;  // several chunks per read
  b.options.max_blob_bytes = 1 << 20;
  h->entries_svc = std::make_unique<service::EntriesService>(b);
  h->blobs_svc = std::make_unique<service::BlobsService>(b);
  h->admin_svc = std::make_unique<service::AdminService>(b);
  grpc::ServerBuilder builder;  // no listening port: in-process only
  builder.RegisterService(h->entries_svc.get());
  builder.RegisterService(h->blobs_svc.get());
  builder.RegisterService(h->admin_svc.get());
  h->server = builder.BuildAndStart();
  if (h->server == nullptr) Broken("the in-process server did not start");
  auto channel = h->server->InProcessChannel(grpc::ChannelArguments());
  h->entries = v1::Entries::NewStub(channel);
  h->blobs = v1::Blobs::NewStub(channel);
  h->admins = v1::Admin::NewStub(channel);
  return h;
}

Harness& H() {
  static Harness* h = MakeHarness();
  return *h;
}

void Prepare(grpc::ClientContext* ctx) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
}

// Counts an answer; UNKNOWN, or INTERNAL without a word, is a bug.
void Answered(int kind, const grpc::Status& s) {
  int code = static_cast<int>(s.error_code());
  if (code >= 0 && code <= 16) ++g_stats.codes[code];
  if (s.ok()) ++g_stats.ok[kind];
  if (s.error_code() == grpc::StatusCode::UNKNOWN ||
      (s.error_code() == grpc::StatusCode::INTERNAL && s.error_message().empty())) {
    Broken(absl::StrCat(KindName(kind), " answered ", code, ": ", s.error_message()));
  }
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    Broken(absl::StrCat(KindName(kind), " did not answer within 20 s"));
  }
}

void ExpectInvalid(int kind, const grpc::Status& s, const std::string& why) {
  if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
    Broken(absl::StrCat(KindName(kind), ": ", why, ", but the answer was ",
                        static_cast<int>(s.error_code()), " ", s.error_message()));
  }
}

template <typename M>
bool Parse(M* m, const uint8_t* data, size_t size) {
  return m->ParseFromArray(data, static_cast<int>(size));
}

// A converted entry converts back to a message that converts to the same entry.
void EntryRoundTrip(const v1::Entry& in) {
  auto e = wire::EntryFromProto(in);
  if (!e.ok()) return;
  v1::Entry once, twice;
  wire::EntryToProto(*e, &once);
  auto again = wire::EntryFromProto(once);
  if (!again.ok()) Broken("an entry converted to a message the converter rejects: " +
                          again.status().ToString());
  wire::EntryToProto(*again, &twice);
  if (!MessageDifferencer::Equals(once, twice)) Broken("an entry changed on a round trip");
  if (absl::Status s = wire::CheckEntryUtf8(*e); !s.ok()) {
    Broken("a decoded entry is not UTF-8: " + s.ToString());
  }
}

void DescriptorRoundTrip(const v1::Descriptor& in) {
  auto d = wire::DescriptorFromProto(in, "d");
  if (!d.ok()) return;
  v1::Descriptor once;
  wire::DescriptorToProto(*d, &once);
  auto again = wire::DescriptorFromProto(once, "d");
  if (!again.ok() || again->digest != d->digest || again->size != d->size) {
    Broken("a descriptor changed on a round trip");
  }
}

void DoLookup(const uint8_t* data, size_t size) {
  v1::LookupRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kLookup];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::Entry resp;
  grpc::Status s = H().entries->Lookup(&ctx, req, &resp);
  Answered(kLookup, s);
  if (!cache::ValidateKey(req.key()).ok()) ExpectInvalid(kLookup, s, "the key is malformed");
  if (s.ok()) {
    if (resp.key() != req.key()) Broken("Lookup answered another key");
    if (!wire::EntryFromProto(resp).ok()) Broken("Lookup answered a malformed entry");
  }
}

void DoBatchLookup(const uint8_t* data, size_t size) {
  v1::BatchLookupRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kBatchLookup];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::BatchLookupResponse resp;
  grpc::Status s = H().entries->BatchLookup(&ctx, req, &resp);
  Answered(kBatchLookup, s);
  if (req.keys_size() > 1000) ExpectInvalid(kBatchLookup, s, "more than 1000 keys");
  if (!s.ok()) return;
  if (resp.results_size() != req.keys_size()) Broken("BatchLookup lost keys");
  for (int i = 0; i < resp.results_size(); ++i) {
    const auto& r = resp.results(i);
    if (r.key() != req.keys(i)) Broken("BatchLookup answered out of order");
    if (r.code() == 0 && !wire::EntryFromProto(r.entry()).ok()) {
      Broken("BatchLookup answered a malformed entry");
    }
    if (r.code() == 0 && r.entry().key() != r.key()) Broken("BatchLookup answered another key");
  }
}

void DoPut(const uint8_t* data, size_t size) {
  v1::PutRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kPut];
  EntryRoundTrip(req.entry());
  for (const auto& b : req.entry().blobs()) DescriptorRoundTrip(b);
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::PutResponse resp;
  grpc::Status s = H().entries->Put(&ctx, req, &resp);
  Answered(kPut, s);
  if (s.ok() && (!req.has_entry() || !wire::EntryFromProto(req.entry()).ok())) {
    Broken("Put accepted an entry the converter rejects");
  }
}

void DoDelete(const uint8_t* data, size_t size) {
  v1::DeleteRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kDelete];
  if (req.key() == "seed/key") return;  // keep the seed entry for the others
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::DeleteResponse resp;
  grpc::Status s = H().entries->Delete(&ctx, req, &resp);
  Answered(kDelete, s);
  if (!cache::ValidateKey(req.key()).ok()) ExpectInvalid(kDelete, s, "the key is malformed");
}

void DoList(const uint8_t* data, size_t size) {
  v1::ListRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kList];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto r = H().entries->List(&ctx, req);
  v1::ListResponse page;
  int pages = 0;
  while (r->Read(&page)) {
    ++pages;
    int limit = req.page_size() == 0 ? 500 : std::min(req.page_size(), 1000);
    if (page.entries_size() > limit) Broken("List sent a page over page_size");
    for (const auto& e : page.entries()) {
      if (!wire::EntryInfoFromProto(e).ok()) Broken("List sent a malformed entry");
    }
  }
  grpc::Status s = r->Finish();
  Answered(kList, s);
  if (req.page_size() < 0) ExpectInvalid(kList, s, "page_size is negative");
}

void DoStat(const uint8_t* data, size_t size) {
  v1::StatRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kStat];
  for (const auto& b : req.blobs()) DescriptorRoundTrip(b);
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::StatResponse resp;
  grpc::Status s = H().blobs->Stat(&ctx, req, &resp);
  Answered(kStat, s);
  if (req.blobs_size() > 1000) ExpectInvalid(kStat, s, "more than 1000 blobs");
  if (s.ok() && resp.present_size() + resp.missing_size() != req.blobs_size()) {
    Broken("Stat lost blobs");
  }
}

void DoRead(const uint8_t* data, size_t size) {
  v1::ReadRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kRead];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto r = H().blobs->Read(&ctx, req);
  v1::ReadResponse msg;
  std::string got;
  while (r->Read(&msg)) {
    got += msg.data();
    if (got.size() > (4 << 20)) Broken("Read sent more than any stored blob");
  }
  grpc::Status s = r->Finish();
  Answered(kRead, s);
  if (req.read_offset() < 0 || req.read_limit() < 0) ExpectInvalid(kRead, s, "negative offset or limit");
  if (!wire::DigestFromProto(req.digest(), "digest").ok()) {
    ExpectInvalid(kRead, s, "the digest is malformed");
  }
  if (s.ok() && req.read_limit() > 0 && static_cast<int64_t>(got.size()) > req.read_limit()) {
    Broken("Read sent more than read_limit");
  }
  if (s.ok() && req.read_offset() == 0 && req.read_limit() == 0 &&
      oci::Digest::Of(got).str() != req.digest()) {
    Broken("Read sent bytes that do not hash to the digest asked");
  }
}

void DoWrite(const uint8_t* data, size_t size) {
  v1::WriteRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kWrite];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::WriteResponse resp;
  auto w = H().blobs->Write(&ctx, &resp);
  // One message and the half-close together: the server may answer after
  // the first message (AlreadyExists, a bad field), and gRPC's in-process
  // transport completes a send only when the server reads it.
  w->WriteLast(req, grpc::WriteOptions());
  grpc::Status s = w->Finish();
  Answered(kWrite, s);
  if (s.ok() && resp.complete()) {
    auto d = oci::Digest::Parse(resp.digest());
    if (!d.ok()) Broken("Write answered a malformed digest");
    auto have = H().store->StatBlob(*d);
    if (!have.ok() || *have != resp.committed_size()) {
      Broken("Write said complete but the store does not have the blob");
    }
    if (!req.digest().empty() && req.digest() != resp.digest()) {
      Broken("Write stored another digest than the one declared");
    }
  }
}

void DoQueryWrite(const uint8_t* data, size_t size) {
  v1::QueryWriteRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kQueryWrite];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::QueryWriteResponse resp;
  grpc::Status s = H().blobs->QueryWrite(&ctx, req, &resp);
  Answered(kQueryWrite, s);
  if (req.upload_id().empty() || req.upload_id().size() > 256) {
    ExpectInvalid(kQueryWrite, s, "the upload id is empty or too long");
  }
  if (s.ok() && resp.committed_size() < 0) Broken("QueryWrite answered a negative size");
}

void DoMount(const uint8_t* data, size_t size) {
  v1::MountRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kMount];
  auto from = wire::LocationFromProto(req.from(), "from", /*allow_unknown_size=*/true);
  if (from.ok()) {
    v1::Location back;
    wire::LocationToProto(*from, &back);
    auto again = wire::LocationFromProto(back, "from", true);
    if (!again.ok() || again->digest != from->digest || again->url != from->url) {
      Broken("a location changed on a round trip");
    }
  }
  // Into another repository the server would dial it: convert only.
  if (!req.target_repository().empty()) {
    (void)registry::ParseRepoRef(req.target_repository());
    return;
  }
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::MountResponse resp;
  grpc::Status s = H().blobs->Mount(&ctx, req, &resp);
  Answered(kMount, s);
  if (s.ok() && !from.ok()) Broken("Mount accepted a location the converter rejects");
}

void DoGarbageCollect(const uint8_t* data, size_t size) {
  v1::GarbageCollectRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kGarbageCollect];
  req.set_dry_run(true);  // keep the seed entry for the others
  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto r = H().admins->GarbageCollect(&ctx, req);
  v1::Progress p;
  while (r->Read(&p)) {
  }
  grpc::Status s = r->Finish();
  Answered(kGarbageCollect, s);
  if (!req.has_older_than_seconds() && !req.has_keep_last()) {
    ExpectInvalid(kGarbageCollect, s, "no criterion");
  }
}

void DoSync(const uint8_t* data, size_t size) {
  v1::SyncRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kSync];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  auto r = H().admins->Sync(&ctx, req);
  v1::Progress p;
  while (r->Read(&p)) {
  }
  grpc::Status s = r->Finish();
  Answered(kSync, s);
  if (s.ok()) Broken("Sync succeeded on a server without a registry");
}

void DoStats(const uint8_t* data, size_t size) {
  v1::StatsRequest req;
  if (!Parse(&req, data, size)) return;
  ++g_stats.parsed[kStats];
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::StatsResponse resp;
  grpc::Status s = H().admins->Stats(&ctx, req, &resp);
  Answered(kStats, s);
  if (!s.ok()) Broken("Stats failed: " + s.error_message());
}

void DoEntry(const uint8_t* data, size_t size) {
  v1::Entry e;
  if (!Parse(&e, data, size)) return;
  ++g_stats.parsed[kEntry];
  EntryRoundTrip(e);
  for (const auto& b : e.blobs()) DescriptorRoundTrip(b);
  auto converted = wire::EntryFromProto(e);
  if (converted.ok()) ++g_stats.ok[kEntry];
}

void DoEntryInfo(const uint8_t* data, size_t size) {
  v1::EntryInfo i;
  if (!Parse(&i, data, size)) return;
  ++g_stats.parsed[kEntryInfo];
  auto info = wire::EntryInfoFromProto(i);
  if (!info.ok()) return;
  ++g_stats.ok[kEntryInfo];
  v1::EntryInfo once;
  wire::EntryInfoToProto(*info, &once);
  auto again = wire::EntryInfoFromProto(once);
  if (!again.ok() || again->key != info->key || again->size != info->size) {
    Broken("an entry info changed on a round trip");
  }
}

// Error details as a client receives them from a server (which may be anything).
void DoRpcStatus(const uint8_t* data, size_t size) {
  if (size == 0) return;
  // The first byte is the code, the rest the details; count as parsed what a
  // client would decode as an RpcStatus.
  int code = data[0] % 20;
  std::string details(reinterpret_cast<const char*>(data + 1), size - 1);
  v1::RpcStatus probe;
  if (probe.ParseFromString(details)) ++g_stats.parsed[kRpcStatus];
  grpc::Status in(static_cast<grpc::StatusCode>(code), "from the wire", details);
  absl::Status s = wire::FromGrpc(in);
  if (s.ok() != in.ok()) Broken("FromGrpc changed whether a status is OK");
  grpc::Status back = wire::ToGrpc(s);
  if (back.ok() != s.ok()) Broken("ToGrpc changed whether a status is OK");
  if (!s.ok() && static_cast<int>(back.error_code()) > 16) Broken("ToGrpc made an unknown code");
  if (!s.ok() && code <= 16 && static_cast<int>(s.code()) != code) {
    Broken("FromGrpc changed a known code");
  }
  if (!s.ok()) ++g_stats.ok[kRpcStatus];
}

}  // namespace

const char* KindName(int kind) {
  static const char* const kNames[kKinds] = {
      "Lookup", "BatchLookup", "Put",    "Delete", "List",           "Stat",
      "Read",   "Write",       "QueryWrite", "Mount", "GarbageCollect", "Sync",
      "Stats",  "Entry",       "EntryInfo",  "RpcStatus"};
  return kind >= 0 && kind < kKinds ? kNames[kind] : "?";
}

const FuzzStats& Stats() { return g_stats; }

std::vector<std::string> Seeds() {
  std::vector<std::string> out;
  auto add = [&](Kind k, const google::protobuf::Message& m) {
    out.push_back(std::string(1, static_cast<char>(k)) + m.SerializeAsString());
  };
  const std::string blob = H().blob.str();
  v1::LookupRequest lookup;
  lookup.set_key("seed/key");
  (*lookup.mutable_require())["org.ocicache.tool"] = "v1";
  add(kLookup, lookup);
  lookup.set_key("absent");
  lookup.set_no_touch(true);
  add(kLookup, lookup);
  v1::BatchLookupRequest batch;
  batch.add_keys("seed/key");
  batch.add_keys("absent");
  batch.add_keys("");
  add(kBatchLookup, batch);
  v1::PutRequest put;
  auto* e = put.mutable_entry();
  e->set_key("fuzz/put");
  e->set_config("{\"a\":1}");
  auto* d = e->add_blobs();
  d->set_media_type("application/octet-stream");
  d->set_digest(blob);
  d->set_size(20000);
  d->add_urls("https://example.com/b");
  (*d->mutable_annotations())["k"] = "v";
  auto* loc = e->add_locations();
  loc->set_digest(blob);
  loc->set_size(20000);
  loc->set_url("https://registry.example/v2/repo/blobs/" + blob);
  (*e->mutable_annotations())["org.ocicache.tool"] = "v2";
  e->mutable_created()->set_seconds(1700000000);
  add(kPut, put);
  v1::DeleteRequest del;
  del.set_key("fuzz/put");
  add(kDelete, del);
  v1::ListRequest list;
  list.set_page_size(1);
  add(kList, list);
  v1::StatRequest stat;
  stat.add_blobs()->set_digest(blob);
  auto* st2 = stat.add_blobs();
  st2->set_digest(oci::Digest::Of("x").str());
  st2->set_size(1);
  add(kStat, stat);
  v1::ReadRequest read;
  read.set_digest(blob);
  add(kRead, read);
  read.set_read_offset(100);
  read.set_read_limit(5000);
  add(kRead, read);
  v1::WriteRequest write;
  write.set_digest(oci::Digest::Of("fuzz bytes").str());
  write.set_size(10);
  write.set_data("fuzz bytes");
  write.set_finish_write(true);
  add(kWrite, write);
  write.set_upload_id("fuzz-upload");
  write.set_finish_write(false);
  add(kWrite, write);
  v1::QueryWriteRequest query;
  query.set_upload_id("fuzz-upload");
  add(kQueryWrite, query);
  v1::MountRequest mount;
  mount.mutable_from()->set_digest(blob);
  mount.mutable_from()->set_size(-1);
  mount.mutable_from()->set_url("https://registry.example/v2/repo/blobs/" + blob);
  add(kMount, mount);
  mount.set_target_repository("registry.example/team/cache");
  mount.set_key("seed/key");
  add(kMount, mount);
  v1::GarbageCollectRequest gc;
  gc.set_older_than_seconds(3600);
  gc.set_keep_last(2);
  add(kGarbageCollect, gc);
  v1::SyncRequest sync;
  sync.set_direction(v1::SyncRequest::DOWN);
  add(kSync, sync);
  add(kStats, v1::StatsRequest());
  add(kEntry, put.entry());
  v1::EntryInfo info;
  info.set_key("seed/key");
  info.set_tag("k.abc");
  info.set_size(3);
  info.mutable_last_used()->set_seconds(1700000000);
  add(kEntryInfo, info);
  v1::RpcStatus rpc;
  rpc.set_code(14);
  rpc.set_message("down");
  auto* any = rpc.add_details();
  any->set_type_url("ocicache.registry/temporary");
  any->set_value("1");
  out.push_back(std::string(1, static_cast<char>(kRpcStatus)) + "\x0e" + rpc.SerializeAsString());
  return out;
}

}  // namespace ocicache::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocicache::fuzz;
  if (size == 0) return 0;
  g_input = data;
  g_input_size = size;
  ++g_stats.inputs;
  const uint8_t* body = data + 1;
  size_t n = size - 1;
  switch (data[0] % kKinds) {
    case kLookup: DoLookup(body, n); break;
    case kBatchLookup: DoBatchLookup(body, n); break;
    case kPut: DoPut(body, n); break;
    case kDelete: DoDelete(body, n); break;
    case kList: DoList(body, n); break;
    case kStat: DoStat(body, n); break;
    case kRead: DoRead(body, n); break;
    case kWrite: DoWrite(body, n); break;
    case kQueryWrite: DoQueryWrite(body, n); break;
    case kMount: DoMount(body, n); break;
    case kGarbageCollect: DoGarbageCollect(body, n); break;
    case kSync: DoSync(body, n); break;
    case kStats: DoStats(body, n); break;
    case kEntry: DoEntry(body, n); break;
    case kEntryInfo: DoEntryInfo(body, n); break;
    case kRpcStatus: DoRpcStatus(body, n); break;
  }
  return 0;
}
