// Resumable uploads for Blobs.Write: the bytes of an upload with a client-chosen
// id are staged in a file, so a stream that breaks can be continued by another
// from the committed size, even after a server restart.
//
// On disk, in the staging directory (one per server; ocicached uses
// <dir>/uploads):
//   <h>.part  the bytes received so far, h = hex sha256 of the upload id
//   <h>.meta  JSON {"id","digest","size","complete"}, written by temp + rename
// A completed upload keeps only its .meta (complete: true) so QueryWrite can
// still say so. Files not written for `ttl` are removed (Expire, run on Open
// and at most every ttl/24 by Begin).
//
// One stream at a time per upload: Begin claims the id and the claim ends with
// the Upload object. A Begin for an id another stream holds takes it over: a
// client resumes after a broken connection, often before the server has seen
// the old stream end, and the old one may take long to notice. The old
// stream's writes after that (and its Commit, MarkComplete, Discard) are
// refused with Aborted; one in progress finishes first. Thread-safe.
#ifndef OCICACHE_PKG_RPC_UPLOADS_H_
#define OCICACHE_PKG_RPC_UPLOADS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cache/store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"

namespace ocicache::rpc {

struct UploadState {
  oci::Digest digest;    // invalid: computed at commit
  int64_t size = -1;     // -1: unknown
  int64_t committed = 0; // bytes staged (size once complete)
  bool complete = false;
};

class UploadStaging {
 public:
  struct Options {
    absl::Duration ttl = absl::Hours(24);
    size_t max_id_bytes = 256;
  };

  // One claimed upload. Destroying it releases the claim and keeps what was staged.
  class Upload {
   public:
    ~Upload();
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;

    const UploadState& state() const { return state_; }
    // Appends bytes; InvalidArgument (and the upload is discarded) when they go
    // past the declared size.
    absl::Status Append(absl::string_view data);
    // Stores the staged bytes in `store` (which verifies digest and size), then
    // marks the upload complete. A mismatch (InvalidArgument) discards the
    // upload; other errors keep it, so the commit can be retried.
    absl::StatusOr<oci::Descriptor> Commit(cache::BlobStore& store);
    // The same, storing through `write` (called with the declared digest and
    // the staged size): a front end that stores blobs its own way.
    using Writer = std::function<absl::StatusOr<oci::Descriptor>(
        const oci::Digest& digest, int64_t size, oci::ByteSource& source)>;
    absl::StatusOr<oci::Descriptor> Commit(const Writer& write);
    // Marks the upload complete without storing (the store had the blob).
    absl::Status MarkComplete(const oci::Digest& digest, int64_t size);
    // Removes the staged files (unless a newer stream took the upload over).
    void Discard();
    // `fn` runs (once, under the claim) when a newer stream takes the upload
    // over, so work tied to this stream (a StreamingPush) stops at once rather
    // than when the old stream is seen to end, which under load can take
    // seconds. Set it to nullptr before what `fn` refers to goes away.
    void OnSuperseded(std::function<void()> fn);
    // From here on stage with O_DIRECT where the file system allows it: for an
    // upload whose staged copy is only the fallback of a StreamingPush, so its
    // bytes do not also pass through the page cache (copying them there was a
    // third of the server's CPU for a 1 GiB upload). Bytes wait in a 1 MiB
    // aligned buffer until it is full; the rest reaches the file when the
    // stream ends or before Commit. Only at offset 0; otherwise a no-op.
    void StageDirect();
    bool staging_direct() const { return direct_fd_ >= 0; }

   private:
    friend class UploadStaging;
    struct Claim {
      absl::Mutex mu;  // held while this stream writes the upload's files
      bool superseded ABSL_GUARDED_BY(mu) = false;
      std::function<void()> on_superseded ABSL_GUARDED_BY(mu);
    };
    Upload(UploadStaging* staging, std::string id, std::string stem, UploadState state, int fd,
           std::shared_ptr<Claim> claim)
        : staging_(staging), id_(std::move(id)), stem_(std::move(stem)), state_(state), fd_(fd),
          claim_(std::move(claim)) {}
    absl::Status Superseded() const;
    absl::Status WriteLocked(absl::string_view data);  // appends at file_size_
    absl::Status AppendPlainLocked(absl::string_view data);  // through the page cache
    absl::Status FlushLocked();                        // the direct buffer, with fd_
    absl::Status MarkCompleteLocked(const oci::Digest& digest, int64_t size);
    void DiscardLocked();
    UploadStaging* staging_;
    std::string id_;
    std::string stem_;
    UploadState state_;
    int fd_;  // the .part file, -1 once complete or discarded
    std::shared_ptr<Claim> claim_;
    // StageDirect: the file opened with O_DIRECT, and the aligned buffer of
    // bytes received (counted in state_.committed) but not yet in the file.
    int direct_fd_ = -1;
    char* direct_buf_ = nullptr;
    size_t direct_len_ = 0;
    int64_t file_size_ = 0;  // bytes in the .part file
  };

