// The HTTP cache endpoint of ocicached (pkg/httpcache) through real HTTP
// requests (libcurl, and raw sockets where curl would not misbehave), against
// a real docker-registry: each URL space's semantics (overwrite, 409, turbo's
// headers and namespaces, the CAS's hash check, ActionResults shared with the
// gRPC REAPI service), auth (Bearer, Basic in both base64 alphabets, read-only
// tokens, 100-continue refusals), bad input (paths, hashes, oversized headers
// and bodies, bodies cut short), and a registry outage (reads miss, writes
// land in the local tier).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/recall.h"
#include "pkg/cache/registry_store.h"
#include "pkg/httpcache/router.h"
#include "pkg/oci/digest.h"
#include "pkg/rpc/auth.h"
#include "pkg/server/server.h"
#include "pkg/stores/stores.h"
#include "test/harness/http_client.h"
#include "test/harness/registry.h"
#include "test/integration/served_store.h"

namespace ocicache {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
using harness::HttpCall;
using harness::HttpClient;
using harness::HttpReply;
using harness::RegistryProcess;

constexpr char kReadToken[] = "read-token-0123456789";
constexpr char kWriteToken[] = "write-token-0123456789";

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2166136261u ^ static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Hex(absl::string_view data) { return oci::Digest::Of(data).hex(); }

// Sends raw bytes on a new connection, then reads until the server closes
// the connection or `wait` passes. Returns what came back.
std::string Raw(int port, const std::string& bytes, absl::Duration wait, bool shut_write = false) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "connect failed";
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (shut_write) shutdown(fd, SHUT_WR);
  timeval tv{};
  tv.tv_sec = 0;
  tv.tv_usec = 200000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  absl::Time until = absl::Now() + wait;
  char buf[4096];
  while (absl::Now() < until) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) continue;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

class HttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RegistryProcess::Options ro;
    ro.access_log = true;  // RepeatedCasPutsSendNothingToTheRegistry counts requests
    auto reg = RegistryProcess::Start(ro);
    ASSERT_TRUE(reg.ok()) << reg.status();
    registry_ = reg->release();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }

  struct Setup {
    std::string repo;  // empty: a new one
    bool dir = true;
    std::optional<rpc::TokenAuth> auth;
    int64_t max_body = int64_t{1} << 30;
    size_t max_header = 32 << 10;
    absl::Duration idle_timeout = absl::Seconds(60);
    absl::Duration read_timeout = absl::Seconds(5);
    std::vector<std::string>* log = nullptr;
    bool metrics = false;
    size_t recall_keys = 0;  // ServerOptions::recall_keys (0: off)
    int zstd_level = 3;      // HandlerOptions::zstd_level (0: store as sent)
  };

  // PUT requests in the registry's log so far (uploads and manifests).
  size_t RegistryPuts() {
    std::string log = registry_->LogTail(1 << 22);
    size_t n = 0;
    for (size_t p = 0; (p = log.find("PUT /v2/", p)) != std::string::npos; ++p) ++n;
    return n;
  }

  std::unique_ptr<server::CacheServer> Serve(Setup s) {
    static std::atomic<int> counter{0};
    if (s.repo.empty()) s.repo = absl::StrCat("http/t", counter++, "-", getpid());
    stores::StoreConfig c;
    c.repo = registry_->host() + "/" + s.repo;
    if (s.dir) c.dir = testing::TempDir("http-dir");
    repo_ = s.repo;
    stores::OpenOptions open;
    open.profile = stores::Profile::kServer;
    auto set = stores::OpenStores(c, open);
    EXPECT_TRUE(set.ok()) << set.status();
    if (!set.ok()) return nullptr;
    server::ServerOptions o;
    o.open_instance = server::InstanceOpener(c);
    o.auth = s.auth;
    o.health_interval = absl::Milliseconds(200);
    o.http.listen = "127.0.0.1:0";
    o.http.max_body_bytes = s.max_body;
    o.http.max_header_bytes = s.max_header;
    o.http.idle_timeout = s.idle_timeout;
    o.http_handler.max_body_bytes = s.max_body;
    o.http_handler.read_timeout = s.read_timeout;
    o.http_handler.zstd_level = s.zstd_level;
    o.recall_keys = s.recall_keys;
    if (s.metrics) o.metrics_listen = "127.0.0.1:0";
    if (s.log != nullptr) {
      auto* mu = new absl::Mutex;  // leaked with the test: the server may log until it stops
      std::vector<std::string>* log = s.log;
      o.service.access_log = [mu, log](absl::string_view line) {
        absl::MutexLock l(mu);
        log->emplace_back(line);
      };
    }
    auto srv = testing::StartServer(*std::move(set), o);
    EXPECT_TRUE(srv.ok()) << srv.status();
    if (!srv.ok()) return nullptr;
    base_ = (*srv)->http_url();
    return *std::move(srv);
  }

  HttpReply Do(HttpClient& c, const std::string& method, const std::string& path,
               const std::string& body = "", std::vector<std::string> headers = {}) {
    HttpCall call;
    call.method = method;
    call.url = base_ + path;
    call.body = body;
    call.headers = std::move(headers);
    auto r = c.Do(call);
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status();
    return r.ok() ? *r : HttpReply{};
  }

  // A server with recall on, over `repo` ("" : a new one), with a new local directory.
  std::unique_ptr<server::CacheServer> ServeWithRecall(const std::string& repo = "") {
    Setup s;
    s.repo = repo;
    s.recall_keys = 100;
    return Serve(s);
  }

  // The registry store of `repo`, as a reader apart from any server.
  static std::unique_ptr<cache::RegistryStore> RepoStore(const std::string& repo) {
    stores::StoreConfig rc;
    rc.repo = registry_->host() + "/" + repo;
    auto r = stores::OpenRegistry(rc, stores::RegistryClientOptions(rc));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  // Stops the shared registry for the rest of a test; it runs again after.
  struct RegistryDown {
    RegistryDown() { EXPECT_TRUE(registry_->Stop().ok()); }
    ~RegistryDown() { EXPECT_TRUE(registry_->Restart().ok()); }
  };

  static RegistryProcess* registry_;
  std::string repo_;
  std::string base_;
};

RegistryProcess* HttpTest::registry_ = nullptr;

