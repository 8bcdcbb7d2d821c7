// Test helper: checks a LayoutStore directory the way an fsck would, after a
// crash: every file in blobs/sha256 hashes to its name (no torn blob), every
// ref names a readable manifest whose blobs are all present with their sizes
// (no ref to a missing blob), and counts what is left in tmp/.
#ifndef OCICACHE_TEST_INTEGRATION_LAYOUT_FSCK_H_
#define OCICACHE_TEST_INTEGRATION_LAYOUT_FSCK_H_

#include <cstdint>
#include <string>
#include <vector>

namespace ocicache::testing {

struct FsckReport {
  int64_t blobs = 0;       // files in blobs/sha256
  int64_t refs = 0;        // files in refs/
  int64_t entries = 0;     // entries that look up with all their blobs
  int64_t temp_files = 0;  // files in tmp/
  std::vector<std::string> problems;  // one line each; empty: consistent
};

// Only reads (Lookup without touching); run it while no server writes `dir`.
FsckReport FsckLayout(const std::string& dir);

}  // namespace ocicache::testing

#endif  // OCICACHE_TEST_INTEGRATION_LAYOUT_FSCK_H_
