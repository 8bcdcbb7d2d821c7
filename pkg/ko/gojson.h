// JSON bytes exactly as Go's encoding/json writes them, so files ko reads and
// writes (KOCACHE's buildid-to-diffid and diffid-to-descriptor) round-trip byte
// for byte. Object members are written in the order the ordered_json holds them
// (Go writes struct fields in declaration order and map keys sorted; callers keep
// the order they found, or sort maps themselves).
//
// Strings follow Go's encoder with HTML escaping on (the default for json.Marshal,
// MarshalIndent and Encoder): `"` and `\` escaped, \b \f \n \r \t short forms,
// other bytes below 0x20 and `<` `>` `&` as \u00XX (lowercase hex), U+2028 and
// U+2029 as \u2028 \u2029, and each byte of invalid UTF-8 as \ufffd. Integers are
// decimal; floats use Go's choice ('f' format for 1e-6 <= |x| < 1e21, else 'e'
// with at least one exponent digit), shortest round-trip digits.
#ifndef OCICACHE_PKG_KO_GOJSON_H_
#define OCICACHE_PKG_KO_GOJSON_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace ocicache::ko {

// json.Marshal(v).
std::string GoMarshal(const nlohmann::ordered_json& v);
// json.MarshalIndent(v, prefix, indent).
std::string GoMarshalIndent(const nlohmann::ordered_json& v, absl::string_view prefix,
                            absl::string_view indent);
// One JSON string, quoted and escaped as Go does.
std::string GoQuote(absl::string_view s);

// Token-level rewriting of JSON text that is known to be valid (checked by a
// parser first), keeping every token verbatim, escapes included, so text Go
// wrote comes back exactly: Go's MarshalIndent output is Indent(Marshal output).
//
// json.Compact: whitespace outside strings removed.
std::string GoCompact(absl::string_view valid_json);
// json.Indent with prefix and indent: one element per line, "key": value, empty
// objects and arrays kept as {} and [], no prefix before the first line.
std::string GoIndent(absl::string_view valid_json, absl::string_view prefix,
                     absl::string_view indent);
// The members of a valid JSON object text, in order: (decoded key, the value's
// text as found). InvalidArgument if the text is not an object.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ObjectMembers(
    absl::string_view valid_object);

// Parses the first JSON value in `bytes` and ignores whatever follows it, as Go's
// json.Decoder.Decode does (ko rewrites its files in place without truncating, so
// stale bytes may follow the value). Object member order is kept. Leading
// whitespace is skipped. InvalidArgument with the position and reason when the
// first value is not valid JSON (including empty input). `*text`, if given, is
// set to the value's text within bytes.
absl::StatusOr<nlohmann::ordered_json> ParseFirstValue(absl::string_view bytes,
                                                       absl::string_view* text = nullptr);

}  // namespace ocicache::ko

#endif  // OCICACHE_PKG_KO_GOJSON_H_
