// The client over TLS against Debian's real docker-registry (distribution 2.8.2) on
// loopback, serving https with a certificate from a test CA (RegistryProcess
// Options.tls): force_tls + ca_file works for every protocol step and auth mode; an
// untrusted certificate, plain HTTP to the TLS port and TLS to a plain port all fail at
// once with a clear, final error.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"
#include "pkg/registry/client.h"
#include "test/harness/registry.h"
#include "test/harness/test_pki.h"

namespace ocicache::registry {
namespace {

using harness::RegistryProcess;
using Auth = RegistryProcess::Options::Auth;

// Failures must be final at the first attempt; a retry storm would take seconds.
constexpr absl::Duration kFailFast = absl::Seconds(3);

// TLS registries shared by the tests, one per auth mode, started on first use from
// the main thread (see registry.h on PR_SET_PDEATHSIG).
RegistryProcess* TlsRegistry(Auth auth) {
  static std::unique_ptr<RegistryProcess> regs[3];
  std::unique_ptr<RegistryProcess>& r = regs[auth];
  if (!r) {
    RegistryProcess::Options o;
    o.auth = auth;
    o.tls = true;
    absl::StatusOr<std::unique_ptr<RegistryProcess>> started = RegistryProcess::Start(o);
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    r = std::move(*started);
  }
  return r.get();
}

std::string AuthName(Auth a) {
  switch (a) {
    case RegistryProcess::Options::kNone: return "none";
    case RegistryProcess::Options::kHtpasswd: return "htpasswd";
    case RegistryProcess::Options::kToken: return "token";
  }
  return "?";
}

// `size` pseudo-random bytes (xorshift), rewindable.
class PatternSource : public oci::ByteSource {
 public:
  PatternSource(int64_t size, uint64_t seed) : size_(size), seed_(seed) { Rewind().IgnoreError(); }
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t k = static_cast<size_t>(std::min<int64_t>(n, size_ - pos_));
    for (size_t i = 0; i < k; ++i) {
      state_ ^= state_ << 13;
      state_ ^= state_ >> 7;
      state_ ^= state_ << 17;
      buf[i] = static_cast<char>(state_ >> 24);
    }
    pos_ += static_cast<int64_t>(k);
    return k;
  }
  absl::Status Rewind() override {
    pos_ = 0;
    state_ = seed_ * 2654435761u + 1;
    return absl::OkStatus();
  }

 private:
  const int64_t size_;
  const uint64_t seed_;
  int64_t pos_ = 0;
  uint64_t state_ = 0;
};

std::string PatternBytes(int64_t size, uint64_t seed) {
  std::string out(static_cast<size_t>(size), '\0');
  PatternSource src(size, seed);
  size_t got = *src.Read(out.data(), out.size());
  EXPECT_EQ(got, out.size());
  return out;
}

class ClientTlsTest : public ::testing::TestWithParam<Auth> {
 protected:
  void SetUp() override {
    reg_ = TlsRegistry(GetParam());
    ASSERT_NE(reg_, nullptr);
  }

  ClientOptions Options(bool force_tls, const std::string& ca_file,
                        const std::string& password) const {
    ClientOptions o;
    o.force_tls = force_tls;
    o.ca_file = ca_file;
    o.docker_config_dir = "/nonexistent";  // never the developer's own credentials
    // Generous retries: a failure that is wrongly judged temporary shows up as time
    // and requests.
    o.retry.max_attempts = 5;
    o.retry.initial_backoff = absl::Milliseconds(300);
    o.retry.max_backoff = absl::Seconds(2);
    o.connect_timeout = absl::Seconds(5);
    if (GetParam() != RegistryProcess::Options::kNone) {
      o.credentials.username = reg_->options().user;
      o.credentials.password = password;
    }
    return o;
  }

