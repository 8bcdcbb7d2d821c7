#include "pkg/gocacheprog/zstd_frame.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "zstd.h"

namespace ocicache::gocacheprog {
namespace {

std::string Compress(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string Text(size_t n) {
  std::string s;
  while (s.size() < n) absl::StrAppend(&s, "func f", s.size() % 1000, "() { return }\n");
  s.resize(n);
  return s;
}

// A frame that decodes to far more than the decoder's buffer, delivered in one
// chunk (or in pieces): every decoded byte comes out, then the frame ends.
TEST(ZstdFrameSink, DecodesAFrameToItsEndWhateverTheChunks) {
  const std::string data = Text(5 << 20);
  const std::string frame = Compress(data);
  ASSERT_LT(frame.size() * 20, data.size());
  for (size_t piece : {frame.size(), size_t{1}, size_t{7}, size_t{4096}}) {
    std::string got;
    oci::StringSink inner(&got);
    ZstdFrameSink sink(inner);
    absl::Status last;
    for (size_t at = 0; at < frame.size(); at += piece) {
      last = sink.Write(absl::string_view(frame).substr(at, piece));
      if (!last.ok()) break;
    }
    EXPECT_TRUE(sink.ended()) << "piece " << piece;
    EXPECT_TRUE(absl::IsCancelled(last)) << last;
    EXPECT_EQ(got.size(), data.size()) << "piece " << piece;
    EXPECT_TRUE(got == data) << "piece " << piece;
  }
}

// Two frames back to back: the sink stops at the end of the first.
TEST(ZstdFrameSink, StopsAtTheFrameEnd) {
  const std::string a = Text(300000), b = "another frame";
  const std::string both = Compress(a) + Compress(b);
  std::string got;
  oci::StringSink inner(&got);
  ZstdFrameSink sink(inner);
  EXPECT_TRUE(absl::IsCancelled(sink.Write(both)));
  EXPECT_TRUE(got == a);
  EXPECT_TRUE(absl::IsCancelled(sink.Write("more")));
}

TEST(ZstdFrameSink, GarbageIsDataLoss) {
  std::string got;
  oci::StringSink inner(&got);
  ZstdFrameSink sink(inner);
  EXPECT_TRUE(absl::IsDataLoss(sink.Write("this is not a zstd frame at all")));
}

}  // namespace
}  // namespace ocicache::gocacheprog
