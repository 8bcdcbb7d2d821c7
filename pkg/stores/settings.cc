#include "pkg/stores/settings.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ocicache::stores {
namespace {

absl::StatusOr<bool> Switch(absl::string_view name, absl::string_view value) {
  if (value == "true" || value.empty()) return true;
  if (value == "false") return false;
  return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
}

}  // namespace

const std::vector<StoreFlag>& StoreFlags() {
  static const auto* flags = new std::vector<StoreFlag>{
      {"repo", "REGISTRY/REPO", "registry repository holding the cache ($OCICACHE_REPO)",
       [](StoreConfig* c, absl::string_view v) {
         c->repo = std::string(v);
         return absl::OkStatus();
       }},
      {"dir", "DIR", "local tier directory ($OCICACHE_DIR, default ~/.cache/ocicache)",
       [](StoreConfig* c, absl::string_view v) {
         c->dir = std::string(v);
         return absl::OkStatus();
       }},
      {"no-dir", "", "no local tier: use the registry only",
       [](StoreConfig* c, absl::string_view v) {
         auto on = Switch("no-dir", v);
         if (!on.ok()) return on.status();
         c->no_dir = *on;
         return absl::OkStatus();
       }},
      {"shards", "N", "split the repository into N shard repositories (2-256)",
       [](StoreConfig* c, absl::string_view v) {
         int n = 0;
         if (!absl::SimpleAtoi(v, &n) || n < 0 || n > 256) {
           return absl::InvalidArgumentError("--shards takes a number from 1 to 256");
         }
         if (n != 0) c->shards = n;
         return absl::OkStatus();
       }},
      {"insecure", "", "plain HTTP to the registry (automatic for loopback)",
       [](StoreConfig* c, absl::string_view v) {
         auto on = Switch("insecure", v);
         if (!on.ok()) return on.status();
         c->insecure = c->insecure || *on;
         return absl::OkStatus();
       }},
      {"tls", "", "HTTPS even for loopback registries",
       [](StoreConfig* c, absl::string_view v) {
         auto on = Switch("tls", v);
         if (!on.ok()) return on.status();
         c->force_tls = c->force_tls || *on;
         return absl::OkStatus();
       }},
      {"ca-file", "FILE", "extra CA certificates (PEM) for the registry ($OCICACHE_CA_FILE)",
       [](StoreConfig* c, absl::string_view v) {
         c->ca_file = std::string(v);
         return absl::OkStatus();
       }},
      {"username", "USER",
       "registry user ($OCICACHE_USERNAME); with --password-stdin, for the --repo registry only",
       [](StoreConfig* c, absl::string_view v) {
         c->username = std::string(v);
         return absl::OkStatus();
       }},
      {"registry-rate", "N",
       "at most N registry requests per second, evenly spaced (for registries that "
       "rate-limit or bill per request; default: no limit)",
       [](StoreConfig* c, absl::string_view v) {
         double r = 0;
         if (!absl::SimpleAtod(v, &r) || !(r >= 0) || r > 1e6) {
           return absl::InvalidArgumentError(
               "--registry-rate takes requests per second, e.g. 20 or 0.5 (0: no limit)");
         }
         c->registry_rate = r;
         return absl::OkStatus();
       }},
      {"docker-config", "DIR", "directory of docker's config.json ($DOCKER_CONFIG)",
       [](StoreConfig* c, absl::string_view v) {
         c->docker_config = std::string(v);
         return absl::OkStatus();
       }},
  };
  return *flags;
}

absl::Status ApplyStoreFlag(StoreConfig* config, absl::string_view name, absl::string_view value) {
  std::string n(name);
  std::replace(n.begin(), n.end(), '_', '-');
  for (const StoreFlag& f : StoreFlags()) {
    if (f.name == n) return f.apply(config, value);
  }
  return absl::NotFoundError(absl::StrCat("--", name, " is not a store setting"));
}

absl::Status FinishStoreConfig(StoreConfig* config) {
  if (config->pacer == nullptr && (config->registry_rate > 0 || config->registry_budget > 0)) {
    config->pacer = std::make_shared<registry::RequestPacer>(
        registry::PacerOptions{config->registry_rate, config->registry_budget});
  }
  if (!config->no_dir) return absl::OkStatus();
  if (config->repo.empty()) {
    return absl::InvalidArgumentError("--no-dir needs --repo: there would be no store at all");
  }
  config->dir.clear();
  return absl::OkStatus();
}

}  // namespace ocicache::stores
