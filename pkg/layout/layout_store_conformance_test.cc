// Runs the Store conformance suite (pkg/cache/store_testsuite.h) against LayoutStore.
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/cache/store_testsuite.h"
#include "pkg/layout/layout_store.h"

namespace ocicache::layout {
namespace {

absl::StatusOr<std::unique_ptr<cache::Store>> MakeLayoutStore() {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(base ? base : "/tmp", "/conformance-", ::getpid(), "-", ++counter);
  auto s = LayoutStore::Open(dir);
  if (!s.ok()) return s.status();
  return std::unique_ptr<cache::Store>(std::move(*s));
}

using ::ocicache::cache::StoreConformanceTest;

INSTANTIATE_TEST_SUITE_P(Layout, StoreConformanceTest,
                         ::testing::Values(cache::StoreFactory{"layout", MakeLayoutStore}));

}  // namespace
}  // namespace ocicache::layout
