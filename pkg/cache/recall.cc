#include "pkg/cache/recall.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "pkg/base/call_scope.h"
#include "pkg/cache/format.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"

namespace ocicache::cache {
namespace {

constexpr char kHeader[] = "ocicache-recall 1\n";
// A list's blob is at most this large, whatever max_keys says (keys are short
// in practice: a ccache key path is 36 bytes, a Turborepo hash 16).
constexpr size_t kMaxListBytes = 4 << 20;
constexpr char kConfigFormat[] = "ocicache.recall.v1";
constexpr char kPackHeader[] = "ocicache-recall-pack 1\n";
constexpr char kPackMediaType[] = "application/vnd.ocicache.recall-pack.v1";
// A pack holds small entries only (objects up to 16 KiB inside their manifest):
// 16 MiB is a thousand or more of them.
constexpr size_t kMaxPackBytes = 16 << 20;

}  // namespace

std::string RecallKey(absl::string_view group) { return absl::StrCat("recall:", group); }

std::string FormatRecallList(const std::vector<std::string>& keys) {
  std::string out = kHeader;
  for (const std::string& k : keys) {
    if (k.empty() || k.find('\n') != std::string::npos) continue;
    if (out.size() + k.size() + 1 > kMaxListBytes) break;
    absl::StrAppend(&out, k, "\n");
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseRecallList(absl::string_view blob) {
  if (!absl::ConsumePrefix(&blob, kHeader)) {
    return absl::DataLossError("not a recall list (its first line is not \"ocicache-recall 1\")");
  }
  std::vector<std::string> keys;
  for (absl::string_view line : absl::StrSplit(blob, '\n', absl::SkipEmpty())) {
    keys.emplace_back(line);
  }
  return keys;
}

Recall::Recall(Store* store, RecallOptions opts) : store_(store), opts_(std::move(opts)) {}

Recall::~Recall() { Stop(); }

absl::Status Recall::StopCheck() {
  absl::MutexLock l(&mu_);
  return stopping_ ? absl::CancelledError("the server is stopping") : absl::OkStatus();
}

void Recall::Stop() {
  std::unique_ptr<base::ThreadPool> pool;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    pool = std::move(pool_);
  }
  pool.reset();  // drops queued lookups, joins the running ones (they see stopping_)
}

Recall::Group* Recall::GroupLocked(absl::string_view group) {
  auto it = groups_.find(group);
  if (it != groups_.end()) return &it->second;
  if (groups_.size() >= opts_.max_groups) return nullptr;
  return &groups_[std::string(group)];
}

void Recall::Begin(absl::string_view group) {
  if (opts_.max_keys == 0) return;
  // Destroyed after the lock is released (declared before it): a pool whose
  // prefetches have all ended, so a server with many instances keeps no idle
  // prefetch threads for each.
  std::unique_ptr<base::ThreadPool> idle;
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  if (!StartLocked(group)) {
    bool all_done = !preloading_;
    for (const auto& [name, other] : groups_) all_done = all_done && (!other.started || other.done);
    if (all_done) idle = std::move(pool_);
  }
}

bool Recall::StartLocked(absl::string_view group) {
  Group* g = GroupLocked(group);
  if (g == nullptr || g->started) return false;
  g->started = true;
  g->began = absl::Now();
  if (pool_ == nullptr) pool_ = std::make_unique<base::ThreadPool>(std::max(1, opts_.parallel), 0);
  if (!pool_->Submit([this, name = std::string(group)] { LoadList(name); })) g->done = true;
  return true;
}

absl::Status Recall::ReadList(const std::string& key, size_t max_blobs, absl::StatusOr<Entry>* e,
                              std::vector<std::string>* lines) {
  *e = store_->Lookup(key, LookupOptions{});
  if (!e->ok()) return e->status();
  const Entry& entry = **e;
  if (entry.blobs.empty() || entry.blobs.size() > max_blobs) {
    return absl::DataLossError(absl::StrCat(key, " names ", entry.blobs.size(),
                                            " blobs: a list, then at most a pack"));
  }
  std::string blob;
  oci::BoundedStringSink sink(&blob, kMaxListBytes, "a recall list");
  if (absl::Status s = store_->ReadBlob(entry.blobs[0].digest, 0, sink); !s.ok()) return s;
  auto parsed = ParseRecallList(blob);
  if (!parsed.ok()) return parsed.status();
  *lines = *std::move(parsed);
  return absl::OkStatus();
}

void Recall::Preload() {
  if (opts_.max_keys == 0 || opts_.index.empty()) return;
  absl::MutexLock l(&mu_);
  if (stopping_ || preload_started_) return;
  preload_started_ = true;
  if (pool_ == nullptr) pool_ = std::make_unique<base::ThreadPool>(std::max(1, opts_.parallel), 0);
  preloading_ = pool_->Submit([this] { LoadIndex(); });
}

void Recall::LoadIndex() {
  std::vector<std::string> names;
  {
    base::CallScope scope(
        {.cap = absl::Now() + opts_.lookup_timeout, .check = [this] { return StopCheck(); }});
    absl::StatusOr<Entry> e;
    absl::Status s = ReadList(RecallKey(opts_.index), 1, &e, &names);
    if (!s.ok() && !absl::IsNotFound(s) && opts_.log) {
      opts_.log(absl::StrCat("recall: the index ", opts_.index, " could not be read: ", s.message()));
    }
  }
  // Only groups under the index's prefix: the index is read from a shared
  // repository and must not make this server read lists of other kinds.
  const std::string prefix = absl::StrCat(opts_.index, ":");
  absl::MutexLock l(&mu_);
  preloading_ = false;
  std::vector<std::string> read;
  for (const std::string& name : names) {
    if (!absl::StartsWith(name, prefix) || name.size() > format::kMaxKeyBytes) continue;
    read.push_back(name);
  }
  std::sort(read.begin(), read.end());
  read.erase(std::unique(read.begin(), read.end()), read.end());
  index_read_ = read;
  if (stopping_) return;
  int started = 0;
  for (const std::string& name : names) {
    if (absl::StartsWith(name, prefix) && name.size() <= format::kMaxKeyBytes &&
        StartLocked(name)) {
      ++started;
    }
  }
  if (started > 0 && opts_.log) {
    opts_.log(absl::StrCat("recall: prefetching ", started, " groups named by the index ",
                           opts_.index));
  }
}

void Recall::LoadList(const std::string& group) {
  std::vector<std::string> keys;
  absl::flat_hash_set<std::string> packed;  // keys the pack put into the local tier
  {
    base::CallScope scope(
        {.cap = absl::Now() + opts_.lookup_timeout, .check = [this] { return StopCheck(); }});
    // Reading the list is a use of it (last-used refreshed at most once a
    // day): a list that stays the same is never rewritten, and gc by age
    // must not take it.
    absl::StatusOr<Entry> e;
    absl::Status s = ReadList(RecallKey(group), 2, &e, &keys);
    if (!s.ok() && !absl::IsNotFound(s) && opts_.log) {
      opts_.log(absl::StrCat("recall: the list of ", group, " could not be read: ", s.message()));
    }
    if (s.ok() && e->blobs.size() == 2 && opts_.local != nullptr) {
      // Errors leave the pack's entries to be looked up one by one.
      std::string pack;
      oci::BoundedStringSink sink(&pack, kMaxPackBytes, "a recall pack");
      absl::Status ps = store_->ReadBlob(e->blobs[1].digest, 0, sink);
      if (ps.ok()) ps = LoadPack(group, pack, &packed);
      if (!ps.ok() && opts_.log) {
        opts_.log(absl::StrCat("recall: the pack of ", group, " could not be read: ",
                               ps.message()));
      }
    }
  }
  // Once each, in the order of the list, and only keys of this group: a list
  // is read from a shared repository, and naming other keys would make this
  // server fetch what nobody here asked for.
  {
    const std::string prefix = absl::StrCat(group, ":");
    absl::flat_hash_set<std::string> seen;
    std::vector<std::string> unique;
    for (const std::string& k : keys) {
      if (unique.size() >= opts_.max_keys) break;
      if (!absl::StartsWith(k, prefix) || k.size() > format::kMaxKeyBytes) continue;
      if (seen.insert(k).second) unique.push_back(k);
    }
    keys = std::move(unique);
  }
  absl::MutexLock l(&mu_);
  Group& g = groups_[group];
  g.listed = static_cast<int64_t>(keys.size());
  g.read = keys;
  for (const std::string& k : keys) {
    if (packed.contains(k)) ++g.packed;
  }
  std::sort(g.read.begin(), g.read.end());
  g.read.erase(std::unique(g.read.begin(), g.read.end()), g.read.end());
  if (stopping_ || pool_ == nullptr) {
    g.done = true;
    return;
  }
  // In the order the previous process first used them, which is about the
  // order this build will ask for them.
  for (std::string& k : keys) {
    if (packed.contains(k)) continue;
    if (pool_->Submit([this, group, key = std::move(k)] { PrefetchKey(group, key); })) ++g.pending;
  }
  if (g.pending == 0) {
    g.done = true;
    if (g.packed > 0 && opts_.log) {
      opts_.log(absl::StrCat("recall: ", g.listed, " entries of ", group, ": ", g.packed,
                             " from its pack, in ", absl::FormatDuration(absl::Now() - g.began)));
    }
  }
}

absl::Status Recall::LoadPack(const std::string& group, absl::string_view pack,
                              absl::flat_hash_set<std::string>* packed) {
  if (!absl::ConsumePrefix(&pack, kPackHeader)) {
    return absl::DataLossError("not a recall pack (its first line is not \"ocicache-recall-pack 1\")");
  }
  const std::string prefix = absl::StrCat(group, ":");
  while (!pack.empty()) {
    if (!StopCheck().ok()) return absl::OkStatus();
    size_t nl = pack.find('\n');
    size_t n = 0;
    if (nl == absl::string_view::npos || !absl::SimpleAtoi(pack.substr(0, nl), &n) ||
        n > pack.size() - nl - 1) {
      return absl::DataLossError("a recall pack record is cut short");
    }
    absl::string_view manifest = pack.substr(nl + 1, n);
    pack.remove_prefix(nl + 1 + n);
    absl::ConsumePrefix(&pack, "\n");
    auto e = DecodeEntry(manifest, "");
    // Only what a list may name, and nothing that needs blobs the local tier
    // may not have: anything else is looked up in the registry as usual.
    if (!e.ok() || !absl::StartsWith(e->key, prefix) || !e->blobs.empty()) continue;
    LookupOptions quiet;
    quiet.touch = false;
    auto have = opts_.local->Lookup(e->key, quiet);
    if (have.ok() || (absl::IsNotFound(have.status()) && opts_.local->Put(*e).ok())) {
      packed->insert(e->key);
    }
  }
  return absl::OkStatus();
}

void Recall::PrefetchKey(const std::string& group, const std::string& key) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    in_flight_.insert(key);
  }
  bool hit = false;
  {
    base::CallScope scope(
        {.cap = absl::Now() + opts_.lookup_timeout, .check = [this] { return StopCheck(); }});
    LookupOptions quiet;
    quiet.touch = false;  // a prefetch is not a use: only the client's own request is
    hit = store_->Lookup(key, quiet).ok();
  }
  absl::MutexLock l(&mu_);
  in_flight_.erase(key);
  Finish(group, hit);
}

