// The Store conformance suite. Every Store implementation (and the gRPC client)
// proves itself by instantiating it once:
//
//   INSTANTIATE_TEST_SUITE_P(Layout, StoreConformanceTest,
//       ::testing::Values(StoreFactory{"layout", [] { return MakeMyStore(); }}));
//
// The factory is called once per test and must return an empty store.
#ifndef OCICACHE_PKG_CACHE_STORE_TESTSUITE_H_
#define OCICACHE_PKG_CACHE_STORE_TESTSUITE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "pkg/cache/store.h"

namespace ocicache::cache {

struct StoreFactory {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<Store>>()> make;
  // Whether the store can make a blob present from a Location (needs a registry).
  bool supports_mount = false;
};

inline std::ostream& operator<<(std::ostream& os, const StoreFactory& f) { return os << f.name; }

class StoreConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override;
  std::unique_ptr<Store> store_;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_STORE_TESTSUITE_H_
