#include "pkg/gocacheprog/protocol.h"

#include <cctype>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ocicache::gocacheprog {
namespace {

using json = nlohmann::ordered_json;

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// -1: not in the alphabet.
struct DecodeTable {
  int8_t v[256];
  constexpr DecodeTable() : v() {
    for (int i = 0; i < 256; ++i) v[i] = -1;
    for (int i = 0; i < 64; ++i) v[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
};
constexpr DecodeTable kDecode;

std::string Line(const json& j) {
  // Messages may quote input bytes that are not UTF-8: replace, never throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// Recovers the ID from the start of a line that is not valid JSON: go writes
// the ID first ({"ID":12,...}), so only that exact prefix is trusted.
bool SalvageId(absl::string_view line, int64_t* id) {
  absl::string_view s = absl::StripLeadingAsciiWhitespace(line);
  if (s.empty() || s[0] != '{') return false;
  s = absl::StripLeadingAsciiWhitespace(s.substr(1));
  if (s.substr(0, 4) != "\"ID\"") return false;
  s = absl::StripLeadingAsciiWhitespace(s.substr(4));
  if (s.empty() || s[0] != ':') return false;
  s = absl::StripLeadingAsciiWhitespace(s.substr(1));
  size_t n = 0;
  while (n < s.size() && n < 19 && std::isdigit(static_cast<unsigned char>(s[n]))) ++n;
  if (n == 0 || n == 19) return false;
  // The number must be complete: followed by a delimiter, not cut by the cap.
  if (n == s.size()) return false;
  char next = s[n];
  if (next != ',' && next != '}' && !absl::ascii_isspace(static_cast<unsigned char>(next))) {
    return false;
  }
  return absl::SimpleAtoi(s.substr(0, n), id);
}

bool GetInt64(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  return false;
}

// A []byte field: absent or null is empty; otherwise base64 of exactly 32 bytes.
absl::Status GetId(const json& obj, const char* name, std::string* out) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is not a base64 string"));
  }
  auto raw = Base64Decode(it->get_ref<const std::string&>());
  if (!raw.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is not valid base64"));
  }
  if (raw->size() != kIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has ", raw->size(), " bytes, expected ", kIdBytes));
  }
  *out = *std::move(raw);
  return absl::OkStatus();
}

}  // namespace

std::string HelloLine() { return Line(json{{"ID", 0}, {"KnownCommands", {"get", "put", "close"}}}); }

ParsedRequest ParseRequest(absl::string_view line, bool truncated) {
  ParsedRequest p;
  if (truncated) {
    p.id_known = SalvageId(line, &p.request.id);
    p.status = absl::InvalidArgumentError(
        absl::StrCat("request line is too long (more than ", line.size(), " bytes)"));
    return p;
  }
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    p.id_known = SalvageId(line, &p.request.id);
    std::string shown(line.substr(0, 80));
    p.status = absl::InvalidArgumentError(absl::StrCat(
        "request is not a JSON object: \"", absl::CHexEscape(shown), line.size() > 80 ? "..." : "",
        "\""));
    return p;
  }
  Request& r = p.request;
  auto id = j.find("ID");
  if (id == j.end() || !GetInt64(*id, &r.id)) {
    p.status = absl::InvalidArgumentError("request has no integer \"ID\"");
    return p;
  }
  p.id_known = true;
  // BodySize first: even a request with other errors must have its body skipped.
  if (auto bs = j.find("BodySize"); bs != j.end() && !bs->is_null()) {
    if (!GetInt64(*bs, &r.body_size)) {
      p.status = absl::InvalidArgumentError("BodySize is not an integer");
      return p;
    }
    if (r.body_size < 0) {
      p.status = absl::InvalidArgumentError(absl::StrCat("BodySize ", r.body_size, " is negative"));
      r.body_size = 0;
      return p;
    }
    p.body_follows = r.body_size > 0;
  }
  auto cmd = j.find("Command");
  if (cmd == j.end() || !cmd->is_string()) {
    p.status = absl::InvalidArgumentError("request has no \"Command\" string");
    return p;
  }
  r.command = cmd->get<std::string>();
  if (absl::Status s = GetId(j, "ActionID", &r.action_id); !s.ok()) {
    p.status = s;
    return p;
  }
  if (absl::Status s = GetId(j, "ObjectID", &r.object_id); !s.ok()) {
    p.status = s;
    return p;
  }
  p.status = absl::OkStatus();
  return p;
}

