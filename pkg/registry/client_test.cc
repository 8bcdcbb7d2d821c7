// Client behaviour against a programmable fake registry: retries, Retry-After,
// error messages, digest checks, resumed downloads, upload protocols, auth.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pkg/registry/client.h"
#include "pkg/base/call_scope.h"
#include "test/harness/fake_http.h"

namespace ocicache::registry {
namespace {

using harness::FakeHttpServer;
using harness::FakeRequest;
using harness::FakeResponse;

constexpr char kManifest[] =
    R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}})";

std::string Blob() {
  std::string b;
  for (int i = 0; i < 20000; ++i) b += static_cast<char>('a' + i % 26);
  return b;
}

// A response with exactly these headers (FakeResponse::Text/Json add a Content-Type).
FakeResponse Resp(int status, std::string body,
                  std::vector<std::pair<std::string, std::string>> headers = {}) {
  FakeResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

ClientOptions FastRetries(int attempts = 5) {
  ClientOptions o;
  o.retry.max_attempts = attempts;
  o.retry.initial_backoff = absl::Milliseconds(1);
  o.retry.max_backoff = absl::Milliseconds(5);
  o.stall_timeout = absl::Seconds(5);
  o.connect_timeout = absl::Seconds(2);
  o.docker_config_dir = "/nonexistent";  // never the developer's own credentials
  return o;
}

// A fake registry: GET /v2/ answers 200 (anonymous); everything else goes to `route`.
// Requests other than /v2/ are counted per path.
class ClientTest : public ::testing::Test {
 protected:
  void Serve(std::function<FakeResponse(const FakeRequest&)> route) {
    auto s = FakeHttpServer::Start([route](const FakeRequest& r) {
      if (r.path() == "/v2/") return FakeResponse::Json(200, "{}");
      return route(r);
    });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  std::unique_ptr<Client> NewClient(ClientOptions o = FastRetries()) {
    auto c = Client::Create(server_->host(), std::move(o));
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }
  int Count(absl::string_view method, absl::string_view path_prefix) {
    int n = 0;
    for (const FakeRequest& r : server_->requests()) {
      if (r.method == method && absl::StartsWith(r.path(), path_prefix)) ++n;
    }
    return n;
  }
  std::vector<FakeRequest> Requests(absl::string_view method) {
    std::vector<FakeRequest> out;
    for (FakeRequest& r : server_->requests()) {
      if (r.method == method) out.push_back(std::move(r));
    }
    return out;
  }

  std::unique_ptr<FakeHttpServer> server_;
};

TEST_F(ClientTest, BaseUrlIsHttpForLoopbackOnly) {
  auto c = Client::Create("127.0.0.1:5000");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->base_url(), "http://127.0.0.1:5000");
  c = Client::Create("localhost:5000");
  EXPECT_EQ((*c)->base_url(), "http://localhost:5000");
  c = Client::Create("[::1]:5000");
  EXPECT_EQ((*c)->base_url(), "http://[::1]:5000");
  c = Client::Create("ghcr.io");
  EXPECT_EQ((*c)->base_url(), "https://ghcr.io");
  ClientOptions tls;
  tls.force_tls = true;
  c = Client::Create("127.0.0.1:5000", tls);
  EXPECT_EQ((*c)->base_url(), "https://127.0.0.1:5000");
  ClientOptions plain;
  plain.insecure_http = true;
  c = Client::Create("reg.internal:5000", plain);
  EXPECT_EQ((*c)->base_url(), "http://reg.internal:5000");
  EXPECT_EQ(Client::Create("http://x.io").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Create("x.io/repo").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, TlsOptionsAreChecked) {
  ClientOptions both;
  both.insecure_http = true;
  both.force_tls = true;
  EXPECT_EQ(Client::Create("127.0.0.1:5000", both).status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions missing_ca;
  missing_ca.ca_file = "/nonexistent/ca.pem";
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create("reg.example:5000", missing_ca);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(c.status().message(), "/nonexistent/ca.pem")) << c.status();
}

// A TLS server answers plain HTTP with 400 and a text body (Go's net/http, nginx):
// a clear, final error, not InvalidArgument and not retried.
TEST_F(ClientTest, PlainHttpToTlsPortIsClearAndNotRetried) {
  for (const char* body : {"Client sent an HTTP request to an HTTPS server.\n",
                           "<html><head><title>400 The plain HTTP request was sent to HTTPS "
                           "port</title></head></html>"}) {
    auto s = FakeHttpServer::Start(
        [body](const FakeRequest&) { return FakeResponse::Text(400, body); });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto c = NewClient();
    absl::Status ping = c->Ping();
    EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
    EXPECT_FALSE(IsTemporary(ping));
    EXPECT_TRUE(absl::StrContains(ping.message(), "speaks HTTPS")) << ping;
    EXPECT_TRUE(absl::StrContains(ping.message(), "--tls")) << ping;
    EXPECT_EQ(c->request_count(), 1);
    // A HEAD's 400 has no body to tell: one GET /v2/ finds out.
    absl::StatusOr<int64_t> stat = c->StatBlob("cache/x", oci::Digest::Of("x"));
    EXPECT_EQ(stat.status().code(), absl::StatusCode::kUnavailable) << stat.status();
    EXPECT_LE(c->request_count(), 3);

    ClientOptions insecure = FastRetries();
    insecure.insecure_http = true;
    absl::Status ping2 = NewClient(insecure)->Ping();
    EXPECT_TRUE(absl::StrContains(ping2.message(), "drop --insecure")) << ping2;
  }
}

// force_tls against a plain HTTP server: the handshake fails at once, not retried.
TEST_F(ClientTest, TlsToPlainHttpServerIsClearAndNotRetried) {
  Serve([](const FakeRequest&) { return FakeResponse::Text(404, "no"); });
  ClientOptions o = FastRetries();
  o.force_tls = true;
  auto c = NewClient(o);
  absl::Status ping = c->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
  EXPECT_FALSE(IsTemporary(ping)) << ping;
  EXPECT_TRUE(absl::StrContains(ping.message(), "TLS")) << ping;
  EXPECT_EQ(c->request_count(), 1);
}

TEST_F(ClientTest, ServerErrorIsRetried) {
  std::atomic<int> n{0};
  Serve([&](const FakeRequest&) {
    if (n++ == 0) return FakeResponse::Text(500, "oops");
    return Resp(200, kManifest, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}});
  });
  auto c = NewClient();
  absl::StatusOr<ManifestResponse> m = c->GetManifest("cache/x", "tag");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->bytes, kManifest);
  EXPECT_EQ(m->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(m->digest, oci::Digest::Of(kManifest));
  EXPECT_EQ(Count("GET", "/v2/cache/x/manifests/tag"), 2);
  EXPECT_EQ(c->request_count(), 2);  // both tries; no GET /v2/ first
  // The Accept header names OCI and Docker manifest and index types.
  std::string accept = Requests("GET").back().header("accept");
  for (const char* t : {"application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"}) {
    EXPECT_TRUE(absl::StrContains(accept, t)) << accept;
  }
}

