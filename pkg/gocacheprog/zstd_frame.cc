#include "pkg/gocacheprog/zstd_frame.h"

#include "absl/strings/str_cat.h"
#include "zstd.h"

namespace ocicache::gocacheprog {

ZstdFrameSink::ZstdFrameSink(oci::ByteSink& inner)
    : inner_(inner), dctx_(ZSTD_createDCtx()), out_(256 << 10, '\0') {}

ZstdFrameSink::~ZstdFrameSink() { ZSTD_freeDCtx(dctx_); }

absl::Status ZstdFrameSink::Write(absl::string_view chunk) {
  if (dctx_ == nullptr) return absl::ResourceExhaustedError("ZSTD_createDCtx failed");
  if (ended_) return FrameDone();
  ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
  for (;;) {
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    size_t r = ZSTD_decompressStream(dctx_, &out, &in);
    if (ZSTD_isError(r)) {
      return absl::DataLossError(absl::StrCat("zstd frame: ", ZSTD_getErrorName(r)));
    }
    if (out.pos > 0) {
      if (absl::Status s = inner_.Write(absl::string_view(out_.data(), out.pos)); !s.ok()) {
        return s;
      }
    }
    if (r == 0) {  // the frame is complete: what follows belongs to the next one
      ended_ = true;
      return FrameDone();
    }
    // A full output buffer may leave decoded bytes inside: call again until the
    // input is used up and the output had room to spare.
    if (in.pos == in.size && out.pos < out.size) return absl::OkStatus();
  }
}

}  // namespace ocicache::gocacheprog
