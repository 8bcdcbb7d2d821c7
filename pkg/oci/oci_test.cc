#include <thread>

#include "gtest/gtest.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/hasher.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"

namespace ocicache::oci {
namespace {

TEST(DigestTest, KnownValues) {
  EXPECT_EQ(Digest::Of("").str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Digest::Of("{}").str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
}

TEST(DigestTest, StreamingEqualsOneShot) {
  std::string data(100000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  Sha256 h;
  for (size_t i = 0; i < data.size(); i += 777) h.Update(data.substr(i, 777));
  EXPECT_EQ(h.size(), 100000);
  EXPECT_EQ(h.Finish(), Digest::Of(data));
}

TEST(DigestTest, PipelinedEqualsOneShot) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{1 << 20}, size_t{(3 << 20) + 12345}}) {
    std::string data(n, '\0');
    for (size_t i = 0; i < n; ++i) data[i] = static_cast<char>(i * 13 + 1);
    PipelinedSha256 h(2 << 20);
    for (size_t i = 0; i < n; i += 16384) h.Update(absl::string_view(data).substr(i, 16384));
    EXPECT_EQ(h.size(), static_cast<int64_t>(n));
    EXPECT_EQ(h.Finish(), Digest::Of(data)) << n;
  }
}

TEST(DigestTest, ParseRejectsBadInput) {
  EXPECT_TRUE(Digest::Parse("sha256:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(Digest::Parse("sha256:" + std::string(63, 'a')).ok());
  EXPECT_FALSE(Digest::Parse("sha256:" + std::string(64, 'A')).ok());
  EXPECT_FALSE(Digest::Parse("sha512:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(Digest::Parse("").ok());
  EXPECT_FALSE(Digest::Parse(std::string(64, 'a')).ok());
  auto d = Digest::Parse("sha256:" + std::string(64, 'b'));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->raw().size(), 32u);
}

TEST(TypesTest, ManifestRoundTrip) {
  Manifest m;
  m.artifact_type = "application/vnd.example";
  m.config = EmptyDescriptor();
  m.config.data = "{}";
  Descriptor l;
  l.media_type = media::kLayerTarGzip;
  l.digest = Digest::Of("layer");
  l.size = 5;
  l.annotations["a"] = "b";
  l.urls.push_back("https://example.com/x");
  m.layers.push_back(l);
  m.annotations["k"] = "v";
  std::string bytes = m.Serialize();
  auto back = Manifest::Parse(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Serialize(), bytes);
  EXPECT_EQ(back->config.data.value(), "{}");
  EXPECT_EQ(back->layers[0].annotations.at("a"), "b");
  EXPECT_EQ(back->layers[0].urls.at(0), "https://example.com/x");
}

TEST(TypesTest, RejectsDataThatDoesNotMatchDigest) {
  Manifest m;
  m.config = EmptyDescriptor();
  m.config.data = "{}";
  m.layers.push_back(EmptyDescriptor());
  std::string bytes = m.Serialize();
  // "e30=" is base64 of "{}"; swap in base64 of "[]".
  auto pos = bytes.find("e30=");
  ASSERT_NE(pos, std::string::npos);
  bytes.replace(pos, 4, "W10=");
  EXPECT_FALSE(Manifest::Parse(bytes).ok());
}

TEST(TypesTest, RejectsMalformed) {
  EXPECT_FALSE(Manifest::Parse("").ok());
  EXPECT_FALSE(Manifest::Parse("{").ok());
  EXPECT_FALSE(Manifest::Parse("[]").ok());
  EXPECT_FALSE(Manifest::Parse(R"({"schemaVersion":1})").ok());
  EXPECT_FALSE(Manifest::Parse(R"({"schemaVersion":2,"config":{}, "layers":[]})").ok());
  EXPECT_FALSE(Index::Parse(R"({"schemaVersion":2})").ok());
}

TEST(StreamTest, StringSourceReadsAll) {
  StringSource src("hello world");
  std::string out;
  StringSink sink(&out);
  char buf[4];
  for (;;) {
    auto n = src.Read(buf, sizeof buf);
    ASSERT_TRUE(n.ok());
    if (*n == 0) break;
    ASSERT_TRUE(sink.Write(absl::string_view(buf, *n)).ok());
  }
  EXPECT_EQ(out, "hello world");
}

TEST(StreamTest, ReadUpToStopsAtNOrTheEndAndPrefixedSourceGivesItBack) {
  const std::string data(200000, 'x');
  StringSource src(data);
  auto head = ReadUpTo(src, 70000);  // more than one internal read
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->size(), 70000u);
  PrefixedSource all(*std::move(head), &src);
  auto whole = ReadUpTo(all, -1);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(*whole, data);
  StringSource short_src("abc");
  auto got = ReadUpTo(short_src, 10);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "abc");
  StringSource none("abc");
  EXPECT_EQ(ReadUpTo(none, 0)->size(), 0u);
}

}  // namespace
}  // namespace ocicache::oci

