#include "pkg/ko/consult.h"

#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <ostream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/cmdline/args.h"
#include "pkg/ko/entry.h"
#include "pkg/ko/process.h"
#include "pkg/registry/client.h"

namespace ocicache::ko {

absl::StatusOr<WrapperStores> OpenWrapperStores(const stores::StoreConfig& config, const Warn& warn) {
  WrapperStores out;
  out.registry_requests = [] { return int64_t{0}; };
  if (!config.server.empty()) {
    auto set = stores::OpenStores(config);
    if (!set.ok()) return set.status();
    // The set's admin refers to its store: keep it, destroyed before the store
    // (keep_alive is declared after store in WrapperStores).
    out.store = std::move(set->store);
    out.keep_alive = std::make_shared<stores::StoreSet>(*std::move(set));
    return out;
  }
  std::unique_ptr<cache::Store> local;
  if (!config.dir.empty()) {
    stores::StoreConfig local_cfg = config;
    local_cfg.repo.clear();
    auto set = stores::OpenStores(local_cfg);
    if (!set.ok()) return set.status();
    local = std::move(set->store);
  }
  std::unique_ptr<cache::Store> remote;
  if (!config.repo.empty()) {
    // A lookup must not hold the build up: the lookup profile's short timeouts.
    auto r = stores::OpenRegistry(config,
                                  stores::RegistryClientOptions(config, stores::Profile::kLookup));
    if (!r.ok()) return r.status();
    cache::RegistryStore* registry = r->get();
    remote = *std::move(r);
    // The store is owned by out.store below, as long as this function.
    out.registry_requests = [registry] { return registry->client().request_count(); };
  }
  if (local && remote) {
    cache::TieredStoreOptions topts;
    topts.warn = warn;
    auto tiered = std::make_unique<cache::TieredStore>(std::move(local), std::move(remote), topts);
    cache::TieredStore* t = tiered.get();
    out.degraded = [t] { return t->degraded(); };
    out.store = std::move(tiered);
  } else if (local) {
    out.store = std::move(local);
  } else if (remote) {
    out.store = std::move(remote);
  } else {
    return absl::InvalidArgumentError("no store configured (OCICACHE_REPO or OCICACHE_DIR)");
  }
  return out;
}

LookupEvent Consult(const ConsultOptions& opts,
                    const std::function<absl::StatusOr<WrapperStores>()>& open, const Warn& warn) {
  absl::Time start = absl::Now();
  LookupEvent ev;
  ev.time = NowRfc3339();
  ev.dir = opts.dir;
  ev.build_id = opts.build_id;
  auto finish = [&](const char* result, std::string message = "") {
    ev.result = result;
    ev.message = std::move(message);
    ev.ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    return ev;
  };

  if (KocacheKnows(opts.dir, opts.build_id)) return finish("local");
  if (RecentMiss(opts.dir, opts.build_id, opts.recent_miss_seconds)) return finish("recent-miss");

  auto stores = open();
  if (!stores.ok()) {
    std::string m = absl::StrCat("cache not used: ", stores.status().message());
    warn(m);
    return finish("error", m);
  }
  cache::LookupOptions lookup;  // touch: a hit refreshes last-used (at most daily)
  auto e = stores->store->Lookup(opts.build_id, lookup);
  ev.registry_requests = stores->registry_requests();
  if (!e.ok()) {
    // Remember the miss (or the outage) for ko's second call; best effort.
    bool outage = cache::IsOutage(e.status()) || (stores->degraded && stores->degraded());
    if (absl::IsNotFound(e.status()) || outage) {
      WriteFileAtomic(opts.dir, kRecentMissFile, opts.build_id + "\n", 0644).IgnoreError();
    }
    if (absl::IsNotFound(e.status()) && !outage) return finish("miss");
    if (absl::IsNotFound(e.status())) return finish("error");  // the tiered store warned
    std::string m = absl::StrCat("lookup of ", opts.build_id, ": ", e.status().message());
    warn(m);
    return finish("error", m);
  }
  auto kv = e->annotations.find(kAnnotationKoVersion);
  std::string stored = kv == e->annotations.end() ? "" : kv->second;
  std::string current = opts.ko_version;
  if (current.empty() && opts.detect_ko_version) current = opts.detect_ko_version();
  if (!KoVersionCompatible(stored, current)) {
    return finish("miss", absl::StrCat("entry is from ko ", stored, ", this is ko ", current));
  }
  auto rec = RecordFromEntry(*e);
  if (!rec.ok()) {
    std::string m = std::string(rec.status().message());
    warn(m);
    return finish("error", m);
  }
  auto merged = MergeIntoDir(opts.dir, {*rec}, warn);
  if (!merged.ok()) {
    std::string m = absl::StrCat("writing ", opts.dir, ": ", merged.status().message());
    warn(m);
    return finish("error", m);
  }
  unlink(absl::StrCat(opts.dir, "/", kRecentMissFile).c_str());
  return finish("hit");
}

// Go build ids are four base64 hashes joined by '/': well under this.
constexpr size_t kMaxStdinId = 1024;

int LookupMain(const cmdline::CommandEnv& env, const std::vector<std::string>& args) {
  static const std::vector<cmdline::FlagSpec> kFlags = {
      {"kocache", true, false, "DIR", "ko's cache directory (default $KOCACHE)"},
      {"warn-stderr", false, false, "", "print a warning line on stderr (else only to the log)"},
      {"help", false, false, "", "show help"}};
  auto a = cmdline::Args::Parse(args, 1, kFlags, /*stop_at_positional=*/false);
  if (!a.ok() || a->positional().size() != 2) {
    *env.err << "ocicache: ko lookup: usage: ocicache ko lookup [--kocache DIR] [--warn-stderr] "
                "BINARY BUILDID (used by ocicache-go; BUILDID - reads it from stdin)\n";
    return a.ok() && a->GetBool("help") ? 0 : 2;
  }
  std::string kocache = a->Get("kocache");
  if (kocache.empty() && std::getenv("KOCACHE") != nullptr) kocache = std::getenv("KOCACHE");
  const std::string& binary = a->positional()[0];
  std::string dir = DirName(binary);

  std::vector<std::string> warnings;
  Warn warn = [&](absl::string_view m) {
    std::string s(m);
    absl::StrReplaceAll({{"\n", " "}, {"\r", " "}}, &s);
    warnings.push_back(std::move(s));
  };
  ConsultOptions opts;
  opts.dir = dir;
  opts.build_id = a->positional()[1];
  opts.detect_ko_version = DetectKoVersion;
  stores::StoreConfig config = env.config;
  std::function<absl::StatusOr<WrapperStores>()> open = [&] {
    return OpenWrapperStores(config, warn);
  };
  if (opts.build_id == "-") {
    // Started before go printed the build id: open the stores now, then read the
    // id (one line) from stdin. No id (end of input): nothing to look up.
    auto stores = std::make_shared<absl::StatusOr<WrapperStores>>(open());
    open = [stores] { return std::move(*stores); };
    std::string id;
    char c;
    while (id.size() <= kMaxStdinId && env.in->get(c) && c != '\n') id.push_back(c);
    if (!id.empty() && id.back() == '\r') id.pop_back();
    if (id.empty()) return 0;
    if (id.size() > kMaxStdinId || id.find_first_of(" \t") != std::string::npos) {
      *env.err << "ocicache: ko lookup: not a build id on stdin\n";
      return 2;
    }
    opts.build_id = id;
  }
  LookupEvent ev = Consult(opts, open, warn);
  // The event names the directory relative to KOCACHE.
  std::string bin_real = RealPath(kocache + "/bin");
  std::string dir_real = RealPath(dir);
  if (!bin_real.empty() && absl::StartsWith(dir_real, bin_real + "/")) {
    ev.dir = "bin/" + dir_real.substr(bin_real.size() + 1);
  }
  if (ev.message.empty() && !warnings.empty()) ev.message = absl::StrJoin(warnings, "; ");
  AppendLookupLog(LookupLogPath(kocache), ev);
  if (!warnings.empty() && a->GetBool("warn-stderr")) {
    *env.err << "ocicache-go: warning: " << absl::StrJoin(warnings, "; ") << "\n";
  }
  return 0;
}

}  // namespace ocicache::ko
