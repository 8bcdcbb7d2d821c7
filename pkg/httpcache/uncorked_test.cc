#include "pkg/httpcache/uncorked.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace ocicache::httpcache {
namespace {

int Corked(int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, &len), 0);
  return v;
}

int Cork(int fd, int on) { return setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on); }

TEST(UncorkedTest, ARegisteredSocketStaysUncorkedOthersCork) {
  int a = socket(AF_INET, SOCK_STREAM, 0);
  int b = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  size_t before = NeverCorkedCount();
  NeverCork(a);
  EXPECT_TRUE(IsNeverCorked(a));
  EXPECT_FALSE(IsNeverCorked(b));
  EXPECT_EQ(NeverCorkedCount(), before + 1);

  // The call succeeds (libmicrohttpd records the socket as corked) and the
  // socket is not corked; the unregistered one is.
  EXPECT_EQ(Cork(a, 1), 0);
  EXPECT_EQ(Corked(a), 0);
  EXPECT_EQ(Cork(b, 1), 0);
  EXPECT_NE(Corked(b), 0);
  // Uncorking and every other option reach the kernel.
  EXPECT_EQ(Cork(b, 0), 0);
  EXPECT_EQ(Corked(b), 0);
  int one = 1;
  EXPECT_EQ(setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
  int v = 0;
  socklen_t len = sizeof v;
  ASSERT_EQ(getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
  EXPECT_NE(v, 0);

  // Errors still come from the kernel, with errno.
  errno = 0;
  EXPECT_EQ(Cork(-1, 1), -1);
  EXPECT_EQ(errno, EBADF);

  Forget(a);
  EXPECT_FALSE(IsNeverCorked(a));
  EXPECT_EQ(NeverCorkedCount(), before);
  EXPECT_EQ(Cork(a, 1), 0);
  EXPECT_NE(Corked(a), 0);
  close(a);
  close(b);
}

TEST(UncorkedTest, FdsOutOfRangeAreNotTracked) {
  NeverCork(-1);
  NeverCork(kMaxFd);
  EXPECT_FALSE(IsNeverCorked(-1));
  EXPECT_FALSE(IsNeverCorked(kMaxFd));
  Forget(kMaxFd + 5);
}

}  // namespace
}  // namespace ocicache::httpcache