#include "pkg/oci/pipe.h"

namespace ocicache::oci {
namespace {

TEST(PipeTest, TryWriteAndTryReadNeverWaitAndWakeTheOtherSide) {
  BoundedPipe p(4);
  bool wait = false;
  char buf[8];
  // Empty: a reader would wait; its wake-up runs on the writer's next write.
  auto n = p.TryRead(buf, sizeof buf, &wait);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(wait);
  int reader_woken = 0;
  EXPECT_TRUE(p.WakeReader([&] { ++reader_woken; }));
  auto w = p.TryWrite("abcdef");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 4u);  // what fits
  EXPECT_EQ(reader_woken, 1);
  EXPECT_FALSE(p.WakeReader([&] { ++reader_woken; }));  // bytes wait: go on now
  // Full: a writer would wait; its wake-up runs on the reader's next read.
  w = p.TryWrite("ef");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 0u);
  int writer_woken = 0;
  EXPECT_TRUE(p.WakeWriter([&] { ++writer_woken; }));
  n = p.TryRead(buf, 1, &wait);
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(wait);
  EXPECT_EQ(std::string(buf, *n), "a");
  EXPECT_EQ(writer_woken, 0);  // a byte of room is not worth a wake-up
  n = p.TryRead(buf, sizeof buf, &wait);
  EXPECT_EQ(std::string(buf, *n), "bcd");
  EXPECT_EQ(writer_woken, 1);  // half the pipe is
  EXPECT_FALSE(p.WakeWriter([&] { ++writer_woken; }));  // room: go on now
  // The end wakes a waiting reader, which then reads it.
  n = p.TryRead(buf, sizeof buf, &wait);
  EXPECT_TRUE(wait);
  EXPECT_TRUE(p.WakeReader([&] { ++reader_woken; }));
  p.CloseWrite(absl::DataLossError("cut"));
  EXPECT_EQ(reader_woken, 2);
  n = p.TryRead(buf, sizeof buf, &wait);
  EXPECT_FALSE(wait);
  EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  // A reader that leaves wakes a waiting writer, whose writes then fail.
  BoundedPipe q(1);
  ASSERT_EQ(*q.TryWrite("x"), 1u);
  EXPECT_TRUE(q.WakeWriter([&] { ++writer_woken; }));
  q.CloseRead();
  EXPECT_EQ(writer_woken, 2);
  EXPECT_TRUE(absl::IsCancelled(q.TryWrite("y").status()));
}

TEST(PipeTest, TransfersLargeStreamThroughSmallBuffer) {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  std::string got;
  absl::Status s = Transfer(
      [&](ByteSink& sink) {
        for (size_t i = 0; i < data.size(); i += 10000) {
          absl::Status w = sink.Write(absl::string_view(data).substr(i, 10000));
          if (!w.ok()) return w;
        }
        return absl::OkStatus();
      },
      [&](ByteSource& src) {
        char buf[4096];
        for (;;) {
          auto n = src.Read(buf, sizeof buf);
          if (!n.ok()) return n.status();
          if (*n == 0) return absl::OkStatus();
          got.append(buf, *n);
        }
      },
      64 << 10);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Digest::Of(got), Digest::Of(data));
}

