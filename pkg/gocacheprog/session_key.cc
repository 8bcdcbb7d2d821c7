#include "pkg/gocacheprog/session_key.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "pkg/oci/digest.h"

namespace ocicache::gocacheprog {
namespace {

std::string KeyOf(const std::string& scope) {
  return absl::StrCat("gocacheprog.session.", oci::Digest::Of(scope).hex().substr(0, 32));
}

}  // namespace

std::string ParseModulePath(const std::string& go_mod) {
  for (absl::string_view line : absl::StrSplit(go_mod, '\n')) {
    if (size_t c = line.find("//"); c != absl::string_view::npos) line = line.substr(0, c);
    line = absl::StripAsciiWhitespace(line);
    if (!absl::ConsumePrefix(&line, "module")) continue;
    if (line.empty() || !absl::ascii_isspace(static_cast<unsigned char>(line[0]))) continue;
    line = absl::StripAsciiWhitespace(line);
    if (line.size() >= 2 && (line.front() == '"' || line.front() == '`') &&
        line.back() == line.front()) {
      line = line.substr(1, line.size() - 2);
    }
    if (line.empty() || line.find_first_of(" \t\"`") != absl::string_view::npos) return "";
    return std::string(line);
  }
  return "";
}

std::optional<GoModule> FindGoModule(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') return std::nullopt;
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  std::string at = d;
  for (;;) {
    std::ifstream in(at == "/" ? "/go.mod" : at + "/go.mod");
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      std::string path = ParseModulePath(text.str());
      if (path.empty()) return std::nullopt;
      std::string rel = at == d ? "." : d.substr(at == "/" ? 1 : at.size() + 1);
      return GoModule{path, at, rel};
    }
    if (at == "/") return std::nullopt;
    size_t slash = at.rfind('/');
    at = slash == 0 ? "/" : at.substr(0, slash);
  }
}

SessionKeys SessionKeysFor(const std::string& name, const std::string& cwd,
                           const std::function<std::string(const char*)>& env) {
  if (!name.empty()) return SessionKeys{KeyOf(name), ""};
  const std::string toolchain =
      absl::StrCat(env("GOVERSION"), "\n", env("GOOS"), "/", env("GOARCH"));
  const std::string flags = absl::StrCat(env("GOFLAGS"), "\n", env("GOEXPERIMENT"));
  // GOWORK may join modules: the workspace file is not read, the main module
  // still names the build well enough for a list of hints.
  if (auto m = FindGoModule(cwd)) {
    return SessionKeys{KeyOf(absl::StrCat("module ", m->path, "\n", m->rel, "\n", toolchain, "\n",
                                          flags)),
                       KeyOf(absl::StrCat("module ", m->path, "\n", toolchain))};
  }
  return SessionKeys{KeyOf(absl::StrCat(cwd, "\n", toolchain, "\n", flags)), ""};
}

}  // namespace ocicache::gocacheprog
