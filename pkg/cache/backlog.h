// Backlog: the durable list of entry keys a tiered store has put in its local
// tier but not yet in the registry (it was unreachable). One small file per key
// in a directory of the local tier (DIR/backlog/<sha256 of the key>, holding the
// key), written to a temporary name and renamed, so a record survives a crash
// or a kill and two processes can add and remove records side by side. What is
// recorded is only the key: the entry itself stays in the local tier, and a
// drain reads it from there (an entry evicted meanwhile is dropped from the
// backlog: there is nothing left to push). Blobs written while the registry
// was out are recorded too (DIR/backlog/b-<hex digest>), for an entry another
// server takes: their own records, pushed before the entries.
#ifndef OCICACHE_PKG_CACHE_BACKLOG_H_
#define OCICACHE_PKG_CACHE_BACKLOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/oci/digest.h"

namespace ocicache::cache {

class Backlog {
 public:
  // Creates `dir` if needed and counts the records in it.
  static absl::StatusOr<std::shared_ptr<Backlog>> Open(std::string dir);

  const std::string& dir() const { return dir_; }
  // Records `key` (again: a no-op).
  absl::Status Add(absl::string_view key);
  // Forgets `key`; OK if it was not recorded.
  absl::Status Remove(absl::string_view key);
  // Up to `max` recorded keys (oldest records first; 0: all), and recounts
  // all records.
  absl::StatusOr<std::vector<std::string>> Keys(size_t max);
  // The same for blobs.
  absl::Status AddBlob(const oci::Digest& digest);
  absl::Status RemoveBlob(const oci::Digest& digest);
  absl::StatusOr<std::vector<oci::Digest>> Blobs(size_t max);
  // Entry records, and blob records, as of the last change or listing by this process.
  int64_t size() const { return size_.load(std::memory_order_relaxed); }
  int64_t blob_count() const { return blob_count_.load(std::memory_order_relaxed); }

 private:
  explicit Backlog(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(absl::string_view key) const;
  absl::Status AddFile(const std::string& path, absl::string_view content,
                       std::atomic<int64_t>& count);
  absl::Status RemoveFile(const std::string& path, absl::string_view what,
                          std::atomic<int64_t>& count);
  // Record names of one kind (entries: 64 hex digits; blobs: "b-" and those),
  // oldest first, after recounting every record.
  absl::StatusOr<std::vector<std::string>> Names(bool blobs, size_t max);

  const std::string dir_;
  std::atomic<int64_t> size_{0};
  std::atomic<int64_t> blob_count_{0};
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_BACKLOG_H_
