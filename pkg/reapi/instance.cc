#include "pkg/reapi/instance.h"

#include <algorithm>
#include <deque>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "pkg/base/call_scope.h"
#include "pkg/base/parallel.h"
#include "pkg/oci/zstd_stream.h"

namespace ocicache::reapi {
namespace {

// The recall group of action results (in each instance's own store).
constexpr char kRecallGroup[] = "ac";

std::string Listed(const std::vector<BlobId>& blobs) {
  std::string out;
  size_t n = std::min<size_t>(blobs.size(), 3);
  for (size_t i = 0; i < n; ++i) absl::StrAppend(&out, i ? ", " : "", blobs[i].str());
  if (blobs.size() > n) absl::StrAppend(&out, ", ...");
  return out;
}

}  // namespace

Instance::Instance(std::string name, std::shared_ptr<cache::Store> store, InstanceOptions opts)
    : name_(std::move(name)),
      store_(std::move(store)),
      opts_(opts),
      exists_(opts.exists_max, opts.exists_ttl),
      complete_(opts.complete_max, opts.complete_ttl) {
  if (opts_.recall.max_keys > 0) {
    recall_ = std::make_unique<cache::Recall>(store_.get(), opts_.recall);
  }
}

absl::StatusOr<bool> Instance::Exists(const BlobId& blob) {
  auto b = Locate(blob);
  if (!b.ok()) return b.status();
  return b->has_value();
}

std::optional<StoredBlob> Instance::Known(const BlobId& blob) {
  if (blob.empty()) return Unpacked(blob);
  {
    absl::MutexLock l(&packed_mu_);
    auto it = packed_.find(blob.digest);
    if (it != packed_.end() && it->second.first.raw.size == blob.size) {
      if (absl::Now() - it->second.second < opts_.exists_ttl) return it->second.first;
      packed_.erase(it);
    }
  }
  if (exists_.Contains(blob.str())) return Unpacked(blob);
  return std::nullopt;
}

absl::StatusOr<std::optional<StoredBlob>> Instance::Locate(const BlobId& blob) {
  if (auto known = Known(blob)) return known;
  auto size = store_->StatBlob(blob.digest);
  if (size.ok()) {
    if (*size != blob.size) return std::nullopt;
    exists_.Add(blob.str());
    return Unpacked(blob);
  }
  if (!absl::IsNotFound(size.status())) return size.status();
  if (blob.size < kMinPackedBytes) return std::nullopt;  // never packed
  return FindPacked(blob);
}

absl::StatusOr<std::optional<StoredBlob>> Instance::FindPacked(const BlobId& blob) {
  cache::LookupOptions lo;
  auto e = store_->Lookup(MappingKey(blob.digest), lo);
  if (absl::IsNotFound(e.status())) return std::nullopt;
  if (!e.ok()) return e.status();
  auto b = ReadMappingEntry(*e, blob);
  if (!b.ok()) return std::nullopt;  // not a mapping this reader knows: a miss
  NotePacked(*b);
  return *b;
}

void Instance::NotePacked(const StoredBlob& b) {
  absl::MutexLock l(&packed_mu_);
  // Bounded like exists_: when full, start again (each is one lookup away).
  if (packed_.size() >= opts_.exists_max) packed_.clear();
  packed_[b.raw.digest] = {b, absl::Now()};
}

void Instance::ForgetPacked(const BlobId& raw) {
  absl::MutexLock l(&packed_mu_);
  packed_.erase(raw.digest);
}

absl::StatusOr<int64_t> Instance::Size(const oci::Digest& digest) {
  auto size = store_->StatBlob(digest);
  if (!absl::IsNotFound(size.status())) return size;
  auto b = FindPacked(BlobId{digest, -1});
  if (!b.ok()) return b.status();
  if (!b->has_value()) return size.status();
  return (*b)->raw.size;
}

void Instance::NoteExists(const BlobId& blob) { exists_.Add(blob.str()); }

absl::StatusOr<std::vector<BlobId>> Instance::FindMissing(const std::vector<BlobId>& blobs,
                                                         size_t max_checks, size_t* unchecked) {
  std::vector<BlobId> unique;
  std::set<BlobId> seen;
  for (const BlobId& b : blobs) {
    if (seen.insert(b).second) unique.push_back(b);
  }
  // Known present (the empty blob, the existence cache) costs nothing; the
  // others are looked up, up to max_checks of them.
  std::vector<absl::StatusOr<bool>> found(unique.size(), false);
  std::vector<size_t> to_check;
  size_t skipped = 0;
  for (size_t i = 0; i < unique.size(); ++i) {
    if (Known(unique[i]).has_value()) {
      found[i] = true;
    } else if (max_checks == 0 || to_check.size() < max_checks) {
      to_check.push_back(i);
    } else {
      ++skipped;  // reported absent
    }
  }
  base::ParallelFor(to_check.size(), opts_.parallelism,
                   [&](size_t k) { found[to_check[k]] = Exists(unique[to_check[k]]); });
  std::vector<BlobId> missing;
  for (size_t i = 0; i < unique.size(); ++i) {
    if (!found[i].ok()) return found[i].status();
    if (!*found[i]) missing.push_back(unique[i]);
  }
  if (unchecked != nullptr) *unchecked = skipped;
  return missing;
}

absl::Status Instance::Write(const BlobId& blob, oci::ByteSource& source) {
  if (opts_.zstd_level <= 0 || blob.size < kMinPackedBytes) {
    auto d = store_->WriteBlob(blob.digest, blob.size, source);
    if (!d.ok()) return d.status();
    exists_.Add(blob.str());
    return absl::OkStatus();
  }
  // Whether it pays is told by its first bytes: object files and binaries
  // compress, archives already compressed do not.
  constexpr int64_t kSampleBytes = 64 << 10;
  auto head = oci::ReadUpTo(source, kSampleBytes);
  if (!head.ok()) return head.status();
  const bool pays = oci::ZstdPays(*head, opts_.zstd_level);
  oci::PrefixedSource all(*std::move(head), &source);
  if (pays) return WritePacked(blob, all);
  auto d = store_->WriteBlob(blob.digest, blob.size, all);
  if (!d.ok()) return d.status();
  exists_.Add(blob.str());
  return absl::OkStatus();
}

namespace {

// Hashes what passes through.
class HashingSource : public oci::ByteSource {
 public:
  explicit HashingSource(oci::ByteSource& inner) : inner_(inner) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    auto got = inner_.Read(buf, n);
    if (got.ok()) hash_.Update(buf, *got);
    return got;
  }
  oci::Digest Finish() { return hash_.Finish(); }

