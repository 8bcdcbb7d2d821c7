// Credentials given for one registry go to that registry only, and a server
// contacts other registries on a caller's behalf only when told it may.
//
// The cache's registry is a real docker-registry with htpasswd auth; "another
// host" is a fake registry on another loopback port that challenges every
// request for Basic credentials and records what it is sent.
#include <cstdlib>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/cache/format.h"
#include "pkg/stores/stores.h"
#include "pkg/client/grpc_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "test/harness/fake_http.h"
#include "test/harness/registry.h"
#include "test/integration/daemon_process.h"

namespace ocicache {
namespace {

using harness::FakeHttpServer;
using harness::FakeRequest;
using harness::FakeResponse;
using harness::RegistryProcess;
using testing::DaemonProcess;

std::unique_ptr<FakeHttpServer> ChallengingRegistry() {
  auto f = FakeHttpServer::Start([](const FakeRequest&) {
    return FakeResponse::Json(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"no"}]})")
        .WithHeader("WWW-Authenticate", R"(Basic realm="elsewhere")");
  });
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *std::move(f) : nullptr;
}

// Requests `f` saw that carried any Authorization header.
int WithAuthorization(const FakeHttpServer& f) {
  int n = 0;
  for (const FakeRequest& r : f.requests()) {
    if (!r.header("authorization").empty()) ++n;
  }
  return n;
}

class CredentialScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegistryProcess::Options o;
    o.auth = RegistryProcess::Options::kHtpasswd;
    auto r = RegistryProcess::Start(o);
    ASSERT_TRUE(r.ok()) << r.status();
    reg_ = *std::move(r);
    other_ = ChallengingRegistry();
    ASSERT_NE(other_, nullptr);
  }

  // A blob URL on the other host.
  std::string OtherBlobUrl(const oci::Digest& d) const {
    return cache::BlobUrl(other_->base_url(), "elsewhere/repo", d);
  }

  std::unique_ptr<RegistryProcess> reg_;
  std::unique_ptr<FakeHttpServer> other_;
};

// The CLI's path (stores::OpenStores with --username/--password): a mount from a
// location on another host asks that host anonymously, and its Basic challenge
// is not answered with the cache registry's password.
TEST_F(CredentialScopeTest, ExplicitCredentialsStayWithTheirRegistry) {
  stores::StoreConfig c;
  c.repo = reg_->host() + "/creds/cli";
  c.username = reg_->options().user;
  c.password = reg_->options().password;
  auto set = stores::OpenStores(c);
  ASSERT_TRUE(set.ok()) << set.status();
  // The credentials work where they belong.
  std::string data = "blob for the cache registry";
  oci::StringSource src(data);
  auto w = set->store->WriteBlob(oci::Digest::Of(data), data.size(), src);
  ASSERT_TRUE(w.ok()) << w.status();

  std::string other_data = "a blob that lives elsewhere";
  oci::Digest d = oci::Digest::Of(other_data);
  cache::Location loc{"application/octet-stream", d, static_cast<int64_t>(other_data.size()),
                      OtherBlobUrl(d)};
  absl::Status m = set->store->MountBlob(loc);
  EXPECT_FALSE(m.ok());
  EXPECT_GT(other_->request_count(), 0) << "the other host was never asked";
  EXPECT_EQ(WithAuthorization(*other_), 0) << "the cache registry's password went elsewhere";
}