// A keep-alive connection the registry drops just as a PUT reuses it: curl
// sends the request again on a new connection (the body rewound), with no
// retry of ours needed.
TEST_F(ClientTest, APutOnAConnectionTheRegistryDroppedIsSentAgain) {
  std::atomic<int> puts{0};
  const std::string digest = oci::Digest::Of(kManifest).str();
  Serve([&](const FakeRequest& r) {
    if (r.method == "PUT" && ++puts == 2) return FakeResponse::CloseWithoutResponse();
    return Resp(201, "", {{"Docker-Content-Digest", digest}});
  });
  auto c = NewClient(FastRetries(/*attempts=*/1));
  for (const char* tag : {"one", "two"}) {
    auto d = c->PutManifest("cache/x", tag, kManifest, "application/vnd.oci.image.manifest.v1+json");
    ASSERT_TRUE(d.ok()) << tag << ": " << d.status();
  }
  std::vector<FakeRequest> sent = Requests("PUT");
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[1].body, kManifest);  // the one dropped
  EXPECT_EQ(sent[2].body, kManifest);  // sent again, whole
  EXPECT_EQ(sent[2].path(), "/v2/cache/x/manifests/two");
}

TEST_F(ClientTest, RetryAfterIsHonoured) {
  std::atomic<int> n{0};
  Serve([&](const FakeRequest&) {
    if (n++ == 0) return FakeResponse::Text(429, "slow down").WithHeader("Retry-After", "1");
    return FakeResponse::Json(200, kManifest);
  });
  auto c = NewClient();
  absl::Time start = absl::Now();
  absl::StatusOr<ManifestResponse> m = c->GetManifest("cache/x", "tag");
  absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GE(took, absl::Milliseconds(950));  // backoff alone would be <= 5 ms
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(ClientTest, RetryAfterIsCapped) {
  Serve([&](const FakeRequest&) {
    return FakeResponse::Text(429, "Too Many Requests").WithHeader("Retry-After", "3600");
  });
  ClientOptions o = FastRetries(3);
  o.retry.max_retry_after = absl::Milliseconds(200);
  auto c = NewClient(o);
  absl::Time start = absl::Now();
  absl::StatusOr<ManifestResponse> m = c->GetManifest("cache/x", "tag");
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted) << m.status();
  EXPECT_TRUE(IsTemporary(m.status()));
  EXPECT_GE(took, absl::Milliseconds(390));  // two capped waits
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_EQ(Count("GET", "/v2/cache/x/manifests/"), 3);
}

