// linkproxy: the link model (link_proxy.h) as a process, for shell benchmarks.
//   linkproxy --target=HOST:PORT [--delay=10ms] [--mbit=200] [--buffer=4194304]
// Prints "127.0.0.1:PORT" on stdout, then forwards until SIGTERM or SIGINT,
// and prints the bytes carried up and down and the connections on stderr.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "test/harness/link_proxy.h"

ABSL_FLAG(std::string, target, "", "HOST:PORT to forward to");
ABSL_FLAG(absl::Duration, delay, absl::Milliseconds(10), "one-way delay (RTT is twice this)");
ABSL_FLAG(double, mbit, 200, "bandwidth per direction, shared by all connections (0: unlimited)");
ABSL_FLAG(int64_t, buffer, 4 << 20, "bytes buffered per connection and direction");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "linkproxy --target=HOST:PORT [--delay=10ms] [--mbit=200]: a loopback link model "
      "(delay, shared bandwidth cap, bounded buffering) in front of HOST:PORT");
  absl::ParseCommandLine(argc, argv);
  ocicache::harness::LinkOptions o;
  o.one_way_delay = absl::GetFlag(FLAGS_delay);
  o.bits_per_second = static_cast<int64_t>(absl::GetFlag(FLAGS_mbit) * 1e6);
  o.max_buffered_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_buffer));
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto p = ocicache::harness::LinkProxy::Start(absl::GetFlag(FLAGS_target), o);
  if (!p.ok()) {
    std::cerr << "linkproxy: " << p.status().message() << "\n";
    return 1;
  }
  std::printf("%s\n", (*p)->address().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  (*p)->Stop();
  std::cerr << "linkproxy " << Describe(o) << ": " << (*p)->bytes_up() << " B up, "
            << (*p)->bytes_down() << " B down, " << (*p)->connections() << " connections\n";
  return 0;
}
