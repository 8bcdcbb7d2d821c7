// ocicached: the ocicache gRPC server. Flags are copied into
// server::DaemonOptions; everything else lives in pkg/server.
#include <algorithm>
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cmdline/args.h"
#include "pkg/stores/settings.h"
#include "pkg/stores/stores.h"
#include "pkg/server/daemon.h"

ABSL_FLAG(std::string, listen, ocicache::server::kDefaultListen,
          "HOST:PORT to serve on; port 0 picks a free one (printed as \"listening on HOST:PORT\")");
ABSL_FLAG(std::string, port_file, "", "also write the bound port to this file");
ABSL_FLAG(std::string, repo, "", "registry repository holding the cache ($OCICACHE_REPO)");
ABSL_FLAG(std::string, dir, "",
          "local tier directory ($OCICACHE_DIR, default ~/.cache/ocicache)");
ABSL_FLAG(bool, no_dir, false, "no local tier: serve the registry only");
ABSL_FLAG(int, shards, 0, "split the repository into N shard repositories (2-256)");
ABSL_FLAG(bool, insecure, false, "plain HTTP to the registry (automatic for loopback)");
ABSL_FLAG(bool, tls, false, "HTTPS even for loopback registries");
ABSL_FLAG(std::string, ca_file, "", "extra CA certificates (PEM) for the registry");
ABSL_FLAG(std::string, username, "", "registry user ($OCICACHE_USERNAME)");
ABSL_FLAG(bool, password_stdin, false, "read the registry password from stdin");
ABSL_FLAG(std::string, docker_config, "", "directory of docker's config.json");
ABSL_FLAG(double, registry_rate, 0,
          "at most N registry requests per second, evenly spaced, for all callers together "
          "(for registries that rate-limit or bill per request; 0: no limit)");
ABSL_FLAG(std::vector<std::string>, allowed_registries, {},
          "registries (HOST[:PORT], comma-separated; * for any) this server may contact on a "
          "caller's behalf besides --repo's: Blobs.Mount targets and sources, recorded "
          "locations. Default: none. --username/--password_stdin credentials go to --repo's "
          "registry only; others get docker's config.json entry for their host, if any");
ABSL_FLAG(std::string, upload_dir, "", "where resumable uploads are staged (default DIR/uploads)");
ABSL_FLAG(int, max_message_size, 16 << 20, "largest gRPC message, in bytes");
ABSL_FLAG(int, max_concurrent_streams, 100, "HTTP/2 streams per connection");
ABSL_FLAG(int, max_threads, 64, "threads serving calls (calls beyond get RESOURCE_EXHAUSTED)");
ABSL_FLAG(int64_t, max_blob_size, int64_t{64} << 30, "largest blob accepted, in bytes");
ABSL_FLAG(int, batch_parallelism, 16,
          "keys of one BatchLookup (or blobs of one Blobs.Stat) looked up at once (1-256)");
ABSL_FLAG(absl::Duration, registry_timeout, absl::Seconds(30),
          "the longest a call that moves no blob stream (lookup, put, stat, GetActionResult) "
          "waits on the registry; past it the registry counts as unavailable (a lookup misses). "
          "Every call also stops waiting when its caller cancels or its deadline passes, and "
          "when the registry fails a health probe. 0: no cap");
ABSL_FLAG(absl::Duration, health_interval, absl::Seconds(5), "how often the backend is probed");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "after SIGTERM/SIGINT, how long calls in flight may take");
ABSL_FLAG(bool, access_log, true, "one line per call on stderr");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT for Prometheus metrics (GET /metrics); unset: none");
ABSL_FLAG(absl::Duration, reapi_cache_ttl, absl::Minutes(10),
          "REAPI: how long a blob found present, or an action result found complete, is "
          "trusted without asking the registry again (0: always ask)");
ABSL_FLAG(int64_t, reapi_max_batch_size, 4 << 20,
          "REAPI: largest total of blob bytes in one BatchUpdateBlobs/BatchReadBlobs call "
          "(at most --max_message_size minus 64 KiB)");
ABSL_FLAG(int, reapi_max_open_instances, 64,
          "REAPI: at most this many non-empty instance names are open at once (each holds a "
          "store: a directory lock, registry connections, about 7 fds); one more closes the "
          "least recently used");
ABSL_FLAG(std::vector<std::string>, reapi_instances, {},
          "REAPI: the non-empty instance names served, comma-separated (others get "
          "PERMISSION_DENIED); unset: any valid name");