TEST_F(ClientTest, UnavailableForeverGivesUp) {
  Serve([](const FakeRequest&) {
    return FakeResponse::Json(
        503, R"({"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]})");
  });
  auto c = NewClient(FastRetries(4));
  absl::StatusOr<int64_t> s = c->StatBlob("cache/x", oci::Digest::Of("x"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_TRUE(IsTemporary(s.status()));
  EXPECT_EQ(Count("HEAD", "/v2/cache/x/blobs/"), 4);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "503")) << s.status();
  EXPECT_TRUE(absl::StrContains(s.status().message(), "after 4 attempts")) << s.status();
}

TEST_F(ClientTest, PlainTextNotFound) {
  Serve([](const FakeRequest&) { return FakeResponse::Text(404, "404 page not found\n"); });
  auto c = NewClient();
  absl::StatusOr<ManifestResponse> m = c->GetManifest("cache/x", "tag");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RegistryErrorCode(m.status()), "");
  EXPECT_FALSE(IsTemporary(m.status()));
  EXPECT_EQ(m.status().message(), absl::StrCat("registry ", server_->host(),
                                               ": GET manifest cache/x:tag: 404 Not Found: "
                                               "404 page not found"));
  EXPECT_EQ(Count("GET", "/v2/cache/x/manifests/"), 1);  // not retried
}

TEST_F(ClientTest, JsonErrorCarriesRegistryCode) {
  Serve([](const FakeRequest&) {
    return FakeResponse::Json(
        404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":null}]})");
  });
  auto c = NewClient();
  absl::StatusOr<ManifestResponse> m = c->GetManifest("cache/x", "tag");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RegistryErrorCode(m.status()), "MANIFEST_UNKNOWN");
  EXPECT_EQ(m.status().message(),
            absl::StrCat("registry ", server_->host(),
                         ": GET manifest cache/x:tag: 404 MANIFEST_UNKNOWN: manifest unknown"));
}

TEST_F(ClientTest, RefusedPortIsUnavailable) {
  // A port that was free a moment ago: nothing listens there.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  int port = ntohs(a.sin_port);
  close(fd);

  auto c = Client::Create(absl::StrCat("127.0.0.1:", port), FastRetries(3));
  ASSERT_TRUE(c.ok());
  absl::Status s = (*c)->Ping();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(IsTemporary(s));
  EXPECT_EQ((*c)->request_count(), 3);  // every attempt, then no more
  EXPECT_TRUE(absl::StartsWith(s.message(), absl::StrCat("registry 127.0.0.1:", port, ": ")))
      << s;
}

