#include "pkg/cache/registry_store.h"

#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/base/parallel.h"
#include "pkg/cache/format.h"
#include "pkg/cache/records.h"
#include "pkg/oci/pipe.h"

namespace ocicache::cache {
namespace {

// Blob checks and mounts at Put in flight at once.
constexpr size_t kBlobCheckThreads = 8;

bool IsEntryTag(absl::string_view tag) {
  return absl::StartsWith(tag, "k.") || absl::StartsWith(tag, "h.");
}

// "http://host:port" -> "host:port".
std::string HostOf(absl::string_view base_url) {
  size_t p = base_url.find("://");
  return std::string(p == absl::string_view::npos ? base_url : base_url.substr(p + 3));
}

// The entry tags a registry listed, by key.
class TagSnapshot : public KeySnapshot {
 public:
  explicit TagSnapshot(absl::flat_hash_set<std::string> tags) : tags_(std::move(tags)) {}
  bool MayHold(absl::string_view key) const override {
    auto tag = TagForKey(key);
    return !tag.ok() || tags_.contains(*tag);  // a key without a tag: cannot tell
  }
  size_t size() const override { return tags_.size(); }

 private:
  const absl::flat_hash_set<std::string> tags_;
};

}  // namespace

ClientPool::ClientPool(registry::ClientOptions opts, ClientPoolOptions pool)
    : opts_(std::move(opts)), pool_(std::move(pool)) {
  pool_.home = absl::AsciiStrToLower(pool_.home);
  std::set<std::string> allowed;
  for (const std::string& h : pool_.allowed) allowed.insert(absl::AsciiStrToLower(h));
  pool_.allowed = std::move(allowed);
}

absl::StatusOr<std::shared_ptr<registry::Client>> ClientPool::Get(const std::string& registry) {
  const std::string host = absl::AsciiStrToLower(registry);
  const bool home = host == pool_.home;
  if (!home && pool_.restrict_hosts && pool_.allowed.count(host) == 0 &&
      pool_.allowed.count("*") == 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "registry ", registry, " is not allowed: this server contacts ",
        pool_.home.empty() ? "no registry" : absl::StrCat("its own registry (", pool_.home, ")"),
        " and those named by ocicached --allowed_registries only"));
  }
  absl::MutexLock l(&mu_);
  auto it = clients_.find(host);
  if (it != clients_.end()) return it->second;
  registry::ClientOptions opts = opts_;
  if (!home) opts.credentials = {};  // given for the home registry only
  auto c = registry::Client::Create(registry, opts);
  if (!c.ok()) return c.status();
  std::shared_ptr<registry::Client> shared(std::move(*c));
  clients_[host] = shared;
  return shared;
}

absl::StatusOr<std::unique_ptr<RegistryStore>> RegistryStore::Create(
    std::shared_ptr<registry::Client> client, std::string repository, RegistryStoreOptions opts) {
  if (!registry::IsValidRepositoryName(repository)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid repository name \"", repository,
                                                   "\": lowercase components joined by '/'"));
  }
  if (opts.shards < 0 || opts.shards > 256) {
    return absl::InvalidArgumentError("shards must be between 0 and 256");
  }
  const bool writer = !opts.record_writer.empty();
  std::unique_ptr<RegistryStore> store(
      new RegistryStore(std::move(client), std::move(repository), std::move(opts)));
  if (writer) store->rec_thread_ = std::thread(&RegistryStore::RecordLoop, store.get());
  return store;
}

RegistryStore::~RegistryStore() {
  if (!rec_thread_.joinable()) return;
  {
    absl::MutexLock l(&rec_mu_);
    rec_stopping_ = true;
  }
  rec_thread_.join();
  // Best effort, bounded: a registry that is gone must not hold up a shutdown.
  base::CallScope scope({.cap = absl::Now() + absl::Seconds(2)});
  FlushRecords().IgnoreError();
}