  static absl::StatusOr<std::unique_ptr<UploadStaging>> Open(std::string dir, Options opts);
  static absl::StatusOr<std::unique_ptr<UploadStaging>> Open(std::string dir) {
    return Open(std::move(dir), Options());
  }

  // Validates an upload id: 1..max_id_bytes bytes.
  absl::Status ValidateId(absl::string_view id) const;
  // Claims upload `id` of a blob (digest may be invalid, size -1) and positions
  // it at `offset`: a new upload starts at 0; an existing one must be of the same
  // blob (else InvalidArgument) and is rewound to offset when that is below its
  // committed size (OutOfRange when above). Takes the upload over from a stream
  // that holds it.
  absl::StatusOr<std::unique_ptr<Upload>> Begin(absl::string_view id, const oci::Digest& digest,
                                                int64_t size, int64_t offset);
  // NotFound for an unknown (or expired) upload.
  absl::StatusOr<UploadState> Query(absl::string_view id);
  // Removes uploads not written for ttl.
  void Expire() { Expire(opts_.ttl); }
  // Removes uploads no stream holds that were not written for `idle` (when the
  // disk is full, half-written uploads go long before their ttl).
  void Expire(absl::Duration idle);

  const std::string& dir() const { return dir_; }

 private:
  UploadStaging(std::string dir, Options opts) : dir_(std::move(dir)), opts_(opts) {}
  std::string Stem(absl::string_view id) const;
  absl::StatusOr<UploadState> ReadMeta(const std::string& stem, std::string* id);
  absl::Status WriteMeta(const std::string& stem, absl::string_view id, const UploadState& st);
  void Release(const std::string& stem, const std::shared_ptr<Upload::Claim>& claim);

  const std::string dir_;
  const Options opts_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Upload::Claim>> claimed_ ABSL_GUARDED_BY(mu_);
  absl::Time last_expire_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Stores an upload's blob while its bytes are being staged, so the push to the
// store (a registry upload, say) overlaps the receiving instead of following it.
// The staging thread hands over each message's bytes after staging them; a
// thread of this object runs store.WriteBlob over them through a bounded queue
// (at most max_buffered bytes wait). The staged file stays the fallback: when
// the push fails or the stream breaks, Upload::Commit pushes from it as before.
// An abandoned push (Abandon, or destroyed unfinished) fails its source, so the
// store keeps nothing.
class StreamingPush {
 public:
  StreamingPush(cache::BlobStore& store, oci::Digest digest, int64_t size,
                size_t max_buffered = size_t{16} << 20);
  ~StreamingPush();
  StreamingPush(const StreamingPush&) = delete;
  StreamingPush& operator=(const StreamingPush&) = delete;

  // Queues *data, waiting while max_buffered bytes are queued. It takes the
  // bytes by swapping: *data comes back empty, holding a buffer the push is done
  // with when there is one (so a stream reuses a few buffers instead of
  // allocating one per message). False once the push has ended (failed,
  // abandoned, or done); more feeding is harmless.
  bool Feed(std::string* data);
  // Every byte was fed: the store's answer.
  absl::StatusOr<oci::Descriptor> Finish();
  // The stream is gone: the push fails as soon as it reads. Thread-safe.
  void Abandon();

 private:
  class Source;
  void Run(cache::BlobStore* store, oci::Digest digest, int64_t size);

  const size_t max_buffered_;
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> spare_ ABSL_GUARDED_BY(mu_);  // emptied buffers, for Feed
  size_t front_used_ ABSL_GUARDED_BY(mu_) = 0;  // bytes of queue_.front() already read
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;     // all bytes fed
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;  // the stream broke or was taken over
  bool done_ ABSL_GUARDED_BY(mu_) = false;       // the store answered
  absl::StatusOr<oci::Descriptor> result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ocicache::rpc

#endif  // OCICACHE_PKG_RPC_UPLOADS_H_
