#include "pkg/ko/gojson.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "pkg/ko/fastpath.h"

namespace ocicache::ko {
namespace {

using ojson = nlohmann::ordered_json;

constexpr char kHex[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid
// (the same rules as Go's utf8.DecodeRune: no overlong forms, no surrogates,
// nothing above U+10FFFF). *rune receives the code point.
size_t Utf8Len(absl::string_view s, size_t i, uint32_t* rune) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    *rune = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    *rune = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    *rune = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    unsigned char x = b(k);
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (x < l || x > h) return 0;
    *rune = (*rune << 6) | (x & 0x3F);
  }
  return n;
}

void AppendQuoted(std::string* out, absl::string_view s) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
        case '\\':
          out->push_back('\\');
          out->push_back(static_cast<char>(c));
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            out->append("\\u00");
            out->push_back(kHex[c >> 4]);
            out->push_back(kHex[c & 0xF]);
          } else {
            out->push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    uint32_t rune = 0;
    size_t n = Utf8Len(s, i, &rune);
    if (n == 0) {
      out->append("\\ufffd");
      ++i;
      continue;
    }
    if (rune == 0x2028 || rune == 0x2029) {
      out->append(rune == 0x2028 ? "\\u2028" : "\\u2029");
    } else {
      out->append(s.data() + i, n);
    }
    i += n;
  }
  out->push_back('"');
}

void AppendFloat(std::string* out, double v) {
  char buf[64];
  double a = std::fabs(v);
  bool exp = a != 0 && (a < 1e-6 || a >= 1e21);
  auto r = std::to_chars(buf, buf + sizeof buf, v,
                         exp ? std::chars_format::scientific : std::chars_format::fixed);
  std::string s(buf, r.ptr);
  if (exp) {
    // Go writes e-07 as e-7.
    size_t n = s.size();
    if (n >= 4 && s[n - 4] == 'e' && s[n - 3] == '-' && s[n - 2] == '0') s.erase(n - 2, 1);
  }
  out->append(s);
}

void Write(std::string* out, const ojson& v, absl::string_view prefix, absl::string_view indent,
           bool pretty, int depth) {
  auto newline = [&](int d) {
    out->push_back('\n');
    out->append(prefix.data(), prefix.size());
    for (int k = 0; k < d; ++k) out->append(indent.data(), indent.size());
  };
  switch (v.type()) {
    case ojson::value_t::null:
    case ojson::value_t::discarded:
      out->append("null");
      return;
    case ojson::value_t::boolean:
      out->append(v.get<bool>() ? "true" : "false");
      return;
    case ojson::value_t::number_integer:
      out->append(std::to_string(v.get<int64_t>()));
      return;
    case ojson::value_t::number_unsigned:
      out->append(std::to_string(v.get<uint64_t>()));
      return;
    case ojson::value_t::number_float:
      AppendFloat(out, v.get<double>());
      return;
    case ojson::value_t::string:
      AppendQuoted(out, v.get_ref<const std::string&>());
      return;
    case ojson::value_t::binary:
      // Not produced by the parser; Go would write []byte as base64, never needed here.
      out->append("null");
      return;
    case ojson::value_t::array: {
      if (v.empty()) {
        out->append("[]");
        return;
      }
      out->push_back('[');
      bool first = true;
      for (const auto& x : v) {
        if (!first) out->push_back(',');
        first = false;
        if (pretty) newline(depth + 1);
        Write(out, x, prefix, indent, pretty, depth + 1);
      }
      if (pretty) newline(depth);
      out->push_back(']');
      return;
    }
    case ojson::value_t::object: {
      if (v.empty()) {
        out->append("{}");
        return;
      }
      out->push_back('{');
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out->push_back(',');
        first = false;
        if (pretty) newline(depth + 1);
        AppendQuoted(out, it.key());
        out->append(pretty ? ": " : ":");
        Write(out, it.value(), prefix, indent, pretty, depth + 1);
      }
      if (pretty) newline(depth);
      out->push_back('}');
      return;
    }
  }
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Inside a JSON string literal: copies s[*i] (and the byte it escapes) to out and
// returns whether the literal is still open afterwards.
bool CopyStringByte(absl::string_view s, size_t* i, std::string* out) {
  char c = s[*i];
  out->push_back(c);
  if (c == '\\' && *i + 1 < s.size()) {
    out->push_back(s[++*i]);
    return true;
  }
  return c != '"';
}

}  // namespace

