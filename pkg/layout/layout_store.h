// LayoutStore: a cache::Store over a local directory that is a valid OCI image
// layout (as the OCI image spec defines it), so `skopeo inspect --raw oci:DIR:TAG`
// and `skopeo copy oci:DIR:TAG ...` read every entry.
//
// On disk
//   DIR/oci-layout          {"imageLayoutVersion":"1.0.0"}
//   DIR/index.json          an OCI image index: one descriptor per entry manifest, with
//                           annotation org.opencontainers.image.ref.name = the entry's tag
//   DIR/blobs/sha256/<hex>  blobs: entry manifests, their config and descriptor blobs,
//                           and the content blobs written with WriteBlob
//   DIR/refs/<tag>          "sha256:<hex>\n": the manifest digest of the entry with that tag
//   DIR/tmp/                temp files, renamed into place when complete
//   DIR/ocicache.lock       the flock(2) lock file
//
// Refs are the source of truth. Lookup reads refs/<tag>, then the manifest blob it
// names (verified against its digest): O(1) whatever the number of entries.
// index.json is a view derived from refs for other tools. It is kept in sync after
// every ref change (or batched, see Options::index_interval) and rebuilt
// from refs by RebuildIndex() and Gc(), or whenever it is found unparsable. A crash
// between a ref write and the index update leaves index.json stale, never refs.
// Entries in index.json whose ref name is not one of ours ("k." / "h." tags from
// cache::TagForKey) are kept verbatim, so the layout can hold other images too.
// Entries with one of our tags but no ref (a layout written by `skopeo copy ...
// oci:DIR:TAG`) are imported as refs when Open finds no refs/ and by every Gc.
//
// Crash safety
//   Every file (blob, ref, index.json, oci-layout) is written to a fresh file in tmp/
//   (same file system), optionally fsync'd (Options::fsync), and renamed over its
//   final name. A blob is renamed into place only once its size and digest are
//   verified. A crash leaves at worst stray files in tmp/, which Gc() removes once
//   they are older than GcOptions::min_age. Without fsync a power loss can leave a
//   renamed file empty; every read verifies digests, so that is seen as a corrupt
//   blob (DataLoss, quarantined) or a missing ref (a miss), never as wrong content.
//
// Reads
//   ReadBlob from offset 0 hashes what it streams; on a size or digest mismatch it
//   returns DataLoss and moves the bad file to tmp/corrupt-<hex>-<random> (kept until
//   the next Gc after min_age), so the next write of that blob heals the store.
//   Symbolic links and non-regular files are refused (O_NOFOLLOW, fstat): DataLoss
//   on read; a write renames a good blob over them. Lookup of an entry whose
//   manifest is corrupt is DataLoss once (the manifest is moved aside: later
//   lookups miss until a Put heals it); an entry whose blob is gone is a miss.
//
// Concurrency
//   Safe for many threads and processes on one directory. Blob writes need no lock
//   (content-addressed, atomic rename). Ref changes and index.json updates hold an
//   exclusive flock on ocicache.lock; the index update re-reads refs/<tag> under the
//   lock, so the last writer's ref always ends up in index.json. Within a process,
//   index updates are group-committed: one thread writes index.json once for all
//   ref changes queued meanwhile. The parsed index is cached in memory and reused
//   while index.json still holds exactly the bytes this process last read or wrote,
//   so an update costs one read and one write of index.json, not a parse; an
//   index.json another process wrote is split by a small scanner (its format is
//   fixed by WriteIndexLocked), and only one another tool wrote goes through a
//   JSON parser.
//   A touch (last-used refresh) replaces the ref only if it still names the manifest
//   that was read (compare-and-swap under the lock), so it never undoes a Put.
//   Delete removes the ref and the index row in one lock hold (never batched), so
//   a Gc cannot re-import a deleted entry from index.json.
//   Gc holds the lock while it runs; it only removes unreferenced blobs older than
//   min_age, and Put/WriteBlob refresh the mtime of blobs they reuse (when older
//   than a minute), so a Put running beside a Gc keeps its blobs. Should a Gc still
//   remove one in that window, Lookup (which checks the entry's blobs) misses; it
//   never returns a dangling hit. Open a new LayoutStore in a forked child.
//
// Bounded size (Options::max_bytes)
//   Last use of an entry is the mtime of refs/<tag>: a Put writes it, a Lookup hit
//   sets it to now (utimensat, at most once a second per entry; no lock). Each
//   process counts the bytes it adds; when its count passes max_bytes, the Put
//   that finds it so runs Evict(): under the lock (other processes and Gc wait) it
//   measures blobs/sha256, and if over max_bytes removes unreferenced blobs, then
//   the least recently used entries (refs and index rows) and the blobs no other
//   entry (nor a foreign image) references, until under 90% of max_bytes. Entries
//   used and blobs written within evict_grace are kept, so a Put in progress (its
//   blobs written, its ref not yet) loses nothing; files in tmp/ (writes in
//   progress) are never counted nor touched. A reader that already has an open
//   blob keeps reading it; a later read of an evicted blob is NotFound, a later
//   Lookup of an evicted entry a miss. If everything is within the grace the pass
//   ends over the bound and the next one waits for 5% more growth or 10 s. A Put
//   checks its blobs again under the lock as it writes its ref: if a pass
//   removed one meanwhile, the Put fails (FailedPrecondition), never leaving a
//   dangling entry.
#ifndef OCICACHE_PKG_LAYOUT_LAYOUT_STORE_H_
#define OCICACHE_PKG_LAYOUT_LAYOUT_STORE_H_

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cache/entry.h"
#include "pkg/cache/store.h"
#include "pkg/cache/local_tier.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"

