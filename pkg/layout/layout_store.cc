#include "pkg/layout/layout_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>  // renameat2, RENAME_NOREPLACE (glibc)
#include <cstring>
#include <optional>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/format.h"

namespace ocicache::layout {
namespace {

using ojson = nlohmann::ordered_json;

constexpr char kLayoutFile[] = "oci-layout";
constexpr char kIndexFile[] = "index.json";
constexpr char kLockFile[] = "ocicache.lock";
constexpr char kBlobsDir[] = "blobs";
constexpr char kShaDir[] = "sha256";
constexpr char kRefsDir[] = "refs";
constexpr char kTmpDir[] = "tmp";
constexpr char kLayoutJson[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";

constexpr size_t kChunk = 256 * 1024;
constexpr int64_t kMaxRefBytes = 256;
constexpr int64_t kMaxLayoutFileBytes = 4096;
constexpr int64_t kMaxIndexBytes = int64_t{1} << 30;
// Foreign images can nest indexes; stop following them this deep.
constexpr int kMaxForeignDepth = 8;
// Blobs reused by a write get a fresh mtime (so Gc's min_age protects them) when
// their mtime is older than this.
constexpr absl::Duration kFreshenAfter = absl::Minutes(1);

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Removes a temp file unless disarmed (after its rename).
class TempGuard {
 public:
  TempGuard(int dir_fd, std::string name) : dir_fd_(dir_fd), name_(std::move(name)) {}
  ~TempGuard() {
    if (armed_) ::unlinkat(dir_fd_, name_.c_str(), 0);
  }
  void Disarm() { armed_ = false; }

 private:
  int dir_fd_;
  std::string name_;
  bool armed_ = true;
};

// I/O errors. ENOENT is not mapped to NotFound here: callers that mean "a miss"
// check for it themselves, so a vanished directory is never mistaken for one.
absl::Status ErrnoError(int err, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status ReadAll(int fd, int64_t max, std::string* out, absl::string_view what) {
  out->clear();
  char buf[64 * 1024];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read ", what));
    }
    if (r == 0) return absl::OkStatus();
    out->append(buf, static_cast<size_t>(r));
    if (static_cast<int64_t>(out->size()) > max) {
      return absl::DataLossError(absl::StrCat(what, " is larger than ", max, " bytes"));
    }
  }
}

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("write ", what));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

std::string RandomHex() {
  unsigned char raw[8];
  if (::getrandom(raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) {
    // Names only need to be unlikely to collide; O_EXCL catches the rest.
    static std::atomic<uint64_t> counter{0};
    uint64_t v = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
                 (static_cast<uint64_t>(::getpid()) << 40) ^ counter.fetch_add(1);
    std::memcpy(raw, &v, sizeof raw);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

bool StatAt(int dir_fd, const char* name, struct stat* st) {
  return ::fstatat(dir_fd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

bool IsDirAt(int dir_fd, const char* name) {
  struct stat st;
  return StatAt(dir_fd, name, &st) && S_ISDIR(st.st_mode);
}

bool IsRegAt(int dir_fd, const char* name) {
  struct stat st;
  return StatAt(dir_fd, name, &st) && S_ISREG(st.st_mode);
}

absl::Status MkdirAt(int dir_fd, const char* name, absl::string_view where) {
  if (::mkdirat(dir_fd, name, 0755) == 0 || errno == EEXIST) return absl::OkStatus();
  return ErrnoError(errno, absl::StrCat("mkdir ", where));
}

// Opens a directory without following a symlink in its last component.
absl::StatusOr<int> OpenDirAt(int dir_fd, const char* name, absl::string_view where) {
  int fd = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, " is not a directory (or is a symbolic link); refusing it"));
    }
    return ErrnoError(errno, absl::StrCat("open ", where));
  }
  return fd;
}

absl::Status MkdirAll(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    std::string prefix = path.substr(0, i);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("mkdir ", prefix));
    }
  }
  return absl::OkStatus();
}

// Reads a small regular file under dir_fd, refusing symlinks and special files.
absl::StatusOr<std::string> ReadSmallFileAt(int dir_fd, const char* name, int64_t max,
                                            absl::string_view where,
                                            struct stat* st_out = nullptr) {
  int fd = ::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(where, " does not exist"));
    if (errno == ELOOP) {
      return absl::DataLossError(absl::StrCat(where, " is a symbolic link; refusing it"));
    }
    return ErrnoError(errno, absl::StrCat("open ", where));
  }
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", where));
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(absl::StrCat(where, " is not a regular file; refusing it"));
  }
  std::string data;
  if (absl::Status s = ReadAll(fd, max, &data, where); !s.ok()) return s;
  if (st_out != nullptr) *st_out = st;
  return data;
}

absl::Time MtimeOf(const struct stat& st) { return absl::TimeFromTimespec(st.st_mtim); }