  std::unique_ptr<Client> NewClient(const ClientOptions& o) {
    absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(reg_->host(), o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  // force_tls with the test CA: the working configuration.
  std::unique_ptr<Client> TrustingClient() {
    return NewClient(Options(true, reg_->ca_file(), reg_->options().password));
  }

  std::string Repo(absl::string_view name) {
    static int n = 0;
    return absl::StrCat("tls-", AuthName(GetParam()), "/", name, "-", getpid(), "-", ++n);
  }

  RegistryProcess* reg_ = nullptr;
};

TEST_P(ClientTlsTest, BaseUrlIsHttpsWithForceTls) {
  EXPECT_EQ(reg_->base_url(), "https://" + reg_->host());
  std::unique_ptr<Client> c = TrustingClient();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->base_url(), "https://" + reg_->host());
  EXPECT_TRUE(c->Ping().ok());
}

TEST_P(ClientTlsTest, BlobsAndManifestsRoundTrip) {
  std::unique_ptr<Client> c = TrustingClient();
  ASSERT_NE(c, nullptr);
  const std::string repo = Repo("roundtrip");

  // A known-size streamed upload (3 MiB) and a chunked one of unknown size.
  const int64_t size = 3 * 1024 * 1024 + 17;
  const std::string big = PatternBytes(size, 7);
  const oci::Digest big_digest = oci::Digest::Of(big);
  PatternSource src(size, 7);
  absl::StatusOr<oci::Descriptor> d = c->PutBlob(repo, big_digest, size, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, big_digest);
  PatternSource unknown(size, 8);
  absl::StatusOr<oci::Descriptor> chunked = c->PutBlob(repo, oci::Digest(), -1, unknown);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->digest, oci::Digest::Of(PatternBytes(size, 8)));

  absl::StatusOr<int64_t> stat = c->StatBlob(repo, big_digest);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(*stat, size);
  std::string got;
  oci::StringSink sink(&got);
  absl::Status s = c->GetBlob(repo, big_digest, size, sink);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(got == big);
  std::string tail;
  oci::StringSink tail_sink(&tail);
  s = c->GetBlob(repo, big_digest, size, tail_sink, size - 1000);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(tail == big.substr(size - 1000));

  // A manifest over both blobs, by tag and by digest.
  oci::Manifest m;
  m.config.media_type = "application/vnd.ocicache.test.config.v1+json";
  m.config.digest = chunked->digest;
  m.config.size = chunked->size;
  oci::Descriptor layer;
  layer.media_type = "application/vnd.ocicache.test.layer.v1";
  layer.digest = big_digest;
  layer.size = size;
  m.layers.push_back(layer);
  const std::string bytes = m.Serialize();
  absl::StatusOr<oci::Digest> put = c->PutManifest(repo, "v1", bytes);
  ASSERT_TRUE(put.ok()) << put.status();
  absl::StatusOr<ManifestResponse> manifest = c->GetManifest(repo, "v1");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->bytes, bytes);
  EXPECT_EQ(manifest->digest, *put);
  absl::StatusOr<oci::Descriptor> head = c->HeadManifest(repo, put->str());
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->size, static_cast<int64_t>(bytes.size()));
  absl::StatusOr<std::vector<std::string>> tags = c->ListTags(repo);
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_EQ(*tags, std::vector<std::string>{"v1"});

  // Cross-repository mount over TLS.
  absl::StatusOr<bool> mounted = c->MountBlob(Repo("mounted"), big_digest, repo);
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_TRUE(*mounted);

  ASSERT_TRUE(c->DeleteManifest(repo, *put).ok());
  EXPECT_EQ(c->GetManifest(repo, "v1").status().code(), absl::StatusCode::kNotFound);
}

// No CA file: the test CA is not in the system store, so verification fails. The
// error says so, is final, and comes after one request.
TEST_P(ClientTlsTest, UntrustedCertificateFailsClearlyAndFast) {
  std::unique_ptr<Client> c = NewClient(Options(true, "", reg_->options().password));
  ASSERT_NE(c, nullptr);
  absl::Time start = absl::Now();
  absl::Status ping = c->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
  EXPECT_FALSE(IsTemporary(ping)) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "certificate")) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "TLS")) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "--ca-file")) << ping;
  EXPECT_FALSE(absl::StrContains(ping.message(), "\n")) << ping;
  EXPECT_EQ(c->request_count(), 1);

  // Every operation fails the same way, uploads included (no restarted sessions).
  absl::StatusOr<int64_t> stat = c->StatBlob(Repo("untrusted"), oci::Digest::Of("x"));
  EXPECT_EQ(stat.status().code(), absl::StatusCode::kUnavailable) << stat.status();
  EXPECT_TRUE(absl::StrContains(stat.status().message(), "certificate")) << stat.status();
  PatternSource src(100000, 1);
  absl::StatusOr<oci::Descriptor> up = c->PutBlob(Repo("untrusted"), oci::Digest(), 100000, src);
  EXPECT_EQ(up.status().code(), absl::StatusCode::kUnavailable) << up.status();
  EXPECT_LE(c->request_count(), 3);
  EXPECT_LT(absl::Now() - start, kFailFast);
}

