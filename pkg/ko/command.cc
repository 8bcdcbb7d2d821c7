#include "pkg/ko/command.h"

#include <cstdlib>
#include <map>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pkg/cmdline/args.h"
#include "pkg/ko/consult.h"
#include "pkg/ko/entry.h"
#include "pkg/ko/lookup_log.h"
#include "pkg/ko/process.h"
#include "pkg/ko/sync.h"

namespace ocicache::ko {

const char kUsage[] = R"(Usage: ocicache [global flags] ko save|restore [flags]

Bridges ko's KOCACHE ($KOCACHE/bin/<import path>/<os>/<arch>[/<variant>]/
buildid-to-diffid and diffid-to-descriptor) and the cache: one entry per Go
build id, holding the diffid and ko's layer descriptor byte for byte.

  save      after `ko build`: store every complete build id the cache lacks
  restore   before `ko build`: write cached entries into KOCACHE's files

With ocicache-go as KO_GO_PATH, ko's own `go tool buildid` lookups consult the
cache binary by binary (see `ocicache-go --ocicache-help`); save then also
reports those lookups (hits and misses per binary).

Run 'ocicache ko save --help' or 'ocicache ko restore --help' for their flags.
(`ocicache ko lookup` is ocicache-go's internal helper.)
The store comes from the global flags or OCICACHE_REPO / OCICACHE_DIR.
Exit codes: 0 done, 2 usage, 3 some entries could not be read or written.
)";

namespace {

using cmdline::Args;
using cmdline::FlagSpec;
using json = nlohmann::ordered_json;

const FlagSpec kKocache{"kocache", true, false, "DIR", "ko's cache directory (default $KOCACHE)"};
const FlagSpec kJsonFlag{"json", false, false, "", "print the counts as JSON"};
const FlagSpec kHelpFlag{"help", false, false, "", "show help"};

const std::vector<FlagSpec>& SaveFlags() {
  static const auto* f = new std::vector<FlagSpec>{kKocache, kJsonFlag, kHelpFlag};
  return *f;
}

const std::vector<FlagSpec>& RestoreFlags() {
  static const auto* f = new std::vector<FlagSpec>{
      kKocache,
      {"import-path", true, true, "P", "only this import path (repeatable)"},
      {"platform", true, true, "OS/ARCH[/VARIANT]", "only this platform (repeatable)"},
      {"max", true, false, "N", "at most the N newest entries (after the filters)"},
      kJsonFlag,
      kHelpFlag};
  return *f;
}

constexpr char kSaveHelp[] =
    "Usage: ocicache [global flags] ko save [--kocache DIR] [--json]\n\n"
    "Stores an entry for every build id in KOCACHE's buildid-to-diffid files whose\n"
    "diffid has a descriptor, in each tier (directory, registry) that lacks it.\n"
    "Idempotent; several jobs may save the same KOCACHE at once. The import path\n"
    "and platform come from the directory path. Files that are not valid JSON are\n"
    "reported and skipped (ko rewrites them on its next build). Also reports and\n"
    "clears ocicache-go's lookup log (KOCACHE/ocicache-go.log).\n\nFlags:\n";

constexpr char kRestoreHelp[] =
    "Usage: ocicache [global flags] ko restore [--kocache DIR] [--import-path P]...\n"
    "                                          [--platform P]... [--max N] [--json]\n\n"
    "Writes ko entries from the cache (newest first) into KOCACHE's files, creating\n"
    "directories and merging with what is there (existing build ids are kept).\n"
    "Entries saved by another known ko version are skipped: ko could not rebuild\n"
    "their layer byte for byte if the target registry lacks it.\n\nFlags:\n";

std::string Kocache(const Args& a) {
  if (a.Has("kocache")) return a.Get("kocache");
  const char* k = std::getenv("KOCACHE");
  return k != nullptr ? k : "";
}

int UsageError(const cmdline::CommandEnv& env, absl::string_view msg) {
  *env.err << "ocicache: ko: " << msg << " (see 'ocicache ko --help')\n";
  return 2;
}

int StoreError(const cmdline::CommandEnv& env, const absl::Status& s) {
  *env.err << "ocicache: error: " << s.message() << "\n";
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 3;
}

// Opens the configured stores; on failure reports it and returns the exit code.
int OpenOrReport(const cmdline::CommandEnv& env, stores::StoreSet* set) {
  auto s = stores::OpenStores(env.config);
  if (!s.ok()) return StoreError(env, s.status());
  *set = *std::move(s);
  return 0;
}

Warn Warner(const cmdline::CommandEnv& env) {
  return [&env](absl::string_view msg) { *env.err << "ocicache: warning: " << msg << "\n"; };
}

int RunSave(const cmdline::CommandEnv& env, const Args& a, bool as_json) {
  std::string kocache = Kocache(a);
  if (kocache.empty()) return UsageError(env, "save needs --kocache DIR or $KOCACHE");
  stores::StoreSet set;
  if (int rc = OpenOrReport(env, &set); rc != 0) return rc;
  SaveOptions opts;
  opts.kocache = kocache;
  opts.tools.ko = DetectKoVersion();
  std::string go;
  if (const char* g = std::getenv("OCICACHE_GO"); g != nullptr && *g != '\0') {
    go = FindInPath(g);
  } else {
    go = FindInPath("go");
  }
  opts.tools.go = DetectGoVersion(go);
  opts.warn = Warner(env);
  cache::Store* local = set.tiers.local;
  cache::Store* remote = set.tiers.remote;
  // An ocicached server (or any single store the set does not split into tiers).
  if (local == nullptr && remote == nullptr) remote = set.store.get();
  auto st = Save(local, remote, opts);
  if (!st.ok()) return StoreError(env, st.status());

  std::vector<LookupEvent> events = ConsumeLookupLog(LookupLogPath(kocache));
  std::map<std::string, int> by_result;
  for (const auto& ev : events) ++by_result[ev.result];

  if (as_json) {
    json j;
    j["dirs"] = st->dirs;
    j["saved"] = st->saved;
    j["present"] = st->present;
    j["incomplete"] = st->incomplete;
    j["invalidFiles"] = st->invalid_files;
    j["errors"] = st->errors;
    j["registryUnavailable"] = st->registry_unavailable;
    json lookups = json::array();
    for (const auto& ev : events) {
      json l;
      l["dir"] = ev.dir;
      l["buildid"] = ev.build_id;
      l["result"] = ev.result;
      l["registryRequests"] = ev.registry_requests;
      l["ms"] = ev.ms;
      if (!ev.message.empty()) l["message"] = ev.message;
      lookups.push_back(std::move(l));
    }
    j["lookups"] = std::move(lookups);
    *env.out << j.dump(2) << "\n";
  } else if (!env.quiet) {
    *env.out << "ko save: " << st->saved << " saved, " << st->present << " already present, "
             << st->incomplete << " skipped incomplete (" << st->dirs << " directories)";
    if (st->invalid_files > 0) *env.out << ", " << st->invalid_files << " invalid files skipped";
    if (st->errors > 0) *env.out << ", " << st->errors << " errors";
    if (st->registry_unavailable) *env.out << "; registry unavailable: local tier only";
    *env.out << "\n";
    if (!events.empty()) {
      *env.out << "ocicache-go lookups: " << by_result["hit"] << " hits, " << by_result["miss"]
               << " misses, " << by_result["local"] << " already in KOCACHE, "
               << by_result["recent-miss"] << " repeated misses, " << by_result["error"] << " errors\n";
      for (const auto& ev : events) {
        if (ev.result != "miss" && ev.result != "error") continue;
        *env.out << "  " << ev.result << ": " << ev.dir << " " << ev.build_id;
        if (!ev.message.empty()) *env.out << " (" << ev.message << ")";
        *env.out << "\n";
      }
    }
  }
  return st->errors > 0 ? 3 : 0;
}

int RunRestore(const cmdline::CommandEnv& env, const Args& a, bool as_json) {
  std::string kocache = Kocache(a);
  if (kocache.empty()) return UsageError(env, "restore needs --kocache DIR or $KOCACHE");
  RestoreOptions opts;
  opts.kocache = kocache;
  opts.import_paths = a.GetAll("import-path");
  opts.platforms = a.GetAll("platform");
  if (a.Has("max") && (!absl::SimpleAtoi(a.Get("max"), &opts.max) || opts.max < 1)) {
    return UsageError(env, "--max takes a positive number");
  }
  stores::StoreSet set;
  if (int rc = OpenOrReport(env, &set); rc != 0) return rc;
  opts.ko_version = DetectKoVersion();
  opts.warn = Warner(env);
  auto st = Restore(*set.store, opts);
  if (!st.ok()) return StoreError(env, st.status());
  if (as_json) {
    json j;
    j["listed"] = st->listed;
    j["selected"] = st->selected;
    j["restored"] = st->restored;
    j["present"] = st->present;
    j["skipped"] = st->skipped;
    j["dirs"] = st->dirs;
    j["errors"] = st->errors;
    *env.out << j.dump(2) << "\n";
  } else if (!env.quiet) {
    *env.out << "ko restore: " << st->restored << " restored into " << st->dirs << " directories, "
             << st->present << " already present, " << st->skipped << " skipped ("
             << st->listed << " ko entries, " << st->selected << " selected)";
    if (st->errors > 0) *env.out << ", " << st->errors << " errors";
    *env.out << "\n";
  }
  return st->errors > 0 ? 3 : 0;
}

}  // namespace

