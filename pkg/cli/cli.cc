#include "pkg/cli/cli.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "pkg/admin/admin.h"
#include "pkg/cache/format.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/base/files.h"
#include "pkg/cmdline/args.h"
#include "pkg/cmdline/command.h"
#include "pkg/gocacheprog/command.h"
#include "pkg/ko/command.h"
#include "pkg/stores/settings.h"
#include "pkg/stores/stores.h"
#include "pkg/layout/layout_store.h"
#include "pkg/oci/pipe.h"
#include "pkg/oci/zstd_stream.h"
#include "pkg/registry/client.h"

namespace ocicache::cli {

using stores::StoreConfig;
using stores::ConfigFromEnv;
using cmdline::Args;
using cmdline::FlagSpec;
using cmdline::FlagHelp;
using cmdline::CommandEnv;
namespace {

using cache::Entry;
using cache::EntryInfo;
using cache::Store;
using json = nlohmann::ordered_json;

constexpr char kUsage[] = R"(ocicache: build caches stored in OCI registries

Usage: ocicache [global flags] COMMAND [flags] [args]

A cache is a map KEY -> entry (small JSON config, an original descriptor kept
byte for byte, content blobs). Entries live in a local directory (an OCI image
layout) and, with --repo, in an OCI registry repository: the directory is tried
first and written through.

Commands:
  get KEY         look an entry up; print its config, write its blob with -o
  stat KEY        print an entry's metadata without fetching blobs
  put KEY         store an entry from a config file and blob files (or stdin)
  ls              list entries with age and size
  rm KEY...       delete entries
  gc              delete entries by age (--older-than) or count (--keep-last)
  sync            copy entries between the directory and the registry
  shards          entries per shard repository, and the shard count a limit needs
  reshard         move entries to another shard count (--to-shards N)
  status          the store, its size, and what still has to reach the registry
  blob push|pull|stat|mount   work on single blobs
  demo            store and look up a few entries: a quick self-check
  gocacheprog     Go's GOCACHEPROG helper (GOCACHEPROG="ocicache gocacheprog")
  ko save|restore KOCACHE entries to and from the cache (ocicache-go is the wrapper)

Global flags:
%s
Environment (flags win): OCICACHE_SERVER (and OCICACHE_SERVER_TOKEN, OCICACHE_SERVER_CA,
OCICACHE_SERVER_CERT, OCICACHE_SERVER_KEY), OCICACHE_REPO (KOCACHE_REPO is an alias), OCICACHE_DIR,
OCICACHE_SHARDS, OCICACHE_INSECURE, OCICACHE_TLS, OCICACHE_CA_FILE,
OCICACHE_USERNAME and OCICACHE_PASSWORD; docker's config.json ($DOCKER_CONFIG or
~/.docker: auths, credHelpers, credsStore) supplies credentials otherwise.
OCICACHE_AUTH_CACHE: where the registry's auth challenge and Bearer tokens are kept
for the next process until they expire (default ~/.cache/ocicache-auth, files 0600;
"off": keep nothing). Credentials themselves are never written.

Exit codes: 0 success or hit, 1 miss, 2 usage or invalid input,
3 registry, auth or storage error.
Run 'ocicache COMMAND --help' for a command's flags.
)";

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* specs = [] {
    auto* v = new std::vector<FlagSpec>{
      {"server", true, false, "HOST:PORT", "run every command through this ocicached ($OCICACHE_SERVER); grpcs://HOST:PORT for TLS"},
      {"server-ca-file", true, false, "FILE", "CA certificates (PEM) the server's TLS certificate must chain to ($OCICACHE_SERVER_CA; implies TLS)"},
      {"server-cert-file", true, false, "FILE", "client certificate (PEM) for a server that requires one ($OCICACHE_SERVER_CERT)"},
      {"server-key-file", true, false, "FILE", "private key (PEM) of --server-cert-file ($OCICACHE_SERVER_KEY)"},
    };
    // The store flags, shared with ocicached (stores::StoreFlags).
    for (const stores::StoreFlag& f : stores::StoreFlags()) {
      v->push_back({f.name, !f.value_name.empty(), false, f.value_name, f.help});
    }
    v->push_back({"registry-budget", true, false, "N",
                  "send at most N registry requests, then stop with an error (exit 3); what "
                  "was done stays done, so gc and sync go on where they stopped when run "
                  "again"});
    v->push_back({"password-stdin", false, false, "", "read the registry password from stdin"});
    v->push_back({"json", false, false, "", "machine-readable output"});
    v->push_back({"quiet", false, false, "", "no progress or miss messages"});
    v->push_back({"help", false, false, "", "show help"});
    return v;
  }();
  return *specs;
}

struct Ctx {
  std::ostream& out;
  std::ostream& err;
  Args global;
  bool json = false;
  bool quiet = false;
  std::unique_ptr<Store> store;        // what commands use
  cache::LocalTier* local = nullptr;     // the local tier, if any (owned by store)
  cache::RegistryStore* remote = nullptr;  // the registry, if any (owned by store)
  std::unique_ptr<admin::Admin> admin;  // gc and sync (refers to store: declared after it)
  bool via_server = false;              // --server: store and admin are ocicached's
  std::string password;                // read once from stdin
};

int Fail(Ctx& c, const absl::Status& s) {
  int code = kExitStoreError;
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      code = kExitMiss;
      break;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      code = kExitUsage;
      break;
    case absl::StatusCode::kResourceExhausted:
      // Our own size limits are bad input; a registry's 429 and the request
      // budget (--registry-budget) are store errors.
      code = registry::IsTemporary(s) || registry::IsBudgetSpent(s) ? kExitStoreError : kExitUsage;
      break;
    default:
      break;
  }
  if (code == kExitMiss) {
    if (!c.quiet) c.err << "ocicache: " << s.message() << "\n";
  } else {
    c.err << "ocicache: error: " << s.message() << "\n";
  }
  return code;
}