void RegistryStore::RecordLoop() {
  absl::MutexLock l(&rec_mu_);
  while (!rec_mu_.AwaitWithTimeout(absl::Condition(&rec_stopping_), absl::Seconds(2))) {
    if (!rec_dirty_ || (rec_waiting_ < opts_.record_flush_rows &&
                        absl::Now() - rec_oldest_ < opts_.record_flush_age)) {
      continue;
    }
    rec_mu_.Unlock();
    {
      // Rows stay queued on failure; the next round tries again. Bounded, so a
      // hung registry cannot hold up a shutdown for long.
      base::CallScope scope({.cap = absl::Now() + absl::Seconds(5)});
      FlushRecords().IgnoreError();
    }
    rec_mu_.Lock();
  }
}

void RegistryStore::NoteRow(const Entry& entry, const std::string& tag,
                            const oci::Digest& manifest_digest, absl::Time now) {
  if (opts_.record_writer.empty()) return;
  EntryInfo row;
  row.key = entry.key;
  row.tag = tag;
  row.manifest_digest = manifest_digest;
  row.created = entry.created == absl::InfinitePast() ? now : entry.created;
  row.last_used = entry.last_used == absl::InfinitePast() ? now : entry.last_used;
  row.size = static_cast<int64_t>(entry.config.size() + entry.descriptor.size());
  for (const auto& b : entry.blobs) row.size += b.size;
  row.annotations = entry.annotations;
  absl::MutexLock l(&rec_mu_);
  records::MergeRow(rec_rows_, std::move(row));
  if (!rec_dirty_) rec_oldest_ = now;
  rec_dirty_ = true;
  ++rec_waiting_;
}

absl::Status RegistryStore::FlushRecords() {
  std::vector<EntryInfo> rows;
  int64_t part;
  bool full;
  {
    absl::MutexLock l(&rec_mu_);
    if (!rec_dirty_ || opts_.record_writer.empty()) return absl::OkStatus();
    rows.reserve(rec_rows_.size());
    for (const auto& [tag, row] : rec_rows_) rows.push_back(row);
    part = rec_part_;
    // A full part is pushed for the last time; rows noted from now on (also
    // while it is pushed) start the next one.
    full = rec_rows_.size() >= opts_.record_part_rows;
    if (full) {
      rec_rows_.clear();
      ++rec_part_;
    }
    rec_dirty_ = false;
    rec_waiting_ = 0;
    rec_oldest_ = absl::InfiniteFuture();
  }
  absl::Status s = PushRecord(opts_.record_writer, part, rows);
  if (s.ok()) return s;
  // Tried again at the next round, with the rows noted meanwhile.
  absl::MutexLock l(&rec_mu_);
  if (full) {
    for (EntryInfo& r : rows) records::MergeRow(rec_rows_, std::move(r));
  }
  rec_waiting_ += rows.size();
  if (!rec_dirty_) rec_oldest_ = absl::Now() - opts_.record_flush_age;
  rec_dirty_ = true;
  return s;
}

absl::Status RegistryStore::PushRecord(const std::string& writer, int64_t part,
                                       const std::vector<EntryInfo>& rows) {
  const std::string jsonl = records::EncodeRows(rows);
  oci::Descriptor empty = oci::EmptyDescriptor();
  if (absl::Status s = EnsureSmallBlob(repo_, empty, oci::kEmptyJsonContent, /*ask_first=*/true,
                                       /*trust_known=*/true);
      !s.ok()) {
    return s;
  }
  oci::StringSource src(jsonl);
  auto layer = client_->PutBlob(repo_, oci::Digest::Of(jsonl), jsonl.size(), src);
  if (!layer.ok()) return layer.status();
  std::string manifest = records::EncodeRecordManifest(*layer, writer,
                                                       static_cast<int64_t>(rows.size()), absl::Now());
  return client_->PutManifest(repo_, records::RecordTag(writer, part), manifest,
                              oci::media::kImageManifest)
      .status();
}

std::string RegistryStore::Describe() const {
  std::string s = absl::StrCat("registry ", client_->registry(), "/", repo_);
  if (opts_.shards > 1) absl::StrAppend(&s, " (", opts_.shards, " shards)");
  return s;
}

std::string RegistryStore::RepositoryForKey(absl::string_view key) const {
  if (opts_.shards <= 1) return repo_;
  return absl::StrCat(repo_, "/", ShardForKey(key, opts_.shards));
}

Location RegistryStore::LocationOf(const oci::Descriptor& d) const {
  Location loc;
  loc.media_type = d.media_type;
  loc.digest = d.digest;
  loc.size = d.size;
  loc.url = BlobUrl(client_->base_url(), repo_, d.digest);
  return loc;
}

