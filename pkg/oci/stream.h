// Byte streams used for blobs, so no layer is ever held whole in memory.
#ifndef OCICACHE_PKG_OCI_STREAM_H_
#define OCICACHE_PKG_OCI_STREAM_H_

#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ocicache::oci {

// Receives a blob's bytes in order.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual absl::Status Write(absl::string_view chunk) = 0;
  // True for a sink that checks every byte it keeps against digests of its own
  // (a stream of objects, each verified as it completes): a reader then need not
  // hash the whole blob as well, which is wasted when the sink stops early.
  virtual bool ChecksEveryByte() const { return false; }
};

// Produces a blob's bytes in order.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into buf; returns 0 at end of stream.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;
  // Starts again from the first byte, for a retry. Sources that cannot rewind
  // (pipes) say Unimplemented and the caller does not retry.
  virtual absl::Status Rewind() { return absl::UnimplementedError("source cannot rewind"); }
};

class StringSink : public ByteSink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  absl::Status Write(absl::string_view chunk) override {
    out_->append(chunk.data(), chunk.size());
    return absl::OkStatus();
  }

 private:
  std::string* out_;
};

// Appends to a string, refusing (ResourceExhausted, "<what> larger than <max>
// bytes") a write that would take it past `max` bytes: for what is read into
// memory from a peer not trusted to send little.
class BoundedStringSink : public ByteSink {
 public:
  BoundedStringSink(std::string* out, int64_t max, std::string what = "blob")
      : out_(out), max_(max), what_(std::move(what)) {}
  absl::Status Write(absl::string_view chunk) override;

 private:
  std::string* out_;
  int64_t max_;
  std::string what_;
};

class StringSource : public ByteSource {
 public:
  explicit StringSource(absl::string_view data) : data_(data) {}
  explicit StringSource(const char* data) : data_(data) {}
  // The source reads `data` where it is: a temporary string would be gone
  // before the first Read.
  explicit StringSource(std::string&& data) = delete;
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  absl::Status Rewind() override {
    pos_ = 0;
    return absl::OkStatus();
  }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
};

// Reads from `source` until it has `n` bytes or the source ends (n = -1: until
// it ends): the first bytes of a body, to decide how to store it, or a whole
// small one.
absl::StatusOr<std::string> ReadUpTo(ByteSource& source, int64_t n);

// Yields `prefix`, then the rest of `rest` (not owned): a source whose first
// bytes were read to decide how to store it.
class PrefixedSource : public ByteSource {
 public:
  PrefixedSource(std::string prefix, ByteSource* rest)
      : prefix_(std::move(prefix)), rest_(rest) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  std::string prefix_;
  size_t pos_ = 0;
  ByteSource* rest_;
};

// Reads a file descriptor (not owned) to its end. Rewind works on seekable files.
class FdSource : public ByteSource {
 public:
  explicit FdSource(int fd) : fd_(fd) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  absl::Status Rewind() override;

 private:
  int fd_;
};

// Writes to a file descriptor (not owned).
class FdSink : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  absl::Status Write(absl::string_view chunk) override;

 private:
  int fd_;
};

// Forwards to `next`, which hands the bytes to something that checks them
// against the digest before keeping them (a store's WriteBlob with an expected
// digest): the reader feeding it need not hash them too.
class CheckedDownstreamSink : public ByteSink {
 public:
  explicit CheckedDownstreamSink(ByteSink& next) : next_(next) {}
  absl::Status Write(absl::string_view chunk) override { return next_.Write(chunk); }
  bool ChecksEveryByte() const override { return true; }

 private:
  ByteSink& next_;
};

// Discards bytes.
class NullSink : public ByteSink {
 public:
  absl::Status Write(absl::string_view) override { return absl::OkStatus(); }
};

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_STREAM_H_
