#include "pkg/oci/types.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace ocicache::oci {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("invalid OCI JSON: ", what));
}

absl::StatusOr<Annotations> ParseAnnotations(const json& j) {
  Annotations out;
  if (j.is_null()) return out;
  if (!j.is_object()) return Invalid("annotations is not an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) return Invalid("annotation value is not a string");
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

std::optional<std::string> OptString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

ojson Descriptor::ToJson() const {
  ojson j;
  j["mediaType"] = media_type;
  j["digest"] = digest.str();
  j["size"] = size;
  if (!urls.empty()) j["urls"] = urls;
  if (!annotations.empty()) j["annotations"] = annotations;
  if (data.has_value()) j["data"] = absl::Base64Escape(*data);
  if (!artifact_type.empty()) j["artifactType"] = artifact_type;
  if (platform.has_value()) j["platform"] = *platform;
  return j;
}

absl::StatusOr<Descriptor> Descriptor::FromJson(const json& j) {
  if (!j.is_object()) return Invalid("descriptor is not an object");
  Descriptor d;
  auto mt = OptString(j, "mediaType");
  if (!mt) return Invalid("descriptor has no mediaType");
  d.media_type = *mt;
  auto dg = OptString(j, "digest");
  if (!dg) return Invalid("descriptor has no digest");
  auto parsed = Digest::Parse(*dg);
  if (!parsed.ok()) return parsed.status();
  d.digest = *parsed;
  auto sz = j.find("size");
  if (sz == j.end() || !sz->is_number_integer() || sz->get<int64_t>() < 0) {
    return Invalid("descriptor has no valid size");
  }
  d.size = sz->get<int64_t>();
  if (auto u = j.find("urls"); u != j.end() && !u->is_null()) {
    if (!u->is_array()) return Invalid("urls is not an array");
    for (const auto& e : *u) {
      if (!e.is_string()) return Invalid("url is not a string");
      d.urls.push_back(e.get<std::string>());
    }
  }
  if (auto a = j.find("annotations"); a != j.end()) {
    auto ann = ParseAnnotations(*a);
    if (!ann.ok()) return ann.status();
    d.annotations = *std::move(ann);
  }
  if (auto data = OptString(j, "data")) {
    std::string raw;
    if (!absl::Base64Unescape(*data, &raw)) return Invalid("descriptor data is not base64");
    // Inlined data must match the descriptor, or it is worse than useless.
    if (static_cast<int64_t>(raw.size()) != d.size || Digest::Of(raw) != d.digest) {
      return Invalid("descriptor data does not match its digest and size");
    }
    d.data = std::move(raw);
  }
  if (auto at = OptString(j, "artifactType")) d.artifact_type = *at;
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.platform = ojson::parse(p->dump());
  }
  return d;
}

Descriptor EmptyDescriptor() {
  Descriptor d;
  d.media_type = media::kEmptyJson;
  d.digest = Digest::Of(kEmptyJsonContent);
  d.size = 2;
  return d;
}

std::string Manifest::Serialize() const {
  ojson j;
  j["schemaVersion"] = schema_version;
  j["mediaType"] = media_type;
  if (!artifact_type.empty()) j["artifactType"] = artifact_type;
  j["config"] = config.ToJson();
  ojson layers_json = ojson::array();
  for (const auto& l : layers) layers_json.push_back(l.ToJson());
  j["layers"] = std::move(layers_json);
  if (subject.has_value()) j["subject"] = subject->ToJson();
  if (!annotations.empty()) j["annotations"] = annotations;
  return j.dump();
}

absl::StatusOr<Manifest> Manifest::Parse(absl::string_view bytes) {
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Invalid("manifest is not a JSON object");
  Manifest m;
  auto sv = j.find("schemaVersion");
  if (sv == j.end() || !sv->is_number_integer() || sv->get<int>() != 2) {
    return Invalid("manifest schemaVersion is not 2");
  }
  if (auto mt = OptString(j, "mediaType")) m.media_type = *mt;
  if (m.media_type != media::kImageManifest && m.media_type != media::kDockerManifest) {
    return Invalid(absl::StrCat("not an image manifest: ", m.media_type));
  }
  if (auto at = OptString(j, "artifactType")) m.artifact_type = *at;
  auto cfg = j.find("config");
  if (cfg == j.end()) return Invalid("manifest has no config");
  auto c = Descriptor::FromJson(*cfg);
  if (!c.ok()) return c.status();
  m.config = *std::move(c);
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return Invalid("manifest has no layers array");
  for (const auto& l : *layers) {
    auto d = Descriptor::FromJson(l);
    if (!d.ok()) return d.status();
    m.layers.push_back(*std::move(d));
  }
  if (auto s = j.find("subject"); s != j.end() && !s->is_null()) {
    auto d = Descriptor::FromJson(*s);
    if (!d.ok()) return d.status();
    m.subject = *std::move(d);
  }
  if (auto a = j.find("annotations"); a != j.end()) {
    auto ann = ParseAnnotations(*a);
    if (!ann.ok()) return ann.status();
    m.annotations = *std::move(ann);
  }
  return m;
}

std::string Index::Serialize() const {
  ojson j;
  j["schemaVersion"] = schema_version;
  j["mediaType"] = media_type;
  ojson ms = ojson::array();
  for (const auto& d : manifests) ms.push_back(d.ToJson());
  j["manifests"] = std::move(ms);
  if (!annotations.empty()) j["annotations"] = annotations;
  return j.dump();
}

absl::StatusOr<Index> Index::Parse(absl::string_view bytes) {
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Invalid("index is not a JSON object");
  Index idx;
  auto sv = j.find("schemaVersion");
  if (sv == j.end() || !sv->is_number_integer() || sv->get<int>() != 2) {
    return Invalid("index schemaVersion is not 2");
  }
  if (auto mt = OptString(j, "mediaType")) idx.media_type = *mt;
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) return Invalid("index has no manifests array");
  for (const auto& m : *ms) {
    auto d = Descriptor::FromJson(m);
    if (!d.ok()) return d.status();
    idx.manifests.push_back(*std::move(d));
  }
  if (auto a = j.find("annotations"); a != j.end()) {
    auto ann = ParseAnnotations(*a);
    if (!ann.ok()) return ann.status();
    idx.annotations = *std::move(ann);
  }
  return idx;
}

}  // namespace ocicache::oci