namespace ocicache::layout {

// Fetches a blob from a recorded location into sink (e.g. a registry GET).
using BlobFetcher = std::function<absl::Status(const cache::Location&, oci::ByteSink&)>;

struct LayoutStoreOptions {
  // Used by MountBlob for blobs not present; without one MountBlob of an absent
  // blob is Unimplemented.
  BlobFetcher fetcher;
  // fsync files before renaming them and directories after. Off by default: a
  // build cache may lose recent entries on power loss, and reads verify digests.
  bool fsync = false;
  // How often index.json is rewritten. Each rewrite costs O(entries) (about 300
  // bytes per entry), so a layout of many entries cannot afford one per put.
  // Zero: after every Put/Delete/touch (tests; a one-shot CLI writes once at
  // exit with InfiniteDuration instead). Larger: a ref change only queues its tag
  // and a background thread writes the queued tags once this long has passed
  // since the last rewrite, so a put costs the same at any size and index.json
  // lags refs by at most about this long. InfiniteDuration(): only on Flush()
  // and destruction. Lookups never need index.json, only other tools do.
  absl::Duration index_interval = absl::ZeroDuration();
  // The time used for created/last-used; absl::Now when unset (tests set it).
  std::function<absl::Time()> clock;
  // Bound on the bytes in blobs/sha256; 0: unbounded. Past it, a write evicts
  // least recently used entries (and the blobs only they referenced) until the
  // directory is under 90% of it (see "Bounded size" above).
  int64_t max_bytes = 0;
  // Eviction keeps blobs modified (written, or reused by a write) and entries
  // used within this long: they may belong to a Put in progress.
  absl::Duration evict_grace = absl::Minutes(2);
};

struct EvictStats {
  int64_t bytes_before = 0;     // blobs/sha256 when the pass began
  int64_t bytes_after = 0;
  int64_t entries_evicted = 0;  // least recently used first
  int64_t blobs_removed = 0;    // unreferenced, older than evict_grace
  int64_t bytes_removed = 0;
};

struct GcOptions {
  // Unreferenced blobs and temp files younger than this are kept: they may belong
  // to a Put or a write in progress.
  absl::Duration min_age = absl::Hours(1);
  // Count what would be removed, remove nothing.
  bool dry_run = false;
};

struct GcStats {
  int64_t entries = 0;              // live entries (refs whose manifest is readable)
  int64_t broken_refs_removed = 0;  // refs naming a missing or corrupt manifest
  int64_t refs_imported = 0;        // entries other tools added to index.json
  int64_t blobs_kept = 0;           // referenced, or younger than min_age
  int64_t bytes_kept = 0;
  int64_t blobs_removed = 0;        // unreferenced and older than min_age
  int64_t bytes_removed = 0;
  int64_t temp_files_removed = 0;   // tmp/ files (incl. quarantined blobs) older than min_age
  int64_t temp_bytes_removed = 0;
};

class LayoutStore : public cache::LocalTier {
 public:
  using Options = LayoutStoreOptions;

