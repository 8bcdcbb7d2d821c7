// ko's KOCACHE metadata files (docs/FORMAT.md gives the entries they map to):
//
//   $KOCACHE/bin/<import path>/<os>/<arch>[/<variant>]/
//       buildid-to-diffid      {"<go build id>": "sha256:<diffid>", ...}
//       diffid-to-descriptor   {"sha256:<diffid>": <v1.Descriptor>, ...}
//
// Reading tolerates what ko leaves behind: ko rewrites both files in place without
// truncating, so bytes may follow the first JSON value; they are ignored, as Go's
// json.Decoder ignores them. Writing produces exactly ko's bytes (json.Encoder
// with SetIndent("", "  "): keys sorted, two-space indent, a final newline, Go's
// string escaping), as a whole new file renamed into place. Descriptors are kept
// as the JSON text found (compacted as json.Compact does: members, member order and
// string escapes untouched), so a descriptor ko wrote survives byte for byte, and
// its compact text is exactly what ko's json.Marshal produced.
#ifndef OCICACHE_PKG_KO_KOCACHE_H_
#define OCICACHE_PKG_KO_KOCACHE_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "pkg/ko/fastpath.h"

namespace ocicache::ko {

using BuildIdToDiffId = std::map<std::string, std::string>;             // build id -> diffid
// diffid -> the descriptor's compact JSON text.
using DiffIdToDescriptor = std::map<std::string, std::string>;

using Warn = std::function<void(absl::string_view)>;

// Parse a file's bytes. Empty (or whitespace-only) content and a JSON null are
// empty maps (ko treats them as a miss). Anything else must be an object whose
// keys and values ko can decode: build ids to "sha256:<64 hex>" diffids, and
// diffids to descriptors (ValidateDescriptor); otherwise InvalidArgument saying
// what is wrong and where.
absl::StatusOr<BuildIdToDiffId> ParseBuildIdToDiffId(absl::string_view bytes);
absl::StatusOr<DiffIdToDescriptor> ParseDiffIdToDescriptor(absl::string_view bytes);

// ko's bytes for the files.
std::string EncodeBuildIdToDiffId(const BuildIdToDiffId& m);
std::string EncodeDiffIdToDescriptor(const DiffIdToDescriptor& m);

// Whether a descriptor decodes as go-containerregistry's v1.Descriptor: an
// object with a string mediaType, an integer size >= 0, a sha256 digest, and when
// present a string data, an array of string urls, an object of string
// annotations and an object platform. Other members are kept but not checked.
absl::Status ValidateDescriptor(const nlohmann::ordered_json& d);
// The same for JSON text (which must also parse).
absl::Status ValidateDescriptorJson(absl::string_view text);

// A build id whose layer is known: what one cache entry holds.
struct Record {
  std::string build_id;
  std::string diff_id;     // "sha256:<hex>"
  std::string descriptor;  // compact JSON, as Go's json.Marshal writes it
  std::string import_path;
  std::string platform;    // "linux/amd64", "linux/arm/v7"
};

// The two maps of one bin directory.
struct KoFiles {
  BuildIdToDiffId build_to_diff;
  DiffIdToDescriptor diff_to_desc;
  // Files that exist but could not be used (unreadable or invalid JSON), each
  // "<path>: <reason>"; such a file counts as empty.
  std::vector<std::string> problems;
};

// Reads DIR/buildid-to-diffid and DIR/diffid-to-descriptor. A missing file is
// empty; an invalid one is empty and listed in problems.
KoFiles ReadKoFiles(const std::string& dir);

// The complete records in files: build ids whose diffid has a descriptor (with
// import_path and platform left empty). *incomplete counts the others.
std::vector<Record> CompleteRecords(const KoFiles& files, int* incomplete);

struct MergeStats {
  int added = 0;    // build ids written
  int present = 0;  // build ids whose diffid and descriptor were there already
};

// Merges records into DIR's two files, creating DIR (and parents) if needed, as
// ko would have written them. Existing content wins: a build id already mapped to
// a diffid that has a descriptor is left alone; a diffid that has a descriptor
// keeps it. An invalid existing file is treated as empty (a warning through
// `warn`) and replaced by the merged content. Writers of this package serialize
// on an flock of DIR; each file is written to a temp file and renamed, the
// descriptor file first, so a reader never sees a build id without its
// descriptor. New files get mode 0755 minus umask, as ko creates them; existing
// files keep their mode. Nothing is written when nothing changes.
absl::StatusOr<MergeStats> MergeIntoDir(const std::string& dir, const std::vector<Record>& records,
                                        const Warn& warn);

// Splits a bin directory path relative to $KOCACHE/bin
// ("github.com/a/b/cmd/x/linux/arm/v7") into the import path and the platform
// ("os/arch[/variant]", the last part possibly with ":osversion"). The platform
// is the last two parts when the part before them is a GOOS, else the last three
// when the third from last is a GOOS and the last looks like a variant (v5, v8.0).
absl::Status SplitBinPath(absl::string_view rel, std::string* import_path, std::string* platform);

// $KOCACHE/bin/<import path>/<platform>, refusing import paths and platforms that
// could leave bin/ (absolute, empty, "." or ".." parts, NUL, backslash).
absl::StatusOr<std::string> BinDir(absl::string_view kocache, absl::string_view import_path,
                                   absl::string_view platform);

struct BinDirInfo {
  std::string dir;  // absolute or as given: $KOCACHE/bin/...
  std::string import_path;
  std::string platform;
};

// Every directory under $KOCACHE/bin that holds a buildid-to-diffid file, sorted.
// Directories whose path cannot be split are reported through warn and skipped.
// Symbolic links are not followed. A missing bin/ is an empty result.
absl::StatusOr<std::vector<BinDirInfo>> FindBinDirs(const std::string& kocache, const Warn& warn);

// Writes bytes to DIR/name through a temp file in DIR and a rename. `mode` is
// used when the file does not exist (umask applies); an existing file's mode is kept.
absl::Status WriteFileAtomic(const std::string& dir, const std::string& name,
                             absl::string_view bytes, int mode = 0755);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_KOCACHE_H_