std::string ErrorLine(int64_t id, absl::string_view message) {
  return Line(json{{"ID", id}, {"Err", std::string(message)}});
}

std::string MissLine(int64_t id) { return Line(json{{"ID", id}, {"Miss", true}}); }

std::string HitLine(int64_t id, absl::string_view output_id, int64_t size, absl::Time time,
                    absl::string_view disk_path) {
  json j{{"ID", id}, {"OutputID", Base64Encode(output_id)}};
  if (size != 0) j["Size"] = size;  // Go omits a zero Size too
  j["Time"] = GoTime(time);
  j["DiskPath"] = std::string(disk_path);
  return Line(j);
}

std::string PutLine(int64_t id, absl::string_view disk_path) {
  return Line(json{{"ID", id}, {"DiskPath", std::string(disk_path)}});
}

std::string CloseLine(int64_t id) { return Line(json{{"ID", id}}); }

std::string GoTime(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) t = absl::Now();
  return absl::FormatTime(std::string("%Y-%m-%dT%H:%M:%E*SZ"), t, absl::UTCTimeZone());
}

std::string Base64Encode(absl::string_view raw) {
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  size_t i = 0;
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(raw[k])); };
  for (; i + 3 <= raw.size(); i += 3) {
    uint32_t v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  size_t rest = raw.size() - i;
  if (rest == 1) {
    uint32_t v = b(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t v = (b(i) << 16) | (b(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(absl::string_view text) {
  Base64StreamDecoder d;
  std::string out;
  if (!d.Feed(text, &out).ok() || !d.Finish().ok()) return std::nullopt;
  return out;
}

absl::Status Base64StreamDecoder::Feed(absl::string_view text, std::string* out) {
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '=') {
      // Padding completes a quantum of 2 or 3 groups: "xx==" or "xxx=".
      if (padding_ == 0 && groups_ < 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("misplaced '=' at base64 character ", chars_));
      }
      if (padding_ > 0 && (groups_ != 2 || padding_ >= 2)) {
        return absl::InvalidArgumentError(
            absl::StrCat("misplaced '=' at base64 character ", chars_));
      }
      if (padding_ == 0) {
        // Emit the bytes the partial quantum holds.
        if (groups_ == 2) {
          out->push_back(static_cast<char>((acc_ >> 4) & 0xff));
          decoded_ += 1;
        } else {  // 3 groups
          out->push_back(static_cast<char>((acc_ >> 10) & 0xff));
          out->push_back(static_cast<char>((acc_ >> 2) & 0xff));
          decoded_ += 2;
        }
      }
      ++padding_;
      ++chars_;
      continue;
    }
    int v = kDecode.v[c];
    if (v < 0) {
      std::string shown = absl::ascii_isprint(c) ? std::string(1, ch) : absl::StrCat("\\x", absl::Hex(c, absl::kZeroPad2));
      return absl::InvalidArgumentError(
          absl::StrCat("invalid base64 character '", shown, "' at position ", chars_));
    }
    if (padding_ > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("base64 data after padding at position ", chars_));
    }
    acc_ = (acc_ << 6) | static_cast<uint32_t>(v);
    ++groups_;
    ++chars_;
    if (groups_ == 4) {
      out->push_back(static_cast<char>((acc_ >> 16) & 0xff));
      out->push_back(static_cast<char>((acc_ >> 8) & 0xff));
      out->push_back(static_cast<char>(acc_ & 0xff));
      decoded_ += 3;
      acc_ = 0;
      groups_ = 0;
    }
  }
  return absl::OkStatus();
}

absl::Status Base64StreamDecoder::Finish() {
  if (padding_ > 0) {
    // "xx==" needs two '=', "xxx=" one.
    if ((groups_ == 2 && padding_ == 2) || (groups_ == 3 && padding_ == 1)) return absl::OkStatus();
    return absl::InvalidArgumentError("base64 padding is incomplete");
  }
  if (groups_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("base64 text ends inside a quantum (", chars_, " characters)"));
  }
  return absl::OkStatus();
}

std::string Hex(absl::string_view raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (char ch : raw) {
    unsigned char c = static_cast<unsigned char>(ch);
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

}  // namespace ocicache::gocacheprog
