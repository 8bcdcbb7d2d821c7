#include "pkg/reapi/packed.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ocicache::reapi {
namespace {

// The mapping entry's config: {"cas":"v1","encoding":"zstd","digest":...,"size":...}.
constexpr char kMappingFormat[] = "v1";

}  // namespace

StoredBlob Unpacked(const BlobId& raw) {
  StoredBlob b;
  b.raw = raw;
  b.stored.media_type = oci::media::kOctetStream;
  b.stored.digest = raw.digest;
  b.stored.size = raw.size;
  return b;
}

StoredBlob Packed(const BlobId& raw, const oci::Descriptor& frame) {
  StoredBlob b;
  b.raw = raw;
  b.packed = true;
  b.stored.media_type = oci::media::kZstd;
  b.stored.digest = frame.digest;
  b.stored.size = frame.size;
  b.stored.annotations[kAnnotationRawDigest] = raw.digest.str();
  b.stored.annotations[kAnnotationRawSize] = absl::StrCat(raw.size);
  return b;
}

std::string MappingKey(const oci::Digest& raw) { return "cas:" + raw.str(); }

cache::Entry MappingEntry(const StoredBlob& b) {
  cache::Entry e;
  e.key = MappingKey(b.raw.digest);
  nlohmann::ordered_json config = {{"cas", kMappingFormat},
                                   {"encoding", "zstd"},
                                   {"digest", b.raw.digest.str()},
                                   {"size", b.raw.size}};
  e.config = config.dump();
  e.blobs.push_back(b.stored);
  return e;
}

absl::StatusOr<StoredBlob> ReadMappingEntry(const cache::Entry& entry, const BlobId& raw) {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("entry ", entry.key, " is not the mapping of blob ",
                                            raw.digest.str(), ": ", why));
  };
  nlohmann::json j = nlohmann::json::parse(entry.config, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("cas", "") != kMappingFormat) {
    return bad("its config lacks \"cas\": \"v1\"");
  }
  if (j.value("encoding", "") != "zstd") return bad("an encoding other than zstd");
  if (j.value("digest", "") != raw.digest.str()) return bad("it names another digest");
  if (!j.contains("size") || !j["size"].is_number_integer()) return bad("no size");
  const int64_t size = j["size"].get<int64_t>();
  if (size < kMinPackedBytes || (raw.size >= 0 && size != raw.size)) {
    return bad(absl::StrCat("its size is ", size));
  }
  if (entry.blobs.size() != 1) return bad("it has no single layer");
  std::optional<StoredBlob> b = PackedLayer(entry.blobs[0]);
  if (!b.has_value() || b->raw.digest != raw.digest || b->raw.size != size) {
    return bad("its layer is not the packed blob");
  }
  return *b;
}

std::optional<StoredBlob> PackedLayer(const oci::Descriptor& layer) {
  if (layer.media_type != oci::media::kZstd) return std::nullopt;
  auto d = layer.annotations.find(kAnnotationRawDigest);
  auto s = layer.annotations.find(kAnnotationRawSize);
  if (d == layer.annotations.end() || s == layer.annotations.end()) return std::nullopt;
  auto digest = oci::Digest::Parse(d->second);
  int64_t size = 0;
  if (!digest.ok() || !absl::SimpleAtoi(s->second, &size) || size < kMinPackedBytes) {
    return std::nullopt;
  }
  return Packed(BlobId{*digest, size}, layer);
}

absl::Status UnpackedSink::Write(absl::string_view chunk) {
  if (seen_ + static_cast<int64_t>(chunk.size()) > raw_.size) {
    return absl::DataLossError(absl::StrCat("blob ", raw_.str(), ": its stored frame decodes to ",
                                            "more than ", raw_.size, " bytes"));
  }
  hash_.Update(chunk);
  const int64_t start = seen_;
  seen_ += static_cast<int64_t>(chunk.size());
  if (seen_ <= offset_) return absl::OkStatus();
  if (start < offset_) chunk.remove_prefix(static_cast<size_t>(offset_ - start));
  return inner_.Write(chunk);
}

absl::Status UnpackedSink::Finish() {
  if (seen_ != raw_.size) {
    return absl::DataLossError(absl::StrCat("blob ", raw_.str(), ": its stored frame decodes to ",
                                            seen_, " bytes"));
  }
  oci::Digest got = hash_.Finish();
  if (got != raw_.digest) {
    return absl::DataLossError(absl::StrCat("blob ", raw_.str(),
                                            ": its stored frame decodes to other bytes (sha256:",
                                            got.hex(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace ocicache::reapi