int Usage(Ctx& c, absl::string_view msg) {
  c.err << "ocicache: " << msg << " (see --help)\n";
  return kExitUsage;
}

std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string HumanAge(absl::Time t) {
  if (t == absl::InfinitePast()) return "-";
  absl::Duration d = absl::Now() - t;
  if (d < absl::Minutes(1)) return absl::StrCat(absl::ToInt64Seconds(d), "s");
  if (d < absl::Hours(1)) return absl::StrCat(absl::ToInt64Minutes(d), "m");
  if (d < absl::Hours(48)) return absl::StrCat(absl::ToInt64Hours(d), "h");
  return absl::StrCat(absl::ToInt64Hours(d) / 24, "d");
}

std::string HumanSize(int64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrCat(n, "B") : absl::StrFormat("%.1f%s", v, units[u]);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  int fd = path == "-" ? dup(0) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", path, ": ", strerror(errno)));
    }
    if (n == 0) break;
    data.append(buf, n);
    if (data.size() > limit) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than the limit of ", limit, " bytes"));
    }
  }
  ::close(fd);
  return data;
}

// Writes what `read` produces to a file atomically (temp + rename) or to stdout
// ("-"). A path that exists and is not a regular file (/dev/null, a FIFO, a
// terminal) is written in place: renaming over it would replace the device with
// a file.
absl::Status WriteToPath(const std::function<absl::Status(oci::ByteSink&)>& read,
                         const std::string& path) {
  if (path == "-") {
    oci::FdSink sink(1);
    return read(sink);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, " is a directory"));
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
    oci::FdSink sink(fd);
    absl::Status s = read(sink);
    if (::close(fd) != 0 && s.ok()) s = absl::InternalError(absl::StrCat("close ", path, ": ", strerror(errno)));
    return s;
  }
  auto file = base::AtomicFile::Create(path);
  if (!file.ok()) return absl::InvalidArgumentError(absl::StrCat("cannot ", file.status().message()));
  oci::FdSink sink(file->fd());
  if (absl::Status s = read(sink); !s.ok()) return s;
  absl::Status s = file->Commit();
  return s.ok() ? s : absl::InternalError(s.message());
}

absl::Status ReadBlobToPath(Store& store, const oci::Digest& d, const std::string& path) {
  return WriteToPath([&](oci::ByteSink& sink) { return store.ReadBlob(d, 0, sink); }, path);
}

// Writes the object an entry holds (get --output): its first blob, decoded when
// it is a zstd object (layer application/zstd, config "encoding":"zstd" and
// "size": an HTTP cache object or a Go object stored compressed, or the
// mapping entry of a packed CAS blob); or, for an entry
// without blobs, the bytes its config holds inline ("data", base64: small HTTP
// cache objects and Go objects, docs/FORMAT.md).
absl::Status WriteObjectToPath(Store& store, const Entry& e, const std::string& path) {
  auto config = nlohmann::json::parse(e.config.empty() ? "{}" : e.config, nullptr, false);
  if (!config.is_object()) config = nlohmann::json::object();
  if (e.blobs.empty()) {
    std::string bytes;
    auto data = config.find("data");
    if (data == config.end() || !data->is_string() ||
        !absl::Base64Unescape(data->get<std::string>(), &bytes)) {
      return absl::InvalidArgumentError("the entry has no blob or inline data to write (--output)");
    }
    return WriteToPath([&](oci::ByteSink& sink) { return sink.Write(bytes); }, path);
  }
  const oci::Descriptor& blob = e.blobs[0];
  auto size = config.find("size");
  if (blob.media_type == oci::media::kZstd && config.value("encoding", "") == "zstd" &&
      size != config.end() && size->is_number_integer()) {
    const int64_t want = size->get<int64_t>();
    return WriteToPath(
        [&](oci::ByteSink& sink) {
          oci::ZstdSink decoded(sink);
          absl::Status s = store.ReadBlob(blob.digest, 0, decoded);
          return s.ok() ? decoded.Finish(want) : s;
        },
        path);
  }
  return ReadBlobToPath(store, blob.digest, path);
}

absl::StatusOr<oci::Descriptor> WriteBlobFromPath(Store& store, const std::string& path,
                                                  const oci::Digest& expected) {
  int fd = path == "-" ? dup(0) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  struct stat st;
  int64_t size = -1;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) size = st.st_size;
  if (size == 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is empty: zero-size blobs are not stored"));
  }
  // A file's digest is learnt first (a read the page cache makes cheap), so a store
  // that has the blob already (a registry: one HEAD) need not receive it again.
  oci::Digest want = expected;
  if (!want.valid() && size > 0) {
    int64_t hashed = 0;
    auto d = oci::DigestOfFile(fd, &hashed);
    if (!d.ok()) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat("cannot ", d.status().message(), " (", path, ")"));
    }
    if (hashed == size) want = *d;  // else it is changing: hashed on the way instead
  }
  oci::FdSource src(fd);
  auto d = store.WriteBlob(want, size, src);
  ::close(fd);
  if (d.ok() && d->size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is empty: zero-size blobs are not stored"));
  }
  return d;
}

absl::Status ParseKeyValues(const std::vector<std::string>& kvs, std::map<std::string, std::string>* out) {
  for (const auto& kv : kvs) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("\"", kv, "\" is not KEY=VALUE"));
    }
    (*out)[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return absl::OkStatus();
}

json EntryJson(const Entry& e) {
  json j;
  j["key"] = e.key;
  auto tag = cache::TagForKey(e.key);
  j["tag"] = tag.ok() ? *tag : "";
  json cfg = json::parse(e.config.empty() ? "{}" : e.config, nullptr, false);
  j["config"] = cfg.is_discarded() ? json(e.config) : cfg;
  json desc = json::parse(e.descriptor, nullptr, false);
  j["descriptor"] = desc.is_discarded() ? json(e.descriptor) : desc;
  json blobs = json::array();
  for (const auto& b : e.blobs) blobs.push_back(b.ToJson());
  j["blobs"] = blobs;
  json locs = json::array();
  for (const auto& l : e.locations) {
    locs.push_back({{"mediaType", l.media_type}, {"digest", l.digest.str()}, {"size", l.size}, {"url", l.url}});
  }
  j["locations"] = locs;
  j["annotations"] = e.annotations;
  j["created"] = Rfc3339(e.created);
  j["lastUsed"] = Rfc3339(e.last_used);
  return j;
}