TEST_F(HttpTest, KeyValueObjectsOverwriteAndDeleteOverOneConnection) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  EXPECT_EQ(Do(c, "GET", "/cache/ccache/ab/cdef").status, 404);
  std::string small = "small object", large = Pattern(300 << 10, 1);
  EXPECT_EQ(Do(c, "PUT", "/cache/ccache/ab/cdef", small).status, 200);
  EXPECT_EQ(Do(c, "PUT", "/cache/gradle/0123456789abcdef0123456789abcdef", large).status, 200);
  HttpReply got = Do(c, "GET", "/cache/ccache/ab/cdef");
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, small);
  EXPECT_TRUE(got.reused_connection);
  got = Do(c, "GET", "/cache/gradle/0123456789abcdef0123456789abcdef");
  EXPECT_EQ(got.status, 200);
  EXPECT_TRUE(got.body == large) << "body of " << got.body.size() << " bytes differs";
  HttpReply head = Do(c, "HEAD", "/cache/gradle/0123456789abcdef0123456789abcdef");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), std::to_string(large.size()));
  // Last write wins (ccache re-PUTs manifests).
  EXPECT_EQ(Do(c, "PUT", "/cache/ccache/ab/cdef", "second").status, 200);
  EXPECT_EQ(Do(c, "GET", "/cache/ccache/ab/cdef").body, "second");
  EXPECT_EQ(Do(c, "DELETE", "/cache/ccache/ab/cdef").status, 200);
  EXPECT_EQ(Do(c, "GET", "/cache/ccache/ab/cdef").status, 404);
  EXPECT_EQ(Do(c, "DELETE", "/cache/ccache/ab/cdef").status, 404);
  // Namespaces are apart; the empty body is an object too.
  EXPECT_EQ(Do(c, "PUT", "/cache/other/ab/cdef", "").status, 200);
  got = Do(c, "GET", "/cache/other/ab/cdef");
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.header("content-length"), "0");
  // Each object is an ordinary entry under the documented key.
  std::vector<std::string> keys;
  ASSERT_TRUE(srv->store()
                  .List([&](const cache::EntryInfo& e) {
                    keys.push_back(e.key);
                    return true;
                  })
                  .ok());
  EXPECT_NE(std::find(keys.begin(), keys.end(),
                      "http:kv:gradle:0123456789abcdef0123456789abcdef"),
            keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "http:kv:other:ab/cdef"), keys.end());
  // An entry another writer formatted its own way (spacing, member order, an
  // escaped "data" inside a string) reads the same.
  cache::Entry foreign;
  foreign.key = "http:kv:other:spaced";
  foreign.config = R"({ "data" : "c3BhY2Vk", "note": "x\",\"data\":\"bm8=", "http": "v1", "protocol": "kv" })";
  ASSERT_TRUE(srv->store().Put(foreign).ok());
  EXPECT_EQ(Do(c, "GET", "/cache/other/spaced").body, "spaced");
  foreign.key = "http:kv:other:tight";
  foreign.config = R"({"data":"dGlnaHQ=","http":"v1","protocol":"kv"})";
  ASSERT_TRUE(srv->store().Put(foreign).ok());
  EXPECT_EQ(Do(c, "GET", "/cache/other/tight").body, "tight");
}

TEST_F(HttpTest, ObjectsComeFromTheRegistryOnAFreshMachine) {
  std::string repo;
  std::string large = Pattern(2 << 20, 2);
  {
    auto srv = Serve({});
    ASSERT_NE(srv, nullptr);
    repo = repo_;
    HttpClient c;
    ASSERT_EQ(Do(c, "PUT", "/cache/ccache/k1", "inline").status, 200);
    ASSERT_EQ(Do(c, "PUT", "/cache/ccache/k2", large, {"Content-Type: application/octet-stream"})
                  .status,
              200);
    ASSERT_EQ(Do(c, "PUT", "/v8/artifacts/0011223344556677?teamId=team_a", "tarball",
                 {"x-artifact-duration: 1234", "x-artifact-tag: c2lnbmF0dXJl"})
                  .status,
              200);
    srv->Shutdown(absl::Seconds(2));
  }
  Setup s;
  s.repo = repo;  // a new, empty local directory
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  EXPECT_EQ(Do(c, "GET", "/cache/ccache/k1").body, "inline");
  HttpReply got = Do(c, "GET", "/cache/ccache/k2");
  EXPECT_EQ(got.status, 200);
  EXPECT_TRUE(got.body == large);
  got = Do(c, "GET", "/v8/artifacts/0011223344556677?teamId=team_a");
  EXPECT_EQ(got.body, "tarball");
  EXPECT_EQ(got.header("x-artifact-duration"), "1234");
  EXPECT_EQ(got.header("x-artifact-tag"), "c2lnbmF0dXJl");
}

// Text of n bytes, as a plain tar of JavaScript would hold: compresses well.
std::string Text(size_t n, int seed) {
  std::string s;
  while (s.size() < n) {
    absl::StrAppend(&s, "export const v", seed, "_", s.size() % 4093, " = require('./m",
                    s.size() % 89, "');\n");
  }
  s.resize(n);
  return s;
}

