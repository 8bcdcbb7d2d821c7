// Streams bytes from a producer (something that writes into a ByteSink, like a
// blob download) to a consumer (something that reads a ByteSource, like an
// upload) through a bounded buffer, so copies between stores never hold a whole
// blob in memory.
#ifndef OCICACHE_PKG_OCI_PIPE_H_
#define OCICACHE_PKG_OCI_PIPE_H_

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pkg/oci/stream.h"

namespace ocicache::oci {

// A bounded in-memory byte pipe between one writer thread and one reader
// thread. Write blocks while `capacity` bytes wait; Read blocks until bytes or
// the end come. CloseWrite ends the stream (a non-OK status is what the reader
// gets after the buffered bytes); CloseRead makes further writes fail with
// Cancelled, so a producer stops when its consumer gave up.
//
// An event loop, which must not block, uses TryWrite/TryRead instead, and when
// they cannot go on arms a wake-up (WakeWriter/WakeReader) that the other side
// calls once it has made room, written or closed.
class BoundedPipe {
 public:
  explicit BoundedPipe(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}
  ~BoundedPipe();
  BoundedPipe(const BoundedPipe&) = delete;
  BoundedPipe& operator=(const BoundedPipe&) = delete;

  absl::Status Write(absl::string_view chunk);
  // Takes what fits now: the bytes taken (0 when full). Cancelled once the
  // reader closed.
  absl::StatusOr<size_t> TryWrite(absl::string_view chunk);

  absl::StatusOr<size_t> Read(char* buf, size_t n);
  // Read without waiting: sets *wait (and copies nothing) when no byte and
  // no end is there yet.
  absl::StatusOr<size_t> TryRead(char* buf, size_t n, bool* wait);

  // Arms `wake` to run once, on the writer's thread, when bytes or the end
  // arrive; false (nothing armed) when the reader may go on already.
  bool WakeReader(std::function<void()> wake);
  // Arms `wake` to run once, on the reader's thread, when half the pipe is
  // free or the reader closed; false (nothing armed) when it is so already.
  // (Half, not a byte: an event loop would otherwise wake for every read of
  // a consumer slower than its client, and take a few bytes each time.)
  bool WakeWriter(std::function<void()> wake);

  void CloseWrite(absl::Status s);
  void CloseRead();

 private:
  // The bytes live in one ring of `capacity_` bytes, mapped at the first
  // write and unmapped with the pipe (its pages are touched as bytes come, so
  // a small stream costs little, and none stays with the allocator's arenas
  // after the pipe is gone). The one writer copies into the free part and the one reader out
  // of the filled part with the lock released, so the two copies overlap;
  // the lock guards only the positions, which move after a copy is done.
  // Under the lock, a writer takes `n` bytes of room at the filled part's
  // end: a write position the reader never moves (it only shrinks the filled
  // part from its start).
  size_t ReserveLocked(size_t want, size_t* at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CopyIn(size_t at, absl::string_view bytes);
  // Appends `n` copied bytes to the filled part; runs the reader's wake-up.
  void Publish(size_t n);
  // Copies up to n filled bytes into buf and frees them; the caller holds no
  // lock and has seen ReadableLocked().
  absl::StatusOr<size_t> Take(char* buf, size_t n);

  bool WritableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reader_closed_ || buffered_ < capacity_;
  }
  bool RoomForWriterLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reader_closed_ || capacity_ - buffered_ >= (capacity_ + 1) / 2;
  }
  bool ReadableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return buffered_ > 0 || writer_closed_;
  }

  const size_t capacity_;
  char* ring_ = nullptr;  // set once, under mu_, before any copy
  bool ring_mapped_ = false;
  absl::Mutex mu_;
  size_t head_ ABSL_GUARDED_BY(mu_) = 0;      // first filled byte
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;  // filled bytes from head_, wrapping
  bool writer_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool reader_closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status writer_status_ ABSL_GUARDED_BY(mu_);
  std::function<void()> wake_reader_ ABSL_GUARDED_BY(mu_);
  std::function<void()> wake_writer_ ABSL_GUARDED_BY(mu_);
};

class PipeSink : public ByteSink {
 public:
  explicit PipeSink(BoundedPipe* p) : p_(p) {}
  absl::Status Write(absl::string_view chunk) override { return p_->Write(chunk); }

 private:
  BoundedPipe* p_;
};

class PipeSource : public ByteSource {
 public:
  explicit PipeSource(BoundedPipe* p) : p_(p) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override { return p_->Read(buf, n); }

 private:
  BoundedPipe* p_;
};

// Runs producer in a new thread and consumer in this one. Returns the first
// error: the producer's if both failed, since the consumer then only saw a cut
// stream. When the consumer stops early the producer's writes fail with
// Cancelled and the producer is expected to return; if the consumer succeeded
// that way (e.g. the destination already had the blob), the result is OK.
absl::Status Transfer(const std::function<absl::Status(ByteSink&)>& producer,
                      const std::function<absl::Status(ByteSource&)>& consumer,
                      size_t buffer_bytes = 4 << 20);

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_PIPE_H_
