#include "pkg/ko/entry.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "pkg/cache/format.h"
#include "pkg/ko/gojson.h"
#include "pkg/ko/process.h"
#include "pkg/oci/digest.h"

namespace ocicache::ko {
namespace {
using ojson = nlohmann::ordered_json;
}  // namespace

std::string DetectKoVersion() {
  if (const char* v = std::getenv("KO_VERSION"); v != nullptr && *v != '\0') return v;
  std::string ko = FindInPath("ko");
  if (!ko.empty()) {
    std::string v = FirstLineOf({ko, "version"});
    if (!v.empty()) return v;
  }
  return kUnknownVersion;
}

std::string DetectGoVersion(const std::string& go_binary) {
  if (go_binary.empty()) return kUnknownVersion;
  std::string v = FirstLineOf({go_binary, "env", "GOVERSION"});
  return v.empty() ? kUnknownVersion : v;
}

bool KoVersionCompatible(absl::string_view stored, absl::string_view current) {
  if (stored.empty() || current.empty() || stored == kUnknownVersion || current == kUnknownVersion) {
    return true;
  }
  return stored == current;
}

absl::StatusOr<cache::Entry> EntryFromRecord(const Record& r, const ToolVersions& tools) {
  if (absl::Status s = cache::ValidateKey(r.build_id); !s.ok()) return s;
  if (!oci::Digest::Parse(r.diff_id).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("diffid ", GoQuote(r.diff_id), " is not a sha256 digest"));
  }
  ojson desc;
  try {
    desc = ojson::parse(r.descriptor);
  } catch (const ojson::exception&) {
    return absl::InvalidArgumentError("descriptor is not JSON");
  }
  if (absl::Status s = ValidateDescriptor(desc); !s.ok()) return s;

  cache::Entry e;
  e.key = r.build_id;
  ojson config = ojson::object();
  config["kind"] = "ko";
  config["diffid"] = r.diff_id;
  config["importPath"] = r.import_path;
  config["platform"] = r.platform;
  e.config = GoMarshal(config);
  e.descriptor = r.descriptor;
  if (auto urls = desc.find("urls"); urls != desc.end() && urls->is_array()) {
    auto digest = oci::Digest::Parse(desc["digest"].get<std::string>());
    for (const auto& u : *urls) {
      std::string base, repo;
      oci::Digest d;
      if (!cache::ParseBlobUrl(u.get<std::string>(), &base, &repo, &d).ok() || d != *digest) continue;
      cache::Location loc;
      loc.media_type = desc["mediaType"].get<std::string>();
      loc.digest = d;
      loc.size = desc["size"].get<int64_t>();
      loc.url = u.get<std::string>();
      e.locations.push_back(std::move(loc));
    }
  }
  e.annotations[kAnnotationKoVersion] = tools.ko.empty() ? kUnknownVersion : tools.ko;
  e.annotations[kAnnotationGoVersion] = tools.go.empty() ? kUnknownVersion : tools.go;
  e.annotations[kAnnotationImportPath] = r.import_path;
  e.annotations[kAnnotationPlatform] = r.platform;
  return e;
}

absl::StatusOr<Record> RecordFromEntry(const cache::Entry& e) {
  ojson config;
  try {
    config = ojson::parse(e.config.empty() ? "{}" : e.config);
  } catch (const ojson::exception&) {
    return absl::InvalidArgumentError("entry config is not JSON");
  }
  if (!config.is_object() || config.value("kind", "") != "ko") {
    return absl::InvalidArgumentError(absl::StrCat("entry ", e.key, " is not a ko entry"));
  }
  Record r;
  r.build_id = e.key;
  auto str = [&](const char* name, std::string* out) -> bool {
    auto it = config.find(name);
    if (it == config.end() || !it->is_string()) return false;
    *out = it->get<std::string>();
    return true;
  };
  if (!str("diffid", &r.diff_id) || !oci::Digest::Parse(r.diff_id).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ko entry ", e.key, " has no valid diffid"));
  }
  str("importPath", &r.import_path);
  str("platform", &r.platform);
  ojson desc;
  try {
    desc = ojson::parse(e.descriptor);
  } catch (const ojson::exception&) {
    return absl::InvalidArgumentError(absl::StrCat("ko entry ", e.key, ": descriptor is not JSON"));
  }
  if (absl::Status s = ValidateDescriptor(desc); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ko entry ", e.key, ": ", s.message()));
  }
  r.descriptor = e.descriptor;
  return r;
}

}  // namespace ocicache::ko