// Objects whose first bytes compress are stored as zstd, in both tiers, and
// come back whole from either; what does not compress, or with compression
// off, is stored as sent. Lengths, HEAD and Turborepo's query give the
// object's own size.
TEST_F(HttpTest, ObjectsThatCompressAreStoredAsZstdAndComeBackWhole) {
  struct Object {
    std::string path;
    std::string body;
    bool chunked = false;
    bool compresses = false;
  };
  std::vector<Object> objects = {
      {"/v1/cache/0a1b2c3d", Text(3 << 20, 1), false, true},  // streamed out
      {"/cache/gradle/a0b1", Text(600 << 10, 2), true, true},  // from memory, chunked in
      {"/v8/artifacts/00aa11bb?teamId=t", Text(40 << 10, 3), false, true},
      {"/cache/ccache/c0/d1", Pattern(2 << 20, 4), false, false},  // does not compress
      {"/cache/ccache/c0/d2", std::string(512, '\0') + Pattern(64 << 10, 5), false, false},
  };
  std::string repo;
  {
    auto srv = Serve({});
    ASSERT_NE(srv, nullptr);
    repo = repo_;
    HttpClient c;
    for (const Object& o : objects) {
      HttpCall put;
      put.method = "PUT";
      put.url = base_ + o.path;
      put.body = o.body;
      put.chunked = o.chunked;
      auto r = c.Do(put);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->status, 200) << o.path << ": " << r->body;
    }
    // From the local tier that stored them.
    for (const Object& o : objects) {
      HttpReply got = Do(c, "GET", o.path);
      EXPECT_EQ(got.status, 200) << o.path;
      EXPECT_TRUE(got.body == o.body) << o.path << ": " << got.body.size() << " bytes";
    }
    // /status tells what was received from what was stored: Nx's one object
    // compressed, ccache's two as sent.
    auto status = nlohmann::json::parse(Do(c, "GET", "/status").body, nullptr, false);
    ASSERT_TRUE(status.is_object());
    const auto& nx = status["protocols"]["nx"];
    EXPECT_EQ(nx.value("bytes_in", int64_t{0}), int64_t{3} << 20) << nx;
    EXPECT_GT(nx.value("bytes_stored", int64_t{0}), 0) << nx;
    EXPECT_LT(nx.value("bytes_stored", int64_t{0}) * 5, int64_t{3} << 20) << nx;
    srv->Shutdown(absl::Seconds(5));
  }
  // In the registry: the stored form.
  auto reg = RepoStore(repo);
  ASSERT_NE(reg, nullptr);
  for (const Object& o : objects) {
    std::map<std::string, std::string> query;
    if (o.path.find("teamId=t") != std::string::npos) query["teamId"] = "t";
    httpcache::Routed routed =
        httpcache::RouteRequest("GET", o.path.substr(0, o.path.find('?')), query);
    ASSERT_EQ(routed.error, 0) << o.path;
    auto e = reg->Lookup(routed.route.key, {});
    ASSERT_TRUE(e.ok()) << o.path << ": " << e.status();
    ASSERT_EQ(e->blobs.size(), 1u) << o.path;
    auto config = nlohmann::json::parse(e->config, nullptr, false);
    if (o.compresses) {
      EXPECT_EQ(e->blobs[0].media_type, "application/zstd") << o.path;
      EXPECT_LT(e->blobs[0].size * 5, static_cast<int64_t>(o.body.size())) << o.path;
      EXPECT_EQ(config.value("http", ""), "v2") << e->config;
      EXPECT_EQ(config.value("encoding", ""), "zstd") << e->config;
      EXPECT_EQ(config.value("size", int64_t{-1}), static_cast<int64_t>(o.body.size()));
    } else {
      EXPECT_EQ(e->blobs[0].media_type, "application/octet-stream") << o.path;
      EXPECT_EQ(e->blobs[0].size, static_cast<int64_t>(o.body.size())) << o.path;
      EXPECT_EQ(config.value("http", ""), "v1") << e->config;
    }
  }
  // A fresh machine: a new local directory over the same registry.
  Setup s;
  s.repo = repo;
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  for (const Object& o : objects) {
    HttpReply head = Do(c, "HEAD", o.path);
    EXPECT_EQ(head.status, 200) << o.path;
    EXPECT_EQ(head.header("content-length"), std::to_string(o.body.size())) << o.path;
    HttpReply got = Do(c, "GET", o.path);
    EXPECT_EQ(got.status, 200) << o.path;
    EXPECT_EQ(got.header("content-length"), std::to_string(o.body.size())) << o.path;
    EXPECT_TRUE(got.body == o.body) << o.path << ": " << got.body.size() << " bytes";
  }
  HttpReply q = Do(c, "POST", "/v8/artifacts?teamId=t", R"({"hashes":["00aa11bb"]})");
  auto j = nlohmann::json::parse(q.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << q.body;
  EXPECT_EQ(j["00aa11bb"]["size"], 40 << 10) << q.body;

  // With compression off, the same kind of body is stored as sent.
  Setup off;
  off.zstd_level = 0;
  auto plain = Serve(off);
  ASSERT_NE(plain, nullptr);
  const std::string text = Text(100 << 10, 6);
  ASSERT_EQ(Do(c, "PUT", "/cache/ns/plain", text).status, 200);
  EXPECT_TRUE(Do(c, "GET", "/cache/ns/plain").body == text);
  auto e = RepoStore(repo_)->Lookup("http:kv:ns:plain", {});
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->blobs.size(), 1u);
  EXPECT_EQ(e->blobs[0].media_type, "application/octet-stream");
  EXPECT_EQ(e->blobs[0].size, static_cast<int64_t>(text.size()));
}

// What a reader cannot decode is a miss, never wrong bytes: an encoding it
// does not know, and a zstd blob that decodes to another size than the entry
// says (from memory and streamed).
TEST_F(HttpTest, ACompressedObjectThatDoesNotDecodeAsItsEntrySaysIsAMiss) {
  Setup registry_only;
  registry_only.dir = false;
  auto srv = Serve(registry_only);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  const std::string small = Text(200 << 10, 7), large = Text(3 << 20, 8);
  ASSERT_EQ(Do(c, "PUT", "/cache/ns/small", small).status, 200);
  ASSERT_EQ(Do(c, "PUT", "/cache/ns/large", large).status, 200);
  auto reg = RepoStore(repo_);
  ASSERT_NE(reg, nullptr);
  for (const std::string& name : {std::string("small"), std::string("large")}) {
    auto e = reg->Lookup("http:kv:ns:" + name, {});
    ASSERT_TRUE(e.ok()) << e.status();
    auto config = nlohmann::json::parse(e->config);
    ASSERT_EQ(config.value("encoding", ""), "zstd") << e->config;
    // One byte too many in the entry's size.
    config["size"] = config["size"].get<int64_t>() + 1;
    e->key = "http:kv:ns:" + name + "-wrong-size";
    e->config = config.dump();
    ASSERT_TRUE(reg->Put(*e).ok());
    // An encoding this server does not know.
    config["size"] = config["size"].get<int64_t>() - 1;
    config["encoding"] = "br";
    e->key = "http:kv:ns:" + name + "-brotli";
    e->config = config.dump();
    ASSERT_TRUE(reg->Put(*e).ok());
  }
  EXPECT_EQ(Do(c, "GET", "/cache/ns/small-wrong-size").status, 404);
  EXPECT_EQ(Do(c, "GET", "/cache/ns/small-brotli").status, 404);
  EXPECT_EQ(Do(c, "GET", "/cache/ns/large-brotli").status, 404);
  // Streamed: the status and length are sent before the last byte decodes, so
  // the answer is cut short (the client sees a transfer error, never a body
  // it could take for whole).
  HttpCall get;
  get.url = base_ + "/cache/ns/large-wrong-size";
  auto r = c.Do(get);
  EXPECT_TRUE(!r.ok() || r->status != 200 || r->body.size() != large.size() + 1)
      << (r.ok() ? r->body.size() : 0);
  EXPECT_TRUE(Do(c, "GET", "/cache/ns/large").body == large);
  EXPECT_TRUE(Do(c, "GET", "/cache/ns/small").body == small);
}

