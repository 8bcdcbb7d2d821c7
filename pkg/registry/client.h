// A client for one OCI registry host, speaking the OCI distribution spec v1.1.
// One method per protocol step; callers never see HTTP. Thread-safe: each call
// takes a libcurl easy handle from a small pool (connections are not shared across
// threads: curl 7.88 cannot share them safely).
//
// Authentication: requests go out anonymously until a 401 names the challenge
// (Basic or Bearer); the request is then answered and sent once more, and the
// challenge kept for the client's lifetime, so an anonymous registry costs no extra
// request. Only a request whose streamed body cannot be sent twice is preceded, while
// nothing is known yet, by an anonymous GET /v2/ to learn the challenge. Bearer tokens
// are fetched per scope set (pull for reads, pull,push for writes, delete for
// DeleteManifest, plus pull on a mount's source) and cached until shortly before
// they expire. Credentials: ClientOptions.credentials, else docker's config (see
// credentials.h), looked up only when the registry asks for them.
//
// Retries: 408/429/500/502/503/504 and connection failures, up to
// RetryPolicy.max_attempts, with full-jitter exponential backoff or the server's
// Retry-After. Requests whose body cannot be replayed are not retried on their own;
// PutBlob restarts the whole upload instead when the source can Rewind.
//
// Layout: transport.h (one HTTP exchange over a curl handle pool), auth.h
// (challenges and tokens), retry.h (backoff), errors.h (statuses), client.cc (the
// protocol steps, and Send: the one place that applies auth and retries).
//
// Errors are absl::Status values with these codes:
//   NotFound            manifest, blob or repository unknown (404)
//   Unauthenticated     no or wrong credentials (401 after the auth flow)
//   PermissionDenied    authenticated but not allowed (403)
//   InvalidArgument     the registry rejected what we sent (400: MANIFEST_INVALID, ...)
//   ResourceExhausted   429 after all retries
//   Unavailable         connection failures, timeouts, 5xx after all retries; also, not
//                       temporary and never retried, TLS failures (certificate not
//                       trusted, a CA file that cannot be loaded, no TLS on the port) and
//                       plain HTTP sent to a TLS port (the 400 such servers answer)
//   DataLoss            a body whose size or digest is not what was asked for
//   Unimplemented       the registry does not support the operation (405, 501)
// and a payload (see RegistryErrorCode / IsTemporary) with the registry's error code.
#ifndef OCICACHE_PKG_REGISTRY_CLIENT_H_
#define OCICACHE_PKG_REGISTRY_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/types.h"
#include "pkg/registry/credentials.h"  // Credentials
#include "pkg/registry/pacer.h"

namespace ocicache::registry {

// "host[:port]/path/to/repo" split into its parts. The host must contain a '.' or
// ':' or be "localhost" (docker's rule); repository components are lowercase
// [a-z0-9]+ separated by '.', '_', '__' or '-'+, joined by '/'.
struct RepoRef {
  std::string registry;    // "127.0.0.1:5000", "ghcr.io"
  std::string repository;  // "team/cache"
  std::string str() const { return registry + "/" + repository; }
};
absl::StatusOr<RepoRef> ParseRepoRef(absl::string_view s);
bool IsValidRepositoryName(absl::string_view repo);
bool IsValidTag(absl::string_view tag);

struct RetryPolicy {
  int max_attempts = 5;  // total tries, including the first
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(10);
  // Retry-After values above this are capped.
  absl::Duration max_retry_after = absl::Seconds(30);
};

struct ClientOptions {
  // Plain HTTP. Always used for localhost, 127.0.0.0/8 and [::1] unless force_tls.
  bool insecure_http = false;
  // HTTPS even for loopback registries. Contradicts insecure_http (Create refuses both).
  bool force_tls = false;
  // Extra CA bundle (PEM), trusted besides the system's CA directory (/etc/ssl/certs);
  // it replaces the system bundle file. Must be readable when Create is called.
  // Certificates are always verified (chain and host name); there is no switch to skip it.
  std::string ca_file;
  // Explicit credentials (flags/env) win over docker's config.json (credentials.h).
  Credentials credentials;
  // Directory holding config.json; empty = $DOCKER_CONFIG or ~/.docker.
  std::string docker_config_dir;
  RetryPolicy retry;
  std::string user_agent = "ocicache/0.1";
  // Abort a transfer that moves fewer than 1 byte/s for this long.
  absl::Duration stall_timeout = absl::Seconds(60);
  absl::Duration connect_timeout = absl::Seconds(10);
  // PutBlob of unknown size (or without an expected digest) sends PATCH chunks of
  // this many bytes, buffered one at a time.
  int64_t chunk_size = 8 << 20;
  // Where the registry's challenge and the Bearer tokens fetched are kept for
  // the next process of this user (auth_cache.h; one 0600 file per registry):
  // a short-lived process then sends its first request with a token instead of
  // collecting a 401 and fetching one. Empty: nothing kept (servers, tests).
  std::string auth_cache_dir;
  // HTTP/1.1 unless set (curl 7.88's HTTP/2 has known bugs).
  bool http2 = false;
  // Rate and budget of requests, shared by the clients that hold it (pacer.h);
  // null: unlimited.
  std::shared_ptr<RequestPacer> pacer;
};

// Where a manifest came from, and its bytes.
struct ManifestResponse {
  std::string bytes;
  std::string media_type;
  oci::Digest digest;  // of bytes, checked against Docker-Content-Digest if present
};

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(std::string registry,
                                                        ClientOptions opts = {});
  ~Client();

