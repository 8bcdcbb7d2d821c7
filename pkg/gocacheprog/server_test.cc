// The GOCACHEPROG server driven through in-memory streams: a LayoutStore in a
// temp dir, and for the remote cases a real docker-registry or a fake failing one.
#include "pkg/gocacheprog/server.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/registry_store.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/gocacheprog/stream.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/registry/client.h"
#include "test/harness/fake_http.h"
#include "test/harness/registry.h"

namespace ocicache::gocacheprog {
namespace {

using json = nlohmann::json;

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string t = absl::StrCat(base != nullptr ? base : "/tmp", "/gcp.XXXXXX");
  char* d = ::mkdtemp(t.data());
  EXPECT_NE(d, nullptr);
  return t;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string ActionID(int i) { return oci::Digest::Of(absl::StrCat("action-", i)).raw(); }
std::string Body(int i, size_t n) {
  std::string s;
  std::mt19937 rng(i);
  s.resize(n);
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Requests as go writes them: the JSON, '\n', another '\n', then the body line.
std::string Get(int64_t id, const std::string& action) {
  return absl::StrCat(R"({"ID":)", id, R"(,"Command":"get","ActionID":")", Base64Encode(action),
                      "\"}\n\n");
}
std::string Put(int64_t id, const std::string& action, const std::string& body,
                std::string object = "") {
  if (object.empty()) object = oci::Digest::Of(body).raw();
  std::string s = absl::StrCat(R"({"ID":)", id, R"(,"Command":"put","ActionID":")",
                               Base64Encode(action), R"(","ObjectID":")", Base64Encode(object),
                               "\"");
  if (!body.empty()) absl::StrAppend(&s, ",\"BodySize\":", body.size());
  absl::StrAppend(&s, "}\n\n");
  if (!body.empty()) absl::StrAppend(&s, "\"", Base64Encode(body), "\"\n");
  return s;
}
std::string Close(int64_t id) { return absl::StrCat(R"({"ID":)", id, R"(,"Command":"close"})", "\n\n"); }

struct Result {
  int rc = -1;
  std::string first;              // the hello line
  std::map<int64_t, json> by_id;  // every other response
  int duplicates = 0;
  std::vector<std::string> warnings;
  ServerStats stats;
  bool has(int64_t id) const { return by_id.count(id) > 0; }
  const json& at(int64_t id) const { return by_id.at(id); }
  std::string err(int64_t id) const {
    auto it = by_id.find(id);
    if (it == by_id.end() || !it->second.contains("Err")) return "";
    return it->second["Err"].get<std::string>();
  }
};

class Fixture {
 public:
  explicit Fixture(std::string dir = TempDir()) : dir_(std::move(dir)) {
    layout::LayoutStore::Options o;
    o.index_interval = absl::Seconds(1);
    auto l = layout::LayoutStore::Open(dir_, o);
    EXPECT_TRUE(l.ok()) << l.status();
    local = *std::move(l);
  }

  Result Run(const std::string& input, ServerOptions opts = {}, cache::Store* lookup = nullptr,
             cache::Store* upload = nullptr) {
    Result res;
    auto warnings = std::make_shared<std::vector<std::string>>();
    auto mu = std::make_shared<absl::Mutex>();
    opts.warn = [warnings, mu](absl::string_view w) {
      absl::MutexLock l(mu.get());
      warnings->emplace_back(w);
    };
    auto server = Server::Create(local.get(), lookup, upload, opts);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return res;
    std::istringstream in(input);
    IstreamInput input_stream(&in);
    std::ostringstream out;
    res.rc = (*server)->Serve(input_stream, out);
    res.stats = (*server)->stats();
    empty_path = (*server)->empty_path();
    server->reset();
    {
      absl::MutexLock l(mu.get());
      res.warnings = *warnings;
    }
    std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i == 0) {
        res.first = lines[0];
        continue;
      }
      json j = json::parse(lines[i], nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << lines[i];
      if (j.is_discarded()) continue;
      int64_t id = j["ID"].get<int64_t>();
      if (res.by_id.count(id)) ++res.duplicates;
      res.by_id[id] = j;
    }
    return res;
  }

  std::string dir_;
  std::unique_ptr<layout::LayoutStore> local;
  std::string empty_path;
};

// Checks a get hit for `body`, and that DiskPath holds it.
void ExpectHit(const Result& r, int64_t id, const std::string& body) {
  ASSERT_TRUE(r.has(id)) << id;
  const json& j = r.at(id);
  ASSERT_FALSE(j.contains("Miss")) << j.dump();
  ASSERT_FALSE(j.contains("Err")) << j.dump();
  EXPECT_EQ(j["OutputID"], Base64Encode(oci::Digest::Of(body).raw()));
  EXPECT_EQ(j.value("Size", int64_t{0}), static_cast<int64_t>(body.size()));
  EXPECT_TRUE(j["Time"].is_string());
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, j["Time"].get<std::string>(), &t, &err)) << err;
  std::string path = j["DiskPath"];
  EXPECT_EQ(path[0], '/');
  EXPECT_EQ(ReadFile(path), body);
}

