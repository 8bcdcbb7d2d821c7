// A small command-line parser for "ocicache [global flags] COMMAND [flags] ARGS".
// Flags are "--name=value", "--name value" or "--name" (booleans); "-h" is --help;
// "--" ends flags. Each command declares its flags so typos are usage errors.
// A flag name may be spelled with '-' or '_' between words (--ca-file and
// --ca_file are one flag), in ocicache and ocicached alike.
#ifndef OCICACHE_PKG_CMDLINE_ARGS_H_
#define OCICACHE_PKG_CMDLINE_ARGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ocicache::cmdline {

struct FlagSpec {
  std::string name;
  bool takes_value = true;
  bool repeated = false;
  std::string value_name;  // for help: "DIR"
  std::string help;
  char short_name = 0;  // e.g. 'o' for -o
};

class Args {
 public:
  // Parses argv[begin..] against specs. Stops at the first positional argument
  // when stop_at_positional (global flags before the command).
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv, size_t begin,
                                    const std::vector<FlagSpec>& specs, bool stop_at_positional);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& def = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Index in argv just after the parsed part (when stop_at_positional).
  size_t next() const { return next_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
  size_t next_ = 0;
};

// Rewrites "--a-b[=v]" to "--a_b[=v]" in argv[1..] (up to a bare "--"), so a
// program whose flag library spells names with '_' (ocicached's Abseil flags)
// accepts the CLI's dashed spelling too. Values are left alone.
void UnderscoreFlagNames(int argc, char** argv);

// "  --name VALUE   help" lines for a help text.
std::string FlagHelp(const std::vector<FlagSpec>& specs);

}  // namespace ocicache::cmdline

#endif  // OCICACHE_PKG_CMDLINE_ARGS_H_
