// TLS on the gRPC port with a test CA (test/harness/test_pki): LoadTlsConfig's
// checks, a GrpcStore over TLS, and the plaintext health-only port that
// Kubernetes' grpc probes use when the main port is TLS.
#include <cstdlib>
#include <fstream>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "api/grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "pkg/client/grpc_store.h"
#include "pkg/layout/layout_store.h"
#include "pkg/server/server.h"
#include "pkg/server/tls.h"
#include "test/harness/test_pki.h"

namespace ocicache::server {
namespace {

std::string TempDir() {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                  "/tls-XXXXXX");
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& data) {
  std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

TEST(TlsConfigTest, ChecksFilesAtStart) {
  auto pki = harness::MakeTestPki();
  ASSERT_TRUE(pki.ok()) << pki.status();
  auto other = harness::MakeTestPki();
  ASSERT_TRUE(other.ok());
  std::string dir = TempDir();
  std::string cert = WriteFile(dir, "cert.pem", pki->server_cert_pem);
  std::string key = WriteFile(dir, "key.pem", pki->server_key_pem);
  std::string wrong_key = WriteFile(dir, "wrong.pem", other->server_key_pem);
  std::string ca = WriteFile(dir, "ca.pem", pki->ca_cert_pem);
  std::string junk = WriteFile(dir, "junk.pem", "not a certificate");

  auto none = LoadTlsConfig("", "", "");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->cert_chain_pem.empty());
  auto tls = LoadTlsConfig(cert, key, "");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->cert_chain_pem, pki->server_cert_pem);
  EXPECT_TRUE(tls->client_ca_pem.empty());
  auto mtls = LoadTlsConfig(cert, key, ca);
  ASSERT_TRUE(mtls.ok()) << mtls.status();
  EXPECT_EQ(mtls->client_ca_pem, pki->ca_cert_pem);

  EXPECT_TRUE(absl::IsInvalidArgument(LoadTlsConfig(cert, "", "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LoadTlsConfig("", "", ca).status()));
  auto mismatch = LoadTlsConfig(cert, wrong_key, "");
  EXPECT_TRUE(absl::IsInvalidArgument(mismatch.status()));
  EXPECT_NE(mismatch.status().message().find("is not the key of the certificate"),
            std::string::npos)
      << mismatch.status();
  EXPECT_TRUE(absl::IsInvalidArgument(LoadTlsConfig(junk, key, "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LoadTlsConfig(cert, junk, "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LoadTlsConfig(cert, key, junk).status()));
  auto missing = LoadTlsConfig(dir + "/absent.pem", key, "");
  EXPECT_NE(missing.status().message().find("cannot read"), std::string::npos) << missing.status();
}

grpc::health::v1::HealthCheckResponse::ServingStatus Check(const std::string& address,
                                                           grpc::Status* status) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  *status = stub->Check(&ctx, req, &resp);
  return resp.status();
}

TEST(TlsServerTest, StoreOverTlsAndPlaintextHealthPort) {
  auto pki = harness::MakeTestPki();
  ASSERT_TRUE(pki.ok()) << pki.status();
  auto local = layout::LayoutStore::Open(TempDir());
  ASSERT_TRUE(local.ok());
  std::atomic<bool> healthy{true};
  stores::StoreSet set;
  set.store = *std::move(local);
  ServerOptions opts;
  opts.listen = "127.0.0.1:0";
  opts.health_listen = "127.0.0.1:0";
  opts.health_interval = absl::Milliseconds(50);
  opts.probe = [&]() -> absl::Status {
    return healthy ? absl::OkStatus() : absl::UnavailableError("down");
  };
  opts.tls.cert_chain_pem = pki->server_cert_pem;
  opts.tls.key_pem = pki->server_key_pem;
  auto s = CacheServer::Start(std::move(set), opts);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_GT((*s)->health_port(), 0);
  std::string health = absl::StrCat("127.0.0.1:", (*s)->health_port());

  // The store over TLS, trusting the test CA.
  client::DialOptions dial;
  dial.tls = true;
  dial.ca_pem = pki->ca_cert_pem;
  client::GrpcStoreOptions gopts;
  gopts.security = client::Security::kTls;
  gopts.timeout = absl::Seconds(20);
  client::GrpcStore store(client::Dial((*s)->address(), dial), "grpcs://" + (*s)->address(), gopts);
  std::string data = "bytes over TLS";
  oci::StringSource src(data);
  auto desc = store.WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
  ASSERT_TRUE(desc.ok()) << desc.status();
  cache::Entry e;
  e.key = "tls-key";
  e.blobs.push_back(*desc);
  ASSERT_TRUE(store.Put(e).ok());
  auto hit = store.Lookup("tls-key", cache::LookupOptions());
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_EQ(hit->blobs[0].digest, desc->digest);

  // Plaintext on the TLS port fails, with the explanation.
  client::GrpcStore plain(client::Dial((*s)->address()), (*s)->address());
  auto refused = plain.Lookup("tls-key", cache::LookupOptions());
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("grpcs://"), std::string::npos) << refused.status();

  // The health port answers in plaintext and follows the probe.
  grpc::Status st;
  EXPECT_EQ(Check(health, &st), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(st.ok()) << st.error_message();
  healthy = false;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Check(health, &st) != grpc::health::v1::HealthCheckResponse::NOT_SERVING &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Check(health, &st), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  // It serves nothing else.
  client::GrpcStore via_health(client::Dial(health), health);
  auto nothing = via_health.Lookup("tls-key", cache::LookupOptions());
  EXPECT_TRUE(absl::IsUnimplemented(nothing.status())) << nothing.status();
  (*s)->Shutdown(absl::ZeroDuration());
}

}  // namespace
}  // namespace ocicache::server
