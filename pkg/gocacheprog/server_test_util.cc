#include "pkg/gocacheprog/server_test_util.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/gocacheprog/stream.h"
#include "pkg/oci/digest.h"
#include "pkg/registry/client.h"

namespace ocicache::gocacheprog {

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

std::string Get(int64_t id, const std::string& action) {
  return absl::StrCat(R"({"ID":)", id, R"(,"Command":"get","ActionID":")", Base64Encode(action),
                      "\"}\n\n");
}
std::string Put(int64_t id, const std::string& action, const std::string& body,
                std::string object) {
  if (object.empty()) object = oci::Digest::Of(body).raw();
  std::string s = absl::StrCat(R"({"ID":)", id, R"(,"Command":"put","ActionID":")",
                               Base64Encode(action), R"(","ObjectID":")", Base64Encode(object),
                               "\"");
  if (!body.empty()) absl::StrAppend(&s, ",\"BodySize\":", body.size());
  absl::StrAppend(&s, "}\n\n");
  if (!body.empty()) absl::StrAppend(&s, "\"", Base64Encode(body), "\"\n");
  return s;
}
std::string Close(int64_t id) {
  return absl::StrCat(R"({"ID":)", id, R"(,"Command":"close"})", "\n\n");
}

std::string Result::err(int64_t id) const {
  auto it = by_id.find(id);
  if (it == by_id.end() || !it->second.contains("Err")) return "";
  return it->second["Err"].get<std::string>();
}

Fixture::Fixture(std::string dir) : dir_(std::move(dir)) {
  layout::LayoutStore::Options o;
  o.index_interval = absl::Seconds(1);
  auto l = layout::LayoutStore::Open(dir_, o);
  EXPECT_TRUE(l.ok()) << l.status();
  local = *std::move(l);
}

Result Fixture::Run(const std::string& input, ServerOptions opts, cache::Store* lookup,
                    cache::Store* upload) {
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

std::unique_ptr<cache::RegistryStore> RegistryStoreFor(const std::string& host,
                                                       absl::Duration timeout, int attempts) {
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

void RegistryTest::SetUpTestSuite() {
  auto reg = harness::RegistryProcess::Start({});
  ASSERT_TRUE(reg.ok()) << reg.status();
  reg_ = reg->release();
}

void RegistryTest::TearDownTestSuite() {
  delete reg_;
  reg_ = nullptr;
}

harness::RegistryProcess* RegistryTest::reg_ = nullptr;

}  // namespace ocicache::gocacheprog