ABSL_FLAG(int, reapi_zstd_level, 3,
          "REAPI (gRPC and HTTP /cas/): CAS blobs of 1 MiB or more whose first 64 KiB compress "
          "by an eighth or more (object files, binaries, plain archives) are stored as one zstd "
          "frame at this level, found by their REAPI digest through a small mapping entry and "
          "decompressed on the way out; smaller or compressed ones are stored as they are "
          "(docs/FORMAT.md, \"Packed CAS blobs\"). 1-19; 0: store every blob as it is "
          "(packed blobs are still read)");
ABSL_FLAG(std::string, tokens_file, "",
          "bearer tokens, one \"TOKEN read|write\" per line; unset: no authentication");

ABSL_FLAG(std::string, http_listen, "default",
          "HOST:PORT of the HTTP cache endpoint (docs/HTTP.md: bazel-remote's /ac/ and /cas/, "
          "/cache/NS/KEY for ccache and Gradle, Turborepo's /v8/artifacts, Nx's /v1/cache, "
          "/status), with --tls_* as the gRPC port; empty: none. Default: --listen's host and "
          "its port plus one (127.0.0.1:9093), or a free port when --listen's port is 0 or the "
          "next one is taken (printed as \"http cache on URL\")");
ABSL_FLAG(std::string, http_port_file, "", "also write the HTTP endpoint's bound port to this file");
ABSL_FLAG(absl::Duration, http_read_timeout, absl::Seconds(5),
          "HTTP: the longest a read waits on the registry; past it the read is a miss (404), "
          "so a registry outage never fails a build");
ABSL_FLAG(int, http_threads, 2,
          "HTTP: threads of the event loop, which answers what the local tier answers; reads "
          "that wait on the registry, writes and body streams get threads of their own");
ABSL_FLAG(std::string, http_max_body_size, "16G",
          "HTTP: largest request body (K, M, G suffixes); larger ones get 413");
ABSL_FLAG(int, http_zstd_level, 3,
          "HTTP: objects over 16 KiB whose first 16 KiB compress by an eighth or more (plain "
          "tars, text, logs) are stored zstd-compressed at this level and decompressed on the "
          "way out; bodies already compressed (ccache's, Gradle's, Turborepo's and Nx's "
          "artifacts) are stored as sent (docs/FORMAT.md). 1-19; 0: store every object as sent");
ABSL_FLAG(int, recall_keys, 10000,
          "with both --dir and --repo: per namespace of HTTP objects (ccache's, a Gradle URL's, "
          "a Turborepo team, Nx) and per REAPI instance, the keys clients used are saved in the "
          "registry when the server stops, at most this many, and the next server fetches them "
          "all into its local tier on its first request there, so a fresh machine's build finds "
          "them local (docs/HTTP.md, \"Recall\"); 0: off");

ABSL_FLAG(std::string, health_listen, "",
          "HOST:PORT of an extra plaintext port serving only grpc.health.v1, for probes that "
          "cannot speak TLS (Kubernetes grpc probes); unset: none");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for the gRPC port; with --tls_key the port serves TLS only");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "mTLS: PEM CA certificates; clients must present a certificate they issued");

ABSL_FLAG(std::string, max_local_size, "",
          "bound on the local tier, in bytes with an optional K, M, G or T suffix (powers of "
          "1024; Ki/Mi/Gi/Ti as in Kubernetes work too), e.g. 20G: past it the least recently "
          "used entries are evicted down to 90%; each REAPI instance's layout is bounded by it "
          "on its own; unset: unbounded");
ABSL_FLAG(absl::Duration, local_evict_grace, absl::Minutes(2),
          "eviction keeps entries used and blobs written this recently (uploads in progress)");
ABSL_FLAG(bool, fill_in_background, true,
          "with --dir and --repo: answer a registry hit as soon as its blobs are known to "
          "exist and copy them into the local tier in the background (a read of a blob "
          "being copied waits for that copy); false: copy a hit's blobs before answering it. "
          "Background fills pay when clients download few outputs (Bazel "
          "--remote_download_minimal) and, with recall, cost nothing measurable when they "
          "download all (docs/SERVER.md)");