absl::StatusOr<int64_t> RegistryStore::StatBlob(const oci::Digest& digest) {
  return client_->StatBlob(repo_, digest);
}

absl::Status RegistryStore::ReadBlob(const oci::Digest& digest, int64_t offset,
                                     oci::ByteSink& sink) {
  int64_t size = -1;
  if (offset > 0) {
    // A Range request past the end answers 416; report it as the spec-shaped error.
    auto s = client_->StatBlob(repo_, digest);
    if (!s.ok()) return s.status();
    size = *s;
    if (offset > size) {
      return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the blob's end ", size));
    }
    if (offset == size) return absl::OkStatus();
  }
  return client_->GetBlob(repo_, digest, size, sink, offset);
}

absl::Status RegistryStore::ReadBlobRange(const oci::Digest& digest, int64_t offset,
                                          int64_t length, oci::ByteSink& sink) {
  if (offset < 0 || length < 0) {
    return absl::InvalidArgumentError("ReadBlobRange: a negative offset or length");
  }
  absl::Status s = client_->GetBlob(repo_, digest, -1, sink, offset, length);
  // A range past the blob's end: 416 from the registry (or a short answer).
  if (absl::IsDataLoss(s) || absl::IsInvalidArgument(s)) {
    auto size = client_->StatBlob(repo_, digest);
    if (size.ok() && offset + length > *size) {
      return absl::OutOfRangeError(absl::StrCat("bytes ", offset, "+", length,
                                                " pass the blob's end ", *size));
    }
  }
  return s;
}

absl::StatusOr<oci::Descriptor> RegistryStore::WriteBlob(const oci::Digest& expected, int64_t size,
                                                         oci::ByteSource& source) {
  // Asking first saves an upload only when the registry has the blob, and costs
  // a round trip and a request either way: below this size the upload (two
  // requests) is sent straight away (a Go build's fill: 355 of its 497 objects).
  constexpr int64_t kAskFirstBytes = 16 << 10;
  if (expected.valid() && (size < 0 || size >= kAskFirstBytes)) {
    auto have = client_->StatBlob(repo_, expected);
    if (have.ok() && (size < 0 || *have == size)) {
      oci::Descriptor d;
      d.media_type = oci::media::kOctetStream;
      d.digest = expected;
      d.size = *have;
      return d;
    }
    if (!have.ok() && !absl::IsNotFound(have.status())) return have.status();
  }
  auto d = client_->PutBlob(repo_, expected, size, source);
  if (!d.ok()) return d.status();
  if (size >= 0 && d->size != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob is ", d->size, " bytes, expected ", size));
  }
  return d;
}

absl::Status RegistryStore::MountBlob(const Location& from) {
  if (client_->StatBlob(repo_, from.digest).ok()) return absl::OkStatus();
  std::string base, from_repo;
  oci::Digest digest;
  if (absl::Status s = ParseBlobUrl(from.url, &base, &from_repo, &digest); !s.ok()) return s;
  if (digest != from.digest) {
    return absl::InvalidArgumentError("location URL names another digest than the location");
  }
  std::shared_ptr<registry::Client> source;
  if (base == client_->base_url()) {
    auto mounted = client_->MountBlob(repo_, digest, from_repo);
    if (mounted.ok() && *mounted) return absl::OkStatus();
    source = client_;
  } else if (opts_.pool != nullptr) {
    auto c = opts_.pool->Get(HostOf(base));
    if (!c.ok()) return c.status();
    source = *c;
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot copy from ", base, ": no client for other registries"));
  }
  return CopyBlob(*source, from_repo, repo_, digest, from.size);
}

absl::Status RegistryStore::CopyBlob(const std::string& from_repo, const std::string& to_repo,
                                     const oci::Digest& digest, int64_t size) {
  return CopyBlob(*client_, from_repo, to_repo, digest, size);
}