void ExpectMiss(const Result& r, int64_t id) {
  ASSERT_TRUE(r.has(id)) << id;
  EXPECT_EQ(r.at(id), json::parse(absl::StrCat(R"({"ID":)", id, R"(,"Miss":true})")));
}

TEST(Server, HandshakeAndCleanEof) {
  Fixture f;
  Result r = f.Run("");
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.first, R"({"ID":0,"KnownCommands":["get","put","close"]})");
  EXPECT_TRUE(r.by_id.empty());
}

TEST(Server, GetMissPutThenGetHit) {
  Fixture f;
  std::string body = Body(1, 5000);
  // Gets run concurrently with the requests after them: the miss is its own run
  // (go waits for a miss before it builds and puts).
  Result miss = f.Run(Get(1, ActionID(1)) + Close(2));
  ExpectMiss(miss, 1);
  EXPECT_EQ(miss.stats.misses, 1);
  Result r = f.Run(Put(2, ActionID(1), body) + Get(3, ActionID(1)) + Close(4));
  EXPECT_EQ(r.rc, 0);
  ASSERT_TRUE(r.has(2));
  EXPECT_EQ(r.at(2).size(), 2u) << r.at(2).dump();  // ID and DiskPath only
  EXPECT_EQ(ReadFile(r.at(2)["DiskPath"]), body);
  EXPECT_EQ(r.at(2)["DiskPath"], f.local->BlobPath(oci::Digest::Of(body)));
  ExpectHit(r, 3, body);
  EXPECT_EQ(r.at(4), json::parse(R"({"ID":4})"));
  EXPECT_EQ(r.stats.gets, 1);
  EXPECT_EQ(r.stats.local_hits, 1);
  EXPECT_EQ(r.stats.misses, 0);
  EXPECT_EQ(r.stats.puts, 1);
  EXPECT_EQ(r.duplicates, 0);

  // The entry is in the cache format: key = hex ActionID, config, the blob.
  auto e = f.local->Lookup(Hex(ActionID(1)), {});
  ASSERT_TRUE(e.ok()) << e.status();
  json cfg = json::parse(e->config);
  EXPECT_EQ(cfg["kind"], "go-action");
  EXPECT_EQ(cfg["outputID"], oci::Digest::Of(body).str());
  EXPECT_EQ(cfg["size"], 5000);
  ASSERT_EQ(e->blobs.size(), 1u);
  EXPECT_EQ(e->blobs[0].digest, oci::Digest::Of(body));

  // A new process on the same directory hits locally.
  Result again = f.Run(Get(1, ActionID(1)) + Close(2));
  ExpectHit(again, 1, body);
}

TEST(Server, GoVersionAnnotation) {
  Fixture f;
  ServerOptions o;
  o.go_version = "go1.23.5 X:cacheprog";
  f.Run(Put(1, ActionID(1), "x"), o);
  auto e = f.local->Lookup(Hex(ActionID(1)), {});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->annotations.at("org.ocicache.tool.go"), "go1.23.5 X:cacheprog");
}

TEST(Server, ZeroSizeObject) {
  Fixture f;
  Result r = f.Run(Put(1, ActionID(7), "") + Get(2, ActionID(7)) + Close(3));
  ASSERT_TRUE(r.has(1));
  EXPECT_EQ(r.err(1), "");
  std::string path = r.at(1)["DiskPath"];
  EXPECT_EQ(path, f.empty_path);
  EXPECT_TRUE(FileExists(path));
  EXPECT_EQ(ReadFile(path), "");
  ExpectHit(r, 2, "");
  auto e = f.local->Lookup(Hex(ActionID(7)), {});
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->blobs.empty());  // never a zero-size blob
  EXPECT_EQ(json::parse(e->config)["size"], 0);

  // An empty put must name the empty object.
  Result bad = f.Run(Put(1, ActionID(8), "", oci::Digest::Of("not empty").raw()));
  EXPECT_NE(bad.err(1), "");
}

