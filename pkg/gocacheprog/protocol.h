// Go's GOCACHEPROG wire protocol (as the go command speaks it, Go 1.21+): JSON
// objects, one per line, on the helper's stdin (requests) and stdout (responses).
//
//   helper -> go   {"ID":0,"KnownCommands":["get","put","close"]}       first, unasked
//   go -> helper   {"ID":n,"Command":"get","ActionID":"<base64>"}
//                  {"ID":n,"Command":"put","ActionID":..,"ObjectID":..,"BodySize":N}
//                  then, only when N > 0, one line: "<standard base64 of the body>"
//                  {"ID":n,"Command":"close"}
//   helper -> go   {"ID":n,"Miss":true}
//                  {"ID":n,"OutputID":"<base64>","Size":N,"Time":"<RFC 3339>","DiskPath":"/abs"}
//                  {"ID":n,"DiskPath":"/abs"}                            (put)
//                  {"ID":n}                                              (close)
//                  {"ID":n,"Err":"..."}
//
// go writes each request with json.Encoder (which ends it with '\n') plus one more
// '\n', so blank lines separate requests; BodySize is omitted when 0 ([]byte
// fields use standard base64, omitted when empty). Responses may come in any order.
//
// This file holds the pure parts: request parsing, response encoding and a
// streaming base64 decoder. stream.h reads lines and put bodies.
#ifndef OCICACHE_PKG_GOCACHEPROG_PROTOCOL_H_
#define OCICACHE_PKG_GOCACHEPROG_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ocicache::gocacheprog {

// ActionID and ObjectID/OutputID are SHA-256 values.
inline constexpr size_t kIdBytes = 32;

// The first message: the commands this helper implements.
std::string HelloLine();

struct Request {
  int64_t id = 0;
  std::string command;    // "get", "put", "close", or anything go may add later
  std::string action_id;  // raw bytes (decoded from base64), empty when absent
  std::string object_id;  // raw bytes, empty when absent
  int64_t body_size = 0;  // 0 when absent
};

// The outcome of parsing one request line. `status` is OK for a well-formed
// request. When it is not, `id_known` tells whether an error can be answered
// (the line had a usable "ID"), and `body_follows` whether a body line is still
// to be consumed (a "BodySize" > 0 could be read).
struct ParsedRequest {
  absl::Status status;
  bool id_known = false;
  bool body_follows = false;
  Request request;
};

// Parses one request line (without its '\n'). Checks the JSON shape and field
// types, the base64 of ActionID/ObjectID and their length (32 bytes when
// present), and that BodySize is not negative. Command-specific checks (a get
// without ActionID) are the server's. `truncated` says the line was longer than
// the reader's cap and only its beginning is given: the ID is recovered from the
// beginning if possible, and the request is an error.
ParsedRequest ParseRequest(absl::string_view line, bool truncated = false);

// Response lines, each ending in '\n'.
std::string ErrorLine(int64_t id, absl::string_view message);
std::string MissLine(int64_t id);
// A get hit. output_id is the 32 raw bytes.
std::string HitLine(int64_t id, absl::string_view output_id, int64_t size, absl::Time time,
                    absl::string_view disk_path);
std::string PutLine(int64_t id, absl::string_view disk_path);
std::string CloseLine(int64_t id);

// Go's time.Time JSON form (RFC 3339 with nanoseconds, trailing zeros dropped), in UTC.
std::string GoTime(absl::Time t);

// Standard base64 with padding, as Go's encoding/json writes []byte.
std::string Base64Encode(absl::string_view raw);
// Strict standard base64 (padding required, no whitespace). nullopt when invalid.
std::optional<std::string> Base64Decode(absl::string_view text);

// Decodes standard base64 fed in arbitrary pieces, so a body of any size is
// decoded without holding its text. Padding ('=') may only end the input.
class Base64StreamDecoder {
 public:
  // Decodes `text`, appending bytes to *out. InvalidArgument on a character
  // outside the alphabet or data after padding.
  absl::Status Feed(absl::string_view text, std::string* out);
  // Checks the input ended on a complete quantum (padding included).
  absl::Status Finish();
  // Bytes decoded so far.
  int64_t decoded() const { return decoded_; }

 private:
  uint32_t acc_ = 0;   // pending 6-bit groups
  int groups_ = 0;     // groups in acc_ (0..3)
  int padding_ = 0;    // '=' seen
  int64_t chars_ = 0;  // characters consumed
  int64_t decoded_ = 0;
};

// Lowercase hex of raw bytes (an ActionID as a cache key).
std::string Hex(absl::string_view raw);

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_PROTOCOL_H_
