#include "test/integration/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ocicache::testing {
namespace {

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int upstream_port) {
  std::unique_ptr<TcpProxy> p(new TcpProxy());
  p->upstream_port_ = upstream_port;
  p->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->listen_fd_ < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(p->listen_fd_, 64) != 0 ||
      ::getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError("cannot listen on 127.0.0.1");
  }
  p->port_ = ntohs(addr.sin_port);
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> pumps;
  {
    absl::MutexLock l(&mu_);
    pumps.swap(pumps_);
  }
  for (auto& t : pumps) t.join();
}

std::string TcpProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

void TcpProxy::CutAfter(int64_t bytes) { cut_at_ = bytes_up_.load() + bytes; }

void TcpProxy::CutAfterDown(int64_t bytes) { cut_down_at_ = bytes_down_.load() + bytes; }

void TcpProxy::AcceptLoop() {
  while (!stop_) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    int server = ConnectLoopback(upstream_port_);
    if (server < 0) {
      ::close(client);
      continue;
    }
    ++connections_;
    absl::MutexLock l(&mu_);
    pumps_.emplace_back([this, client, server] { Pump(client, server); });
  }
}

void TcpProxy::Pump(int client, int server) {
  const int64_t generation = generation_.load();
  std::string buf(256 << 10, '\0');
  pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
  while (!stop_ && generation_.load() == generation) {
    if (::poll(fds, 2, 50) <= 0) continue;
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if (fds[i].revents == 0) continue;
      size_t want = buf.size();
      std::atomic<int64_t>& cut_at = i == 0 ? cut_at_ : cut_down_at_;
      std::atomic<int64_t>& moved = i == 0 ? bytes_up_ : bytes_down_;
      int64_t cut = cut_at.load();
      if (cut >= 0) {
        int64_t left = cut - moved.load();
        if (left <= 0) {
          // Cut: this connection and, through the generation, every other one.
          if (cut_at.compare_exchange_strong(cut, -1)) {
            ++cuts_;
            ++generation_;
          }
          done = true;
          break;
        }
        want = std::min(want, static_cast<size_t>(left));
      }
      ssize_t n = ::recv(fds[i].fd, buf.data(), want, 0);
      if (n <= 0) {
        done = true;
        break;
      }
      if (!SendAll(fds[1 - i].fd, buf.data(), static_cast<size_t>(n))) {
        done = true;
        break;
      }
      (i == 0 ? bytes_up_ : bytes_down_) += n;
    }
    if (done) break;
  }
  // An abortive close (RST), as when a peer dies.
  linger lg{1, 0};
  setsockopt(client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  setsockopt(server, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(client);
  ::close(server);
}

}  // namespace ocicache::testing
