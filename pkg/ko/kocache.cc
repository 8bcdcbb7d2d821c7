#include "pkg/ko/kocache.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "pkg/base/files.h"
#include "pkg/ko/gojson.h"
#include "pkg/oci/digest.h"

namespace ocicache::ko {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr size_t kMaxFileBytes = 64 << 20;

std::string Errno(absl::string_view what) { return absl::StrCat(what, ": ", strerror(errno)); }

// The top-level object of a file, or an empty object for empty content or null;
// *text is the object's text ("{}" for those).
absl::StatusOr<ojson> ParseTop(absl::string_view bytes, absl::string_view* text) {
  *text = "{}";
  if (bytes.find_first_not_of(" \t\r\n") == absl::string_view::npos) return ojson::object();
  auto j = ParseFirstValue(bytes, text);
  if (!j.ok()) return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", j.status().message()));
  if (j->is_null()) {
    *text = "{}";
    return ojson::object();
  }
  if (!j->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid content: a JSON object was expected, not ", j->type_name()));
  }
  return *std::move(j);
}

absl::Status CheckDigest(absl::string_view what, absl::string_view s) {
  if (!oci::Digest::Parse(s).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", GoQuote(s), " is not a sha256 digest (sha256:<64 hex>)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, bool* exists) {
  *exists = false;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::string();
    return absl::UnavailableError(Errno(absl::StrCat("open ", path)));
  }
  *exists = true;
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string e = Errno(absl::StrCat("read ", path));
      close(fd);
      return absl::UnavailableError(e);
    }
    if (n == 0) break;
    data.append(buf, n);
    if (data.size() > kMaxFileBytes) {
      close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat(path, " is larger than ", kMaxFileBytes, " bytes"));
    }
  }
  close(fd);
  return data;
}

bool ValidPart(absl::string_view p) {
  return !p.empty() && p != "." && p != ".." && p.find('\0') == absl::string_view::npos &&
         p.find('\\') == absl::string_view::npos;
}

bool IsGoos(absl::string_view s) {
  static const std::set<std::string>* goos = new std::set<std::string>{
      "aix",   "android", "darwin",  "dragonfly", "freebsd", "hurd",    "illumos", "ios",
      "js",    "linux",   "nacl",    "netbsd",    "openbsd", "plan9",   "solaris", "wasip1",
      "wasi",  "windows", "zos"};
  return goos->count(std::string(s)) > 0;
}

bool LooksLikeVariant(absl::string_view s) {
  s = s.substr(0, s.find(':'));
  return s.size() >= 2 && s[0] == 'v' && s[1] >= '0' && s[1] <= '9';
}

}  // namespace

absl::Status ValidateDescriptor(const ojson& d) {
  if (!d.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("a descriptor must be a JSON object, not ", d.type_name()));
  }
  auto mt = d.find("mediaType");
  if (mt == d.end() || !mt->is_string() || mt->get_ref<const std::string&>().empty()) {
    return absl::InvalidArgumentError("descriptor without a mediaType string");
  }
  auto size = d.find("size");
  if (size == d.end() || !(size->is_number_unsigned() || size->is_number_integer()) ||
      (size->is_number_integer() && size->get<int64_t>() < 0)) {
    return absl::InvalidArgumentError("descriptor without an integer size >= 0");
  }
  auto digest = d.find("digest");
  if (digest == d.end() || !digest->is_string()) {
    return absl::InvalidArgumentError("descriptor without a digest string");
  }
  if (absl::Status s = CheckDigest("descriptor digest", digest->get_ref<const std::string&>()); !s.ok()) {
    return s;
  }
  if (auto it = d.find("data"); it != d.end() && !it->is_null() && !it->is_string()) {
    return absl::InvalidArgumentError("descriptor data must be a base64 string");
  }
  if (auto it = d.find("urls"); it != d.end() && !it->is_null()) {
    if (!it->is_array()) return absl::InvalidArgumentError("descriptor urls must be an array");
    for (const auto& u : *it) {
      if (!u.is_string()) return absl::InvalidArgumentError("descriptor urls must be strings");
    }
  }
  if (auto it = d.find("annotations"); it != d.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("descriptor annotations must be an object");
    for (const auto& v : *it) {
      if (!v.is_string()) return absl::InvalidArgumentError("descriptor annotation values must be strings");
    }
  }
  if (auto it = d.find("platform"); it != d.end() && !it->is_null() && !it->is_object()) {
    return absl::InvalidArgumentError("descriptor platform must be an object");
  }
  return absl::OkStatus();
}

absl::Status ValidateDescriptorJson(absl::string_view text) {
  try {
    return ValidateDescriptor(ojson::parse(text.begin(), text.end()));
  } catch (const ojson::exception&) {
    return absl::InvalidArgumentError("descriptor is not valid JSON");
  }
}

