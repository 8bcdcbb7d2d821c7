// The client against Debian's real docker-registry (distribution 2.8.2) on loopback,
// without auth, with htpasswd (Basic) and with token auth.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>
#include <vector>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"
#include "pkg/registry/auth_cache.h"
#include "pkg/registry/client.h"
#include "test/harness/registry.h"

namespace ocicache::registry {
namespace {

using harness::RegistryProcess;
using Auth = RegistryProcess::Options::Auth;

// Registries shared by the tests of this binary, one per auth mode, started on
// first use from the main thread (see registry.h on PR_SET_PDEATHSIG).
RegistryProcess* Registry(Auth auth) {
  static std::unique_ptr<RegistryProcess> regs[3];
  std::unique_ptr<RegistryProcess>& r = regs[auth];
  if (!r) {
    RegistryProcess::Options o;
    o.auth = auth;
    o.access_log = true;  // what the registry sent (BlobExactRange)
    absl::StatusOr<std::unique_ptr<RegistryProcess>> started = RegistryProcess::Start(o);
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    r = std::move(*started);
  }
  return r.get();
}

// `size` pseudo-random bytes (xorshift), rewindable, never all in memory.
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
  // The digest of the whole stream (computed by reading a fresh copy).
  static oci::Digest DigestOf(int64_t size, uint64_t seed) {
    PatternSource s(size, seed);
    oci::Sha256 sha;
    std::string buf(1 << 16, '\0');
    for (;;) {
      size_t n = *s.Read(buf.data(), buf.size());
      if (n == 0) break;
      sha.Update(buf.data(), n);
    }
    return sha.Finish();
  }

 private:
  const int64_t size_;
  const uint64_t seed_;
  int64_t pos_ = 0;
  uint64_t state_ = 0;
};

// Hashes what it receives.
class HashSink : public oci::ByteSink {
 public:
  absl::Status Write(absl::string_view chunk) override {
    sha_.Update(chunk);
    return absl::OkStatus();
  }
  int64_t size() const { return sha_.size(); }
  oci::Digest Finish() { return sha_.Finish(); }