std::string GoMarshal(const nlohmann::ordered_json& v) {
  std::string out;
  Write(&out, v, "", "", /*pretty=*/false, 0);
  return out;
}

std::string GoMarshalIndent(const nlohmann::ordered_json& v, absl::string_view prefix,
                            absl::string_view indent) {
  std::string out;
  Write(&out, v, prefix, indent, /*pretty=*/true, 0);
  return out;
}

std::string GoQuote(absl::string_view s) {
  std::string out;
  AppendQuoted(&out, s);
  return out;
}

absl::StatusOr<nlohmann::ordered_json> ParseFirstValue(absl::string_view bytes,
                                                       absl::string_view* text) {
  nlohmann::ordered_json j;
  std::string error;
  std::string_view t;
  if (!ParseFirstJson(std::string_view(bytes.data(), bytes.size()), &j, &error, &t)) {
    return absl::InvalidArgumentError(error);
  }
  if (text != nullptr) *text = absl::string_view(t.data(), t.size());
  return j;
}

std::string GoCompact(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      in_string = CopyStringByte(s, &i, &out);
      continue;
    }
    if (IsSpace(c)) continue;
    if (c == '"') in_string = true;
    out.push_back(c);
  }
  return out;
}

std::string GoIndent(absl::string_view src, absl::string_view prefix, absl::string_view indent) {
  std::string s = GoCompact(src);
  std::string out;
  int depth = 0;
  auto newline = [&] {
    out.push_back('\n');
    out.append(prefix.data(), prefix.size());
    for (int k = 0; k < depth; ++k) out.append(indent.data(), indent.size());
  };
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      in_string = CopyStringByte(s, &i, &out);
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        out.push_back(c);
        break;
      case '{':
      case '[':
        out.push_back(c);
        if (i + 1 < s.size() && (s[i + 1] == '}' || s[i + 1] == ']')) {
          out.push_back(s[++i]);  // empty: stays {} or []
        } else {
          ++depth;
          newline();
        }
        break;
      case '}':
      case ']':
        --depth;
        newline();
        out.push_back(c);
        break;
      case ',':
        out.push_back(c);
        newline();
        break;
      case ':':
        out.append(": ");
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ObjectMembers(
    absl::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && IsSpace(text[i])) ++i;
  };
  skip();
  if (i >= text.size() || text[i] != '{') return absl::InvalidArgumentError("not a JSON object");
  ++i;
  skip();
  if (i < text.size() && text[i] == '}') return out;
  while (i < text.size()) {
    skip();
    if (i >= text.size() || text[i] != '"') return absl::InvalidArgumentError("bad object member");
    size_t kend = JsonValueEnd(std::string_view(text.data(), text.size()), i);
    std::string key;
    try {
      key = nlohmann::json::parse(text.substr(i, kend - i)).get<std::string>();
    } catch (const nlohmann::json::exception&) {
      return absl::InvalidArgumentError("bad object key");
    }
    i = kend;
    skip();
    if (i >= text.size() || text[i] != ':') return absl::InvalidArgumentError("bad object member");
    ++i;
    skip();
    if (i >= text.size()) return absl::InvalidArgumentError("truncated object");
    size_t vend = JsonValueEnd(std::string_view(text.data(), text.size()), i);
    out.emplace_back(std::move(key), std::string(text.substr(i, vend - i)));
    i = vend;
    skip();
    if (i < text.size() && text[i] == ',') {
      ++i;
      continue;
    }
    if (i < text.size() && text[i] == '}') return out;
    return absl::InvalidArgumentError("bad object member separator");
  }
  return absl::InvalidArgumentError("truncated object");
}

}  // namespace ocicache::ko
