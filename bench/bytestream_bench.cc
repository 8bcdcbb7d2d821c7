// ByteStream throughput (issue 5): a large blob written and read through the
// REAPI google.bytestream.ByteStream service of an in-process ocicached,
// against the native ocicache.v1 Blobs Write/Read of the same server in the
// same run, over a real docker-registry on loopback started here (with a
// local tier, as ocicached runs by default). Each write stores a different
// blob of the same size, so no write finishes early. Prints one table; the
// ratio is ByteStream time / native time (1.00 = as fast).
//
//   bazel run -c opt //bench:bytestream_bench -- [--blob_mib=1024] [--rounds=2] [--no_dir]
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "pkg/stores/stores.h"
#include "pkg/oci/digest.h"
#include "pkg/server/server.h"
#include "test/harness/registry.h"

ABSL_FLAG(int, blob_mib, 1024, "size of each blob in MiB");
ABSL_FLAG(bool, no_dir, false, "serve the registry only (no local tier)");
ABSL_FLAG(int, rounds, 2, "rounds (alternating which API goes first); best time of each kept");
ABSL_FLAG(bool, no_staging, false,
          "no upload staging directory: ByteStream writes are not resumable (shows what "
          "staging the copy for a resume costs)");
ABSL_FLAG(bool, bazel_chunks, true,
          "also write one blob through ByteStream in Bazel's 16 KiB chunks");

namespace ocicache {
namespace {

namespace bs = ::google::bytestream;

constexpr size_t kChunk = 1 << 20;

// A deterministic stream of pseudo-random bytes, distinct per seed.
class Generator {
 public:
  Generator(uint64_t seed, int64_t size) : state_(seed * 0x9E3779B97F4A7C15ull + 1), left_(size) {}
  // The next chunk of at most n bytes; empty at the end.
  const std::string& Next(size_t n) {
    size_t k = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), left_));
    buf_.resize(k);
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
      state_ ^= state_ << 13;
      state_ ^= state_ >> 7;
      state_ ^= state_ << 17;
      memcpy(&buf_[i], &state_, 8);
    }
    for (; i < k; ++i) buf_[i] = static_cast<char>(i);
    left_ -= static_cast<int64_t>(k);
    return buf_;
  }

 private:
  uint64_t state_;
  int64_t left_;
  std::string buf_;
};

oci::Digest DigestOf(uint64_t seed, int64_t size) {
  Generator g(seed, size);
  oci::Sha256 sha;
  for (;;) {
    const std::string& c = g.Next(kChunk);
    if (c.empty()) break;
    sha.Update(c);
  }
  return sha.Finish();
}

struct Timed {
  bool ok = false;
  double seconds = 0;
  std::string error;
};

Timed NativeWrite(v1::Blobs::Stub& stub, uint64_t seed, int64_t size, const oci::Digest& d) {
  absl::Time t0 = absl::Now();
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  auto w = stub.Write(&ctx, &resp);
  Generator g(seed, size);
  int64_t off = 0;
  bool first = true;
  for (;;) {
    const std::string& c = g.Next(kChunk);
    v1::WriteRequest req;
    if (first) {
      req.set_digest(d.str());
      req.set_size(size);
      first = false;
    }
    req.set_write_offset(off);
    req.set_data(c);
    off += static_cast<int64_t>(c.size());
    if (off == size) req.set_finish_write(true);
    if (!w->Write(req) || off == size) break;
  }
  w->WritesDone();
  grpc::Status s = w->Finish();
  Timed t{s.ok() && resp.committed_size() == size, absl::ToDoubleSeconds(absl::Now() - t0),
          s.error_message()};
  return t;
}

Timed ByteStreamWrite(bs::ByteStream::Stub& stub, uint64_t seed, int64_t size,
                      const oci::Digest& d, size_t chunk) {
  absl::Time t0 = absl::Now();
  grpc::ClientContext ctx;
  bs::WriteResponse resp;
  auto w = stub.Write(&ctx, &resp);
  Generator g(seed, size);
  int64_t off = 0;
  for (;;) {
    const std::string& c = g.Next(chunk);
    bs::WriteRequest req;
    if (off == 0) {
      req.set_resource_name(absl::StrCat("uploads/bench-", seed, "/blobs/", d.hex(), "/", size));
    }
    req.set_write_offset(off);
    req.set_data(c);
    off += static_cast<int64_t>(c.size());
    if (off == size) req.set_finish_write(true);
    if (!w->Write(req) || off == size) break;
  }
  w->WritesDone();
  grpc::Status s = w->Finish();
  return Timed{s.ok() && resp.committed_size() == size, absl::ToDoubleSeconds(absl::Now() - t0),
               s.error_message()};
}

Timed NativeRead(v1::Blobs::Stub& stub, const oci::Digest& d, int64_t size) {
  absl::Time t0 = absl::Now();
  grpc::ClientContext ctx;
  v1::ReadRequest req;
  req.set_digest(d.str());
  auto r = stub.Read(&ctx, req);
  v1::ReadResponse msg;
  int64_t n = 0;
  while (r->Read(&msg)) n += static_cast<int64_t>(msg.data().size());
  grpc::Status s = r->Finish();
  return Timed{s.ok() && n == size, absl::ToDoubleSeconds(absl::Now() - t0), s.error_message()};
}

Timed ByteStreamRead(bs::ByteStream::Stub& stub, const oci::Digest& d, int64_t size) {
  absl::Time t0 = absl::Now();
  grpc::ClientContext ctx;
  bs::ReadRequest req;
  req.set_resource_name(absl::StrCat("blobs/", d.hex(), "/", size));
  auto r = stub.Read(&ctx, req);
  bs::ReadResponse msg;
  int64_t n = 0;
  while (r->Read(&msg)) n += static_cast<int64_t>(msg.data().size());
  grpc::Status s = r->Finish();
  return Timed{s.ok() && n == size, absl::ToDoubleSeconds(absl::Now() - t0), s.error_message()};
}