class ServerCredentialScopeTest : public CredentialScopeTest {
 protected:
  void StartServer(std::vector<std::string> extra = {}) {
    ::setenv("OCICACHE_USERNAME", reg_->options().user.c_str(), 1);
    ::setenv("OCICACHE_PASSWORD", reg_->options().password.c_str(), 1);
    std::vector<std::string> args = {"--repo=" + reg_->host() + "/creds/server", "--no_dir"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = DaemonProcess::Start(args);
    ::unsetenv("OCICACHE_USERNAME");
    ::unsetenv("OCICACHE_PASSWORD");
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    auto channel = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
    blobs_ = v1::Blobs::NewStub(channel);
    store_ = std::make_unique<client::GrpcStore>(channel, daemon_->address());
  }

  grpc::Status Mount(const v1::MountRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::MountResponse resp;
    return blobs_->Mount(&ctx, req, &resp);
  }

  // A blob stored in the cache, and its location in the cache's repository.
  v1::Location StoredBlob(const std::string& data) {
    oci::StringSource src(data);
    auto w = store_->WriteBlob(oci::Digest::Of(data), data.size(), src);
    EXPECT_TRUE(w.ok()) << w.status();
    v1::Location l;
    l.set_digest(oci::Digest::Of(data).str());
    l.set_size(static_cast<int64_t>(data.size()));
    l.set_url(cache::BlobUrl("http://" + reg_->host(), "creds/server", oci::Digest::Of(data)));
    return l;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Blobs::Stub> blobs_;
  std::unique_ptr<client::GrpcStore> store_;
};

// By default a server contacts its own registry only: a mount into another
// host's repository, or from a location on another host, is PERMISSION_DENIED
// and that host hears nothing. A recorded location on another host does not
// stop a placement the cache can serve from its own copy.
TEST_F(ServerCredentialScopeTest, OnlyItsOwnRegistryByDefault) {
  StartServer();
  v1::Location here = StoredBlob("placed into another host");

  v1::MountRequest into_other;
  *into_other.mutable_from() = here;
  into_other.set_target_repository(other_->host() + "/elsewhere/target");
  grpc::Status s = Mount(into_other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_message().find("--allowed_registries"), std::string::npos)
      << s.error_message();

  std::string other_data = "only the other host has this";
  oci::Digest d = oci::Digest::Of(other_data);
  v1::MountRequest from_other;
  from_other.mutable_from()->set_digest(d.str());
  from_other.mutable_from()->set_size(static_cast<int64_t>(other_data.size()));
  from_other.mutable_from()->set_url(OtherBlobUrl(d));
  s = Mount(from_other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();

  // An entry whose recorded location names the other host, then a placement
  // of its blob by key into the cache's own registry: served from the cache.
  std::string data = "entry blob";
  v1::Location stored = StoredBlob(data);
  cache::Entry e;
  e.key = "with-foreign-location";
  e.blobs.push_back({"application/octet-stream", oci::Digest::Of(data),
                     static_cast<int64_t>(data.size())});
  e.locations.push_back({"application/octet-stream", oci::Digest::Of(data),
                         static_cast<int64_t>(data.size()), OtherBlobUrl(oci::Digest::Of(data))});
  ASSERT_TRUE(store_->Put(e).ok());
  v1::MountRequest by_key;
  *by_key.mutable_from() = stored;
  by_key.set_key(e.key);
  by_key.set_target_repository(reg_->host() + "/creds/target");
  s = Mount(by_key);
  EXPECT_TRUE(s.ok()) << s.error_message();

  EXPECT_EQ(other_->request_count(), 0) << "the server contacted a host it was not allowed to";
}

// --allowed_registries lets a server contact another host, anonymously or with
// that host's own docker credentials, never with the cache registry's.
TEST_F(ServerCredentialScopeTest, AllowedRegistriesGetNoForeignCredentials) {
  StartServer({"--allowed_registries=" + other_->host()});
  v1::Location here = StoredBlob("placed into an allowed host");
  v1::MountRequest into_other;
  *into_other.mutable_from() = here;
  into_other.set_target_repository(other_->host() + "/elsewhere/target");
  grpc::Status s = Mount(into_other);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_GT(other_->request_count(), 0);
  EXPECT_EQ(WithAuthorization(*other_), 0) << "the cache registry's password went elsewhere";
}

}  // namespace
}  // namespace ocicache
