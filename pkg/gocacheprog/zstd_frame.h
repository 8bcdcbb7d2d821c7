// ZstdFrameSink: decompresses one zstd frame (RFC 8878) into another sink, and
// stops the stream where the frame ends: a compressed session pack is read frame
// by frame (docs/FORMAT.md, "Pack encoding").
#ifndef OCICACHE_PKG_GOCACHEPROG_ZSTD_FRAME_H_
#define OCICACHE_PKG_GOCACHEPROG_ZSTD_FRAME_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pkg/oci/stream.h"

struct ZSTD_DCtx_s;

namespace ocicache::gocacheprog {

class ZstdFrameSink : public oci::ByteSink {
 public:
  explicit ZstdFrameSink(oci::ByteSink& inner);
  ~ZstdFrameSink() override;
  ZstdFrameSink(const ZstdFrameSink&) = delete;
  ZstdFrameSink& operator=(const ZstdFrameSink&) = delete;

  // Passes the decoded bytes on. Once the frame is complete: FrameDone() (also
  // for bytes after it), so a reader stops the stream. DataLoss for bytes that
  // are not zstd; the inner sink's errors as they are.
  absl::Status Write(absl::string_view chunk) override;
  // The inner sink checks what it keeps (objects against their digests).
  bool ChecksEveryByte() const override { return true; }

  bool ended() const { return ended_; }
  static absl::Status FrameDone() { return absl::CancelledError("zstd frame complete"); }

 private:
  oci::ByteSink& inner_;
  ZSTD_DCtx_s* dctx_;
  std::string out_;
  bool ended_ = false;
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_ZSTD_FRAME_H_
