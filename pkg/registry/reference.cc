// Repository references and tags (docker's distribution/reference grammar, reduced
// to what a cache needs: no tags or digests inside a RepoRef).
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "pkg/registry/client.h"

namespace ocicache::registry {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
bool IsValidComponent(absl::string_view c) {
  size_t i = 0;
  auto alnum_run = [&] {
    size_t start = i;
    while (i < c.size() && IsLowerAlnum(c[i])) ++i;
    return i > start;
  };
  if (!alnum_run()) return false;
  while (i < c.size()) {
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      ++i;
      if (i < c.size() && c[i] == '_') ++i;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnum_run()) return false;
  }
  return true;
}

bool IsValidHost(absl::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  for (char c : h) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
        c != ':' && c != '[' && c != ']') {
      return false;
    }
  }
  return h.find('.') != absl::string_view::npos || h.find(':') != absl::string_view::npos ||
         h == "localhost";
}

}  // namespace

bool IsValidRepositoryName(absl::string_view repo) {
  if (repo.empty() || repo.size() > 255) return false;
  for (absl::string_view c : absl::StrSplit(repo, '/')) {
    if (!IsValidComponent(c)) return false;
  }
  return true;
}

// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
bool IsValidTag(absl::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  for (size_t i = 0; i < tag.size(); ++i) {
    char c = tag[i];
    bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
              (i > 0 && (c == '.' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<RepoRef> ParseRepoRef(absl::string_view s) {
  size_t slash = s.find('/');
  if (slash == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("repository reference \"", s, "\": want host[:port]/repository"));
  }
  absl::string_view host = s.substr(0, slash);
  absl::string_view repo = s.substr(slash + 1);
  if (!IsValidHost(host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repository reference \"", s, "\": \"", host,
        "\" is not a registry host (it needs a '.' or a ':port', or to be localhost)"));
  }
  if (!IsValidRepositoryName(repo)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repository reference \"", s, "\": \"", repo,
        "\" is not a repository name (lowercase [a-z0-9] components separated by "
        "'.', '_', '__' or '-', joined by '/'; no tag or digest)"));
  }
  return RepoRef{std::string(host), std::string(repo)};
}

}  // namespace ocicache::registry