json InfoJson(const EntryInfo& i) {
  json j;
  j["key"] = i.key;
  j["tag"] = i.tag;
  j["manifest"] = i.manifest_digest.str();
  j["size"] = i.size;
  j["created"] = Rfc3339(i.created);
  j["lastUsed"] = Rfc3339(i.last_used);
  j["annotations"] = i.annotations;
  return j;
}

// The store configuration: global flags, then the environment.
absl::StatusOr<StoreConfig> ConfigFromFlags(Ctx& c) {
  auto cfg = ConfigFromEnv();
  if (!cfg.ok()) return cfg.status();
  cfg->server = c.global.Get("server", cfg->server);
  cfg->server_ca_file = c.global.Get("server-ca-file", cfg->server_ca_file);
  cfg->server_cert_file = c.global.Get("server-cert-file", cfg->server_cert_file);
  cfg->server_key_file = c.global.Get("server-key-file", cfg->server_key_file);
  for (const stores::StoreFlag& f : stores::StoreFlags()) {
    if (!c.global.Has(f.name)) continue;
    if (absl::Status s = f.apply(&*cfg, c.global.Get(f.name)); !s.ok()) return s;
  }
  if (c.global.Has("registry-budget") &&
      (!absl::SimpleAtoi(c.global.Get("registry-budget"), &cfg->registry_budget) ||
       cfg->registry_budget < 0)) {
    return absl::InvalidArgumentError("--registry-budget takes a number of requests (0: no budget)");
  }
  if (!c.password.empty()) cfg->password = c.password;
  if (absl::Status s = stores::FinishStoreConfig(&*cfg); !s.ok()) return s;
  return cfg;
}

// Opens the stores the global flags (then the environment) describe.
absl::Status OpenStores(Ctx& c) {
  auto cfg = ConfigFromFlags(c);
  if (!cfg.ok()) return cfg.status();
  auto set = stores::OpenStores(*cfg);
  if (!set.ok()) return set.status();
  c.local = set->tiers.local;
  c.remote = set->tiers.remote;
  c.store = std::move(set->store);
  c.admin = std::move(set->admin);
  c.via_server = !cfg->server.empty();
  return absl::OkStatus();
}

// Commands implemented in their own packages (pkg/gocacheprog, pkg/ko): they
// parse their own arguments and open stores themselves.
struct ExternalCommand {
  std::string name;
  std::string summary;
  const char* usage;
  int (*main)(const CommandEnv& env);
};

const std::vector<ExternalCommand>& ExternalCommands() {
  static const auto* cmds = new std::vector<ExternalCommand>{
      {"gocacheprog", "Go's GOCACHEPROG helper: go build reads and writes the cache",
       gocacheprog::kUsage, gocacheprog::Main},
      {"ko", "ko save|restore: KOCACHE entries to and from the cache", ko::kUsage, ko::Main},
  };
  return *cmds;
}

struct Command {
  std::string name;
  std::string args;  // usage after the command name
  std::string summary;
  std::vector<FlagSpec> flags;
  int (*run)(Ctx& c, const Args& a);
  bool needs_store = true;
};

// ---- get / stat ----------------------------------------------------------

absl::StatusOr<cache::LookupOptions> LookupOpts(const Args& a) {
  cache::LookupOptions opts;
  if (absl::Status s = ParseKeyValues(a.GetAll("require"), &opts.require); !s.ok()) return s;
  opts.touch = !a.GetBool("no-touch");
  return opts;
}

int RunGet(Ctx& c, const Args& a) {
  if (a.positional().size() != 1) return Usage(c, "get takes one KEY");
  auto opts = LookupOpts(a);
  if (!opts.ok()) return Fail(c, opts.status());
  auto e = c.store->Lookup(a.positional()[0], *opts);
  if (!e.ok()) return Fail(c, e.status());
  if (a.Has("output")) {
    if (absl::Status s = WriteObjectToPath(*c.store, *e, a.Get("output")); !s.ok()) {
      return Fail(c, s);
    }
  }
  if (c.json) {
    c.out << EntryJson(*e).dump(2) << "\n";
  } else if (a.Get("output") != "-") {
    c.out << (e->config.empty() ? "{}" : e->config) << "\n";
  }
  return kExitOk;
}

int RunStat(Ctx& c, const Args& a) {
  if (a.positional().size() != 1) return Usage(c, "stat takes one KEY");
  auto opts = LookupOpts(a);
  if (!opts.ok()) return Fail(c, opts.status());
  opts->touch = false;
  auto e = c.store->Lookup(a.positional()[0], *opts);
  if (!e.ok()) return Fail(c, e.status());
  if (c.json) {
    c.out << EntryJson(*e).dump(2) << "\n";
    return kExitOk;
  }
  json j = EntryJson(*e);
  c.out << "key:         " << e->key << "\n"
        << "tag:         " << j["tag"].get<std::string>() << "\n"
        << "created:     " << Rfc3339(e->created) << "\n"
        << "last used:   " << Rfc3339(e->last_used) << "\n"
        << "config:      " << (e->config.empty() ? "{}" : e->config) << "\n"
        << "descriptor:  " << e->descriptor << "\n";
  for (const auto& b : e->blobs) {
    c.out << "blob:        " << b.digest.str() << " " << b.size << " " << b.media_type << "\n";
  }
  for (const auto& l : e->locations) c.out << "location:    " << l.url << "\n";
  for (const auto& [k, v] : e->annotations) c.out << "annotation:  " << k << "=" << v << "\n";
  return kExitOk;
}

