#include "pkg/oci/zstd_stream.h"

#include "absl/strings/str_cat.h"
#include "zstd.h"

namespace ocicache::oci {

bool ZstdPays(absl::string_view sample, int level) {
  if (sample.empty()) return false;
  std::string out(ZSTD_compressBound(sample.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), sample.data(), sample.size(), level);
  return !ZSTD_isError(n) && n * 8 <= sample.size() * 7;
}

ZstdSource::ZstdSource(ByteSource& inner, int level, int64_t pledged)
    : inner_(inner), cctx_(ZSTD_createCCtx()), in_(ZSTD_CStreamInSize(), '\0'), pledged_(pledged) {
  in_pos_ = in_.size();  // nothing read yet
  in_end_ = in_.size();
  if (cctx_ == nullptr) return;
  ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 1);
  if (pledged >= 0) ZSTD_CCtx_setPledgedSrcSize(cctx_, static_cast<unsigned long long>(pledged));
}

ZstdSource::~ZstdSource() { ZSTD_freeCCtx(cctx_); }

absl::StatusOr<size_t> ZstdSource::Read(char* buf, size_t n) {
  if (cctx_ == nullptr) return absl::ResourceExhaustedError("ZSTD_createCCtx failed");
  if (n == 0) return size_t{0};
  for (;;) {
    if (frame_done_) return size_t{0};
    if (in_pos_ == in_end_ && !inner_done_) {
      auto got = inner_.Read(in_.data(), in_.size());
      if (!got.ok()) return got.status();
      in_pos_ = 0;
      in_end_ = *got;
      consumed_ += static_cast<int64_t>(*got);
      inner_done_ = *got == 0;
      if (pledged_ >= 0 && (consumed_ > pledged_ || (inner_done_ && consumed_ < pledged_))) {
        return absl::InvalidArgumentError(absl::StrCat(consumed_ > pledged_ ? "more" : "fewer",
                                                       " bytes than the ", pledged_, " announced"));
      }
    }
    ZSTD_inBuffer in{in_.data(), in_end_, in_pos_};
    ZSTD_outBuffer out{buf, n, 0};
    size_t left =
        ZSTD_compressStream2(cctx_, &out, &in, inner_done_ ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left))
      return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(left)));
    in_pos_ = in.pos;
    if (inner_done_ && left == 0) frame_done_ = true;
    if (out.pos > 0) return out.pos;
  }
}

ZstdSink::ZstdSink(ByteSink& inner)
    : inner_(inner), dctx_(ZSTD_createDCtx()), out_(ZSTD_DStreamOutSize(), '\0') {}

ZstdSink::~ZstdSink() { ZSTD_freeDCtx(dctx_); }

absl::Status ZstdSink::Write(absl::string_view chunk) {
  if (dctx_ == nullptr) return absl::ResourceExhaustedError("ZSTD_createDCtx failed");
  if (chunk.empty()) return absl::OkStatus();
  ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
  for (;;) {
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    size_t r = ZSTD_decompressStream(dctx_, &out, &in);
    if (ZSTD_isError(r)) return absl::DataLossError(absl::StrCat("zstd: ", ZSTD_getErrorName(r)));
    mid_frame_ = r != 0;  // 0: a frame ended here, fully flushed
    if (out.pos > 0) {
      produced_ += static_cast<int64_t>(out.pos);
      if (absl::Status s = inner_.Write(absl::string_view(out_.data(), out.pos)); !s.ok()) return s;
    }
    // A full output buffer may hold back decoded bytes: go on until the input
    // is used up with room to spare in the output, or a frame ended with it
    // (another call would begin the next frame and look like one cut short).
    if (in.pos == in.size && (out.pos < out.size || r == 0)) return absl::OkStatus();
  }
}

absl::Status ZstdSink::Finish(int64_t want) const {
  if (mid_frame_) return absl::DataLossError("the zstd stream ends inside a frame");
  if (want >= 0 && produced_ != want) {
    return absl::DataLossError(
        absl::StrCat("the zstd stream decodes to ", produced_, " bytes, not ", want));
  }
  return absl::OkStatus();
}

absl::Status ZstdDecompress(absl::string_view compressed, int64_t want, std::string* out) {
  out->clear();
  BoundedStringSink bounded(out, want, "decompressed object");
  ZstdSink sink(bounded);
  absl::Status s = sink.Write(compressed);
  if (absl::IsResourceExhausted(s)) return absl::DataLossError(s.message());
  if (!s.ok()) return s;
  return sink.Finish(want);
}

}  // namespace ocicache::oci