TEST(Server, ManyConcurrentGetsAnsweredOnceEach) {
  Fixture f;
  std::string in;
  std::vector<std::string> bodies;
  for (int i = 0; i < 40; ++i) {
    bodies.push_back(Body(i, 100 + i * 37));
    in += Put(1000 + i, ActionID(i), bodies.back());
  }
  for (int i = 0; i < 400; ++i) in += Get(i + 1, ActionID(i % 80));
  in += Close(9999);
  ServerOptions o;
  o.lookup_threads = 8;
  Result r = f.Run(in, o);
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.duplicates, 0);
  EXPECT_EQ(r.by_id.size(), 40u + 400u + 1u);
  for (int i = 0; i < 400; ++i) {
    int a = i % 80;
    if (a < 40) {
      ExpectHit(r, i + 1, bodies[a]);
    } else {
      ExpectMiss(r, i + 1);
    }
  }
  EXPECT_EQ(r.stats.local_hits, 200);
  EXPECT_EQ(r.stats.misses, 200);
}

TEST(Server, LargeBodyStreams) {
  Fixture f;
  std::string body = Body(3, (5 << 20) + 3);
  Result r = f.Run(Put(1, ActionID(3), body) + Get(2, ActionID(3)));
  EXPECT_EQ(r.err(1), "");
  ExpectHit(r, 2, body);
}

TEST(Server, BadRequestsAreErrorsForTheirId) {
  Fixture f;
  std::string body = Body(5, 300);
  std::string in;
  // Wrong-length ActionID on a get and on a put (whose body is skipped).
  in += absl::StrCat(R"({"ID":1,"Command":"get","ActionID":")", Base64Encode("short"), "\"}\n\n");
  in += absl::StrCat(R"({"ID":2,"Command":"put","ActionID":")", Base64Encode(std::string(31, 'a')),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":300})", "\n\n\"", Base64Encode(body), "\"\n");
  // Unknown command.
  in += R"({"ID":3,"Command":"frobnicate"})" "\n\n";
  // A get without ActionID.
  in += R"({"ID":4,"Command":"get"})" "\n\n";
  // Bad base64 in the body.
  in += absl::StrCat(R"({"ID":5,"Command":"put","ActionID":")", Base64Encode(ActionID(5)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":300})", "\n\n\"", Base64Encode(body).substr(0, 100), "*",
                     Base64Encode(body).substr(101), "\"\n");
  // A body shorter than BodySize.
  in += absl::StrCat(R"({"ID":6,"Command":"put","ActionID":")", Base64Encode(ActionID(6)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":301})", "\n\n\"", Base64Encode(body), "\"\n");
  // A body longer than BodySize.
  in += absl::StrCat(R"({"ID":7,"Command":"put","ActionID":")", Base64Encode(ActionID(7)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":299})", "\n\n\"", Base64Encode(body), "\"\n");
  // A body that does not hash to ObjectID.
  in += Put(8, ActionID(8), body, oci::Digest::Of("something else").raw());
  // A put whose body line is missing: the next request follows at once.
  in += absl::StrCat(R"({"ID":9,"Command":"put","ActionID":")", Base64Encode(ActionID(9)),
                     R"(","ObjectID":")", Base64Encode(oci::Digest::Of(body).raw()),
                     R"(","BodySize":300})", "\n\n");
  // A cut request line with its ID: an error for that ID; its body is skipped.
  in += absl::StrCat(R"({"ID":10,"Command":"put","ActionID":")", "\n\n\"",
                     Base64Encode(body), "\"\n");
  // A request line of 2 MiB.
  in += absl::StrCat(R"({"ID":11,"Command":"get","ActionID":")", std::string(2 << 20, 'A'),
                     "\"}\n\n");
  // And everything still works afterwards.
  in += Put(12, ActionID(12), body) + Get(13, ActionID(12));
  for (int id : {5, 6, 7, 8, 9}) in += Get(100 + id, ActionID(id));
  in += Close(14);

  Result r = f.Run(in);
  EXPECT_EQ(r.rc, 0);
  for (int id = 1; id <= 11; ++id) EXPECT_NE(r.err(id), "") << id << ": " << r.at(id).dump();
  EXPECT_TRUE(absl::StrContains(r.err(1), "5 bytes")) << r.err(1);
  EXPECT_TRUE(absl::StrContains(r.err(2), "31 bytes")) << r.err(2);
  EXPECT_TRUE(absl::StrContains(r.err(3), "unknown command")) << r.err(3);
  EXPECT_TRUE(absl::StrContains(r.err(5), "base64")) << r.err(5);
  EXPECT_TRUE(absl::StrContains(r.err(6), "300 bytes")) << r.err(6);
  EXPECT_TRUE(absl::StrContains(r.err(7), "longer")) << r.err(7);
  EXPECT_TRUE(absl::StrContains(r.err(8), "ObjectID")) << r.err(8);
  EXPECT_TRUE(absl::StrContains(r.err(9), "missing")) << r.err(9);
  EXPECT_TRUE(absl::StrContains(r.err(11), "too long")) << r.err(11);
  EXPECT_EQ(r.err(12), "");
  ExpectHit(r, 13, body);
  // Nothing was stored for the refused puts.
  for (int id : {5, 6, 7, 8, 9}) ExpectMiss(r, 100 + id);
  EXPECT_EQ(r.at(14), json::parse(R"({"ID":14})"));
  EXPECT_EQ(r.stats.errors, 11);
}