 private:
  oci::ByteSource& inner_;
  oci::Sha256 hash_;
};

}  // namespace

absl::Status Instance::WritePacked(const BlobId& blob, oci::ByteSource& source) {
  HashingSource hashing(source);
  // The frame refuses a source longer or shorter than the blob (InvalidArgument).
  oci::ZstdSource zstd(hashing, opts_.zstd_level, blob.size);
  auto frame = store_->WriteBlob(oci::Digest(), -1, zstd);
  if (!frame.ok()) return frame.status();
  // The frame stays behind unnamed when the bytes were not the blob's: stores
  // collect blobs no entry names.
  if (oci::Digest got = hashing.Finish(); got != blob.digest) {
    return absl::InvalidArgumentError(absl::StrCat("blob ", blob.str(),
                                                   ": the data has another SHA-256 (", got.hex(),
                                                   ")"));
  }
  StoredBlob b = Packed(blob, *frame);
  if (absl::Status s = store_->Put(MappingEntry(b)); !s.ok()) return s;
  NotePacked(b);
  return absl::OkStatus();
}

absl::Status Instance::ReadPacked(const StoredBlob& b, int64_t offset, oci::ByteSink& sink) {
  UnpackedSink out(b.raw, offset, sink);
  oci::ZstdSink frames(out);
  absl::Status s = store_->ReadBlob(b.stored.digest, 0, frames);
  if (s.ok()) s = frames.Finish(b.raw.size);
  if (s.ok()) s = out.Finish();
  if (absl::IsNotFound(s)) ForgetPacked(b.raw);
  return s;
}

absl::Status Instance::WriteBytes(const BlobId& blob, absl::string_view data) {
  if (static_cast<int64_t>(data.size()) != blob.size) {
    return absl::InvalidArgumentError(absl::StrCat("blob ", blob.str(), ": got ", data.size(),
                                                   " bytes, the digest says ", blob.size));
  }
  if (blob.empty()) return absl::OkStatus();
  if (oci::Digest::Of(data) != blob.digest) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", blob.str(), ": the data has another SHA-256 (",
                     oci::Digest::Of(data).hex(), ")"));
  }
  oci::StringSource src(data);
  return Write(blob, src);
}

