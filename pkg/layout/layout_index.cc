// LayoutStore: index.json, the view of refs kept for other tools: when it is
// rewritten (AfterRefChange, Flush), reading it (a scanner for the files this
// class writes, a JSON parser for others), updating and writing it, rebuilding
// it from refs, and importing refs from the entries other tools added to it.
#include "pkg/layout/layout_store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/format.h"
#include "pkg/layout/layout_internal.h"

namespace ocicache::layout {

using internal::ErrnoError;
using internal::kIndexFile;
using internal::kMaxIndexBytes;
using internal::ReadAll;
using internal::ReadSmallFileAt;
using internal::StatAt;
using internal::UniqueFd;

namespace {

using ojson = nlohmann::ordered_json;

constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";

bool IsOurTag(absl::string_view tag) {
  if (tag.size() < 3 || tag.size() > 128) return false;
  if (!absl::StartsWith(tag, "k.") && !absl::StartsWith(tag, "h.")) return false;
  for (char c : tag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// index.json as this class writes it begins with this; such a file is split
// without a JSON parser, since parsing a large index costs far more than writing it.
constexpr absl::string_view kOwnIndexPrefix =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[";
constexpr absl::string_view kOwnIndexAnnotations = ",\"annotations\":";

// The end of the JSON value starting at s[pos], or npos. Follows strings and
// nesting only; it does not validate scalars.
size_t SkipJsonValue(absl::string_view s, size_t pos) {
  constexpr size_t npos = absl::string_view::npos;
  if (pos >= s.size()) return npos;
  char c = s[pos];
  if (c == '"') {
    for (size_t i = pos + 1; i < s.size(); ++i) {
      if (s[i] == '\\') {
        ++i;
      } else if (s[i] == '"') {
        return i + 1;
      }
    }
    return npos;
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    bool in_string = false;
    for (size_t i = pos; i < s.size(); ++i) {
      char d = s[i];
      if (in_string) {
        if (d == '\\') {
          ++i;
        } else if (d == '"') {
          in_string = false;
        }
      } else if (d == '"') {
        in_string = true;
      } else if (d == '{' || d == '[') {
        ++depth;
      } else if ((d == '}' || d == ']') && --depth == 0) {
        return i + 1;
      }
    }
    return npos;
  }
  size_t i = pos;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']') ++i;
  return i == pos ? npos : i;
}

// Splits an index.json written by WriteIndexLocked into its manifest descriptors
// (raw JSON) and its annotations object (raw JSON or empty). False if the file
// is not in exactly that shape.
bool SplitOwnIndex(absl::string_view s, std::vector<absl::string_view>* manifests,
                   absl::string_view* annotations) {
  if (!absl::StartsWith(s, kOwnIndexPrefix) || s.find('\0') != absl::string_view::npos) {
    return false;
  }
  size_t pos = kOwnIndexPrefix.size();
  if (pos < s.size() && s[pos] == ']') {
    ++pos;
  } else {
    for (;;) {
      if (pos >= s.size() || s[pos] != '{') return false;
      size_t end = SkipJsonValue(s, pos);
      if (end == absl::string_view::npos || s[end - 1] != '}') return false;
      manifests->push_back(s.substr(pos, end - pos));
      pos = end;
      if (pos < s.size() && s[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < s.size() && s[pos] == ']') {
        ++pos;
        break;
      }
      return false;
    }
  }
  if (absl::StartsWith(s.substr(pos), kOwnIndexAnnotations)) {
    pos += kOwnIndexAnnotations.size();
    if (pos >= s.size() || s[pos] != '{') return false;
    size_t end = SkipJsonValue(s, pos);
    if (end == absl::string_view::npos || s[end - 1] != '}') return false;
    *annotations = s.substr(pos, end - pos);
    pos = end;
  }
  return pos + 1 == s.size() && s[pos] == '}';
}

// The ref name annotation in a compact descriptor's JSON, or "" (also when it is
// escaped: none of our tags needs escaping).
std::string RefNameIn(absl::string_view desc) {
  static const std::string key = absl::StrCat("\"", kRefNameAnnotation, "\":\"");
  size_t p = desc.find(key);
  if (p == absl::string_view::npos) return "";
  p += key.size();
  size_t q = desc.find('"', p);
  if (q == absl::string_view::npos) return "";
  absl::string_view value = desc.substr(p, q - p);
  if (value.find('\\') != absl::string_view::npos) return "";
  return std::string(value);
}

}  // namespace

// ---------------------------------------------------------------------------
// Importing refs.

// Entries that another tool put into index.json (e.g. `skopeo copy ... oci:DIR:TAG`
// with one of our tags) have no ref: create one for each whose manifest is here.
absl::StatusOr<int64_t> LayoutStore::ImportRefsLocked() {
  auto data = ReadSmallFileAt(root_fd_, kIndexFile, kMaxIndexBytes, Where(kIndexFile));
  if (absl::IsNotFound(data.status())) return 0;
  if (!data.ok()) return data.status();
  auto j = ojson::parse(*data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return 0;
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) return 0;
  int64_t imported = 0;
  for (const auto& m : *ms) {
    auto d = oci::Descriptor::FromJson(nlohmann::json::parse(m.dump()));
    if (!d.ok() || d->media_type != oci::media::kImageManifest) continue;
    auto tag = d->annotations.find(kRefNameAnnotation);
    if (tag == d->annotations.end() || !IsOurTag(tag->second)) continue;
    struct stat st;
    if (StatAt(refs_fd_, tag->second.c_str(), &st)) continue;  // refs win
    if (!BlobPresent(d->digest, d->size).ok()) continue;
    if (absl::Status s = WriteFileAtomic(refs_fd_, tag->second, d->digest.str() + "\n");
        !s.ok()) {
      return s;
    }
    ++imported;
  }
  return imported;
}

// ---------------------------------------------------------------------------
// Writing index.json after ref changes (now, batched, or on Flush).

absl::Status LayoutStore::AfterRefChange() {
  // Batched: the tag is queued; IndexWriterLoop (or Flush) writes it.
  if (options_.index_interval > absl::ZeroDuration()) return absl::OkStatus();
  absl::Status s = SyncIndex();
  if (!s.ok()) {
    return base::Prefixed(
        s, absl::StrCat("entry stored, but ", Where(kIndexFile), " was not updated: "));
  }
  return s;
}

absl::Status LayoutStore::Flush() { return SyncIndex(); }

void LayoutStore::IndexWriterLoop() {
  absl::MutexLock l(&mu_);
  for (;;) {
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !pending_.empty();
    };
    mu_.Await(absl::Condition(&woken));
    if (stopping_) return;  // the destructor flushes
    // At most one rewrite per interval, however many puts queue meanwhile.
    mu_.AwaitWithDeadline(absl::Condition(&stopping_),
                          last_index_write_ + options_.index_interval);
    if (stopping_) return;
    mu_.Unlock();
    // A failure re-queues the tags; they are tried again an interval later.
    absl::Status s = SyncIndex();
    mu_.Lock();
    if (!s.ok()) last_index_write_ = absl::Now();
  }
}

absl::Status LayoutStore::SyncIndex() {
  absl::MutexLock il(&index_mu_);
  std::set<std::string> tags;
  {
    absl::MutexLock l(&mu_);
    tags.swap(pending_);
  }
  if (tags.empty()) return absl::OkStatus();  // another thread wrote our change
  auto requeue = [&] {
    absl::MutexLock l(&mu_);
    pending_.insert(tags.begin(), tags.end());
  };
  auto lock = Lock();
  if (!lock.ok()) {
    requeue();
    return lock.status();
  }
  absl::Status s = LoadIndexLocked();
  if (s.ok()) {
    for (const auto& tag : tags) UpdateTagLocked(tag);
    s = WriteIndexLocked();
  }
  if (!s.ok()) {
    requeue();
    index_.loaded = false;
    return s;
  }
  absl::MutexLock l(&mu_);
  last_index_write_ = absl::Now();
  return s;
}

// ---------------------------------------------------------------------------
// Reading, updating and writing index.json.

absl::Status LayoutStore::LoadIndexLocked() {
  int fd = ::openat(root_fd_, kIndexFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT) return ErrnoError(errno, absl::StrCat("open ", Where(kIndexFile)));
    // Gone: rebuild it from refs.
    index_ = IndexCache();
    RebuildOursLocked();
    index_.loaded = true;
    return absl::OkStatus();
  }
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", Where(kIndexFile)));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(Where(kIndexFile), " is not a regular file"));
  }
  std::string bytes;
  if (absl::Status s = ReadAll(fd, kMaxIndexBytes, &bytes, Where(kIndexFile)); !s.ok()) return s;
  // Unchanged since we last read or wrote it: the cached parse is current.
  if (index_.loaded && bytes == index_.bytes) return absl::OkStatus();
  if (absl::Status s = ParseIndexLocked(bytes); !s.ok()) {
    // Unparsable (e.g. an empty file after a power loss): rebuild from refs.
    index_ = IndexCache();
    RebuildOursLocked();
    index_.loaded = true;
  }
  return absl::OkStatus();
}

absl::Status LayoutStore::ParseIndexLocked(const std::string& bytes) {
  std::vector<absl::string_view> own;
  absl::string_view own_annotations;
  if (SplitOwnIndex(bytes, &own, &own_annotations)) {
    IndexCache fresh;
    fresh.annotations = std::string(own_annotations);
    for (absl::string_view m : own) {
      std::string tag = RefNameIn(m);
      if (IsOurTag(tag)) {
        fresh.ours[tag] = std::string(m);
      } else {
        fresh.foreign.emplace_back(m);
      }
    }
    fresh.bytes = bytes;
    fresh.loaded = true;
    index_ = std::move(fresh);
    return absl::OkStatus();
  }
  // Written by another tool: parse it for real.
  auto j = ojson::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(Where(kIndexFile), " is not a JSON object"));
  }
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) {
    return absl::DataLossError(absl::StrCat(Where(kIndexFile), " has no manifests array"));
  }
  IndexCache fresh;
  if (auto a = j.find("annotations"); a != j.end() && a->is_object() && !a->empty()) {
    fresh.annotations = a->dump();
  }
  for (const auto& m : *ms) {
    std::string tag;
    if (m.is_object()) {
      auto a = m.find("annotations");
      if (a != m.end() && a->is_object()) {
        auto r = a->find(kRefNameAnnotation);
        if (r != a->end() && r->is_string()) tag = r->get<std::string>();
      }
    }
    if (IsOurTag(tag)) {
      fresh.ours[tag] = m.dump();
    } else {
      fresh.foreign.push_back(m.dump());
    }
  }
  fresh.bytes = bytes;
  fresh.loaded = true;
  index_ = std::move(fresh);
  return absl::OkStatus();
}

