#include "pkg/gocacheprog/protocol.h"

#include <random>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pkg/gocacheprog/stream.h"

namespace ocicache::gocacheprog {
namespace {

using json = nlohmann::json;

std::string Raw32(char c) { return std::string(32, c); }

TEST(Protocol, Hello) {
  EXPECT_EQ(HelloLine(), "{\"ID\":0,\"KnownCommands\":[\"get\",\"put\",\"close\"]}\n");
}

TEST(Protocol, ParsesGoRequests) {
  std::string a = Base64Encode(Raw32('a')), o = Base64Encode(Raw32('o'));
  auto get = ParseRequest(absl::StrCat(R"({"ID":7,"Command":"get","ActionID":")", a, R"("})"));
  ASSERT_TRUE(get.status.ok()) << get.status;
  EXPECT_EQ(get.request.id, 7);
  EXPECT_EQ(get.request.command, "get");
  EXPECT_EQ(get.request.action_id, Raw32('a'));
  EXPECT_FALSE(get.body_follows);

  auto put = ParseRequest(absl::StrCat(R"({"ID":8,"Command":"put","ActionID":")", a,
                                       R"(","ObjectID":")", o, R"(","BodySize":1234,"Extra":[1]})"));
  ASSERT_TRUE(put.status.ok()) << put.status;
  EXPECT_EQ(put.request.object_id, Raw32('o'));
  EXPECT_EQ(put.request.body_size, 1234);
  EXPECT_TRUE(put.body_follows);

  // BodySize omitted when 0 (Go's omitempty); trailing '\r' and spaces are fine.
  auto empty = ParseRequest(absl::StrCat(R"( {"ID":9,"Command":"put","ActionID":")", a,
                                         R"(","ObjectID":")", o, "\"}\r"));
  ASSERT_TRUE(empty.status.ok()) << empty.status;
  EXPECT_EQ(empty.request.body_size, 0);
  EXPECT_FALSE(empty.body_follows);

  auto close = ParseRequest(R"({"ID":10,"Command":"close"})");
  ASSERT_TRUE(close.status.ok());
  EXPECT_EQ(close.request.command, "close");
  EXPECT_TRUE(close.request.action_id.empty());
}

TEST(Protocol, RefusesBadRequests) {
  // Wrong-length ActionID: an error for a known ID.
  auto shortid = ParseRequest(absl::StrCat(R"({"ID":3,"Command":"get","ActionID":")",
                                           Base64Encode("short"), R"("})"));
  EXPECT_FALSE(shortid.status.ok());
  EXPECT_TRUE(shortid.id_known);
  EXPECT_EQ(shortid.request.id, 3);
  EXPECT_NE(std::string(shortid.status.message()).find("5 bytes"), std::string::npos);

  auto badb64 = ParseRequest(R"({"ID":4,"Command":"get","ActionID":"!!!"})");
  EXPECT_FALSE(badb64.status.ok());
  EXPECT_TRUE(badb64.id_known);

  // A bad field in a put with a body: the body must still be skipped.
  auto badput = ParseRequest(R"({"ID":5,"Command":"put","ActionID":"xx","BodySize":10})");
  EXPECT_FALSE(badput.status.ok());
  EXPECT_TRUE(badput.body_follows);

  auto negative = ParseRequest(R"({"ID":6,"Command":"put","BodySize":-1})");
  EXPECT_FALSE(negative.status.ok());
  EXPECT_TRUE(negative.id_known);

  auto noid = ParseRequest(R"({"Command":"get"})");
  EXPECT_FALSE(noid.status.ok());
  EXPECT_FALSE(noid.id_known);

  auto floatid = ParseRequest(R"({"ID":1.5,"Command":"get"})");
  EXPECT_FALSE(floatid.id_known);

  auto nocmd = ParseRequest(R"({"ID":11})");
  EXPECT_FALSE(nocmd.status.ok());
  EXPECT_TRUE(nocmd.id_known);

  auto garbage = ParseRequest("hello world");
  EXPECT_FALSE(garbage.status.ok());
  EXPECT_FALSE(garbage.id_known);

  auto array = ParseRequest("[1,2]");
  EXPECT_FALSE(array.id_known);

  // Cut JSON: the ID is recovered from go's prefix.
  auto cut = ParseRequest(R"({"ID":12,"Command":"ge)");
  EXPECT_FALSE(cut.status.ok());
  EXPECT_TRUE(cut.id_known);
  EXPECT_EQ(cut.request.id, 12);

  auto cutnum = ParseRequest(R"({"ID":12)", /*truncated=*/true);
  EXPECT_FALSE(cutnum.id_known);  // the number itself may be cut

  auto overlong = ParseRequest(R"({"ID":13,"Command":"get","ActionID":"AAAA)", true);
  EXPECT_TRUE(overlong.id_known);
  EXPECT_EQ(overlong.request.id, 13);

  auto binary = ParseRequest(std::string("{\"ID\":14,\"Command\":\"\xff\xfe\"}"));
  EXPECT_FALSE(binary.status.ok());
  EXPECT_TRUE(binary.id_known);
  // The error line for it is still valid JSON.
  json j = json::parse(ErrorLine(14, binary.status.message()));
  EXPECT_EQ(j["ID"], 14);
}