absl::Status RegistryStore::CopyBlob(registry::Client& source, const std::string& from_repo,
                                     const std::string& to_repo, const oci::Digest& digest,
                                     int64_t size) {
  // Streamed: the download feeds a bounded pipe that the upload reads.
  return oci::Transfer(
      [&](oci::ByteSink& sink) {
        // The target registry commits the upload only if it hashes to `digest`.
        oci::CheckedDownstreamSink checked(sink);
        return source.GetBlob(from_repo, digest, size, checked);
      },
      [&](oci::ByteSource& src) { return client_->PutBlob(to_repo, digest, size, src).status(); });
}

absl::StatusOr<Entry> RegistryStore::Lookup(absl::string_view key, const LookupOptions& opts) {
  return LookupManifest(key, opts, nullptr);
}

absl::StatusOr<Entry> RegistryStore::LookupManifest(absl::string_view key,
                                                    const LookupOptions& opts,
                                                    oci::Digest* manifest_digest) {
  auto tag = TagForKey(key);
  if (!tag.ok()) return tag.status();
  std::string repo = RepositoryForKey(key);
  auto m = client_->GetManifest(repo, *tag);
  if (!m.ok()) {
    if (absl::IsNotFound(m.status())) return absl::NotFoundError(absl::StrCat("miss: ", key));
    return m.status();
  }
  auto e = DecodeEntry(m->bytes, key);
  if (!e.ok()) return e.status();
  if (!SatisfiesLookup(*e, opts)) {
    return absl::NotFoundError(absl::StrCat("miss: ", key, " (annotations differ)"));
  }
  if (manifest_digest != nullptr) *manifest_digest = m->digest;
  absl::Time now = absl::Now();
  if (opts.touch && NeedsTouch(*e, now)) {
    Entry touched = *e;
    touched.last_used = now;
    // Best effort: a failed refresh must not turn a hit into an error.
    if (PutEncoded(touched, PutMode::kTouch).ok()) e->last_used = now;
  }
  return e;
}

absl::Status RegistryStore::EnsureSmallBlob(const std::string& repo, const oci::Descriptor& d,
                                            const std::string& bytes, bool ask_first,
                                            bool trust_known) {
  constexpr size_t kMaxKnown = 100000;
  const std::string known = absl::StrCat(repo, "@", d.digest.str());
  if (trust_known) {
    absl::MutexLock l(&known_mu_);
    if (known_small_.contains(known)) return absl::OkStatus();
  }
  absl::Status s;
  if (!ask_first || !client_->StatBlob(repo, d.digest).ok()) {
    oci::StringSource src(bytes);
    s = client_->PutBlob(repo, d.digest, d.size, src).status();
  }
  if (s.ok()) {
    absl::MutexLock l(&known_mu_);
    if (known_small_.size() < kMaxKnown) known_small_.insert(known);
  }
  return s;
}

absl::Status RegistryStore::Put(const Entry& entry) { return PutEncoded(entry, PutMode::kCheck); }

absl::Status RegistryStore::PutFresh(const Entry& entry) {
  return PutEncoded(entry, PutMode::kFresh);
}