std::string Cell(const Timed& t, int64_t size) {
  if (!t.ok) return "FAILED: " + t.error;
  return absl::StrFormat("%7.2fs %7.1f MiB/s", t.seconds, size / 1048576.0 / t.seconds);
}

int Main() {
  const int64_t size = int64_t{absl::GetFlag(FLAGS_blob_mib)} << 20;
  auto reg = harness::RegistryProcess::Start({});
  if (!reg.ok()) {
    std::cerr << "registry: " << reg.status() << "\n";
    return 1;
  }
  char tmpl[] = "/tmp/bytestream-bench-XXXXXX";
  std::string tmp = mkdtemp(tmpl);
  stores::StoreConfig config;
  config.repo = (*reg)->host() + "/bench/bytestream";
  if (!absl::GetFlag(FLAGS_no_dir)) config.dir = tmp + "/dir";
  auto stores = stores::OpenStores(config);
  if (!stores.ok()) {
    std::cerr << "stores: " << stores.status() << "\n";
    return 1;
  }
  server::ServerOptions opts;
  opts.listen = "127.0.0.1:0";
  if (!absl::GetFlag(FLAGS_no_staging)) opts.upload_dir = tmp + "/uploads";
  auto srv = server::CacheServer::Start(*std::move(stores), opts);
  if (!srv.ok()) {
    std::cerr << "server: " << srv.status() << "\n";
    return 1;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel =
      grpc::CreateCustomChannel((*srv)->address(), grpc::InsecureChannelCredentials(), args);
  auto blobs = v1::Blobs::NewStub(channel);
  auto bytestream = bs::ByteStream::NewStub(channel);

  std::cout << "ByteStream vs native ocicache.v1 Blobs, " << size / 1048576 << " MiB blobs, "
            << (absl::GetFlag(FLAGS_no_dir) ? "registry only" : "local tier + registry")
            << (absl::GetFlag(FLAGS_no_staging) ? ", no upload staging" : "")
            << ", docker-registry on loopback, best of " << absl::GetFlag(FLAGS_rounds)
            << " rounds\n";
  // Rounds alternate which API goes first; each keeps its best time, so a
  // burst of load on the shared machine does not decide the ratio.
  const int rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  Timed nw, bw, bw16, nr, br;
  auto best = [](Timed* acc, const Timed& t) {
    if (!t.ok) {
      if (acc->error.empty()) *acc = t;
      acc->ok = false;
      return;
    }
    if (acc->error.empty() && (!acc->ok || t.seconds < acc->seconds)) *acc = t;
  };
  // Every operation starts with the previous one's data written back
  // (sync, untimed), so none pays for another's dirty pages.
  auto settle = [] { ::sync(); };
  for (int r = 0; r < rounds; ++r) {
    uint64_t base = 10 * static_cast<uint64_t>(r + 1);
    oci::Digest da = DigestOf(base + 1, size), db = DigestOf(base + 2, size),
                dc = DigestOf(base + 3, size);
    bool native_first = r % 2 == 0;
    auto native_write = [&] {
      settle();
      best(&nw, NativeWrite(*blobs, base + 1, size, da));
    };
    auto native_read = [&] {
      settle();
      best(&nr, NativeRead(*blobs, da, size));
    };
    if (native_first) native_write();
    settle();
    best(&bw, ByteStreamWrite(*bytestream, base + 2, size, db, kChunk));
    if (!native_first) native_write();
    if (absl::GetFlag(FLAGS_bazel_chunks)) {
      settle();
      best(&bw16, ByteStreamWrite(*bytestream, base + 3, size, dc, 16384));
    }
    if (native_first) native_read();
    settle();
    best(&br, ByteStreamRead(*bytestream, db, size));
    if (!native_first) native_read();
  }

  auto ratio = [](const Timed& x, const Timed& base) {
    return x.ok && base.ok ? absl::StrFormat("%.2fx", x.seconds / base.seconds)
                           : std::string("-");
  };
  absl::PrintF("\n| %-28s | %-22s | %-22s | %-16s |\n", "operation", "native Blobs",
               "ByteStream", "ByteStream/native");
  absl::PrintF("|%s|%s|%s|%s|\n", std::string(30, '-'), std::string(24, '-'),
               std::string(24, '-'), std::string(18, '-'));
  absl::PrintF("| %-28s | %-22s | %-22s | %-16s |\n", "write, 1 MiB messages", Cell(nw, size),
               Cell(bw, size), ratio(bw, nw));
  if (absl::GetFlag(FLAGS_bazel_chunks)) {
    absl::PrintF("| %-28s | %-22s | %-22s | %-16s |\n", "write, 16 KiB msgs (Bazel)",
                 "(native: 1 MiB row)", Cell(bw16, size), ratio(bw16, nw));
  }
  absl::PrintF("| %-28s | %-22s | %-22s | %-16s |\n", "read", Cell(nr, size), Cell(br, size),
               ratio(br, nr));
  (*srv)->Shutdown(absl::Seconds(1));
  std::string rm = absl::StrCat("rm -rf '", tmp, "'");
  int rc = std::system(rm.c_str());
  (void)rc;
  bool all = nw.ok && bw.ok && nr.ok && br.ok && (!absl::GetFlag(FLAGS_bazel_chunks) || bw16.ok);
  return all ? 0 : 1;
}

}  // namespace
}  // namespace ocicache

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ocicache::Main();
}
