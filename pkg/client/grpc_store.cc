#include "pkg/client/grpc_store.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <grpc/support/log.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "pkg/oci/hasher.h"
#include "pkg/wire/convert.h"
#include "pkg/wire/status.h"

namespace ocicache::client {
namespace {

// A failed stream worth another attempt: gRPC's own errors (no connection, the
// connection broke, a deadline) carry no details; the server's do. A stream a
// proxy reset (haproxy, nginx: RST_STREAM CANCEL, or "Stream removed") counts
// too: callers check Broken only after ruling out a cancel of their own.
bool Broken(const grpc::Status& s) {
  if (!s.error_details().empty()) return false;
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
      return true;
    case grpc::StatusCode::UNKNOWN:
      return s.error_message() == "Stream removed";
    default:
      return false;
  }
}

// gRPC retries these on UNAVAILABLE (the server unreachable, or its backend
// down). All are idempotent; Delete is not retried (a retry after a lost
// answer would say NOT_FOUND), nor are the client-streaming Write and the
// admin streams.
std::string ServiceConfig() {
  std::vector<std::string> names;
  for (const char* m : {"Lookup", "BatchLookup", "Put", "List"}) {
    names.push_back(absl::StrCat(R"({"service":"ocicache.v1.Entries","method":")", m, R"("})"));
  }
  for (const char* m : {"Stat", "Read", "QueryWrite", "Mount"}) {
    names.push_back(absl::StrCat(R"({"service":"ocicache.v1.Blobs","method":")", m, R"("})"));
  }
  names.push_back(R"({"service":"ocicache.v1.Admin","method":"Stats"})");
  return absl::StrCat(R"({"methodConfig":[{"name":[)", absl::StrJoin(names, ","),
                      R"(],"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.1s",)",
                      R"("maxBackoff":"1s","backoffMultiplier":2,)",
                      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})");
}

// Keeps the bytes it is given, for the digest check of a full read.
class VerifyingSink {
 public:
  explicit VerifyingSink(bool verify) {
    if (verify) sha_ = std::make_unique<oci::PipelinedSha256>();
  }
  void Update(absl::string_view data) {
    if (sha_) sha_->Update(data);
  }
  // Ok, or DataLoss when the bytes are not `want`.
  absl::Status Check(const oci::Digest& want, absl::string_view target) {
    if (!sha_) return absl::OkStatus();
    int64_t n = sha_->size();
    oci::Digest got = sha_->Finish();
    if (got == want) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("blob ", want.str(), " from ocicached ", target,
                                            ": received ", n, " bytes with digest ", got.str()));
  }

 private:
  std::unique_ptr<oci::PipelinedSha256> sha_;
};

}  // namespace

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", path, " is not a PEM file"));
  }
  return pem;
}

// gRPC's words for a failed TLS handshake (BoringSSL's or OpenSSL's), in one
// line a user can act on; empty when `msg` is not about TLS.
std::string ExplainTls(absl::string_view msg) {
  std::string m = absl::AsciiStrToLower(msg);
  if (absl::StrContains(m, "certificate verify failed") ||
      absl::StrContains(m, "certificate_verify_failed")) {
    return "the server's TLS certificate is not trusted (give its CA with --server-ca-file or "
           "$OCICACHE_SERVER_CA)";
  }
  if (absl::StrContains(m, "certificate required") || absl::StrContains(m, "handshake failure")) {
    return "the server requires a client certificate (--server-cert-file and --server-key-file, "
           "or $OCICACHE_SERVER_CERT and $OCICACHE_SERVER_KEY)";
  }
  if (absl::StrContains(m, "unknown ca") || absl::StrContains(m, "bad certificate") ||
      absl::StrContains(m, "certificate unknown") || absl::StrContains(m, "decrypt error")) {
    return "the server refused our client certificate (it is not issued by the CA the server trusts)";
  }
  if (absl::StrContains(m, "wrong version number") || absl::StrContains(m, "packet length too long") ||
      absl::StrContains(m, "http request") || absl::StrContains(m, "record layer failure")) {
    return "the server does not speak TLS on this port (use HOST:PORT or grpc://, not grpcs://)";
  }
  if (absl::StrContains(m, "handshake")) {
    return absl::StrCat("TLS handshake failed: ", msg);
  }
  return "";
}

}  // namespace