// ---- put -------------------------------------------------------------------

int RunPut(Ctx& c, const Args& a) {
  if (a.positional().size() != 1) return Usage(c, "put takes one KEY");
  Entry e;
  e.key = a.positional()[0];
  if (absl::Status s = cache::ValidateKey(e.key); !s.ok()) return Fail(c, s);
  int stdin_uses = 0;
  if (a.Has("config")) {
    stdin_uses += a.Get("config") == "-";
    auto cfg = ReadSmallFile(a.Get("config"), cache::format::kMaxConfigBytes);
    if (!cfg.ok()) return Fail(c, cfg.status());
    e.config = *cfg;
  }
  if (a.Has("descriptor")) {
    stdin_uses += a.Get("descriptor") == "-";
    auto d = ReadSmallFile(a.Get("descriptor"), cache::format::kMaxConfigBytes);
    if (!d.ok()) return Fail(c, d.status());
    e.descriptor = *d;
  }
  for (const auto& b : a.GetAll("blob")) stdin_uses += b == "-";
  if (stdin_uses > 1) return Usage(c, "only one of --config, --descriptor, --blob can read stdin");
  if (absl::Status s = ParseKeyValues(a.GetAll("annotation"), &e.annotations); !s.ok()) return Fail(c, s);
  // Validate everything cheap before uploading anything.
  {
    Entry probe = e;
    probe.blobs.clear();
    if (auto enc = cache::EncodeEntry(probe, absl::Now()); !enc.ok()) return Fail(c, enc.status());
  }
  std::string media_type = a.Get("media-type", oci::media::kOctetStream);
  for (const auto& path : a.GetAll("blob")) {
    auto d = WriteBlobFromPath(*c.store, path, oci::Digest());
    if (!d.ok()) return Fail(c, d.status());
    oci::Descriptor b = *d;
    b.media_type = media_type;
    b.annotations.clear();
    if (path != "-") b.annotations["org.opencontainers.image.title"] = path.substr(path.rfind('/') + 1);
    e.blobs.push_back(b);
  }
  if (absl::Status s = c.store->Put(e); !s.ok()) return Fail(c, s);
  auto tag = cache::TagForKey(e.key);
  if (c.json) {
    c.out << EntryJson(e).dump(2) << "\n";
  } else if (!c.quiet) {
    auto* tiered = dynamic_cast<cache::TieredStore*>(c.store.get());
    if (tiered != nullptr && tiered->degraded()) {
      c.out << "stored " << e.key << " as tag " << *tag << " locally only in "
            << tiered->local().Describe()
            << " (the registry is unavailable; it waits in the backlog, and the next put that "
               "reaches the registry, or a server on this directory, pushes it)\n";
    } else {
      c.out << "stored " << e.key << " as tag " << *tag << " in " << c.store->Describe() << "\n";
    }
  }
  return kExitOk;
}

// ---- ls / rm / gc -------------------------------------------------------

absl::StatusOr<std::vector<EntryInfo>> ListAll(Store& s) {
  std::vector<EntryInfo> all;
  absl::Status st = s.List([&](const EntryInfo& i) {
    all.push_back(i);
    return true;
  });
  if (!st.ok()) return st;
  return all;
}

int RunLs(Ctx& c, const Args& a) {
  if (!a.positional().empty()) return Usage(c, "ls takes no arguments");
  auto all = ListAll(*c.store);
  if (!all.ok()) return Fail(c, all.status());
  std::sort(all->begin(), all->end(),
            [](const EntryInfo& x, const EntryInfo& y) { return x.last_used > y.last_used; });
  if (c.json) {
    // One entry at a time (as json::dump(2) of the whole array would print it):
    // the array's DOM would cost about a kilobyte per entry.
    if (all->empty()) {
      c.out << "[]\n";
      return kExitOk;
    }
    c.out << "[\n";
    for (size_t n = 0; n < all->size(); ++n) {
      std::string one = InfoJson((*all)[n]).dump(2);
      c.out << "  " << absl::StrReplaceAll(one, {{"\n", "\n  "}})
            << (n + 1 < all->size() ? ",\n" : "\n");
    }
    c.out << "]\n";
    return kExitOk;
  }
  c.out << absl::StrFormat("%-8s %-8s %10s  %s\n", "USED", "CREATED", "SIZE", "KEY");
  for (const auto& i : *all) {
    c.out << absl::StrFormat("%-8s %-8s %10s  %s\n", HumanAge(i.last_used), HumanAge(i.created),
                             HumanSize(i.size), i.key);
  }
  return kExitOk;
}

int RunRm(Ctx& c, const Args& a) {
  if (a.positional().empty()) return Usage(c, "rm takes one or more KEYs");
  int rc = kExitOk;
  for (const auto& key : a.positional()) {
    absl::Status s = c.store->Delete(key);
    if (!s.ok()) {
      int r = Fail(c, s);
      if (r != kExitMiss || rc == kExitOk) rc = std::max(rc, r);
      if (r != kExitMiss) return r;
    } else if (!c.quiet) {
      c.out << "deleted " << key << "\n";
    }
  }
  return rc;
}