absl::Status RegistryStore::PutEncoded(const Entry& entry, PutMode mode) {
  const absl::Time now = absl::Now();
  auto enc = EncodeEntry(entry, now);
  if (!enc.ok()) return enc.status();
  std::string repo = RepositoryForKey(entry.key);
  if (mode != PutMode::kTouch) {
    // Each blob is checked (and mounted into a shard) on its own; an entry of
    // many blobs (a Go session list naming its objects) does them in parallel.
    std::vector<absl::Status> done(entry.blobs.size());
    base::ParallelFor(entry.blobs.size(), kBlobCheckThreads, [&](size_t i) {
      const oci::Descriptor& b = entry.blobs[i];
      if (mode == PutMode::kCheck) {
        auto have = client_->StatBlob(repo_, b.digest);
        if (!have.ok()) {
          done[i] = absl::IsNotFound(have.status())
                        ? absl::FailedPreconditionError(absl::StrCat(
                              "entry names blob ", b.digest.str(), " which is not in ", repo_))
                        : have.status();
          return;
        }
      }
      if (repo != repo_) {
        auto mounted = client_->MountBlob(repo, b.digest, repo_);
        if (!mounted.ok()) {
          done[i] = mounted.status();
          return;
        }
        // A registry may decline a mount (202: distribution does whenever its look-up
        // in the source fails, also under load): copy the blob into the shard instead.
        if (!*mounted) {
          if (absl::Status s = CopyBlob(repo_, repo, b.digest, b.size); !s.ok()) {
            done[i] = absl::Status(s.code(), absl::StrCat("registry would not mount ",
                                                          b.digest.str(), " from ", repo_, " into ",
                                                          repo, ", and copying it failed: ",
                                                          s.message()));
          }
        }
      }
    });
    for (const absl::Status& s : done) {
      if (!s.ok()) return s;
    }
  }
  // distribution 2.8 can refuse a manifest (DIGEST_INVALID, MANIFEST_BLOB_UNKNOWN)
  // while another client commits one of its blobs at the same moment; parallel
  // jobs saving identical small blobs hit this. Re-check the blobs and try again.
  absl::Status put;
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(50 << attempt));
    for (const auto& [d, bytes] : enc->small_blobs) {
      // A retry after the registry said a blob is unknown checks them all again.
      if (absl::Status s = EnsureSmallBlob(repo, d, bytes, mode != PutMode::kFresh || attempt > 0,
                                           /*trust_known=*/attempt == 0);
          !s.ok()) {
        return s;
      }
    }
    put = client_->PutManifest(repo, enc->tag, enc->manifest, oci::media::kImageManifest).status();
    std::string code = registry::RegistryErrorCode(put);
    if (put.ok() || (code != "DIGEST_INVALID" && code != "MANIFEST_BLOB_UNKNOWN" &&
                     code != "BLOB_UNKNOWN")) {
      break;
    }
  }
  if (put.ok()) NoteRow(entry, enc->tag, enc->manifest_digest, now);
  return put;
}

absl::Status RegistryStore::Delete(absl::string_view key) {
  return DeleteIfUnusedSince(key, absl::InfiniteFuture());
}

absl::Status RegistryStore::DeleteIfUnusedSince(absl::string_view key, absl::Time cutoff) {
  auto tag = TagForKey(key);
  if (!tag.ok()) return tag.status();
  std::string repo = RepositoryForKey(key);
  auto m = client_->GetManifest(repo, *tag);
  if (!m.ok()) return m.status();
  // The tag might hold another key after a hash collision: never delete that.
  auto e = DecodeEntry(m->bytes, key);
  if (!e.ok()) return e.status();
  if (e->last_used >= cutoff) {
    return absl::FailedPreconditionError(absl::StrCat(key, " was used since the cut"));
  }
  return client_->DeleteManifest(repo, m->digest);
}

absl::Status RegistryStore::DeleteManifest(absl::string_view key, const oci::Digest& digest) {
  if (auto tag = TagForKey(key); !tag.ok()) return tag.status();
  return client_->DeleteManifest(RepositoryForKey(key), digest);
}

absl::Status RegistryStore::ReplaceRecords(const std::vector<EntryInfo>& live) {
  std::vector<std::pair<std::string, oci::Digest>> old;
  {
    absl::MutexLock l(&rec_mu_);
    old = records_read_;
  }
  const std::string writer = records::NewWriterName("gc");
  std::vector<EntryInfo> part;
  int64_t n = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    part.push_back(live[i]);
    if (part.size() >= opts_.record_part_rows || i + 1 == live.size()) {
      if (absl::Status s = PushRecord(writer, ++n, part); !s.ok()) return s;
      part.clear();
    }
  }
  // Only once the merged set is in: a record pushed meanwhile under a tag read
  // has another digest and stays.
  for (const auto& [tag, digest] : old) {
    absl::Status s = client_->DeleteManifest(repo_, digest);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
  }
  absl::MutexLock l(&rec_mu_);
  records_read_.clear();
  return absl::OkStatus();
}

std::vector<std::string> RegistryStore::Repositories() const {
  std::vector<std::string> repos;
  if (opts_.shards <= 1) {
    repos.push_back(repo_);
  } else {
    for (int i = 0; i < opts_.shards; ++i) repos.push_back(absl::StrFormat("%s/%02x", repo_, i));
  }
  return repos;
}

