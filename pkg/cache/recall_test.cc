#include "pkg/cache/recall.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ocicache::cache {
namespace {

TEST(RecallListTest, KeysRoundTripInOrder) {
  std::vector<std::string> keys = {"http:kv:ccache:ab/cdef", "http:kv:ccache:01/23", "z"};
  std::string blob = FormatRecallList(keys);
  EXPECT_EQ(blob, "ocicache-recall 1\nhttp:kv:ccache:ab/cdef\nhttp:kv:ccache:01/23\nz\n");
  auto back = ParseRecallList(blob);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, keys);
}

TEST(RecallListTest, KeysThatCannotBeLinesAreLeftOut) {
  std::string blob = FormatRecallList({"a", "", "two\nlines", "b"});
  auto back = ParseRecallList(blob);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, (std::vector<std::string>{"a", "b"}));
}

TEST(RecallListTest, AnythingElseIsRefused) {
  EXPECT_TRUE(absl::IsDataLoss(ParseRecallList("").status()));
  EXPECT_TRUE(absl::IsDataLoss(ParseRecallList("ocicache-recall 2\na\n").status()));
  EXPECT_TRUE(absl::IsDataLoss(ParseRecallList("{\"keys\":[]}").status()));
  auto empty = ParseRecallList("ocicache-recall 1\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(RecallListTest, TheListIsBoundedInBytes) {
  std::vector<std::string> keys(5000, std::string(1000, 'k'));
  for (size_t i = 0; i < keys.size(); ++i) keys[i] += std::to_string(i);
  std::string blob = FormatRecallList(keys);
  EXPECT_LE(blob.size(), size_t{4} << 20);
  auto back = ParseRecallList(blob);
  ASSERT_TRUE(back.ok());
  EXPECT_GT(back->size(), 4000u);
  EXPECT_LT(back->size(), keys.size());
  EXPECT_EQ(back->front(), keys.front());
}

}  // namespace
}  // namespace ocicache::cache
