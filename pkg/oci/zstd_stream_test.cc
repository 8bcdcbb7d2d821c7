#include "pkg/oci/zstd_stream.h"

#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pkg/oci/stream.h"

namespace ocicache::oci {
namespace {

std::string Text(size_t n) {
  std::string s;
  while (s.size() < n) absl::StrAppend(&s, "export function f", s.size() % 997, "() {}\n");
  s.resize(n);
  return s;
}

std::string Random(size_t n) {
  std::mt19937_64 rng(7);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Reads a source to its end in reads of `piece` bytes.
absl::StatusOr<std::string> Drain(ByteSource& src, size_t piece) {
  std::string all, buf(piece, '\0');
  for (;;) {
    auto n = src.Read(buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) return all;
    all.append(buf.data(), *n);
  }
}

TEST(ZstdStream, WhatTheSourceCompressesTheSinkGivesBackWhateverTheChunks) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{100 << 10}, size_t{3 << 20}}) {
    const std::string data = Text(size);
    for (int64_t pledged : {int64_t{-1}, static_cast<int64_t>(size)}) {
      StringSource in(data);
      ZstdSource z(in, 3, pledged);
      auto frame = Drain(z, size_t{1} + size % 5000);
      ASSERT_TRUE(frame.ok()) << frame.status();
      EXPECT_EQ(z.consumed(), static_cast<int64_t>(size));
      if (size > 1000) {
        EXPECT_LT(frame->size() * 10, size);
      }
      for (size_t piece : {size_t{1}, size_t{13}, frame->size()}) {
        if (piece == 0) continue;
        std::string got;
        StringSink inner(&got);
        ZstdSink sink(inner);
        for (size_t at = 0; at < frame->size(); at += piece) {
          ASSERT_TRUE(sink.Write(absl::string_view(*frame).substr(at, piece)).ok());
        }
        EXPECT_TRUE(sink.Finish(static_cast<int64_t>(size)).ok())
            << size << " " << piece << ": " << sink.Finish(static_cast<int64_t>(size));
        EXPECT_EQ(got, data);
      }
      std::string whole;
      EXPECT_TRUE(ZstdDecompress(*frame, static_cast<int64_t>(size), &whole).ok());
      EXPECT_EQ(whole, data);
    }
  }
}

TEST(ZstdStream, ASourceThatBreaksItsAnnouncedSizeFails) {
  const std::string data = Text(50000);
  for (int64_t pledged : {int64_t{49999}, int64_t{50001}}) {
    StringSource in(data);
    ZstdSource z(in, 3, pledged);
    auto frame = Drain(z, 4096);
    ASSERT_FALSE(frame.ok()) << pledged;
    EXPECT_TRUE(absl::IsInvalidArgument(frame.status())) << frame.status();
  }
}

TEST(ZstdStream, ACutOrCorruptOrWrongSizedFrameIsDataLoss) {
  const std::string data = Text(200000);
  StringSource in(data);
  ZstdSource z(in, 3);
  auto frame = Drain(z, 1 << 16);
  ASSERT_TRUE(frame.ok());
  std::string out;
  // Cut short: every byte written decodes, but the frame never ends.
  EXPECT_TRUE(absl::IsDataLoss(ZstdDecompress(frame->substr(0, frame->size() - 3), 200000, &out)));
  // One byte flipped in the middle: the block or the frame's checksum fails.
  std::string bad = *frame;
  bad[bad.size() / 2] ^= 0x40;
  EXPECT_TRUE(absl::IsDataLoss(ZstdDecompress(bad, 200000, &out)));
  // Whole, but not the size the entry says (more, and fewer).
  EXPECT_TRUE(absl::IsDataLoss(ZstdDecompress(*frame, 199999, &out)));
  EXPECT_TRUE(absl::IsDataLoss(ZstdDecompress(*frame, 200001, &out)));
  // Not zstd at all.
  EXPECT_TRUE(absl::IsDataLoss(ZstdDecompress(data, 200000, &out)));
  EXPECT_TRUE(ZstdDecompress(*frame, 200000, &out).ok());
}

TEST(ZstdStream, TwoFramesInARowDecodeAsOneStream) {
  const std::string a = Text(70000), b = Text(30000);
  std::string both;
  for (const std::string* part : {&a, &b}) {
    StringSource in(*part);
    ZstdSource z(in, 1);
    auto frame = Drain(z, 8192);
    ASSERT_TRUE(frame.ok());
    both += *frame;
  }
  std::string out;
  EXPECT_TRUE(ZstdDecompress(both, 100000, &out).ok());
  EXPECT_EQ(out, a + b);
}

TEST(ZstdStream, PaysForTextNotForRandomBytes) {
  EXPECT_TRUE(ZstdPays(Text(16 << 10), 3));
  EXPECT_FALSE(ZstdPays(Random(16 << 10), 3));
  // A tar-like sample: a header block of zeros before already compressed
  // bytes still does not pay.
  EXPECT_FALSE(ZstdPays(std::string(512, '\0') + Random(16 << 10), 3));
  EXPECT_FALSE(ZstdPays("", 3));
}

}  // namespace
}  // namespace ocicache::oci