void Recall::Finish(const std::string& group, bool hit) {
  Group& g = groups_[group];
  (hit ? g.prefetched : g.failed) += 1;
  if (--g.pending > 0 || g.done) return;
  g.done = true;
  if (opts_.log) {
    opts_.log(absl::StrCat("recall: ", g.listed, " entries of ", group, ": ", g.packed,
                           " from its pack, ", g.prefetched, " looked up, ", g.failed,
                           " missed, in ", absl::FormatDuration(absl::Now() - g.began)));
  }
}

void Recall::AwaitPrefetch(absl::string_view key, absl::Time deadline) {
  if (opts_.max_keys == 0) return;
  struct Wait {
    const Recall* recall;
    std::string key;
  } wait{this, std::string(key)};
  absl::MutexLock l(&mu_);
  if (!in_flight_.contains(wait.key)) return;
  // A call that must not wait goes on without the key; LocalOnly() notes
  // that it wanted it, so the call runs again where it may wait.
  if (base::LocalOnly()) return;
  // Await evaluates the condition with mu_ held, which the analysis cannot see.
  mu_.AwaitWithDeadline(
      absl::Condition(
          +[](Wait* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return !w->recall->in_flight_.contains(w->key);
          },
          &wait),
      deadline);
}

void Recall::Note(absl::string_view group, absl::string_view key, bool written) {
  if (opts_.max_keys == 0) return;
  absl::MutexLock l(&mu_);
  Group* g = GroupLocked(group);
  if (g == nullptr) return;
  if (g->noted.size() < opts_.max_keys && g->noted_set.insert(std::string(key)).second) {
    g->noted.emplace_back(key);
  }
  if (written) g->written = true;
}

