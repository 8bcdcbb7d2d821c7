// The store settings that ocicache and ocicached both take as flags, defined
// once: a flag's name (words joined by '-'; '_' works too, see cmdline/args.h),
// what value it takes, its help, and how it changes a StoreConfig (with its
// validation). Each binary's flag parser declares the flags; this is the one
// mapping from their values to the configuration.
#ifndef OCICACHE_PKG_STORES_SETTINGS_H_
#define OCICACHE_PKG_STORES_SETTINGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pkg/stores/stores.h"

namespace ocicache::stores {

struct StoreFlag {
  std::string name;        // "ca-file"
  std::string value_name;  // "FILE"; empty for a switch (value "true" or "false")
  std::string help;
  // Applies a value given on the command line (it wins over the environment).
  absl::Status (*apply)(StoreConfig* config, absl::string_view value);
};

// repo, dir, no-dir, shards, insecure, tls, ca-file, username, registry-rate,
// docker-config.
// (--password-stdin reads stdin, which each binary does itself.)
const std::vector<StoreFlag>& StoreFlags();

// Applies the flag `name` ('-' or '_' between words); NotFound for a name not in
// StoreFlags(), InvalidArgument for a bad value.
absl::Status ApplyStoreFlag(StoreConfig* config, absl::string_view name, absl::string_view value);

// Once every flag is applied: makes the request pacer of registry_rate and
// registry_budget; --no-dir needs --repo (InvalidArgument), and then clears
// `dir`, so that what follows sees no local tier.
absl::Status FinishStoreConfig(StoreConfig* config);

}  // namespace ocicache::stores

#endif  // OCICACHE_PKG_STORES_SETTINGS_H_
