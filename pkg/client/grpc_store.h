// The ocicache.v1 API from the client side: GrpcStore is a cache::Store whose
// every call is an RPC to ocicached, so front ends (the CLI with --server, the
// GOCACHEPROG helper, ko) use a server exactly like a local directory or a
// registry; the Store conformance suite runs through it. GrpcAdmin is the
// admin::Admin (gc, sync) of a server. Statuses come back through the one
// converter (pkg/wire/status.h), payloads included.
//
// Blobs stream in chunks (1 MiB): WriteBlob reads the ByteSource as it sends,
// ReadBlob hands each chunk to the sink as it arrives and, from offset 0,
// verifies the digest of what arrived (DataLoss on mismatch: discard it).
//
// Writes survive a broken connection. Blobs of at least resumable_min_bytes
// (and of unknown size that turn out longer: up to that many bytes are read
// ahead) are sent as resumable uploads (an upload_id the server
// stages): when a stream that got going breaks (UNAVAILABLE or
// DEADLINE_EXCEEDED from gRPC itself, not from the server's backend; a server
// that cannot be reached at all fails at once), WriteBlob waits for the server, asks
// QueryWrite for the committed size and continues from there, at most
// write_attempts times (a resume a server refuses with ABORTED because it still
// runs the broken stream, as servers that do not take uploads over do, is retried
// with backoff for up to reconnect_timeout, and not counted). Smaller blobs
// stream straight into the store and are sent again from the start. The bytes to send again come from the last
// replay_bytes kept in memory, else from source.Rewind(); a source that can do
// neither ends the write with the original error. A read that breaks goes on
// from the bytes received (the digest check still covers the whole blob).
// Unary calls have a deadline (GrpcStoreOptions::timeout) and are retried by
// gRPC on UNAVAILABLE (except Delete); streams have no deadline, and keepalive
// pings notice a dead connection.
#ifndef OCICACHE_PKG_CLIENT_GRPC_STORE_H_
#define OCICACHE_PKG_CLIENT_GRPC_STORE_H_

#include <atomic>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/ocicache/v1/cache.grpc.pb.h"
#include "pkg/admin/admin.h"
#include "pkg/cache/store.h"

namespace ocicache::client {

struct DialOptions {
  // Messages larger than this are refused (both directions).
  int max_message_bytes = 16 << 20;
  // Keepalive ping interval on idle connections with calls in flight.
  absl::Duration keepalive = absl::Seconds(60);
  // TLS: the server's certificate must chain to ca_pem (empty: gRPC's default
  // roots) and name the host dialled. With cert_pem and key_pem the client
  // presents that certificate (mTLS). Off: plaintext.
  bool tls = false;
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

// A channel to "HOST:PORT", plaintext or TLS as `opts` say, with the retry
// policy described above. gRPC's own log lines (e.g. handshake failures) are
// dropped unless $GRPC_VERBOSITY is set: FromServer explains them in one line.
std::shared_ptr<grpc::Channel> Dial(const std::string& target, const DialOptions& opts = {});

// How a channel was dialled, so that connection errors can be explained.
enum class Security { kPlaintext, kTls, kMutualTls };
Security SecurityOf(const DialOptions& opts);

// PEM files for TLS to a server (the CLI's --server-ca-file, --server-cert-file,
// --server-key-file).
struct TlsFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct ServerEndpoint {
  std::string address;  // HOST:PORT, for Dial
  DialOptions dial;     // tls and the PEM contents filled in
};

// What a --server value means: "HOST:PORT" or "grpc://HOST:PORT" is plaintext,
// "grpcs://HOST:PORT" is TLS; so is "HOST:PORT" when a TLS file is given
// (with "grpc://" that is an error). Reads the files; InvalidArgument with one
// clear line for a bad value, a missing file, or a certificate without its key.
absl::StatusOr<ServerEndpoint> ResolveServer(absl::string_view server, const TlsFiles& files);

struct GrpcStoreOptions {
  size_t chunk_bytes = 1 << 20;            // WriteBlob message size
  absl::Duration timeout = absl::Minutes(2);  // per unary call
  // Sent as "authorization: Bearer TOKEN" when not empty.
  std::string token;
  // How the channel was dialled (for error messages).
  Security security = Security::kPlaintext;
  // Blobs of at least this size (and of unknown size) are resumable uploads;
  // negative: never (every write streams straight into the store).
  int64_t resumable_min_bytes = 16 << 20;
  // Streams per WriteBlob when they break (1: no retry).
  int write_attempts = 5;
  // Streams per ReadBlob: one that breaks is continued after the bytes received.
  int read_attempts = 5;
  // Bytes most recently sent kept in memory to send again after a break.
  size_t replay_bytes = 16 << 20;
  // How long a retry waits for the server to be reachable again.
  absl::Duration reconnect_timeout = absl::Seconds(30);
};

class GrpcStore : public cache::Store {
 public:
  // `target` is only for Describe() and messages.
  GrpcStore(std::shared_ptr<grpc::Channel> channel, std::string target,
            GrpcStoreOptions opts = {});