bool IsOurTag(absl::string_view tag) {
  if (tag.size() < 3 || tag.size() > 128) return false;
  if (!absl::StartsWith(tag, "k.") && !absl::StartsWith(tag, "h.")) return false;
  for (char c : tag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsManifestOrIndex(absl::string_view media_type) {
  return media_type == oci::media::kImageManifest || media_type == oci::media::kImageIndex ||
         media_type == oci::media::kDockerManifest ||
         media_type == oci::media::kDockerManifestList;
}

// A sink that writes to a temp file while hashing, refusing more than `limit`
// bytes (limit -1: no limit).
class HashingFileSink : public oci::ByteSink {
 public:
  HashingFileSink(int fd, int64_t limit, absl::StatusCode mismatch_code)
      : fd_(fd), limit_(limit), mismatch_code_(mismatch_code) {}

  absl::Status Write(absl::string_view chunk) override {
    if (limit_ >= 0 && hash_.size() + static_cast<int64_t>(chunk.size()) > limit_) {
      return absl::Status(mismatch_code_,
                          absl::StrCat("blob has more than the expected ", limit_, " bytes"));
    }
    hash_.Update(chunk);
    return WriteAll(fd_, chunk, "temp blob");
  }

  int64_t size() const { return hash_.size(); }
  oci::Digest Finish() { return hash_.Finish(); }

 private:
  int fd_;
  int64_t limit_;
  absl::StatusCode mismatch_code_;
  oci::Sha256 hash_;
};

// Pumps a source into a sink.
absl::Status Pump(oci::ByteSource& source, oci::ByteSink& sink) {
  std::string buf(kChunk, '\0');
  for (;;) {
    auto n = source.Read(buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) return absl::OkStatus();
    if (absl::Status s = sink.Write(absl::string_view(buf.data(), *n)); !s.ok()) return s;
  }
}

oci::Descriptor BlobDescriptor(const oci::Digest& digest, int64_t size) {
  oci::Descriptor d;
  d.media_type = oci::media::kOctetStream;
  d.digest = digest;
  d.size = size;
  return d;
}

// index.json as this class writes it begins with this; such a file is split
// without a JSON parser, since parsing a large index costs far more than writing it.
constexpr absl::string_view kOwnIndexPrefix =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[";
constexpr absl::string_view kOwnIndexAnnotations = ",\"annotations\":";

// The end of the JSON value starting at s[pos], or npos. Follows strings and
// nesting only; it does not validate scalars.
size_t SkipJsonValue(absl::string_view s, size_t pos) {
  constexpr size_t npos = absl::string_view::npos;
  if (pos >= s.size()) return npos;
  char c = s[pos];
  if (c == '"') {
    for (size_t i = pos + 1; i < s.size(); ++i) {
      if (s[i] == '\\') {
        ++i;
      } else if (s[i] == '"') {
        return i + 1;
      }
    }
    return npos;
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    bool in_string = false;
    for (size_t i = pos; i < s.size(); ++i) {
      char d = s[i];
      if (in_string) {
        if (d == '\\') {
          ++i;
        } else if (d == '"') {
          in_string = false;
        }
      } else if (d == '"') {
        in_string = true;
      } else if (d == '{' || d == '[') {
        ++depth;
      } else if ((d == '}' || d == ']') && --depth == 0) {
        return i + 1;
      }
    }
    return npos;
  }
  size_t i = pos;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']') ++i;
  return i == pos ? npos : i;
}

// Splits an index.json written by WriteIndexLocked into its manifest descriptors
// (raw JSON) and its annotations object (raw JSON or empty). False if the file
// is not in exactly that shape.
bool SplitOwnIndex(absl::string_view s, std::vector<absl::string_view>* manifests,
                   absl::string_view* annotations) {
  if (!absl::StartsWith(s, kOwnIndexPrefix) || s.find('\0') != absl::string_view::npos) {
    return false;
  }
  size_t pos = kOwnIndexPrefix.size();
  if (pos < s.size() && s[pos] == ']') {
    ++pos;
  } else {
    for (;;) {
      if (pos >= s.size() || s[pos] != '{') return false;
      size_t end = SkipJsonValue(s, pos);
      if (end == absl::string_view::npos || s[end - 1] != '}') return false;
      manifests->push_back(s.substr(pos, end - pos));
      pos = end;
      if (pos < s.size() && s[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < s.size() && s[pos] == ']') {
        ++pos;
        break;
      }
      return false;
    }
  }
  if (absl::StartsWith(s.substr(pos), kOwnIndexAnnotations)) {
    pos += kOwnIndexAnnotations.size();
    if (pos >= s.size() || s[pos] != '{') return false;
    size_t end = SkipJsonValue(s, pos);
    if (end == absl::string_view::npos || s[end - 1] != '}') return false;
    *annotations = s.substr(pos, end - pos);
    pos = end;
  }
  return pos + 1 == s.size() && s[pos] == '}';
}

// The ref name annotation in a compact descriptor's JSON, or "" (also when it is
// escaped: none of our tags needs escaping).
std::string RefNameIn(absl::string_view desc) {
  static const std::string key = absl::StrCat("\"", kRefNameAnnotation, "\":\"");
  size_t p = desc.find(key);
  if (p == absl::string_view::npos) return "";
  p += key.size();
  size_t q = desc.find('"', p);
  if (q == absl::string_view::npos) return "";
  absl::string_view value = desc.substr(p, q - p);
  if (value.find('\\') != absl::string_view::npos) return "";
  return std::string(value);
}

}  // namespace

// Holds an exclusive flock on ocicache.lock; closing the descriptor releases it.
// Each lock opens its own descriptor, so threads of one process exclude each other too.
class LayoutStore::FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {}
  FileLock(FileLock&& o) noexcept : fd_(std::move(o.fd_)) {}

 private:
  UniqueFd fd_;
};

LayoutStore::LayoutStore(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

LayoutStore::~LayoutStore() {
  if (root_fd_ >= 0 && refs_fd_ >= 0 && tmp_fd_ >= 0) Flush().IgnoreError();
  for (int fd : {root_fd_, blobs_fd_, refs_fd_, tmp_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

absl::StatusOr<std::unique_ptr<LayoutStore>> LayoutStore::Open(std::string dir,
                                                               Options options) {
  if (dir.empty()) return absl::InvalidArgumentError("layout directory: empty path");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (options.max_bytes < 0) return absl::InvalidArgumentError("negative size bound");
  auto store = absl::WrapUnique(new LayoutStore(std::move(dir), std::move(options)));
  if (absl::Status s = store->Init(); !s.ok()) return s;
  if (store->options_.max_bytes > 0) {
    auto size = store->TotalSize();
    if (!size.ok()) return size.status();
    store->approx_bytes_.store(*size);
    store->MaybeEvict(0);  // a smaller bound than last time
  }
  return store;
}

std::string LayoutStore::Describe() const { return absl::StrCat("dir:", dir_); }

std::string LayoutStore::BlobPath(const oci::Digest& digest) const {
  return absl::StrCat(dir_, "/blobs/sha256/", digest.hex());
}

std::string LayoutStore::Where(absl::string_view rel) const {
  return absl::StrCat(dir_, "/", rel);
}

absl::Time LayoutStore::Now() const { return options_.clock ? options_.clock() : absl::Now(); }

// ---------------------------------------------------------------------------
// Opening and creating the layout.

namespace {

// Validates DIR/oci-layout if present.
absl::Status CheckLayoutFile(int root_fd, const std::string& dir, bool* present) {
  *present = false;
  auto data = ReadSmallFileAt(root_fd, kLayoutFile, kMaxLayoutFileBytes,
                              absl::StrCat(dir, "/", kLayoutFile));
  if (absl::IsNotFound(data.status())) return absl::OkStatus();
  if (!data.ok()) return absl::FailedPreconditionError(data.status().message());
  auto j = nlohmann::json::parse(*data, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, "/", kLayoutFile, ": ", why, "; not a usable OCI image layout"));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto v = j.find("imageLayoutVersion");
  if (v == j.end() || !v->is_string()) return bad("no imageLayoutVersion");
  std::string version = v->get<std::string>();
  if (!absl::StartsWith(version, "1.")) {
    return bad(absl::StrCat("imageLayoutVersion ", version, " is not supported (1.0.0 is)"));
  }
  *present = true;
  return absl::OkStatus();
}

// A directory without oci-layout may only be empty or hold what an interrupted
// LayoutStore::Open creates before writing oci-layout.
absl::Status CheckNotForeign(int root_fd, const std::string& dir) {
  struct stat st;
  if (StatAt(root_fd, kIndexFile, &st)) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " has an index.json but no oci-layout file: it is not an OCI image layout "
             "(or not one this tool may use); refusing to use it as a cache directory"));
  }
  int fd = ::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", dir));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return ErrnoError(errno, absl::StrCat("opendir ", dir));
  }
  std::string foreign;
  while (struct dirent* e = ::readdir(d)) {
    absl::string_view n = e->d_name;
    if (n == "." || n == ".." || n == kLockFile || n == kTmpDir || n == kBlobsDir ||
        n == kRefsDir) {
      continue;
    }
    foreign = std::string(n);
    break;
  }
  ::closedir(d);
  if (!foreign.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not empty (it has \"", foreign,
                     "\") and is not an OCI image layout (no oci-layout file); refusing to use "
                     "it as a cache directory"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LayoutStore::Init() {
  if (absl::Status s = MkdirAll(dir_); !s.ok()) return s;
  root_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) return ErrnoError(errno, absl::StrCat("open ", dir_));

  bool has_layout = false;
  if (absl::Status s = CheckLayoutFile(root_fd_, dir_, &has_layout); !s.ok()) return s;
  if (!has_layout) {
    if (absl::Status s = CheckNotForeign(root_fd_, dir_); !s.ok()) return s;
  }
  std::string sha_rel = absl::StrCat(kBlobsDir, "/", kShaDir);
  bool complete = has_layout && IsDirAt(root_fd_, sha_rel.c_str()) &&
                  IsDirAt(root_fd_, kRefsDir) && IsDirAt(root_fd_, kTmpDir) &&
                  IsRegAt(root_fd_, kIndexFile);
  if (!complete) {
    if (!IsDirAt(root_fd_, kTmpDir)) {
      if (absl::Status s = MkdirAt(root_fd_, kTmpDir, Where(kTmpDir)); !s.ok()) return s;
    }
    auto lock = Lock();
    if (!lock.ok()) return lock.status();
    if (absl::Status s = InitLocked(has_layout); !s.ok()) return s;
  }

  if (tmp_fd_ < 0) {
    auto fd = OpenDirAt(root_fd_, kTmpDir, Where(kTmpDir));
    if (!fd.ok()) return fd.status();
    tmp_fd_ = *fd;
  }
  if (blobs_fd_ < 0) {
    auto parent = OpenDirAt(root_fd_, kBlobsDir, Where(kBlobsDir));
    if (!parent.ok()) return parent.status();
    UniqueFd owned(*parent);
    auto fd = OpenDirAt(*parent, kShaDir, Where(sha_rel));
    if (!fd.ok()) return fd.status();
    blobs_fd_ = *fd;
  }
  if (refs_fd_ < 0) {
    auto fd = OpenDirAt(root_fd_, kRefsDir, Where(kRefsDir));
    if (!fd.ok()) return fd.status();
    refs_fd_ = *fd;
  }
  return absl::OkStatus();
}

absl::Status LayoutStore::InitLocked(bool has_layout) {
  // Another process may have finished (or begun) while we waited for the lock.
  if (absl::Status s = CheckLayoutFile(root_fd_, dir_, &has_layout); !s.ok()) return s;
  if (!has_layout) {
    if (absl::Status s = CheckNotForeign(root_fd_, dir_); !s.ok()) return s;
  }
  if (absl::Status s = MkdirAt(root_fd_, kTmpDir, Where(kTmpDir)); !s.ok()) return s;
  auto tmp = OpenDirAt(root_fd_, kTmpDir, Where(kTmpDir));
  if (!tmp.ok()) return tmp.status();
  tmp_fd_ = *tmp;

  // oci-layout first: from here on the directory is recognisably a layout, and an
  // interrupted init is completed by the next Open.
  if (!has_layout) {
    if (absl::Status s = WriteFileAtomic(root_fd_, kLayoutFile, kLayoutJson); !s.ok()) return s;
  }
  if (absl::Status s = MkdirAt(root_fd_, kBlobsDir, Where(kBlobsDir)); !s.ok()) return s;
  auto blobs = OpenDirAt(root_fd_, kBlobsDir, Where(kBlobsDir));
  if (!blobs.ok()) return blobs.status();
  UniqueFd blobs_parent(*blobs);
  std::string sha_rel = absl::StrCat(kBlobsDir, "/", kShaDir);
  if (absl::Status s = MkdirAt(*blobs, kShaDir, Where(sha_rel)); !s.ok()) return s;
  auto sha = OpenDirAt(*blobs, kShaDir, Where(sha_rel));
  if (!sha.ok()) return sha.status();
  blobs_fd_ = *sha;

  bool had_refs = IsDirAt(root_fd_, kRefsDir);
  if (absl::Status s = MkdirAt(root_fd_, kRefsDir, Where(kRefsDir)); !s.ok()) return s;
  auto refs = OpenDirAt(root_fd_, kRefsDir, Where(kRefsDir));
  if (!refs.ok()) return refs.status();
  refs_fd_ = *refs;

  if (!had_refs) {
    if (auto n = ImportRefsLocked(); !n.ok()) return n.status();
  }
  if (!had_refs || !IsRegAt(root_fd_, kIndexFile)) {
    absl::MutexLock l(&index_mu_);
    if (absl::Status s = RebuildIndexLocked(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Entries that another tool put into index.json (e.g. `skopeo copy ... oci:DIR:TAG`
// with one of our tags) have no ref: create one for each whose manifest is here.
absl::StatusOr<int64_t> LayoutStore::ImportRefsLocked() {
  auto data = ReadSmallFileAt(root_fd_, kIndexFile, kMaxIndexBytes, Where(kIndexFile));
  if (absl::IsNotFound(data.status())) return 0;
  if (!data.ok()) return data.status();
  auto j = ojson::parse(*data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return 0;
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) return 0;
  int64_t imported = 0;
  for (const auto& m : *ms) {
    auto d = oci::Descriptor::FromJson(nlohmann::json::parse(m.dump()));
    if (!d.ok() || d->media_type != oci::media::kImageManifest) continue;
    auto tag = d->annotations.find(kRefNameAnnotation);
    if (tag == d->annotations.end() || !IsOurTag(tag->second)) continue;
    struct stat st;
    if (StatAt(refs_fd_, tag->second.c_str(), &st)) continue;  // refs win
    if (!BlobPresent(d->digest, d->size).ok()) continue;
    if (absl::Status s = WriteFileAtomic(refs_fd_, tag->second, d->digest.str() + "\n");
        !s.ok()) {
      return s;
    }
    ++imported;
  }
  return imported;
}

absl::StatusOr<LayoutStore::FileLock> LayoutStore::Lock() {
  int fd = ::openat(root_fd_, kLockFile, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", Where(kLockFile)));
  FileLock lock(fd);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoError(errno, absl::StrCat("flock ", Where(kLockFile)));
  }
  return std::move(lock);
}

// ---------------------------------------------------------------------------
// Temp files.

absl::StatusOr<int> LayoutStore::CreateTemp(absl::string_view kind, std::string* name) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    *name = absl::StrCat(kind, "-", RandomHex());
    int fd = ::openat(tmp_fd_, name->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0644);
    if (fd >= 0) return fd;
    if (errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("create temp file in ", Where(kTmpDir)));
    }
  }
  return absl::InternalError(absl::StrCat("cannot create a temp file in ", Where(kTmpDir)));
}

absl::Status LayoutStore::CommitTemp(int fd, const std::string& temp_name, int dir_fd,
                                     const std::string& final_name) {
  if (options_.fsync && ::fsync(fd) != 0) {
    return ErrnoError(errno, absl::StrCat("fsync ", Where(kTmpDir), "/", temp_name));
  }
  if (::renameat(tmp_fd_, temp_name.c_str(), dir_fd, final_name.c_str()) != 0) {
    return ErrnoError(errno, absl::StrCat("rename ", Where(kTmpDir), "/", temp_name, " to ",
                                          final_name));
  }
  if (options_.fsync && ::fsync(dir_fd) != 0) {
    return ErrnoError(errno, absl::StrCat("fsync directory of ", final_name));
  }
  return absl::OkStatus();
}

absl::Status LayoutStore::WriteFileAtomic(int dir_fd, const std::string& name,
                                          absl::string_view data) {
  std::string temp;
  auto fd = CreateTemp("file", &temp);
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  TempGuard guard(tmp_fd_, temp);
  if (absl::Status s = WriteAll(*fd, data, name); !s.ok()) return s;
  if (absl::Status s = CommitTemp(*fd, temp, dir_fd, name); !s.ok()) return s;
  guard.Disarm();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Blobs.

absl::StatusOr<int> LayoutStore::OpenBlob(const oci::Digest& digest, struct stat* st) {
  if (!digest.valid()) return absl::InvalidArgumentError("blob digest is empty");
  int fd = ::openat(blobs_fd_, digest.hex().c_str(),
                    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", digest.str(), " not in ", Describe()));
    }
    if (errno == ELOOP) {
      return absl::DataLossError(absl::StrCat(Where("blobs/sha256/"), digest.hex(),
                                              " is a symbolic link; refusing to follow it"));
    }
    return ErrnoError(errno, absl::StrCat("open blob ", digest.str(), " in ", Describe()));
  }
  if (::fstat(fd, st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, absl::StrCat("stat blob ", digest.str()));
  }
  if (!S_ISREG(st->st_mode)) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(Where("blobs/sha256/"), digest.hex(),
                                            " is not a regular file; refusing it"));
  }
  return fd;
}

absl::Status LayoutStore::BlobPresent(const oci::Digest& digest, int64_t size) {
  if (!digest.valid()) return absl::InvalidArgumentError("blob digest is empty");
  struct stat st;
  if (!StatAt(blobs_fd_, digest.hex().c_str(), &st)) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", digest.str(), " not in ", Describe()));
    }
    return ErrnoError(errno, absl::StrCat("stat blob ", digest.str()));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(absl::StrCat(Where("blobs/sha256/"), digest.hex(),
                                            " is not a regular file"));
  }
  if (size >= 0 && st.st_size != size) {
    return absl::DataLossError(absl::StrCat("blob ", digest.str(), " in ", Describe(), " has ",
                                            st.st_size, " bytes, expected ", size));
  }
  Freshen(digest.hex(), st);
  return absl::OkStatus();
}

void LayoutStore::Freshen(const std::string& hex, const struct stat& st) {
  if (absl::Now() - MtimeOf(st) < kFreshenAfter) return;
  ::utimensat(blobs_fd_, hex.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
}

void LayoutStore::Quarantine(const std::string& hex, const struct stat& bad,
                             std::string* moved_to) {
  moved_to->clear();
  std::string name = absl::StrCat("corrupt-", hex, "-", RandomHex());
  if (::renameat(blobs_fd_, hex.c_str(), tmp_fd_, name.c_str()) != 0) return;
  Changed();
  struct stat now;
  if (StatAt(tmp_fd_, name.c_str(), &now) &&
      (now.st_ino != bad.st_ino || now.st_dev != bad.st_dev)) {
    // A good copy was renamed into place after we opened the bad one: put it back,
    // unless yet another copy has arrived since.
    if (::renameat2(tmp_fd_, name.c_str(), blobs_fd_, hex.c_str(), RENAME_NOREPLACE) == 0) return;
  }
  // Keep it for inspection until a Gc after min_age.
  ::utimensat(tmp_fd_, name.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
  *moved_to = absl::StrCat(kTmpDir, "/", name);
}

absl::StatusOr<int64_t> LayoutStore::StatBlob(const oci::Digest& digest) {
  if (!digest.valid()) return absl::InvalidArgumentError("blob digest is empty");
  struct stat st;
  if (!StatAt(blobs_fd_, digest.hex().c_str(), &st)) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob ", digest.str(), " not in ", Describe()));
    }
    return ErrnoError(errno, absl::StrCat("stat blob ", digest.str()));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(absl::StrCat(Where("blobs/sha256/"), digest.hex(),
                                            " is not a regular file (symbolic link?); refusing it"));
  }
  return static_cast<int64_t>(st.st_size);
}

absl::Status LayoutStore::ReadBlob(const oci::Digest& digest, int64_t offset,
                                   oci::ByteSink& sink) {
  if (offset < 0) return absl::InvalidArgumentError("negative blob offset");
  struct stat st;
  auto fd = OpenBlob(digest, &st);
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  if (offset > st.st_size) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of blob ",
                                              digest.str(), " (", st.st_size, " bytes)"));
  }
  if (offset > 0 && ::lseek(*fd, offset, SEEK_SET) != offset) {
    return ErrnoError(errno, absl::StrCat("seek blob ", digest.str()));
  }
  // From offset 0 the content is checked against its digest, unless this very
  // file version was checked before.
  const bool verify = offset == 0 && !KnownGood(digest.hex(), st);
  oci::Sha256 hash;
  int64_t got = 0;
  std::string buf(kChunk, '\0');
  for (;;) {
    ssize_t r = ::read(*fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read blob ", digest.str()));
    }
    if (r == 0) break;
    absl::string_view chunk(buf.data(), static_cast<size_t>(r));
    got += r;
    if (verify) hash.Update(chunk);
    if (absl::Status s = sink.Write(chunk); !s.ok()) return s;
  }
  if (offset != 0) return absl::OkStatus();
  if (!verify) {
    if (got == st.st_size) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("blob ", digest.str(), " in ", Describe(),
                                            " changed while read: ", got, " bytes, file size ",
                                            st.st_size));
  }
  oci::Digest actual = hash.Finish();
  if (got == st.st_size && actual == digest) {
    NoteGood(digest.hex(), st);
    return absl::OkStatus();
  }
  std::string moved;
  Quarantine(digest.hex(), st, &moved);
  return absl::DataLossError(absl::StrCat(
      "blob ", digest.str(), " in ", Describe(), " is corrupt: read ", got, " bytes (file size ",
      st.st_size, ") hashing to ", actual.str(), "; ",
      moved.empty() ? std::string("could not move it aside")
                    : absl::StrCat("moved to ", Where(moved)),
      ", write it again to heal the store"));
}