absl::StatusOr<BuildIdToDiffId> ParseBuildIdToDiffId(absl::string_view bytes) {
  absl::string_view text;
  auto top = ParseTop(bytes, &text);
  if (!top.ok()) return top.status();
  BuildIdToDiffId m;
  for (auto it = top->begin(); it != top->end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("the diffid of build id ", GoQuote(it.key()),
                                                     " is not a string"));
    }
    const std::string& diff = it.value().get_ref<const std::string&>();
    if (absl::Status s = CheckDigest(absl::StrCat("the diffid of build id ", GoQuote(it.key())), diff);
        !s.ok()) {
      return s;
    }
    m[it.key()] = diff;
  }
  return m;
}

absl::StatusOr<DiffIdToDescriptor> ParseDiffIdToDescriptor(absl::string_view bytes) {
  absl::string_view text;
  auto top = ParseTop(bytes, &text);
  if (!top.ok()) return top.status();
  for (auto it = top->begin(); it != top->end(); ++it) {
    if (absl::Status s = CheckDigest("diffid", it.key()); !s.ok()) return s;
    if (absl::Status s = ValidateDescriptor(it.value()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("diffid ", it.key(), ": ", s.message()));
    }
  }
  // Valid: now take each descriptor's text as found (a later duplicate key wins,
  // as with Go's decoder).
  auto members = ObjectMembers(text);
  if (!members.ok()) return members.status();
  DiffIdToDescriptor m;
  for (auto& [k, v] : *members) m[k] = GoCompact(v);
  return m;
}

std::string EncodeBuildIdToDiffId(const BuildIdToDiffId& m) {
  ojson top = ojson::object();
  for (const auto& [k, v] : m) top[k] = v;  // std::map: sorted bytewise, as Go sorts keys
  return GoMarshalIndent(top, "", "  ") + "\n";
}

std::string EncodeDiffIdToDescriptor(const DiffIdToDescriptor& m) {
  // json.Marshal of the map, then json.Indent: what Go's Encoder does.
  std::string compact = "{";
  for (const auto& [k, v] : m) {
    if (compact.size() > 1) compact.push_back(',');
    absl::StrAppend(&compact, GoQuote(k), ":", GoCompact(v));
  }
  compact.push_back('}');
  return GoIndent(compact, "", "  ") + "\n";
}

KoFiles ReadKoFiles(const std::string& dir) {
  KoFiles f;
  bool exists = false;
  std::string p1 = absl::StrCat(dir, "/", kBuildIdToDiffIdFile);
  auto b1 = ReadSmallFile(p1, &exists);
  if (!b1.ok()) {
    f.problems.push_back(std::string(b1.status().message()));
  } else if (exists) {
    auto m = ParseBuildIdToDiffId(*b1);
    if (m.ok()) {
      f.build_to_diff = *std::move(m);
    } else {
      f.problems.push_back(absl::StrCat(p1, ": ", m.status().message()));
    }
  }
  std::string p2 = absl::StrCat(dir, "/", kDiffIdToDescriptorFile);
  auto b2 = ReadSmallFile(p2, &exists);
  if (!b2.ok()) {
    f.problems.push_back(std::string(b2.status().message()));
  } else if (exists) {
    auto m = ParseDiffIdToDescriptor(*b2);
    if (m.ok()) {
      f.diff_to_desc = *std::move(m);
    } else {
      f.problems.push_back(absl::StrCat(p2, ": ", m.status().message()));
    }
  }
  return f;
}