absl::Status Recall::Save() {
  std::vector<std::pair<std::string, std::vector<std::string>>> todo;
  std::vector<std::string> used;  // groups with a list after this save, sorted
  bool index_changed = false;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [name, g] : groups_) {
      if (g.noted.empty()) continue;
      used.push_back(name);
      std::vector<std::string> sorted = g.noted;
      std::sort(sorted.begin(), sorted.end());
      // The list it would write is there already, and so is the pack: nothing
      // was written here that a packed entry may hold in an older version.
      if (sorted == g.read && !(g.written && opts_.local != nullptr)) continue;
      todo.emplace_back(name, g.noted);
    }
    // groups_ is ordered: `used` is sorted. The index lists the groups this
    // process used, last writer wins like the lists; unchanged, it stays.
    index_changed = !opts_.index.empty() && !used.empty() && used != index_read_;
  }
  std::vector<std::string> errors;
  for (const auto& [group, keys] : todo) {
    absl::Status s = SaveGroup(group, keys);
    if (!s.ok()) errors.push_back(absl::StrCat(group, ": ", s.message()));
  }
  if (index_changed) {
    absl::Status s = SaveIndex(used);
    if (!s.ok()) errors.push_back(absl::StrCat("the index ", opts_.index, ": ", s.message()));
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("recall lists not saved: ", absl::StrJoin(errors, "; ")));
}

