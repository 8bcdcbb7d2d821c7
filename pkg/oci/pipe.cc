#include "pkg/oci/pipe.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace ocicache::oci {

absl::Status BoundedPipe::Write(absl::string_view chunk) {
  while (!chunk.empty()) {
    size_t at = 0;
    size_t n = 0;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &BoundedPipe::WritableLocked));
      if (reader_closed_) return absl::CancelledError("reader stopped");
      n = ReserveLocked(chunk.size(), &at);
    }
    CopyIn(at, chunk.substr(0, n));
    Publish(n);
    chunk.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> BoundedPipe::TryWrite(absl::string_view chunk) {
  size_t at = 0;
  size_t n = 0;
  {
    absl::MutexLock l(&mu_);
    if (reader_closed_) return absl::CancelledError("reader stopped");
    n = ReserveLocked(chunk.size(), &at);
    if (n == 0) return 0;
  }
  CopyIn(at, chunk.substr(0, n));
  Publish(n);
  return n;
}

BoundedPipe::~BoundedPipe() {
  if (ring_mapped_) {
    ::munmap(ring_, capacity_);
  } else {
    delete[] ring_;
  }
}

size_t BoundedPipe::ReserveLocked(size_t want, size_t* at) {
  if (ring_ == nullptr) {
    void* p = ::mmap(nullptr, capacity_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      ring_ = static_cast<char*>(p);
      ring_mapped_ = true;
    } else {
      ring_ = new char[capacity_];  // not zeroed: pages stay untouched
    }
  }
  *at = (head_ + buffered_) % capacity_;
  return std::min(want, capacity_ - buffered_);
}

void BoundedPipe::CopyIn(size_t at, absl::string_view bytes) {
  size_t first = std::min(bytes.size(), capacity_ - at);
  std::memcpy(ring_ + at, bytes.data(), first);
  std::memcpy(ring_, bytes.data() + first, bytes.size() - first);
}

void BoundedPipe::Publish(size_t n) {
  std::function<void()> wake;
  {
    absl::MutexLock l(&mu_);
    buffered_ += n;
    wake.swap(wake_reader_);
  }
  if (wake) wake();
}

absl::StatusOr<size_t> BoundedPipe::Take(char* buf, size_t n) {
  size_t from = 0;
  size_t k = 0;
  {
    absl::MutexLock l(&mu_);
    if (buffered_ == 0) {
      if (!writer_status_.ok()) return writer_status_;
      return 0;
    }
    from = head_;
    k = std::min(n, buffered_);
  }
  size_t first = std::min(k, capacity_ - from);
  std::memcpy(buf, ring_ + from, first);
  std::memcpy(buf + first, ring_, k - first);
  std::function<void()> wake;
  {
    absl::MutexLock l(&mu_);
    head_ = (head_ + k) % capacity_;
    buffered_ -= k;
    if (RoomForWriterLocked()) wake.swap(wake_writer_);
  }
  if (wake) wake();
  return k;
}

absl::StatusOr<size_t> BoundedPipe::Read(char* buf, size_t n) {
  {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &BoundedPipe::ReadableLocked));
  }
  return Take(buf, n);
}

absl::StatusOr<size_t> BoundedPipe::TryRead(char* buf, size_t n, bool* wait) {
  {
    absl::MutexLock l(&mu_);
    *wait = !ReadableLocked();
    if (*wait) return 0;
  }
  return Take(buf, n);
}

bool BoundedPipe::WakeReader(std::function<void()> wake) {
  absl::MutexLock l(&mu_);
  if (ReadableLocked()) return false;
  wake_reader_ = std::move(wake);
  return true;
}

bool BoundedPipe::WakeWriter(std::function<void()> wake) {
  absl::MutexLock l(&mu_);
  if (RoomForWriterLocked()) return false;
  wake_writer_ = std::move(wake);
  return true;
}

void BoundedPipe::CloseWrite(absl::Status s) {
  std::function<void()> wake;
  {
    absl::MutexLock l(&mu_);
    writer_closed_ = true;
    writer_status_ = std::move(s);  // payloads too (base::IsDiskFull)
    wake.swap(wake_reader_);
  }
  if (wake) wake();
}

void BoundedPipe::CloseRead() {
  std::function<void()> wake;
  {
    absl::MutexLock l(&mu_);
    reader_closed_ = true;
    wake.swap(wake_writer_);
  }
  if (wake) wake();
}

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