namespace {

// "1048576", "512K", "20G", "20Gi", "1.5G" -> bytes; -1 when malformed.
int64_t ParseSize(std::string s) {
  if (s.empty()) return -1;
  if (s.size() > 1 && (s.back() == 'B' || s.back() == 'b')) s.pop_back();
  if (s.size() > 1 && s.back() == 'i') s.pop_back();
  double unit = 1;
  switch (s.back()) {
    case 'K': case 'k': unit = 1024.0; break;
    case 'M': case 'm': unit = 1024.0 * 1024; break;
    case 'G': case 'g': unit = 1024.0 * 1024 * 1024; break;
    case 'T': case 't': unit = 1024.0 * 1024 * 1024 * 1024; break;
    default: break;
  }
  if (unit != 1) s.pop_back();
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || !(v > 0) || v * unit > 9e18) return -1;
  return static_cast<int64_t>(v * unit);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  // Debian builds Abseil without NDEBUG, so every Mutex acquisition would feed a
  // global lock-order graph (deadlock detection: a few percent of a warm lookup's
  // CPU, and one more global lock). The tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // --help lists this file's flags (absl's default looks for ocicached.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "cmd/ocicached/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "ocicached [flags]: serves an ocicache (a local directory and/or an OCI registry "
      "repository) over gRPC (api/ocicache/v1/cache.proto), with health and reflection.\n"
      "Also a Bazel remote cache (REAPI v2: --remote_cache=grpc://HOST:PORT; instance name "
      "a/b is repository REPO/a/b), and an HTTP cache endpoint for Bazel "
      "(--remote_cache=http://HOST:PORT+1), ccache, Gradle, Turborepo and Nx (docs/HTTP.md).\n"
      "Default: gRPC on 127.0.0.1:9092 and HTTP on 127.0.0.1:9093, serving ~/.cache/ocicache. "
      "Stops on SIGTERM or SIGINT.");
  // One spelling of a setting across binaries: --ca-file works as --ca_file.
  ocicache::cmdline::UnderscoreFlagNames(argc, argv);
  auto positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << "ocicached: unexpected argument \"" << positional[1] << "\" (see --help)\n";
    return 2;
  }
  auto cfg = ocicache::stores::ConfigFromEnv();
  if (!cfg.ok()) {
    std::cerr << "ocicached: " << cfg.status().message() << "\n";
    return 2;
  }
  ocicache::server::DaemonOptions o;
  o.store = *cfg;
  // The store flags (declared above for Abseil's parser and --help) map to the
  // configuration as the CLI's do (stores::StoreFlags): one mapping.
  for (const ocicache::stores::StoreFlag& f : ocicache::stores::StoreFlags()) {
    std::string name = f.name;
    std::replace(name.begin(), name.end(), '-', '_');
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr || flag->CurrentValue() == flag->DefaultValue()) continue;
    if (absl::Status s = ocicache::stores::ApplyStoreFlag(&o.store, name, flag->CurrentValue());
        !s.ok()) {
      std::cerr << "ocicached: " << s.message() << "\n";
      return 2;
    }
  }
  if (absl::Status s = ocicache::stores::FinishStoreConfig(&o.store); !s.ok()) {
    std::cerr << "ocicached: " << s.message() << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_password_stdin)) std::getline(std::cin, o.store.password);
  o.store.restrict_registries = true;
  o.store.allowed_registries = absl::GetFlag(FLAGS_allowed_registries);
  o.server.listen = absl::GetFlag(FLAGS_listen);
  o.server.upload_dir = absl::GetFlag(FLAGS_upload_dir);
  o.server.max_message_bytes = absl::GetFlag(FLAGS_max_message_size);
  o.server.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  o.server.max_threads = absl::GetFlag(FLAGS_max_threads);
  o.server.service.max_blob_bytes = absl::GetFlag(FLAGS_max_blob_size);
  o.server.service.batch_parallelism = absl::GetFlag(FLAGS_batch_parallelism);
  o.server.service.backend_timeout = absl::GetFlag(FLAGS_registry_timeout);
  if (o.server.service.backend_timeout < absl::ZeroDuration()) {
    std::cerr << "ocicached: --registry_timeout must not be negative\n";
    return 2;
  }
  if (o.server.service.batch_parallelism < 1 || o.server.service.batch_parallelism > 256) {
    std::cerr << "ocicached: --batch_parallelism takes 1 to 256, not "
              << o.server.service.batch_parallelism << "\n";
    return 2;
  }
  o.server.health_interval = absl::GetFlag(FLAGS_health_interval);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  o.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  o.access_log = absl::GetFlag(FLAGS_access_log);
  o.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  o.server.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.server.health_listen = absl::GetFlag(FLAGS_health_listen);
  {
    std::string http = absl::GetFlag(FLAGS_http_listen);
    if (http == "default") {
      // Next to the gRPC port; a free port when that is not fixed or taken.
      const std::string& grpc = o.server.listen;
      size_t colon = grpc.rfind(':');
      int port = 0;
      if (colon != std::string::npos && absl::SimpleAtoi(grpc.substr(colon + 1), &port) &&
          port > 0 && port < 65535) {
        http = absl::StrCat(grpc.substr(0, colon), ":", port + 1);
      } else if (colon != std::string::npos) {
        http = absl::StrCat(grpc.substr(0, colon), ":0");
      } else {
        http = "";
      }
      o.server.http.free_port_if_taken = true;
    }
    o.server.http.listen = http;
    o.http_port_file = absl::GetFlag(FLAGS_http_port_file);
    o.server.http_handler.read_timeout = absl::GetFlag(FLAGS_http_read_timeout);
    if (o.server.http_handler.read_timeout <= absl::ZeroDuration()) {
      std::cerr << "ocicached: --http_read_timeout must be positive\n";
      return 2;
    }
    o.server.http_handler.zstd_level = absl::GetFlag(FLAGS_http_zstd_level);
    if (o.server.http_handler.zstd_level < 0 || o.server.http_handler.zstd_level > 19) {
      std::cerr << "ocicached: --http_zstd_level takes 0 (off) to 19\n";
      return 2;
    }
    o.server.http.event_threads = absl::GetFlag(FLAGS_http_threads);
    if (o.server.http.event_threads < 1 || o.server.http.event_threads > 64) {
      std::cerr << "ocicached: --http_threads takes 1 to 64\n";
      return 2;
    }
    int64_t max_body = ParseSize(absl::GetFlag(FLAGS_http_max_body_size));
    if (max_body < 1024) {
      std::cerr << "ocicached: --http_max_body_size takes a size of at least 1K, such as 512M "
                   "or 16G, not \"" << absl::GetFlag(FLAGS_http_max_body_size) << "\"\n";
      return 2;
    }
    o.server.http.max_body_bytes = max_body;
    o.server.http_handler.max_body_bytes = max_body;
  }
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  if (std::string size = absl::GetFlag(FLAGS_max_local_size); !size.empty()) {
    o.store.max_local_bytes = ParseSize(size);
    if (o.store.max_local_bytes < 1 << 20) {
      std::cerr << "ocicached: --max_local_size takes a size of at least 1M, such as 512M or 20G, "
                   "not \"" << size << "\"\n";
      return 2;
    }
    if (o.store.dir.empty()) {
      std::cerr << "ocicached: --max_local_size bounds the local tier, but there is none (--no_dir)\n";
      return 2;
    }
  }
  o.store.local_evict_grace = absl::GetFlag(FLAGS_local_evict_grace);
  o.store.fill_in_background = absl::GetFlag(FLAGS_fill_in_background);
  if (o.store.local_evict_grace < absl::ZeroDuration()) {
    std::cerr << "ocicached: --local_evict_grace must not be negative\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_recall_keys) < 0) {
    std::cerr << "ocicached: --recall_keys must be 0 (off) or more\n";
    return 2;
  }
  o.server.recall_keys = static_cast<size_t>(absl::GetFlag(FLAGS_recall_keys));
  o.server.reapi_instances.exists_ttl = absl::GetFlag(FLAGS_reapi_cache_ttl);
  o.server.reapi_instances.complete_ttl = absl::GetFlag(FLAGS_reapi_cache_ttl);
  o.server.reapi_instances.max_open_instances = absl::GetFlag(FLAGS_reapi_max_open_instances);
  if (o.server.reapi_instances.max_open_instances < 1) {
    std::cerr << "ocicached: --reapi_max_open_instances must be at least 1\n";
    return 2;
  }
  o.server.reapi_instances.zstd_level = absl::GetFlag(FLAGS_reapi_zstd_level);
  if (o.server.reapi_instances.zstd_level < 0 || o.server.reapi_instances.zstd_level > 19) {
    std::cerr << "ocicached: --reapi_zstd_level takes 0 (off) to 19\n";
    return 2;
  }
  for (const std::string& name : absl::GetFlag(FLAGS_reapi_instances)) {
    if (name.empty()) continue;
    o.server.reapi_instances.allowed_instances.push_back(name);
  }
  int64_t batch = absl::GetFlag(FLAGS_reapi_max_batch_size);
  if (batch < 1024) {
    std::cerr << "ocicached: --reapi_max_batch_size must be at least 1024 bytes\n";
    return 2;
  }
  // A batch and its framing must fit in one message.
  batch = std::min<int64_t>(batch, o.server.max_message_bytes - (64 << 10));
  o.server.reapi.max_batch_total_size_bytes = batch;
  return ocicache::server::RunDaemon(o);
}
