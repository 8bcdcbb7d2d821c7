// LayoutStore: garbage collection of refs whose manifest is gone, unreferenced
// blobs and old temp files (Gc); eviction of least recently used entries under
// Options::max_bytes (MaybeEvict, Evict); usage totals (TotalSize).
#include "pkg/layout/layout_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_internal.h"

namespace ocicache::layout {

using internal::kMaxIndexBytes;
using internal::MtimeOf;
using internal::StatAt;

namespace {

// Foreign images can nest indexes; stop following them this deep.
constexpr int kMaxForeignDepth = 8;

bool IsManifestOrIndex(absl::string_view media_type) {
  return media_type == oci::media::kImageManifest || media_type == oci::media::kImageIndex ||
         media_type == oci::media::kDockerManifest ||
         media_type == oci::media::kDockerManifestList;
}

// The blobs an entry or image manifest references (config, layers, subject).
void MarkManifest(const std::string& bytes, std::set<std::string>* live) {
  auto m = oci::Manifest::Parse(bytes);
  if (!m.ok()) return;
  live->insert(m->config.digest.hex());
  for (const auto& l : m->layers) live->insert(l.digest.hex());
  if (m->subject) live->insert(m->subject->digest.hex());
}

}  // namespace

// ---------------------------------------------------------------------------
// Usage totals.

absl::StatusOr<int64_t> LayoutStore::TotalSize() {
  auto names = ListDir(blobs_fd_);
  if (!names.ok()) return names.status();
  int64_t total = 0;
  for (const auto& n : *names) {
    struct stat st;
    if (StatAt(blobs_fd_, n.c_str(), &st) && S_ISREG(st.st_mode)) total += st.st_size;
  }
  return total;
}

// ---------------------------------------------------------------------------
// Foreign images, eviction and gc.

void LayoutStore::MarkForeignLocked(std::set<std::string>* live) {
  std::vector<std::pair<std::string, int>> todo;
  for (const auto& f : index_.foreign) todo.emplace_back(f, 0);
  while (!todo.empty()) {
    auto [json_text, depth] = todo.back();
    todo.pop_back();
    auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    auto d = oci::Descriptor::FromJson(j);
    if (!d.ok()) continue;
    if (!live->insert(d->digest.hex()).second) continue;
    if (!IsManifestOrIndex(d->media_type) || depth >= kMaxForeignDepth) continue;
    auto bytes = ReadSmallBlob(d->digest, kMaxIndexBytes);
    if (!bytes.ok()) continue;
    if (d->media_type == oci::media::kImageIndex ||
        d->media_type == oci::media::kDockerManifestList) {
      auto idx = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
      if (idx.is_object() && idx.contains("manifests") && idx["manifests"].is_array()) {
        for (const auto& m : idx["manifests"]) todo.emplace_back(m.dump(), depth + 1);
      }
    } else {
      MarkManifest(*bytes, live);
    }
  }
}

void LayoutStore::MaybeEvict(int64_t added) {
  if (options_.max_bytes <= 0) return;
  int64_t now_bytes = approx_bytes_.fetch_add(added, std::memory_order_relaxed) + added;
  if (now_bytes >= 0) {
    int64_t at = evict_at_bytes_.load(std::memory_order_relaxed);
    if (now_bytes <= std::max(at, options_.max_bytes)) return;
    // Over the bound but the last pass could not get under it: wait for 5% more
    // growth or 10 s before measuring again.
    if (at > options_.max_bytes &&
        absl::ToUnixNanos(absl::Now()) < evict_retry_after_ns_.load(std::memory_order_relaxed)) {
      return;
    }
  }
  if (evicting_.exchange(true)) return;  // another thread is at it
  Evict().IgnoreError();  // the write succeeded; eviction is best effort
  evicting_.store(false);
}

absl::StatusOr<EvictStats> LayoutStore::Evict() {
  if (options_.max_bytes <= 0) return EvictStats();
  return EvictPass(options_.max_bytes, options_.max_bytes / 10 * 9, 0);
}

absl::StatusOr<EvictStats> LayoutStore::Release(int64_t bytes) {
  if (bytes <= 0) return EvictStats();
  return EvictPass(0, 0, bytes);
}

absl::StatusOr<int64_t> LayoutStore::ReleaseSpace(int64_t bytes) {
  auto st = Release(bytes);
  if (!st.ok()) return st.status();
  return st->bytes_removed;
}

absl::StatusOr<EvictStats> LayoutStore::EvictPass(int64_t limit, int64_t target, int64_t release) {
  EvictStats stats;
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  const absl::Time now = absl::Now();
  const absl::Time young = now - options_.evict_grace;

  struct Candidate {
    std::string tag;
    absl::Time used;
    std::vector<std::string> blobs;  // hex, the manifest's own included
  };
  std::vector<Candidate> entries;
  std::map<std::string, int> refcount;  // hex -> entries referencing it
  auto refs = ListDir(refs_fd_);
  if (!refs.ok()) return refs.status();
  for (const auto& tag : *refs) {
    if (tag.empty() || tag[0] == '.') continue;
    Candidate c;
    c.tag = tag;
    auto ref = ReadRef(tag, &c.used);
    if (!ref.ok()) continue;
    auto manifest = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
    if (!manifest.ok()) continue;  // broken: Gc's business; its blobs are unreferenced
    std::set<std::string> blobs = {ref->hex()};
    MarkManifest(*manifest, &blobs);
    c.blobs.assign(blobs.begin(), blobs.end());
    for (const auto& b : c.blobs) ++refcount[b];
    entries.push_back(std::move(c));
  }
  if (absl::Status s = LoadIndexLocked(); !s.ok()) return s;
  std::set<std::string> pinned;  // foreign images
  MarkForeignLocked(&pinned);

  struct BlobFile {
    int64_t size;
    absl::Time mtime;
  };
  std::map<std::string, BlobFile> files;
  auto names = ListDir(blobs_fd_);
  if (!names.ok()) return names.status();
  for (const auto& n : *names) {
    struct stat st;
    if (!StatAt(blobs_fd_, n.c_str(), &st) || !S_ISREG(st.st_mode)) continue;
    files[n] = {static_cast<int64_t>(st.st_size), MtimeOf(st)};
    stats.bytes_before += st.st_size;
  }
  int64_t total = stats.bytes_before;
  if (release > 0) {
    target = std::max<int64_t>(0, total - release);
    limit = target;
  }
  auto remove_if_free = [&](const std::string& hex) {
    auto it = files.find(hex);
    if (it == files.end() || refcount[hex] > 0 || pinned.count(hex) || it->second.mtime > young ||
        !oci::Digest::FromHex(hex).ok()) {
      return;
    }
    if (::unlinkat(blobs_fd_, hex.c_str(), 0) != 0) return;
    Changed();
    ++stats.blobs_removed;
    stats.bytes_removed += it->second.size;
    total -= it->second.size;
    files.erase(it);
  };

  if (total > limit) {
    // Blobs no entry references (left by crashes, replaced manifests) go first.
    std::vector<std::string> orphans;
    for (const auto& [hex, f] : files) {
      if (refcount[hex] == 0) orphans.push_back(hex);
    }
    for (const auto& hex : orphans) {
      if (total <= target) break;
      remove_if_free(hex);
    }
    std::sort(entries.begin(), entries.end(),
              [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
    std::vector<std::string> evicted;
    for (const auto& c : entries) {
      if (total <= target || c.used > young) break;
      if (::unlinkat(refs_fd_, c.tag.c_str(), 0) != 0) continue;
      Changed();
      ++stats.entries_evicted;
      evicted.push_back(c.tag);
      for (const auto& b : c.blobs) --refcount[b];
      for (const auto& b : c.blobs) remove_if_free(b);
    }
    if (!evicted.empty()) {
      for (const auto& tag : evicted) UpdateTagLocked(tag);
      if (absl::Status s = WriteIndexLocked(); !s.ok()) {
        index_.loaded = false;
        absl::MutexLock l(&mu_);
        pending_.insert(evicted.begin(), evicted.end());
      }
    }
  }
  stats.bytes_after = total;
  entries_evicted_.fetch_add(stats.entries_evicted, std::memory_order_relaxed);
  bytes_evicted_.fetch_add(stats.bytes_removed, std::memory_order_relaxed);
  approx_bytes_.store(total, std::memory_order_relaxed);
  evict_at_bytes_.store(std::max(options_.max_bytes, total + options_.max_bytes / 20),
                        std::memory_order_relaxed);
  evict_retry_after_ns_.store(absl::ToUnixNanos(now + absl::Seconds(10)),
                              std::memory_order_relaxed);
  return stats;
}

absl::StatusOr<GcStats> LayoutStore::Gc(const GcOptions& opts) {
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  GcStats stats;
  std::set<std::string> live;  // hex digests
  if (!opts.dry_run) {
    auto imported = ImportRefsLocked();
    if (!imported.ok()) return imported.status();
    stats.refs_imported = *imported;
  }


  // Entries.
  auto refs = ListDir(refs_fd_);
  if (!refs.ok()) return refs.status();
  for (const auto& tag : *refs) {
    if (tag.empty() || tag[0] == '.') continue;
    auto ref = ReadRef(tag);
    absl::StatusOr<std::string> manifest =
        ref.ok() ? ReadSmallBlob(*ref, cache::format::kMaxManifestBytes)
                 : absl::StatusOr<std::string>(ref.status());
    if (absl::IsNotFound(manifest.status()) || absl::IsDataLoss(manifest.status())) {
      if (absl::IsNotFound(ref.status())) continue;  // deleted meanwhile
      ++stats.broken_refs_removed;
      if (!opts.dry_run && ::unlinkat(refs_fd_, tag.c_str(), 0) == 0) Changed();
      continue;
    }
    // Any other error (EIO, EMFILE): stop rather than collect blobs still in use.
    if (!manifest.ok()) return manifest.status();
    ++stats.entries;
    live.insert(ref->hex());
    MarkManifest(*manifest, &live);
  }

  // Foreign images listed in index.json, followed through nested indexes.
  if (absl::Status s = LoadIndexLocked(); !s.ok()) return s;
  MarkForeignLocked(&live);

  if (!opts.dry_run) {
    if (absl::Status s = RebuildIndexLocked(); !s.ok()) {
      index_.loaded = false;
      return s;
    }
  }

  const absl::Time cutoff = absl::Now() - opts.min_age;
  auto blobs = ListDir(blobs_fd_);
  if (!blobs.ok()) return blobs.status();
  for (const auto& name : *blobs) {
    if (!oci::Digest::FromHex(name).ok()) continue;  // not a blob of ours; leave it
    struct stat st;
    if (!StatAt(blobs_fd_, name.c_str(), &st)) continue;
    int64_t size = S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : 0;
    if (live.count(name) || MtimeOf(st) > cutoff) {
      ++stats.blobs_kept;
      stats.bytes_kept += size;
      continue;
    }
    if (!opts.dry_run && ::unlinkat(blobs_fd_, name.c_str(), 0) != 0) continue;
    if (!opts.dry_run) Changed();
    ++stats.blobs_removed;
    stats.bytes_removed += size;
  }

  auto temps = ListDir(tmp_fd_);
  if (!temps.ok()) return temps.status();
  for (const auto& name : *temps) {
    struct stat st;
    if (!StatAt(tmp_fd_, name.c_str(), &st) || S_ISDIR(st.st_mode)) continue;
    if (MtimeOf(st) > cutoff) continue;
    if (!opts.dry_run && ::unlinkat(tmp_fd_, name.c_str(), 0) != 0) continue;
    ++stats.temp_files_removed;
    stats.temp_bytes_removed += S_ISREG(st.st_mode) ? st.st_size : 0;
  }
  return stats;
}

absl::StatusOr<cache::LocalGcResult> LayoutStore::CollectUnreferenced() {
  auto gc = Gc();
  if (!gc.ok()) return gc.status();
  return cache::LocalGcResult{gc->blobs_removed, gc->bytes_removed};
}

}  // namespace ocicache::layout