Security SecurityOf(const DialOptions& opts) {
  if (!opts.tls) return Security::kPlaintext;
  return opts.cert_pem.empty() ? Security::kTls : Security::kMutualTls;
}

absl::Status FromServer(const grpc::Status& s, absl::string_view target, Security security,
                        bool server_spoke) {
  absl::Status out = wire::FromGrpc(s);
  // Errors made by gRPC itself (no connection, deadline) do not say where.
  if ((out.code() == absl::StatusCode::kUnavailable ||
       out.code() == absl::StatusCode::kDeadlineExceeded) &&
      s.error_details().empty()) {
    std::string tls = ExplainTls(out.message());
    if (!tls.empty()) {
      // Not temporary: retrying will not fix a certificate.
      return absl::FailedPreconditionError(absl::StrCat("ocicached ", target, ": ", tls));
    }
    // A server that drops the connection right after (or instead of) the
    // handshake: gRPC only says "Socket closed". (So does a connection that
    // breaks later, in the middle of a stream.)
    if (!server_spoke && absl::StrContains(out.message(), "Socket closed")) {
      switch (security) {
        case Security::kPlaintext:
          return absl::FailedPreconditionError(absl::StrCat(
              "ocicached ", target, " closed the plaintext connection: if it serves TLS, use "
              "grpcs://HOST:PORT (with --server-ca-file for a private CA)"));
        case Security::kTls:
          return absl::FailedPreconditionError(absl::StrCat(
              "ocicached ", target, " closed the TLS connection: it requires a client certificate "
              "(--server-cert-file and --server-key-file, or $OCICACHE_SERVER_CERT and "
              "$OCICACHE_SERVER_KEY)"));
        case Security::kMutualTls:
          return absl::FailedPreconditionError(absl::StrCat(
              "ocicached ", target, " closed the TLS connection: it did not accept the client "
              "certificate (not issued by the CA it trusts, or expired)"));
      }
    }
    absl::Status named(out.code(), absl::StrCat("ocicached ", target, ": ", out.message()));
    return named;
  }
  return out;
}

absl::StatusOr<ServerEndpoint> ResolveServer(absl::string_view server, const TlsFiles& files) {
  ServerEndpoint e;
  absl::string_view addr = server;
  bool explicit_plain = absl::ConsumePrefix(&addr, "grpc://");
  bool explicit_tls = !explicit_plain && absl::ConsumePrefix(&addr, "grpcs://");
  if (addr.empty() || absl::StrContains(addr, "://") || absl::StrContains(addr, "/") ||
      addr.rfind(':') == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server \"", server, "\" is not HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT"));
  }
  bool any_file = !files.ca_file.empty() || !files.cert_file.empty() || !files.key_file.empty();
  if (explicit_plain && any_file) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server \"", server, "\" is plaintext (grpc://) but TLS files are given: use grpcs://"));
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both --server-cert-file and --server-key-file");
  }
  e.address = std::string(addr);
  e.dial.tls = explicit_tls || any_file;
  if (!files.ca_file.empty()) {
    auto pem = ReadPem(files.ca_file, "--server-ca-file");
    if (!pem.ok()) return pem.status();
    e.dial.ca_pem = *std::move(pem);
  }
  if (!files.cert_file.empty()) {
    auto cert = ReadPem(files.cert_file, "--server-cert-file");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(files.key_file, "--server-key-file");
    if (!key.ok()) return key.status();
    e.dial.cert_pem = *std::move(cert);
    e.dial.key_pem = *std::move(key);
  }
  return e;
}

std::shared_ptr<grpc::Channel> Dial(const std::string& target, const DialOptions& opts) {
  static std::once_flag quiet;
  std::call_once(quiet, [] {
    const char* v = std::getenv("GRPC_VERBOSITY");
    if (v == nullptr || *v == '\0') gpr_set_log_function([](gpr_log_func_args*) {});
  });
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(opts.max_message_bytes);
  args.SetMaxSendMessageSize(opts.max_message_bytes);
  args.SetServiceConfigJSON(ServiceConfig());
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(opts.keepalive)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (opts.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = opts.ca_pem;
    ssl.pem_private_key = opts.key_pem;
    ssl.pem_cert_chain = opts.cert_pem;
    creds = grpc::SslCredentials(ssl);
  }
  // Reconnect to a restarted server within seconds (the default backoff grows to 2 min).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  return grpc::CreateCustomChannel(target, creds, args);
}