int RunGc(Ctx& c, const Args& a) {
  if (!a.positional().empty()) return Usage(c, "gc takes no arguments");
  if (!a.Has("older-than") && !a.Has("keep-last")) {
    return Usage(c, "gc needs --older-than DURATION and/or --keep-last N");
  }
  absl::Duration older = absl::ZeroDuration();
  if (a.Has("older-than")) {
    std::string v = a.Get("older-than");
    // absl durations lack days; accept "Nd" too.
    if (absl::EndsWith(v, "d")) {
      int days;
      if (!absl::SimpleAtoi(v.substr(0, v.size() - 1), &days) || days < 0) {
        return Usage(c, "--older-than takes a duration like 36h, 90m or 7d");
      }
      older = absl::Hours(24) * days;
    } else if (!absl::ParseDuration(v, &older) || older < absl::ZeroDuration()) {
      return Usage(c, "--older-than takes a duration like 36h, 90m or 7d");
    }
  }
  int keep = 0;
  if (a.Has("keep-last") && (!absl::SimpleAtoi(a.Get("keep-last"), &keep) || keep < 0)) {
    return Usage(c, "--keep-last takes a number");
  }
  admin::GcRequest req;
  if (a.Has("older-than")) req.older_than = older;
  if (a.Has("keep-last")) req.keep_last = keep;
  req.dry_run = a.GetBool("dry-run");
  bool dry = req.dry_run;
  int64_t done = 0, total = 0;
  auto r = c.admin->CollectGarbage(req, [&](const admin::ProgressEvent& ev) {
    done = ev.done, total = ev.total;
    if (!c.quiet && !c.json) c.out << (dry ? "would delete " : "deleted ") << ev.key << "\n";
    return true;
  });
  if (!r.ok()) {
    int rc = Fail(c, r.status());
    // What an interrupted gc did stays done; the next run lists again and goes on.
    if (!dry && done > 0) {
      c.err << absl::StrFormat("ocicache: gc stopped after %d of the %d entries to delete\n", done, total);
    }
    return rc;
  }
  if (!r->records_error.empty()) {
    c.err << "ocicache: warning: the registry's listing records were not merged: "
          << r->records_error << "\n";
  }
  if (c.json) {
    json j{{"entries", r->deleted}, {"bytes", r->bytes}, {"dryRun", dry},
           {"keptInUse", r->kept_in_use},
           {"localBlobsRemoved", r->local_blobs_removed}, {"localBytesFreed", r->local_bytes_freed}};
    c.out << j.dump(2) << "\n";
  } else if (!c.quiet) {
    c.out << absl::StrFormat("%s %d of %d entries (%s)", dry ? "would delete" : "deleted", r->deleted,
                             r->entries, HumanSize(r->bytes));
    if (r->kept_in_use > 0) {
      c.out << absl::StrFormat("; kept %d listed as old that were used since", r->kept_in_use);
    }
    if (r->local_tier) {
      c.out << absl::StrFormat("; local tier: %d unreferenced blobs removed (%s)",
                               r->local_blobs_removed, HumanSize(r->local_bytes_freed));
    }
    c.out << "\n";
  }
  return kExitOk;
}

// ---- sync --------------------------------------------------------------------

class Progress {
 public:
  Progress(std::ostream& err, bool enabled, std::string label)
      : err_(err), enabled_(enabled && isatty(2)), label_(std::move(label)) {}
  void Step(int64_t done, int64_t total) {
    if (!enabled_ || total <= 0) return;
    int width = 30;
    int filled = static_cast<int>(width * done / total);
    err_ << "\r" << label_ << " [" << std::string(filled, '#') << std::string(width - filled, ' ')
         << "] " << done << "/" << total << std::flush;
    if (done == total) err_ << "\n";
  }

 private:
  std::ostream& err_;
  bool enabled_;
  std::string label_;
};

int RunSync(Ctx& c, const Args& a) {
  if (!a.positional().empty()) return Usage(c, "sync takes no arguments");
  if (!c.via_server && (c.local == nullptr || c.remote == nullptr)) {
    return Usage(c, "sync needs both a directory (--dir) and a registry (--repo)");
  }
  std::string dir = a.Get("direction", "both");
  if (dir != "up" && dir != "down" && dir != "both") {
    return Usage(c, "--direction is up, down or both");
  }
  admin::SyncRequest req;
  req.direction = dir == "up"     ? admin::SyncDirection::kUp
                  : dir == "down" ? admin::SyncDirection::kDown
                                  : admin::SyncDirection::kBoth;
  req.dry_run = a.GetBool("dry-run");
  bool dry = req.dry_run;
  Progress progress(c.err, !c.quiet, "sync");
  int64_t done = 0, total = 0;
  auto r = c.admin->Sync(req, [&](const admin::ProgressEvent& ev) {
    done = ev.done, total = ev.total;
    if (!c.quiet && !c.json && !isatty(2)) c.out << (dry ? "would " : "") << ev.action << " " << ev.key << "\n";
    progress.Step(ev.done, ev.total);
    return true;
  });
  // The server lacks a tier: the same usage error as without --server.
  if (c.via_server && absl::IsFailedPrecondition(r.status())) return Usage(c, r.status().message());
  if (!r.ok()) {
    int rc = Fail(c, r.status());
    // Entries copied stay copied; the next run copies only what is still missing.
    if (!dry && total > 0) {
      c.err << absl::StrFormat("ocicache: sync stopped after %d of %d entries\n", done, total);
    }
    return rc;
  }
  if (c.json) {
    c.out << json{{"pushed", r->pushed}, {"pulled", r->pulled}, {"dryRun", dry}}.dump(2) << "\n";
  } else if (!c.quiet) {
    c.out << absl::StrFormat("%s %d entries to %s, %d entries to %s\n", dry ? "would copy" : "copied",
                             r->pushed, r->remote, r->pulled, r->local);
  }
  return kExitOk;
}

// ---- shards / reshard ------------------------------------------------------------

