// The session list: reading it at start, recording the pairs used, writing it at
// close, and the local session copy.
#include "pkg/gocacheprog/session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "pkg/gocacheprog/protocol.h"

namespace ocicache::gocacheprog {
namespace {

constexpr char kSessionKind[] = "go-session";
constexpr char kLocalSessionKind[] = "go-session-local";
constexpr int64_t kMaxSessionBytes = 64 << 20;
constexpr size_t kMaxSessionPairs = 200000;
// Packs with a larger object are not read (object by object instead): the stream
// holds one object at a time in memory.
constexpr int64_t kMaxPackObject = int64_t{512} << 20;

}  // namespace

Session::Session(Env env)
    : env_(std::move(env)),
      prefetches_(
          std::make_unique<base::ThreadPool>(std::max(1, env_.opts->prefetch_threads), 0)) {}

Session::~Session() { prefetches_.reset(); }

void Session::Start() {
  if (LoadLocal() || env_.remote_lookup == nullptr) return;
  // Entering the gate here, before go's first get can, makes the list's read the
  // call that tests the registry: gets wait for its outcome (one round trip, or
  // the list and a key snapshot when there is no list), never the reverse.
  bool probe = false;
  if (!env_.registry->Enter(&probe)) return;
  load_probe_ = probe;
  load_submitted_ = true;
  // The pool drops tasks not yet started when go closes early (StopPrefetching):
  // whichever of the two claims load_claimed_ first settles the probe.
  prefetches_->Submit([this, probe] {
    if (!load_claimed_.exchange(true)) LoadRemote(probe);
  });
}

bool Session::KnownAbsent(const std::string& key) {
  absl::MutexLock l(&mu_);
  return snapshot_ != nullptr && !snapshot_->MayHold(key);
}

void Session::StopPrefetching() {
  draining_ = true;
  // Prefetches go would not ask for any more: drop what is queued.
  prefetches_->Abort();
  prefetches_->WaitIdle(absl::InfiniteFuture());
  // The list's read was dropped before it began: let go of its probe, or calls
  // still to come (uploads, the list written at close) would wait for it forever.
  if (load_submitted_ && !load_claimed_.exchange(true)) env_.registry->Abandon(load_probe_);
}

void Session::RecordUse(const std::string& key, const GoObject& o) {
  absl::MutexLock l(&mu_);
  if (used_.size() >= kMaxSessionPairs) return;
  if (used_keys_.insert(key).second) used_.emplace_back(key, o);
}

void Session::NoteStored(const oci::Digest& output_id, const oci::Descriptor& stored) {
  if (!stored.digest.valid() || stored.size <= 0) return;
  absl::MutexLock l(&mu_);
  if (stored_.size() >= kMaxSessionPairs) return;
  stored_[output_id.hex()] = stored;
}

bool Session::LoadLocal() {
  // The pairs a build in this directory used, with their objects (most still
  // here): no registry round trip, and it works while the registry is down.
  cache::LookupOptions lo;
  auto e = env_.local->Lookup(LocalKey(), lo);
  if (!e.ok()) return false;
  auto kind = nlohmann::json::parse(e->config, nullptr, false);
  if (!kind.is_object() || kind.value("kind", "") != kLocalSessionKind || e->blobs.empty() ||
      e->blobs[0].size > kMaxSessionBytes) {
    return false;
  }
  std::string list;
  oci::StringSink sink(&list);
  if (!env_.local->ReadBlob(e->blobs[0].digest, 0, sink).ok()) return false;
  Use(list, *e, /*from_local=*/true, kind.value("remotePack", false), PackFrames{});
  return true;
}

void Session::LoadRemote(bool probe) {
  cache::LookupOptions lo;
  auto e = env_.remote_lookup->Lookup(env_.opts->session_key, lo);
  bool fallback = false;
  if (absl::IsNotFound(e.status()) && !env_.opts->session_fallback_key.empty()) {
    // No build like this one yet: the nearest one's list (one more round trip).
    e = env_.remote_lookup->Lookup(env_.opts->session_fallback_key, lo);
    fallback = e.ok();
  }
  if (absl::IsNotFound(e.status()) && env_.opts->key_snapshot_max_keys > 0) {
    // The first build of this module here: most gets will be misses, each a round
    // trip go waits for. If the registry holds few entries, their tag list says
    // which keys to ask for at all (a store that cannot say, or holds more: none).
    auto snap = env_.remote_lookup->SnapshotKeys(env_.opts->key_snapshot_max_keys);
    if (snap.ok()) {
      absl::MutexLock l(&mu_);
      snapshot_ = *std::move(snap);
    }
  }
  // The lookups (and the snapshot) settle the probe: gets waiting for it need not
  // wait for the list's bytes.
  env_.registry->Exit(probe, e.status(), "reading the session list");
  if (!e.ok()) return;
  std::string list;
  absl::Status s;
  auto kind = nlohmann::json::parse(e->config, nullptr, false);
  if (!kind.is_object() || kind.value("kind", "") != kSessionKind || e->blobs.empty() ||
      e->blobs[0].size > kMaxSessionBytes) {
    s = absl::DataLossError("not a session list");
  } else {
    oci::StringSink sink(&list);
    s = env_.remote_lookup->ReadBlob(e->blobs[0].digest, 0, sink);
  }
  if (!s.ok()) {
    env_.registry->Exit(false, s, "reading the session list");
    return;
  }
  PackFrames frames;
  // A pack stored in a way this version does not know is not used (one by one).
  const bool pack = e->blobs.size() >= 2 && ParsePackFrames(e->config, &frames);
  Use(list, *e, /*from_local=*/false, pack, frames);
  absl::MutexLock l(&mu_);
  loaded_fallback_ = fallback;
}

bool Session::ParsePackFrames(const std::string& config, PackFrames* frames) {
  *frames = PackFrames{};
  auto j = nlohmann::json::parse(config, nullptr, false);
  if (!j.is_object() || !j.contains("packEncoding")) return true;  // raw
  const auto& enc = j["packEncoding"];
  if (!enc.is_string() || (enc != "zstd" && enc != "zstd-refs")) return false;
  frames->with_refs = enc == "zstd-refs";
  const auto& f = j.value("packFrames", nlohmann::json());
  // With references, every object may be one (no frames at all).
  if (!f.is_array() || (f.empty() && !frames->with_refs)) return false;
  for (const auto& row : f) {
    if (!row.is_array() || row.size() != 2 || !row[0].is_number_unsigned() ||
        !row[1].is_number_unsigned()) {
      return false;
    }
    const size_t start = row[0].get<size_t>();
    const int64_t bytes = row[1].get<int64_t>();
    // Frames start at object 0, in ascending order, and are never empty.
    if ((frames->starts.empty() ? start != 0 : start <= frames->starts.back()) || bytes <= 0) {
      return false;
    }
    frames->starts.push_back(start);
    frames->bytes.push_back(bytes);
  }
  if (!frames->with_refs) return true;
  const auto& r = j.value("packRefs", nlohmann::json());
  if (!r.is_array() || r.empty()) return false;
  for (const auto& i : r) {
    // Pack indices in ascending order.
    if (!i.is_number_unsigned() ||
        (!frames->refs.empty() && i.get<size_t>() <= frames->refs.back())) {
      return false;
    }
    frames->refs.push_back(i.get<size_t>());
  }
  return true;
}

void Session::Use(const std::string& list, const cache::Entry& e, bool from_local,
                  bool remote_pack, const PackFrames& frames) {
  // Lines "ACTIONHEX OUTPUTHEX SIZE", in the order the last session used them.
  // The pack (blobs[1], if any) holds each object of size > 0 once, in list order.
  std::vector<std::string> keys;
  std::vector<GoObject> pack;                       // the pack's objects, in order
  std::vector<std::vector<std::string>> pack_keys;  // keys answered by each
  std::vector<std::string> empty;                   // keys of empty objects
  std::vector<std::string> queued;                  // keys to prefetch one by one
  bool pack_usable = !from_local && remote_pack && env_.opts->session_pack;
  {
    absl::MutexLock l(&mu_);
    loaded_session_ = e.blobs[0].digest;
    loaded_pack_ = remote_pack;
    absl::flat_hash_map<std::string, size_t> pack_index;  // output hex -> index in pack
    for (absl::string_view line : absl::StrSplit(list, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
      int64_t size = 0;
      if (f.size() != 3 || f[0].size() != 2 * kIdBytes || !absl::SimpleAtoi(f[2], &size) ||
          size < 0 || size > env_.opts->max_object_bytes) {
        pack_usable = false;  // the layout can no longer be followed
        continue;
      }
      auto d = oci::Digest::FromHex(f[1]);
      if (!d.ok() || (size == 0 && *d != oci::Digest::Of(""))) {
        pack_usable = false;
        continue;
      }
      std::string key(f[0]);
      size_t at = pack.size();
      if (size > 0) {
        auto [it, added] = pack_index.emplace(d->hex(), pack.size());
        if (added) {
          pack.push_back(GoObject{*d, size});
          pack_keys.emplace_back();
        } else if (pack[it->second].size != size) {
          pack_usable = false;
        }
        at = it->second;
      }
      if (prefetch_.count(key) > 0) continue;
      // An empty object needs no bytes: answered now. Its pair came from the
      // registry unless the local copy listed it.
      Prefetch p{GoObject{*d, size}, State::kQueued};
      if (size == 0) {
        p.state = State::kOk;
        p.downloaded = !from_local;
        empty.push_back(key);
      }
      prefetch_[key] = p;
      if (size > 0) pack_keys[at].push_back(key);
      keys.push_back(std::move(key));
    }
    int64_t total = 0, missing = 0;
    for (size_t i = 0; i < pack.size(); ++i) {
      const GoObject& o = pack[i];
      if (o.size > kMaxPackObject) pack_usable = false;
      total += o.size;
      auto have = env_.local->StatBlob(o.output_id);
      if (!have.ok() || *have != o.size) {
        missing += o.size;
        continue;
      }
      // Already here (a warm directory): the list says which key it answers.
      for (const auto& k : pack_keys[i]) prefetch_[k].state = State::kOk;
    }
    if (env_.remote_lookup == nullptr) {
      // No registry to fetch the missing ones from: those keys take the normal path.
      for (const auto& k : keys) {
        if (prefetch_[k].state == State::kQueued) prefetch_[k].state = State::kFailed;
      }
    }
    // Worth it when most bytes are missing here (a fresh machine); a warm local
    // directory is topped up object by object.
    // The stored pack must match the list: its size, or its frames' sizes and
    // object ranges.
    int64_t stored = 0;
    for (int64_t n : frames.bytes) stored += n;
    bool matches;
    if (frames.raw()) {
      matches = total == e.blobs[1].size;
    } else if (!frames.with_refs) {
      matches = stored == e.blobs[1].size && frames.starts.back() < pack.size();
    } else {
      // The frames hold the objects that are not references; each reference is
      // the blob of its object's entry: a zstd frame, or the object itself.
      const size_t framed = pack.size() - std::min(pack.size(), frames.refs.size());
      const size_t first_ref = frames.starts.empty() ? 1 : 2;
      matches = frames.refs.back() < pack.size() &&
                e.blobs.size() == first_ref + frames.refs.size() &&
                (frames.starts.empty() ? framed == 0
                                       : stored == e.blobs[1].size && frames.starts.back() < framed);
      for (size_t j = 0; matches && j < frames.refs.size(); ++j) {
        const oci::Descriptor& d = e.blobs[first_ref + j];
        const GoObject& o = pack[frames.refs[j]];
        matches = d.size > 0 && (d.media_type == oci::media::kZstd
                                     ? d.size <= kMaxPackObject
                                     : d.digest == o.output_id && d.size == o.size);
      }
    }
    pack_usable = pack_usable && !pack.empty() && matches && 2 * missing > total;
    if (pack_usable) {
      // The pack stream brings them all: gets for them wait for it.
      for (const auto& k : keys) {
        if (prefetch_[k].object.size > 0) prefetch_[k].state = State::kFetching;
      }
    } else {
      for (const auto& k : keys) {
        if (prefetch_[k].state == State::kQueued) queued.push_back(k);
      }
    }
  }
  env_.n->session_listed += static_cast<int64_t>(keys.size());
  if (pack_usable) {
    ReadPack(e.blobs, frames, list, pack, pack_keys, empty);
    return;
  }
  // Pairs read from the registry whose objects were here get no entries of
  // their own: what the list says is recorded by the local copy only when a pack
  // fills this directory. Missing objects are fetched (and their entries stored)
  // one by one.
  for (const auto& k : queued) prefetches_->Submit([this, k] { PrefetchOne(k); });
}

void Session::StoreLocal(const std::string& list, const std::vector<GoObject>& objects,
                         bool remote_pack) {
  layout::LayoutStore* local = env_.local;
  const oci::Digest list_digest = oci::Digest::Of(list);
  oci::StringSource src(list);
  if (auto w = local->WriteBlob(list_digest, static_cast<int64_t>(list.size()), src); !w.ok()) {
    env_.warn(absl::StrCat("recording the session in ", local->Describe(), ": ",
                           w.status().message()));
    return;
  }
  cache::Entry e;
  e.key = LocalKey();
  e.config = absl::StrCat(R"({"kind":")", kLocalSessionKind, R"(","pairs":)",
                          std::count(list.begin(), list.end(), '\n'), R"(,"remotePack":)",
                          remote_pack ? "true" : "false", "}");
  if (!env_.opts->go_version.empty()) e.annotations[kToolAnnotation] = env_.opts->go_version;
  oci::Descriptor ld;
  ld.media_type = oci::media::kOctetStream;
  ld.digest = list_digest;
  ld.size = static_cast<int64_t>(list.size());
  e.blobs.push_back(ld);
  // Every object, so that GC and eviction keep them while the copy lives.
  for (const auto& o : objects) {
    auto have = local->StatBlob(o.output_id);
    if (!have.ok() || *have != o.size) continue;
    oci::Descriptor d;
    d.media_type = oci::media::kOctetStream;
    d.digest = o.output_id;
    d.size = o.size;
    e.blobs.push_back(d);
  }
  if (absl::Status s = local->Put(e); !s.ok()) {
    env_.warn(absl::StrCat("recording the session in ", local->Describe(), ": ", s.message()));
  }
}

void Session::Write() {
  const ServerOptions& opts = *env_.opts;
  if (env_.remote_upload == nullptr) return;
  std::string list;
  std::vector<GoObject> pack;  // each object of size > 0 once, in list order
  // Objects of the pack the registry holds already as blobs of their own (their
  // entries' blobs), at these pack indices: named by the list's entry instead of
  // sent again. The others go into the pack's frames.
  std::vector<size_t> refs;
  std::vector<oci::Descriptor> ref_layers;
  std::vector<GoObject> framed;
  {
    absl::MutexLock l(&mu_);
    if (used_.empty()) return;
    // The same pairs as the list read at start (in whatever order): keep that one.
    bool same = loaded_session_.valid() && used_.size() == prefetch_.size();
    absl::flat_hash_set<std::string> packed;
    int64_t total = 0;
    for (const auto& [key, o] : used_) {
      absl::StrAppend(&list, key, " ", o.output_id.hex(), " ", o.size, "\n");
      if (o.size > 0 && packed.insert(o.output_id.hex()).second) {
        pack.push_back(o);
        total += o.size;
      }
      if (same) {
        auto it = prefetch_.find(key);
        same = it != prefetch_.end() && it->second.object.output_id == o.output_id &&
               it->second.object.size == o.size;
      }
    }
    // A list close to this build's is kept too: rewriting costs a hash and an
    // upload of the whole pack while go waits for close, for every build that
    // changed a package. Close: at most a tenth of the pairs (and of the pack's
    // bytes) new or changed, and at most a quarter of the pack's bytes (and half
    // the pairs) listed but unused; the next machine looks the new pairs up one
    // by one, concurrently. Unused pairs are judged by their bytes: a cold build
    // lists about a third more pairs than a warm one asks for (entries a hit
    // higher up makes unnecessary), nearly all without bytes, and a rewrite
    // for them would upload a pack of the same size again.
    if (!same && loaded_session_.valid() && loaded_pack_ && !prefetch_.empty()) {
      size_t new_pairs = 0, unused_pairs = 0;
      int64_t listed_bytes = 0, new_bytes = 0, unused_bytes = 0;
      absl::flat_hash_set<std::string> listed;
      for (const auto& [key, p] : prefetch_) {
        if (p.object.size > 0 && listed.insert(p.object.output_id.hex()).second) {
          listed_bytes += p.object.size;
        }
        if (!used_keys_.contains(key)) {
          ++unused_pairs;
          unused_bytes += p.object.size;
        }
      }
      for (const auto& [key, o] : used_) {
        auto it = prefetch_.find(key);
        if (it == prefetch_.end() || it->second.object.output_id != o.output_id) {
          ++new_pairs;
          new_bytes += o.size;
        }
      }
      const size_t n = prefetch_.size();
      same = new_pairs * 10 <= n && new_bytes * 10 <= listed_bytes && unused_pairs * 2 <= n &&
             unused_bytes * 4 <= listed_bytes;
    }
    // A list written without a pack (an older version, or too big then) gets one.
    bool want_pack = opts.session_pack && total > 0 && total <= opts.max_pack_bytes;
    // A list read under the fallback key is written under this build's own key.
    if (same && (loaded_pack_ || !want_pack) && !loaded_fallback_) return;
    for (size_t i = 0; i < pack.size(); ++i) {
      auto it = opts.pack_refs && pack[i].size > kInlineMaxBytes
                    ? stored_.find(pack[i].output_id.hex())
                    : stored_.end();
      if (it != stored_.end() && it->second.size >= opts.pack_ref_min_bytes) {
        refs.push_back(i);
        ref_layers.push_back(it->second);
      } else {
        framed.push_back(pack[i]);
      }
    }
  }
  oci::Digest digest = oci::Digest::Of(list);
  bool probe = false;
  if (!env_.registry->Enter(&probe)) return;
  oci::StringSource src(list);
  auto d = env_.remote_upload->WriteBlob(digest, static_cast<int64_t>(list.size()), src);
  absl::Status s = d.status();
  // The objects' bytes back to back: a fresh machine reads them in one stream.
  // With `use_refs`, those the registry holds already are named instead (the
  // pack's other objects are then always compressed, as the encoding says).
  // Uploads the pack and puts the list's entry; *has_pack: it names a pack.
  auto write = [&](bool use_refs, bool* has_pack) -> absl::Status {
    std::optional<oci::Descriptor> pack_desc;
    PackFrames frames;
    bool with_refs = false;
    if (opts.session_pack && use_refs) {
      if (framed.empty()) {
        with_refs = true;
      } else {
        pack_desc = UploadPack(framed, &frames, /*frames_only=*/true);
        with_refs = pack_desc.has_value();
      }
    }
    if (opts.session_pack && !with_refs) pack_desc = UploadPack(pack, &frames);
    cache::Entry e;
    e.key = opts.session_key;
    std::string encoding;
    if ((pack_desc && !frames.raw()) || with_refs) {
      nlohmann::json rows = nlohmann::json::array();
      for (size_t r = 0; r < frames.starts.size(); ++r) {
        rows.push_back({frames.starts[r], frames.bytes[r]});
      }
      encoding = absl::StrCat(R"(,"packEncoding":")", with_refs ? "zstd-refs" : "zstd",
                              R"(","packFrames":)", rows.dump());
      if (with_refs) absl::StrAppend(&encoding, R"(,"packRefs":)", nlohmann::json(refs).dump());
    }
    *has_pack = pack_desc.has_value() || with_refs;
    e.config = absl::StrCat(R"({"kind":")", kSessionKind, R"(","pairs":)",
                            std::count(list.begin(), list.end(), '\n'),
                            *has_pack ? absl::StrCat(R"(,"packedObjects":)", pack.size()) : "",
                            encoding, "}");
    if (!opts.go_version.empty()) e.annotations[kToolAnnotation] = opts.go_version;
    e.blobs.push_back(*d);
    if (pack_desc) e.blobs.push_back(*pack_desc);
    if (with_refs) e.blobs.insert(e.blobs.end(), ref_layers.begin(), ref_layers.end());
    absl::Status put = env_.remote_upload->Put(e);
    if (!put.ok()) return put;
    if (with_refs) env_.n->pack_refs += static_cast<int64_t>(refs.size());
    // The same list as the module's latest: its blobs are there, so one manifest.
    if (!opts.session_fallback_key.empty()) {
      e.key = opts.session_fallback_key;
      if (absl::Status f = env_.remote_upload->Put(e); !f.ok()) {
        env_.warn(absl::StrCat("writing the session list as the module's latest: ", f.message()));
      }
    }
    return absl::OkStatus();
  };
  bool has_pack = false;
  if (s.ok()) {
    s = write(!refs.empty(), &has_pack);
    // A named blob the registry no longer has (deleted since this process saw
    // it), or a registry that refuses the entry for another reason than being
    // out of reach: the pack holds every object instead.
    if (!s.ok() && !refs.empty() && !absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) {
      s = write(false, &has_pack);
    }
  }
  // The directory's copy follows the list this build wrote: the next build here
  // compares against it, so an unchanged build does not write the list again.
  if (s.ok() && pack.size() <= static_cast<size_t>(opts.local_session_max_objects)) {
    StoreLocal(list, pack, has_pack);
  }
  env_.registry->Exit(probe, s, "writing the session list");
}

}  // namespace ocicache::gocacheprog