GrpcStore::GrpcStore(std::shared_ptr<grpc::Channel> channel, std::string target,
                     GrpcStoreOptions opts)
    : channel_(std::move(channel)),
      target_(std::move(target)),
      opts_(opts),
      entries_(v1::Entries::NewStub(channel_)),
      blobs_(v1::Blobs::NewStub(channel_)) {}

std::string GrpcStore::Describe() const { return absl::StrCat("ocicached ", target_); }

void GrpcStore::Prepare(grpc::ClientContext* ctx, bool deadline) const {
  if (deadline) ctx->set_deadline(absl::ToChronoTime(absl::Now() + opts_.timeout));
  if (!opts_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + opts_.token);
}

absl::Status GrpcStore::Convert(const grpc::Status& s, bool server_spoke) const {
  return FromServer(s, target_, opts_.security, server_spoke);
}

absl::StatusOr<int64_t> GrpcStore::StatBlob(const oci::Digest& digest) {
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/true);
  v1::StatRequest req;
  req.add_blobs()->set_digest(digest.str());
  v1::StatResponse resp;
  if (absl::Status s = Convert(blobs_->Stat(&ctx, req, &resp)); !s.ok()) return s;
  if (resp.present_size() == 1) return resp.present(0).size();
  return absl::NotFoundError(absl::StrCat("blob ", digest.str(), " not found"));
}

absl::Status GrpcStore::ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) {
  return Read(digest, offset, -1, sink);
}

absl::Status GrpcStore::ReadBlobRange(const oci::Digest& digest, int64_t offset, int64_t length,
                                      oci::ByteSink& sink) {
  if (offset < 0 || length < 0) {
    return absl::InvalidArgumentError("ReadBlobRange: a negative offset or length");
  }
  if (length == 0) return absl::OkStatus();
  return Read(digest, offset, length, sink);
}

absl::Status GrpcStore::Read(const oci::Digest& digest, int64_t offset, int64_t length,
                             oci::ByteSink& sink) {
  if (!digest.valid()) return absl::InvalidArgumentError("ReadBlob: an empty digest");
  // A range is not the whole blob: its digest cannot be checked here.
  VerifyingSink verify(offset == 0 && length < 0 && !sink.ChecksEveryByte());
  int64_t received = 0;
  absl::Status last;
  absl::Duration backoff = absl::Milliseconds(100);
  for (int attempt = 0; attempt < std::max(1, opts_.read_attempts); ++attempt) {
    if (attempt > 0) {
      // The stream broke after some chunks: wait for the server, go on after them.
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
      channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + opts_.reconnect_timeout));
    }
    grpc::ClientContext ctx;
    Prepare(&ctx, /*deadline=*/false);
    v1::ReadRequest req;
    req.set_digest(digest.str());
    req.set_read_offset(offset + received);
    if (length >= 0) req.set_read_limit(length - received);
    auto reader = blobs_->Read(&ctx, req);
    v1::ReadResponse msg;
    absl::Status sink_status;
    bool progressed = false;
    while (reader->Read(&msg)) {
      progressed = true;
      verify.Update(msg.data());
      received += static_cast<int64_t>(msg.data().size());
      sink_status = sink.Write(msg.data());
      if (!sink_status.ok()) {
        ctx.TryCancel();
        while (reader->Read(&msg)) {
        }
        break;
      }
    }
    grpc::Status rpc = reader->Finish();
    if (!sink_status.ok()) return sink_status;
    if (rpc.ok() && length >= 0) {
      if (received == length) return absl::OkStatus();
      return absl::OutOfRangeError(absl::StrCat("the blob ends ", length - received,
                                                " bytes before the range's end"));
    }
    if (rpc.ok()) return verify.Check(digest, target_);
    last = Convert(rpc, /*server_spoke=*/progressed);
    // Only a broken connection is worth another stream (gRPC itself retries
    // one that broke before the first chunk).
    if (!progressed || !Broken(rpc) || rpc.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return last;
    }
  }
  return last;
}

// The caller's source, with at least the last `keep` bytes read from it kept
// (in the pieces it returned them) so a write can continue from an earlier
// offset after a break.
class GrpcStore::Replay {
 public:
  Replay(oci::ByteSource& source, size_t keep) : source_(source), keep_(keep) {}