int RunShards(Ctx& c, const Args& a) {
  if (!a.positional().empty()) return Usage(c, "shards takes no arguments");
  if (c.via_server || c.remote == nullptr) return Usage(c, "shards needs a registry (--repo), not --server");
  int64_t limit = 10000, entries = -1;
  if (a.Has("limit") && (!absl::SimpleAtoi(a.Get("limit"), &limit) || limit < 1)) {
    return Usage(c, "--limit takes a number of entries per repository");
  }
  if (a.Has("entries") && (!absl::SimpleAtoi(a.Get("entries"), &entries) || entries < 0)) {
    return Usage(c, "--entries takes a number of entries");
  }
  auto counts = c.remote->CountEntryTags();
  if (!counts.ok()) return Fail(c, counts.status());
  int64_t total = 0, fullest = 0;
  for (const auto& [repo, n] : *counts) {
    total += n;
    fullest = std::max(fullest, n);
  }
  const int64_t target = entries >= 0 ? entries : total;
  const int want = admin::ShardsFor(target, limit);
  const int now = std::max(1, c.remote->shards());
  if (c.json) {
    json per = json::object();
    for (const auto& [repo, n] : *counts) per[repo] = n;
    c.out << json{{"repositories", per}, {"entries", total}, {"fullest", fullest},
                  {"shards", now}, {"limit", limit}, {"target", target}, {"needed", want}}
                 .dump(2)
          << "\n";
    return kExitOk;
  }
  if (!c.quiet) {
    for (const auto& [repo, n] : *counts) c.out << absl::StrFormat("%8d  %s\n", n, repo);
  }
  c.out << absl::StrFormat("%d entries in %d repositor%s, the fullest %d (%.0f%% of a limit of %d)\n",
                           total, counts->size(), counts->size() == 1 ? "y" : "ies", fullest,
                           100.0 * fullest / limit, limit);
  if (want == 0) {
    c.out << absl::StrFormat("%d entries need more than 256 shards under that limit: split the cache "
                             "over several repositories\n", target);
  } else {
    c.out << absl::StrFormat("%d entries need --shards %d (%s now)%s\n", target, want,
                             now == 1 ? std::string("unsharded") : absl::StrCat(now),
                             want > now ? absl::StrFormat(": ocicache reshard --to-shards %d", want)
                                        : "");
  }
  return kExitOk;
}

int RunReshard(Ctx& c, const Args& a) {
  if (!a.positional().empty()) return Usage(c, "reshard takes no arguments");
  if (c.via_server || c.remote == nullptr) return Usage(c, "reshard needs a registry (--repo), not --server");
  int to = -1;
  if (!a.Has("to-shards") || !absl::SimpleAtoi(a.Get("to-shards"), &to) || to < 0 || to > 256) {
    return Usage(c, "reshard needs --to-shards N (0 or 1: unsharded; up to 256)");
  }
  if (std::max(1, to) == std::max(1, c.remote->shards())) {
    return Usage(c, absl::StrCat("the repository has ", std::max(1, to),
                                 " shard(s) already (--shards names the current count)"));
  }
  auto cfg = ConfigFromFlags(c);
  if (!cfg.ok()) return Fail(c, cfg.status());
  cfg->shards = to;
  cfg->dir.clear();
  cfg->no_dir = true;
  auto target = stores::OpenStores(*cfg);
  if (!target.ok()) return Fail(c, target.status());
  if (target->tiers.remote == nullptr) return Fail(c, absl::InternalError("no registry store"));
  const bool dry = a.GetBool("dry-run");
  int64_t done = 0, total = 0;
  auto r = admin::Reshard(*c.remote, *target->tiers.remote, dry, [&](const admin::ProgressEvent& ev) {
    done = ev.done, total = ev.total;
    if (!c.quiet && !c.json) c.out << (dry ? "would move " : "moved ") << ev.key << "\n";
    return true;
  });
  if (!r.ok()) {
    int rc = Fail(c, r.status());
    if (!dry && done > 0) {
      c.err << absl::StrFormat("ocicache: reshard stopped after %d of the %d entries to move; "
                               "nothing is lost: run it again to go on\n", done, total);
    }
    return rc;
  }
  if (c.json) {
    c.out << json{{"listed", r->listed}, {"moved", r->moved}, {"inPlace", r->in_place},
                  {"gone", r->gone}, {"dryRun", dry}}.dump(2) << "\n";
  } else {
    c.out << absl::StrFormat("%s %d of %d entries to --shards %d (%d in place%s)\n",
                             dry ? "would move" : "moved", r->moved, r->listed, to, r->in_place,
                             r->gone > 0 ? absl::StrFormat(", %d moved before", r->gone) : "");
  }
  return kExitOk;
}

// ---- status -------------------------------------------------------------------

int RunStatus(Ctx& c, const Args& a) {
  if (!a.positional().empty()) return Usage(c, "status takes no arguments");
  auto r = c.admin->Status();
  if (!r.ok()) return Fail(c, r.status());
  if (c.json) {
    json j{{"store", r->store}};
    if (r->backlog >= 0) j["backlog"] = r->backlog;
    if (r->local_tier_bytes >= 0) j["localTierBytes"] = r->local_tier_bytes;
    if (r->lookups >= 0) {
      j["lookups"] = r->lookups;
      j["hits"] = r->hits;
      j["misses"] = r->misses;
      j["uptimeSeconds"] = r->uptime_seconds;
    }
    c.out << j.dump(2) << "\n";
    return kExitOk;
  }
  c.out << "store:    " << r->store << "\n";
  if (r->local_tier_bytes >= 0) c.out << "local:    " << r->local_tier_bytes << " bytes of blobs\n";
  if (r->backlog >= 0) {
    c.out << "backlog:  " << r->backlog
          << (r->backlog == 0 ? " entries (the registry has everything put here)\n"
                              : " entries put while the registry was unreachable, still to push\n");
  }
  if (r->lookups >= 0) {
    c.out << absl::StrFormat("server:   up %ds, %d lookups, %d hits, %d misses\n",
                             r->uptime_seconds, r->lookups, r->hits, r->misses);
  }
  return kExitOk;
}

// ---- blob ---------------------------------------------------------------------