absl::Status Instance::Read(const BlobId& blob, int64_t offset, oci::ByteSink& sink) {
  if (offset < 0 || offset > blob.size) {
    return absl::OutOfRangeError(absl::StrCat("read_offset ", offset, " is outside blob ",
                                              blob.str(), " (", blob.size, " bytes)"));
  }
  if (blob.empty()) return absl::OkStatus();
  auto stored = Locate(blob);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) {
    return absl::NotFoundError(absl::StrCat("blob ", blob.str(), " not found"));
  }
  if (offset == blob.size) return absl::OkStatus();
  if ((*stored)->packed) return ReadPacked(**stored, offset, sink);
  absl::Status s = store_->ReadBlob(blob.digest, offset, sink);
  if (absl::IsNotFound(s)) {
    exists_.Remove(blob.str());
    // Present moments ago as it is; perhaps stored packed since.
    if (blob.size >= kMinPackedBytes) {
      auto packed = FindPacked(blob);
      if (packed.ok() && packed->has_value()) return ReadPacked(**packed, offset, sink);
    }
  }
  return s;
}

absl::StatusOr<std::string> Instance::ReadAll(const BlobId& blob, int64_t max_bytes) {
  if (blob.size > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("blob ", blob.str(), " is larger than ", max_bytes, " bytes"));
  }
  std::string out;
  oci::BoundedStringSink sink(&out, max_bytes);
  if (absl::Status s = Read(blob, 0, sink); !s.ok()) return s;
  if (static_cast<int64_t>(out.size()) != blob.size) {
    return absl::DataLossError(absl::StrCat("blob ", blob.str(), ": read ", out.size(), " bytes"));
  }
  return out;
}