absl::StatusOr<oci::Descriptor> LayoutStore::WriteBlob(const oci::Digest& expected, int64_t size,
                                                       oci::ByteSource& source) {
  if (size < -1) return absl::InvalidArgumentError("blob size must be -1 (unknown) or >= 0");

  // Present already: check the source against it without writing a copy.
  struct stat st;
  if (expected.valid() && size >= 0 && StatAt(blobs_fd_, expected.hex().c_str(), &st) &&
      S_ISREG(st.st_mode) && st.st_size == size) {
    oci::Sha256 hash;
    class HashOnly : public oci::ByteSink {
     public:
      HashOnly(oci::Sha256* h, int64_t limit) : h_(h), limit_(limit) {}
      absl::Status Write(absl::string_view chunk) override {
        if (h_->size() + static_cast<int64_t>(chunk.size()) > limit_) {
          return absl::InvalidArgumentError(
              absl::StrCat("blob source has more than the expected ", limit_, " bytes"));
        }
        h_->Update(chunk);
        return absl::OkStatus();
      }

     private:
      oci::Sha256* h_;
      int64_t limit_;
    } sink(&hash, size);
    if (absl::Status s = Pump(source, sink); !s.ok()) return s;
    int64_t got = hash.size();
    oci::Digest actual = hash.Finish();
    if (got != size) {
      return absl::InvalidArgumentError(
          absl::StrCat("blob source has ", got, " bytes, expected ", size));
    }
    if (actual != expected) {
      return absl::InvalidArgumentError(absl::StrCat("blob source hashes to ", actual.str(),
                                                     ", expected ", expected.str()));
    }
    Freshen(expected.hex(), st);
    return BlobDescriptor(expected, size);
  }

  std::string temp;
  auto fd = CreateTemp("blob", &temp);
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  TempGuard guard(tmp_fd_, temp);
  HashingFileSink sink(*fd, size, absl::StatusCode::kInvalidArgument);
  if (absl::Status s = Pump(source, sink); !s.ok()) return s;
  int64_t got = sink.size();
  oci::Digest actual = sink.Finish();
  if (size >= 0 && got != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob source has ", got, " bytes, expected ", size));
  }
  if (expected.valid() && actual != expected) {
    return absl::InvalidArgumentError(absl::StrCat("blob source hashes to ", actual.str(),
                                                   ", expected ", expected.str()));
  }
  if (absl::Status s = CommitTemp(*fd, temp, blobs_fd_, actual.hex()); !s.ok()) return s;
  guard.Disarm();
  if (options_.max_bytes > 0) approx_bytes_.fetch_add(got, std::memory_order_relaxed);
  return BlobDescriptor(actual, got);
}

