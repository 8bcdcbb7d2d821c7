#include "pkg/reapi/convert.h"

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pkg/oci/types.h"

namespace ocicache::reapi {
namespace {

// Adds d (if set) to out, checked.
absl::Status Collect(const v2::Digest& d, const std::string& field, bool required,
                     std::set<BlobId>* out) {
  if (!required && d.hash().empty() && d.size_bytes() == 0) return absl::OkStatus();
  auto id = FromProto(d, field);
  if (!id.ok()) return id.status();
  out->insert(*id);
  return absl::OkStatus();
}

absl::Status CollectDirectory(const v2::Directory& dir, const std::string& field,
                              std::set<BlobId>* out) {
  for (int i = 0; i < dir.files_size(); ++i) {
    if (absl::Status s = Collect(dir.files(i).digest(),
                                 absl::StrCat(field, ".files[", i, "].digest"), true, out);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

std::string Shown(absl::string_view s) {
  std::string v(s.substr(0, 120));
  for (char& c : v) {
    if (c == ' ' || c == '"' || static_cast<unsigned char>(c) < 0x20) c = '_';
  }
  return v;
}

}  // namespace

absl::StatusOr<BlobId> FromProto(const v2::Digest& d, absl::string_view field) {
  if (d.hash().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": missing"));
  return MakeBlobId(d.hash(), d.size_bytes(), field);
}

v2::Digest ToProto(const BlobId& b) {
  v2::Digest d;
  d.set_hash(b.digest.hex());
  d.set_size_bytes(b.size);
  return d;
}

std::string ActionKey(const BlobId& action) { return "ac:" + action.digest.str(); }

absl::StatusOr<std::vector<BlobId>> DirectBlobs(const v2::ActionResult& r) {
  std::set<BlobId> out;
  for (int i = 0; i < r.output_files_size(); ++i) {
    if (absl::Status s = Collect(r.output_files(i).digest(),
                                 absl::StrCat("output_files[", i, "].digest"), true, &out);
        !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < r.output_directories_size(); ++i) {
    const v2::OutputDirectory& d = r.output_directories(i);
    std::string field = absl::StrCat("output_directories[", i, "]");
    if (absl::Status s = Collect(d.tree_digest(), field + ".tree_digest", true, &out); !s.ok()) {
      return s;
    }
    if (absl::Status s = Collect(d.root_directory_digest(), field + ".root_directory_digest",
                                 false, &out);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = Collect(r.stdout_digest(), "stdout_digest", false, &out); !s.ok()) return s;
  if (absl::Status s = Collect(r.stderr_digest(), "stderr_digest", false, &out); !s.ok()) return s;
  return std::vector<BlobId>(out.begin(), out.end());
}

absl::StatusOr<std::vector<BlobId>> TreeFileBlobs(const v2::Tree& tree) {
  std::set<BlobId> out;
  if (absl::Status s = CollectDirectory(tree.root(), "tree.root", &out); !s.ok()) return s;
  for (int i = 0; i < tree.children_size(); ++i) {
    if (absl::Status s = CollectDirectory(tree.children(i), absl::StrCat("tree.children[", i, "]"),
                                          &out);
        !s.ok()) {
      return s;
    }
  }
  return std::vector<BlobId>(out.begin(), out.end());
}

cache::Entry ActionEntry(const BlobId& action, const std::string& encoded,
                         const std::optional<BlobId>& result_blob,
                         const std::vector<StoredBlob>& kept) {
  cache::Entry e;
  e.key = ActionKey(action);
  bool packed = false;
  std::set<oci::Digest> seen;
  for (const StoredBlob& b : kept) {
    if (b.stored.size == 0 || !seen.insert(b.stored.digest).second) continue;
    packed = packed || b.packed;
    e.blobs.push_back(b.stored);
  }
  nlohmann::ordered_json config = {{"reapi", packed ? "v3" : "v2"}, {"action", action.str()}};
  if (result_blob.has_value()) {
    config["resultBlob"] = result_blob->str();
  } else {
    config["result"] = absl::Base64Escape(encoded);
  }
  e.config = config.dump();
  e.annotations[kAnnotationAction] = action.str();
  return e;
}

absl::StatusOr<StoredResult> ReadActionEntry(const cache::Entry& entry) {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("entry ", entry.key, " is not a REAPI action result: ", why));
  };
  nlohmann::json j = nlohmann::json::parse(entry.config, nullptr, /*allow_exceptions=*/false);
  const std::string version = j.is_object() ? j.value("reapi", "") : "";
  if (version != "v2" && version != "v3") return bad("config lacks \"reapi\": \"v2\" or \"v3\"");
  StoredResult r;
  if (j.contains("result") && j["result"].is_string()) {
    if (!absl::Base64Unescape(j["result"].get<std::string>(), &r.inline_bytes)) {
      return bad("\"result\" is not base64");
    }
    return r;
  }
  if (j.contains("resultBlob") && j["resultBlob"].is_string()) {
    std::string s = j["resultBlob"].get<std::string>();
    size_t slash = s.find('/');
    int64_t size = -1;
    if (slash == std::string::npos) return bad("\"resultBlob\" is not HASH/SIZE");
    try {
      size = std::stoll(s.substr(slash + 1));
    } catch (...) {
      return bad("\"resultBlob\" is not HASH/SIZE");
    }
    auto id = MakeBlobId(s.substr(0, slash), size, "resultBlob");
    if (!id.ok()) return bad(id.status().message());
    r.blob = *id;
    return r;
  }
  return bad("no \"result\" or \"resultBlob\"");
}

std::vector<BlobId> EntryBlobs(const cache::Entry& entry) {
  std::vector<BlobId> out;
  out.reserve(entry.blobs.size());
  for (const oci::Descriptor& d : entry.blobs) out.push_back(BlobId{d.digest, d.size});
  return out;
}

std::string RequestMetadataFields(const v2::RequestMetadata& md) {
  std::string out;
  if (!md.tool_details().tool_name().empty()) {
    absl::StrAppend(&out, " tool=", Shown(md.tool_details().tool_name()));
    if (!md.tool_details().tool_version().empty()) {
      absl::StrAppend(&out, "/", Shown(md.tool_details().tool_version()));
    }
  }
  if (!md.tool_invocation_id().empty()) {
    absl::StrAppend(&out, " inv=", Shown(md.tool_invocation_id()));
  }
  if (!md.action_mnemonic().empty()) {
    absl::StrAppend(&out, " mnemonic=", Shown(md.action_mnemonic()));
  }
  if (!md.target_id().empty()) absl::StrAppend(&out, " target=", Shown(md.target_id()));
  return out;
}

}  // namespace ocicache::reapi