int RunBlob(Ctx& c, const Args& a) {
  const auto& p = a.positional();
  if (p.empty()) return Usage(c, "blob needs a subcommand: push, pull, stat or mount");
  const std::string& sub = p[0];
  if (sub == "push") {
    if (p.size() != 2) return Usage(c, "blob push takes one FILE (or - for stdin)");
    oci::Digest expected;
    if (a.Has("digest")) {
      auto d = oci::Digest::Parse(a.Get("digest"));
      if (!d.ok()) return Fail(c, d.status());
      expected = *d;
    }
    auto d = WriteBlobFromPath(*c.store, p[1], expected);
    if (!d.ok()) return Fail(c, d.status());
    if (c.json) {
      c.out << json{{"digest", d->digest.str()}, {"size", d->size}}.dump(2) << "\n";
    } else {
      c.out << d->digest.str() << "\n";
    }
    return kExitOk;
  }
  if (p.size() < 2) return Usage(c, absl::StrCat("blob ", sub, " takes a DIGEST"));
  auto digest = oci::Digest::Parse(p[1]);
  if (!digest.ok()) return Fail(c, digest.status());
  if (sub == "pull") {
    if (p.size() != 2) return Usage(c, "blob pull takes one DIGEST");
    absl::Status s = ReadBlobToPath(*c.store, *digest, a.Get("output", "-"));
    return s.ok() ? kExitOk : Fail(c, s);
  }
  if (sub == "stat") {
    auto size = c.store->StatBlob(*digest);
    if (!size.ok()) return Fail(c, size.status());
    if (c.json) {
      c.out << json{{"digest", digest->str()}, {"size", *size}}.dump(2) << "\n";
    } else {
      c.out << digest->str() << " " << *size << "\n";
    }
    return kExitOk;
  }
  if (sub == "mount") {
    if (!a.Has("from")) return Usage(c, "blob mount needs --from URL or --from REGISTRY/REPO");
    cache::Location loc;
    loc.digest = *digest;
    loc.media_type = oci::media::kOctetStream;
    std::string from = a.Get("from");
    if (!absl::StrContains(from, "://")) {
      auto ref = registry::ParseRepoRef(from);
      if (!ref.ok()) return Fail(c, ref.status());
      auto tmp = registry::Client::Create(ref->registry, {});
      if (!tmp.ok()) return Fail(c, tmp.status());
      from = cache::BlobUrl((*tmp)->base_url(), ref->repository, *digest);
    }
    loc.url = from;
    if (a.Has("size")) {
      if (!absl::SimpleAtoi(a.Get("size"), &loc.size) || loc.size <= 0) {
        return Usage(c, "--size takes a positive number");
      }
    } else {
      loc.size = -1;
    }
    absl::Status s = c.store->MountBlob(loc);
    if (!s.ok()) return Fail(c, s);
    if (!c.quiet) c.out << "present: " << digest->str() << "\n";
    return kExitOk;
  }
  return Usage(c, absl::StrCat("unknown blob subcommand \"", sub, "\""));
}

// ---- demo -------------------------------------------------------------------

int RunDemo(Ctx& c, const Args& a) {
  c.out << "ocicache demo on " << c.store->Describe() << "\n";
  std::string stamp = absl::StrCat(absl::ToUnixNanos(absl::Now()));
  int n = 3;
  absl::Duration put_time, hit_time, miss_time;
  for (int i = 0; i < n; ++i) {
    std::string content = absl::StrCat("demo object ", i, " at ", stamp, "\n");
    oci::StringSource src(content);
    absl::Time t0 = absl::Now();
    auto d = c.store->WriteBlob(oci::Digest::Of(content), content.size(), src);
    if (!d.ok()) return Fail(c, d.status());
    Entry e;
    e.key = absl::StrCat("demo/", stamp, "/", i);
    e.config = absl::StrCat(R"({"demo":)", i, "}");
    oci::Descriptor b = *d;
    b.media_type = "text/plain";
    e.blobs.push_back(b);
    e.annotations["org.ocicache.tool.demo"] = "1";
    if (absl::Status s = c.store->Put(e); !s.ok()) return Fail(c, s);
    put_time += absl::Now() - t0;
    t0 = absl::Now();
    auto got = c.store->Lookup(e.key, {});
    if (!got.ok()) return Fail(c, got.status());
    std::string back;
    oci::StringSink sink(&back);
    if (absl::Status s = c.store->ReadBlob(got->blobs[0].digest, 0, sink); !s.ok()) return Fail(c, s);
    hit_time += absl::Now() - t0;
    if (back != content) return Fail(c, absl::DataLossError("demo read back other bytes"));
    c.out << "  put + hit  " << e.key << " -> " << b.digest.str().substr(0, 19) << "...\n";
  }
  absl::Time t0 = absl::Now();
  auto miss = c.store->Lookup(absl::StrCat("demo/", stamp, "/absent"), {});
  miss_time = absl::Now() - t0;
  if (!absl::IsNotFound(miss.status())) {
    return Fail(c, absl::InternalError("demo: an absent key did not miss"));
  }
  c.out << "  miss       demo/" << stamp << "/absent\n";
  for (int i = 0; i < n; ++i) (void)c.store->Delete(absl::StrCat("demo/", stamp, "/", i));
  c.out << absl::StrFormat("ok: %d puts (%s each), %d hits (%s each), 1 miss (%s)\n", n,
                           absl::FormatDuration(put_time / n), n,
                           absl::FormatDuration(hit_time / n), absl::FormatDuration(miss_time));
  return kExitOk;
}

