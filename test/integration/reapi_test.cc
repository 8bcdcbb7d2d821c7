// The REAPI v2 cache of ocicached through real gRPC calls, against a real
// docker-registry: every RPC's edge cases (the spec rules: the empty blob,
// NOT_FOUND on a miss, per-blob statuses in batches, digest mismatches,
// resumable and early-finished writes, read offsets, bad resource names,
// invalid instances), concurrent writes of one blob, the completeness check,
// read-only tokens, instance isolation, a second server over the same
// registry with an empty local tier, access-log fields and metrics, and
// --max_local_size on instance layouts.
#include <dirent.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/stores/stores.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/server/server.h"
#include "pkg/rpc/auth.h"
#include "test/harness/http_client.h"
#include "test/harness/registry.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;
using grpc::StatusCode;
using harness::RegistryProcess;

constexpr char kReadToken[] = "read-token-0123456789";
constexpr char kWriteToken[] = "write-token-0123456789";

v2::Digest D(absl::string_view content) {
  v2::Digest d;
  d.set_hash(oci::Digest::Of(content).hex());
  d.set_size_bytes(static_cast<int64_t>(content.size()));
  return d;
}

std::string Prefix(const std::string& instance) {
  return instance.empty() ? std::string() : instance + "/";
}

std::string ReadName(const std::string& instance, const v2::Digest& d) {
  return absl::StrCat(Prefix(instance), "blobs/", d.hash(), "/", d.size_bytes());
}

std::string WriteName(const std::string& instance, const std::string& uuid, const v2::Digest& d) {
  return absl::StrCat(Prefix(instance), "uploads/", uuid, "/blobs/", d.hash(), "/",
                      d.size_bytes());
}

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2166136261u ^ static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// The stubs of one server, with an optional token and request metadata.
struct Client {
  explicit Client(const std::string& address, std::string token = "")
      : channel(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        caps(v2::Capabilities::NewStub(channel)),
        ac(v2::ActionCache::NewStub(channel)),
        cas(v2::ContentAddressableStorage::NewStub(channel)),
        bytestream(bs::ByteStream::NewStub(channel)),
        token(std::move(token)) {}

  void Prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    if (!metadata.empty()) {
      ctx->AddMetadata("build.bazel.remote.execution.v2.requestmetadata-bin", metadata);
    }
  }

  // Sends `data` from `offset` in chunks; finish_write on the last one if `finish`.
  grpc::Status Write(const std::string& resource, absl::string_view data, int64_t offset,
                     bool finish, size_t chunk, int64_t* committed) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    bs::WriteResponse resp;
    auto w = bytestream->Write(&ctx, &resp);
    size_t pos = 0;
    do {
      size_t n = std::min(chunk, data.size() - pos);
      bs::WriteRequest req;
      if (pos == 0) req.set_resource_name(resource);
      req.set_write_offset(offset + static_cast<int64_t>(pos));
      req.set_data(std::string(data.substr(pos, n)));
      pos += n;
      if (finish && pos == data.size()) req.set_finish_write(true);
      if (!w->Write(req)) break;  // the server answered already
    } while (pos < data.size());
    w->WritesDone();
    grpc::Status s = w->Finish();
    if (committed != nullptr) *committed = resp.committed_size();
    return s;
  }

  grpc::Status Upload(const std::string& instance, absl::string_view data,
                      size_t chunk = 16 << 10) const {
    int64_t committed = -1;
    grpc::Status s = Write(WriteName(instance, "u-" + D(data).hash().substr(0, 8), D(data)), data,
                           0, true, chunk, &committed);
    if (s.ok() && committed != static_cast<int64_t>(data.size())) {
      return grpc::Status(StatusCode::INTERNAL, absl::StrCat("committed ", committed));
    }
    return s;
  }

  grpc::Status Read(const std::string& resource, int64_t offset, int64_t limit,
                    std::string* out) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    bs::ReadRequest req;
    req.set_resource_name(resource);
    req.set_read_offset(offset);
    req.set_read_limit(limit);
    auto r = bytestream->Read(&ctx, req);
    bs::ReadResponse msg;
    out->clear();
    while (r->Read(&msg)) out->append(msg.data());
    return r->Finish();
  }

  grpc::Status QueryWrite(const std::string& resource, bs::QueryWriteStatusResponse* resp) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    bs::QueryWriteStatusRequest req;
    req.set_resource_name(resource);
    return bytestream->QueryWriteStatus(&ctx, req, resp);
  }

  grpc::Status Capabilities(const std::string& instance, v2::ServerCapabilities* resp) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v2::GetCapabilitiesRequest req;
    req.set_instance_name(instance);
    return caps->GetCapabilities(&ctx, req, resp);
  }

  grpc::Status FindMissing(const std::string& instance, const std::vector<v2::Digest>& digests,
                           std::vector<std::string>* missing_hashes) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v2::FindMissingBlobsRequest req;
    req.set_instance_name(instance);
    for (const auto& d : digests) *req.add_blob_digests() = d;
    v2::FindMissingBlobsResponse resp;
    grpc::Status s = cas->FindMissingBlobs(&ctx, req, &resp);
    missing_hashes->clear();
    for (const auto& d : resp.missing_blob_digests()) missing_hashes->push_back(d.hash());
    return s;
  }

  grpc::Status GetResult(const std::string& instance, const v2::Digest& action,
                         v2::ActionResult* out) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v2::GetActionResultRequest req;
    req.set_instance_name(instance);
    *req.mutable_action_digest() = action;
    return ac->GetActionResult(&ctx, req, out);
  }

  grpc::Status UpdateResult(const std::string& instance, const v2::Digest& action,
                            const v2::ActionResult& result, v2::ActionResult* out = nullptr) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v2::UpdateActionResultRequest req;
    req.set_instance_name(instance);
    *req.mutable_action_digest() = action;
    *req.mutable_action_result() = result;
    v2::ActionResult resp;
    grpc::Status s = ac->UpdateActionResult(&ctx, req, &resp);
    if (out != nullptr) *out = resp;
    return s;
  }

  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v2::Capabilities::Stub> caps;
  std::unique_ptr<v2::ActionCache::Stub> ac;
  std::unique_ptr<v2::ContentAddressableStorage::Stub> cas;
  std::unique_ptr<bs::ByteStream::Stub> bytestream;
  std::string token;
  std::string metadata;  // serialized RequestMetadata, if any
};

// A result naming one output file and stdout.
v2::ActionResult SimpleResult(absl::string_view file, absl::string_view out) {
  v2::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("bazel-out/k8-fastbuild/bin/out.o");
  *f->mutable_digest() = D(file);
  f->set_is_executable(true);
  *r.mutable_stdout_digest() = D(out);
  r.set_exit_code(0);
  r.mutable_execution_metadata()->set_worker("test");
  return r;
}

class ReapiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto reg = RegistryProcess::Start({});
    ASSERT_TRUE(reg.ok()) << reg.status();
    registry_ = reg->release();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }

  struct Setup {
    std::string repo;       // REPO below the registry host; empty: a new one
    bool dir = true;        // with a local tier
    absl::Duration ttl = absl::Minutes(10);
    std::optional<rpc::TokenAuth> auth;
    std::function<void(absl::string_view)> log;
    bool metrics = false;
    int64_t max_local_bytes = 0;  // --max_local_size (with no eviction grace)
    int max_open_instances = 64;
  };

  // A server over host/REPO (and a new directory), with REAPI instances opened
  // as ocicached opens them.
  std::unique_ptr<server::CacheServer> Serve(Setup s) {
    static std::atomic<int> counter{0};
    if (s.repo.empty()) s.repo = absl::StrCat("reapi/t", counter++, "-", getpid());
    stores::StoreConfig c;
    c.repo = registry_->host() + "/" + s.repo;
    if (s.dir) c.dir = testing::TempDir("reapi-dir");
    last_config_ = c;
    c.max_local_bytes = s.max_local_bytes;
    c.local_evict_grace = absl::ZeroDuration();
    auto set = stores::OpenStores(c);
    EXPECT_TRUE(set.ok()) << set.status();
    if (!set.ok()) return nullptr;
    server::ServerOptions o;
    o.open_instance = server::InstanceOpener(c);
    o.reapi_instances.exists_ttl = s.ttl;
    o.reapi_instances.complete_ttl = s.ttl;
    o.reapi_instances.max_open_instances = s.max_open_instances;
    o.auth = s.auth;
    o.service.access_log = s.log;
    if (s.metrics) o.metrics_listen = "127.0.0.1:0";
    auto srv = testing::StartServer(*std::move(set), o);
    EXPECT_TRUE(srv.ok()) << srv.status();
    return srv.ok() ? *std::move(srv) : nullptr;
  }

  static RegistryProcess* registry_;
  stores::StoreConfig last_config_;
};

RegistryProcess* ReapiTest::registry_ = nullptr;

TEST_F(ReapiTest, CapabilitiesAnnounceACacheBazelAccepts) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  v2::ServerCapabilities caps;
  ASSERT_TRUE(c.Capabilities("", &caps).ok());
  ASSERT_EQ(caps.cache_capabilities().digest_functions_size(), 1);
  EXPECT_EQ(caps.cache_capabilities().digest_functions(0), v2::DigestFunction::SHA256);
  EXPECT_TRUE(caps.cache_capabilities().action_cache_update_capabilities().update_enabled());
  EXPECT_GT(caps.cache_capabilities().max_batch_total_size_bytes(), 0);
  EXPECT_EQ(caps.low_api_version().major(), 2);
  EXPECT_EQ(caps.low_api_version().minor(), 0);
  EXPECT_EQ(caps.high_api_version().major(), 2);
  EXPECT_EQ(caps.high_api_version().minor(), 3);
  EXPECT_FALSE(caps.has_execution_capabilities());
  ASSERT_TRUE(c.Capabilities("ci/linux", &caps).ok());
  EXPECT_EQ(c.Capabilities("Not/Valid", &caps).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(c.Capabilities("a/blobs", &caps).error_code(), StatusCode::INVALID_ARGUMENT);
}

// A request naming a digest function other than SHA-256 is refused, not
// answered with SHA-256 digests; unset or SHA256 is served.
TEST_F(ReapiTest, OnlySha256DigestsAreServed) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  for (auto f : {v2::DigestFunction::UNKNOWN, v2::DigestFunction::SHA256,
                 v2::DigestFunction::SHA1, v2::DigestFunction::MD5, v2::DigestFunction::SHA512}) {
    bool served = f == v2::DigestFunction::UNKNOWN || f == v2::DigestFunction::SHA256;
    StatusCode want = served ? StatusCode::OK : StatusCode::INVALID_ARGUMENT;
    {
      grpc::ClientContext ctx;
      v2::FindMissingBlobsRequest req;
      req.set_digest_function(f);
      *req.add_blob_digests() = D("absent");
      v2::FindMissingBlobsResponse resp;
      EXPECT_EQ(c.cas->FindMissingBlobs(&ctx, req, &resp).error_code(), want) << f;
    }
    {
      grpc::ClientContext ctx;
      v2::GetActionResultRequest req;
      req.set_digest_function(f);
      *req.mutable_action_digest() = D("no action");
      v2::ActionResult resp;
      EXPECT_EQ(c.ac->GetActionResult(&ctx, req, &resp).error_code(),
                served ? StatusCode::NOT_FOUND : StatusCode::INVALID_ARGUMENT) << f;
    }
    {
      grpc::ClientContext ctx;
      v2::BatchReadBlobsRequest req;
      req.set_digest_function(f);
      v2::BatchReadBlobsResponse resp;
      EXPECT_EQ(c.cas->BatchReadBlobs(&ctx, req, &resp).error_code(), want) << f;
    }
  }
}

TEST_F(ReapiTest, EmptyBlobIsAlwaysPresent) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::vector<std::string> missing;
  ASSERT_TRUE(c.FindMissing("", {D(""), D("absent")}, &missing).ok());
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0], D("absent").hash());
  std::string got = "x";
  ASSERT_TRUE(c.Read(ReadName("", D("")), 0, 0, &got).ok());
  EXPECT_EQ(got, "");
  int64_t committed = -1;
  ASSERT_TRUE(c.Write(WriteName("", "u1", D("")), "", 0, true, 16, &committed).ok());
  EXPECT_EQ(committed, 0);
  // Batch read of the empty blob, and a result naming it (empty stdout).
  grpc::ClientContext ctx;
  v2::BatchReadBlobsRequest req;
  *req.add_digests() = D("");
  v2::BatchReadBlobsResponse resp;
  ASSERT_TRUE(c.cas->BatchReadBlobs(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.responses_size(), 1);
  EXPECT_EQ(resp.responses(0).status().code(), 0);
  EXPECT_EQ(resp.responses(0).data(), "");
  ASSERT_TRUE(c.Upload("", "file").ok());
  ASSERT_TRUE(c.UpdateResult("", D("action-empty"), SimpleResult("file", "")).ok());
  v2::ActionResult r;
  EXPECT_TRUE(c.GetResult("", D("action-empty"), &r).ok());
}

