// Helpers shared by the LayoutStore tests (listed in each cc_test's srcs): fresh
// directories under TEST_TMPDIR, plain file access to look at the layout from
// outside, deterministic blob content, and short forms of common store calls.
#ifndef OCICACHE_PKG_LAYOUT_LAYOUT_TEST_UTIL_H_
#define OCICACHE_PKG_LAYOUT_LAYOUT_TEST_UTIL_H_

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/entry.h"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"

namespace ocicache::layout {

inline std::string NewDir(absl::string_view name) {
  static int counter = 0;
  const char* base = std::getenv("TEST_TMPDIR");
  return absl::StrCat(base ? base : "/tmp", "/", name, "-", ::getpid(), "-", ++counter);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, absl::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

inline std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  std::string cmd = absl::StrCat("ls -A '", dir, "' 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char line[4096];
  while (std::fgets(line, sizeof line, p)) {
    out.emplace_back(absl::StripTrailingAsciiWhitespace(line));
  }
  ::pclose(p);
  return out;
}

inline std::string BlobPath(const std::string& dir, const oci::Digest& d) {
  return absl::StrCat(dir, "/blobs/sha256/", d.hex());
}

inline std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2166136261u ^ static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x = x * 16777619u + 7;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

inline absl::StatusOr<std::string> ReadBlobString(LayoutStore& s, const oci::Digest& d,
                                                  int64_t offset = 0) {
  std::string out;
  oci::StringSink sink(&out);
  absl::Status st = s.ReadBlob(d, offset, sink);
  if (!st.ok()) return st;
  return out;
}

inline absl::StatusOr<oci::Descriptor> PutBlob(LayoutStore& s, absl::string_view data) {
  oci::StringSource src(data);
  return s.WriteBlob(oci::Digest::Of(data), static_cast<int64_t>(data.size()), src);
}

inline std::unique_ptr<LayoutStore> OpenOrDie(const std::string& dir,
                                              LayoutStore::Options opts = LayoutStore::Options()) {
  auto s = LayoutStore::Open(dir, std::move(opts));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

inline cache::Entry MakeEntry(const std::string& key, const oci::Descriptor& blob,
                              const std::string& tool) {
  cache::Entry e;
  e.key = key;
  e.config = absl::StrCat("{\"key\":", nlohmann::json(key).dump(), "}");
  oci::Descriptor b = blob;
  b.media_type = "application/vnd.ocicache.test.output";
  e.blobs.push_back(b);
  e.annotations["org.ocicache.tool.go"] = tool;
  return e;
}

// index.json's ref name -> manifest digest; fails the test if it is not an index.
inline std::map<std::string, std::string> IndexRefs(const std::string& dir) {
  std::map<std::string, std::string> out;
  auto idx = oci::Index::Parse(ReadFile(dir + "/index.json"));
  EXPECT_TRUE(idx.ok()) << idx.status();
  if (!idx.ok()) return out;
  for (const auto& m : idx->manifests) {
    auto it = m.annotations.find("org.opencontainers.image.ref.name");
    EXPECT_TRUE(it != m.annotations.end());
    if (it == m.annotations.end()) continue;
    EXPECT_EQ(m.media_type, oci::media::kImageManifest);
    EXPECT_FALSE(out.count(it->second)) << "duplicate ref " << it->second;
    out[it->second] = m.digest.str();
  }
  return out;
}

inline std::string TagOf(absl::string_view key) { return *cache::TagForKey(key); }

inline std::string RefOf(const std::string& dir, absl::string_view key) {
  return std::string(
      absl::StripTrailingAsciiWhitespace(ReadFile(absl::StrCat(dir, "/refs/", TagOf(key)))));
}

}  // namespace ocicache::layout

#endif  // OCICACHE_PKG_LAYOUT_LAYOUT_TEST_UTIL_H_
