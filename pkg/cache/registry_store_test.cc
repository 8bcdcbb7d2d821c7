// RegistryStore's error paths against a small in-memory registry (FakeHttpServer):
// behaviours the real docker-registry shows only now and then, made to happen
// every time. Everything else about RegistryStore is tested against the real
// registry (test/integration/store_integration_test.cc).
#include "pkg/cache/registry_store.h"

#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "pkg/oci/stream.h"
#include "test/harness/fake_http.h"

namespace ocicache::cache {
namespace {

using harness::FakeHttpServer;
using harness::FakeRequest;
using harness::FakeResponse;

// Blobs and manifests per repository; uploads are monolithic PUTs (what the
// client sends for a blob of known size). Cross-repository mounts are declined
// the way distribution declines them: 202 and an upload session.
class DecliningRegistry {
 public:
  FakeResponse Handle(const FakeRequest& r) {
    absl::MutexLock l(&mu_);
    const std::string path = r.path();
    if (path == "/v2/") return FakeResponse::Json(200, "{}");
    size_t b = path.find("/blobs/");
    size_t m = path.find("/manifests/");
    if (b != std::string::npos) {
      const std::string repo = path.substr(4, b - 4);
      const std::string rest = path.substr(b + 7);
      if (r.method == "POST" && absl::StartsWith(rest, "uploads")) {
        if (!r.query_value("mount").empty()) ++mounts_declined;
        const std::string id = absl::StrCat("u", ++next_upload_);
        open_uploads_[id] = repo;
        return FakeResponse::Text(202, "")
            .WithHeader("Location", absl::StrCat("/v2/", repo, "/blobs/uploads/", id))
            .WithHeader("Docker-Upload-UUID", id);
      }
      if (absl::StartsWith(rest, "uploads/")) {
        const std::string id = rest.substr(8);
        if (open_uploads_.erase(id) == 0) return FakeResponse::Json(404, "{}");
        if (r.method == "DELETE") return FakeResponse::Text(204, "");
        if (r.method != "PUT") return FakeResponse::Json(405, "{}");
        const std::string digest = r.query_value("digest");
        if (oci::Digest::Of(r.body).str() != digest) return FakeResponse::Json(400, "{}");
        blobs_[repo][digest] = r.body;
        return FakeResponse::Text(201, "").WithHeader("Docker-Content-Digest", digest);
      }
      auto it = blobs_[repo].find(rest);
      if (it == blobs_[repo].end()) return FakeResponse::Json(404, "{}");
      return FakeResponse::Text(200, it->second).WithHeader("Docker-Content-Digest", rest);
    }
    if (m != std::string::npos) {
      const std::string repo = path.substr(4, m - 4);
      const std::string ref = path.substr(m + 11);
      if (r.method == "PUT") {
        manifests_[repo][ref] = r.body;
        return FakeResponse::Text(201, "").WithHeader("Docker-Content-Digest",
                                                      oci::Digest::Of(r.body).str());
      }
      auto it = manifests_[repo].find(ref);
      if (it == manifests_[repo].end()) return FakeResponse::Json(404, "{}");
      FakeResponse ok = FakeResponse::Text(200, it->second);
      ok.headers.clear();
      ok.headers.emplace_back("Content-Type", "application/vnd.oci.image.manifest.v1+json");
      return ok;
    }
    return FakeResponse::Json(404, "{}");
  }

  bool Has(const std::string& repo, const oci::Digest& d) {
    absl::MutexLock l(&mu_);
    return blobs_[repo].count(d.str()) > 0;
  }
  int open_uploads() {
    absl::MutexLock l(&mu_);
    return static_cast<int>(open_uploads_.size());
  }
  int declined() {
    absl::MutexLock l(&mu_);
    return mounts_declined;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::map<std::string, std::string>> blobs_;
  std::map<std::string, std::map<std::string, std::string>> manifests_;
  std::map<std::string, std::string> open_uploads_;  // id -> repository
  int next_upload_ = 0;
  int mounts_declined = 0;
};

// A sharded store moves each blob from the base repository into the key's shard
// by a mount; a registry that declines the mount gets the blob copied instead,
// and the session its refusal opened is closed.
TEST(RegistryStoreTest, AShardTakesACopyWhenTheRegistryDeclinesTheMount) {
  DecliningRegistry fake;
  auto server = FakeHttpServer::Start([&](const FakeRequest& r) { return fake.Handle(r); });
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = registry::Client::Create((*server)->host());
  ASSERT_TRUE(client.ok()) << client.status();
  RegistryStoreOptions opts;
  opts.shards = 4;
  auto store = RegistryStore::Create(std::move(*client), "team/cache", opts);
  ASSERT_TRUE(store.ok()) << store.status();

  const std::string bytes(100000, 'x');
  oci::StringSource src(bytes);
  auto blob = (*store)->WriteBlob(oci::Digest::Of(bytes), bytes.size(), src);
  ASSERT_TRUE(blob.ok()) << blob.status();
  Entry e;
  e.key = "declined";
  e.config = R"({"k":"v"})";
  e.blobs.push_back(*blob);
  for (bool fresh : {false, true}) {
    absl::Status put = fresh ? (*store)->PutFresh(e) : (*store)->Put(e);
    ASSERT_TRUE(put.ok()) << put;
  }
  const std::string shard = (*store)->RepositoryForKey("declined");
  ASSERT_NE(shard, "team/cache");
  EXPECT_GE(fake.declined(), 1);
  EXPECT_TRUE(fake.Has(shard, blob->digest)) << "the blob was not copied into " << shard;
  EXPECT_EQ(fake.open_uploads(), 0) << "upload sessions left open";

  auto got = (*store)->Lookup("declined", LookupOptions{});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->blobs.size(), 1u);
  EXPECT_EQ(got->blobs[0].digest, blob->digest);
}

}  // namespace
}  // namespace ocicache::cache