TEST_F(ReapiTest, ActionCacheMissUpdateAndHit) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  v2::ActionResult got;
  EXPECT_EQ(c.GetResult("", D("action-1"), &got).error_code(), StatusCode::NOT_FOUND);

  v2::ActionResult r = SimpleResult("object code", "compiler said hi");
  // Blobs not uploaded yet: refused.
  grpc::Status s = c.UpdateResult("", D("action-1"), r);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << s.error_message();
  ASSERT_TRUE(c.Upload("", "object code").ok());
  EXPECT_EQ(c.UpdateResult("", D("action-1"), r).error_code(), StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(c.Upload("", "compiler said hi").ok());
  v2::ActionResult stored;
  ASSERT_TRUE(c.UpdateResult("", D("action-1"), r, &stored).ok());
  EXPECT_EQ(stored.SerializeAsString(), r.SerializeAsString());

  ASSERT_TRUE(c.GetResult("", D("action-1"), &got).ok());
  EXPECT_EQ(got.SerializeAsString(), r.SerializeAsString());
  EXPECT_EQ(c.GetResult("", D("action-2"), &got).error_code(), StatusCode::NOT_FOUND);

  // Malformed requests.
  v2::Digest bad;
  bad.set_hash("xyz");
  EXPECT_EQ(c.GetResult("", bad, &got).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(c.GetResult("", v2::Digest(), &got).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(c.GetResult("BAD", D("action-1"), &got).error_code(), StatusCode::INVALID_ARGUMENT);
  v2::ActionResult bad_result = r;
  bad_result.mutable_output_files(0)->mutable_digest()->set_size_bytes(-1);
  EXPECT_EQ(c.UpdateResult("", D("action-3"), bad_result).error_code(),
            StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext ctx;
    v2::UpdateActionResultRequest req;
    *req.mutable_action_digest() = D("action-4");
    v2::ActionResult out;
    EXPECT_EQ(c.ac->UpdateActionResult(&ctx, req, &out).error_code(),
              StatusCode::INVALID_ARGUMENT);
  }
  // Inlined stdout is stored as a blob and served by digest.
  v2::ActionResult inl = SimpleResult("object code", "compiler said hi");
  inl.clear_stdout_digest();
  inl.set_stdout_raw("inline stdout");
  ASSERT_TRUE(c.UpdateResult("", D("action-5"), inl, &stored).ok());
  EXPECT_EQ(stored.stdout_raw(), "");
  EXPECT_EQ(stored.stdout_digest().hash(), D("inline stdout").hash());
  std::string data;
  ASSERT_TRUE(c.Read(ReadName("", D("inline stdout")), 0, 0, &data).ok());
  EXPECT_EQ(data, "inline stdout");
}

TEST_F(ReapiTest, LargeResultsAreStoredAsABlob) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  ASSERT_TRUE(c.Upload("", "shared").ok());
  v2::ActionResult r;
  for (int i = 0; i < 800; ++i) {
    auto* f = r.add_output_files();
    f->set_path(absl::StrCat("bazel-out/k8-fastbuild/bin/some/long/package/path/file_", i, ".h"));
    *f->mutable_digest() = D("shared");
  }
  ASSERT_GT(r.ByteSizeLong(), 40u << 10);
  ASSERT_TRUE(c.UpdateResult("", D("big-action"), r).ok());
  v2::ActionResult got;
  ASSERT_TRUE(c.GetResult("", D("big-action"), &got).ok());
  EXPECT_EQ(got.SerializeAsString(), r.SerializeAsString());
}

TEST_F(ReapiTest, BatchCallsReportEachBlob) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  v2::ServerCapabilities caps;
  ASSERT_TRUE(c.Capabilities("", &caps).ok());
  const int64_t limit = caps.cache_capabilities().max_batch_total_size_bytes();
  {
    grpc::ClientContext ctx;
    v2::BatchUpdateBlobsRequest req;
    auto* good = req.add_requests();
    *good->mutable_digest() = D("good");
    good->set_data("good");
    auto* mismatch = req.add_requests();
    *mismatch->mutable_digest() = D("claimed");
    mismatch->set_data("actual");
    auto* wrong_size = req.add_requests();
    *wrong_size->mutable_digest() = D("sized");
    wrong_size->mutable_digest()->set_size_bytes(99);
    wrong_size->set_data("sized");
    auto* compressed = req.add_requests();
    *compressed->mutable_digest() = D("zz");
    compressed->set_data("zz");
    compressed->set_compressor(v2::Compressor::ZSTD);
    auto* bad = req.add_requests();
    bad->mutable_digest()->set_hash("nothex");
    v2::BatchUpdateBlobsResponse resp;
    ASSERT_TRUE(c.cas->BatchUpdateBlobs(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.responses_size(), 5);
    EXPECT_EQ(resp.responses(0).status().code(), grpc::StatusCode::OK);
    EXPECT_EQ(resp.responses(0).digest().hash(), D("good").hash());
    for (int i = 1; i < 5; ++i) {
      EXPECT_EQ(resp.responses(i).status().code(), StatusCode::INVALID_ARGUMENT)
          << i << ": " << resp.responses(i).status().message();
    }
  }
  {
    grpc::ClientContext ctx;
    v2::BatchReadBlobsRequest req;
    *req.add_digests() = D("good");
    *req.add_digests() = D("actual");  // nothing was stored for the mismatch
    req.add_digests()->set_hash("nothex");
    v2::BatchReadBlobsResponse resp;
    ASSERT_TRUE(c.cas->BatchReadBlobs(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.responses_size(), 3);
    EXPECT_EQ(resp.responses(0).status().code(), 0);
    EXPECT_EQ(resp.responses(0).data(), "good");
    EXPECT_EQ(resp.responses(1).status().code(), StatusCode::NOT_FOUND);
    EXPECT_EQ(resp.responses(2).status().code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    // Over the advertised limit: the whole call is refused.
    grpc::ClientContext ctx;
    v2::BatchUpdateBlobsRequest req;
    std::string big = Pattern(static_cast<size_t>(limit) / 2 + 1, 1);
    for (int i = 0; i < 2; ++i) {
      auto* r = req.add_requests();
      *r->mutable_digest() = D(big);
      r->set_data(big);
    }
    v2::BatchUpdateBlobsResponse resp;
    EXPECT_EQ(c.cas->BatchUpdateBlobs(&ctx, req, &resp).error_code(),
              StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext ctx2;
    v2::BatchReadBlobsRequest rreq;
    v2::Digest huge = D("x");
    huge.set_size_bytes(limit + 1);
    *rreq.add_digests() = huge;
    v2::BatchReadBlobsResponse rresp;
    EXPECT_EQ(c.cas->BatchReadBlobs(&ctx2, rreq, &rresp).error_code(),
              StatusCode::INVALID_ARGUMENT);
  }
  std::vector<std::string> missing;
  EXPECT_EQ(c.FindMissing("", {D("a"), v2::Digest()}, &missing).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(ReapiTest, ByteStreamWriteChecksDigestSizeAndNames) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::string data = Pattern(100000, 2);
  int64_t committed = -1;
  // Multi-chunk write, then read back.
  ASSERT_TRUE(c.Write(WriteName("", "w1", D(data)), data, 0, true, 16 << 10, &committed).ok());
  EXPECT_EQ(committed, 100000);
  std::string got;
  ASSERT_TRUE(c.Read(ReadName("", D(data)), 0, 0, &got).ok());
  EXPECT_EQ(got, data);

  // The data does not match the hash: INVALID_ARGUMENT, nothing stored.
  std::string other = Pattern(100000, 3);
  v2::Digest claimed = D(Pattern(100000, 4));
  grpc::Status s = c.Write(WriteName("", "w2", claimed), other, 0, true, 16 << 10, &committed);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(c.Read(ReadName("", claimed), 0, 0, &got).error_code(), StatusCode::NOT_FOUND);
  // Less data than the name says, or more.
  std::string small = Pattern(50000, 5);
  v2::Digest too_big = D(small);
  too_big.set_size_bytes(60000);
  EXPECT_EQ(c.Write(WriteName("", "w3", too_big), small, 0, true, 16 << 10, &committed)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  v2::Digest too_small = D(small);
  too_small.set_size_bytes(40000);
  EXPECT_EQ(c.Write(WriteName("", "w4", too_small), small, 0, true, 16 << 10, &committed)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  // Bad resource names.
  for (const std::string& name :
       {ReadName("", D(small)), std::string("uploads/u/blobs/nothex/5"),
        std::string("nothing/here"), "UPPER/uploads/u/blobs/" + D(small).hash() + "/50000",
        "uploads/u/compressed-blobs/zstd/" + D(small).hash() + "/50000"}) {
    EXPECT_EQ(c.Write(name, small, 0, true, 16 << 10, &committed).error_code(),
              StatusCode::INVALID_ARGUMENT)
        << name;
  }
  // A write_offset that does not follow the data sent.
  {
    grpc::ClientContext ctx;
    bs::WriteResponse resp;
    auto w = c.bytestream->Write(&ctx, &resp);
    bs::WriteRequest req;
    req.set_resource_name(WriteName("", "w5", D(small)));
    req.set_data(small.substr(0, 1000));
    w->Write(req);
    bs::WriteRequest next;
    next.set_write_offset(5000);
    next.set_data(small.substr(5000, 1000));
    w->Write(next);
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(ReapiTest, ByteStreamWriteFinishesEarlyWhenTheBlobExists) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::string data = Pattern(200000, 6);
  ASSERT_TRUE(c.Upload("", data).ok());
  // Send only the first chunk, without finish_write: the server answers at
  // once with the full size, as the spec allows.
  int64_t committed = -1;
  grpc::Status s = c.Write(WriteName("", "again", D(data)), data.substr(0, 16384), 0, false,
                           16384, &committed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(committed, 200000);
  bs::QueryWriteStatusResponse q;
  ASSERT_TRUE(c.QueryWrite(WriteName("", "any-uuid", D(data)), &q).ok());
  EXPECT_TRUE(q.complete());
  EXPECT_EQ(q.committed_size(), 200000);
}

TEST_F(ReapiTest, ByteStreamWriteResumesFromQueryWriteStatus) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::string data = Pattern(300000, 7);
  std::string name = WriteName("", "resume-1", D(data));
  bs::QueryWriteStatusResponse q;
  ASSERT_TRUE(c.QueryWrite(name, &q).ok());
  EXPECT_EQ(q.committed_size(), 0);
  EXPECT_FALSE(q.complete());

  // A stream that breaks off after 64 KiB.
  int64_t committed = -1;
  ASSERT_TRUE(c.Write(name, data.substr(0, 65536), 0, false, 16384, &committed).ok());
  EXPECT_EQ(committed, 65536);
  ASSERT_TRUE(c.QueryWrite(name, &q).ok());
  EXPECT_EQ(q.committed_size(), 65536);
  EXPECT_FALSE(q.complete());
  std::string got;
  EXPECT_EQ(c.Read(ReadName("", D(data)), 0, 0, &got).error_code(), StatusCode::NOT_FOUND);

  // Resuming past the committed size is refused; from it, it completes.
  EXPECT_EQ(c.Write(name, data.substr(100000), 100000, true, 16384, &committed).error_code(),
            StatusCode::OUT_OF_RANGE);
  ASSERT_TRUE(c.Write(name, data.substr(65536), 65536, true, 16384, &committed).ok());
  EXPECT_EQ(committed, 300000);
  ASSERT_TRUE(c.QueryWrite(name, &q).ok());
  EXPECT_TRUE(q.complete());
  EXPECT_EQ(q.committed_size(), 300000);
  ASSERT_TRUE(c.Read(ReadName("", D(data)), 0, 0, &got).ok());
  EXPECT_EQ(got, data);

  // A resumed upload whose bytes do not match the hash is refused.
  std::string other = Pattern(300000, 8);
  v2::Digest claimed = D(Pattern(300000, 9));
  std::string bad_name = WriteName("", "resume-2", claimed);
  ASSERT_TRUE(c.Write(bad_name, other.substr(0, 100000), 0, false, 16384, &committed).ok());
  EXPECT_EQ(c.Write(bad_name, other.substr(100000), 100000, true, 16384, &committed).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(c.QueryWrite(bad_name, &q).ok() ? q.committed_size() : -1, 0);
}

TEST_F(ReapiTest, ByteStreamReadOffsetsLimitsAndMisses) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::string data = Pattern(3 << 20, 10);  // several server chunks
  ASSERT_TRUE(c.Upload("", data, 1 << 20).ok());
  std::string name = ReadName("", D(data));
  std::string got;
  ASSERT_TRUE(c.Read(name, 1000, 0, &got).ok());
  EXPECT_EQ(got, data.substr(1000));
  ASSERT_TRUE(c.Read(name, 5, 10, &got).ok());
  EXPECT_EQ(got, data.substr(5, 10));
  ASSERT_TRUE(c.Read(name, static_cast<int64_t>(data.size()), 0, &got).ok());
  EXPECT_EQ(got, "");
  EXPECT_EQ(c.Read(name, static_cast<int64_t>(data.size()) + 1, 0, &got).error_code(),
            StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(c.Read(name, -1, 0, &got).error_code(), StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(c.Read(name, 0, -1, &got).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(c.Read(ReadName("", D("absent")), 0, 0, &got).error_code(), StatusCode::NOT_FOUND);
  // The right hash with the wrong size names another blob.
  v2::Digest wrong = D(data);
  wrong.set_size_bytes(12);
  EXPECT_EQ(c.Read(ReadName("", wrong), 0, 0, &got).error_code(), StatusCode::NOT_FOUND);
  for (const std::string& bad : {std::string("blobs/xyz/1"), std::string("blobs"),
                                 "uploads/u/blobs/" + D(data).hash() + "/3",
                                 "Bad/blobs/" + D(data).hash() + "/3"}) {
    EXPECT_EQ(c.Read(bad, 0, 0, &got).error_code(), StatusCode::INVALID_ARGUMENT) << bad;
  }
}

TEST_F(ReapiTest, GetTreeWalksDirectoriesInPages) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  v2::Directory leaf;
  auto* f = leaf.add_files();
  f->set_name("leaf.txt");
  *f->mutable_digest() = D("leaf");
  std::string leaf_bytes = leaf.SerializeAsString();
  v2::Directory missing_child;
  missing_child.add_files()->set_name("never uploaded");
  v2::Directory root;
  auto* sub = root.add_directories();
  sub->set_name("leaf");
  *sub->mutable_digest() = D(leaf_bytes);
  auto* gone = root.add_directories();
  gone->set_name("gone");
  *gone->mutable_digest() = D(missing_child.SerializeAsString());
  std::string root_bytes = root.SerializeAsString();
  ASSERT_TRUE(c.Upload("", leaf_bytes).ok());
  ASSERT_TRUE(c.Upload("", root_bytes).ok());

  auto get_tree = [&](const v2::Digest& d, int page_size, const std::string& token,
                      std::vector<v2::GetTreeResponse>* out) {
    grpc::ClientContext ctx;
    v2::GetTreeRequest req;
    *req.mutable_root_digest() = d;
    req.set_page_size(page_size);
    req.set_page_token(token);
    auto r = c.cas->GetTree(&ctx, req);
    v2::GetTreeResponse msg;
    out->clear();
    while (r->Read(&msg)) out->push_back(msg);
    return r->Finish();
  };
  std::vector<v2::GetTreeResponse> pages;
  ASSERT_TRUE(get_tree(D(root_bytes), 0, "", &pages).ok());
  int total = 0;
  for (const auto& p : pages) total += p.directories_size();
  EXPECT_EQ(total, 2);  // root and leaf; the absent child is left out
  EXPECT_EQ(pages.back().next_page_token(), "");

  ASSERT_TRUE(get_tree(D(root_bytes), 1, "", &pages).ok());
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[0].directories(0).SerializeAsString(), root_bytes);
  ASSERT_FALSE(pages[0].next_page_token().empty());
  std::string token = pages[0].next_page_token();
  ASSERT_TRUE(get_tree(D(root_bytes), 1, token, &pages).ok());
  ASSERT_EQ(pages.size(), 1u);
  ASSERT_EQ(pages[0].directories_size(), 1);
  EXPECT_EQ(pages[0].directories(0).SerializeAsString(), leaf_bytes);

  EXPECT_EQ(get_tree(D("no such root"), 0, "", &pages).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(get_tree(D(root_bytes), 0, "garbage", &pages).error_code(),
            StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(c.Upload("", "\xff\xff\xff").ok());
  EXPECT_EQ(get_tree(D("\xff\xff\xff"), 0, "", &pages).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(ReapiTest, ConcurrentWritesOfOneBlob) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::string data = Pattern(2 << 20, 11);
  constexpr int kWriters = 8;
  std::vector<grpc::Status> results(kWriters);
  std::vector<int64_t> committed(kWriters, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] {
      results[i] = c.Write(WriteName("", absl::StrCat("writer-", i), D(data)), data, 0, true,
                           64 << 10, &committed[i]);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kWriters; ++i) {
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i].error_message();
    EXPECT_EQ(committed[i], static_cast<int64_t>(data.size())) << i;
  }
  std::string got;
  ASSERT_TRUE(c.Read(ReadName("", D(data)), 0, 0, &got).ok());
  EXPECT_EQ(got, data);
  // And straight from the registry, with a second server without a directory.
  Setup s;
  s.repo = last_config_.repo.substr(registry_->host().size() + 1);
  s.dir = false;
  auto srv2 = Serve(s);
  ASSERT_NE(srv2, nullptr);
  Client c2(srv2->address());
  ASSERT_TRUE(c2.Read(ReadName("", D(data)), 0, 0, &got).ok());
  EXPECT_EQ(got, data);
}

TEST_F(ReapiTest, ResultsWithMissingBlobsAreMisses) {
  // Registry only, no caching of existence: every check asks the registry.
  Setup setup;
  setup.dir = false;
  setup.ttl = absl::ZeroDuration();
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  std::string repo = last_config_.repo.substr(registry_->host().size() + 1);
  Client c(srv->address());

  // A result with an output directory: the Tree, and a file only the Tree names.
  v2::Tree tree;
  auto* f = tree.mutable_root()->add_files();
  f->set_name("generated.h");
  *f->mutable_digest() = D("inside the tree");
  std::string tree_bytes = tree.SerializeAsString();
  v2::ActionResult r = SimpleResult("output", "stdout");
  auto* od = r.add_output_directories();
  od->set_path("bazel-out/k8-fastbuild/bin/gen");
  *od->mutable_tree_digest() = D(tree_bytes);
  for (absl::string_view b : {absl::string_view("output"), absl::string_view("stdout"),
                              absl::string_view(tree_bytes)}) {
    ASSERT_TRUE(c.Upload("", b).ok());
  }
  grpc::Status s = c.UpdateResult("", D("tree-action"), r);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << s.error_message();
  ASSERT_TRUE(c.Upload("", "inside the tree").ok());
  ASSERT_TRUE(c.UpdateResult("", D("tree-action"), r).ok());
  v2::ActionResult got;
  ASSERT_TRUE(c.GetResult("", D("tree-action"), &got).ok());

  // The registry loses the file inside the tree: no longer a hit.
  auto del = harness::HttpDo({.method = "DELETE",
                              .url = absl::StrCat(registry_->base_url(), "/v2/", repo,
                                                  "/blobs/sha256:", D("inside the tree").hash())});
  ASSERT_TRUE(del.ok()) << del.status();
  ASSERT_EQ(del->status, 202) << del->body;
  s = c.GetResult("", D("tree-action"), &got);
  EXPECT_EQ(s.error_code(), StatusCode::NOT_FOUND) << s.error_message();
  std::vector<std::string> missing;
  ASSERT_TRUE(c.FindMissing("", {D("inside the tree"), D("output")}, &missing).ok());
  EXPECT_EQ(missing, std::vector<std::string>{D("inside the tree").hash()});
  // Uploading it again makes the result whole again.
  ASSERT_TRUE(c.Upload("", "inside the tree").ok());
  EXPECT_TRUE(c.GetResult("", D("tree-action"), &got).ok());
}

// ocicached_registry_requests_total from the server's metrics endpoint; -1 if absent.
int64_t RegistryRequests(const server::CacheServer& srv) {
  auto reply = harness::HttpDo(
      {.url = absl::StrCat("http://127.0.0.1:", srv.metrics_port(), "/metrics")});
  if (!reply.ok()) return -1;
  const std::string kName = "\nocicached_registry_requests_total ";
  size_t at = reply->body.find(kName);
  if (at == std::string::npos) return -1;
  return std::stoll(reply->body.substr(at + kName.size()));
}

TEST_F(ReapiTest, ExistenceCacheKeepsRepeatedChecksAwayFromTheRegistry) {
  Setup setup;
  setup.dir = false;
  setup.metrics = true;
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::vector<v2::Digest> digests;
  for (int i = 0; i < 20; ++i) {
    std::string b = absl::StrCat("blob ", i);
    ASSERT_TRUE(c.Upload("", b).ok());
    digests.push_back(D(b));
  }
  std::string repo = last_config_.repo.substr(registry_->host().size() + 1);
  std::vector<std::string> missing;
  ASSERT_TRUE(c.FindMissing("", digests, &missing).ok());
  EXPECT_TRUE(missing.empty());
  // Repeated checks, present blobs and the empty one: no registry request at all.
  int64_t before = RegistryRequests(*srv);
  ASSERT_GT(before, 0);
  digests.push_back(D(""));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.FindMissing("", digests, &missing).ok());
    EXPECT_TRUE(missing.empty());
  }
  EXPECT_EQ(RegistryRequests(*srv), before);
  // An absent blob is asked each time.
  ASSERT_TRUE(c.FindMissing("", {D("not there")}, &missing).ok());
  ASSERT_TRUE(c.FindMissing("", {D("not there")}, &missing).ok());
  EXPECT_EQ(missing.size(), 1u);
  EXPECT_GE(RegistryRequests(*srv), before + 2);
  digests.pop_back();
  // Delete one behind the server's back: the cached answer stands (within the TTL).
  auto del = harness::HttpDo({.method = "DELETE",
                              .url = absl::StrCat(registry_->base_url(), "/v2/", repo,
                                                  "/blobs/sha256:", digests[0].hash())});
  ASSERT_TRUE(del.ok());
  ASSERT_EQ(del->status, 202);
  ASSERT_TRUE(c.FindMissing("", digests, &missing).ok());
  EXPECT_TRUE(missing.empty());
  // A server without the cache sees the truth.
  setup.repo = repo;
  setup.ttl = absl::ZeroDuration();
  auto fresh = Serve(setup);
  ASSERT_NE(fresh, nullptr);
  Client c2(fresh->address());
  ASSERT_TRUE(c2.FindMissing("", digests, &missing).ok());
  EXPECT_EQ(missing, std::vector<std::string>{digests[0].hash()});
  // Reading it through the caching server: NOT_FOUND, and then it is forgotten.
  std::string got;
  EXPECT_EQ(c.Read(ReadName("", digests[0]), 0, 0, &got).error_code(), StatusCode::NOT_FOUND);
  ASSERT_TRUE(c.FindMissing("", digests, &missing).ok());
  EXPECT_EQ(missing, std::vector<std::string>{digests[0].hash()});
}

TEST_F(ReapiTest, ReadOnlyTokensCannotWrite) {
  Setup setup;
  auto auth = rpc::TokenAuth::Parse(
      absl::StrCat(kReadToken, " read\n", kWriteToken, " write\n"));
  ASSERT_TRUE(auth.ok()) << auth.status();
  setup.auth = *auth;
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  Client writer(srv->address(), kWriteToken);
  Client reader(srv->address(), kReadToken);
  Client nobody(srv->address());

  v2::ServerCapabilities caps;
  ASSERT_TRUE(writer.Capabilities("", &caps).ok());
  EXPECT_TRUE(caps.cache_capabilities().action_cache_update_capabilities().update_enabled());
  ASSERT_TRUE(reader.Capabilities("", &caps).ok());
  EXPECT_FALSE(caps.cache_capabilities().action_cache_update_capabilities().update_enabled());
  EXPECT_EQ(nobody.Capabilities("", &caps).error_code(), StatusCode::UNAUTHENTICATED);

  ASSERT_TRUE(writer.Upload("", "written").ok());
  ASSERT_TRUE(writer.UpdateResult("", D("ro-action"), SimpleResult("written", "")).ok());

  EXPECT_EQ(reader.Upload("", "not allowed").error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(reader.UpdateResult("", D("ro-action-2"), SimpleResult("written", "")).error_code(),
            StatusCode::PERMISSION_DENIED);
  {
    grpc::ClientContext ctx;
    reader.Prepare(&ctx);
    v2::BatchUpdateBlobsRequest req;
    auto* r = req.add_requests();
    *r->mutable_digest() = D("x");
    r->set_data("x");
    v2::BatchUpdateBlobsResponse resp;
    EXPECT_EQ(reader.cas->BatchUpdateBlobs(&ctx, req, &resp).error_code(),
              StatusCode::PERMISSION_DENIED);
  }
  // Reads work.
  v2::ActionResult got;
  EXPECT_TRUE(reader.GetResult("", D("ro-action"), &got).ok());
  std::string data;
  ASSERT_TRUE(reader.Read(ReadName("", D("written")), 0, 0, &data).ok());
  EXPECT_EQ(data, "written");
  std::vector<std::string> missing;
  EXPECT_TRUE(reader.FindMissing("", {D("written")}, &missing).ok());
  EXPECT_EQ(nobody.Read(ReadName("", D("written")), 0, 0, &data).error_code(),
            StatusCode::UNAUTHENTICATED);
}

TEST_F(ReapiTest, InstancesAreIsolated) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  std::string repo = last_config_.repo.substr(registry_->host().size() + 1);
  std::string dir = last_config_.dir;
  Client c(srv->address());
  ASSERT_TRUE(c.Upload("team/a", "only in a").ok());
  ASSERT_TRUE(c.UpdateResult("team/a", D("iso-action"), SimpleResult("only in a", "")).ok());

  std::vector<std::string> missing;
  ASSERT_TRUE(c.FindMissing("team/a", {D("only in a")}, &missing).ok());
  EXPECT_TRUE(missing.empty());
  for (const char* other : {"", "team/b", "team"}) {
    grpc::Status fs = c.FindMissing(other, {D("only in a")}, &missing);
    ASSERT_TRUE(fs.ok()) << other << ": " << fs.error_message();
    EXPECT_EQ(missing.size(), 1u) << other;
    v2::ActionResult got;
    EXPECT_EQ(c.GetResult(other, D("iso-action"), &got).error_code(), StatusCode::NOT_FOUND)
        << other;
  }
  v2::ActionResult got;
  EXPECT_TRUE(c.GetResult("team/a", D("iso-action"), &got).ok());
  std::string data;
  ASSERT_TRUE(c.Read(ReadName("team/a", D("only in a")), 0, 0, &data).ok());
  EXPECT_EQ(c.Read(ReadName("team/b", D("only in a")), 0, 0, &data).error_code(),
            StatusCode::NOT_FOUND);

  // Where it went: repository REPO/team/a, directory DIR/instances/team/a/_layout.
  auto head = [&](const std::string& r) {
    auto reply = harness::HttpDo({.method = "HEAD",
                                  .url = absl::StrCat(registry_->base_url(), "/v2/", r,
                                                      "/blobs/sha256:", D("only in a").hash())});
    return reply.ok() ? reply->status : -1;
  };
  EXPECT_EQ(head(repo + "/team/a"), 200);
  EXPECT_EQ(head(repo + "/team/b"), 404);
  EXPECT_EQ(head(repo), 404);
  EXPECT_EQ(::access((dir + "/instances/team/a/_layout/oci-layout").c_str(), F_OK), 0);

  // Invalid instance names.
  for (const char* bad : {"Team", "a//b", "a/../b", "x/uploads", "-a"}) {
    EXPECT_EQ(c.FindMissing(bad, {D("x")}, &missing).error_code(), StatusCode::INVALID_ARGUMENT)
        << bad;
    EXPECT_EQ(c.GetResult(bad, D("x"), &got).error_code(), StatusCode::INVALID_ARGUMENT) << bad;
  }
}

int OpenFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (struct dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

// Issue 11, defect 3: each new instance name kept its store (a directory lock
// and its fds, registry connections) open for ever: a read token could exhaust
// the fd limit with a few thousand names. Now only max_open_instances stay open.
TEST_F(ReapiTest, ManyInstanceNamesKeepFdsBounded) {
  Setup setup;
  setup.max_open_instances = 8;
  setup.metrics = true;
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  std::vector<std::string> missing;
  ASSERT_TRUE(c.FindMissing("warm/up", {D("fd probe")}, &missing).ok());
  const int before = OpenFds();
  const int kNames = 300;
  for (int i = 0; i < kNames; ++i) {
    std::string name = absl::StrCat("names/n", i);
    grpc::Status st = c.FindMissing(name, {D("fd probe")}, &missing);  // reaches the registry
    ASSERT_TRUE(st.ok()) << name << ": " << st.error_message();
    ASSERT_EQ(missing.size(), 1u);
  }
  const int after = OpenFds();
  // 8 open instances (a few fds each) plus slack for gRPC's own; 300 names at
  // about 7 fds each would be 2,100.
  EXPECT_LT(after - before, 150) << before << " -> " << after;
  // The instance still works after being closed and opened again.
  ASSERT_TRUE(c.Upload("names/n0", "back again").ok());
  ASSERT_TRUE(c.FindMissing("names/n0", {D("back again")}, &missing).ok());
  EXPECT_TRUE(missing.empty());
  auto metrics = harness::HttpDo(
      {.method = "GET", .url = absl::StrCat("http://127.0.0.1:", srv->metrics_port(), "/metrics")});
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->body.find("ocicached_reapi_open_instances 8"), std::string::npos);
  EXPECT_NE(metrics->body.find("ocicached_open_fds "), std::string::npos);
}

// --max_local_size bounds each instance's layout as it bounds the default one;
// what eviction drops locally the registry tier still answers.
TEST_F(ReapiTest, InstanceLayoutsAreBoundedToo) {
  constexpr int64_t kBound = 256 * 1024;
  Setup setup;
  setup.max_local_bytes = kBound;
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  const std::string blobs = last_config_.dir + "/instances/team/a/_layout/blobs/sha256";
  auto tier_bytes = [&] {
    int64_t total = 0;
    DIR* d = ::opendir(blobs.c_str());
    if (d == nullptr) return int64_t{-1};
    while (struct dirent* e = ::readdir(d)) {
      struct stat st;
      if (::fstatat(::dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
        total += st.st_size;
      }
    }
    ::closedir(d);
    return total;
  };
  Client c(srv->address());
  constexpr int kResults = 16;
  std::vector<std::string> outputs;
  int64_t written = 0, most = 0;
  for (int i = 0; i < kResults; ++i) {
    outputs.push_back(absl::StrCat(i, ":", std::string(40 * 1024, static_cast<char>('a' + i))));
    ASSERT_TRUE(c.Upload("team/a", outputs.back()).ok()) << i;
    ASSERT_TRUE(c.UpdateResult("team/a", D(absl::StrCat("bounded-", i)),
                               SimpleResult(outputs.back(), ""))
                    .ok())
        << i;
    written += static_cast<int64_t>(outputs.back().size());
    most = std::max(most, tier_bytes());
  }
  ASSERT_GT(written, 2 * kBound);
  const int64_t now = tier_bytes();
  EXPECT_GE(now, 0) << blobs;
  EXPECT_LE(now, kBound);
  // One result and its blob may land before the pass that evicts.
  EXPECT_LE(most, kBound + 48 * 1024);
  // Every result is still a hit: evicted ones come back from the registry.
  for (int i = 0; i < kResults; ++i) {
    v2::ActionResult got;
    ASSERT_TRUE(c.GetResult("team/a", D(absl::StrCat("bounded-", i)), &got).ok()) << i;
    std::string data;
    ASSERT_TRUE(c.Read(ReadName("team/a", D(outputs[i])), 0, 0, &data).ok()) << i;
    EXPECT_EQ(data, outputs[i]) << i;
  }
}

TEST_F(ReapiTest, ASecondServerWithAnEmptyLocalTierSeesTheRegistry) {
  std::string repo;
  std::string data = Pattern(500000, 12);
  {
    auto first = Serve({});
    ASSERT_NE(first, nullptr);
    repo = last_config_.repo.substr(registry_->host().size() + 1);
    Client c(first->address());
    for (const char* inst : {"", "ci/x"}) {
      ASSERT_TRUE(c.Upload(inst, data).ok());
      ASSERT_TRUE(c.Upload(inst, "out").ok());
      ASSERT_TRUE(c.UpdateResult(inst, D("shared-action"), SimpleResult(data, "out")).ok());
    }
    first->Shutdown(absl::Seconds(1));
  }
  Setup setup;
  setup.repo = repo;  // a fresh directory, the same repository
  auto second = Serve(setup);
  ASSERT_NE(second, nullptr);
  Client c(second->address());
  for (const char* inst : {"", "ci/x"}) {
    v2::ActionResult got;
    ASSERT_TRUE(c.GetResult(inst, D("shared-action"), &got).ok()) << inst;
    EXPECT_EQ(got.output_files(0).digest().hash(), D(data).hash());
    std::string read;
    ASSERT_TRUE(c.Read(ReadName(inst, got.output_files(0).digest()), 0, 0, &read).ok());
    EXPECT_EQ(read, data);
  }
}

TEST_F(ReapiTest, LargeOutputsThatCompressAreStoredPackedInTheRegistry) {
  // A 3 MiB listing (compresses) and 3 MiB of random bytes (does not).
  std::string text;
  for (int i = 0; text.size() < (3u << 20); ++i) {
    absl::StrAppend(&text, absl::Hex(0x401000 + 7 * i), ":\tmovq %rax, sym_", i % 700, "\n");
  }
  text.resize(3 << 20);
  const std::string random = Pattern(3 << 20, 33);
  std::string repo;
  {
    auto first = Serve({});
    ASSERT_NE(first, nullptr);
    repo = last_config_.repo.substr(registry_->host().size() + 1);
    Client c(first->address());
    // The listing arrives in two streams (a resumed upload), the random bytes in one.
    std::string name = WriteName("", "resume-packed", D(text));
    int64_t committed = -1;
    ASSERT_TRUE(c.Write(name, text.substr(0, 1 << 20), 0, false, 1 << 18, &committed).ok());
    ASSERT_EQ(committed, 1 << 20);
    ASSERT_TRUE(c.Write(name, text.substr(1 << 20), 1 << 20, true, 1 << 18, &committed).ok());
    ASSERT_EQ(committed, static_cast<int64_t>(text.size()));
    ASSERT_TRUE(c.Upload("", random, 1 << 20).ok());
    ASSERT_TRUE(c.UpdateResult("", D("packed-action"), SimpleResult(text, random)).ok());
    first->Shutdown(absl::Seconds(1));
  }
  // The registry holds the random blob as it is, and not the listing's bytes.
  auto head = [&](const v2::Digest& d) {
    auto r = harness::HttpDo({.method = "HEAD",
                              .url = absl::StrCat(registry_->base_url(), "/v2/", repo,
                                                  "/blobs/sha256:", d.hash())});
    return r.ok() ? r->status : -1;
  };
  EXPECT_EQ(head(D(random)), 200);
  EXPECT_EQ(head(D(text)), 404);

  // A fresh server (empty local tier) answers the result and serves both, from
  // any offset and with limits; one that never saw the result finds the
  // listing through its mapping entry.
  for (bool via_result : {true, false}) {
    Setup setup;
    setup.repo = repo;
    auto srv = Serve(setup);
    ASSERT_NE(srv, nullptr);
    Client c(srv->address());
    if (via_result) {
      v2::ActionResult got;
      ASSERT_TRUE(c.GetResult("", D("packed-action"), &got).ok());
      EXPECT_EQ(got.output_files(0).digest().hash(), D(text).hash());
    } else {
      std::vector<std::string> missing;
      ASSERT_TRUE(c.FindMissing("", {D(text), D(random)}, &missing).ok());
      EXPECT_TRUE(missing.empty());
    }
    std::string got;
    ASSERT_TRUE(c.Read(ReadName("", D(text)), 0, 0, &got).ok()) << via_result;
    EXPECT_TRUE(got == text) << via_result;
    ASSERT_TRUE(c.Read(ReadName("", D(text)), 2000001, 0, &got).ok());
    EXPECT_EQ(got, text.substr(2000001));
    ASSERT_TRUE(c.Read(ReadName("", D(text)), 5, 10, &got).ok());
    EXPECT_EQ(got, text.substr(5, 10));
    ASSERT_TRUE(c.Read(ReadName("", D(random)), 0, 0, &got).ok());
    EXPECT_TRUE(got == random);
    srv->Shutdown(absl::Seconds(1));
  }
}

TEST_F(ReapiTest, AccessLogCarriesRequestMetadataAndMetricsCountHits) {
  absl::Mutex mu;
  std::vector<std::string> lines;
  Setup setup;
  setup.log = [&](absl::string_view line) {
    absl::MutexLock l(&mu);
    lines.emplace_back(line);
  };
  setup.metrics = true;
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  Client c(srv->address());
  v2::RequestMetadata md;
  md.mutable_tool_details()->set_tool_name("bazel");
  md.mutable_tool_details()->set_tool_version("4.2.3");
  md.set_tool_invocation_id("inv-42");
  md.set_action_mnemonic("CppCompile");
  md.set_target_id("//pkg:lib");
  md.set_action_id("action-id-1");
  c.metadata = md.SerializeAsString();

  ASSERT_TRUE(c.Upload("", "m").ok());
  ASSERT_TRUE(c.UpdateResult("", D("m-action"), SimpleResult("m", "")).ok());
  v2::ActionResult got;
  ASSERT_TRUE(c.GetResult("", D("m-action"), &got).ok());
  EXPECT_EQ(c.GetResult("", D("other"), &got).error_code(), StatusCode::NOT_FOUND);
  ASSERT_TRUE(c.GetResult("", D("m-action"), &got).ok());
  ASSERT_TRUE(c.UpdateResult("ci", D("m-action"), SimpleResult("", "")).ok());
  EXPECT_EQ(c.GetResult("ci", D("other"), &got).error_code(), StatusCode::NOT_FOUND);

  {
    absl::MutexLock l(&mu);
    int found = 0;
    for (const auto& line : lines) {
      if (absl::StrContains(line, "ActionCache/GetActionResult")) {
        ++found;
        EXPECT_TRUE(absl::StrContains(
            line, " tool=bazel/4.2.3 inv=inv-42 mnemonic=CppCompile target=//pkg:lib"))
            << line;
      }
    }
    EXPECT_EQ(found, 4);
  }
  auto reply = harness::HttpDo(
      {.url = absl::StrCat("http://127.0.0.1:", srv->metrics_port(), "/metrics")});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(absl::StrContains(reply->body,
                                "ocicached_reapi_action_cache_hits_total{instance=\"\"} 2\n"))
      << reply->body;
  EXPECT_TRUE(absl::StrContains(reply->body,
                                "ocicached_reapi_action_cache_misses_total{instance=\"\"} 1\n"));
  EXPECT_TRUE(absl::StrContains(
      reply->body, "ocicached_reapi_action_cache_hit_ratio{instance=\"\"} 0.666667\n"));
  EXPECT_TRUE(absl::StrContains(
      reply->body, "ocicached_reapi_action_cache_hit_ratio{instance=\"ci\"} 0.000000\n"));
}

}  // namespace
}  // namespace ocicache