absl::StatusOr<std::unique_ptr<const KeySnapshot>> RegistryStore::SnapshotKeys(size_t max_keys) {
  absl::flat_hash_set<std::string> seen;
  for (const std::string& repo : Repositories()) {
    auto tags = client_->ListTags(repo);
    if (absl::IsNotFound(tags.status())) continue;  // no such repository: nothing in it
    if (!tags.ok()) return tags.status();
    for (std::string& t : *tags) {
      if (IsEntryTag(t)) seen.insert(std::move(t));
    }
    if (seen.size() > max_keys) {
      return absl::ResourceExhaustedError(absl::StrCat(repo_, " holds more than ", max_keys,
                                                       " entries"));
    }
  }
  return std::make_unique<TagSnapshot>(std::move(seen));
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> RegistryStore::CountEntryTags() {
  std::vector<std::pair<std::string, int64_t>> counts;
  for (std::string& repo : Repositories()) {
    auto tags = client_->ListTags(repo);
    if (!tags.ok() && !absl::IsNotFound(tags.status())) return tags.status();
    int64_t n = 0;
    if (tags.ok()) n = std::count_if(tags->begin(), tags->end(), IsEntryTag);
    counts.emplace_back(std::move(repo), n);
  }
  return counts;
}

absl::Status RegistryStore::List(const std::function<bool(const EntryInfo&)>& fn) {
  const std::vector<std::string> repos = Repositories();
  // The records first: they live in the base repository.
  absl::StatusOr<std::vector<std::string>> base_tags;
  std::map<std::string, EntryInfo> by_tag;
  std::vector<std::pair<std::string, oci::Digest>> read;
  {
    std::vector<std::string> record_tags;
    base_tags = client_->ListTags(repo_);
    if (base_tags.ok()) {
      for (const auto& t : *base_tags) {
        if (records::IsRecordTag(t)) record_tags.push_back(t);
      }
    } else if (!absl::IsNotFound(base_tags.status())) {
      return base_tags.status();
    }
    std::vector<std::vector<EntryInfo>> rows(record_tags.size());
    std::vector<oci::Digest> digests(record_tags.size());
    absl::Mutex mu;
    absl::Status failed;
    base::ParallelFor(record_tags.size(), 8, [&](size_t i) {
      auto m = client_->GetManifest(repo_, record_tags[i]);
      if (!m.ok()) {
        // Deleted meanwhile (a gc's merge): its rows are in the merged set.
        if (!absl::IsNotFound(m.status())) {
          absl::MutexLock l(&mu);
          failed.Update(m.status());
        }
        return;
      }
      auto layer = records::RecordLayer(m->bytes);
      if (!layer.ok()) return;  // not ours: ignored
      std::string jsonl;
      oci::StringSink sink(&jsonl);
      absl::Status g = client_->GetBlob(repo_, layer->digest, layer->size, sink);
      if (!g.ok()) {
        if (!absl::IsNotFound(g)) {
          absl::MutexLock l(&mu);
          failed.Update(g);
        }
        return;
      }
      rows[i] = records::DecodeRows(jsonl);
      digests[i] = m->digest;
    });
    if (!failed.ok()) return failed;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!digests[i].valid()) continue;
      read.emplace_back(record_tags[i], digests[i]);
      for (EntryInfo& r : rows[i]) records::MergeRow(by_tag, std::move(r));
    }
  }
  {
    absl::MutexLock l(&rec_mu_);
    records_read_ = read;
  }
  for (const auto& repo : repos) {
    auto tags = repo == repo_ ? std::move(base_tags) : client_->ListTags(repo);
    if (!tags.ok()) {
      if (absl::IsNotFound(tags.status())) continue;  // nothing pushed there yet
      return tags.status();
    }
    for (const auto& tag : *tags) {
      if (!IsEntryTag(tag)) continue;
      if (auto it = by_tag.find(tag);
          it != by_tag.end() && RepositoryForKey(it->second.key) == repo) {
        EntryInfo info = std::move(it->second);
        by_tag.erase(it);
        if (!fn(info)) return absl::OkStatus();
        continue;
      }
      auto m = client_->GetManifest(repo, tag);
      if (!m.ok()) {
        if (absl::IsNotFound(m.status())) continue;  // deleted meanwhile
        return m.status();
      }
      auto info = InfoFromManifest(m->bytes, tag, m->digest);
      if (!info.ok()) continue;  // not ours
      if (!fn(*info)) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace ocicache::cache