absl::Status LayoutStore::WriteBytesBlob(absl::string_view data) {
  oci::Digest digest = oci::Digest::Of(data);
  if (BlobPresent(digest, static_cast<int64_t>(data.size())).ok()) return absl::OkStatus();
  oci::StringSource source(data);
  auto d = WriteBlob(oci::Digest(), static_cast<int64_t>(data.size()), source);
  return d.status();
}

absl::Status LayoutStore::MountBlob(const cache::Location& from) {
  if (!from.digest.valid()) return absl::InvalidArgumentError("location has no digest");
  absl::Status present = BlobPresent(from.digest, from.size);
  if (present.ok()) return absl::OkStatus();
  if (!absl::IsNotFound(present) && !absl::IsDataLoss(present)) return present;
  if (!options_.fetcher) {
    return absl::UnimplementedError(absl::StrCat(Describe(), " cannot fetch ", from.url,
                                                 " by itself (no fetcher configured)"));
  }
  std::string temp;
  auto fd = CreateTemp("fetch", &temp);
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  TempGuard guard(tmp_fd_, temp);
  HashingFileSink sink(*fd, from.size, absl::StatusCode::kDataLoss);
  if (absl::Status s = options_.fetcher(from, sink); !s.ok()) return s;
  int64_t got = sink.size();
  oci::Digest actual = sink.Finish();
  if (got != from.size || actual != from.digest) {
    return absl::DataLossError(absl::StrCat("fetched ", from.url, ": ", got, " bytes hashing to ",
                                            actual.str(), ", expected ", from.size, " bytes of ",
                                            from.digest.str()));
  }
  if (absl::Status s = CommitTemp(*fd, temp, blobs_fd_, actual.hex()); !s.ok()) return s;
  guard.Disarm();
  return absl::OkStatus();
}

absl::StatusOr<std::string> LayoutStore::ReadSmallBlob(const oci::Digest& digest,
                                                       int64_t max_size) {
  struct stat st;
  auto fd = OpenBlob(digest, &st);
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  if (st.st_size > max_size) {
    return absl::DataLossError(absl::StrCat("blob ", digest.str(), " in ", Describe(), " has ",
                                            st.st_size, " bytes; a manifest has at most ",
                                            max_size));
  }
  std::string data;
  if (absl::Status s = ReadAll(*fd, max_size, &data, digest.str()); !s.ok()) return s;
  if (static_cast<int64_t>(data.size()) == st.st_size && oci::Digest::Of(data) == digest) {
    return data;
  }
  std::string moved;
  Quarantine(digest.hex(), st, &moved);
  return absl::DataLossError(absl::StrCat(
      "blob ", digest.str(), " in ", Describe(), " is corrupt (", data.size(), " bytes hashing to ",
      oci::Digest::Of(data).str(), ")",
      moved.empty() ? std::string() : absl::StrCat("; moved to ", Where(moved))));
}

