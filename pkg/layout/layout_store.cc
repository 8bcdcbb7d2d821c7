// LayoutStore: opening (and creating) the layout, the file lock, and the entry
// operations that tie blobs, refs and index.json together (Put, Delete, List).
// The rest of the class is defined by concern in layout_blobs.cc (temp files and
// blobs), layout_refs.cc (refs, Lookup and its memo), layout_index.cc (index.json)
// and layout_gc.cc (gc, eviction, usage totals).
#include "pkg/layout/layout_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_internal.h"

namespace ocicache::layout {

using internal::ErrnoError;
using internal::kIndexFile;
using internal::kRefsDir;
using internal::kTmpDir;
using internal::ReadSmallFileAt;
using internal::StatAt;
using internal::UniqueFd;

namespace {

constexpr char kLayoutFile[] = "oci-layout";
constexpr char kLockFile[] = "ocicache.lock";
constexpr char kBlobsDir[] = "blobs";
constexpr char kShaDir[] = "sha256";
constexpr char kLayoutJson[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

constexpr int64_t kMaxLayoutFileBytes = 4096;

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

LayoutStore::LayoutStore(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

LayoutStore::~LayoutStore() {
  if (index_writer_.joinable()) {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    index_writer_.join();
  }
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
  const absl::Duration every = store->options_.index_interval;
  if (every > absl::ZeroDuration() && every != absl::InfiniteDuration()) {
    store->index_writer_ = std::thread(&LayoutStore::IndexWriterLoop, store.get());
  }
  return store;
}

std::string LayoutStore::Describe() const { return absl::StrCat("dir:", dir_); }

std::string LayoutStore::Where(absl::string_view rel) const {
  return absl::StrCat(dir_, "/", rel);
}

absl::Time LayoutStore::Now() const { return options_.clock ? options_.clock() : absl::Now(); }

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

// ---------------------------------------------------------------------------
// Opening and creating the layout.

absl::Status LayoutStore::Init() {
  if (absl::Status s = MkdirAll(dir_); !s.ok()) return s;
  root_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) return ErrnoError(errno, absl::StrCat("open ", dir_));

  // A first look without the lock: a complete layout needs nothing more. What it
  // sees may be a layout another opener is making right now (index.json before
  // this look found oci-layout, say), so anything else, a problem included, is
  // decided again under the lock by InitLocked, which alone may fail.
  bool has_layout = false;
  absl::Status first_look = CheckLayoutFile(root_fd_, dir_, &has_layout);
  if (first_look.ok() && !has_layout) first_look = CheckNotForeign(root_fd_, dir_);
  std::string sha_rel = absl::StrCat(kBlobsDir, "/", kShaDir);
  bool complete = first_look.ok() && has_layout && IsDirAt(root_fd_, sha_rel.c_str()) &&
                  IsDirAt(root_fd_, kRefsDir) && IsDirAt(root_fd_, kTmpDir) &&
                  IsRegAt(root_fd_, kIndexFile);
  if (!first_look.ok()) {
    // Another opener may be making the layout: it created the lock file first
    // and holds it. Wait for it, then look again; without a lock file nobody
    // is, and what the first look found stands.
    auto lock = LockIfPresent();
    if (!lock.ok()) return absl::IsNotFound(lock.status()) ? first_look : lock.status();
    if (absl::Status s = InitLocked(has_layout); !s.ok()) return s;
  } else if (!complete) {
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

namespace {

// Opens the lock file with `flags` and takes it; NotFound when it is absent and
// not created.
absl::StatusOr<int> OpenAndLock(int root_fd, int flags, const std::string& where) {
  int fd = ::openat(root_fd, kLockFile, O_RDWR | O_NOFOLLOW | O_CLOEXEC | flags, 0644);
  if (fd < 0 && errno == ENOENT && (flags & O_CREAT) == 0) return absl::NotFoundError(where);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", where));
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      absl::Status s = ErrnoError(errno, absl::StrCat("flock ", where));
      ::close(fd);
      return s;
    }
  }
  return fd;
}

}  // namespace

absl::StatusOr<LayoutStore::FileLock> LayoutStore::LockIfPresent() {
  auto fd = OpenAndLock(root_fd_, 0, Where(kLockFile));
  if (!fd.ok()) return fd.status();
  return FileLock(*fd);
}

absl::StatusOr<LayoutStore::FileLock> LayoutStore::Lock() {
  auto fd = OpenAndLock(root_fd_, O_CREAT, Where(kLockFile));
  if (!fd.ok()) return fd.status();
  return FileLock(*fd);
}

// ---------------------------------------------------------------------------
// Entries: Put, Delete and List (Lookup is in layout_refs.cc).

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
    return base::Prefixed(
        s, absl::StrCat("entry removed, but ", Where(kIndexFile), " was not updated: "));
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

}  // namespace ocicache::layout