const std::vector<Command>& Commands() {
  static const FlagSpec kJson{"json", false, false, "", "machine-readable output"};
  static const FlagSpec kHelp{"help", false, false, "", "show help"};
  static const FlagSpec kRequire{"require", true, true, "K=V",
                                 "the entry must carry annotation K with value V, else a miss"};
  static const auto* cmds = new std::vector<Command>{
      {"get", "KEY", "Look KEY up. Prints the entry's config (or all of it with --json); "
                     "--output writes the object it holds: its first blob (decoded if it is "
                     "zstd-compressed: an HTTP cache object, a Go object, or the packed "
                     "Bazel CAS blob that key cas:sha256:HASH names), or, without blobs, the "
                     "bytes its config holds inline (\"data\": small HTTP and Go objects).",
       {{"output", true, false, "FILE", "write the entry's object to FILE (- for stdout)", 'o'},
        kRequire,
        {"no-touch", false, false, "", "do not refresh the entry's last-used time"},
        kJson, kHelp},
       RunGet},
      {"stat", "KEY", "Print KEY's entry: config, original descriptor, blobs, locations, annotations.",
       {kRequire, kJson, kHelp}, RunStat},
      {"put", "KEY", "Store an entry for KEY. Blobs are uploaded first, then the entry.",
       {{"config", true, false, "FILE", "entry config: a JSON object (- for stdin)"},
        {"blob", true, true, "FILE", "content blob (- for stdin)"},
        {"descriptor", true, false, "FILE", "original descriptor JSON to keep byte for byte"},
        {"media-type", true, false, "TYPE", "media type of the blobs (default application/octet-stream)"},
        {"annotation", true, true, "K=V", "annotation, e.g. org.ocicache.tool.go=go1.23.4"},
        kJson, kHelp},
       RunPut},
      {"ls", "", "List entries, most recently used first.", {kJson, kHelp}, RunLs},
      {"rm", "KEY...", "Delete entries (blobs are reclaimed by the registry's GC and 'gc').",
       {kHelp}, RunRm},
      {"gc", "", "Delete entries last used before --older-than, keeping the --keep-last most recent; "
                 "then remove local blobs no entry references.",
       {{"older-than", true, false, "DURATION", "e.g. 7d, 36h, 90m"},
        {"keep-last", true, false, "N", "never delete the N most recently used entries"},
        {"dry-run", false, false, "", "only print what would be deleted"},
        kJson, kHelp},
       RunGc},
      {"sync", "", "Copy entries the other side lacks between the directory and the registry.",
       {{"direction", true, false, "up|down|both", "up: to the registry; down: to the directory (default both)"},
        {"dry-run", false, false, "", "only print what would be copied"},
        kJson, kHelp},
       RunSync},
      {"shards", "", "Count the entries in each repository of the current layout (one tag list "
                     "each) and say how many shards a registry's per-repository limit needs.",
       {{"limit", true, false, "N", "entries (tags) a repository may hold (default 10000: ECR's)"},
        {"entries", true, false, "N", "size the shards for N entries instead of today's count"},
        kJson, kHelp},
       RunShards},
      {"reshard", "--to-shards N",
       "Move entries from the current shard count (--shards, default unsharded) to N: each "
       "entry whose repository changes is copied, then deleted where it was. Interrupted, it "
       "loses nothing; run it again to go on. Readers and writers still on the old count miss "
       "moved entries until they switch.",
       {{"to-shards", true, false, "N", "the new shard count (0 or 1: unsharded; up to 256)"},
        {"dry-run", false, false, "", "only print what would be moved"},
        kJson, kHelp},
       RunReshard},
      {"blob", "push FILE | pull DIGEST | stat DIGEST | mount DIGEST --from URL",
       "Work on single blobs.",
       {{"output", true, false, "FILE", "pull: where to write (default stdout)", 'o'},
        {"digest", true, false, "DIGEST", "push: the digest the content must have"},
        {"from", true, false, "URL|REGISTRY/REPO", "mount: where the blob is"},
        {"size", true, false, "N", "mount: the blob's size"},
        kJson, kHelp},
       RunBlob},
      {"status", "", "Show the store, its local tier's size and the backlog: entries put while "
                     "the registry was unreachable that still have to reach it (with --server: "
                     "the server's, and its counters).",
       {kJson, kHelp}, RunStatus},
      {"demo", "", "Store, look up and delete a few entries: a self-check of the configured stores.",
       {kHelp}, RunDemo},
  };
  return *cmds;
}

}  // namespace

int Main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  auto global = Args::Parse(argv, 1, GlobalFlags(), /*stop_at_positional=*/true);
  Ctx c{out, err, {}};
  if (!global.ok()) return Usage(c, global.status().message());
  c.global = *global;
  c.json = c.global.GetBool("json");
  c.quiet = c.global.GetBool("quiet");
  size_t ci = global->next();
  if (c.global.GetBool("help") || ci >= argv.size() || argv[ci] == "help") {
    bool asked = c.global.GetBool("help") || (ci < argv.size() && argv[ci] == "help");
    (asked ? out : err) << absl::StrFormat(kUsage, FlagHelp(GlobalFlags()));
    return asked ? kExitOk : kExitUsage;
  }
  for (const auto& x : ExternalCommands()) {
    if (x.name != argv[ci]) continue;
    auto cfg = ConfigFromFlags(c);
    if (!cfg.ok()) return Fail(c, cfg.status());
    CommandEnv env{*cfg, std::vector<std::string>(argv.begin() + ci + 1, argv.end()),
                   c.json, c.quiet, &std::cin, &out, &err};
    return x.main(env);
  }
  const Command* cmd = nullptr;
  for (const auto& x : Commands()) {
    if (x.name == argv[ci]) cmd = &x;
  }
  if (cmd == nullptr) return Usage(c, absl::StrCat("unknown command \"", argv[ci], "\""));
  auto a = Args::Parse(argv, ci + 1, cmd->flags, /*stop_at_positional=*/false);
  if (!a.ok()) return Usage(c, absl::StrCat(cmd->name, ": ", a.status().message()));
  if (a->GetBool("help")) {
    out << "Usage: ocicache [global flags] " << cmd->name << " " << cmd->args << "\n\n"
        << cmd->summary << "\n\nFlags:\n" << FlagHelp(cmd->flags)
        << "\nGlobal flags are listed by 'ocicache --help'.\n";
    return kExitOk;
  }
  if (a->GetBool("json")) c.json = true;
  if (c.global.GetBool("password-stdin")) {
    std::string pw;
    std::getline(std::cin, pw);
    c.password = pw;
  }
  if (cmd->needs_store) {
    if (absl::Status s = OpenStores(c); !s.ok()) return Fail(c, s);
  }
  return cmd->run(c, *a);
}

}  // namespace ocicache::cli