absl::StatusOr<int64_t> LayoutStore::TotalSize() {
  auto names = ListDir(blobs_fd_);
  if (!names.ok()) return names.status();
  int64_t total = 0;
  for (const auto& n : *names) {
    struct stat st;
    if (StatAt(blobs_fd_, n.c_str(), &st) && S_ISREG(st.st_mode)) total += st.st_size;
  }
  return total;
}

absl::Status LayoutStore::RemoveBlob(const oci::Digest& digest) {
  if (!digest.valid()) return absl::InvalidArgumentError("blob digest is empty");
  if (::unlinkat(blobs_fd_, digest.hex().c_str(), 0) == 0) {
    Changed();
    return absl::OkStatus();
  }
  if (errno == ENOENT) {
    return absl::NotFoundError(absl::StrCat("blob ", digest.str(), " not in ", Describe()));
  }
  return ErrnoError(errno, absl::StrCat("remove blob ", digest.str()));
}

// ---------------------------------------------------------------------------
// Refs and entries.

absl::StatusOr<std::vector<std::string>> LayoutStore::ListDir(int dir_fd) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open a directory of ", Describe()));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, absl::StrCat("opendir in ", Describe()));
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    absl::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  return names;
}

absl::StatusOr<oci::Digest> LayoutStore::ReadRef(const std::string& tag, absl::Time* mtime,
                                                 struct stat* st_out) {
  std::string where = Where(absl::StrCat(kRefsDir, "/", tag));
  struct stat st;
  auto data = ReadSmallFileAt(refs_fd_, tag.c_str(), kMaxRefBytes, where, &st);
  if (!data.ok()) return data.status();
  if (mtime != nullptr) *mtime = MtimeOf(st);
  if (st_out != nullptr) *st_out = st;
  absl::string_view text = *data;
  absl::ConsumeSuffix(&text, "\n");
  auto digest = oci::Digest::Parse(text);
  if (!digest.ok()) {
    return absl::DataLossError(absl::StrCat(where, " does not hold a digest"));
  }
  return *digest;
}

absl::Status LayoutStore::CommitRef(const std::string& tag, const oci::Digest& digest,
                                    const oci::Digest& expect,
                                    const std::vector<oci::Digest>* blobs) {
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  if (blobs != nullptr) {
    for (const auto& d : *blobs) {
      struct stat st;
      if (!StatAt(blobs_fd_, d.hex().c_str(), &st)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "blob ", d.str(), " of entry ", tag, " was evicted from ", Describe(),
            " before the entry was stored; write it again"));
      }
    }
  }
  if (expect.valid()) {
    auto current = ReadRef(tag);
    if (!current.ok() || *current != expect) {
      return absl::AbortedError(absl::StrCat("entry ", tag, " changed meanwhile"));
    }
  }
  if (absl::Status s = WriteFileAtomic(refs_fd_, tag, digest.str() + "\n"); !s.ok()) return s;
  Changed();
  absl::MutexLock l(&mu_);
  pending_.insert(tag);
  return absl::OkStatus();
}

absl::Status LayoutStore::AfterRefChange() {
  if (options_.index_interval == absl::InfiniteDuration()) return absl::OkStatus();
  if (options_.index_interval > absl::ZeroDuration()) {
    absl::MutexLock l(&mu_);
    if (absl::Now() - last_index_write_ < options_.index_interval) return absl::OkStatus();
  }
  absl::Status s = SyncIndex();
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("entry stored, but ", Where(kIndexFile),
                                               " was not updated: ", s.message()));
  }
  return s;
}

LayoutStore::FileVersion LayoutStore::FileVersion::Of(const struct stat& st) {
  auto ns = [](const struct timespec& t) {
    return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
  };
  FileVersion v;
  v.dev = st.st_dev;
  v.ino = st.st_ino;
  v.size = st.st_size;
  v.mtime_ns = ns(st.st_mtim);
  v.ctime_ns = ns(st.st_ctim);
  return v;
}

bool LayoutStore::KnownGood(const std::string& hex, const struct stat& st) {
  absl::MutexLock l(&good_mu_);
  auto it = good_.find(hex);
  return it != good_.end() && it->second == FileVersion::Of(st);
}

void LayoutStore::NoteGood(const std::string& hex, const struct stat& st) {
  constexpr size_t kMaxGood = 65536;
  if (absl::Now() - absl::TimeFromTimespec(st.st_ctim) < absl::Seconds(1)) return;
  absl::MutexLock l(&good_mu_);
  if (good_.size() >= kMaxGood && good_.count(hex) == 0) good_.clear();
  good_[hex] = FileVersion::Of(st);
}

void LayoutStore::Remember(const std::string& key, const struct stat& ref,
                           const oci::Digest& manifest, int64_t manifest_size,
                           const cache::Entry& entry) {
  constexpr size_t kMaxMemo = 8192;
  Memo m;
  m.ref = FileVersion::Of(ref);
  m.ref_mtime = MtimeOf(ref);
  m.manifest = manifest;
  m.manifest_size = manifest_size;
  m.entry = entry;
  absl::MutexLock l(&memo_mu_);
  if (memo_.size() >= kMaxMemo && memo_.count(key) == 0) memo_.clear();
  memo_[key] = std::move(m);
}

std::optional<std::pair<LayoutStore::FileVersion, LayoutStore::FileVersion>>
LayoutStore::QuietDirs(absl::Time now) const {
  struct stat r, b;
  if (::fstat(refs_fd_, &r) != 0 || ::fstat(blobs_fd_, &b) != 0) return std::nullopt;
  auto quiet = [&](const struct stat& st) {
    return now - absl::TimeFromTimespec(st.st_mtim) >= absl::Seconds(1) &&
           now - absl::TimeFromTimespec(st.st_ctim) >= absl::Seconds(1);
  };
  if (!quiet(r) || !quiet(b)) return std::nullopt;
  return std::make_pair(FileVersion::Of(r), FileVersion::Of(b));
}

void LayoutStore::MarkChecked(const std::string& key, const FileVersion& ref, int64_t changes,
                              const std::pair<FileVersion, FileVersion>& dirs) {
  absl::MutexLock l(&memo_mu_);
  auto it = memo_.find(key);
  if (it == memo_.end() || !(it->second.ref == ref)) return;
  it->second.trusted = true;
  it->second.checked_changes = changes;
  it->second.refs_dir = dirs.first;
  it->second.blobs_dir = dirs.second;
}

void LayoutStore::Forget(const std::string& key) {
  absl::MutexLock l(&memo_mu_);
  memo_.erase(key);
}