// The recall list of the namespace's group in /status, once its prefetch has
// ended (bounded wait); null if it does not end in time.
nlohmann::json RecallWhenDone(HttpClient& c, const std::string& base, const std::string& group) {
  absl::Time until = absl::Now() + absl::Seconds(30);
  while (absl::Now() < until) {
    HttpCall call;
    call.url = base + "/status";
    auto r = c.Do(call);
    if (r.ok() && r->status == 200) {
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (j.is_object() && j.contains("recall") && j["recall"].contains(group) &&
          j["recall"][group].value("done", false)) {
        return j["recall"][group];
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return nullptr;
}

TEST_F(HttpTest, AFreshServerPrefetchesWhatTheLastServerSawUsed) {
  std::string repo;
  std::string large = Pattern(1 << 20, 3);
  constexpr int kSmall = 20;
  {
    auto srv = ServeWithRecall();
    ASSERT_NE(srv, nullptr);
    repo = repo_;
    HttpClient c;
    for (int i = 0; i < kSmall; ++i) {
      ASSERT_EQ(Do(c, "PUT", absl::StrCat("/cache/ccache/k", i), absl::StrCat("object ", i)).status,
                200);
    }
    ASSERT_EQ(Do(c, "PUT", "/cache/ccache/large", large).status, 200);
    ASSERT_EQ(Do(c, "GET", "/cache/ccache/k0").status, 200);
    ASSERT_EQ(Do(c, "GET", "/cache/ccache/never-stored").status, 404);  // a miss is not listed
    ASSERT_EQ(Do(c, "PUT", "/v8/artifacts/00aa?teamId=team_a", "tarball").status, 200);
    srv->Shutdown(absl::Seconds(2));  // saves the lists
  }
  auto registry = RepoStore(repo);
  ASSERT_NE(registry, nullptr);
  cache::LookupOptions quiet;
  quiet.touch = false;
  auto list = registry->Lookup(cache::RecallKey("http:kv:ccache"), quiet);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_TRUE(registry->Lookup(cache::RecallKey("http:turbo:team_a"), quiet).ok());
  // The index: the groups used, for the next server to start with.
  ASSERT_TRUE(registry->Lookup(cache::RecallKey("http"), quiet).ok());

  // A fresh machine: an empty local directory, the same repository. Both
  // groups the last server used are prefetched from its start, before any
  // object request (/status is none).
  auto srv = ServeWithRecall(repo);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  nlohmann::json g = RecallWhenDone(c, base_, "http:kv:ccache");
  nlohmann::json turbo = RecallWhenDone(c, base_, "http:turbo:team_a");
  ASSERT_FALSE(turbo.is_null()) << "the turbo group was not prefetched at start";
  EXPECT_EQ(turbo["packed"], 1);
  ASSERT_EQ(Do(c, "GET", "/cache/ccache/k0").body, "object 0");
  ASSERT_FALSE(g.is_null()) << "the prefetch did not end within 30 s";
  EXPECT_EQ(g["listed"], kSmall + 1);
  // The small objects came in the list's pack (one GET), the large one alone.
  EXPECT_EQ(g["packed"], kSmall);
  EXPECT_EQ(g["prefetched"], 1);
  EXPECT_EQ(g["failed"], 0);
  // Everything listed is local now: the registry is not needed to answer.
  RegistryDown down;
  for (int i = 1; i < kSmall; ++i) {
    HttpReply got = Do(c, "GET", absl::StrCat("/cache/ccache/k", i));
    EXPECT_EQ(got.status, 200) << "k" << i;
    EXPECT_EQ(got.body, absl::StrCat("object ", i));
  }
  HttpReply got = Do(c, "GET", "/cache/ccache/large");
  EXPECT_EQ(got.status, 200);
  EXPECT_TRUE(got.body == large) << "body of " << got.body.size() << " bytes differs";
}

TEST_F(HttpTest, AnUnchangedRecallListIsNotWrittenAgain) {
  std::string repo;
  {
    auto srv = ServeWithRecall();
    ASSERT_NE(srv, nullptr);
    repo = repo_;
    HttpClient c;
    ASSERT_EQ(Do(c, "PUT", "/cache/gradle/0123456789abcdef0123456789abcdef", "a").status, 200);
    ASSERT_EQ(Do(c, "PUT", "/cache/gradle/fedcba9876543210fedcba9876543210", "b").status, 200);
    srv->Shutdown(absl::Seconds(2));
  }
  auto registry = RepoStore(repo);
  ASSERT_NE(registry, nullptr);
  cache::LookupOptions quiet;
  quiet.touch = false;
  auto first = registry->Lookup(cache::RecallKey("http:kv:gradle"), quiet);
  ASSERT_TRUE(first.ok()) << first.status();
  auto saved_list = [&](const cache::Entry& e) {
    std::string blob;
    oci::StringSink sink(&blob);
    EXPECT_TRUE(registry->ReadBlob(e.blobs.at(0).digest, 0, sink).ok());
    auto keys = cache::ParseRecallList(blob);
    EXPECT_TRUE(keys.ok()) << keys.status();
    return keys.ok() ? *keys : std::vector<std::string>{};
  };
  EXPECT_EQ(saved_list(*first),
            (std::vector<std::string>{"http:kv:gradle:0123456789abcdef0123456789abcdef",
                                      "http:kv:gradle:fedcba9876543210fedcba9876543210"}));
  absl::SleepFor(absl::Milliseconds(1100));  // a rewrite would carry a later created time
  {
    // The same two keys used again, in the other order: the list stays.
    auto srv = ServeWithRecall(repo);
    ASSERT_NE(srv, nullptr);
    HttpClient c;
    EXPECT_EQ(Do(c, "GET", "/cache/gradle/fedcba9876543210fedcba9876543210").body, "b");
    EXPECT_EQ(Do(c, "GET", "/cache/gradle/0123456789abcdef0123456789abcdef").body, "a");
    ASSERT_FALSE(RecallWhenDone(c, base_, "http:kv:gradle").is_null());
    srv->Shutdown(absl::Seconds(2));
  }
  auto second = registry->Lookup(cache::RecallKey("http:kv:gradle"), quiet);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->created, first->created);
  {
    // One key only: the next list is what this server's clients used.
    auto srv = ServeWithRecall(repo);
    ASSERT_NE(srv, nullptr);
    HttpClient c;
    EXPECT_EQ(Do(c, "GET", "/cache/gradle/fedcba9876543210fedcba9876543210").body, "b");
    srv->Shutdown(absl::Seconds(2));
  }
  auto third = registry->Lookup(cache::RecallKey("http:kv:gradle"), quiet);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(saved_list(*third),
            (std::vector<std::string>{"http:kv:gradle:fedcba9876543210fedcba9876543210"}));
}

TEST_F(HttpTest, TurborepoTeamsStatusEventsAndQuery) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  HttpReply st = Do(c, "GET", "/v8/artifacts/status");
  EXPECT_EQ(st.status, 200);
  EXPECT_EQ(st.body, R"({"status":"enabled"})");
  EXPECT_EQ(Do(c, "POST", "/v8/artifacts/events?teamId=t1",
               R"([{"source":"LOCAL","event":"HIT","hash":"aa","duration":1}])",
               {"Content-Type: application/json"})
                .status,
            200);
  EXPECT_EQ(Do(c, "HEAD", "/v8/artifacts/abcdef0123456789?teamId=t1").status, 404);
  EXPECT_EQ(Do(c, "PUT", "/v8/artifacts/abcdef0123456789?teamId=t1", "one",
               {"x-artifact-duration: 77"})
                .status,
            200);
  EXPECT_EQ(Do(c, "HEAD", "/v8/artifacts/abcdef0123456789?teamId=t1").status, 200);
  // Another team (or slug) is another namespace.
  EXPECT_EQ(Do(c, "GET", "/v8/artifacts/abcdef0123456789?teamId=t2").status, 404);
  EXPECT_EQ(Do(c, "GET", "/v8/artifacts/abcdef0123456789?slug=t1").status, 200);
  HttpReply q = Do(c, "POST", "/v8/artifacts?teamId=t1",
                   R"({"hashes":["abcdef0123456789","ffff000011112222"]})",
                   {"Content-Type: application/json"});
  EXPECT_EQ(q.status, 200);
  auto j = nlohmann::json::parse(q.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << q.body;
  EXPECT_EQ(j["abcdef0123456789"]["size"], 3);
  EXPECT_EQ(j["abcdef0123456789"]["taskDurationMs"], 77);
  EXPECT_TRUE(j["ffff000011112222"].is_null());
  EXPECT_EQ(Do(c, "PUT", "/v8/artifacts/abcdef0123456789?teamId=t1", "x",
               {"x-artifact-duration: soon"})
                .status,
            400);
}

TEST_F(HttpTest, NxNeverOverwritesAndReadOnlyTokensCannotWrite) {
  Setup s;
  s.auth = *rpc::TokenAuth::Parse(absl::StrCat(kReadToken, " read\n", kWriteToken, " write\n"));
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  std::string w = absl::StrCat("Authorization: Bearer ", kWriteToken);
  std::string r = absl::StrCat("Authorization: Bearer ", kReadToken);
  EXPECT_EQ(Do(c, "GET", "/v1/cache/123456789", "", {w}).status, 404);
  EXPECT_EQ(Do(c, "PUT", "/v1/cache/123456789", "tar", {r}).status, 403);
  EXPECT_EQ(Do(c, "PUT", "/v1/cache/123456789", "tar", {w}).status, 200);
  EXPECT_EQ(Do(c, "PUT", "/v1/cache/123456789", "other", {w}).status, 409);
  HttpReply got = Do(c, "GET", "/v1/cache/123456789", "", {r});
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, "tar");
  // Nx stops the run on a 401 whose Content-Type is not exactly text/plain.
  HttpReply unauthorized = Do(c, "GET", "/v1/cache/123456789");
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_EQ(unauthorized.header("content-type"), "text/plain");
  // Turborepo reads refusals as {"error": {"code", "message"}}.
  HttpReply turbo = Do(c, "PUT", "/v8/artifacts/abcdef?slug=s", "x", {r});
  EXPECT_EQ(turbo.status, 403);
  auto j = nlohmann::json::parse(turbo.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << turbo.body;
  EXPECT_EQ(j["error"]["code"], "forbidden") << turbo.body;
  EXPECT_TRUE(j["error"]["message"].is_string());
}

// A fresh server's event loop tries the answers known before a body from its
// empty local tier; those that need the registry (an Nx hash stored already,
// a CAS blob present) are given on the request's own thread instead, the same
// as before the event loop.
TEST_F(HttpTest, AnswersBeforeTheBodyThatNeedTheRegistryHoldOnAFreshMachine) {
  std::string repo;
  std::string blob = Pattern(256 << 10, 23);
  {
    auto srv = Serve({});
    ASSERT_NE(srv, nullptr);
    repo = repo_;
    HttpClient c;
    ASSERT_EQ(Do(c, "PUT", "/v1/cache/987654321", "tar").status, 200);
    ASSERT_EQ(Do(c, "PUT", "/cas/" + Hex(blob), blob).status, 200);
    srv->Shutdown(absl::Seconds(2));
  }
  Setup s;
  s.repo = repo;  // a new, empty local directory; recall off
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  EXPECT_EQ(Do(c, "PUT", "/v1/cache/987654321", "other").status, 409);
  EXPECT_EQ(Do(c, "GET", "/v1/cache/987654321").body, "tar");
  size_t uploads_before = RegistryPuts();
  HttpReply again = Do(c, "PUT", "/cas/" + Hex(blob), blob);
  EXPECT_EQ(again.status, 200);
  EXPECT_GT(uploads_before, 0u) << "the registry log shows no uploads at all";
  EXPECT_EQ(RegistryPuts(), uploads_before) << "a blob the registry has was uploaded again";
}

// A registry-only server in an outage: reads are misses; writes it cannot
// keep are 503, except to Nx, which fails its whole run on a 5xx and takes a
// 403 ("not stored") quietly.
TEST_F(HttpTest, RegistryOnlyOutageNeverAnswersNxWith5xx) {
  Setup s;
  s.dir = false;
  s.read_timeout = absl::Seconds(2);
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  ASSERT_TRUE(registry_->Stop().ok());
  EXPECT_EQ(Do(c, "GET", "/v1/cache/1234").status, 404);
  EXPECT_EQ(Do(c, "PUT", "/v1/cache/1234", "tar").status, 403);
  EXPECT_EQ(Do(c, "PUT", "/cache/ns/k", "v").status, 503);
  EXPECT_EQ(Do(c, "GET", "/cache/ns/k").status, 404);
  ASSERT_TRUE(registry_->Restart().ok());
}

TEST_F(HttpTest, TokensAsBearerOrBasicInEitherBase64Alphabet) {
  Setup s;
  // A token whose base64 differs between the two alphabets ('?' and '>' encode to / and +).
  std::string token = "tok??>>tok??>>tok??>>";
  s.auth = *rpc::TokenAuth::Parse(absl::StrCat(kReadToken, " read\n", token, " write\n"));
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  HttpReply none = Do(c, "PUT", "/cache/ns/k", "v");
  EXPECT_EQ(none.status, 401);
  EXPECT_FALSE(none.header("www-authenticate").empty());
  EXPECT_EQ(Do(c, "GET", "/cache/ns/k", "", {"Authorization: Bearer not-a-token-at-all"}).status,
            401);
  std::string userpass = "anyone:" + token;
  std::string std64 = absl::Base64Escape(userpass), url64 = absl::WebSafeBase64Escape(userpass);
  ASSERT_NE(std64, url64);
  EXPECT_EQ(Do(c, "PUT", "/cache/ns/k", "v", {"Authorization: Basic " + std64}).status, 200);
  EXPECT_EQ(Do(c, "GET", "/cache/ns/k", "", {"Authorization: Basic " + url64}).status, 200);
  EXPECT_EQ(Do(c, "PUT", "/cache/ns/k", "v2",
               {"Authorization: Basic " + absl::Base64Escape(absl::StrCat("u:", kReadToken))})
                .status,
            403);
  // A client that waits for 100 Continue gets the refusal instead, body unsent.
  HttpCall call;
  call.method = "PUT";
  call.url = base_ + "/cache/ns/big";
  call.body = Pattern(1 << 20, 3);
  call.expect_continue = true;
  call.headers = {absl::StrCat("Authorization: Bearer ", kReadToken)};
  auto refused = harness::HttpDo(call);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->status, 403);
  EXPECT_FALSE(refused->got_100_continue);
  // /status stays open, like the health service.
  EXPECT_EQ(Do(c, "GET", "/status").status, 200);
}

class GrpcReapi {
 public:
  explicit GrpcReapi(const std::string& address)
      : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        ac_(v2::ActionCache::NewStub(channel_)),
        cas_(v2::ContentAddressableStorage::NewStub(channel_)) {}
  grpc::Status Get(const std::string& instance, const v2::Digest& action, v2::ActionResult* out) {
    grpc::ClientContext ctx;
    v2::GetActionResultRequest req;
    req.set_instance_name(instance);
    *req.mutable_action_digest() = action;
    return ac_->GetActionResult(&ctx, req, out);
  }
  grpc::Status Update(const std::string& instance, const v2::Digest& action,
                      const v2::ActionResult& r) {
    grpc::ClientContext ctx;
    v2::UpdateActionResultRequest req;
    req.set_instance_name(instance);
    *req.mutable_action_digest() = action;
    *req.mutable_action_result() = r;
    v2::ActionResult out;
    return ac_->UpdateActionResult(&ctx, req, &out);
  }
  grpc::Status Upload(const std::string& instance, const std::string& data) {
    grpc::ClientContext ctx;
    v2::BatchUpdateBlobsRequest req;
    req.set_instance_name(instance);
    auto* r = req.add_requests();
    r->mutable_digest()->set_hash(Hex(data));
    r->mutable_digest()->set_size_bytes(static_cast<int64_t>(data.size()));
    r->set_data(data);
    v2::BatchUpdateBlobsResponse resp;
    grpc::Status s = cas_->BatchUpdateBlobs(&ctx, req, &resp);
    if (s.ok() && resp.responses(0).status().code() != 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL, resp.responses(0).status().message());
    }
    return s;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v2::ActionCache::Stub> ac_;
  std::unique_ptr<v2::ContentAddressableStorage::Stub> cas_;
};

v2::Digest D(absl::string_view data) {
  v2::Digest d;
  d.set_hash(Hex(data));
  d.set_size_bytes(static_cast<int64_t>(data.size()));
  return d;
}

TEST_F(HttpTest, AFreshServerPrefetchesActionResultsAndTheirBlobs) {
  constexpr int kActions = 6;
  std::vector<std::string> outputs;
  for (int i = 0; i < kActions; ++i) outputs.push_back(Pattern(20000 + i, 40 + i));
  auto action = [](int i) { return absl::StrCat("recalled action ", i); };
  std::string repo;
  {
    auto srv = ServeWithRecall();
    ASSERT_NE(srv, nullptr);
    repo = repo_;
    HttpClient c;
    for (int i = 0; i < kActions; ++i) {
      ASSERT_EQ(Do(c, "PUT", "/cas/" + Hex(outputs[i]), outputs[i]).status, 200);
      v2::ActionResult result;
      auto* f = result.add_output_files();
      f->set_path("out");
      *f->mutable_digest() = D(outputs[i]);
      ASSERT_EQ(Do(c, "PUT", "/ac/" + Hex(action(i)), result.SerializeAsString()).status, 200);
    }
    srv->Shutdown(absl::Seconds(2));  // saves recall:ac
  }
  auto srv = ServeWithRecall(repo);  // a fresh machine
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  ASSERT_EQ(Do(c, "GET", "/ac/" + Hex(action(0))).status, 200);
  nlohmann::json g = RecallWhenDone(c, base_, "ac");
  ASSERT_FALSE(g.is_null()) << "the prefetch did not end within 30 s";
  EXPECT_EQ(g["listed"], kActions);
  EXPECT_EQ(g["prefetched"], kActions);
  RegistryDown down;
  for (int i = 1; i < kActions; ++i) {
    HttpReply hit = Do(c, "GET", "/ac/" + Hex(action(i)));
    EXPECT_EQ(hit.status, 200) << "action " << i;
    HttpReply blob = Do(c, "GET", "/cas/" + Hex(outputs[i]));
    EXPECT_EQ(blob.status, 200) << "output " << i;
    EXPECT_TRUE(blob.body == outputs[i]) << "output " << i;
  }
}

TEST_F(HttpTest, BazelActionsAreSharedWithTheGrpcEndpoint) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  GrpcReapi grpc_client(srv->address());
  for (std::string instance : {"", "team/x"}) {
    SCOPED_TRACE(instance);
    std::string prefix = instance.empty() ? "" : "/" + instance;
    std::string out1 = Pattern(5000, 10), out2 = Pattern(3 << 20, 11);
    std::string action = "action " + instance;
    // Stored over HTTP as Bazel does: the outputs, then the result.
    EXPECT_EQ(Do(c, "PUT", prefix + "/cas/" + Hex(out1), out1).status, 200);
    EXPECT_EQ(Do(c, "PUT", prefix + "/cas/" + Hex(out2), out2).status, 200);
    v2::ActionResult result;
    auto* f = result.add_output_files();
    f->set_path("out/a");
    *f->mutable_digest() = D(out1);
    f = result.add_output_files();
    f->set_path("out/b");
    *f->mutable_digest() = D(out2);
    result.set_exit_code(0);
    EXPECT_EQ(Do(c, "PUT", prefix + "/ac/" + Hex(action), result.SerializeAsString()).status, 200);
    // A hit over gRPC.
    v2::ActionResult got;
    grpc::Status gs = grpc_client.Get(instance, D(action), &got);
    ASSERT_TRUE(gs.ok()) << gs.error_message();
    ASSERT_EQ(got.output_files_size(), 2);
    EXPECT_EQ(got.output_files(1).digest().hash(), Hex(out2));
    // And back: a result stored over gRPC is a hit over HTTP.
    std::string other = "other action " + instance, out3 = "third output";
    ASSERT_TRUE(grpc_client.Upload(instance, out3).ok());
    v2::ActionResult r3;
    auto* f3 = r3.add_output_files();
    f3->set_path("c");
    *f3->mutable_digest() = D(out3);
    ASSERT_TRUE(grpc_client.Update(instance, D(other), r3).ok());
    HttpReply hit = Do(c, "GET", prefix + "/ac/" + Hex(other));
    ASSERT_EQ(hit.status, 200);
    v2::ActionResult parsed;
    ASSERT_TRUE(parsed.ParseFromString(hit.body));
    EXPECT_EQ(parsed.output_files(0).digest().hash(), Hex(out3));
    EXPECT_EQ(Do(c, "GET", prefix + "/cas/" + Hex(out3)).body, out3);
    HttpReply large = Do(c, "GET", prefix + "/cas/" + Hex(out2));
    EXPECT_TRUE(large.body == out2);
  }
  // A result naming a blob that is absent is refused, and so never served.
  v2::ActionResult bad;
  auto* f = bad.add_output_files();
  f->set_path("x");
  *f->mutable_digest() = D("never uploaded");
  EXPECT_EQ(Do(c, "PUT", "/ac/" + Hex("bad action"), bad.SerializeAsString()).status, 400);
  EXPECT_EQ(Do(c, "GET", "/ac/" + Hex("bad action")).status, 404);
  EXPECT_EQ(Do(c, "PUT", "/ac/" + Hex("junk"), "\xff\xff\xff not a proto").status, 400);
}