// A CA that did not sign the server's certificate is no better than none.
TEST_P(ClientTlsTest, WrongCaIsRejected) {
  absl::StatusOr<harness::TestPki> other = harness::MakeTestPki();
  ASSERT_TRUE(other.ok()) << other.status();
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string path =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/other-ca-", getpid(), "-", AuthName(GetParam()), ".pem");
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(other->ca_cert_pem.c_str(), f);
  std::fclose(f);

  std::unique_ptr<Client> c = NewClient(Options(true, path, reg_->options().password));
  ASSERT_NE(c, nullptr);
  absl::Time start = absl::Now();
  absl::Status ping = c->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
  EXPECT_FALSE(IsTemporary(ping)) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "certificate")) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), path)) << ping;
  EXPECT_EQ(c->request_count(), 1);
  EXPECT_LT(absl::Now() - start, kFailFast);
  std::remove(path.c_str());
}

// Loopback defaults to plain HTTP: the TLS port answers 400, which must not read as
// a bad request nor be retried.
TEST_P(ClientTlsTest, PlainHttpToTlsPortFailsClearly) {
  std::unique_ptr<Client> c = NewClient(Options(false, "", reg_->options().password));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->base_url(), "http://" + reg_->host());
  absl::Time start = absl::Now();
  absl::Status ping = c->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
  EXPECT_FALSE(IsTemporary(ping)) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "HTTPS")) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "--tls")) << ping;
  absl::StatusOr<ManifestResponse> m = c->GetManifest(Repo("plain"), "v1");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnavailable) << m.status();
  EXPECT_LE(c->request_count(), 3);
  EXPECT_LT(absl::Now() - start, kFailFast);
}

INSTANTIATE_TEST_SUITE_P(Auth, ClientTlsTest,
                         ::testing::Values(RegistryProcess::Options::kNone,
                                           RegistryProcess::Options::kHtpasswd,
                                           RegistryProcess::Options::kToken),
                         [](const ::testing::TestParamInfo<Auth>& i) { return AuthName(i.param); });

// Credentials over TLS: right ones work (above); wrong ones are Unauthenticated.
class ClientTlsAuthTest : public ClientTlsTest {};

TEST_P(ClientTlsAuthTest, WrongPasswordIsUnauthenticated) {
  std::unique_ptr<Client> c = NewClient(Options(true, reg_->ca_file(), "not-the-password"));
  ASSERT_NE(c, nullptr);
  absl::Status ping = c->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnauthenticated) << ping;
  EXPECT_FALSE(absl::StrContains(ping.message(), "not-the-password")) << ping;
  EXPECT_TRUE(TrustingClient()->Ping().ok());
}

INSTANTIATE_TEST_SUITE_P(Auth, ClientTlsAuthTest,
                         ::testing::Values(RegistryProcess::Options::kHtpasswd,
                                           RegistryProcess::Options::kToken),
                         [](const ::testing::TestParamInfo<Auth>& i) { return AuthName(i.param); });

// force_tls against a plain HTTP registry: the handshake fails once, clearly.
TEST(ClientTlsPlainRegistryTest, TlsToPlainPortFailsClearly) {
  absl::StatusOr<std::unique_ptr<RegistryProcess>> reg = RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  ClientOptions o;
  o.force_tls = true;
  o.docker_config_dir = "/nonexistent";
  o.retry.initial_backoff = absl::Milliseconds(300);
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create((*reg)->host(), o);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::Time start = absl::Now();
  absl::Status ping = (*c)->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
  EXPECT_FALSE(IsTemporary(ping)) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "TLS")) << ping;
  EXPECT_EQ((*c)->request_count(), 1);
  EXPECT_LT(absl::Now() - start, kFailFast);
}

}  // namespace
}  // namespace ocicache::registry