absl::StatusOr<cache::Entry> LayoutStore::Lookup(absl::string_view key,
                                                 const cache::LookupOptions& opts) {
  auto tag = cache::TagForKey(key);
  if (!tag.ok()) return tag.status();
  const std::string key_str(key);
  // Both read before any check: a change made during the checks below makes
  // the memo they mark untrusted.
  const int64_t changes = changes_.load(std::memory_order_acquire);
  const absl::Time started = absl::Now();
  const auto dirs = QuietDirs(started);
  oci::Digest manifest_digest;
  absl::Time ref_mtime;
  FileVersion ref_version;
  std::optional<cache::Entry> entry;
  bool trusted = false;
  if (dirs) {
    absl::MutexLock l(&memo_mu_);
    auto it = memo_.find(key_str);
    if (it != memo_.end() && it->second.trusted && it->second.checked_changes == changes &&
        it->second.refs_dir == dirs->first && it->second.blobs_dir == dirs->second) {
      manifest_digest = it->second.manifest;
      ref_mtime = it->second.ref_mtime;
      ref_version = it->second.ref;
      entry = it->second.entry;
      trusted = true;
    }
  }
  struct stat ref_st;
  // A key looked up before, its ref unchanged: the entry is known, only its
  // files' presence is checked below.
  if (!trusted && StatAt(refs_fd_, tag->c_str(), &ref_st) && S_ISREG(ref_st.st_mode)) {
    int64_t manifest_size = 0;
    {
      absl::MutexLock l(&memo_mu_);
      auto it = memo_.find(key_str);
      if (it != memo_.end() && it->second.ref == FileVersion::Of(ref_st)) {
        manifest_digest = it->second.manifest;
        manifest_size = it->second.manifest_size;
        ref_mtime = MtimeOf(ref_st);
        entry = it->second.entry;
      }
    }
    if (entry) {
      absl::Status s = BlobPresent(manifest_digest, manifest_size);
      if (!s.ok()) {
        Forget(key_str);
        entry.reset();  // read it all again below
      }
    }
  }
  if (!entry) {
    std::string manifest;
    for (int attempt = 0;; ++attempt) {
      auto ref = ReadRef(*tag, &ref_mtime, &ref_st);
      if (absl::IsNotFound(ref.status())) {
        return absl::NotFoundError(absl::StrCat("miss: ", key, " (", Describe(), ")"));
      }
      if (absl::IsDataLoss(ref.status())) {
        return absl::NotFoundError(absl::StrCat("entry unreadable: ", ref.status().message()));
      }
      if (!ref.ok()) return ref.status();
      auto m = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
      // The ref may have been replaced and its old manifest collected meanwhile: read it again.
      if (absl::IsNotFound(m.status()) && attempt == 0) continue;
      if (absl::IsNotFound(m.status())) {
        return absl::NotFoundError(absl::StrCat("entry ", *tag, " names manifest ", ref->str(),
                                                " which is gone from ", Describe()));
      }
      if (!m.ok()) return m.status();
      manifest_digest = *ref;
      manifest = *std::move(m);
      break;
    }
    auto decoded = cache::DecodeEntry(manifest, key);
    if (!decoded.ok()) return decoded.status();
    entry = *std::move(decoded);
    Remember(key_str, ref_st, manifest_digest, static_cast<int64_t>(manifest.size()), *entry);
  }
  if (!trusted) ref_version = FileVersion::Of(ref_st);
  if (!cache::SatisfiesLookup(*entry, opts)) {
    std::string which;
    for (const auto& [k, v] : opts.require) {
      auto it = entry->annotations.find(k);
      if (it == entry->annotations.end() || it->second != v) {
        which = k;
        break;
      }
    }
    return absl::NotFoundError(absl::StrCat("entry for key does not match: annotation ", which,
                                            " differs"));
  }
  if (!trusted) {
    for (const auto& b : entry->blobs) {
      absl::Status s = BlobPresent(b.digest, b.size);
      if (absl::IsNotFound(s) || absl::IsDataLoss(s)) {
        return absl::NotFoundError(absl::StrCat("entry for key is incomplete: ", s.message()));
      }
      if (!s.ok()) return s;
    }
    if (dirs) MarkChecked(key_str, ref_version, changes, *dirs);
  }
  // Last use for eviction: the ref's mtime (cheap, no lock; a ref replaced
  // meanwhile is newer anyway). The memo follows the file's new times.
  if (started - ref_mtime >= absl::Seconds(1) &&
      ::utimensat(refs_fd_, tag->c_str(), nullptr, AT_SYMLINK_NOFOLLOW) == 0) {
    struct stat now_st;
    absl::MutexLock l(&memo_mu_);
    auto it = memo_.find(key_str);
    if (it != memo_.end() && it->second.ref == ref_version &&
        StatAt(refs_fd_, tag->c_str(), &now_st) && now_st.st_ino == ref_version.ino &&
        now_st.st_dev == ref_version.dev) {
      it->second.ref = FileVersion::Of(now_st);
      it->second.ref_mtime = MtimeOf(now_st);
    }
  }
  absl::Time now = Now();
  if (opts.touch && cache::NeedsTouch(*entry, now)) {
    // A failed touch (read-only directory, a concurrent Put) does not fail the lookup.
    Forget(key_str);
    auto touched = Touch(*entry, *tag, manifest_digest, now);
    if (touched.ok()) return touched;
  }
  return *std::move(entry);
}

absl::StatusOr<cache::Entry> LayoutStore::Touch(cache::Entry entry, const std::string& tag,
                                                const oci::Digest& old_manifest, absl::Time now) {
  entry.last_used = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  auto enc = cache::EncodeEntry(entry, now);
  if (!enc.ok()) return enc.status();
  for (const auto& [desc, bytes] : enc->small_blobs) {
    if (absl::Status s = WriteBytesBlob(bytes); !s.ok()) return s;
  }
  if (absl::Status s = WriteBytesBlob(enc->manifest); !s.ok()) return s;
  if (absl::Status s = CommitRef(tag, enc->manifest_digest, old_manifest); !s.ok()) return s;
  if (absl::Status s = AfterRefChange(); !s.ok()) return s;
  return entry;
}

absl::Status LayoutStore::Put(const cache::Entry& entry) {
  auto enc = cache::EncodeEntry(entry, Now());
  if (!enc.ok()) return enc.status();
  for (const auto& b : entry.blobs) {
    absl::Status s = BlobPresent(b.digest, b.size);
    if (absl::IsNotFound(s) || absl::IsDataLoss(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("entry names blob ", b.digest.str(), " (", b.size, " bytes) that ",
                       Describe(), " does not have: ", s.message()));
    }
    if (!s.ok()) return s;
  }
  for (const auto& [desc, bytes] : enc->small_blobs) {
    if (absl::Status s = WriteBytesBlob(bytes); !s.ok()) return s;
  }
  if (absl::Status s = WriteBytesBlob(enc->manifest); !s.ok()) return s;
  std::vector<oci::Digest> needed;
  if (options_.max_bytes > 0) {
    needed.push_back(enc->manifest_digest);
    for (const auto& [desc, bytes] : enc->small_blobs) needed.push_back(desc.digest);
    for (const auto& b : entry.blobs) needed.push_back(b.digest);
  }
  if (absl::Status s = CommitRef(enc->tag, enc->manifest_digest, oci::Digest(),
                                 needed.empty() ? nullptr : &needed);
      !s.ok()) {
    return s;
  }
  absl::Status s = AfterRefChange();
  MaybeEvict(0);
  return s;
}