  // "ocicached HOST:PORT".
  std::string Describe() const override;

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) override;
  absl::Status ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) override;
  // One Read with read_limit.
  absl::Status ReadBlobRange(const oci::Digest& digest, int64_t offset, int64_t length,
                             oci::ByteSink& sink) override;
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override;
  absl::Status MountBlob(const cache::Location& from) override;

  absl::StatusOr<cache::Entry> Lookup(absl::string_view key,
                                      const cache::LookupOptions& opts) override;
  absl::Status Put(const cache::Entry& entry) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status List(const std::function<bool(const cache::EntryInfo&)>& fn) override;

 private:
  // ReadBlob (length -1: to the end, digest checked from offset 0) and ReadBlobRange.
  absl::Status Read(const oci::Digest& digest, int64_t offset, int64_t length,
                    oci::ByteSink& sink);
  // Adds the token, and with a deadline the unary timeout.
  void Prepare(grpc::ClientContext* ctx, bool deadline) const;
  absl::Status Convert(const grpc::Status& s, bool server_spoke = false) const;
  class Replay;
  // One Write stream from `offset`; upload_id empty: not resumable.
  absl::StatusOr<oci::Descriptor> WriteOnce(const oci::Digest& expected, int64_t size,
                                            const std::string& upload_id, int64_t offset,
                                            Replay& replay, bool* source_failed,
                                            bool* progressed, grpc::Status* rpc);

  std::shared_ptr<grpc::Channel> channel_;
  std::string target_;
  GrpcStoreOptions opts_;
  std::unique_ptr<v1::Entries::Stub> entries_;
  std::unique_ptr<v1::Blobs::Stub> blobs_;
  std::atomic<bool> no_uploads_{false};  // the server keeps no resumable uploads
};

// Garbage collection and sync run by the server, with its progress streamed back.
class GrpcAdmin : public admin::Admin {
 public:
  GrpcAdmin(std::shared_ptr<grpc::Channel> channel, std::string target, std::string token = "",
            Security security = Security::kPlaintext);

  absl::StatusOr<admin::GcResult> CollectGarbage(const admin::GcRequest& req,
                                                 const admin::ProgressFn& progress) override;
  absl::StatusOr<admin::SyncResult> Sync(const admin::SyncRequest& req,
                                         const admin::ProgressFn& progress) override;
  // The server's counters.
  absl::StatusOr<v1::StatsResponse> Stats();
  // Stats() as a StatusReport.
  absl::StatusOr<admin::StatusReport> Status() override;

 private:
  void Prepare(grpc::ClientContext* ctx) const;
  std::string target_;
  std::string token_;
  Security security_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

// A client status for `s` from the server at `target` (wire::FromGrpc, with
// the target named when the server could not be reached, and TLS handshake
// failures said plainly: an untrusted server certificate, a missing or refused
// client certificate, plaintext against a TLS port). `server_spoke`: the call
// already got past the handshake (the server sent data or granted flow-control
// window), so a connection closed now is a break (UNAVAILABLE), never a TLS
// mismatch.
absl::Status FromServer(const grpc::Status& s, absl::string_view target,
                        Security security = Security::kPlaintext, bool server_spoke = false);

}  // namespace ocicache::client

#endif  // OCICACHE_PKG_CLIENT_GRPC_STORE_H_