  // The bytes from the current position on.
  absl::StatusOr<size_t> Read(char* buf, size_t n) {
    if (pos_ < end_) {  // bytes read before, sent again
      int64_t at = start_;
      for (const std::string& piece : kept_) {
        int64_t piece_end = at + static_cast<int64_t>(piece.size());
        if (pos_ < piece_end) {
          size_t from = static_cast<size_t>(pos_ - at);
          size_t k = std::min(n, piece.size() - from);
          memcpy(buf, piece.data() + from, k);
          pos_ += static_cast<int64_t>(k);
          return k;
        }
        at = piece_end;
      }
    }
    auto r = source_.Read(buf, n);
    if (!r.ok() || *r == 0) return r;
    Keep(absl::string_view(buf, *r));
    pos_ += static_cast<int64_t>(*r);
    return r;
  }

  // Continues at `offset`: from the kept bytes, else by rewinding the source.
  absl::Status Seek(int64_t offset) {
    if (offset > end_) {
      return absl::InternalError(absl::StrCat("the server committed ", offset,
                                              " bytes but only ", end_, " were sent"));
    }
    if (offset >= start_) {
      pos_ = offset;
      return absl::OkStatus();
    }
    if (absl::Status s = source_.Rewind(); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot send the blob again from byte ", offset, ": only bytes from ", start_,
          " are kept and the source cannot rewind (", s.message(), ")"));
    }
    kept_.clear();
    kept_bytes_ = 0;
    start_ = end_ = pos_ = 0;
    std::string skip(64 << 10, '\0');
    while (pos_ < offset) {
      size_t want = std::min(skip.size(), static_cast<size_t>(offset - pos_));
      auto r = Read(skip.data(), want);
      if (!r.ok()) return r.status();
      if (*r == 0) return absl::DataLossError("the source is shorter after rewinding");
    }
    return absl::OkStatus();
  }

 // Reads ahead up to `limit` bytes, all kept; true if the source ended there.
  absl::StatusOr<bool> Prefetch(int64_t limit) {
    hold_ = true;
    std::string buf(1 << 20, '\0');
    bool ended = false;
    while (end_ < limit) {
      size_t want = std::min(buf.size(), static_cast<size_t>(limit - end_));
      auto r = source_.Read(buf.data(), want);
      if (!r.ok()) {
        hold_ = false;
        return r.status();
      }
      if (*r == 0) {
        ended = true;
        break;
      }
      Keep(absl::string_view(buf.data(), *r));
    }
    hold_ = false;
    return ended;
  }

  int64_t end() const { return end_; }

 private:
  void Keep(absl::string_view data) {
    end_ += static_cast<int64_t>(data.size());
    kept_.emplace_back(data);
    kept_bytes_ += data.size();
    if (hold_) return;
    // Drop whole pieces from the front while the rest still covers `keep`.
    while (!kept_.empty() && kept_bytes_ - kept_.front().size() >= keep_) {
      kept_bytes_ -= kept_.front().size();
      start_ += static_cast<int64_t>(kept_.front().size());
      kept_.pop_front();
    }
  }

  oci::ByteSource& source_;
  const size_t keep_;
  std::deque<std::string> kept_;  // bytes [start_, end_) of the blob
  size_t kept_bytes_ = 0;
  int64_t start_ = 0;
  int64_t end_ = 0;  // bytes read from the source
  int64_t pos_ = 0;  // the next byte to send
  bool hold_ = false;  // keep everything (Prefetch)
};

namespace {


std::string NewUploadId() {
  absl::BitGen gen;
  return absl::StrCat("grpcstore-", absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16),
                      absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16));
}

}  // namespace

