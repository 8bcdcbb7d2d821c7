#include "pkg/ko/gojson.h"

#include <string>

#include "gtest/gtest.h"
#include "pkg/ko/testdata/golden.h"

namespace ocicache::ko {
namespace {

using ojson = nlohmann::ordered_json;

TEST(GoJson, MarshalMatchesGo) {
  // A parsed value written again gives Go's bytes: member order is kept, strings
  // are escaped as Go escapes them.
  auto j = ParseFirstValue(golden::kGoldenPlainCompact);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(GoMarshal(*j), golden::kGoldenPlainCompact);
  EXPECT_EQ(GoMarshalIndent(ojson::object(), "", "  "), golden::kGoldenEmptyMap);
  for (const char* golden : {golden::kGoldenBuildIdToDiffId, golden::kGoldenOmitted,
                             golden::kGoldenEmptyInside}) {
    auto k = ParseFirstValue(golden);
    ASSERT_TRUE(k.ok()) << k.status();
    // ko's Encoder adds one newline after MarshalIndent's bytes.
    EXPECT_EQ(GoMarshalIndent(*k, "", "  ") + "\n", golden);
  }
  // Go decodes "\ufffd" to U+FFFD and writes that character back raw: a parse and
  // re-encode (by Go too) does not keep escapes. That is why descriptors are
  // kept as text (GoCompact/GoIndent), never re-encoded.
  auto full = ParseFirstValue(golden::kGoldenFullCompact);
  ASSERT_TRUE(full.ok());
  EXPECT_NE(GoMarshal(*full), golden::kGoldenFullCompact);
  // Invalid UTF-8 in a value built in memory is written as Go writes it.
  ojson bad = ojson::object();
  bad["bad-utf8"] = "a\xff" "b\xc3";
  EXPECT_EQ(GoMarshal(bad), R"({"bad-utf8":"a\ufffdb\ufffd"})");
}

TEST(GoJson, CompactAndIndentAreGosCompactAndIndent) {
  // Marshal = Compact(MarshalIndent), MarshalIndent = Indent(Marshal), escapes kept.
  EXPECT_EQ(GoCompact(golden::kGoldenFullCompact), golden::kGoldenFullCompact);
  std::string full_indented = GoIndent(golden::kGoldenFullCompact, "", "  ");
  EXPECT_EQ(GoCompact(full_indented), golden::kGoldenFullCompact);
  for (const char* golden : {golden::kGoldenDiffIdToDescriptor, golden::kGoldenBuildIdToDiffId,
                             golden::kGoldenOmitted, golden::kGoldenEmptyInside}) {
    EXPECT_EQ(GoIndent(GoCompact(golden), "", "  ") + "\n", golden);
  }
  EXPECT_EQ(GoIndent("{}", "", "  "), "{}");
  EXPECT_EQ(GoIndent(R"({"a":[1,{}],"b":"x, y: {z}"})", ">", "\t"),
            "{\n>\t\"a\": [\n>\t\t1,\n>\t\t{}\n>\t],\n>\t\"b\": \"x, y: {z}\"\n>}");
  EXPECT_EQ(GoCompact(" { \"a b\" : [ 1 , \"\\\" \" ] } "), R"({"a b":[1,"\" "]})");
}

TEST(GoJson, ObjectMembersKeepValueText) {
  auto m = ObjectMembers(R"( { "a\u0041" : { "x" : "\u003c" } , "b":[1, 2] ,"c":null} )");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].first, "aA");
  EXPECT_EQ((*m)[0].second, R"({ "x" : "\u003c" })");
  EXPECT_EQ((*m)[1].second, "[1, 2]");
  EXPECT_EQ((*m)[2].second, "null");
  auto e = ObjectMembers("{}");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->empty());
  EXPECT_FALSE(ObjectMembers("[1]").ok());
}

TEST(GoJson, EscapesLikeGo) {
  EXPECT_EQ(GoQuote("<a&b>"), R"("\u003ca\u0026b\u003e")");
  EXPECT_EQ(GoQuote("q\"b\\"), R"("q\"b\\")");
  EXPECT_EQ(GoQuote("\b\f\n\r\t"), R"("\b\f\n\r\t")");
  EXPECT_EQ(GoQuote(std::string("\x00\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\x7f\"");
  EXPECT_EQ(GoQuote("\xe2\x80\xa8\xe2\x80\xa9"), R"("\u2028\u2029")");
  EXPECT_EQ(GoQuote("\xc3\xa9\xf0\x9f\x98\x80"), "\"\xc3\xa9\xf0\x9f\x98\x80\"");
  // Invalid UTF-8: each bad byte is U+FFFD (overlong, surrogate, truncated, stray).
  EXPECT_EQ(GoQuote("a\xffz"), R"("a\ufffdz")");
  EXPECT_EQ(GoQuote("\xc0\xaf"), R"("\ufffd\ufffd")");
  EXPECT_EQ(GoQuote("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
  EXPECT_EQ(GoQuote("x\xe2\x82"), R"("x\ufffd\ufffd")");
}

TEST(GoJson, Numbers) {
  ojson j = ojson::parse(R"([0, -5, 18446744073709551615, 1.5, 1e21, 1e-7, 0.000001, 100000000000000000000])");
  EXPECT_EQ(GoMarshal(j), "[0,-5,18446744073709551615,1.5,1e+21,1e-7,0.000001,100000000000000000000]");
}

TEST(GoJson, ParseFirstValueIgnoresTrailingBytes) {
  absl::string_view text;
  auto j = ParseFirstValue("  {\"a\": \"}\\\"{\"}\n  \"b\": 1\n}\n", &text);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(GoMarshal(*j), R"({"a":"}\"{"})");
  EXPECT_EQ(text, R"({"a": "}\"{"})");
  // What ko leaves when a shorter map overwrites a longer one in place.
  auto k = ParseFirstValue("{\n  \"x\": \"y\"\n}\n\"z\": \"w\"\n}\n");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->size(), 1u);
}

TEST(GoJson, ParseFirstValueReportsInvalidJson) {
  for (const char* bad : {"", "   ", "{\"a\":", "{\"a\" 1}", "{'a':1}", "nul", "{\"a\":1,}"}) {
    auto j = ParseFirstValue(bad);
    EXPECT_FALSE(j.ok()) << bad;
    EXPECT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(j.status().message().empty());
  }
  auto j = ParseFirstValue("\n\n  {\"a\" 1}");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("column"), std::string::npos) << j.status();
  EXPECT_NE(j.status().message().find("starts at byte 4"), std::string::npos) << j.status();
}

}  // namespace
}  // namespace ocicache::ko