TEST_F(ClientTest, BlobDigestMismatchIsDataLoss) {
  const std::string blob = Blob();
  Serve([&](const FakeRequest&) { return FakeResponse::Text(200, blob + "X"); });
  auto c = NewClient();
  std::string got;
  oci::StringSink sink(&got);
  // Wrong content, size unknown: the digest catches it.
  absl::Status s = c->GetBlob("cache/x", oci::Digest::Of(blob), -1, sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_FALSE(IsTemporary(s));
  // Size known: caught before the body (Content-Length) or by the size.
  got.clear();
  s = c->GetBlob("cache/x", oci::Digest::Of(blob), static_cast<int64_t>(blob.size()), sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(Count("GET", "/v2/cache/x/blobs/"), 2);  // DataLoss is not retried
}

// A sink that checks every byte itself (gocacheprog's pack splitter) is not
// hashed for again: the whole-blob digest is left to it.
TEST_F(ClientTest, SelfCheckingSinkIsNotHashedAgain) {
  const std::string blob = Blob();
  Serve([&](const FakeRequest&) { return FakeResponse::Text(200, blob + "X"); });
  auto c = NewClient();
  struct SelfChecking : oci::StringSink {
    using oci::StringSink::StringSink;
    bool ChecksEveryByte() const override { return true; }
  };
  std::string got;
  SelfChecking sink(&got);
  absl::Status s = c->GetBlob("cache/x", oci::Digest::Of(blob), -1, sink);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(got, blob + "X");
  // Its size is still checked.
  got.clear();
  s = c->GetBlob("cache/x", oci::Digest::Of(blob), static_cast<int64_t>(blob.size()), sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST_F(ClientTest, InterruptedBlobResumesWithRange) {
  const std::string blob = Blob();
  std::atomic<int> n{0};
  Serve([&](const FakeRequest& r) {
    if (n++ == 0) {
      FakeResponse cut = FakeResponse::Text(200, blob);
      cut.body_bytes_to_send = 7000;  // then the connection drops
      return cut;
    }
    const std::string header = r.header("range");
    absl::string_view range = header;
    int64_t from = 0;
    if (!absl::ConsumePrefix(&range, "bytes=") || !absl::ConsumeSuffix(&range, "-") ||
        !absl::SimpleAtoi(range, &from)) {
      return FakeResponse::Text(400, "want a Range");
    }
    return FakeResponse::Text(206, blob.substr(from))
        .WithHeader("Content-Range", absl::StrCat("bytes ", from, "-", blob.size() - 1, "/",
                                                  blob.size()));
  });
  auto c = NewClient();
  std::string got;
  oci::StringSink sink(&got);
  absl::Status s = c->GetBlob("cache/x", oci::Digest::Of(blob), blob.size(), sink);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(got, blob);
  std::vector<FakeRequest> gets = Requests("GET");
  ASSERT_EQ(gets.size(), 2u);  // cut, resumed (no GET /v2/ first)
  EXPECT_EQ(gets[0].header("range"), "");
  EXPECT_EQ(gets[1].header("range"), "bytes=7000-");
}

TEST_F(ClientTest, AlwaysInterruptedBlobIsACleanError) {
  const std::string blob = Blob();
  Serve([&](const FakeRequest& r) {
    FakeResponse cut = FakeResponse::Text(r.header("range").empty() ? 200 : 206, "");
    cut.body = blob;  // announced in full, never delivered
    cut.body_bytes_to_send = 0;
    return cut;
  });
  auto c = NewClient(FastRetries(3));
  std::string got;
  oci::StringSink sink(&got);
  absl::Status s = c->GetBlob("cache/x", oci::Digest::Of(blob), blob.size(), sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(IsTemporary(s));
  EXPECT_TRUE(absl::StrContains(s.message(), "after 3 attempts")) << s;
  EXPECT_EQ(got, "");
  EXPECT_EQ(Count("GET", "/v2/cache/x/blobs/"), 3);
}

TEST_F(ClientTest, InterruptedBlobWhenRangeIsIgnored) {
  const std::string blob = Blob();
  std::atomic<int> n{0};
  Serve([&](const FakeRequest&) {
    FakeResponse r = FakeResponse::Text(200, blob);
    if (n++ == 0) r.body_bytes_to_send = 5000;
    return r;
  });
  auto c = NewClient();
  std::string got;
  oci::StringSink sink(&got);
  absl::Status s = c->GetBlob("cache/x", oci::Digest::Of(blob), -1, sink);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(got, blob);  // the first 5000 bytes were not delivered twice
}

TEST_F(ClientTest, GetBlobFromOffset) {
  const std::string blob = Blob();
  Serve([&](const FakeRequest& r) {
    EXPECT_EQ(r.header("range"), "bytes=100-");
    return FakeResponse::Text(206, blob.substr(100))
        .WithHeader("Content-Range", absl::StrCat("bytes 100-", blob.size() - 1, "/*"));
  });
  auto c = NewClient();
  std::string got;
  oci::StringSink sink(&got);
  ASSERT_TRUE(c->GetBlob("cache/x", oci::Digest::Of(blob), blob.size(), sink, 100).ok());
  EXPECT_EQ(got, blob.substr(100));
}

TEST_F(ClientTest, SinkErrorStopsTheTransfer) {
  const std::string blob = Blob();
  Serve([&](const FakeRequest&) { return FakeResponse::Text(200, blob); });
  auto c = NewClient();
  struct FailingSink : oci::ByteSink {
    absl::Status Write(absl::string_view) override { return absl::InternalError("disk full"); }
  } sink;
  absl::Status s = c->GetBlob("cache/x", oci::Digest::Of(blob), blob.size(), sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "disk full"));
  EXPECT_EQ(Count("GET", "/v2/cache/x/blobs/"), 1);
}

TEST_F(ClientTest, ManifestDigestHeaderMismatchIsDataLoss) {
  Serve([](const FakeRequest&) {
    return FakeResponse::Json(200, kManifest)
        .WithHeader("Docker-Content-Digest", oci::Digest::Of("other").str());
  });
  auto c = NewClient();
  EXPECT_EQ(c->GetManifest("cache/x", "tag").status().code(), absl::StatusCode::kDataLoss);
  // Asking by digest checks the body against it too.
  EXPECT_EQ(c->GetManifest("cache/x", oci::Digest::Of("other").str()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(ClientTest, PutManifestSendsExactContentType) {
  Serve([](const FakeRequest& r) {
    return FakeResponse::Text(201, "")
        .WithHeader("Docker-Content-Digest", oci::Digest::Of(r.body).str());
  });
  auto c = NewClient();
  absl::StatusOr<oci::Digest> d = c->PutManifest("cache/x", "v1", kManifest);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, oci::Digest::Of(kManifest));
  std::vector<FakeRequest> puts = Requests("PUT");
  ASSERT_EQ(puts.size(), 1u);
  EXPECT_EQ(puts[0].path(), "/v2/cache/x/manifests/v1");
  EXPECT_EQ(puts[0].header("content-type"), "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(puts[0].header("expect"), "");
  EXPECT_EQ(puts[0].body, kManifest);
  // A digest reference must be the body's digest; a bad tag is refused locally.
  EXPECT_EQ(c->PutManifest("cache/x", oci::Digest::Of("x").str(), kManifest).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->PutManifest("cache/x", "-bad", kManifest).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->PutManifest("Cache/X", "v1", kManifest).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Requests("PUT").size(), 1u);
}

TEST_F(ClientTest, HeadManifest) {
  Serve([](const FakeRequest& r) {
    EXPECT_EQ(r.method, "HEAD");
    return Resp(200, kManifest,
                {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"},
                 {"Docker-Content-Digest", oci::Digest::Of(kManifest).str()}});
  });
  auto c = NewClient();
  absl::StatusOr<oci::Descriptor> d = c->HeadManifest("cache/x", "tag");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, oci::Digest::Of(kManifest));
  EXPECT_EQ(d->size, static_cast<int64_t>(std::string(kManifest).size()));
  EXPECT_EQ(d->media_type, "application/vnd.oci.image.manifest.v1+json");
}

// A fake upload endpoint: every Location is new and the previous one stops working,
// as with distribution's _state parameter. Relative or absolute Locations.
class UploadTest : public ClientTest {
 protected:
  void ServeUploads(bool absolute) {
    Serve([this, absolute](const FakeRequest& r) -> FakeResponse {
      absl::MutexLock l(&mu_);
      auto location = [&] {
        std::string loc = absl::StrCat("/v2/cache/x/blobs/uploads/u1?_state=", ++state_);
        return absolute ? absl::StrCat(server_->base_url(), loc) : loc;
      };
      if (r.method == "POST") return FakeResponse::Text(202, "").WithHeader("Location", location());
      if (r.query_value("_state") != absl::StrCat(state_)) {
        return FakeResponse::Json(404, R"({"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown"}]})");
      }
      if (r.method == "PATCH") {
        data_ += r.body;
        return FakeResponse::Text(202, "").WithHeader("Location", location());
      }
      if (r.method == "PUT") {
        data_ += r.body;
        if (oci::Digest::Of(data_).str() != r.query_value("digest")) {
          return FakeResponse::Json(400, R"({"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]})");
        }
        committed_ = data_;
        return FakeResponse::Text(201, "").WithHeader("Docker-Content-Digest",
                                                      oci::Digest::Of(data_).str());
      }
      if (r.method == "DELETE") {
        cancelled_ = true;
        return FakeResponse::Text(204, "");
      }
      return FakeResponse::Text(405, "");
    });
  }

  absl::Mutex mu_;
  int state_ = 0;
  std::string data_, committed_;
  bool cancelled_ = false;
};

TEST_F(UploadTest, KnownSizeIsOneStreamedPut) {
  ServeUploads(/*absolute=*/false);
  auto c = NewClient();
  const std::string blob = Blob();
  oci::StringSource src(blob);
  absl::StatusOr<oci::Descriptor> d = c->PutBlob("cache/x", oci::Digest::Of(blob), blob.size(), src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, oci::Digest::Of(blob));
  EXPECT_EQ(d->size, static_cast<int64_t>(blob.size()));
  EXPECT_EQ(committed_, blob);
  std::vector<FakeRequest> posts = Requests("POST"), puts = Requests("PUT");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].body, "");  // distribution drops a body here
  ASSERT_EQ(puts.size(), 1u);
  EXPECT_FALSE(puts[0].chunked);
  EXPECT_EQ(puts[0].header("content-length"), absl::StrCat(blob.size()));
  EXPECT_EQ(puts[0].header("expect"), "");
  EXPECT_EQ(puts[0].query_value("digest"), oci::Digest::Of(blob).str());
  EXPECT_EQ(puts[0].query_value("_state"), "1");  // appended to the Location's query
  EXPECT_EQ(Requests("PATCH").size(), 0u);
}

TEST_F(UploadTest, UnknownSizeIsChunked) {
  ServeUploads(/*absolute=*/true);
  ClientOptions o = FastRetries();
  o.chunk_size = 8000;
  auto c = NewClient(o);
  const std::string blob = Blob();  // 20000 bytes: 8000 + 8000 + 4000
  oci::StringSource src(blob);
  absl::StatusOr<oci::Descriptor> d = c->PutBlob("cache/x", oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, oci::Digest::Of(blob));
  EXPECT_EQ(d->size, 20000);
  EXPECT_EQ(committed_, blob);
  std::vector<FakeRequest> patches = Requests("PATCH");
  ASSERT_EQ(patches.size(), 2u);
  EXPECT_EQ(patches[0].body.size(), 8000u);
  EXPECT_EQ(patches[0].header("content-range"), "0-7999");
  EXPECT_EQ(patches[1].header("content-range"), "8000-15999");
  std::vector<FakeRequest> puts = Requests("PUT");
  ASSERT_EQ(puts.size(), 1u);
  EXPECT_EQ(puts[0].body.size(), 4000u);  // the last piece rides on the PUT
  EXPECT_FALSE(cancelled_);
}

TEST_F(UploadTest, ExpectedDigestMismatchCancels) {
  ServeUploads(/*absolute=*/false);
  ClientOptions o = FastRetries();
  o.chunk_size = 8000;
  auto c = NewClient(o);
  const std::string blob = Blob();
  oci::StringSource src(blob);
  absl::StatusOr<oci::Descriptor> d = c->PutBlob("cache/x", oci::Digest::Of("other"), -1, src);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_TRUE(cancelled_);
  EXPECT_EQ(Requests("PUT").size(), 0u);
  EXPECT_EQ(committed_, "");
}

TEST_F(UploadTest, KnownSizeWrongContentIsRejected) {
  ServeUploads(/*absolute=*/false);
  auto c = NewClient();
  const std::string blob = Blob();
  oci::StringSource src(blob);
  absl::StatusOr<oci::Descriptor> d =
      c->PutBlob("cache/x", oci::Digest::Of("other"), blob.size(), src);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(RegistryErrorCode(d.status()), "DIGEST_INVALID");
  EXPECT_EQ(committed_, "");
}

TEST_F(UploadTest, ShortSourceIsInvalidArgument) {
  ServeUploads(/*absolute=*/false);
  auto c = NewClient();
  const std::string blob = Blob();
  oci::StringSource src(blob);
  absl::StatusOr<oci::Descriptor> d =
      c->PutBlob("cache/x", oci::Digest::Of(blob), blob.size() + 10, src);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(committed_, "");
}

TEST_F(UploadTest, FailedPutIsRetriedFromTheStartWhenRewindable) {
  std::atomic<int> puts{0};
  const std::string blob = Blob();
  Serve([&](const FakeRequest& r) {
    if (r.method == "POST") {
      return FakeResponse::Text(202, "").WithHeader("Location", "/v2/cache/x/blobs/uploads/u?_state=s");
    }
    if (r.method == "PUT") {
      if (puts++ == 0) return FakeResponse::Text(503, "try later");
      EXPECT_EQ(r.body, blob);
      return FakeResponse::Text(201, "");
    }
    return FakeResponse::Text(204, "");  // DELETE of the failed session
  });
  auto c = NewClient();
  oci::StringSource src(blob);
  absl::StatusOr<oci::Descriptor> d = c->PutBlob("cache/x", oci::Digest::Of(blob), blob.size(), src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(puts.load(), 2);
  EXPECT_EQ(Requests("POST").size(), 2u);  // a new session for the retry
}

TEST_F(ClientTest, NonRewindableSourceIsNotRetried) {
  std::atomic<int> puts{0};
  Serve([&](const FakeRequest& r) {
    if (r.method == "POST") {
      return FakeResponse::Text(202, "").WithHeader("Location", "/v2/cache/x/blobs/uploads/u?_state=s");
    }
    if (r.method == "PUT") ++puts;
    return FakeResponse::Text(503, "try later");
  });
  auto c = NewClient();
  struct Pipe : oci::ByteSource {
    oci::StringSource inner{"pipe data"};
    absl::StatusOr<size_t> Read(char* buf, size_t n) override { return inner.Read(buf, n); }
  } src;
  absl::StatusOr<oci::Descriptor> d = c->PutBlob("cache/x", oci::Digest::Of("pipe data"), 9, src);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  EXPECT_EQ(puts.load(), 1);
}

TEST_F(ClientTest, MountBlob) {
  const oci::Digest known = oci::Digest::Of("known");
  Serve([&](const FakeRequest& r) {
    if (r.method == "POST") {
      EXPECT_EQ(r.query_value("from"), "cache/src");
      if (r.query_value("mount") == known.str()) {
        return FakeResponse::Text(201, "").WithHeader("Location", "/v2/cache/x/blobs/" + known.str());
      }
      return FakeResponse::Text(202, "").WithHeader("Location", "/v2/cache/x/blobs/uploads/abc?_state=z");
    }
    return FakeResponse::Text(204, "");
  });
  auto c = NewClient();
  absl::StatusOr<bool> m = c->MountBlob("cache/x", known, "cache/src");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(*m);
  EXPECT_EQ(Requests("DELETE").size(), 0u);
  m = c->MountBlob("cache/x", oci::Digest::Of("unknown"), "cache/src");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(*m);
  std::vector<FakeRequest> dels = Requests("DELETE");
  ASSERT_EQ(dels.size(), 1u);  // the session opened instead is cancelled
  EXPECT_EQ(dels[0].target, "/v2/cache/x/blobs/uploads/abc?_state=z");
}

TEST_F(ClientTest, ListTagsFollowsLinks) {
  Serve([&](const FakeRequest& r) {
    std::string last = r.query_value("last");
    if (last.empty()) {
      return FakeResponse::Json(200, R"({"name":"cache/x","tags":["a","b"]})")
          .WithHeader("Link", R"(</v2/cache/x/tags/list?last=b&n=2>; rel="next")");
    }
    if (last == "b") {
      return FakeResponse::Json(200, R"({"name":"cache/x","tags":["c"]})")
          .WithHeader("Link", absl::StrCat("<", server_->base_url(),
                                           "/v2/cache/x/tags/list?last=c&n=2>; rel=\"next\""));
    }
    return FakeResponse::Json(200, R"({"name":"cache/x","tags":null})");
  });
  auto c = NewClient();
  absl::StatusOr<std::vector<std::string>> tags = c->ListTags("cache/x");
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_EQ(*tags, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Count("GET", "/v2/cache/x/tags/list"), 3);
}

// Bearer auth against a fake realm on the same server.
TEST_F(ClientTest, BearerFlowCachesTokensAndHidesSecrets) {
  std::atomic<int> tokens{0};
  auto s = FakeHttpServer::Start([&](const FakeRequest& r) {
    const std::string realm = absl::StrCat("http://", r.header("host"), "/token");
    FakeResponse challenge =
        FakeResponse::Json(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})")
            .WithHeader("WWW-Authenticate",
                        absl::StrCat(R"(Bearer realm=")", realm, R"(",service="fake")"));
    if (r.path() == "/token") {
      if (r.header("authorization") != "Basic " + absl::Base64Escape("me:pw")) {
        return FakeResponse::Text(401, "bad credentials");
      }
      EXPECT_EQ(r.query_value("service"), "fake");
      ++tokens;
      std::string scopes;
      for (const std::string& sc : r.query_values("scope")) scopes += sc + ";";
      return FakeResponse::Json(200, absl::StrCat(R"({"token":")", absl::Base64Escape(scopes),
                                                  R"(","expires_in":300})"));
    }
    std::string auth = r.header("authorization");
    if (r.path() == "/v2/") {
      return auth.empty() ? challenge : FakeResponse::Json(200, "{}");
    }
    if (auth != "Bearer " + absl::Base64Escape("repository:cache/x:pull;")) return challenge;
    return FakeResponse::Json(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})");
  });
  ASSERT_TRUE(s.ok()) << s.status();
  server_ = std::move(*s);

  ClientOptions o = FastRetries();
  o.credentials = {"me", "pw", ""};
  auto c = NewClient(o);
  absl::StatusOr<ManifestResponse> m = c->GetManifest("cache/x", "tag");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound) << m.status();
  EXPECT_EQ(tokens.load(), 1);
  EXPECT_EQ(c->token_count(), 1);
  int64_t before = c->request_count();
  m = c->GetManifest("cache/x", "other");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tokens.load(), 1);                 // cached
  EXPECT_EQ(c->request_count(), before + 1);   // just the request itself

  // A wrong password: Unauthenticated, quickly, and no secret in the message.
  ClientOptions bad = FastRetries();
  bad.credentials = {"me", "wrong-secret", ""};
  auto c2 = NewClient(bad);
  m = c2->GetManifest("cache/x", "tag");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnauthenticated) << m.status();
  EXPECT_FALSE(IsTemporary(m.status()));
  EXPECT_LE(c2->request_count(), 3);  // 401, token; never retried
  const std::string msg(m.status().message());
  EXPECT_EQ(msg.find("wrong-secret"), std::string::npos) << msg;
  EXPECT_EQ(msg.find(absl::Base64Escape("me:wrong-secret")), std::string::npos) << msg;
  EXPECT_EQ(msg.find("Authorization"), std::string::npos) << msg;
}

