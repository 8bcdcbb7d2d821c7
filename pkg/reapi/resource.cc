#include "pkg/reapi/resource.h"

#include <algorithm>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace ocicache::reapi {
namespace {

constexpr absl::string_view kKeywords[] = {"blobs",      "uploads",      "actions",
                                           "actionResults", "operations", "capabilities",
                                           "compressed-blobs"};

bool IsKeyword(absl::string_view s) {
  for (absl::string_view k : kKeywords) {
    if (s == k) return true;
  }
  return false;
}

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A registry path component: [a-z0-9]+ joined by '.', '_', '__' or one or more '-'.
bool IsPathComponent(absl::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  size_t i = 0;
  while (i < s.size()) {
    if (IsAlnum(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && !IsAlnum(s[j])) ++j;
    absl::string_view sep = s.substr(i, j - i);
    bool dashes = sep.find_first_not_of('-') == absl::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    i = j;
  }
  return true;
}

absl::StatusOr<BlobId> ParseHashSize(absl::string_view hash, absl::string_view size,
                                     absl::string_view name) {
  int64_t n = 0;
  // Digits only: SimpleAtoi alone would take " 12" or "+12" too.
  if (size.empty() || !std::all_of(size.begin(), size.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(size, &n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource name \"", name, "\": size \"", size, "\" is not a number"));
  }
  auto id = MakeBlobId(hash, n, "resource name");
  if (!id.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource name \"", name, "\": ", id.status().message()));
  }
  return id;
}

// Splits at the first keyword segment: the instance before it, the segments
// from it on. InvalidArgument when there is no keyword.
absl::Status SplitAtKeyword(absl::string_view name, std::string* instance,
                            std::vector<absl::string_view>* rest) {
  std::vector<absl::string_view> segs = absl::StrSplit(name, '/');
  size_t k = 0;
  while (k < segs.size() && !IsKeyword(segs[k])) ++k;
  if (k == segs.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resource name \"", name, "\": expected {instance/}blobs/HASH/SIZE or "
        "{instance/}uploads/UUID/blobs/HASH/SIZE"));
  }
  for (size_t i = 0; i < k; ++i) {
    if (segs[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "resource name \"", name, "\": an empty segment (a leading, trailing or doubled '/')"));
    }
  }
  *instance = absl::StrJoin(segs.begin(), segs.begin() + k, "/");
  if (absl::Status s = ValidateInstanceName(*instance); !s.ok()) return s;
  rest->assign(segs.begin() + k, segs.end());
  return absl::OkStatus();
}

absl::Status NoCompression(absl::string_view name) {
  return absl::InvalidArgumentError(absl::StrCat(
      "resource name \"", name,
      "\": compressed-blobs are not supported (the server lists no compressors)"));
}

}  // namespace

bool BlobId::empty() const {
  static const oci::Digest kEmpty = oci::Digest::Of("");
  return size == 0 && digest == kEmpty;
}

std::string BlobId::str() const { return absl::StrCat(digest.hex(), "/", size); }

absl::StatusOr<BlobId> MakeBlobId(absl::string_view hash, int64_t size, absl::string_view field) {
  auto d = oci::Digest::FromHex(hash);
  if (!d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": hash \"", hash.substr(0, 80), "\" is not 64 lowercase hex digits (SHA-256)"));
  }
  if (size < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": negative size ", size));
  }
  return BlobId{*d, size};
}

absl::Status ValidateInstanceName(absl::string_view name) {
  if (name.empty()) return absl::OkStatus();
  if (name.size() > kMaxInstanceBytes) {
    return absl::InvalidArgumentError(absl::StrCat("instance name: ", name.size(),
                                                   " bytes, the limit is ", kMaxInstanceBytes));
  }
  for (absl::string_view seg : absl::StrSplit(name, '/')) {
    if (IsKeyword(seg)) {
      return absl::InvalidArgumentError(absl::StrCat("instance name \"", name,
                                                     "\": segment \"", seg, "\" is reserved"));
    }
    if (!IsPathComponent(seg)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "instance name \"", name, "\": segment \"", seg,
          "\" is not [a-z0-9]+ joined by '.', '_', '__' or '-'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReadResource> ParseReadResource(absl::string_view name) {
  ReadResource r;
  std::vector<absl::string_view> rest;
  if (absl::Status s = SplitAtKeyword(name, &r.instance, &rest); !s.ok()) return s;
  if (rest[0] == "compressed-blobs") return NoCompression(name);
  if (rest[0] != "blobs" || rest.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource name \"", name, "\": expected {instance/}blobs/HASH/SIZE"));
  }
  auto id = ParseHashSize(rest[1], rest[2], name);
  if (!id.ok()) return id.status();
  r.blob = *id;
  return r;
}

absl::StatusOr<WriteResource> ParseWriteResource(absl::string_view name) {
  WriteResource w;
  std::vector<absl::string_view> rest;
  if (absl::Status s = SplitAtKeyword(name, &w.instance, &rest); !s.ok()) return s;
  if (rest[0] != "uploads" || rest.size() < 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resource name \"", name, "\": expected {instance/}uploads/UUID/blobs/HASH/SIZE"));
  }
  if (rest[1].empty() || rest[1].size() > kMaxUuidBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource name \"", name, "\": the upload id must be 1 to ",
                     kMaxUuidBytes, " bytes"));
  }
  w.uuid = std::string(rest[1]);
  if (rest[2] == "compressed-blobs") return NoCompression(name);
  // Anything after SIZE is optional metadata, ignored.
  if (rest[2] != "blobs" || rest.size() < 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resource name \"", name, "\": expected {instance/}uploads/UUID/blobs/HASH/SIZE"));
  }
  auto id = ParseHashSize(rest[3], rest[4], name);
  if (!id.ok()) return id.status();
  w.blob = *id;
  return w;
}

}  // namespace ocicache::reapi