// The ring wraps at positions that share no period with the bytes or the
// chunk sizes, while writer and reader copy at the same time; both the
// blocking and the non-blocking calls.
TEST(PipeTest, BytesKeepTheirOrderAcrossTheRingsWrapUnderConcurrentCopies) {
  std::string data(1 << 20, '\0');
  uint32_t x = 12345;
  for (char& c : data) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  for (bool try_calls : {false, true}) {
    BoundedPipe p(1009);
    std::string got;
    std::thread writer([&] {
      size_t sizes[] = {1, 7, 333, 1009, 4096};
      size_t i = 0, k = 0;
      while (i < data.size()) {
        absl::string_view piece = absl::string_view(data).substr(i, sizes[k++ % 5]);
        if (try_calls) {
          auto n = p.TryWrite(piece);
          if (!n.ok()) {
            ADD_FAILURE() << n.status();
            break;
          }
          i += *n;
          if (*n == 0) std::this_thread::yield();
        } else {
          if (absl::Status w = p.Write(piece); !w.ok()) {
            ADD_FAILURE() << w;
            break;
          }
          i += piece.size();
        }
      }
      p.CloseWrite(absl::OkStatus());
    });
    char buf[5000];
    size_t sizes[] = {5000, 1, 512, 999, 13};
    for (size_t k = 0;; ++k) {
      absl::StatusOr<size_t> n;
      if (try_calls) {
        bool wait = false;
        n = p.TryRead(buf, sizes[k % 5], &wait);
        if (wait) {
          std::this_thread::yield();
          continue;
        }
      } else {
        n = p.Read(buf, sizes[k % 5]);
      }
      if (!n.ok()) {
        ADD_FAILURE() << n.status();
        p.CloseRead();  // the writer stops too
        break;
      }
      if (*n == 0) break;
      got.append(buf, *n);
    }
    writer.join();
    ASSERT_EQ(got.size(), data.size());
    EXPECT_TRUE(got == data) << "bytes differ (try calls: " << try_calls << ")";
  }
}

TEST(PipeTest, ProducerErrorReachesConsumerAndCaller) {
  bool consumer_saw_error = false;
  absl::Status s = Transfer(
      [](ByteSink& sink) {
        (void)sink.Write("partial");
        return absl::DataLossError("corrupt upstream");
      },
      [&](ByteSource& src) {
        char buf[64];
        for (;;) {
          auto n = src.Read(buf, sizeof buf);
          if (!n.ok()) {
            consumer_saw_error = true;
            return n.status();
          }
          if (*n == 0) return absl::OkStatus();
        }
      });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(consumer_saw_error);
}

TEST(PipeTest, ConsumerSucceedingEarlyIsSuccess) {
  absl::Status s = Transfer(
      [](ByteSink& sink) {
        std::string chunk(1 << 20, 'x');
        for (int i = 0; i < 100; ++i) {
          absl::Status w = sink.Write(chunk);
          if (!w.ok()) return w;
        }
        return absl::OkStatus();
      },
      [](ByteSource&) { return absl::OkStatus(); }, 64 << 10);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(PipeTest, ConsumerStoppingEarlyUnblocksProducer) {
  absl::Status s = Transfer(
      [](ByteSink& sink) {
        std::string chunk(1 << 20, 'x');
        for (int i = 0; i < 100; ++i) {
          absl::Status w = sink.Write(chunk);
          if (!w.ok()) return w;
        }
        return absl::OkStatus();
      },
      [](ByteSource&) { return absl::UnavailableError("upload failed"); }, 64 << 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ocicache::oci