int Main(const cmdline::CommandEnv& env) {
  const auto& args = env.args;
  if (args.empty()) {
    *env.err << kUsage;
    return 2;
  }
  const std::string& sub = args[0];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    *env.out << kUsage;
    return 0;
  }
  if (sub == "lookup") return LookupMain(env, args);  // internal: ocicache-go's store side
  const std::vector<FlagSpec>* specs;
  const char* help;
  if (sub == "save") {
    specs = &SaveFlags();
    help = kSaveHelp;
  } else if (sub == "restore") {
    specs = &RestoreFlags();
    help = kRestoreHelp;
  } else {
    return UsageError(env, absl::StrCat("unknown subcommand \"", sub, "\": save or restore"));
  }
  auto a = Args::Parse(args, 1, *specs, /*stop_at_positional=*/false);
  if (!a.ok()) return UsageError(env, absl::StrCat(sub, ": ", a.status().message()));
  if (a->GetBool("help")) {
    *env.out << help << cmdline::FlagHelp(*specs)
             << "\nGlobal flags (store, credentials) are listed by 'ocicache --help'.\n";
    return 0;
  }
  if (!a->positional().empty()) {
    return UsageError(env, absl::StrCat(sub, " takes no arguments, got \"", a->positional()[0], "\""));
  }
  bool as_json = env.json || a->GetBool("json");
  return sub == "save" ? RunSave(env, *a, as_json) : RunRestore(env, *a, as_json);
}

}  // namespace ocicache::ko