TEST(Server, GarbageLineStopsWithAnErrorLine) {
  Fixture f;
  std::string body = Body(9, 10);
  Result r = f.Run(Put(1, ActionID(1), body) + "this is not json\n" + Get(2, ActionID(1)));
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.err(1), "");
  EXPECT_FALSE(r.has(2));
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_TRUE(absl::StrContains(r.warnings.back(), "unusable request")) << r.warnings.back();
}

TEST(Server, StreamEndingInsideABody) {
  Fixture f;
  std::string body = Body(10, 1000);
  std::string put = Put(1, ActionID(1), body);
  Result r = f.Run(put.substr(0, put.size() - 200));
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err(1), "");
  Result r2 = f.Run(Get(1, ActionID(1)));
  ExpectMiss(r2, 1);
  // Nothing half-written was left as a blob.
  EXPECT_FALSE(FileExists(f.local->BlobPath(oci::Digest::Of(body))));
}

TEST(Server, PutOfAnExistingObjectIsVerified) {
  Fixture f;
  std::string body = Body(11, 2000);
  Result r = f.Run(Put(1, ActionID(1), body) + Put(2, ActionID(2), body) + Get(3, ActionID(2)));
  EXPECT_EQ(r.err(1), "");
  EXPECT_EQ(r.err(2), "");
  ExpectHit(r, 3, body);
  // Same digest claimed, different bytes of the same size: refused, blob intact.
  std::string other = Body(12, 2000);
  Result bad = f.Run(Put(1, ActionID(3), other, oci::Digest::Of(body).raw()));
  EXPECT_NE(bad.err(1), "");
  EXPECT_EQ(ReadFile(f.local->BlobPath(oci::Digest::Of(body))), body);
}

// ---------------------------------------------------------------------------
// With a registry.

std::unique_ptr<cache::RegistryStore> RegistryStoreFor(const std::string& host,
                                                       absl::Duration timeout,
                                                       int attempts) {
  registry::ClientOptions o;
  o.retry.max_attempts = attempts;
  o.retry.initial_backoff = absl::Milliseconds(10);
  o.retry.max_backoff = absl::Milliseconds(50);
  o.stall_timeout = timeout;
  o.connect_timeout = timeout;
  auto c = registry::Client::Create(host, o);
  EXPECT_TRUE(c.ok()) << c.status();
  auto s = cache::RegistryStore::Create(std::shared_ptr<registry::Client>(std::move(*c)),
                                        "go/cache");
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

class RegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto reg = harness::RegistryProcess::Start({});
    ASSERT_TRUE(reg.ok()) << reg.status();
    reg_ = reg->release();
  }
  static void TearDownTestSuite() {
    delete reg_;
    reg_ = nullptr;
  }
  static harness::RegistryProcess* reg_;
};
harness::RegistryProcess* RegistryTest::reg_ = nullptr;

TEST_F(RegistryTest, CloseFlushesUploadsAndAFreshDirectoryHitsRemotely) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  std::vector<std::string> bodies;
  std::string in;
  for (int i = 0; i < 12; ++i) {
    bodies.push_back(i == 0 ? std::string() : Body(100 + i, 50 * i * i + 1));
    in += Put(i + 1, ActionID(100 + i), bodies.back());
  }
  in += Close(99);
  Fixture a;
  ServerOptions o;
  o.go_version = "go1.23.5";
  Result ra = a.Run(in, o, lookup.get(), upload.get());
  EXPECT_EQ(ra.rc, 0);
  EXPECT_EQ(ra.stats.puts, 12);
  EXPECT_EQ(ra.stats.uploaded, 12) << absl::StrJoin(ra.warnings, "\n");
  EXPECT_EQ(ra.stats.upload_failures, 0);
  // Every entry is in the registry once close has answered.
  for (int i = 0; i < 12; ++i) {
    auto e = upload->Lookup(Hex(ActionID(100 + i)), {});
    ASSERT_TRUE(e.ok()) << i << ": " << e.status();
    EXPECT_EQ(e->annotations["org.ocicache.tool.go"], "go1.23.5");
  }

  // A fresh machine: empty directory, same registry.
  Fixture b;
  std::string gets;
  for (int i = 0; i < 12; ++i) gets += Get(i + 1, ActionID(100 + i));
  gets += Get(50, ActionID(5000));  // never stored
  for (int i = 0; i < 12; ++i) gets += Get(i + 101, ActionID(100 + i));
  gets += Get(150, ActionID(5000));  // a known miss now
  gets += Close(99);
  Result rb = b.Run(gets, {}, lookup.get(), upload.get());
  EXPECT_EQ(rb.rc, 0);
  for (int i = 0; i < 12; ++i) {
    ExpectHit(rb, i + 1, bodies[i]);
    ExpectHit(rb, i + 101, bodies[i]);
  }
  ExpectMiss(rb, 50);
  ExpectMiss(rb, 150);
  // The second round may race the first for the same keys, but every get hits.
  EXPECT_EQ(rb.stats.remote_hits + rb.stats.local_hits, 24);
  EXPECT_GE(rb.stats.remote_hits, 12);
  EXPECT_EQ(rb.stats.misses, 2);
  EXPECT_EQ(rb.stats.remote_errors, 0);
  // Filled into the local tier: a third process needs no registry.
  Fixture c(b.dir_);
  Result rc = c.Run(Get(1, ActionID(105)) + Close(2));
  ExpectHit(rc, 1, bodies[5]);
  EXPECT_EQ(rc.stats.local_hits, 1);
}

