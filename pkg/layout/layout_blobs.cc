// LayoutStore: temp files and atomic writes, and blobs: paths, write (verified
// before the rename into place), read (verified from offset 0), mount, removal,
// and the quarantine of corrupt blobs.
#include "pkg/layout/layout_store.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>  // renameat2, RENAME_NOREPLACE (glibc)
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/layout/layout_internal.h"

namespace ocicache::layout {

using internal::ErrnoError;
using internal::kTmpDir;
using internal::MtimeOf;
using internal::ReadAll;
using internal::StatAt;
using internal::UniqueFd;

namespace {

constexpr size_t kChunk = 256 * 1024;
// Hashing a blob longer than this is long work (about 5 ms at this VM's
// SHA-256 speed): a call that must not wait (base::CallLimits::local_only,
// an HTTP read on the server's event loop) leaves it to one that may.
constexpr int64_t kLongHashBytes = 2 << 20;
// Blobs reused by a write get a fresh mtime (so Gc's min_age protects them) when
// their mtime is older than this.
constexpr absl::Duration kFreshenAfter = absl::Minutes(1);

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

using base::WriteAll;

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

}  // namespace

std::string LayoutStore::BlobPath(const oci::Digest& digest) const {
  return absl::StrCat(dir_, "/blobs/sha256/", digest.hex());
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

absl::StatusOr<int> LayoutStore::OpenVerifiedBlob(const oci::Digest& digest, int64_t* size) {
  struct stat st;
  auto fd = OpenBlob(digest, &st);
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  if (!KnownGood(digest.hex(), st)) {
    if (st.st_size > kLongHashBytes && base::LocalOnly()) {
      return absl::UnavailableError(
          absl::StrCat("blob ", digest.str(), " is to be verified by a call that may wait"));
    }
    oci::Sha256 hash;
    std::string buf(kChunk, '\0');
    int64_t off = 0;
    for (;;) {
      ssize_t r = ::pread(*fd, buf.data(), buf.size(), off);
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, absl::StrCat("read blob ", digest.str()));
      }
      if (r == 0) break;
      hash.Update(absl::string_view(buf.data(), static_cast<size_t>(r)));
      off += r;
    }
    if (off != st.st_size || hash.Finish() != digest) {
      // ReadBlob says how, and moves the file aside.
      oci::NullSink discard;
      absl::Status s = ReadBlob(digest, 0, discard);
      return s.ok() ? absl::DataLossError(absl::StrCat("blob ", digest.str(), " changed while read"))
                    : s;
    }
    NoteGood(digest.hex(), st);
  }
  *size = st.st_size;
  return owned.release();
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
  // The same bytes are there already in a file this process verified: keep
  // it (the temp file goes), so its verified state and any reader's version
  // stay; an unverified one is replaced, which heals it if it was damaged.
  if (!expected.valid() && StatAt(blobs_fd_, actual.hex().c_str(), &st) && S_ISREG(st.st_mode) &&
      st.st_size == got && KnownGood(actual.hex(), st)) {
    Freshen(actual.hex(), st);
    return BlobDescriptor(actual, got);
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
// Blob file versions this process verified (good_): reads of them skip the hash.

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

}  // namespace ocicache::layout
