#include "pkg/cache/store.h"

namespace ocicache::cache {
namespace {

// Passes on the first `length` bytes, then stops the stream.
class LimitSink : public oci::ByteSink {
 public:
  LimitSink(oci::ByteSink& out, int64_t length) : out_(out), left_(length) {}
  absl::Status Write(absl::string_view chunk) override {
    if (left_ == 0) return Done();
    const size_t take = static_cast<size_t>(std::min<int64_t>(left_, chunk.size()));
    if (absl::Status s = out_.Write(chunk.substr(0, take)); !s.ok()) return s;
    left_ -= static_cast<int64_t>(take);
    return take < chunk.size() ? Done() : absl::OkStatus();
  }
  bool ChecksEveryByte() const override { return true; }  // a range: no whole-blob digest
  int64_t left() const { return left_; }
  static absl::Status Done() { return absl::CancelledError("ocicache: range read complete"); }

 private:
  oci::ByteSink& out_;
  int64_t left_;
};

}  // namespace

absl::Status BlobStore::ReadBlobRange(const oci::Digest& digest, int64_t offset, int64_t length,
                                      oci::ByteSink& sink) {
  if (offset < 0 || length < 0) {
    return absl::InvalidArgumentError("ReadBlobRange: a negative offset or length");
  }
  if (length == 0) return absl::OkStatus();
  LimitSink limit(sink, length);
  absl::Status s = ReadBlob(digest, offset, limit);
  if (limit.left() == 0 && (s.ok() || absl::IsCancelled(s))) return absl::OkStatus();
  if (!s.ok()) return s;
  return absl::OutOfRangeError(absl::StrCat("the blob ends ", limit.left(),
                                            " bytes before the range's end"));
}

}  // namespace ocicache::cache