absl::StatusOr<oci::Descriptor> Recall::WriteList(const std::vector<std::string>& lines) {
  const std::string blob = FormatRecallList(lines);
  oci::StringSource source(blob);
  auto desc = store_->WriteBlob(oci::Digest::Of(blob), static_cast<int64_t>(blob.size()), source);
  if (desc.ok()) desc->media_type = "text/plain";
  return desc;
}

absl::Status Recall::SaveIndex(const std::vector<std::string>& groups) {
  auto desc = WriteList(groups);
  if (!desc.ok()) return desc.status();
  Entry e;
  e.key = RecallKey(opts_.index);
  nlohmann::ordered_json config = {{"recall", kConfigFormat},
                                   {"index", opts_.index},
                                   {"groups", groups.size()}};
  e.blobs.push_back(*desc);
  e.config = config.dump();
  return store_->Put(e);
}

absl::Status Recall::SaveGroup(const std::string& group, const std::vector<std::string>& keys) {
  auto desc = WriteList(keys);
  if (!desc.ok()) return desc.status();
  Entry e;
  e.key = RecallKey(group);
  nlohmann::ordered_json config = {{"recall", kConfigFormat},
                                   {"group", group},
                                   {"keys", keys.size()}};
  e.blobs.push_back(*desc);
  // The pack: the listed entries that need no blob (small objects kept inside
  // their manifest), as this server's local tier has them, so the next server
  // gets them all with one GET.
  if (opts_.local != nullptr) {
    std::string pack = kPackHeader;
    int64_t packed = 0;
    for (const std::string& k : keys) {
      LookupOptions quiet;
      quiet.touch = false;
      auto entry = opts_.local->Lookup(k, quiet);
      if (!entry.ok() || !entry->blobs.empty()) continue;
      auto enc = EncodeEntry(*entry, entry->created);
      if (!enc.ok()) continue;
      if (pack.size() + enc->manifest.size() + 24 > kMaxPackBytes) break;
      absl::StrAppend(&pack, enc->manifest.size(), "\n", enc->manifest, "\n");
      ++packed;
    }
    if (packed > 0) {
      oci::StringSource pack_source(pack);
      auto pd = store_->WriteBlob(oci::Digest::Of(pack), static_cast<int64_t>(pack.size()),
                                  pack_source);
      if (!pd.ok()) return pd.status();
      pd->media_type = kPackMediaType;
      e.blobs.push_back(*pd);
      config["packed"] = packed;
    }
  }
  e.config = config.dump();
  return store_->Put(e);
}

std::vector<Recall::GroupStats> Recall::Stats() const {
  absl::MutexLock l(&mu_);
  std::vector<GroupStats> out;
  for (const auto& [name, g] : groups_) {
    GroupStats s;
    s.group = name;
    s.listed = g.listed;
    s.prefetched = g.prefetched;
    s.failed = g.failed;
    s.packed = g.packed;
    s.noted = static_cast<int64_t>(g.noted.size());
    s.done = g.done;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace ocicache::cache