 private:
  oci::Sha256 sha_;
};

std::string AuthName(Auth a) {
  switch (a) {
    case RegistryProcess::Options::kNone: return "none";
    case RegistryProcess::Options::kHtpasswd: return "htpasswd";
    case RegistryProcess::Options::kToken: return "token";
  }
  return "?";
}

class ClientIntegrationTest : public ::testing::TestWithParam<Auth> {
 protected:
  void SetUp() override {
    reg_ = Registry(GetParam());
    ASSERT_NE(reg_, nullptr);
    client_ = NewClient(reg_->options().password);
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Client> NewClient(const std::string& password, int64_t chunk = 8 << 20,
                                    const std::string& auth_cache_dir = "") {
    ClientOptions o;
    o.docker_config_dir = "/nonexistent";
    o.auth_cache_dir = auth_cache_dir;
    o.retry.max_attempts = 3;
    o.retry.initial_backoff = absl::Milliseconds(10);
    o.chunk_size = chunk;
    if (GetParam() != RegistryProcess::Options::kNone) {
      o.credentials.username = reg_->options().user;
      o.credentials.password = password;
    }
    absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(reg_->host(), o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::string Repo(absl::string_view name) {
    static int n = 0;
    return absl::StrCat("it-", AuthName(GetParam()), "/", name, "-", getpid(), "-", ++n);
  }

  // Uploads `data` and checks the answer.
  oci::Descriptor Push(const std::string& repo, const std::string& data) {
    oci::StringSource src(data);
    absl::StatusOr<oci::Descriptor> d =
        client_->PutBlob(repo, oci::Digest::Of(data), data.size(), src);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : oci::Descriptor{};
  }

  RegistryProcess* reg_ = nullptr;
  std::unique_ptr<Client> client_;
};

TEST_P(ClientIntegrationTest, Ping) { EXPECT_TRUE(client_->Ping().ok()); }

// A lookup is one request: no GET /v2/ first. Auth costs, once per client, the 401
// that names the challenge (and the token fetch in token mode).
TEST_P(ClientIntegrationTest, RequestsPerLookup) {
  const std::string repo = Repo("lookups");
  const oci::Descriptor blob = Push(repo, "counted");
  std::unique_ptr<Client> c = NewClient(reg_->options().password);
  ASSERT_NE(c, nullptr);
  const int64_t first_cost = GetParam() == RegistryProcess::Options::kNone       ? 1
                             : GetParam() == RegistryProcess::Options::kHtpasswd ? 2
                                                                                 : 3;
  absl::StatusOr<int64_t> st = c->StatBlob(repo, blob.digest);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(c->request_count(), first_cost);
  // Then every lookup, hit or miss, blob or manifest, is exactly one request.
  int64_t before = c->request_count();
  ASSERT_TRUE(c->StatBlob(repo, blob.digest).ok());
  EXPECT_EQ(c->request_count(), before + 1);
  before = c->request_count();
  EXPECT_EQ(c->GetManifest(repo, "absent").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->request_count(), before + 1);
  before = c->request_count();
  HashSink sink;
  ASSERT_TRUE(c->GetBlob(repo, blob.digest, blob.size, sink).ok());
  EXPECT_EQ(c->request_count(), before + 1);
}

TEST_P(ClientIntegrationTest, BlobKnownSizeRoundTrip) {
  const std::string repo = Repo("blob");
  const int64_t size = 3 * 1024 * 1024 + 17;
  const oci::Digest digest = PatternSource::DigestOf(size, 1);
  PatternSource src(size, 1);
  absl::StatusOr<oci::Descriptor> d = client_->PutBlob(repo, digest, size, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, digest);
  EXPECT_EQ(d->size, size);

  absl::StatusOr<int64_t> stat = client_->StatBlob(repo, digest);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(*stat, size);

  HashSink sink;
  absl::Status s = client_->GetBlob(repo, digest, size, sink);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.size(), size);
  EXPECT_EQ(sink.Finish(), digest);

  // From an offset: the registry serves the Range.
  HashSink tail;
  s = client_->GetBlob(repo, digest, size, tail, size - 1000);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(tail.size(), 1000);
}

// An exact range: the registry answers 206 with just those bytes (its access log
// says how many it sent), and they are the blob's bytes at that offset.
TEST_P(ClientIntegrationTest, BlobExactRange) {
  const std::string repo = Repo("range");
  std::string data(2 * 1024 * 1024 + 3, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  oci::StringSource src(data);
  auto d = client_->PutBlob(repo, oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
  ASSERT_TRUE(d.ok()) << d.status();
  for (auto [offset, length] : {std::pair<int64_t, int64_t>{1000000, 5000}, {0, 77},
                                {static_cast<int64_t>(data.size()) - 9, 9}}) {
    std::string got;
    oci::StringSink sink(&got);
    absl::Status s = client_->GetBlob(repo, d->digest, -1, sink, offset, length);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(got, data.substr(offset, length));
    // The registry's line for this GET: status 206 and `length` bytes sent.
    std::ifstream log(Registry(GetParam())->log_path());
    std::string line, last;
    while (std::getline(log, line)) {
      if (absl::StrContains(line, absl::StrCat("GET /v2/", repo, "/blobs/"))) last = line;
    }
    EXPECT_TRUE(absl::StrContains(last, absl::StrCat("\" 206 ", length, " "))) << last;
  }
  // Past the end: an error, nothing pretended.
  std::string got;
  oci::StringSink sink(&got);
  absl::Status s = client_->GetBlob(repo, d->digest, -1, sink, data.size() - 5, 10);
  EXPECT_FALSE(s.ok());
}

TEST_P(ClientIntegrationTest, BlobUnknownSizeIsChunked) {
  const std::string repo = Repo("chunked");
  const int64_t size = 20 * 1024 * 1024 + 5;
  const oci::Digest digest = PatternSource::DigestOf(size, 2);
  PatternSource src(size, 2);
  ASSERT_TRUE(client_->Ping().ok());  // auth settled, so only upload requests are counted
  const int64_t before = client_->request_count();
  absl::StatusOr<oci::Descriptor> d = client_->PutBlob(repo, oci::Digest(), -1, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, digest);
  EXPECT_EQ(d->size, size);
  // POST, PATCH 8 MiB, PATCH 8 MiB, PUT with the last 4 MiB (+ a token in token mode).
  const int64_t token = GetParam() == RegistryProcess::Options::kToken ? 1 : 0;
  EXPECT_EQ(client_->request_count() - before, 4 + token);

  HashSink sink;
  ASSERT_TRUE(client_->GetBlob(repo, digest, size, sink).ok());
  EXPECT_EQ(sink.Finish(), digest);
}

TEST_P(ClientIntegrationTest, EmptyBlob) {
  const std::string repo = Repo("empty");
  const oci::Digest empty = oci::Digest::Of("");
  oci::StringSource src("");
  absl::StatusOr<oci::Descriptor> d = client_->PutBlob(repo, empty, 0, src);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 0);
  oci::StringSource src2("");
  d = client_->PutBlob(repo, oci::Digest(), -1, src2);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest, empty);
  std::string got = "x";
  got.clear();
  oci::StringSink sink(&got);
  ASSERT_TRUE(client_->GetBlob(repo, empty, 0, sink).ok());
  EXPECT_EQ(client_->StatBlob(repo, empty).value_or(-1), 0);
}

TEST_P(ClientIntegrationTest, WrongExpectedDigestCommitsNothing) {
  const std::string repo = Repo("wrong");
  const std::string data(100000, 'w');
  const oci::Digest claimed = oci::Digest::Of("something else");
  // Known size: the registry refuses the PUT.
  oci::StringSource src(data);
  absl::StatusOr<oci::Descriptor> d = client_->PutBlob(repo, claimed, data.size(), src);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(RegistryErrorCode(d.status()), "DIGEST_INVALID");
  // Unknown size: we refuse before committing.
  oci::StringSource src2(data);
  d = client_->PutBlob(repo, claimed, -1, src2);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_EQ(client_->StatBlob(repo, claimed).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->StatBlob(repo, oci::Digest::Of(data)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(ClientIntegrationTest, StatUnknownBlobIsNotFound) {
  const std::string repo = Repo("stat");
  Push(repo, "something");  // the repository exists
  absl::StatusOr<int64_t> s = client_->StatBlob(repo, oci::Digest::Of("never pushed"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
  HashSink sink;
  absl::Status g = client_->GetBlob(repo, oci::Digest::Of("never pushed"), -1, sink);
  EXPECT_EQ(g.code(), absl::StatusCode::kNotFound) << g;
  EXPECT_EQ(RegistryErrorCode(g), "BLOB_UNKNOWN");
}

TEST_P(ClientIntegrationTest, ManifestRoundTrip) {
  const std::string repo = Repo("manifest");
  const std::string config = R"({"ocicache":"test config"})";
  const std::string layer = "inline layer bytes";
  oci::Descriptor cfg = Push(repo, config);
  oci::Descriptor lay = Push(repo, layer);
  ASSERT_TRUE(cfg.digest.valid() && lay.digest.valid());

  oci::Manifest m;
  m.config.media_type = "application/vnd.ocicache.test.config.v1+json";  // unknown to the registry
  m.config.digest = cfg.digest;
  m.config.size = cfg.size;
  oci::Descriptor l;
  l.media_type = "application/vnd.ocicache.test.layer.v1";
  l.digest = lay.digest;
  l.size = lay.size;
  l.data = layer;  // the `data` field, ignored (but kept) by the registry
  m.layers.push_back(l);
  m.annotations["org.example.k"] = "v";
  const std::string bytes = m.Serialize();
  ASSERT_NE(bytes.find("\"data\""), std::string::npos);

  absl::StatusOr<oci::Digest> put = client_->PutManifest(repo, "v1", bytes);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*put, oci::Digest::Of(bytes));

  absl::StatusOr<ManifestResponse> got = client_->GetManifest(repo, "v1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->bytes, bytes);  // stored verbatim
  EXPECT_EQ(got->digest, *put);
  EXPECT_EQ(got->media_type, oci::media::kImageManifest);
  absl::StatusOr<oci::Manifest> parsed = oci::Manifest::Parse(got->bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->layers.size(), 1u);
  EXPECT_EQ(parsed->layers[0].data, layer);

  for (const std::string& ref : {std::string("v1"), put->str()}) {
    absl::StatusOr<oci::Descriptor> head = client_->HeadManifest(repo, ref);
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_EQ(head->digest, *put);
    EXPECT_EQ(head->size, static_cast<int64_t>(bytes.size()));
    EXPECT_EQ(head->media_type, oci::media::kImageManifest);
  }

  ASSERT_TRUE(client_->DeleteManifest(repo, *put).ok());
  absl::StatusOr<ManifestResponse> gone = client_->GetManifest(repo, "v1");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound) << gone.status();
  EXPECT_EQ(RegistryErrorCode(gone.status()), "MANIFEST_UNKNOWN");
  EXPECT_EQ(client_->HeadManifest(repo, put->str()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(ClientIntegrationTest, ManifestWithMissingBlobIsInvalidArgument) {
  const std::string repo = Repo("badmanifest");
  Push(repo, "x");
  oci::Manifest m;
  m.config = oci::EmptyDescriptor();  // never uploaded to this repository
  m.layers.push_back(oci::EmptyDescriptor());
  absl::StatusOr<oci::Digest> put = client_->PutManifest(repo, "v1", m.Serialize());
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument) << put.status();
  EXPECT_EQ(RegistryErrorCode(put.status()), "MANIFEST_BLOB_UNKNOWN");
}

TEST_P(ClientIntegrationTest, ListTags) {
  const std::string repo = Repo("tags");
  EXPECT_EQ(client_->ListTags(repo).status().code(), absl::StatusCode::kNotFound);

  oci::Descriptor cfg = Push(repo, "{}");
  oci::Manifest m;
  m.config = oci::EmptyDescriptor();
  m.config.digest = cfg.digest;
  m.layers.push_back(m.config);
  const std::string bytes = m.Serialize();
  // Many tags in the plain mode; a few where each request also pays for auth.
  const int n = GetParam() == RegistryProcess::Options::kNone ? 120 : 5;
  std::set<std::string> want;
  for (int i = 0; i < n; ++i) {
    std::string tag = absl::StrCat("t", i);
    ASSERT_TRUE(client_->PutManifest(repo, tag, bytes).ok()) << tag;
    want.insert(tag);
  }
  absl::StatusOr<std::vector<std::string>> tags = client_->ListTags(repo);
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_EQ(std::set<std::string>(tags->begin(), tags->end()), want);
  EXPECT_EQ(tags->size(), want.size());

  // Deleting the manifest removes every tag: "tags": null.
  absl::StatusOr<oci::Digest> d = client_->PutManifest(repo, "t0", bytes);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(client_->DeleteManifest(repo, *d).ok());
  tags = client_->ListTags(repo);
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_TRUE(tags->empty());
}

TEST_P(ClientIntegrationTest, CrossRepositoryMount) {
  const std::string from = Repo("mount-src"), to = Repo("mount-dst");
  oci::Descriptor d = Push(from, "mount me");
  absl::StatusOr<bool> m = client_->MountBlob(to, d.digest, from);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(*m);
  absl::StatusOr<int64_t> stat = client_->StatBlob(to, d.digest);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(*stat, d.size);

  m = client_->MountBlob(to, oci::Digest::Of("not anywhere"), from);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(*m);
}

INSTANTIATE_TEST_SUITE_P(Auth, ClientIntegrationTest,
                         ::testing::Values(RegistryProcess::Options::kNone,
                                           RegistryProcess::Options::kHtpasswd,
                                           RegistryProcess::Options::kToken),
                         [](const ::testing::TestParamInfo<Auth>& i) { return AuthName(i.param); });

// Auth-only behaviour, for the two modes that have it.
class ClientAuthIntegrationTest : public ClientIntegrationTest {};

TEST_P(ClientAuthIntegrationTest, WrongPasswordIsUnauthenticated) {
  std::unique_ptr<Client> bad = NewClient("not-the-password");
  ASSERT_NE(bad, nullptr);
  absl::StatusOr<int64_t> s = bad->StatBlob(Repo("denied"), oci::Digest::Of("x"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated) << s.status();
  EXPECT_FALSE(IsTemporary(s.status()));
  EXPECT_LE(bad->request_count(), 3);  // 401, one answer to the challenge (+ token); no loop
  EXPECT_EQ(std::string(s.status().message()).find("not-the-password"), std::string::npos);
  EXPECT_EQ(bad->Ping().code(), absl::StatusCode::kUnauthenticated);
  // The right password on a new client still works (nothing got stuck).
  EXPECT_TRUE(NewClient(reg_->options().password)->Ping().ok());
}

INSTANTIATE_TEST_SUITE_P(Auth, ClientAuthIntegrationTest,
                         ::testing::Values(RegistryProcess::Options::kHtpasswd,
                                           RegistryProcess::Options::kToken),
                         [](const ::testing::TestParamInfo<Auth>& i) { return AuthName(i.param); });

class ClientTokenIntegrationTest : public ClientIntegrationTest {};

TEST_P(ClientTokenIntegrationTest, TokensAreCachedPerScope) {
  const std::string repo = Repo("tokens");
  std::unique_ptr<Client> c = NewClient(reg_->options().password);
  const int issued0 = reg_->token_issuer()->tokens_issued();
  EXPECT_EQ(c->StatBlob(repo, oci::Digest::Of("a")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reg_->token_issuer()->tokens_issued(), issued0 + 1);
  const int64_t requests = c->request_count();
  EXPECT_EQ(c->StatBlob(repo, oci::Digest::Of("b")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reg_->token_issuer()->tokens_issued(), issued0 + 1);  // same scope: cached
  EXPECT_EQ(c->request_count(), requests + 1);
  EXPECT_EQ(c->token_count(), 1);
  // A push needs pull,push: a new token, then cached for the rest of the upload.
  oci::StringSource src("data");
  ASSERT_TRUE(c->PutBlob(repo, oci::Digest::Of("data"), 4, src).ok());
  EXPECT_EQ(reg_->token_issuer()->tokens_issued(), issued0 + 2);
  EXPECT_EQ(c->token_count(), 2);
}

// A later process (a new client on the same auth cache directory) sends its
// first request with the token an earlier one fetched: one request, not a 401,
// a token fetch and the retry.
TEST_P(ClientTokenIntegrationTest, ALaterProcessReusesTheKeptToken) {
  const std::string repo = Repo("kept");
  const char* tmp = getenv("TEST_TMPDIR");
  std::string base = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/authcache-XXXXXX");
  ASSERT_NE(mkdtemp(base.data()), nullptr);
  const std::string dir = base + "/auth";
  const int issued0 = reg_->token_issuer()->tokens_issued();

  std::unique_ptr<Client> first = NewClient(reg_->options().password, 8 << 20, dir);
  EXPECT_EQ(first->StatBlob(repo, oci::Digest::Of("a")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(first->request_count(), 3);  // 401, token, the retry
  EXPECT_EQ(reg_->token_issuer()->tokens_issued(), issued0 + 1);
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(internal::AuthCachePath(dir, reg_->host()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::unique_ptr<Client> later = NewClient(reg_->options().password, 8 << 20, dir);
  EXPECT_EQ(later->StatBlob(repo, oci::Digest::Of("b")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(later->request_count(), 1);
  EXPECT_EQ(later->token_count(), 0);
  EXPECT_EQ(reg_->token_issuer()->tokens_issued(), issued0 + 1);
  // Another scope: the kept challenge saves the 401, the token is fetched.
  oci::StringSource src("kept data");
  ASSERT_TRUE(later->PutBlob(repo, oci::Digest::Of("kept data"), 9, src).ok());
  EXPECT_EQ(later->token_count(), 1);

  // The control: a client without the cache pays the 401 and the fetch.
  std::unique_ptr<Client> uncached = NewClient(reg_->options().password);
  EXPECT_EQ(uncached->StatBlob(repo, oci::Digest::Of("c")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(uncached->request_count(), 3);

  // A kept token the registry refuses (here: the file edited to a bogus one)
  // costs one 401 and a fresh token, nothing worse.
  {
    std::string path = internal::AuthCachePath(dir, reg_->host());
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::json j = nlohmann::json::parse(text);
    for (auto& t : j["tokens"]) t["token"] = "bogus";
    std::ofstream(path) << j.dump();
  }
  std::unique_ptr<Client> refused = NewClient(reg_->options().password, 8 << 20, dir);
  EXPECT_EQ(refused->StatBlob(repo, oci::Digest::Of("d")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(refused->token_count(), 1);
}

INSTANTIATE_TEST_SUITE_P(Auth, ClientTokenIntegrationTest,
                         ::testing::Values(RegistryProcess::Options::kToken),
                         [](const ::testing::TestParamInfo<Auth>& i) { return AuthName(i.param); });

// One client shared by threads: each call borrows its own curl handle, and
// concurrent callers needing the same scopes share one token.
class ClientConcurrencyTest : public ClientIntegrationTest {};

TEST_P(ClientConcurrencyTest, ThreadsShareOneClient) {
  const std::string repo = Repo("threads");
  const int issued0 = reg_->token_issuer() ? reg_->token_issuer()->tokens_issued() : 0;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      const int64_t size = 300000 + t;
      const oci::Digest d = PatternSource::DigestOf(size, 100 + t);
      for (int i = 0; i < 3; ++i) {
        PatternSource src(size, 100 + t);
        if (!client_->PutBlob(repo, d, size, src).ok()) return;
        HashSink sink;
        if (!client_->GetBlob(repo, d, size, sink).ok() || sink.Finish() != d) return;
        absl::StatusOr<int64_t> st = client_->StatBlob(repo, d);
        if (!st.ok() || *st != size) return;
      }
      ++ok;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 6);
  if (reg_->token_issuer() != nullptr) {
    // One token for pull,push and one for pull, whatever the interleaving.
    EXPECT_EQ(reg_->token_issuer()->tokens_issued() - issued0, 2);
    EXPECT_EQ(client_->token_count(), 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Auth, ClientConcurrencyTest,
                         ::testing::Values(RegistryProcess::Options::kNone,
                                           RegistryProcess::Options::kToken),
                         [](const ::testing::TestParamInfo<Auth>& i) { return AuthName(i.param); });

// Pooled keep-alive connections die with a registry restart; the next call works.
TEST(ClientRestartTest, SurvivesRegistryRestart) {
  RegistryProcess::Options ro;
  absl::StatusOr<std::unique_ptr<RegistryProcess>> reg = RegistryProcess::Start(ro);
  ASSERT_TRUE(reg.ok()) << reg.status();
  ClientOptions o;
  o.docker_config_dir = "/nonexistent";
  o.retry.initial_backoff = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create((*reg)->host(), o);
  ASSERT_TRUE(c.ok());
  oci::StringSource src("persisted");
  ASSERT_TRUE((*c)->PutBlob("it/restart", oci::Digest::Of("persisted"), 9, src).ok());
  ASSERT_TRUE((*reg)->Restart().ok());
  absl::StatusOr<int64_t> st = (*c)->StatBlob("it/restart", oci::Digest::Of("persisted"));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(*st, 9);
  // Stopped: a clean, temporary Unavailable.
  ASSERT_TRUE((*reg)->Stop().ok());
  st = (*c)->StatBlob("it/restart", oci::Digest::Of("persisted"));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kUnavailable) << st.status();
  EXPECT_TRUE(IsTemporary(st.status()));
}

}  // namespace
}  // namespace ocicache::registry