TEST(Protocol, ResponseLines) {
  json miss = json::parse(MissLine(3));
  EXPECT_EQ(miss, json::parse(R"({"ID":3,"Miss":true})"));
  EXPECT_EQ(PutLine(4, "/a/b"), "{\"ID\":4,\"DiskPath\":\"/a/b\"}\n");
  EXPECT_EQ(CloseLine(5), "{\"ID\":5}\n");
  json err = json::parse(ErrorLine(6, "bad \"thing\"\n"));
  EXPECT_EQ(err["Err"], "bad \"thing\"\n");

  absl::Time t = absl::FromUnixNanos(1700000000123456000);
  json hit = json::parse(HitLine(7, Raw32('\x01'), 99, t, "/x/y"));
  EXPECT_EQ(hit["ID"], 7);
  EXPECT_EQ(hit["OutputID"], Base64Encode(Raw32('\x01')));
  EXPECT_EQ(hit["Size"], 99);
  EXPECT_EQ(hit["Time"], "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(hit["DiskPath"], "/x/y");
  json zero = json::parse(HitLine(8, Raw32('\x02'), 0, absl::FromUnixSeconds(0), "/e"));
  EXPECT_FALSE(zero.contains("Size"));
  EXPECT_EQ(zero["Time"], "1970-01-01T00:00:00Z");
}

TEST(Base64, RoundTripsAndStreams) {
  std::mt19937 rng(42);
  for (size_t n : {0, 1, 2, 3, 4, 5, 31, 32, 33, 1000, 65537}) {
    std::string raw(n, '\0');
    for (auto& c : raw) c = static_cast<char>(rng());
    std::string text = Base64Encode(raw);
    EXPECT_EQ(text.size(), (n + 2) / 3 * 4);
    auto back = Base64Decode(text);
    ASSERT_TRUE(back.has_value()) << n;
    EXPECT_EQ(*back, raw);
    // Fed in odd pieces.
    for (size_t piece : {1, 2, 5, 7}) {
      Base64StreamDecoder d;
      std::string out;
      for (size_t i = 0; i < text.size(); i += piece) {
        ASSERT_TRUE(d.Feed(text.substr(i, piece), &out).ok());
      }
      ASSERT_TRUE(d.Finish().ok());
      EXPECT_EQ(out, raw);
      EXPECT_EQ(d.decoded(), static_cast<int64_t>(n));
    }
  }
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
  EXPECT_EQ(*Base64Decode("aGVsbG8h"), "hello!");
}

TEST(Base64, RefusesInvalid) {
  for (const char* bad : {"a", "ab", "abc", "a===", "ab=c", "ab==c", "abc==", "=abc", "ab\ncd",
                          "ab cd", "ab-_", "aGVsbG8=aGVs", "abc=="}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
  EXPECT_TRUE(Base64Decode("").has_value());
  EXPECT_TRUE(Base64Decode("ab==").has_value());
  EXPECT_TRUE(Base64Decode("abc=").has_value());
}

TEST(Hex, Lowercase) { EXPECT_EQ(Hex(std::string("\x00\xab\x10\xff", 4)), "00ab10ff"); }

// ---------------------------------------------------------------------------

// Input that hands out at most `piece` bytes per Read, like a pipe.
class PieceInput : public Input {
 public:
  PieceInput(std::string data, size_t piece) : data_(std::move(data)), piece_(piece) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t k = std::min({n, piece_, data_.size() - pos_});
    std::copy(data_.begin() + pos_, data_.begin() + pos_ + k, buf);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t piece_;
  size_t pos_ = 0;
};

TEST(LineReader, LinesBlankLinesAndCaps) {
  PieceInput in("one\n\n  \ntwo\r\n" + std::string(100, 'x') + "\nlast", 3);
  LineReader r(&in, 8);
  std::string line;
  bool overlong = false;
  ASSERT_EQ(*r.PeekLine(), 'o');
  ASSERT_TRUE(*r.ReadLine(&line, 50, &overlong));
  EXPECT_EQ(line, "one");
  ASSERT_EQ(*r.PeekLine(), 't');
  ASSERT_TRUE(*r.ReadLine(&line, 50, &overlong));
  EXPECT_EQ(line, "two\r");
  ASSERT_TRUE(*r.ReadLine(&line, 50, &overlong));
  EXPECT_TRUE(overlong);
  EXPECT_EQ(line, std::string(50, 'x'));
  ASSERT_TRUE(*r.ReadLine(&line, 50, &overlong));
  EXPECT_FALSE(overlong);
  EXPECT_EQ(line, "last");
  EXPECT_EQ(*r.PeekLine(), -1);
  EXPECT_FALSE(*r.ReadLine(&line, 50, &overlong));
}

struct BodyResult {
  absl::Status read;    // status of reading it all
  absl::Status finish;  // Finish()
  bool truncated = false;
  std::string data;
  std::string next_line;
};

BodyResult ReadBody(const std::string& stream, int64_t size, size_t piece = 5,
                    size_t stop_after = SIZE_MAX) {
  PieceInput in(stream, piece);
  LineReader r(&in, 16);
  BodyResult res;
  EXPECT_GE(*r.PeekLine(), 0);
  BodySource body(&r, size);
  char buf[7];
  for (;;) {
    if (res.data.size() >= stop_after) break;
    auto n = body.Read(buf, sizeof buf);
    if (!n.ok()) {
      res.read = n.status();
      break;
    }
    if (*n == 0) break;
    res.data.append(buf, *n);
  }
  res.finish = body.Finish();
  res.truncated = body.truncated();
  bool overlong;
  if (*r.PeekLine() >= 0) (void)r.ReadLine(&res.next_line, 100, &overlong);
  return res;
}

TEST(BodySource, DecodesStreamingAndLeavesTheNextLine) {
  std::string raw;
  for (int i = 0; i < 1000; ++i) raw += static_cast<char>(i * 7);
  auto res = ReadBody("\"" + Base64Encode(raw) + "\"  \n{\"ID\":2}\n", raw.size());
  EXPECT_TRUE(res.read.ok()) << res.read;
  EXPECT_TRUE(res.finish.ok()) << res.finish;
  EXPECT_EQ(res.data, raw);
  EXPECT_EQ(res.next_line, "{\"ID\":2}");
  // Stopping early (a consumer that failed) still drains the line.
  auto early = ReadBody("\"" + Base64Encode(raw) + "\"\n{\"ID\":3}\n", raw.size(), 5, 100);
  EXPECT_TRUE(early.finish.ok()) << early.finish;
  EXPECT_EQ(early.next_line, "{\"ID\":3}");
}

TEST(BodySource, Errors) {
  std::string b = Base64Encode("hello world");
  auto shorter = ReadBody("\"" + b + "\"\nnext\n", 20);
  EXPECT_FALSE(shorter.read.ok());
  EXPECT_FALSE(shorter.finish.ok());
  EXPECT_NE(std::string(shorter.finish.message()).find("11 bytes"), std::string::npos);
  EXPECT_EQ(shorter.next_line, "next");

  auto longer = ReadBody("\"" + b + "\"\nnext\n", 5);
  EXPECT_FALSE(longer.finish.ok());
  EXPECT_NE(std::string(longer.finish.message()).find("longer"), std::string::npos);
  EXPECT_EQ(longer.next_line, "next");

  auto invalid = ReadBody("\"aGVs*G8=\"\nnext\n", 5);
  EXPECT_FALSE(invalid.finish.ok());
  EXPECT_FALSE(invalid.truncated);
  EXPECT_EQ(invalid.next_line, "next");

  auto notstring = ReadBody("aGVsbG8=\nnext\n", 5);
  EXPECT_FALSE(notstring.finish.ok());
  EXPECT_EQ(notstring.next_line, "next");

  auto noquote = ReadBody("\"aGVsbG8=\nnext\n", 5);
  EXPECT_FALSE(noquote.finish.ok());
  EXPECT_FALSE(noquote.truncated);
  EXPECT_EQ(noquote.next_line, "next");

  auto junk = ReadBody("\"aGVsbG8=\" x\nnext\n", 5);
  EXPECT_FALSE(junk.finish.ok());
  EXPECT_EQ(junk.next_line, "next");

  auto eof = ReadBody("\"aGVsbG8", 5);
  EXPECT_FALSE(eof.finish.ok());
  EXPECT_TRUE(eof.truncated);

  // The closing quote then end of stream (no newline) is complete.
  auto last = ReadBody("\"aGVsbG8=\"", 5);
  EXPECT_TRUE(last.finish.ok()) << last.finish;
  EXPECT_EQ(last.data, "hello");
}

TEST(IstreamInput, ReadsWhatIsThere) {
  std::istringstream s("abc\ndef\n");
  IstreamInput in(&s);
  LineReader r(&in, 4);
  std::string line;
  bool overlong;
  ASSERT_TRUE(*r.ReadLine(&line, 10, &overlong));
  EXPECT_EQ(line, "abc");
  ASSERT_TRUE(*r.ReadLine(&line, 10, &overlong));
  EXPECT_EQ(line, "def");
  EXPECT_FALSE(*r.ReadLine(&line, 10, &overlong));
}

}  // namespace
}  // namespace ocicache::gocacheprog
