// zstd (RFC 8878) as byte-stream adapters, for stored data compressed where it
// pays (docs/FORMAT.md, "HTTP cache objects"): a source that compresses another
// source as it is read, and a sink that decompresses into another sink.
#ifndef OCICACHE_PKG_OCI_ZSTD_STREAM_H_
#define OCICACHE_PKG_OCI_ZSTD_STREAM_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/oci/stream.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace ocicache::oci {

// True when `sample` compressed at `level` takes at most 7/8 of its size: a
// cheap test on the first bytes of an object, which tells data already
// compressed (gzip'd or zstd'd tars, ccache's entries: a few percent at best)
// from data that is not (plain tars, text, object files).
bool ZstdPays(absl::string_view sample, int level);

// Reads `inner` to its end and yields it as one zstd frame with a content
// checksum, so a reader detects a corrupt frame even past the stored blob's
// digest. `pledged` is the input's size when known (-1: unknown); a source
// that then ends early or runs long fails the read.
class ZstdSource : public ByteSource {
 public:
  ZstdSource(ByteSource& inner, int level, int64_t pledged = -1);
  ~ZstdSource() override;
  ZstdSource(const ZstdSource&) = delete;
  ZstdSource& operator=(const ZstdSource&) = delete;

  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  // Bytes read from `inner` so far: the object's size once Read returned 0.
  int64_t consumed() const { return consumed_; }

 private:
  ByteSource& inner_;
  ZSTD_CCtx_s* cctx_;
  std::string in_;
  size_t in_pos_ = 0;
  size_t in_end_ = 0;
  const int64_t pledged_;
  int64_t consumed_ = 0;
  bool inner_done_ = false;
  bool frame_done_ = false;
};

// Decompresses a stream of zstd frames into `inner`. Bytes that are not zstd,
// or a frame whose checksum fails, are DataLoss; Finish() says whether the
// stream ended on a frame boundary.
class ZstdSink : public ByteSink {
 public:
  explicit ZstdSink(ByteSink& inner);
  ~ZstdSink() override;
  ZstdSink(const ZstdSink&) = delete;
  ZstdSink& operator=(const ZstdSink&) = delete;

  absl::Status Write(absl::string_view chunk) override;
  // OK when every frame begun was complete and `want` (if not -1) bytes came
  // out in all; DataLoss otherwise.
  absl::Status Finish(int64_t want = -1) const;
  int64_t produced() const { return produced_; }

 private:
  ByteSink& inner_;
  ZSTD_DCtx_s* dctx_;
  std::string out_;
  int64_t produced_ = 0;
  bool mid_frame_ = false;
};

// Decompresses all of `compressed` into *out, refusing (DataLoss) anything but
// whole frames that decode to exactly `want` bytes.
absl::Status ZstdDecompress(absl::string_view compressed, int64_t want, std::string* out);

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_ZSTD_STREAM_H_