absl::StatusOr<oci::Descriptor> GrpcStore::WriteBlob(const oci::Digest& expected, int64_t size,
                                                     oci::ByteSource& source) {
  bool resumable = opts_.resumable_min_bytes >= 0 &&
                   (size < 0 || size >= opts_.resumable_min_bytes) &&
                   !no_uploads_.load(std::memory_order_relaxed);
  Replay replay(source, opts_.replay_bytes);
  if (resumable && size < 0) {
    // Of unknown size: a blob that ends within the threshold is a small one
    // of known size, streamed straight into the store.
    auto ended = replay.Prefetch(opts_.resumable_min_bytes);
    if (!ended.ok()) return ended.status();
    if (*ended) {
      size = replay.end();
      resumable = false;
    }
  }
  std::string upload_id = resumable ? NewUploadId() : std::string();
  int64_t offset = 0;
  absl::Duration backoff = absl::Milliseconds(100);
  absl::Time aborted_since = absl::InfiniteFuture();
  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, opts_.write_attempts); ++attempt) {
    if (attempt > 0) {
      // Wait for the server, then ask where to go on from.
      absl::Time until = absl::Now() + opts_.reconnect_timeout;
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
      channel_->WaitForConnected(absl::ToChronoTime(until));
      offset = 0;
      if (!upload_id.empty()) {
        grpc::ClientContext ctx;
        Prepare(&ctx, /*deadline=*/false);
        ctx.set_deadline(absl::ToChronoTime(until));
        ctx.set_wait_for_ready(true);
        v1::QueryWriteRequest req;
        req.set_upload_id(upload_id);
        v1::QueryWriteResponse resp;
        grpc::Status q = blobs_->QueryWrite(&ctx, req, &resp);
        if (q.ok()) {
          offset = resp.committed_size();
        } else if (q.error_code() != grpc::StatusCode::NOT_FOUND) {
          return absl::Status(last.code(), absl::StrCat(last.message(), "; resuming failed: ",
                                                        Convert(q).message()));
        }
      }
      if (absl::Status s = replay.Seek(offset); !s.ok()) {
        return absl::Status(last.code(),
                            absl::StrCat(last.message(), "; cannot resume: ", s.message()));
      }
    }
    bool source_failed = false, progressed = false;
    grpc::Status rpc;
    auto d = WriteOnce(expected, size, upload_id, offset, replay, &source_failed, &progressed,
                       &rpc);
    if (d.ok() || source_failed) return d;
    if (!upload_id.empty() && rpc.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
        absl::StrContains(rpc.error_message(), "resumable uploads")) {
      // A server without upload staging: stream straight into its store.
      no_uploads_.store(true, std::memory_order_relaxed);
      upload_id.clear();
      if (absl::Status s = replay.Seek(0); !s.ok()) return d.status();
      --attempt;
      continue;
    }
    if (attempt > 0 && !upload_id.empty() && rpc.error_code() == grpc::StatusCode::ABORTED) {
      // A server that refuses a resume while it still runs the broken stream it
      // has not yet seen end (ocicached takes the upload over instead; older
      // servers said ABORTED): wait for it (with the backoff above, up to
      // reconnect_timeout in a row), without counting attempts.
      if (aborted_since == absl::InfiniteFuture()) aborted_since = absl::Now();
      if (absl::Now() - aborted_since >= opts_.reconnect_timeout) return d.status();
      --attempt;
      continue;
    }
    aborted_since = absl::InfiniteFuture();
    // Only a stream that got going and then broke is worth another: a server
    // that cannot be reached at all fails at once, as before.
    bool again = (Broken(rpc) && progressed) ||
                 (!upload_id.empty() && rpc.error_code() == grpc::StatusCode::ABORTED);
    if (!again) return d.status();
    last = d.status();
  }
  return last;
}

absl::StatusOr<oci::Descriptor> GrpcStore::WriteOnce(const oci::Digest& expected, int64_t size,
                                                     const std::string& upload_id, int64_t offset,
                                                     Replay& replay, bool* source_failed,
                                                     bool* progressed, grpc::Status* rpc) {
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/false);
  v1::WriteResponse resp;
  auto writer = blobs_->Write(&ctx, &resp);
  std::string buf(opts_.chunk_bytes, '\0');
  bool first = true;
  absl::Status source_status;
  // Bytes the transport took: past HTTP/2's initial 64 KiB window only once
  // the server granted more, so the server spoke HTTP/2.
  int64_t sent = 0;
  for (;;) {
    // Fill a whole chunk (sources such as pipes return less at a time).
    size_t n = 0;
    while (n < buf.size()) {
      auto r = replay.Read(buf.data() + n, buf.size() - n);
      if (!r.ok()) {
        source_status = r.status();
        break;
      }
      if (*r == 0) break;
      n += *r;
    }
    if (!source_status.ok()) {
      ctx.TryCancel();
      break;
    }
    v1::WriteRequest msg;
    if (first) {
      msg.set_upload_id(upload_id);
      msg.set_digest(expected.valid() ? expected.str() : std::string());
      msg.set_size(size >= 0 ? size : -1);
      first = false;
    }
    msg.set_write_offset(offset);
    msg.set_data(buf.data(), n);
    bool last = n < buf.size();
    msg.set_finish_write(last);
    // A failed send means the server has answered (early, or with an error)
    // or the connection broke.
    if (!writer->Write(msg)) break;
    *progressed = true;
    sent += static_cast<int64_t>(n);
    offset += static_cast<int64_t>(n);
    if (last) break;
  }
  writer->WritesDone();
  *rpc = writer->Finish();
  if (!source_status.ok()) {
    *source_failed = true;
    return source_status;
  }
  if (absl::Status s = Convert(*rpc, /*server_spoke=*/sent > 65535); !s.ok()) return s;
  if (!resp.complete()) {
    // A resumable upload the server kept but did not finish: treat as a break.
    *rpc = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the upload stream ended early");
    return absl::UnavailableError(absl::StrCat("ocicached ", target_, " paused the upload at ",
                                               resp.committed_size(), " bytes"));
  }
  auto d = oci::Digest::Parse(resp.digest());
  if (!d.ok()) {
    return absl::InternalError(
        absl::StrCat("ocicached ", target_, " answered a bad digest: ", d.status().message()));
  }
  oci::Descriptor out;
  out.media_type = oci::media::kOctetStream;
  out.digest = *d;
  out.size = resp.committed_size();
  return out;
}

