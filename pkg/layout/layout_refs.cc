// LayoutStore: refs (read, compare-and-swap write), Lookup with its memo of
// decoded entries and the quiet-directories trust, and the touch a Lookup does.
#include "pkg/layout/layout_store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_internal.h"

namespace ocicache::layout {

using internal::kRefsDir;
using internal::MtimeOf;
using internal::ReadSmallFileAt;
using internal::StatAt;

namespace {

constexpr int64_t kMaxRefBytes = 256;

}  // namespace

// ---------------------------------------------------------------------------
// Refs.

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

// ---------------------------------------------------------------------------
// Lookup and its memo.

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

}  // namespace ocicache::layout
