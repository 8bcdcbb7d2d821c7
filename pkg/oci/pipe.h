// Streams bytes from a producer (something that writes into a ByteSink, like a
// blob download) to a consumer (something that reads a ByteSource, like an
// upload) through a bounded buffer, so copies between stores never hold a whole
// blob in memory.
#ifndef OCICACHE_PKG_OCI_PIPE_H_
#define OCICACHE_PKG_OCI_PIPE_H_

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <deque>
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
  explicit BoundedPipe(size_t capacity) : capacity_(capacity) {}

  absl::Status Write(absl::string_view chunk) {
    while (!chunk.empty()) {
      std::function<void()> wake;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(this, &BoundedPipe::WritableLocked));
        if (reader_closed_) return absl::CancelledError("reader stopped");
        size_t n = std::min(chunk.size(), capacity_ - buffered_);
        chunks_.emplace_back(chunk.substr(0, n));
        buffered_ += n;
        chunk.remove_prefix(n);
        wake.swap(wake_reader_);
      }
      if (wake) wake();
    }
    return absl::OkStatus();
  }

  // Takes what fits now: the bytes taken (0 when full). Cancelled once the
  // reader closed.
  absl::StatusOr<size_t> TryWrite(absl::string_view chunk) {
    std::function<void()> wake;
    size_t n = 0;
    {
      absl::MutexLock l(&mu_);
      if (reader_closed_) return absl::CancelledError("reader stopped");
      n = std::min(chunk.size(), capacity_ - buffered_);
      if (n == 0) return 0;
      chunks_.emplace_back(chunk.substr(0, n));
      buffered_ += n;
      wake.swap(wake_reader_);
    }
    if (wake) wake();
    return n;
  }

  absl::StatusOr<size_t> Read(char* buf, size_t n) {
    std::function<void()> wake;
    absl::StatusOr<size_t> got;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &BoundedPipe::ReadableLocked));
      got = ReadLocked(buf, n);
      if (RoomForWriterLocked()) wake.swap(wake_writer_);
    }
    if (wake) wake();
    return got;
  }

  // Read without waiting: sets *wait (and copies nothing) when no byte and
  // no end is there yet.
  absl::StatusOr<size_t> TryRead(char* buf, size_t n, bool* wait) {
    std::function<void()> wake;
    absl::StatusOr<size_t> got;
    {
      absl::MutexLock l(&mu_);
      *wait = !ReadableLocked();
      if (*wait) return 0;
      got = ReadLocked(buf, n);
      if (RoomForWriterLocked()) wake.swap(wake_writer_);
    }
    if (wake) wake();
    return got;
  }

  // Arms `wake` to run once, on the writer's thread, when bytes or the end
  // arrive; false (nothing armed) when the reader may go on already.
  bool WakeReader(std::function<void()> wake) {
    absl::MutexLock l(&mu_);
    if (ReadableLocked()) return false;
    wake_reader_ = std::move(wake);
    return true;
  }
  // Arms `wake` to run once, on the reader's thread, when half the pipe is
  // free or the reader closed; false (nothing armed) when it is so already.
  // (Half, not a byte: an event loop would otherwise wake for every read of
  // a consumer slower than its client, and take a few bytes each time.)
  bool WakeWriter(std::function<void()> wake) {
    absl::MutexLock l(&mu_);
    if (RoomForWriterLocked()) return false;
    wake_writer_ = std::move(wake);
    return true;
  }

  void CloseWrite(absl::Status s) {
    std::function<void()> wake;
    {
      absl::MutexLock l(&mu_);
      writer_closed_ = true;
      writer_status_ = std::move(s);  // payloads too (base::IsDiskFull)
      wake.swap(wake_reader_);
    }
    if (wake) wake();
  }
  void CloseRead() {
    std::function<void()> wake;
    {
      absl::MutexLock l(&mu_);
      reader_closed_ = true;
      wake.swap(wake_writer_);
    }
    if (wake) wake();
  }

 private:
  absl::StatusOr<size_t> ReadLocked(char* buf, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (chunks_.empty()) {
      if (!writer_status_.ok()) return writer_status_;
      return 0;
    }
    size_t copied = 0;
    while (copied < n && !chunks_.empty()) {
      std::string& front = chunks_.front();
      size_t k = std::min(n - copied, front.size() - front_pos_);
      std::memcpy(buf + copied, front.data() + front_pos_, k);
      copied += k;
      front_pos_ += k;
      if (front_pos_ == front.size()) {
        buffered_ -= front.size();
        chunks_.pop_front();
        front_pos_ = 0;
      }
    }
    return copied;
  }

  bool WritableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reader_closed_ || buffered_ < capacity_;
  }
  bool RoomForWriterLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reader_closed_ || capacity_ - buffered_ >= (capacity_ + 1) / 2;
  }
  bool ReadableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !chunks_.empty() || writer_closed_;
  }

  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<std::string> chunks_ ABSL_GUARDED_BY(mu_);
  size_t front_pos_ ABSL_GUARDED_BY(mu_) = 0;
  size_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
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