TEST_F(RegistryTest, SessionListPrefetchesTheNextBuild) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.test1";
  o.session_pack = false;  // the object-by-object path (the pack: next test)
  std::vector<std::string> bodies;
  std::string in;
  for (int i = 0; i < 30; ++i) {
    bodies.push_back(i % 7 == 0 ? std::string() : Body(300 + i, 1000 + 300 * i));
    in += Get(i + 100, ActionID(300 + i)) + Put(i + 1, ActionID(300 + i), bodies.back());
  }
  in += Close(99);
  Fixture a;
  Result ra = a.Run(in, o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 30);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 1u);

  // A fresh directory: the list is read at start and its objects prefetched; gets
  // are answered from the prefetch (or, if they come first, fetch it themselves).
  Fixture b;
  std::string gets;
  for (int i = 0; i < 30; ++i) gets += Get(i + 1, ActionID(300 + i));
  gets += Close(99);
  // One lookup thread: with many, gets racing the list read could all fetch their
  // objects themselves first on a loaded machine, leaving nothing to prefetch.
  ServerOptions ob = o;
  ob.lookup_threads = 1;
  Result rb = b.Run(gets, ob, lookup.get(), upload.get());
  for (int i = 0; i < 30; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.session_listed, 30);
  EXPECT_EQ(rb.stats.remote_hits + rb.stats.local_hits, 30);
  EXPECT_GT(rb.stats.prefetched + rb.stats.local_hits, 0);
  EXPECT_EQ(rb.stats.misses, 0);
  // The same build again does not rewrite the list.
  auto again = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->blobs[0].digest, list->blobs[0].digest);
  // Every prefetched object is recorded in the directory too.
  Fixture c(b.dir_);
  Result rc = c.Run(Get(1, ActionID(301)) + Close(2));
  ExpectHit(rc, 1, bodies[1]);
}

