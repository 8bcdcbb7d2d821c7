// Test helpers for the GOCACHEPROG server (server_test.cc, session_test.cc): the
// server driven through in-memory streams, on a LayoutStore in a temp dir, and for
// the remote cases a real docker-registry (RegistryTest) or a fake failing one.
#ifndef OCICACHE_PKG_GOCACHEPROG_SERVER_TEST_UTIL_H_
#define OCICACHE_PKG_GOCACHEPROG_SERVER_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/store.h"
#include "pkg/gocacheprog/server.h"
#include "pkg/layout/layout_store.h"
#include "test/harness/registry.h"

namespace ocicache::gocacheprog {

// A new directory under $TEST_TMPDIR.
std::string TempDir();
std::string ReadFile(const std::string& path);
bool FileExists(const std::string& path);

// The raw ActionID number i, and a body of n pseudo-random bytes seeded by i.
std::string ActionID(int i);
std::string Body(int i, size_t n);

// Requests as go writes them: the JSON, '\n', another '\n', then the body line.
std::string Get(int64_t id, const std::string& action);
std::string Put(int64_t id, const std::string& action, const std::string& body,
                std::string object = "");
std::string Close(int64_t id);

// What one Serve call answered.
struct Result {
  int rc = -1;
  std::string first;                        // the hello line
  std::map<int64_t, nlohmann::json> by_id;  // every other response
  int duplicates = 0;
  std::vector<std::string> warnings;
  ServerStats stats;
  bool has(int64_t id) const { return by_id.count(id) > 0; }
  const nlohmann::json& at(int64_t id) const { return by_id.at(id); }
  // The Err of response `id`, "" if none.
  std::string err(int64_t id) const;
};

// A local directory; each Run is one server process on it.
class Fixture {
 public:
  explicit Fixture(std::string dir = TempDir());

  // Serves `input` with a new Server (warnings collected in the Result).
  Result Run(const std::string& input, ServerOptions opts = {}, cache::Store* lookup = nullptr,
             cache::Store* upload = nullptr);

  std::string dir_;
  std::unique_ptr<layout::LayoutStore> local;
  std::string empty_path;
};

// Checks a get hit for `body`, and that DiskPath holds it.
void ExpectHit(const Result& r, int64_t id, const std::string& body);
void ExpectMiss(const Result& r, int64_t id);

// A registry store on repository go/cache of `host`, with short retries.
std::unique_ptr<cache::RegistryStore> RegistryStoreFor(const std::string& host,
                                                       absl::Duration timeout, int attempts);

// Tests sharing one docker-registry process (reg_).
class RegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  static harness::RegistryProcess* reg_;
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_SERVER_TEST_UTIL_H_
