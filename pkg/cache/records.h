// Listing records: what `ls`, `gc` and `sync` need about every entry of a
// registry repository (key, tag, manifest digest, created, last used, size,
// annotations), kept in a few blobs instead of read from one manifest per entry.
// The format is specified in docs/FORMAT.md ("Listing records").
//
// A record is an ordinary manifest in the (base) repository, tagged
// "r.<writer>.<part>", whose one layer is a JSON-lines file of rows. Writers (a
// server's RegistryStore) add a row for every entry they put or touch and
// rewrite their current part now and then; gc replaces the records it read
// with one merged set. Records may lag, disagree or be lost: the entry's own
// manifest stays the truth for a lookup, for any entry no record names (read
// one by one, as before records), and for a deletion (gc reads each manifest
// it deletes).
#ifndef OCICACHE_PKG_CACHE_RECORDS_H_
#define OCICACHE_PKG_CACHE_RECORDS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/cache/entry.h"
#include "pkg/oci/types.h"

namespace ocicache::cache::records {

inline constexpr char kArtifactType[] = "application/vnd.ocicache.records.v1";
inline constexpr char kLayerMediaType[] = "application/vnd.ocicache.records.v1+jsonl";
inline constexpr char kAnnotationWriter[] = "org.ocicache.records.writer";
inline constexpr char kAnnotationRows[] = "org.ocicache.records.rows";
// Rows per part: a writer starts a new part past this, so a rewrite stays small.
inline constexpr size_t kRowsPerPart = 10000;

// "r.<writer>.<part>"; writer is [a-z0-9-]{1,80}.
std::string RecordTag(absl::string_view writer, int64_t part);
bool IsRecordTag(absl::string_view tag);
// A writer name unique to this process: "<host>-<pid>-<random>", sanitized.
std::string NewWriterName(absl::string_view prefix = "");

// One JSON line per row (EntryInfo's fields), in the order given.
std::string EncodeRows(const std::vector<EntryInfo>& rows);
// The rows of a record's layer; malformed lines are skipped (counted in *bad).
std::vector<EntryInfo> DecodeRows(absl::string_view jsonl, int64_t* bad = nullptr);

// The manifest of a record whose layer is `layer`; its config is the empty
// JSON object (config_digest, 2 bytes, inlined as data).
std::string EncodeRecordManifest(const oci::Descriptor& layer, absl::string_view writer,
                                 int64_t rows, absl::Time now);
// The layer descriptor of a record manifest (InvalidArgument if it is not one).
absl::StatusOr<oci::Descriptor> RecordLayer(absl::string_view manifest);

// Merges rows by tag: the row last used latest wins (its digest, size and
// annotations), with the earliest created of all rows for that tag.
void MergeRow(std::map<std::string, EntryInfo>& by_tag, EntryInfo row);

}  // namespace ocicache::cache::records

#endif  // OCICACHE_PKG_CACHE_RECORDS_H_