// The session pack: written at close beside the list (also for a list that had
// none), read in one stream by a fresh directory, skipped by a warm one.
TEST_F(RegistryTest, SessionPackFillsAFreshDirectoryInOneStream) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.pack1";
  o.session_pack = false;
  std::vector<std::string> bodies;
  std::string in;
  std::set<std::string> objects;
  for (int i = 0; i < 40; ++i) {
    // Empty objects, and pairs sharing an object (packed once).
    bodies.push_back(i % 9 == 0 ? std::string() : Body(400 + i % 30, 2000 + 100 * (i % 30)));
    if (!bodies.back().empty()) objects.insert(bodies.back());
    in += Put(i + 1, ActionID(400 + i), bodies.back());
  }
  int64_t distinct = 0;
  for (const auto& b : objects) distinct += static_cast<int64_t>(b.size());
  in += Close(99);
  Fixture a;
  Result ra = a.Run(in, o, lookup.get(), upload.get());
  EXPECT_EQ(ra.stats.uploaded, 40);
  EXPECT_EQ(ra.stats.pack_bytes_written, 0);
  auto list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 1u);

  // The same build with packs on: the unchanged list gets its pack.
  o.session_pack = true;
  Fixture a2(a.dir_);
  std::string again;
  for (int i = 0; i < 40; ++i) again += Get(i + 1, ActionID(400 + i));
  again += Close(99);
  Result ra2 = a2.Run(again, o, lookup.get(), upload.get());
  EXPECT_EQ(ra2.stats.local_hits, 40);
  EXPECT_EQ(ra2.stats.pack_bytes_written, distinct);
  list = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->blobs.size(), 2u);
  EXPECT_EQ(list->blobs[1].size, distinct);

  // A fresh directory: one stream brings every object; gets wait for it. Gets
  // that come before the list is read are looked up one by one, and the pack is
  // read only while most objects are still missing: one lookup thread keeps those
  // early lookups few even on a loaded machine (with 16 they could win the race).
  Fixture b;
  const int64_t before = lookup->client().request_count();
  ServerOptions ob = o;
  ob.lookup_threads = 1;
  Result rb = b.Run(again, ob, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.packs_read, 1);
  EXPECT_EQ(rb.stats.misses, 0);
  EXPECT_EQ(rb.stats.remote_hits, 40);
  EXPECT_EQ(rb.stats.pack_bytes_written, 0);  // unchanged: not written again
  // Session manifest + list + pack, plus lookups of gets that came before the list
  // was read (each a manifest GET and a blob GET): far fewer than one per object.
  const int64_t early = rb.stats.remote_hits - rb.stats.prefetched;
  EXPECT_LE(lookup->client().request_count() - before, 3 + 2 * early);
  // The pack read as three runs of whole objects, each a ranged GET of its own:
  // the same answers, and one more stat and GET per extra run.
  Fixture b3;
  ServerOptions o3 = ob;
  o3.pack_streams = 3;
  o3.pack_segment_min_bytes = 1;
  const int64_t before3 = lookup->client().request_count();
  Result rb3 = b3.Run(again, o3, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rb3, i + 1, bodies[i]);
  EXPECT_EQ(rb3.stats.packs_read, 1);
  EXPECT_EQ(rb3.stats.remote_hits, 40);
  const int64_t early3 = rb3.stats.remote_hits - rb3.stats.prefetched;
  // Session manifest and list, three pack GETs, two stats (the runs past offset 0).
  EXPECT_GE(lookup->client().request_count() - before3, 2 + 3 + 2);
  EXPECT_LE(lookup->client().request_count() - before3, 2 + 3 + 2 + 2 * early3);
  // The directory recorded the session before close was answered: all local hits
  // now, without a registry request.
  Fixture c3(b3.dir_);
  const int64_t before_c3 = lookup->client().request_count();
  Result rc3 = c3.Run(again, o, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rc3, i + 1, bodies[i]);
  EXPECT_EQ(rc3.stats.local_hits, 40);
  EXPECT_EQ(rc3.stats.packs_read, 0);
  EXPECT_EQ(lookup->client().request_count(), before_c3);
  // As one entry, the local session copy (the list and every object), not as one
  // entry per ActionID.
  // The last get: not one of the few that may come before the list is read (those
  // are looked up one by one and stored as entries of their own).
  const std::string key439 = oci::Digest::Of("action-439").hex();  // a non-empty object
  const std::string key400 = oci::Digest::Of("action-400").hex();  // an empty one
  {
    auto copy = c3.local->Lookup(o.session_key + ".local", {});
    ASSERT_TRUE(copy.ok()) << copy.status();
    EXPECT_TRUE(absl::StrContains(copy->config, R"("kind":"go-session-local")")) << copy->config;
    EXPECT_EQ(copy->blobs.size(), 1 + objects.size());
    EXPECT_TRUE(absl::IsNotFound(c3.local->Lookup(key439, {}).status()));
  }
  // The copy answers while the registry is down, and with no registry at all.
  auto down = RegistryStoreFor("127.0.0.1:1", absl::Seconds(2), 1);
  Fixture d3(b3.dir_);
  Result rd3 = d3.Run(again, o, down.get(), nullptr);
  for (int i = 0; i < 40; ++i) ExpectHit(rd3, i + 1, bodies[i]);
  EXPECT_EQ(rd3.stats.local_hits, 40);
  Fixture n3(b3.dir_);
  Result rn3 = n3.Run(again, o, nullptr, nullptr);
  for (int i = 0; i < 40; ++i) ExpectHit(rn3, i + 1, bodies[i]);
  EXPECT_EQ(rn3.stats.local_hits, 40);
  // A session of more objects than one manifest should list is recorded as one
  // entry per ActionID instead (the empty objects' too).
  Fixture b5;
  ServerOptions o5 = ob;
  o5.local_session_max_objects = 5;
  Result rb5 = b5.Run(again, o5, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rb5, i + 1, bodies[i]);
  EXPECT_EQ(rb5.stats.packs_read, 1);
  EXPECT_TRUE(b5.local->Lookup(key439, {}).ok());
  EXPECT_TRUE(b5.local->Lookup(key400, {}).ok());
  EXPECT_TRUE(absl::IsNotFound(b5.local->Lookup(o.session_key + ".local", {}).status()));
  Fixture n5(b5.dir_);
  Result rn5 = n5.Run(again, o, nullptr, nullptr);
  for (int i = 0; i < 40; ++i) ExpectHit(rn5, i + 1, bodies[i]);
  EXPECT_EQ(rn5.stats.local_hits, 40);

  // Recorded in the directory: a warm directory reads no pack.
  Fixture c(b.dir_);
  Result rc = c.Run(again, o, lookup.get(), upload.get());
  for (int i = 0; i < 40; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_EQ(rc.stats.packs_read, 0);
  EXPECT_EQ(rc.stats.local_hits, 40);
}

