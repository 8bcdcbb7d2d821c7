#include "pkg/server/temp_uploads.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ocicache::server {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void Touch(const std::string& path) { std::ofstream(path) << "staged bytes"; }

class TempUploadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", ::testing::UnitTest::GetInstance()
                                                              ->current_test_info()
                                                              ->name());
    ASSERT_EQ(::mkdir(base_.c_str(), 0700), 0);
  }

  // A server that dies without cleaning up: a child process creates a staging
  // directory, stages a file and exits at once (no destructors). Its path.
  std::string AbandonedDir() {
    int pipefd[2];
    EXPECT_EQ(::pipe(pipefd), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      auto d = TempUploadDir::Create(base_);
      std::string path = d.ok() ? (*d)->path() : "";
      if (!path.empty()) Touch(path + "/upload.part");
      (void)!::write(pipefd[1], path.data(), path.size());
      ::_exit(0);
    }
    ::close(pipefd[1]);
    char buf[4096];
    ssize_t n = ::read(pipefd[0], buf, sizeof(buf));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

  std::string base_;
};

TEST_F(TempUploadsTest, ADirectoryLivesAsLongAsItsObject) {
  std::string path;
  {
    auto d = TempUploadDir::Create(base_);
    ASSERT_TRUE(d.ok()) << d.status();
    path = (*d)->path();
    EXPECT_EQ(path.rfind(absl::StrCat(base_, "/ocicached-uploads-", ::getpid(), "-"), 0), 0u);
    Touch(path + "/a.part");
    EXPECT_EQ(RemoveAbandonedUploadDirs(base_), 0) << "a live server's directory was removed";
    EXPECT_TRUE(Exists(path + "/a.part"));
  }
  EXPECT_FALSE(Exists(path));
}

TEST_F(TempUploadsTest, AStoppedServersDirectoryIsRemoved) {
  std::string dead = AbandonedDir();
  ASSERT_FALSE(dead.empty());
  ASSERT_TRUE(Exists(dead + "/upload.part"));
  EXPECT_EQ(RemoveAbandonedUploadDirs(base_), 1);
  EXPECT_FALSE(Exists(dead));
}

// The pid in the name proves nothing: a server in another pid namespace (or a
// container sharing /tmp) has a pid this process cannot see. Its lock says it runs.
TEST_F(TempUploadsTest, ARunningServerIsKnownByItsLockNotItsPid) {
  auto live = TempUploadDir::Create(base_);
  ASSERT_TRUE(live.ok()) << live.status();
  // Renamed to a pid that surely does not exist here; the lock stays with the file.
  const std::string renamed = absl::StrCat(base_, "/ocicached-uploads-2147483646-abcdef");
  ASSERT_EQ(::rename((*live)->path().c_str(), renamed.c_str()), 0);
  EXPECT_EQ(RemoveAbandonedUploadDirs(base_), 0);
  EXPECT_TRUE(Exists(renamed + "/owner.lock"));
  ASSERT_EQ(::rename(renamed.c_str(), (*live)->path().c_str()), 0);
}

TEST_F(TempUploadsTest, DirectoriesWithoutProofOfOwnershipStay) {
  // No lock file (a directory someone else made, or one from before locks).
  const std::string bare = absl::StrCat(base_, "/ocicached-uploads-2147483646-nolock");
  ASSERT_EQ(::mkdir(bare.c_str(), 0700), 0);
  Touch(bare + "/x.part");
  // A symlink with the name, to an abandoned directory elsewhere.
  const std::string elsewhere = absl::StrCat(base_, "/elsewhere");
  ASSERT_EQ(::mkdir(elsewhere.c_str(), 0700), 0);
  std::string dead = AbandonedDir();
  ASSERT_FALSE(dead.empty());
  const std::string target = elsewhere + "/ocicached-uploads-1-target";
  ASSERT_EQ(::rename(dead.c_str(), target.c_str()), 0);
  const std::string link = absl::StrCat(base_, "/ocicached-uploads-2147483646-link");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);

  EXPECT_EQ(RemoveAbandonedUploadDirs(base_), 0);
  EXPECT_TRUE(Exists(bare + "/x.part"));
  EXPECT_TRUE(Exists(target + "/upload.part"));
  EXPECT_TRUE(Exists(link));
}

// Another user's abandoned directory is theirs to clean up, even for a server
// running as root (which could remove it).
TEST_F(TempUploadsTest, AnotherUsersDirectoryStays) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory to another user";
  std::string dead = AbandonedDir();
  ASSERT_FALSE(dead.empty());
  for (const std::string& p : {dead, dead + "/owner.lock", dead + "/upload.part"}) {
    ASSERT_EQ(::chown(p.c_str(), 65534, 65534), 0) << p;
  }
  EXPECT_EQ(RemoveAbandonedUploadDirs(base_), 0);
  EXPECT_TRUE(Exists(dead + "/upload.part"));
}

}  // namespace
}  // namespace ocicache::server
