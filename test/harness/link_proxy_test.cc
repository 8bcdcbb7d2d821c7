// The link model against an echo server on loopback: the delay shows in every
// round trip, the bandwidth cap in a transfer's time and is shared by parallel
// connections, bytes arrive intact and in order, and closes pass through.
// The checks are lower bounds (what the model must add) with generous upper
// bounds, so a loaded machine does not make them fail.
#include "test/harness/link_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ocicache::harness {
namespace {

// Echoes every connection's bytes back until the peer closes.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        workers_.emplace_back([c] {
          char buf[65536];
          ssize_t n;
          while ((n = read(c, buf, sizeof buf)) > 0) {
            ssize_t off = 0;
            while (off < n) {
              ssize_t w = write(c, buf + off, n - off);
              if (w <= 0) break;
              off += w;
            }
          }
          close(c);
        });
      }
    });
  }
  ~EchoServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    for (auto& w : workers_) w.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::vector<std::thread> workers_;
};

int Dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Sends `data` and reads as many bytes back; returns what came back.
std::string EchoThrough(int fd, const std::string& data) {
  std::thread writer([&] {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t w = write(fd, data.data() + off, std::min<size_t>(data.size() - off, 1 << 16));
      if (w <= 0) return;
      off += static_cast<size_t>(w);
    }
  });
  std::string got;
  char buf[65536];
  while (got.size() < data.size()) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  writer.join();
  return got;
}

// A short link of 80 Mbit/s (10 MB/s per direction), 1 ms each way.
LinkOptions TenMegabytesPerSecond() {
  LinkOptions o;
  o.one_way_delay = absl::Milliseconds(1);
  o.bits_per_second = 80'000'000;
  return o;
}

TEST(LinkProxy, EveryRoundTripPaysTwiceTheDelay) {
  EchoServer echo;
  LinkOptions o;
  o.one_way_delay = absl::Milliseconds(20);
  o.bits_per_second = 0;
  auto p = LinkProxy::Start(echo.address(), o);
  ASSERT_TRUE(p.ok()) << p.status();
  int fd = Dial((*p)->port());
  ASSERT_GE(fd, 0);
  EchoThrough(fd, "warm");  // the connection to the target is set up
  for (int i = 0; i < 5; ++i) {
    absl::Time t0 = absl::Now();
    EXPECT_EQ(EchoThrough(fd, "ping"), "ping");
    absl::Duration rtt = absl::Now() - t0;
    EXPECT_GE(rtt, absl::Milliseconds(40));
    EXPECT_LT(rtt, absl::Seconds(2));
  }
  close(fd);
  EXPECT_EQ((*p)->connections(), 1);
}

TEST(LinkProxy, TheCapIsSharedByParallelConnectionsAndBytesArriveIntact) {
  EchoServer echo;
  auto p = LinkProxy::Start(echo.address(), TenMegabytesPerSecond());
  ASSERT_TRUE(p.ok()) << p.status();
  std::string data(2 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 4096);
  // Two connections of 2 MiB each at once: 4 MiB over a 10 MB/s direction
  // takes at least 0.41 s; one connection alone would take half that.
  std::atomic<int> intact{0};
  absl::Time t0 = absl::Now();
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i) {
    ts.emplace_back([&] {
      int fd = Dial((*p)->port());
      if (EchoThrough(fd, data) == data) intact.fetch_add(1);
      close(fd);
    });
  }
  for (auto& t : ts) t.join();
  absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(intact.load(), 2);
  EXPECT_GE(took, absl::Milliseconds(400));
  EXPECT_LT(took, absl::Seconds(20));
  EXPECT_EQ((*p)->bytes_up(), 2 * static_cast<int64_t>(data.size()));
  EXPECT_EQ((*p)->bytes_down(), 2 * static_cast<int64_t>(data.size()));
}

// Connections take turns on the wire: a ping on one connection crosses while
// another has megabytes buffered in both directions. As one FIFO, the ping would
// wait behind those bytes: 4 MiB per direction at 10 MB/s, about 0.8 s.
TEST(LinkProxy, ASmallAnswerDoesNotWaitBehindABulkTransfer) {
  EchoServer echo;
  auto p = LinkProxy::Start(echo.address(), TenMegabytesPerSecond());
  ASSERT_TRUE(p.ok()) << p.status();
  std::string bulk(16 << 20, 'b');
  std::atomic<bool> bulk_intact{false};
  std::thread t([&] {
    int fd = Dial((*p)->port());
    bulk_intact = EchoThrough(fd, bulk) == bulk;
    close(fd);
  });
  // Until the bulk connection has filled its buffers (bounded: 10 s).
  for (int i = 0; i < 1000 && (*p)->bytes_down() < (8 << 20); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE((*p)->bytes_down(), 8 << 20);
  int fd = Dial((*p)->port());
  ASSERT_GE(fd, 0);
  absl::Time t0 = absl::Now();
  EXPECT_EQ(EchoThrough(fd, "ping"), "ping");
  absl::Duration rtt = absl::Now() - t0;
  close(fd);
  t.join();
  EXPECT_TRUE(bulk_intact.load());
  EXPECT_GE(rtt, absl::Milliseconds(2));
  EXPECT_LT(rtt, absl::Milliseconds(300)) << "the ping waited behind the bulk transfer";
}

TEST(LinkProxy, ACloseCrossesTheLinkAfterTheBytesBeforeIt) {
  EchoServer echo;
  LinkOptions o;
  o.one_way_delay = absl::Milliseconds(5);
  auto p = LinkProxy::Start(echo.address(), o);
  ASSERT_TRUE(p.ok()) << p.status();
  int fd = Dial((*p)->port());
  ASSERT_EQ(write(fd, "last words", 10), 10);
  shutdown(fd, SHUT_WR);  // the echo server sees EOF after the bytes, then closes
  std::string got;
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(got, "last words");
  close(fd);
}

TEST(LinkProxy, DescribeNamesRttAndRate) {
  LinkOptions o;
  o.one_way_delay = absl::Milliseconds(10);
  o.bits_per_second = 200'000'000;
  EXPECT_EQ(Describe(o), "20ms RTT/200mbit");
}

}  // namespace
}  // namespace ocicache::harness