// The directory's session copy follows the list a build wrote, so the next build
// there that uses the same pairs writes neither list nor pack again.
// A first build putting 20 objects (ActionIDs base..base+19) with the session on:
// the list and its pack go to the registry. Returns the objects.
std::vector<std::string> PutSessionOf20(int base, const ServerOptions& o, cache::Store* lookup,
                                        cache::Store* upload) {
  std::vector<std::string> bodies;
  std::string puts;
  for (int i = 0; i < 20; ++i) {
    bodies.push_back(Body(base + i, 1500 + 100 * i));
    puts += Put(i + 1, ActionID(base + i), bodies.back());
  }
  Fixture a;
  Result ra = a.Run(puts + Close(99), o, lookup, upload);
  EXPECT_EQ(ra.stats.uploaded, 20);
  EXPECT_GT(ra.stats.pack_bytes_written, 0);
  return bodies;
}

// Gets of ActionIDs base..base+n-1, then close.
std::string GetsOf(int base, int n) {
  std::string in;
  for (int i = 0; i < n; ++i) in += Get(i + 1, ActionID(base + i));
  return in + Close(99);
}

TEST_F(RegistryTest, LocalSessionCopyFollowsTheListWritten) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.follow1";
  o.lookup_threads = 1;
  const std::vector<std::string> bodies = PutSessionOf20(500, o, lookup.get(), upload.get());
  // A fresh directory whose build needs only half of them (from the pack, or,
  // if the gets outrun the list, one by one) writes the shorter list and its pack
  // at close.
  const std::string half = GetsOf(500, 10);
  Fixture b;
  Result rb = b.Run(half, o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.remote_hits, 10);
  EXPECT_GT(rb.stats.pack_bytes_written, 0);
  auto written = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(written.ok()) << written.status();
  // The same build again in that directory: local hits, nothing written.
  Fixture b2(b.dir_);
  Result rb2 = b2.Run(half, o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rb2, i + 1, bodies[i]);
  EXPECT_EQ(rb2.stats.local_hits, 10);
  EXPECT_EQ(rb2.stats.pack_bytes_written, 0);
  auto after = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->blobs[0].digest, written->blobs[0].digest);
  auto copy = b2.local->Lookup(o.session_key + ".local", {});
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_TRUE(absl::StrContains(copy->config, R"("pairs":10,)")) << copy->config;
}

// A build close to the listed session (one pair new, one unused) leaves the list
// and its pack alone; one that uses half of it writes a new list and pack.
TEST_F(RegistryTest, ASmallChangeKeepsTheSessionList) {
  auto lookup = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  auto upload = RegistryStoreFor(reg_->host(), absl::Seconds(10), 3);
  ServerOptions o;
  o.session_key = "gocacheprog.session.small1";
  o.lookup_threads = 1;
  const std::vector<std::string> bodies = PutSessionOf20(600, o, lookup.get(), upload.get());
  auto first = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(first.ok()) << first.status();

  std::string small;
  for (int i = 0; i < 19; ++i) small += Get(i + 1, ActionID(600 + i));
  small += Put(50, ActionID(699), Body(699, 1000)) + Close(99);
  Fixture b;
  Result rb = b.Run(small, o, lookup.get(), upload.get());
  for (int i = 0; i < 19; ++i) ExpectHit(rb, i + 1, bodies[i]);
  EXPECT_EQ(rb.stats.uploaded, 1);
  EXPECT_EQ(rb.stats.pack_bytes_written, 0);
  auto kept = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->blobs[0].digest, first->blobs[0].digest);

  Fixture c;
  Result rc = c.Run(GetsOf(600, 10), o, lookup.get(), upload.get());
  for (int i = 0; i < 10; ++i) ExpectHit(rc, i + 1, bodies[i]);
  EXPECT_GT(rc.stats.pack_bytes_written, 0);
  auto rewritten = upload->Lookup(o.session_key, {});
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  EXPECT_NE(rewritten->blobs[0].digest, first->blobs[0].digest);
}