std::vector<Record> CompleteRecords(const KoFiles& files, int* incomplete) {
  std::vector<Record> out;
  for (const auto& [build, diff] : files.build_to_diff) {
    auto d = files.diff_to_desc.find(diff);
    if (d == files.diff_to_desc.end()) {
      if (incomplete != nullptr) ++*incomplete;
      continue;
    }
    Record r;
    r.build_id = build;
    r.diff_id = diff;
    r.descriptor = d->second;
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status WriteFileAtomic(const std::string& dir, const std::string& name,
                             absl::string_view bytes, int mode) {
  absl::Status s = base::WriteFileAtomically(absl::StrCat(dir, "/", name), bytes,
                                             {.mode = static_cast<mode_t>(mode), .keep_mode = true});
  return s.ok() ? s : absl::UnavailableError(s.message());
}

absl::StatusOr<MergeStats> MergeIntoDir(const std::string& dir, const std::vector<Record>& records,
                                        const Warn& warn) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("create ", dir, ": ", ec.message()));
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return absl::UnavailableError(Errno(absl::StrCat("open ", dir)));
  while (flock(dfd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      std::string e = Errno(absl::StrCat("lock ", dir));
      close(dfd);
      return absl::UnavailableError(e);
    }
  }
  // The lock is released when dfd is closed.
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{dfd};

  KoFiles f = ReadKoFiles(dir);
  for (const auto& p : f.problems) {
    if (warn) warn(absl::StrCat(p, " (treated as empty; rewritten)"));
  }
  MergeStats stats;
  bool changed = false;
  for (const auto& r : records) {
    auto b = f.build_to_diff.find(r.build_id);
    if (b != f.build_to_diff.end() && f.diff_to_desc.count(b->second)) {
      ++stats.present;
      continue;
    }
    if (absl::Status s = ValidateDescriptorJson(r.descriptor); !s.ok() || !oci::Digest::Parse(r.diff_id).ok()) {
      if (warn) {
        warn(absl::StrCat("build id ", r.build_id, ": unusable record (",
                          s.ok() ? "bad diffid" : s.message(), "); skipped"));
      }
      continue;
    }
    f.build_to_diff[r.build_id] = r.diff_id;
    f.diff_to_desc.emplace(r.diff_id, GoCompact(r.descriptor));  // an existing descriptor wins
    ++stats.added;
    changed = true;
  }
  if (!changed) return stats;
  if (absl::Status s = WriteFileAtomic(dir, kDiffIdToDescriptorFile,
                                       EncodeDiffIdToDescriptor(f.diff_to_desc));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileAtomic(dir, kBuildIdToDiffIdFile,
                                       EncodeBuildIdToDiffId(f.build_to_diff));
      !s.ok()) {
    return s;
  }
  return stats;
}

absl::Status SplitBinPath(absl::string_view rel, std::string* import_path, std::string* platform) {
  std::vector<absl::string_view> parts = absl::StrSplit(rel, '/', absl::SkipEmpty());
  size_t n = parts.size();
  size_t plat = 0;  // number of platform parts
  if (n >= 4 && IsGoos(parts[n - 3]) && LooksLikeVariant(parts[n - 1])) {
    plat = 3;
  } else if (n >= 3 && IsGoos(parts[n - 2])) {
    plat = 2;
  }
  if (plat == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bin/", rel, ": not <import path>/<os>/<arch>[/<variant>] (no known GOOS where expected)"));
  }
  for (auto p : parts) {
    if (!ValidPart(p)) return absl::InvalidArgumentError(absl::StrCat("bin/", rel, ": bad path part"));
  }
  *import_path = absl::StrJoin(parts.begin(), parts.end() - plat, "/");
  *platform = absl::StrJoin(parts.end() - plat, parts.end(), "/");
  return absl::OkStatus();
}

absl::StatusOr<std::string> BinDir(absl::string_view kocache, absl::string_view import_path,
                                   absl::string_view platform) {
  auto check = [](absl::string_view what, absl::string_view s, size_t min_parts,
                  size_t max_parts) -> absl::Status {
    std::vector<absl::string_view> parts = absl::StrSplit(s, '/');
    bool ok = parts.size() >= min_parts && parts.size() <= max_parts;
    for (auto p : parts) ok = ok && ValidPart(p);
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("unusable ", what, " ", GoQuote(s)));
    return absl::OkStatus();
  };
  if (absl::Status s = check("import path", import_path, 1, 256); !s.ok()) return s;
  if (absl::Status s = check("platform", platform, 2, 3); !s.ok()) return s;
  return absl::StrCat(kocache, "/bin/", import_path, "/", platform);
}

absl::StatusOr<std::vector<BinDirInfo>> FindBinDirs(const std::string& kocache, const Warn& warn) {
  std::vector<BinDirInfo> out;
  fs::path bin = fs::path(kocache) / "bin";
  std::error_code ec;
  if (!fs::is_directory(bin, ec)) {
    if (fs::exists(bin, ec)) return absl::FailedPreconditionError(absl::StrCat(bin.string(), " is not a directory"));
    return out;
  }
  fs::recursive_directory_iterator it(bin, fs::directory_options::skip_permission_denied, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("read ", bin.string(), ": ", ec.message()));
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return absl::UnavailableError(absl::StrCat("read ", bin.string(), ": ", ec.message()));
    if (it->path().filename() != kBuildIdToDiffIdFile) continue;
    std::error_code e2;
    if (!it->is_regular_file(e2)) continue;
    fs::path dir = it->path().parent_path();
    std::string rel = dir.lexically_relative(bin).string();
    BinDirInfo info;
    info.dir = dir.string();
    if (absl::Status s = SplitBinPath(rel, &info.import_path, &info.platform); !s.ok()) {
      if (warn) warn(absl::StrCat(s.message(), "; skipped"));
      continue;
    }
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const BinDirInfo& a, const BinDirInfo& b) { return a.dir < b.dir; });
  return out;
}

}  // namespace ocicache::ko