TEST_F(HttpTest, CasBodiesAreVerifiedAndRepeatedPutsCostNoUpload) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  std::string blob = Pattern(1 << 20, 20);
  EXPECT_EQ(Do(c, "PUT", "/cas/" + Hex("something else"), blob).status, 400);
  EXPECT_EQ(Do(c, "GET", "/cas/" + Hex("something else")).status, 404);
  EXPECT_EQ(Do(c, "GET", "/cas/" + Hex(blob)).status, 404);
  EXPECT_EQ(Do(c, "PUT", "/cas/" + Hex(blob), blob).status, 200);
  // Bazel PUTs every output again on each build: answered without a write.
  for (int i = 0; i < 5; ++i) {
    HttpReply again = Do(c, "PUT", "/cas/" + Hex(blob), blob);
    EXPECT_EQ(again.status, 200);
  }
  // Chunked uploads (no Content-Length) are verified the same way.
  HttpCall call;
  call.method = "PUT";
  call.url = base_ + "/cas/" + Hex("chunked blob");
  call.body = "chunked blob";
  call.chunked = true;
  auto ok = c.Do(call);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200);
  call.url = base_ + "/cas/" + Hex("a different blob");
  auto bad = c.Do(call);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(Do(c, "GET", "/cas/" + Hex("chunked blob")).body, "chunked blob");
}