TEST(ServerRemote, KnownMissesAreNotAskedTwice) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest& r) {
    if (r.path() == "/v2/") return harness::FakeResponse::Json(200, "{}");
    return harness::FakeResponse::Json(
        404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})");
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto lookup = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 2);
  Fixture f;
  Result r = f.Run(Get(1, ActionID(1)) + Get(2, ActionID(2)) + Close(3) , {}, lookup.get(), nullptr);
  // Separate requests so the second get of the same ID comes after the first.
  Result r2;
  {
    ServerOptions o;
    o.lookup_threads = 1;
    r2 = f.Run(Get(1, ActionID(9)) + Get(2, ActionID(9)) + Get(3, ActionID(9)) + Close(4), o,
               lookup.get(), nullptr);
  }
  ExpectMiss(r, 1);
  ExpectMiss(r, 2);
  ExpectMiss(r2, 1);
  ExpectMiss(r2, 3);
  int manifest_gets = 0;
  for (const auto& req : (*fake)->requests()) {
    if (absl::StrContains(req.path(), "/manifests/") && req.method == "GET") ++manifest_gets;
  }
  EXPECT_EQ(manifest_gets, 3);  // IDs 1, 2, 9 once each
}

TEST(ServerRemote, RegistryAnswering500GivesMissesNotErrors) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest&) {
    return harness::FakeResponse::Text(500, "broken");
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto lookup = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 2);
  auto upload = RegistryStoreFor((*fake)->host(), absl::Seconds(5), 2);
  Fixture f;
  std::string in;
  for (int i = 0; i < 5; ++i) in += Put(100 + i, ActionID(i), Body(i, 100));
  for (int i = 0; i < 100; ++i) in += Get(i + 1, ActionID(1000 + i));
  for (int i = 0; i < 5; ++i) in += Get(200 + i, ActionID(i));
  in += Close(999);
  absl::Time start = absl::Now();
  Result r = f.Run(in, {}, lookup.get(), upload.get());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.errors, 0);
  for (int i = 0; i < 100; ++i) ExpectMiss(r, i + 1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(r.err(100 + i), "");
    ExpectHit(r, 200 + i, Body(i, 100));
  }
  EXPECT_EQ(r.stats.upload_failures, 5);
  EXPECT_EQ(r.at(999), json::parse(R"({"ID":999})"));
  // The outage pauses the registry: not one request per get.
  EXPECT_LT((*fake)->request_count(), 40);
  bool warned = false;
  for (const auto& w : r.warnings) warned |= absl::StrContains(w, "unavailable");
  EXPECT_TRUE(warned) << absl::StrJoin(r.warnings, "\n");
}

TEST(ServerRemote, RegistryNeverAnsweringStillClosesInBoundedTime) {
  auto fake = harness::FakeHttpServer::Start([](const harness::FakeRequest&) {
    harness::FakeResponse resp = harness::FakeResponse::Text(200, "late");
    resp.stall_ms = 60000;
    return resp;
  });
  ASSERT_TRUE(fake.ok()) << fake.status();
  auto lookup = RegistryStoreFor((*fake)->host(), absl::Seconds(1), 1);
  auto upload = RegistryStoreFor((*fake)->host(), absl::Seconds(1), 1);
  Fixture f;
  std::string in;
  for (int i = 0; i < 3; ++i) in += Put(100 + i, ActionID(i), Body(i, 100));
  for (int i = 0; i < 50; ++i) in += Get(i + 1, ActionID(1000 + i));
  in += Close(999);
  ServerOptions o;
  o.flush_timeout = absl::Seconds(3);
  absl::Time start = absl::Now();
  Result r = f.Run(in, o, lookup.get(), upload.get());
  absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(20));
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.errors, 0);
  for (int i = 0; i < 50; ++i) ExpectMiss(r, i + 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.err(100 + i), "");
  EXPECT_EQ(r.at(999), json::parse(R"({"ID":999})"));
  (*fake)->Stop();
}

TEST(ServerRemote, UnreachableRegistry) {
  // Nothing listens on port 1.
  auto lookup = RegistryStoreFor("127.0.0.1:1", absl::Seconds(2), 2);
  auto upload = RegistryStoreFor("127.0.0.1:1", absl::Seconds(2), 2);
  Fixture f;
  std::string in = Put(1, ActionID(1), "abc");
  for (int i = 0; i < 30; ++i) in += Get(i + 10, ActionID(100 + i));
  in += Get(2, ActionID(1)) + Close(3);
  absl::Time start = absl::Now();
  Result r = f.Run(in, {}, lookup.get(), upload.get());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_EQ(r.rc, 0);
  EXPECT_EQ(r.stats.errors, 0);
  ExpectHit(r, 2, "abc");
  for (int i = 0; i < 30; ++i) ExpectMiss(r, i + 10);
}

}  // namespace
}  // namespace ocicache::gocacheprog
