#include "pkg/cmdline/args.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ocicache::cmdline {

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv, size_t begin,
                                 const std::vector<FlagSpec>& specs, bool stop_at_positional) {
  Args a;
  size_t i = begin;
  bool flags_done = false;
  for (; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (flags_done || arg == "-" || !absl::StartsWith(arg, "-")) {
      if (stop_at_positional) break;
      a.positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    std::string name, value;
    bool has_value = false;
    const FlagSpec* by_short = nullptr;
    if (arg.size() == 2 && arg[0] == '-') {
      for (const auto& s : specs) {
        if (s.short_name == arg[1]) by_short = &s;
      }
    }
    if (arg == "-h") {
      name = "help";
    } else if (by_short != nullptr) {
      name = by_short->name;
    } else if (absl::StartsWith(arg, "--")) {
      name = arg.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      std::replace(name.begin(), name.end(), '_', '-');
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, " (flags start with --)"));
    }
    const FlagSpec* spec = nullptr;
    for (const auto& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (spec->takes_value && !has_value) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = argv[++i];
    } else if (!spec->takes_value) {
      if (has_value && value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      }
      if (!has_value) value = "true";
    }
    auto& slot = a.values_[name];
    if (!spec->repeated) slot.clear();
    slot.push_back(value);
  }
  a.next_ = i;
  return a;
}

std::string Args::Get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? def : it->second.back();
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool Args::GetBool(const std::string& name) const { return Get(name, "false") == "true"; }

void UnderscoreFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (a[0] != '-' || a[1] != '-') continue;
    if (a[2] == '\0') return;  // "--": what follows is not flags
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

std::string FlagHelp(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    std::string left = s.short_name ? absl::StrCat("  -", std::string(1, s.short_name), ", --", s.name)
                                    : absl::StrCat("  --", s.name);
    if (s.takes_value) absl::StrAppend(&left, " ", s.value_name.empty() ? "VALUE" : s.value_name);
    absl::StrAppendFormat(&out, "%-30s %s%s\n", left, s.help, s.repeated ? " (repeatable)" : "");
  }
  return out;
}

}  // namespace ocicache::cmdline
