#include "pkg/ko/fastpath.h"

#include <sys/stat.h>

#include <ctime>
#include <fstream>
#include <sstream>

namespace ocicache::ko {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

size_t JsonValueEnd(std::string_view s, size_t start) {
  size_t i = start;
  if (i >= s.size()) return s.size();
  char c = s[i];
  if (c == '{' || c == '[' || c == '"') {
    int depth = 0;
    bool in_string = false;
    for (; i < s.size(); ++i) {
      char x = s[i];
      if (in_string) {
        if (x == '\\') {
          ++i;
        } else if (x == '"') {
          in_string = false;
          if (depth == 0) return i + 1;
        }
        continue;
      }
      if (x == '"') {
        in_string = true;
      } else if (x == '{' || x == '[') {
        ++depth;
      } else if (x == '}' || x == ']') {
        if (--depth <= 0) return i + 1;
      }
    }
    return s.size();
  }
  // A literal or a number: up to the next delimiter.
  while (i < s.size() && !IsSpace(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
         s[i] != '{' && s[i] != '[' && s[i] != '"' && s[i] != ':') {
    ++i;
  }
  return i;
}

bool ParseFirstJson(std::string_view bytes, nlohmann::ordered_json* out, std::string* error,
                    std::string_view* text) {
  size_t start = 0;
  while (start < bytes.size() && IsSpace(bytes[start])) ++start;
  if (start == bytes.size()) {
    *error = bytes.empty() ? "empty file" : "no JSON value (only whitespace)";
    return false;
  }
  size_t stop = JsonValueEnd(bytes, start);
  std::string_view value = bytes.substr(start, stop - start);
  try {
    *out = nlohmann::ordered_json::parse(value.begin(), value.end());
  } catch (const nlohmann::ordered_json::exception& e) {
    std::string msg = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 3: ..."
    if (msg.rfind("[json.exception.", 0) == 0) {
      size_t p = msg.find("] ");
      if (p != std::string::npos) msg = msg.substr(p + 2);
    }
    if (start > 0) msg += " (the value starts at byte " + std::to_string(start) + ")";
    *error = msg;
    return false;
  }
  if (text != nullptr) *text = value;
  return true;
}

bool IsSha256Digest(std::string_view s) {
  if (s.size() != 71 || s.substr(0, 7) != "sha256:") return false;
  for (char c : s.substr(7)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool KocacheKnows(const std::string& dir, const std::string& build_id) {
  std::string b, d, err;
  if (!ReadFile(dir + "/" + kBuildIdToDiffIdFile, &b)) return false;
  nlohmann::ordered_json btod;
  if (!ParseFirstJson(b, &btod, &err) || !btod.is_object()) return false;
  auto it = btod.find(build_id);
  if (it == btod.end() || !it->is_string() || !IsSha256Digest(it->get_ref<const std::string&>())) {
    return false;
  }
  const std::string& diff = it->get_ref<const std::string&>();
  if (!ReadFile(dir + "/" + kDiffIdToDescriptorFile, &d)) return false;
  nlohmann::ordered_json dtod;
  if (!ParseFirstJson(d, &dtod, &err) || !dtod.is_object()) return false;
  auto desc = dtod.find(diff);
  if (desc == dtod.end() || !desc->is_object()) return false;
  auto mt = desc->find("mediaType");
  auto size = desc->find("size");
  auto digest = desc->find("digest");
  return mt != desc->end() && mt->is_string() && size != desc->end() &&
         (size->is_number_unsigned() || size->is_number_integer()) && digest != desc->end() &&
         digest->is_string() && IsSha256Digest(digest->get_ref<const std::string&>());
}

bool RecentMiss(const std::string& dir, const std::string& build_id, int max_age_seconds) {
  std::string path = dir + "/" + kRecentMissFile;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  time_t now = std::time(nullptr);
  if (now - st.st_mtime >= max_age_seconds || st.st_mtime > now + 60) return false;
  std::string content;
  if (!ReadFile(path, &content)) return false;
  return content == build_id + "\n";
}

}  // namespace ocicache::ko
