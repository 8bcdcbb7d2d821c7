// SHA-256 on a second thread, so verifying a download overlaps receiving it
// instead of adding to it. Update() copies the bytes into 1 MiB batches that a
// worker hashes; at most `max_in_flight` bytes wait (Update blocks beyond that),
// so memory stays bounded. Same results as Sha256.
#ifndef OCICACHE_PKG_OCI_HASHER_H_
#define OCICACHE_PKG_OCI_HASHER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pkg/oci/digest.h"

namespace ocicache::oci {

class PipelinedSha256 {
 public:
  explicit PipelinedSha256(size_t max_in_flight = 8 << 20);
  ~PipelinedSha256();
  PipelinedSha256(const PipelinedSha256&) = delete;
  PipelinedSha256& operator=(const PipelinedSha256&) = delete;

  void Update(absl::string_view data);
  int64_t size() const { return size_; }
  // Waits for the worker and returns the digest. Call once.
  Digest Finish();

 private:
  void Flush();  // hands the current batch to the worker
  void Run();
  bool HasRoomLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queued_bytes_ < max_in_flight_;
  }
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || done_;
  }

  static constexpr size_t kBatch = 1 << 20;
  const size_t max_in_flight_;
  int64_t size_ = 0;
  std::string batch_;  // filled by the caller's thread only
  Sha256 sha_;         // used by the worker only
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
  bool finished_ = false;
};

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_HASHER_H_
