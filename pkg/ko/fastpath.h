// What ocicache-go decides without opening a store (so without loading the
// registry client's libraries): whether ko's KOCACHE files already know a build
// id, and whether it was looked up and missed moments ago. Free of Abseil, like
// process.h.
#ifndef OCICACHE_PKG_KO_FASTPATH_H_
#define OCICACHE_PKG_KO_FASTPATH_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace ocicache::ko {

inline constexpr char kBuildIdToDiffIdFile[] = "buildid-to-diffid";
inline constexpr char kDiffIdToDescriptorFile[] = "diffid-to-descriptor";
// Beside the two files: the last build id the wrapper looked up and missed (or
// could not look up), so ko's second `go tool buildid` for the same binary
// (after it built the layer) does not ask the registry again.
inline constexpr char kRecentMissFile[] = ".ocicache-miss";
inline constexpr int kRecentMissSeconds = 600;

// Offset just past the JSON value starting at s[start] (not whitespace), or
// s.size() if it does not end there: brackets and strings are tracked, a parser
// judges the rest.
size_t JsonValueEnd(std::string_view s, size_t start);

// Parses the first JSON value of bytes, ignoring what follows it (as Go's
// json.Decoder does). False with *error (nlohmann's message, position included)
// if it is not valid JSON; *text (if given) is the value's text within bytes.
bool ParseFirstJson(std::string_view bytes, nlohmann::ordered_json* out, std::string* error,
                    std::string_view* text = nullptr);

// Whether DIR's buildid-to-diffid maps build_id to a sha256 diffid that
// DIR's diffid-to-descriptor maps to a descriptor (an object with a mediaType,
// an integer size and a digest): ko will then find the layer without help.
// Files that are missing, unreadable or invalid count as not knowing it.
bool KocacheKnows(const std::string& dir, const std::string& build_id);

// Whether DIR/.ocicache-miss names build_id and is younger than max_age_seconds.
bool RecentMiss(const std::string& dir, const std::string& build_id,
                int max_age_seconds = kRecentMissSeconds);

// Whether s is "sha256:" and 64 lowercase hex digits.
bool IsSha256Digest(std::string_view s);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_FASTPATH_H_