TEST_F(HttpTest, RepeatedCasPutsSendNothingToTheRegistry) {
  Setup s;
  s.dir = false;  // registry only: every write would be a registry upload
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  std::string blob = Pattern(256 << 10, 21);
  ASSERT_EQ(Do(c, "PUT", "/cas/" + Hex(blob), blob).status, 200);
  // The existence answer is cached: five more PUTs reach the registry at most once.
  size_t uploads_before = RegistryPuts();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Do(c, "PUT", "/cas/" + Hex(blob), blob).status, 200);
  EXPECT_GT(uploads_before, 0u) << "the registry log shows no uploads at all";
  EXPECT_EQ(RegistryPuts(), uploads_before);
}

TEST_F(HttpTest, BadRequestsGetA4xxStoreNothingAndTheServerGoesOn) {
  Setup s;
  s.max_body = 1 << 20;
  s.max_header = 16 << 10;
  s.idle_timeout = absl::Seconds(2);
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  struct Case {
    std::string method, path;
    int want;
  };
  for (const Case& k : std::vector<Case>{
           {"GET", "/cache/ns/%2e%2e/x", 400},
           {"GET", "/cache/ns/a%2fb/..", 400},
           {"GET", "/cache/NS/k", 400},
           {"GET", "/cache/ns", 400},
           {"GET", "/cache/ns/", 400},
           {"GET", "/cache//ns/k", 400},
           {"GET", "/ac/XYZ", 400},
           {"GET", "/ac/" + std::string(63, 'a'), 400},
           {"GET", "/cas/" + std::string(64, 'A'), 400},
           {"GET", "/v8/artifacts/a.b", 400},
           {"GET", "/v8/artifacts/abc?teamId=../x", 400},
           {"GET", "/v1/cache/" + std::string(200, '1'), 400},
           {"POST", "/cache/ns/k", 405},
           {"DELETE", "/v1/cache/123", 405},
           {"GET", "/nothing/here", 404},
           {"GET", "/" + std::string(3000, 'a'), 414},
       }) {
    HttpCall call;
    call.method = k.method;
    call.url = base_ + k.path;
    auto r = c.Do(call);
    ASSERT_TRUE(r.ok()) << k.path.substr(0, 80) << ": " << r.status();
    EXPECT_EQ(r->status, k.want) << k.method << " " << k.path.substr(0, 80) << ": " << r->body;
  }
  // Path traversal, sent as is (curl would normalise "..").
  for (std::string path : std::vector<std::string>{"/cache/ns/../../etc/passwd", "/cache/ns/k/..",
                                                   "/../cas/" + Hex("x")}) {
    std::string raw = Raw(srv->http_port(), "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n",
                          absl::Seconds(1));
    EXPECT_TRUE(absl::StartsWith(raw, "HTTP/1.1 400")) << path << ": " << raw.substr(0, 200);
  }
  // Oversized header block.
  HttpCall huge_header;
  huge_header.url = base_ + "/cache/ns/k";
  huge_header.headers = {"X-Padding: " + std::string(40 << 10, 'p')};
  auto r = c.Do(huge_header);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 431);
  // Beyond libmicrohttpd's own buffer (128 KiB): refused too (its own answer).
  huge_header.headers = {"X-Padding: " + std::string(600 << 10, 'p')};
  auto r2 = harness::HttpDo(huge_header);
  if (r2.ok()) {
    EXPECT_GE(r2->status, 400) << r2->body;
  } else {
    EXPECT_TRUE(absl::IsUnavailable(r2.status())) << r2.status();
  }
  // A declared body over the limit is refused before it is read...
  std::string raw = Raw(srv->http_port(),
                        "PUT /cache/ns/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n"
                        "Expect: 100-continue\r\n\r\n",
                        absl::Seconds(3));
  EXPECT_TRUE(absl::StartsWith(raw, "HTTP/1.1 413")) << raw.substr(0, 200);
  // ...also without Expect: the refusal comes before the 2 GB, not after.
  raw = Raw(srv->http_port(),
            "PUT /cache/ns/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n" +
                std::string(1000, 'h'),
            absl::Milliseconds(1500));
  EXPECT_TRUE(absl::StartsWith(raw, "HTTP/1.1 413")) << raw.substr(0, 200);
  // ...a chunked one when it passes it.
  HttpCall chunked;
  chunked.method = "PUT";
  chunked.url = base_ + "/cache/ns/huge";
  chunked.body = Pattern(3 << 20, 30);
  chunked.chunked = true;
  auto big = harness::HttpDo(chunked);
  // curl may see the connection close before it reads the 413.
  if (big.ok()) {
    EXPECT_EQ(big->status, 413);
  } else {
    EXPECT_TRUE(absl::IsUnavailable(big.status())) << big.status();
  }
  EXPECT_EQ(Do(c, "GET", "/cache/ns/huge").status, 404);
  // A body shorter than its Content-Length: nothing is stored, whether the
  // client closes its side or just stops sending (the idle timeout ends it).
  for (bool shut : {true, false}) {
    std::string partial = Raw(srv->http_port(),
                              "PUT /cache/ns/short HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" +
                                  std::string(40, 's'),
                              absl::Seconds(4), shut);
    EXPECT_FALSE(absl::StartsWith(partial, "HTTP/1.1 2")) << partial;
    EXPECT_EQ(Do(c, "GET", "/cache/ns/short").status, 404);
    std::string partial_cas =
        Raw(srv->http_port(),
            absl::StrCat("PUT /cas/", Hex(std::string(100, 'c')),
                         " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", std::string(40, 'c')),
            absl::Seconds(4), shut);
    EXPECT_FALSE(absl::StartsWith(partial_cas, "HTTP/1.1 2")) << partial_cas;
    EXPECT_EQ(Do(c, "GET", "/cas/" + Hex(std::string(100, 'c'))).status, 404);
  }
  // Garbage instead of HTTP.
  std::string junk = Raw(srv->http_port(), "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
                         absl::Seconds(2));
  EXPECT_FALSE(absl::StartsWith(junk, "HTTP/1.1 2")) << junk;
  // The server still serves.
  EXPECT_EQ(Do(c, "PUT", "/cache/ns/after", "fine").status, 200);
  EXPECT_EQ(Do(c, "GET", "/cache/ns/after").body, "fine");
}