absl::Status Instance::RequirePresent(const std::vector<BlobId>& blobs, absl::string_view what,
                                      std::vector<StoredBlob>* kept) {
  std::vector<BlobId> unique;
  std::set<BlobId> seen;
  for (const BlobId& b : blobs) {
    if (seen.insert(b).second) unique.push_back(b);
  }
  std::vector<absl::StatusOr<std::optional<StoredBlob>>> where(unique.size());
  base::ParallelFor(unique.size(), opts_.parallelism,
                    [&](size_t i) { where[i] = Locate(unique[i]); });
  std::vector<BlobId> missing;
  for (size_t i = 0; i < unique.size(); ++i) {
    if (!where[i].ok()) return where[i].status();
    if (where[i]->has_value()) {
      kept->push_back(**where[i]);
    } else {
      missing.push_back(unique[i]);
    }
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": ", missing.size(), " of ",
                                                      unique.size(), " blobs are not in the CAS (",
                                                      Listed(missing), "); upload them first"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v2::ActionResult> Instance::GetActionResult(const BlobId& action) {
  std::string key = ActionKey(action);
  if (recall_ != nullptr) {
    recall_->Begin(kRecallGroup);
    const base::CallScope* scope = base::CallScope::Current();
    recall_->AwaitPrefetch(key, scope != nullptr ? scope->end() : absl::Now() + absl::Seconds(10));
  }
  cache::LookupOptions lo;
  auto entry = store_->Lookup(key, lo);
  if (!entry.ok()) {
    if (absl::IsNotFound(entry.status())) {
      Count(false);
      return absl::NotFoundError(absl::StrCat("no result for action ", action.str()));
    }
    return entry.status();
  }
  auto stored = ReadActionEntry(*entry);
  if (!stored.ok()) {
    Count(false);
    return absl::NotFoundError(stored.status().message());
  }
  // Reads of its packed outputs go straight to their frames.
  for (const oci::Descriptor& layer : entry->blobs) {
    if (auto b = PackedLayer(layer)) NotePacked(*b);
  }
  if (!complete_.Contains(key)) {
    auto missing = FindMissing(EntryBlobs(*entry));
    if (!missing.ok()) return missing.status();
    if (!missing->empty()) {
      Count(false);
      return absl::NotFoundError(absl::StrCat("the result of action ", action.str(), " names ",
                                              missing->size(), " blobs no longer in the CAS (",
                                              Listed(*missing), ")"));
    }
    complete_.Add(key);
  }
  std::string bytes = std::move(stored->inline_bytes);
  if (stored->blob.has_value()) {
    auto b = ReadAll(*stored->blob, opts_.max_message_blob_bytes);
    if (!b.ok()) {
      if (!absl::IsNotFound(b.status())) return b.status();
      complete_.Remove(key);
      Count(false);
      return absl::NotFoundError(b.status().message());
    }
    bytes = *std::move(b);
  }
  v2::ActionResult result;
  if (!result.ParseFromString(bytes)) {
    Count(false);
    return absl::NotFoundError(
        absl::StrCat("the stored result of action ", action.str(), " does not parse"));
  }
  Count(true);
  if (recall_ != nullptr) recall_->Note(kRecallGroup, key);
  return result;
}

absl::StatusOr<v2::ActionResult> Instance::UpdateActionResult(const BlobId& action,
                                                              v2::ActionResult result) {
  // Inlined data is the CAS's business: stdout/stderr become blobs.
  struct Inline {
    std::string* raw;
    v2::Digest* digest;
  };
  for (Inline in : {Inline{result.mutable_stdout_raw(), result.mutable_stdout_digest()},
                    Inline{result.mutable_stderr_raw(), result.mutable_stderr_digest()}}) {
    if (in.raw->empty()) continue;
    if (in.digest->hash().empty()) {
      BlobId b{oci::Digest::Of(*in.raw), static_cast<int64_t>(in.raw->size())};
      if (absl::Status s = WriteBytes(b, *in.raw); !s.ok()) return s;
      *in.digest = ToProto(b);
    }
    in.raw->clear();
  }
  if (!result.has_stdout_digest() || result.stdout_digest().hash().empty()) {
    result.clear_stdout_digest();
  }
  if (!result.has_stderr_digest() || result.stderr_digest().hash().empty()) {
    result.clear_stderr_digest();
  }
  for (auto& f : *result.mutable_output_files()) f.clear_contents();

  auto direct = DirectBlobs(result);
  if (!direct.ok()) return direct.status();
  // The entry names each blob it keeps as stored (a packed one by its frame).
  std::vector<StoredBlob> kept;
  if (absl::Status s = RequirePresent(*direct, "action result", &kept); !s.ok()) return s;

  for (int i = 0; i < result.output_directories_size(); ++i) {
    auto tree_id = FromProto(result.output_directories(i).tree_digest(), "tree_digest");
    if (!tree_id.ok()) return tree_id.status();
    auto bytes = ReadAll(*tree_id, opts_.max_message_blob_bytes);
    if (!bytes.ok()) return bytes.status();
    v2::Tree tree;
    if (!tree.ParseFromString(*bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("output_directories[", i,
                                                     "].tree_digest: blob ", tree_id->str(),
                                                     " is not a Tree"));
    }
    auto files = TreeFileBlobs(tree);
    if (!files.ok()) return files.status();
    if (absl::Status s = RequirePresent(
            *files, absl::StrCat("tree of ", result.output_directories(i).path()), &kept);
        !s.ok()) {
      return s;
    }
  }

  std::string encoded;
  if (!result.SerializeToString(&encoded)) {
    return absl::InternalError("cannot serialize the action result");
  }
  std::optional<BlobId> result_blob;
  if (encoded.size() > kMaxInlineResultBytes) {
    BlobId b{oci::Digest::Of(encoded), static_cast<int64_t>(encoded.size())};
    if (absl::Status s = WriteBytes(b, encoded); !s.ok()) return s;
    if (absl::Status s = RequirePresent({b}, "action result", &kept); !s.ok()) return s;
    result_blob = b;
  }
  std::string key = ActionKey(action);
  complete_.Remove(key);
  if (absl::Status s = store_->Put(ActionEntry(action, encoded, result_blob, kept)); !s.ok()) {
    return s;
  }
  complete_.Add(key);
  if (recall_ != nullptr) recall_->Note(kRecallGroup, key, /*written=*/true);
  return result;
}

absl::Status Instance::WalkTree(const BlobId& root,
                                const std::function<bool(const v2::Directory&)>& visit) {
  std::deque<BlobId> queue{root};
  std::set<BlobId> seen{root};
  bool first = true;
  while (!queue.empty()) {
    BlobId id = queue.front();
    queue.pop_front();
    auto bytes = ReadAll(id, opts_.max_message_blob_bytes);
    if (!bytes.ok()) {
      if (absl::IsNotFound(bytes.status()) && !first) continue;  // absent parts are left out
      return bytes.status();
    }
    v2::Directory dir;
    if (!dir.ParseFromString(*bytes)) {
      if (first) {
        return absl::InvalidArgumentError(
            absl::StrCat("root_digest: blob ", id.str(), " is not a Directory"));
      }
      continue;
    }
    first = false;
    for (const auto& sub : dir.directories()) {
      auto child = FromProto(sub.digest(), "directory digest");
      if (child.ok() && seen.insert(*child).second) queue.push_back(*child);
    }
    if (!visit(dir)) return absl::OkStatus();
  }
  return absl::OkStatus();
}

Instances::Instances(cache::Store* default_store, StoreOpener opener, InstanceOptions opts)
    : opener_(std::move(opener)), opts_(std::move(opts)) {
  // Not owned: an aliasing pointer with no owner.
  std::shared_ptr<cache::Store> store(std::shared_ptr<cache::Store>(), default_store);
  default_ = std::make_shared<Instance>("", std::move(store), opts_);
}

absl::StatusOr<std::shared_ptr<Instance>> Instances::Get(absl::string_view name) {
  if (name.empty()) return default_;
  if (absl::Status s = ValidateInstanceName(name); !s.ok()) return s;
  if (!opener_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "instance name \"", name, "\": this server serves only the empty instance name"));
  }
  if (!opts_.allowed_instances.empty() &&
      std::find(opts_.allowed_instances.begin(), opts_.allowed_instances.end(), name) ==
          opts_.allowed_instances.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "instance name \"", name, "\" is not served here (ocicached --reapi_instances lists "
        "the names it serves)"));
  }
  absl::MutexLock l(&mu_);
  auto it = open_.find(name);
  if (it != open_.end()) {
    it->second.last_used = ++clock_;
    return it->second.instance;
  }
  while (open_.size() >= static_cast<size_t>(std::max(1, opts_.max_open_instances))) {
    CloseOneLocked();
  }
  auto store = opener_(name);
  if (!store.ok()) return store.status();
  auto inst = std::make_shared<Instance>(std::string(name), *std::move(store), opts_);
  open_.emplace(std::string(name), Open{inst, ++clock_});
  return inst;
}