absl::Status LayoutStore::Delete(absl::string_view key) {
  auto tag = cache::TagForKey(key);
  if (!tag.ok()) return tag.status();
  // index.json is updated under the same lock hold as the ref removal: a Gc in
  // between would otherwise re-import the entry from index.json.
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  auto ref = ReadRef(*tag);
  if (absl::IsNotFound(ref.status())) {
    return absl::NotFoundError(absl::StrCat("miss: ", key, " (", Describe(), ")"));
  }
  if (ref.ok()) {
    // A hashed tag may hold another key's entry: leave that one alone.
    auto m = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
    if (m.ok() && absl::IsNotFound(cache::DecodeEntry(*m, key).status())) {
      return absl::NotFoundError(absl::StrCat("miss: ", key, " (", Describe(), ")"));
    }
  } else if (!absl::IsDataLoss(ref.status())) {
    return ref.status();
  }
  if (::unlinkat(refs_fd_, tag->c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("remove ", Where(kRefsDir), "/", *tag));
  }
  Changed();
  absl::Status s = LoadIndexLocked();
  if (s.ok()) {
    UpdateTagLocked(*tag);
    s = WriteIndexLocked();
  }
  if (!s.ok()) {
    index_.loaded = false;
    absl::MutexLock l(&mu_);
    pending_.insert(*tag);
    return absl::Status(s.code(), absl::StrCat("entry removed, but ", Where(kIndexFile),
                                               " was not updated: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status LayoutStore::List(const std::function<bool(const cache::EntryInfo&)>& fn) {
  auto names = ListDir(refs_fd_);
  if (!names.ok()) return names.status();
  for (const auto& tag : *names) {
    if (tag.empty() || tag[0] == '.') continue;
    auto ref = ReadRef(tag);
    if (!ref.ok()) continue;
    auto manifest = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
    if (!manifest.ok()) continue;
    auto info = cache::InfoFromManifest(*manifest, tag, *ref);
    if (!info.ok()) continue;
    if (!fn(*info)) break;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// index.json.

absl::Status LayoutStore::Flush() { return SyncIndex(); }

absl::Status LayoutStore::SyncIndex() {
  absl::MutexLock il(&index_mu_);
  std::set<std::string> tags;
  {
    absl::MutexLock l(&mu_);
    tags.swap(pending_);
  }
  if (tags.empty()) return absl::OkStatus();  // another thread wrote our change
  auto requeue = [&] {
    absl::MutexLock l(&mu_);
    pending_.insert(tags.begin(), tags.end());
  };
  auto lock = Lock();
  if (!lock.ok()) {
    requeue();
    return lock.status();
  }
  absl::Status s = LoadIndexLocked();
  if (s.ok()) {
    for (const auto& tag : tags) UpdateTagLocked(tag);
    s = WriteIndexLocked();
  }
  if (!s.ok()) {
    requeue();
    index_.loaded = false;
    return s;
  }
  absl::MutexLock l(&mu_);
  last_index_write_ = absl::Now();
  return s;
}

absl::Status LayoutStore::LoadIndexLocked() {
  int fd = ::openat(root_fd_, kIndexFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT) return ErrnoError(errno, absl::StrCat("open ", Where(kIndexFile)));
    // Gone: rebuild it from refs.
    index_ = IndexCache();
    RebuildOursLocked();
    index_.loaded = true;
    return absl::OkStatus();
  }
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", Where(kIndexFile)));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(Where(kIndexFile), " is not a regular file"));
  }
  std::string bytes;
  if (absl::Status s = ReadAll(fd, kMaxIndexBytes, &bytes, Where(kIndexFile)); !s.ok()) return s;
  // Unchanged since we last read or wrote it: the cached parse is current.
  if (index_.loaded && bytes == index_.bytes) return absl::OkStatus();
  if (absl::Status s = ParseIndexLocked(bytes); !s.ok()) {
    // Unparsable (e.g. an empty file after a power loss): rebuild from refs.
    index_ = IndexCache();
    RebuildOursLocked();
    index_.loaded = true;
  }
  return absl::OkStatus();
}

absl::Status LayoutStore::ParseIndexLocked(const std::string& bytes) {
  std::vector<absl::string_view> own;
  absl::string_view own_annotations;
  if (SplitOwnIndex(bytes, &own, &own_annotations)) {
    IndexCache fresh;
    fresh.annotations = std::string(own_annotations);
    for (absl::string_view m : own) {
      std::string tag = RefNameIn(m);
      if (IsOurTag(tag)) {
        fresh.ours[tag] = std::string(m);
      } else {
        fresh.foreign.emplace_back(m);
      }
    }
    fresh.bytes = bytes;
    fresh.loaded = true;
    index_ = std::move(fresh);
    return absl::OkStatus();
  }
  // Written by another tool: parse it for real.
  auto j = ojson::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(Where(kIndexFile), " is not a JSON object"));
  }
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) {
    return absl::DataLossError(absl::StrCat(Where(kIndexFile), " has no manifests array"));
  }
  IndexCache fresh;
  if (auto a = j.find("annotations"); a != j.end() && a->is_object() && !a->empty()) {
    fresh.annotations = a->dump();
  }
  for (const auto& m : *ms) {
    std::string tag;
    if (m.is_object()) {
      auto a = m.find("annotations");
      if (a != m.end() && a->is_object()) {
        auto r = a->find(kRefNameAnnotation);
        if (r != a->end() && r->is_string()) tag = r->get<std::string>();
      }
    }
    if (IsOurTag(tag)) {
      fresh.ours[tag] = m.dump();
    } else {
      fresh.foreign.push_back(m.dump());
    }
  }
  fresh.bytes = bytes;
  fresh.loaded = true;
  index_ = std::move(fresh);
  return absl::OkStatus();
}

void LayoutStore::UpdateTagLocked(const std::string& tag) {
  auto ref = ReadRef(tag);
  if (!ref.ok()) {
    index_.ours.erase(tag);
    return;
  }
  // Only list manifests that are really here (skopeo would fail on the others).
  auto manifest = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
  if (!manifest.ok()) {
    index_.ours.erase(tag);
    return;
  }
  oci::Descriptor d;
  d.media_type = oci::media::kImageManifest;
  d.digest = *ref;
  d.size = static_cast<int64_t>(manifest->size());
  d.artifact_type = cache::format::kArtifactType;
  d.annotations[kRefNameAnnotation] = tag;
  index_.ours[tag] = d.ToJson().dump();
}

void LayoutStore::RebuildOursLocked() {
  index_.ours.clear();
  auto names = ListDir(refs_fd_);
  if (!names.ok()) return;
  for (const auto& tag : *names) {
    if (!tag.empty() && tag[0] != '.') UpdateTagLocked(tag);
  }
}

absl::Status LayoutStore::WriteIndexLocked() {
  std::string out;
  size_t reserve = 256 + index_.annotations.size();
  for (const auto& f : index_.foreign) reserve += f.size() + 1;
  for (const auto& [tag, d] : index_.ours) reserve += d.size() + 1;
  out.reserve(reserve);
  absl::StrAppend(&out, "{\"schemaVersion\":2,\"mediaType\":\"", oci::media::kImageIndex,
                  "\",\"manifests\":[");
  bool first = true;
  auto add = [&](const std::string& d) {
    if (!first) out.push_back(',');
    first = false;
    out.append(d);
  };
  for (const auto& f : index_.foreign) add(f);
  for (const auto& [tag, d] : index_.ours) add(d);
  out.push_back(']');
  if (!index_.annotations.empty()) absl::StrAppend(&out, ",\"annotations\":", index_.annotations);
  out.push_back('}');
  if (index_.loaded && out == index_.bytes) return absl::OkStatus();
  if (absl::Status s = WriteFileAtomic(root_fd_, kIndexFile, out); !s.ok()) return s;
  index_.bytes = std::move(out);
  index_.loaded = true;
  return absl::OkStatus();
}

absl::Status LayoutStore::RebuildIndexLocked() {
  if (absl::Status s = LoadIndexLocked(); !s.ok()) return s;
  {
    // Every ref written so far is read below (ref writers hold the file lock).
    absl::MutexLock l(&mu_);
    pending_.clear();
  }
  RebuildOursLocked();
  return WriteIndexLocked();
}

absl::Status LayoutStore::RebuildIndex() {
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  absl::Status s = RebuildIndexLocked();
  if (!s.ok()) index_.loaded = false;
  return s;
}

// ---------------------------------------------------------------------------
// Garbage collection and eviction.

namespace {

// The blobs an entry or image manifest references (config, layers, subject).
void MarkManifest(const std::string& bytes, std::set<std::string>* live) {
  auto m = oci::Manifest::Parse(bytes);
  if (!m.ok()) return;
  live->insert(m->config.digest.hex());
  for (const auto& l : m->layers) live->insert(l.digest.hex());
  if (m->subject) live->insert(m->subject->digest.hex());
}

}  // namespace

void LayoutStore::MarkForeignLocked(std::set<std::string>* live) {
  std::vector<std::pair<std::string, int>> todo;
  for (const auto& f : index_.foreign) todo.emplace_back(f, 0);
  while (!todo.empty()) {
    auto [json_text, depth] = todo.back();
    todo.pop_back();
    auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    auto d = oci::Descriptor::FromJson(j);
    if (!d.ok()) continue;
    if (!live->insert(d->digest.hex()).second) continue;
    if (!IsManifestOrIndex(d->media_type) || depth >= kMaxForeignDepth) continue;
    auto bytes = ReadSmallBlob(d->digest, kMaxIndexBytes);
    if (!bytes.ok()) continue;
    if (d->media_type == oci::media::kImageIndex ||
        d->media_type == oci::media::kDockerManifestList) {
      auto idx = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
      if (idx.is_object() && idx.contains("manifests") && idx["manifests"].is_array()) {
        for (const auto& m : idx["manifests"]) todo.emplace_back(m.dump(), depth + 1);
      }
    } else {
      MarkManifest(*bytes, live);
    }
  }
}