TEST_F(HttpTest, WithTheRegistryDownReadsMissAndWritesWaitInTheLocalTier) {
  Setup s;
  s.read_timeout = absl::Seconds(2);
  auto srv = Serve(s);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  ASSERT_EQ(Do(c, "PUT", "/cache/ns/before", "stored before").status, 200);
  ASSERT_TRUE(registry_->Stop().ok());
  absl::Time start = absl::Now();
  HttpReply miss = Do(c, "GET", "/cache/ns/absent");
  EXPECT_EQ(miss.status, 404);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // the read timeout bounds it
  EXPECT_EQ(Do(c, "GET", "/cache/ns/before").body, "stored before");  // local tier
  EXPECT_EQ(Do(c, "PUT", "/cache/ns/during", "stored during the outage").status, 200);
  EXPECT_EQ(Do(c, "GET", "/cas/" + Hex("nothing")).status, 404);
  EXPECT_EQ(Do(c, "GET", "/ac/" + Hex("nothing")).status, 404);
  ASSERT_TRUE(registry_->Restart().ok());
  // The backlog reaches the registry: a fresh server with an empty directory finds it.
  std::string repo = repo_;
  absl::Time until = absl::Now() + absl::Seconds(30);
  int status = 0;
  while (absl::Now() < until) {
    Setup fresh;
    fresh.repo = repo;
    fresh.dir = false;
    auto other = Serve(fresh);
    ASSERT_NE(other, nullptr);
    HttpClient c2;
    status = Do(c2, "GET", "/cache/ns/during").status;
    other->Shutdown(absl::ZeroDuration());
    if (status == 200) break;
    absl::SleepFor(absl::Milliseconds(500));
  }
  EXPECT_EQ(status, 200);
}