void Instances::CloseOneLocked() {
  // The least recently used; one a call holds only if every one is held (the
  // call keeps it alive until it returns).
  auto victim = open_.end();
  bool victim_idle = false;
  for (auto it = open_.begin(); it != open_.end(); ++it) {
    bool idle = it->second.instance.use_count() == 1;
    if (victim == open_.end() || (idle && !victim_idle) ||
        (idle == victim_idle && it->second.last_used < victim->second.last_used)) {
      victim = it;
      victim_idle = idle;
    }
  }
  FoldCountsLocked(*victim->second.instance);
  open_.erase(victim);
  ++closed_;
}

void Instances::FoldCountsLocked(const Instance& inst) {
  std::string row = inst.name();
  if (closed_counts_.size() >= kMaxCountedNames && !closed_counts_.count(row)) row = "_other";
  auto& c = closed_counts_[row];
  c.first += inst.hits();
  c.second += inst.misses();
}

std::vector<Instances::Stats> Instances::AllStats() {
  absl::MutexLock l(&mu_);
  std::map<std::string, Stats> rows;
  rows[""] = Stats{"", default_->hits(), default_->misses()};
  for (const auto& [name, c] : closed_counts_) rows[name] = Stats{name, c.first, c.second};
  for (const auto& [name, o] : open_) {
    Stats& r = rows[name];
    r.instance = name;
    r.hits += o.instance->hits();
    r.misses += o.instance->misses();
  }
  std::vector<Stats> out;
  for (auto& [name, r] : rows) out.push_back(std::move(r));
  return out;
}

absl::Status Instances::SaveRecall(absl::Duration timeout) {
  std::vector<std::shared_ptr<Instance>> all{default_};
  {
    absl::MutexLock l(&mu_);
    for (const auto& [name, o] : open_) all.push_back(o.instance);
  }
  std::vector<std::string> errors;
  for (const auto& inst : all) {
    cache::Recall* r = inst->recall();
    if (r == nullptr) continue;
    r->Stop();
    base::CallScope scope({.cap = absl::Now() + timeout});
    if (absl::Status s = r->Save(); !s.ok()) {
      errors.push_back(absl::StrCat("instance \"", inst->name(), "\": ", s.message()));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrJoin(errors, "; "));
}

size_t Instances::open_count() {
  absl::MutexLock l(&mu_);
  return open_.size();
}

int64_t Instances::closed_count() {
  absl::MutexLock l(&mu_);
  return closed_;
}

}  // namespace ocicache::reapi