  // Opens the layout at dir, creating it (and its parents) if absent. An existing
  // directory must be an OCI image layout (oci-layout with version 1.x), empty, or
  // a layout this class began to create; anything else (e.g. an unrelated
  // index.json without oci-layout) is FailedPrecondition and nothing is written.
  static absl::StatusOr<std::unique_ptr<LayoutStore>> Open(std::string dir,
                                                           Options options = Options());
  ~LayoutStore() override;  // Flushes deferred index changes (errors are dropped).

  LayoutStore(const LayoutStore&) = delete;
  LayoutStore& operator=(const LayoutStore&) = delete;

  // cache::BlobStore
  absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) override;
  absl::Status ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) override;
  // The blob file, hashed first unless this file version was verified before
  // (a corrupt one is quarantined as ReadBlob does).
  absl::StatusOr<int> OpenVerifiedBlob(const oci::Digest& digest, int64_t* size) override;
  // The returned descriptor has media type application/octet-stream.
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override;
  // OK if the blob is present with from.size; else fetched with Options::fetcher
  // (verified against from.digest and from.size: DataLoss on mismatch).
  absl::Status MountBlob(const cache::Location& from) override;

  // cache::EntryStore. Lookup also misses (NotFound) when a blob the entry names is
  // no longer present with its size, so the caller rebuilds and the Put heals it.
  absl::StatusOr<cache::Entry> Lookup(absl::string_view key,
                                      const cache::LookupOptions& opts) override;
  absl::Status Put(const cache::Entry& entry) override;
  absl::Status Delete(absl::string_view key) override;
  // Entries whose manifest cannot be read are skipped.
  absl::Status List(const std::function<bool(const cache::EntryInfo&)>& fn) override;

  // "dir:<path>".
  std::string Describe() const override;

  const std::string& dir() const override { return dir_; }
  // DIR/blobs/sha256/<hex>: where a blob's file is (whether or not it is present).
  // For readers that need a path (Go's GOCACHEPROG DiskPath); the file is replaced
  // only by an atomic rename of identical content, or moved aside when corrupt.
  std::string BlobPath(const oci::Digest& digest) const;

  // Sum of the sizes of all files in blobs/sha256 (referenced or not).
  absl::StatusOr<int64_t> TotalSize() override;
  // With Options::max_bytes: if blobs/sha256 holds more, evicts least recently
  // used entries until under 90% of it (see "Bounded size"). Runs by itself
  // after writes; public for tests and tools.
  absl::StatusOr<EvictStats> Evict();
  // Evicts as Evict() does (unreferenced blobs, then least recently used
  // entries, within evict_grace kept) until `bytes` of blobs are gone or
  // nothing more may go, whatever max_bytes says: for a disk that is full.
  absl::StatusOr<EvictStats> Release(int64_t bytes);
  // cache::LocalTier: Release(), in bytes removed.
  absl::StatusOr<int64_t> ReleaseSpace(int64_t bytes) override;
  // Options::max_bytes, and what this process's Evict() calls removed so far.
  int64_t max_bytes() const override { return options_.max_bytes; }
  int64_t entries_evicted() const override {
    return entries_evicted_.load(std::memory_order_relaxed);
  }
  int64_t bytes_evicted() const override { return bytes_evicted_.load(std::memory_order_relaxed); }
  // Removes one blob whether or not an entry references it; NotFound if absent.
  absl::Status RemoveBlob(const oci::Digest& digest);
  // Imports entries other tools added to index.json; removes refs whose manifest
  // is gone, blobs no entry (nor a foreign image in index.json) references, and
  // old temp files; rewrites index.json from refs.
  absl::StatusOr<GcStats> Gc(const GcOptions& opts = GcOptions());
  // cache::LocalTier: Gc() with the default options.
  absl::StatusOr<cache::LocalGcResult> CollectUnreferenced() override;
  // Writes queued index.json changes now.
  absl::Status Flush();
  // Rewrites index.json from refs (plus the foreign entries it already had).
  absl::Status RebuildIndex();

 private:
  // The private members are defined by concern: opening, the file lock, Put,
  // Delete and List in layout_store.cc; temp files and blobs in layout_blobs.cc;
  // refs, Lookup and its memo in layout_refs.cc; index.json in layout_index.cc;
  // gc, eviction and usage totals in layout_gc.cc. What they share (FileLock's
  // definition among it) is in layout_internal.h.
  class FileLock;
  struct IndexCache {
    bool loaded = false;
    std::string bytes;  // index.json exactly as last read or written by us
    std::map<std::string, std::string> ours;  // tag -> descriptor JSON
    std::vector<std::string> foreign;         // other descriptors, JSON kept verbatim
    std::string annotations;                  // the index's own annotations (JSON) or ""
  };

  LayoutStore(std::string dir, Options options);

  absl::Status Init();
  absl::Status InitLocked(bool has_layout_file);
  absl::StatusOr<FileLock> Lock();
  // Lock() without creating the lock file: NotFound when there is none (no
  // opener has begun to make the layout).
  absl::StatusOr<FileLock> LockIfPresent();

  absl::Time Now() const;
  std::string Where(absl::string_view rel) const;

  // Temp files and atomic writes.
  absl::StatusOr<int> CreateTemp(absl::string_view kind, std::string* name);
  absl::Status CommitTemp(int fd, const std::string& temp_name, int dir_fd,
                          const std::string& final_name);
  absl::Status WriteFileAtomic(int dir_fd, const std::string& name, absl::string_view data);

  // Blobs.
  absl::StatusOr<int> OpenBlob(const oci::Digest& digest, struct stat* st);
  // OK if the blob is present as a regular file of `size` bytes (-1: any size).
  absl::Status BlobPresent(const oci::Digest& digest, int64_t size);
  // One eviction pass: over `limit` bytes, down to `target`; with release > 0,
  // down by `release` bytes instead.
  absl::StatusOr<EvictStats> EvictPass(int64_t limit, int64_t target, int64_t release);
  // Counts `added` bytes; runs Evict() when the count passes the bound. Called
  // at the end of Put (never between a blob write and the Put that names it).
  void MaybeEvict(int64_t added);
  // Hex digests of blobs the foreign images in index.json reference.
  void MarkForeignLocked(std::set<std::string>* live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  absl::Status WriteBytesBlob(absl::string_view data);
  absl::StatusOr<std::string> ReadSmallBlob(const oci::Digest& digest, int64_t max_size);
  void Quarantine(const std::string& hex, const struct stat& bad, std::string* moved_to);
  void Freshen(const std::string& hex, const struct stat& st);

  // Refs.
  // With `mtime`, also the ref file's modification time (the entry's last use).
  absl::StatusOr<oci::Digest> ReadRef(const std::string& tag, absl::Time* mtime = nullptr,
                                      struct stat* st = nullptr);
  absl::StatusOr<std::vector<std::string>> ListDir(int dir_fd);
  // Writes refs/<tag> under the lock; if expect is valid, only when the ref still
  // names it (else Aborted). Queues the tag for the index.
  // With `blobs` (bounded stores), each must still be present under the lock,
  // so an eviction that ran since they were written cannot leave a dangling ref
  // (FailedPrecondition instead).
  absl::Status CommitRef(const std::string& tag, const oci::Digest& digest,
                         const oci::Digest& expect,
                         const std::vector<oci::Digest>* blobs = nullptr);
  absl::Status AfterRefChange();
  absl::StatusOr<cache::Entry> Touch(cache::Entry entry, const std::string& tag,
                                     const oci::Digest& old_manifest, absl::Time now);

  // index.json; callers hold index_mu_ and the file lock.
  absl::Status SyncIndex();
  absl::Status LoadIndexLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  absl::Status ParseIndexLocked(const std::string& bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  void RebuildOursLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  void UpdateTagLocked(const std::string& tag) ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  absl::Status WriteIndexLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  absl::Status RebuildIndexLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);
  absl::StatusOr<int64_t> ImportRefsLocked();

  const std::string dir_;
  const Options options_;
  int root_fd_ = -1;
  int blobs_fd_ = -1;  // blobs/sha256
  int refs_fd_ = -1;
  int tmp_fd_ = -1;

  absl::Mutex mu_;
  std::set<std::string> pending_ ABSL_GUARDED_BY(mu_);  // tags whose index row is stale
  absl::Time last_index_write_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // The background index writer (a finite, non-zero index_interval).
  void IndexWriterLoop();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread index_writer_;

  // Bounded size: bytes this process believes blobs/sha256 holds (-1: not
  // measured yet), the count that triggers the next Evict, one pass at a time.
  std::atomic<int64_t> approx_bytes_{-1};
  std::atomic<int64_t> evict_at_bytes_{0};
  std::atomic<int64_t> evict_retry_after_ns_{0};
  std::atomic<bool> evicting_{false};
  std::atomic<int64_t> entries_evicted_{0};
  std::atomic<int64_t> bytes_evicted_{0};

  // One version of a file: a file in this layout is only ever replaced by
  // rename (a new inode) or changed in place by something else (new times).
  struct FileVersion {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    static FileVersion Of(const struct stat& st);
    bool operator==(const FileVersion& o) const {
      return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns &&
             ctime_ns == o.ctime_ns;
    }
  };

  // Warm lookups: the decoded entry of a key, valid while its ref file is the same
  // version. A hit costs a stat of the ref, of the manifest and of each blob
  // instead of reading and decoding the ref and the manifest. Bounded: cleared
  // when full. (A ref edited in place, which only a person would do, at the same
  // size within one file-timestamp tick could go unseen until the next change.)
  //
  // Quiet directories skip even those stats: a memo checked (the stats all fine)
  // while the refs and blobs directories had not changed for a second is
  // trusted while both directories keep that version (one fstat of each open
  // directory) and this process changed nothing (changes_). Creating, renaming
  // or removing a ref or blob file, by any process, changes its directory's
  // version; the second keeps a later change from sharing a timestamp tick with
  // the version seen. What no directory shows, a blob truncated in place, is
  // still caught when the blob is read (ReadBlob checks size and digest).
  struct Memo {
    FileVersion ref;
    absl::Time ref_mtime;
    oci::Digest manifest;
    int64_t manifest_size = 0;
    cache::Entry entry;
    bool trusted = false;  // the three fields below are set
    int64_t checked_changes = 0;
    FileVersion refs_dir, blobs_dir;
  };
  void Remember(const std::string& key, const struct stat& ref, const oci::Digest& manifest,
                int64_t manifest_size, const cache::Entry& entry);
  // The versions of the refs and blobs directories, when both last changed a
  // second or more before `now`.
  std::optional<std::pair<FileVersion, FileVersion>> QuietDirs(absl::Time now) const;
  void MarkChecked(const std::string& key, const FileVersion& ref, int64_t changes,
                   const std::pair<FileVersion, FileVersion>& dirs);
  void Forget(const std::string& key);
  // Called after this process changed a ref or removed a blob: memos are
  // checked again before they are trusted.
  void Changed() { changes_.fetch_add(1, std::memory_order_acq_rel); }
  std::atomic<int64_t> changes_{0};
  absl::Mutex memo_mu_;
  std::map<std::string, Memo> memo_ ABSL_GUARDED_BY(memo_mu_);

  // Blob files whose content this process hashed and found right, by digest hex:
  // a read of the same file version streams without hashing again (readers that
  // need certainty hash what they receive; ocicached's clients do). Only versions
  // last changed a second or more before the check are remembered, so a change
  // in place within one timestamp tick of it cannot look unchanged.
  bool KnownGood(const std::string& hex, const struct stat& st);
  void NoteGood(const std::string& hex, const struct stat& st);
  absl::Mutex good_mu_;
  std::map<std::string, FileVersion> good_ ABSL_GUARDED_BY(good_mu_);

  absl::Mutex index_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  IndexCache index_ ABSL_GUARDED_BY(index_mu_);
};

}  // namespace ocicache::layout

#endif  // OCICACHE_PKG_LAYOUT_LAYOUT_STORE_H_