void LayoutStore::MaybeEvict(int64_t added) {
  if (options_.max_bytes <= 0) return;
  int64_t now_bytes = approx_bytes_.fetch_add(added, std::memory_order_relaxed) + added;
  if (now_bytes >= 0) {
    int64_t at = evict_at_bytes_.load(std::memory_order_relaxed);
    if (now_bytes <= std::max(at, options_.max_bytes)) return;
    // Over the bound but the last pass could not get under it: wait for 5% more
    // growth or 10 s before measuring again.
    if (at > options_.max_bytes &&
        absl::ToUnixNanos(absl::Now()) < evict_retry_after_ns_.load(std::memory_order_relaxed)) {
      return;
    }
  }
  if (evicting_.exchange(true)) return;  // another thread is at it
  Evict().IgnoreError();  // the write succeeded; eviction is best effort
  evicting_.store(false);
}

absl::StatusOr<EvictStats> LayoutStore::Evict() {
  EvictStats stats;
  if (options_.max_bytes <= 0) return stats;
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  const absl::Time now = absl::Now();
  const absl::Time young = now - options_.evict_grace;

  struct Candidate {
    std::string tag;
    absl::Time used;
    std::vector<std::string> blobs;  // hex, the manifest's own included
  };
  std::vector<Candidate> entries;
  std::map<std::string, int> refcount;  // hex -> entries referencing it
  auto refs = ListDir(refs_fd_);
  if (!refs.ok()) return refs.status();
  for (const auto& tag : *refs) {
    if (tag.empty() || tag[0] == '.') continue;
    Candidate c;
    c.tag = tag;
    auto ref = ReadRef(tag, &c.used);
    if (!ref.ok()) continue;
    auto manifest = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
    if (!manifest.ok()) continue;  // broken: Gc's business; its blobs are unreferenced
    std::set<std::string> blobs = {ref->hex()};
    MarkManifest(*manifest, &blobs);
    c.blobs.assign(blobs.begin(), blobs.end());
    for (const auto& b : c.blobs) ++refcount[b];
    entries.push_back(std::move(c));
  }
  if (absl::Status s = LoadIndexLocked(); !s.ok()) return s;
  std::set<std::string> pinned;  // foreign images
  MarkForeignLocked(&pinned);

  struct BlobFile {
    int64_t size;
    absl::Time mtime;
  };
  std::map<std::string, BlobFile> files;
  auto names = ListDir(blobs_fd_);
  if (!names.ok()) return names.status();
  for (const auto& n : *names) {
    struct stat st;
    if (!StatAt(blobs_fd_, n.c_str(), &st) || !S_ISREG(st.st_mode)) continue;
    files[n] = {static_cast<int64_t>(st.st_size), MtimeOf(st)};
    stats.bytes_before += st.st_size;
  }
  int64_t total = stats.bytes_before;
  const int64_t target = options_.max_bytes / 10 * 9;
  auto remove_if_free = [&](const std::string& hex) {
    auto it = files.find(hex);
    if (it == files.end() || refcount[hex] > 0 || pinned.count(hex) || it->second.mtime > young ||
        !oci::Digest::FromHex(hex).ok()) {
      return;
    }
    if (::unlinkat(blobs_fd_, hex.c_str(), 0) != 0) return;
    Changed();
    ++stats.blobs_removed;
    stats.bytes_removed += it->second.size;
    total -= it->second.size;
    files.erase(it);
  };

  if (total > options_.max_bytes) {
    // Blobs no entry references (left by crashes, replaced manifests) go first.
    std::vector<std::string> orphans;
    for (const auto& [hex, f] : files) {
      if (refcount[hex] == 0) orphans.push_back(hex);
    }
    for (const auto& hex : orphans) {
      if (total <= target) break;
      remove_if_free(hex);
    }
    std::sort(entries.begin(), entries.end(),
              [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
    std::vector<std::string> evicted;
    for (const auto& c : entries) {
      if (total <= target || c.used > young) break;
      if (::unlinkat(refs_fd_, c.tag.c_str(), 0) != 0) continue;
      Changed();
      ++stats.entries_evicted;
      evicted.push_back(c.tag);
      for (const auto& b : c.blobs) --refcount[b];
      for (const auto& b : c.blobs) remove_if_free(b);
    }
    if (!evicted.empty()) {
      for (const auto& tag : evicted) UpdateTagLocked(tag);
      if (absl::Status s = WriteIndexLocked(); !s.ok()) {
        index_.loaded = false;
        absl::MutexLock l(&mu_);
        pending_.insert(evicted.begin(), evicted.end());
      }
    }
  }
  stats.bytes_after = total;
  entries_evicted_.fetch_add(stats.entries_evicted, std::memory_order_relaxed);
  bytes_evicted_.fetch_add(stats.bytes_removed, std::memory_order_relaxed);
  approx_bytes_.store(total, std::memory_order_relaxed);
  evict_at_bytes_.store(std::max(options_.max_bytes, total + options_.max_bytes / 20),
                        std::memory_order_relaxed);
  evict_retry_after_ns_.store(absl::ToUnixNanos(now + absl::Seconds(10)),
                              std::memory_order_relaxed);
  return stats;
}

absl::StatusOr<GcStats> LayoutStore::Gc(const GcOptions& opts) {
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  GcStats stats;
  std::set<std::string> live;  // hex digests
  if (!opts.dry_run) {
    auto imported = ImportRefsLocked();
    if (!imported.ok()) return imported.status();
    stats.refs_imported = *imported;
  }


  // Entries.
  auto refs = ListDir(refs_fd_);
  if (!refs.ok()) return refs.status();
  for (const auto& tag : *refs) {
    if (tag.empty() || tag[0] == '.') continue;
    auto ref = ReadRef(tag);
    absl::StatusOr<std::string> manifest =
        ref.ok() ? ReadSmallBlob(*ref, cache::format::kMaxManifestBytes)
                 : absl::StatusOr<std::string>(ref.status());
    if (absl::IsNotFound(manifest.status()) || absl::IsDataLoss(manifest.status())) {
      if (absl::IsNotFound(ref.status())) continue;  // deleted meanwhile
      ++stats.broken_refs_removed;
      if (!opts.dry_run && ::unlinkat(refs_fd_, tag.c_str(), 0) == 0) Changed();
      continue;
    }
    // Any other error (EIO, EMFILE): stop rather than collect blobs still in use.
    if (!manifest.ok()) return manifest.status();
    ++stats.entries;
    live.insert(ref->hex());
    MarkManifest(*manifest, &live);
  }

  // Foreign images listed in index.json, followed through nested indexes.
  if (absl::Status s = LoadIndexLocked(); !s.ok()) return s;
  MarkForeignLocked(&live);

  if (!opts.dry_run) {
    if (absl::Status s = RebuildIndexLocked(); !s.ok()) {
      index_.loaded = false;
      return s;
    }
  }

  const absl::Time cutoff = absl::Now() - opts.min_age;
  auto blobs = ListDir(blobs_fd_);
  if (!blobs.ok()) return blobs.status();
  for (const auto& name : *blobs) {
    if (!oci::Digest::FromHex(name).ok()) continue;  // not a blob of ours; leave it
    struct stat st;
    if (!StatAt(blobs_fd_, name.c_str(), &st)) continue;
    int64_t size = S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : 0;
    if (live.count(name) || MtimeOf(st) > cutoff) {
      ++stats.blobs_kept;
      stats.bytes_kept += size;
      continue;
    }
    if (!opts.dry_run && ::unlinkat(blobs_fd_, name.c_str(), 0) != 0) continue;
    if (!opts.dry_run) Changed();
    ++stats.blobs_removed;
    stats.bytes_removed += size;
  }

  auto temps = ListDir(tmp_fd_);
  if (!temps.ok()) return temps.status();
  for (const auto& name : *temps) {
    struct stat st;
    if (!StatAt(tmp_fd_, name.c_str(), &st) || S_ISDIR(st.st_mode)) continue;
    if (MtimeOf(st) > cutoff) continue;
    if (!opts.dry_run && ::unlinkat(tmp_fd_, name.c_str(), 0) != 0) continue;
    ++stats.temp_files_removed;
    stats.temp_bytes_removed += S_ISREG(st.st_mode) ? st.st_size : 0;
  }
  return stats;
}

}  // namespace ocicache::layout
