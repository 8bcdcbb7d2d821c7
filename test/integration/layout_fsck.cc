#include "test/integration/layout_fsck.h"

#include <dirent.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/digest.h"

namespace ocicache::testing {
namespace {

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

}  // namespace

FsckReport FsckLayout(const std::string& dir) {
  FsckReport r;
  std::string blobs = dir + "/blobs/sha256";
  for (const auto& name : Names(blobs)) {
    ++r.blobs;
    std::string path = blobs + "/" + name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      r.problems.push_back("not a regular file: " + path);
      continue;
    }
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string got = oci::Digest::Of(ss.str()).hex();
    if (got != name) {
      r.problems.push_back(absl::StrCat("torn blob ", name, ": ", st.st_size,
                                        " bytes hashing to ", got));
    }
  }
  r.refs = static_cast<int64_t>(Names(dir + "/refs").size());
  r.temp_files = static_cast<int64_t>(Names(dir + "/tmp").size());

  auto store = layout::LayoutStore::Open(dir);
  if (!store.ok()) {
    r.problems.push_back(absl::StrCat("open: ", store.status().ToString()));
    return r;
  }
  std::vector<std::string> keys;
  absl::Status ls = (*store)->List([&](const cache::EntryInfo& info) {
    keys.push_back(info.key);
    return true;
  });
  if (!ls.ok()) r.problems.push_back(absl::StrCat("list: ", ls.ToString()));
  if (static_cast<int64_t>(keys.size()) != r.refs) {
    r.problems.push_back(absl::StrCat(r.refs, " refs but ", keys.size(), " listed entries"));
  }
  cache::LookupOptions no_touch;
  no_touch.touch = false;
  for (const auto& key : keys) {
    auto e = (*store)->Lookup(key, no_touch);
    if (!e.ok()) {
      r.problems.push_back(absl::StrCat("entry ", key, ": ", e.status().ToString()));
      continue;
    }
    bool whole = true;
    for (const auto& b : e->blobs) {
      auto size = (*store)->StatBlob(b.digest);
      if (!size.ok() || *size != b.size) {
        r.problems.push_back(absl::StrCat("entry ", key, " names ", b.digest.str(),
                                          " which is missing or of another size"));
        whole = false;
      }
    }
    if (whole) ++r.entries;
  }
  return r;
}

}  // namespace ocicache::testing