absl::Status GrpcStore::MountBlob(const cache::Location& from) {
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/true);
  v1::MountRequest req;
  wire::LocationToProto(from, req.mutable_from());
  v1::MountResponse resp;
  return Convert(blobs_->Mount(&ctx, req, &resp));
}

absl::StatusOr<cache::Entry> GrpcStore::Lookup(absl::string_view key,
                                               const cache::LookupOptions& opts) {
  if (absl::Status s = wire::CheckUtf8(key, "key"); !s.ok()) return s;
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/true);
  v1::LookupRequest req;
  req.set_key(std::string(key));
  for (const auto& [k, v] : opts.require) {
    if (absl::Status s = wire::CheckUtf8(k, "a required annotation"); !s.ok()) return s;
    if (absl::Status s = wire::CheckUtf8(v, "a required annotation value"); !s.ok()) return s;
    (*req.mutable_require())[k] = v;
  }
  req.set_no_touch(!opts.touch);
  v1::Entry resp;
  if (absl::Status s = Convert(entries_->Lookup(&ctx, req, &resp)); !s.ok()) return s;
  auto e = wire::EntryFromProto(resp);
  if (!e.ok()) {
    return absl::DataLossError(
        absl::StrCat("ocicached ", target_, " sent a malformed entry: ", e.status().message()));
  }
  return e;
}

absl::Status GrpcStore::Put(const cache::Entry& entry) {
  if (absl::Status s = wire::CheckEntryUtf8(entry); !s.ok()) return s;
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/true);
  v1::PutRequest req;
  wire::EntryToProto(entry, req.mutable_entry());
  v1::PutResponse resp;
  return Convert(entries_->Put(&ctx, req, &resp));
}

absl::Status GrpcStore::Delete(absl::string_view key) {
  if (absl::Status s = wire::CheckUtf8(key, "key"); !s.ok()) return s;
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/true);
  v1::DeleteRequest req;
  req.set_key(std::string(key));
  v1::DeleteResponse resp;
  return Convert(entries_->Delete(&ctx, req, &resp));
}

absl::Status GrpcStore::List(const std::function<bool(const cache::EntryInfo&)>& fn) {
  grpc::ClientContext ctx;
  Prepare(&ctx, /*deadline=*/false);
  v1::ListRequest req;
  auto reader = entries_->List(&ctx, req);
  v1::ListResponse page;
  bool stopped = false;
  absl::Status bad;
  while (!stopped && reader->Read(&page)) {
    for (const auto& p : page.entries()) {
      auto info = wire::EntryInfoFromProto(p);
      if (!info.ok()) {
        bad = absl::DataLossError(absl::StrCat("ocicached ", target_,
                                               " sent a malformed listing: ", info.status().message()));
        stopped = true;
        break;
      }
      if (!fn(*info)) {
        stopped = true;
        break;
      }
    }
  }
  if (stopped) {
    ctx.TryCancel();
    while (reader->Read(&page)) {
    }
    reader->Finish();
    return bad;
  }
  return Convert(reader->Finish());
}

}  // namespace ocicache::client