void LayoutStore::UpdateTagLocked(const std::string& tag) {
  auto ref = ReadRef(tag);
  if (!ref.ok()) {
    index_.ours.erase(tag);
    return;
  }
  // Only list manifests that are really here (skopeo would fail on the others).
  auto manifest = ReadSmallBlob(*ref, cache::format::kMaxManifestBytes);
  if (!manifest.ok()) {
    index_.ours.erase(tag);
    return;
  }
  oci::Descriptor d;
  d.media_type = oci::media::kImageManifest;
  d.digest = *ref;
  d.size = static_cast<int64_t>(manifest->size());
  d.artifact_type = cache::format::kArtifactType;
  d.annotations[kRefNameAnnotation] = tag;
  index_.ours[tag] = d.ToJson().dump();
}

void LayoutStore::RebuildOursLocked() {
  index_.ours.clear();
  auto names = ListDir(refs_fd_);
  if (!names.ok()) return;
  for (const auto& tag : *names) {
    if (!tag.empty() && tag[0] != '.') UpdateTagLocked(tag);
  }
}

absl::Status LayoutStore::WriteIndexLocked() {
  std::string out;
  size_t reserve = 256 + index_.annotations.size();
  for (const auto& f : index_.foreign) reserve += f.size() + 1;
  for (const auto& [tag, d] : index_.ours) reserve += d.size() + 1;
  out.reserve(reserve);
  absl::StrAppend(&out, "{\"schemaVersion\":2,\"mediaType\":\"", oci::media::kImageIndex,
                  "\",\"manifests\":[");
  bool first = true;
  auto add = [&](const std::string& d) {
    if (!first) out.push_back(',');
    first = false;
    out.append(d);
  };
  for (const auto& f : index_.foreign) add(f);
  for (const auto& [tag, d] : index_.ours) add(d);
  out.push_back(']');
  if (!index_.annotations.empty()) absl::StrAppend(&out, ",\"annotations\":", index_.annotations);
  out.push_back('}');
  if (index_.loaded && out == index_.bytes) return absl::OkStatus();
  if (absl::Status s = WriteFileAtomic(root_fd_, kIndexFile, out); !s.ok()) return s;
  index_.bytes = std::move(out);
  index_.loaded = true;
  return absl::OkStatus();
}

absl::Status LayoutStore::RebuildIndexLocked() {
  if (absl::Status s = LoadIndexLocked(); !s.ok()) return s;
  {
    // Every ref written so far is read below (ref writers hold the file lock).
    absl::MutexLock l(&mu_);
    pending_.clear();
  }
  RebuildOursLocked();
  return WriteIndexLocked();
}

absl::Status LayoutStore::RebuildIndex() {
  absl::MutexLock il(&index_mu_);
  auto lock = Lock();
  if (!lock.ok()) return lock.status();
  absl::Status s = RebuildIndexLocked();
  if (!s.ok()) index_.loaded = false;
  return s;
}

}  // namespace ocicache::layout
