#include "pkg/base/files.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace ocicache::base {
namespace {

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string t = std::string(base != nullptr ? base : "/tmp") + "/files.XXXXXX";
  return ::mkdtemp(t.data());
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Entries(const std::string& dir) {
  int n = 0;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") ++n;
  }
  ::closedir(d);
  return n;
}

TEST(FilesTest, ErrnoCodes) {
  EXPECT_TRUE(absl::IsPermissionDenied(ErrnoStatus(EACCES, "open x")));
  EXPECT_TRUE(absl::IsResourceExhausted(ErrnoStatus(ENOSPC, "write x")));
  EXPECT_TRUE(absl::IsInternal(ErrnoStatus(ENOENT, "open x")));  // never a miss
  absl::Status s = ErrnoStatus(EIO, "read x");
  EXPECT_TRUE(absl::IsInternal(s));
  EXPECT_EQ(s.message(), "read x: Input/output error");
}

TEST(FilesTest, AtomicWriteReplacesWholeAndLeavesNoTemp) {
  std::string dir = TempDir();
  std::string path = dir + "/f";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ::chmod(path.c_str(), 0600);
  ASSERT_TRUE(WriteFileAtomically(path, "second", {.mode = 0644, .keep_mode = true}).ok());
  EXPECT_EQ(Read(path), "second");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Entries(dir), 1);
}

TEST(FilesTest, UncommittedFileIsRemovedAndTargetKept) {
  std::string dir = TempDir();
  std::string path = dir + "/f";
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  {
    auto f = AtomicFile::Create(path);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE(f->Write("half").ok());
    EXPECT_EQ(Entries(dir), 2);
  }
  EXPECT_EQ(Read(path), "old");
  EXPECT_EQ(Entries(dir), 1);
}

TEST(FilesTest, CreateInAMissingDirectoryFails) {
  auto f = AtomicFile::Create(TempDir() + "/no/such/f");
  EXPECT_TRUE(absl::IsInternal(f.status())) << f.status();
}

}  // namespace
}  // namespace ocicache::base