  const std::string& registry() const;
  // "http://host:port" or "https://host".
  std::string base_url() const;

  // GET /v2/: checks reachability and credentials (Unauthenticated when rejected).
  absl::Status Ping();

  // Manifests. `reference` is a tag or a digest string. Accept lists the OCI and
  // Docker manifest and index types.
  absl::StatusOr<ManifestResponse> GetManifest(absl::string_view repo,
                                               absl::string_view reference);
  // HEAD: digest, size and media type, without the body.
  absl::StatusOr<oci::Descriptor> HeadManifest(absl::string_view repo,
                                               absl::string_view reference);
  // PUT with Content-Type = media_type. Returns the digest of `bytes`.
  absl::StatusOr<oci::Digest> PutManifest(absl::string_view repo, absl::string_view reference,
                                          absl::string_view bytes,
                                          absl::string_view media_type = oci::media::kImageManifest);
  // DELETE by digest (removes every tag pointing at it on distribution).
  absl::Status DeleteManifest(absl::string_view repo, const oci::Digest& digest);
  // Every tag, following Link: rel="next". An unknown repository is NotFound.
  absl::StatusOr<std::vector<std::string>> ListTags(absl::string_view repo);

  // Blobs. HEAD: the size, NotFound if absent.
  absl::StatusOr<int64_t> StatBlob(absl::string_view repo, const oci::Digest& digest);
  // GET streamed into sink from `offset` (Range request when offset > 0). When
  // offset is 0 the whole body is hashed and a size or digest mismatch is DataLoss
  // (the sink has then received bad bytes: the caller discards them). expected_size
  // -1 means unknown. Interrupted transfers are resumed with Range on retry.
  // With `length` >= 0, exactly the bytes [offset, offset + length) (Range
  // bytes=X-Y; not checked against the digest, which covers the whole blob).
  absl::Status GetBlob(absl::string_view repo, const oci::Digest& digest, int64_t expected_size,
                       oci::ByteSink& sink, int64_t offset = 0, int64_t length = -1);
  // Upload: POST an empty session, then a streamed PUT with ?digest= (size known),
  // or PATCH chunks then PUT (size -1). If `expected` is valid it is the digest the
  // bytes must have (a mismatch is InvalidArgument and nothing is committed);
  // otherwise the digest is computed while streaming. Returns digest and size.
  // Never holds the blob in memory. Retries only when the source can Rewind.
  absl::StatusOr<oci::Descriptor> PutBlob(absl::string_view repo, const oci::Digest& expected,
                                          int64_t size, oci::ByteSource& source);
  // Cross-repository mount (POST ?mount=&from=). True when the registry mounted it
  // (201); false when it did not (202: the opened session is cancelled).
  absl::StatusOr<bool> MountBlob(absl::string_view repo, const oci::Digest& digest,
                                 absl::string_view from_repo);

  // HTTP requests sent so far (including auth and retries), for benchmarks.
  int64_t request_count() const;
  // Bearer tokens fetched from the token realm so far (cached per scope set).
  int64_t token_count() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The registry's error code ("MANIFEST_UNKNOWN", "DIGEST_INVALID", ...) carried
// by a status from this client, or "" if none.
std::string RegistryErrorCode(const absl::Status& s);
// Whether retrying later may succeed (connection failure, 408/429/5xx).
bool IsTemporary(const absl::Status& s);

}  // namespace ocicache::registry

#endif  // OCICACHE_PKG_REGISTRY_CLIENT_H_