TEST_F(HttpTest, LargeBodiesStreamBothWays) {
  auto srv = Serve({});
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  std::string big = Pattern(48 << 20, 40);
  HttpCall put;
  put.method = "PUT";
  put.url = base_ + "/cache/ns/big";
  put.body = big;
  put.timeout_ms = 60000;
  auto r = c.Do(put);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  put.url = base_ + "/cas/" + Hex(big);
  put.chunked = true;
  r = c.Do(put);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  for (std::string path : {std::string("/cache/ns/big"), std::string("/cas/") + Hex(big)}) {
    HttpCall get;
    get.url = base_ + path;
    get.timeout_ms = 60000;
    auto g = c.Do(get);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->status, 200);
    EXPECT_TRUE(g->body == big) << path;
  }
}

TEST_F(HttpTest, StatusAndMetricsCountEachProtocol) {
  Setup setup;
  setup.metrics = true;
  auto srv = Serve(setup);
  ASSERT_NE(srv, nullptr);
  HttpClient c;
  Do(c, "GET", "/cache/ns/a");
  Do(c, "PUT", "/cache/ns/a", "x");
  Do(c, "GET", "/cache/ns/a");
  Do(c, "GET", "/v1/cache/42");
  HttpReply st = Do(c, "GET", "/status");
  auto j = nlohmann::json::parse(st.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << st.body;
  EXPECT_EQ(j["protocols"]["kv"]["hits"], 1);
  EXPECT_EQ(j["protocols"]["kv"]["misses"], 1);
  EXPECT_EQ(j["protocols"]["kv"]["requests"], 3);
  EXPECT_EQ(j["protocols"]["nx"]["misses"], 1);
  EXPECT_EQ(j["protocols"]["kv"]["hit_ratio"], 0.5);
  EXPECT_TRUE(absl::StrContains(j["store"].get<std::string>(), "registry"));
  auto m = harness::HttpDo(HttpCall{
      .url = absl::StrCat("http://127.0.0.1:", srv->metrics_port(), "/metrics")});
  ASSERT_TRUE(m.ok()) << m.status();
  for (const char* want : {
           "ocicached_http_hits_total{protocol=\"kv\"} 1\n",
           "ocicached_http_misses_total{protocol=\"nx\"} 1\n",
           "ocicached_http_requests_total{protocol=\"kv\",method=\"PUT\",code=\"200\"} 1\n",
           "ocicached_http_received_bytes_total{protocol=\"kv\"} 1\n",
           "ocicached_http_stored_bytes_total{protocol=\"kv\"} 1\n",
           "ocicached_http_request_duration_seconds_count{protocol=\"kv\"} 3\n",
       }) {
    EXPECT_TRUE(absl::StrContains(m->body, want)) << want;
  }
}

}  // namespace
}  // namespace ocicache