TEST_F(ClientTest, BasicAuthWrongPasswordIsUnauthenticated) {
  auto s = FakeHttpServer::Start([](const FakeRequest& r) {
    if (r.header("authorization") == "Basic " + absl::Base64Escape("me:pw")) {
      return FakeResponse::Json(200, "{}");
    }
    return FakeResponse::Text(401, "unauthorized")
        .WithHeader("WWW-Authenticate", R"(Basic realm="fake")");
  });
  ASSERT_TRUE(s.ok());
  server_ = std::move(*s);
  ClientOptions o = FastRetries();
  o.credentials = {"me", "pw", ""};
  EXPECT_TRUE(NewClient(o)->Ping().ok());
  o.credentials = {"me", "nope", ""};
  auto c = NewClient(o);
  absl::Status st = c->Ping();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << st;
  EXPECT_EQ(c->request_count(), 2);  // anonymous, then one try with the credentials
  // No credentials at all.
  o.credentials = {};
  EXPECT_EQ(NewClient(o)->Ping().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ClientTest, AnonymousPingIsOneRequest) {
  Serve([](const FakeRequest&) { return FakeResponse::Text(404, ""); });
  auto c = NewClient();
  ASSERT_TRUE(c->Ping().ok());
  EXPECT_EQ(c->request_count(), 1);
  ASSERT_TRUE(c->Ping().ok());
  EXPECT_EQ(c->request_count(), 2);
}

TEST_F(ClientTest, BlobDigestHeaderMismatchIsDataLoss) {
  Serve([](const FakeRequest&) {
    return Resp(200, "abc", {{"Docker-Content-Digest", oci::Digest::Of("xyz").str()}});
  });
  auto c = NewClient();
  std::string got;
  oci::StringSink sink(&got);
  EXPECT_EQ(c->GetBlob("cache/x", oci::Digest::Of("abc"), 3, sink).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(got, "");  // refused before any byte reached the sink
}

TEST_F(ClientTest, RequestCountIncludesEveryRequest) {
  Serve([](const FakeRequest&) { return FakeResponse::Text(404, ""); });
  auto c = NewClient();
  EXPECT_EQ(c->request_count(), 0);
  (void)c->StatBlob("cache/x", oci::Digest::Of("a"));
  (void)c->StatBlob("cache/x", oci::Digest::Of("b"));
  EXPECT_EQ(c->request_count(), server_->request_count());
  EXPECT_EQ(c->request_count(), 2);  // no GET /v2/ before them
}

// A registry that does not answer, and a call whose own deadline passes: the
// request ends as that call's DEADLINE_EXCEEDED, never as a timeout of the
// registry (which would count as an outage and turn later lookups into quick
// misses). curl's timer is set from the call's end and must not fire before it.
TEST_F(ClientTest, ACallersDeadlineIsNeverARegistryTimeout) {
  Serve([](const FakeRequest&) {
    FakeResponse r = FakeResponse::Json(200, "{}");
    r.stall_ms = 10000;
    return r;
  });
  auto c = NewClient();
  ASSERT_TRUE(c->Ping().ok());
  for (int i = 0; i < 30; ++i) {
    absl::Time end = absl::Now() + absl::Milliseconds(20 + i % 7);
    base::CallScope scope({.deadline = end});
    auto m = c->GetManifest("a/b", "t");
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kDeadlineExceeded) << i << ": " << m.status();
    EXPECT_FALSE(IsTemporary(m.status())) << i << ": " << m.status();
  }
}

}  // namespace
}  // namespace ocicache::registry
