#include "pkg/cache/records.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace ocicache::cache::records {
namespace {

int64_t Seconds(absl::Time t) {
  return t == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(t);
}

std::string Sanitize(absl::string_view s) {
  std::string out;
  for (char c : s) {
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ? c : '-');
  }
  return out;
}

}  // namespace

std::string RecordTag(absl::string_view writer, int64_t part) {
  return absl::StrCat("r.", writer, ".", part);
}

bool IsRecordTag(absl::string_view tag) { return absl::StartsWith(tag, "r."); }

std::string NewWriterName(absl::string_view prefix) {
  char host[64] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  absl::BitGen gen;
  std::string name = Sanitize(absl::StrCat(prefix, prefix.empty() ? "" : "-",
                                           std::string(host).substr(0, 40), "-", ::getpid(), "-",
                                           absl::Hex(absl::Uniform<uint32_t>(gen),
                                                     absl::kZeroPad8)));
  return name.substr(0, 80);
}

std::string EncodeRows(const std::vector<EntryInfo>& rows) {
  std::string out;
  for (const EntryInfo& r : rows) {
    nlohmann::ordered_json j;
    j["k"] = r.key;
    j["t"] = r.tag;
    j["d"] = r.manifest_digest.valid() ? r.manifest_digest.str() : "";
    j["c"] = Seconds(r.created);
    j["u"] = Seconds(r.last_used);
    j["s"] = r.size;
    if (!r.annotations.empty()) j["a"] = r.annotations;
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
  }
  return out;
}

std::vector<EntryInfo> DecodeRows(absl::string_view jsonl, int64_t* bad) {
  std::vector<EntryInfo> rows;
  int64_t skipped = 0;
  for (absl::string_view line : absl::StrSplit(jsonl, '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto str = [&](const char* k) -> const std::string* {
      auto it = j.find(k);
      return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
    };
    auto num = [&](const char* k, int64_t* v) {
      auto it = j.find(k);
      if (it == j.end() || !it->is_number_integer()) return false;
      *v = it->get<int64_t>();
      return true;
    };
    EntryInfo r;
    int64_t c = 0, u = 0;
    if (j.is_discarded() || !j.is_object() || str("k") == nullptr || str("t") == nullptr ||
        !num("c", &c) || !num("u", &u) || !num("s", &r.size) || str("t")->empty()) {
      ++skipped;
      continue;
    }
    r.key = *str("k");
    r.tag = *str("t");
    if (const std::string* d = str("d"); d != nullptr && !d->empty()) {
      auto digest = oci::Digest::Parse(*d);
      if (digest.ok()) r.manifest_digest = *digest;
    }
    r.created = c == 0 ? absl::InfinitePast() : absl::FromUnixSeconds(c);
    r.last_used = u == 0 ? r.created : absl::FromUnixSeconds(u);
    if (auto a = j.find("a"); a != j.end() && a->is_object()) {
      for (const auto& [k, v] : a->items()) {
        if (v.is_string()) r.annotations[k] = v.get<std::string>();
      }
    }
    rows.push_back(std::move(r));
  }
  if (bad != nullptr) *bad = skipped;
  return rows;
}

std::string EncodeRecordManifest(const oci::Descriptor& layer, absl::string_view writer,
                                 int64_t rows, absl::Time now) {
  oci::Manifest m;
  m.artifact_type = kArtifactType;
  m.config = oci::EmptyDescriptor();
  m.config.data = oci::kEmptyJsonContent;
  oci::Descriptor l = layer;
  l.media_type = kLayerMediaType;
  m.layers.push_back(l);
  m.annotations[kAnnotationWriter] = std::string(writer);
  m.annotations[kAnnotationRows] = absl::StrCat(rows);
  m.annotations["org.opencontainers.image.created"] =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone());
  return m.Serialize();
}

absl::StatusOr<oci::Descriptor> RecordLayer(absl::string_view manifest) {
  auto m = oci::Manifest::Parse(manifest);
  if (!m.ok()) return m.status();
  if (m->artifact_type != kArtifactType || m->layers.size() != 1 ||
      m->layers[0].media_type != kLayerMediaType) {
    return absl::InvalidArgumentError("not an ocicache listing record");
  }
  return m->layers[0];
}

void MergeRow(std::map<std::string, EntryInfo>& by_tag, EntryInfo row) {
  auto it = by_tag.find(row.tag);
  if (it == by_tag.end()) {
    std::string tag = row.tag;
    by_tag.emplace(std::move(tag), std::move(row));
    return;
  }
  absl::Time created = std::min(it->second.created, row.created);
  if (row.last_used > it->second.last_used) it->second = std::move(row);
  it->second.created = created;
}

}  // namespace ocicache::cache::records
