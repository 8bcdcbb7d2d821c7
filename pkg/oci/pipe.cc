#include "pkg/oci/pipe.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace ocicache::oci {
namespace {

class BoundedPipe {
 public:
  explicit BoundedPipe(size_t capacity) : capacity_(capacity) {}

  absl::Status Write(absl::string_view chunk) {
    while (!chunk.empty()) {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &BoundedPipe::WritableLocked));
      if (reader_closed_) return absl::CancelledError("reader stopped");
      size_t n = std::min(chunk.size(), capacity_ - buffered_);
      chunks_.emplace_back(chunk.substr(0, n));
      buffered_ += n;
      chunk.remove_prefix(n);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> Read(char* buf, size_t n) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &BoundedPipe::ReadableLocked));
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

  void CloseWrite(absl::Status s) {
    absl::MutexLock l(&mu_);
    writer_closed_ = true;
    writer_status_ = std::move(s);  // payloads too (base::IsDiskFull)
  }
  void CloseRead() {
    absl::MutexLock l(&mu_);
    reader_closed_ = true;
  }

 private:
  bool WritableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reader_closed_ || buffered_ < capacity_;
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

}  // namespace

absl::Status Transfer(const std::function<absl::Status(ByteSink&)>& producer,
                      const std::function<absl::Status(ByteSource&)>& consumer,
                      size_t buffer_bytes) {
  BoundedPipe pipe(std::max<size_t>(buffer_bytes, 64 << 10));
  absl::Status produced;
  std::thread t([&] {
    PipeSink sink(&pipe);
    produced = producer(sink);
    pipe.CloseWrite(produced.ok() ? absl::OkStatus() : produced);
  });
  PipeSource source(&pipe);
  absl::Status consumed = consumer(source);
  pipe.CloseRead();
  t.join();
  if (!produced.ok() && !absl::IsCancelled(produced)) return produced;
  // A consumer that succeeded without reading everything (the destination had
  // the blob already) cancels the producer: that is success.
  return consumed;
}

}  // namespace ocicache::oci
