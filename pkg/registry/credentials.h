// Registry credentials, and where docker keeps them.
//
// Lookup order for a registry host, as the docker CLI does it:
//   1. credHelpers[host] in config.json: run `docker-credential-<helper> get`.
//   2. credsStore in config.json: the same with that helper.
//   3. auths[key] in config.json, where key is a host or a URL whose host matches
//      ("https://host/v1/", "http://host", "host").
// Unlike docker, a helper that knows nothing about the host falls through to `auths`.
// Docker Hub ("docker.io", "index.docker.io", "registry-1.docker.io") is looked up
// under docker's historical key "https://index.docker.io/v1/".
//
// Nothing here prints or logs a secret, and no error message contains one.
#ifndef OCICACHE_PKG_REGISTRY_CREDENTIALS_H_
#define OCICACHE_PKG_REGISTRY_CREDENTIALS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ocicache::registry {

// What to present to a registry. The meaning follows docker:
//   username + password   Basic to the registry, or to the token realm.
//   identity_token        an OAuth2 refresh token, exchanged at the token realm
//                         (grant_type=refresh_token).
//   password alone        a registry token, sent as "Bearer <password>".
struct Credentials {
  std::string username;
  std::string password;       // or a registry token
  std::string identity_token; // docker config "identitytoken" (OAuth refresh token)
  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

// $DOCKER_CONFIG, else $HOME/.docker ("" when neither is set).
std::string DefaultDockerConfigDir();

// Credentials for `registry` ("host[:port]") from docker's config in `config_dir`
// (empty = DefaultDockerConfigDir()). No config file, or nothing for this host,
// gives empty Credentials. A malformed config.json is InvalidArgument; a failing
// helper is Unavailable (or DeadlineExceeded after `helper_timeout`).
absl::StatusOr<Credentials> LoadDockerCredentials(absl::string_view registry,
                                                  absl::string_view config_dir = "",
                                                  absl::Duration helper_timeout = absl::Seconds(60));

// Runs `docker-credential-<helper> get` (found on $PATH) with `server_url` on stdin
// and parses {"ServerURL","Username","Secret"}. Username "<token>" means Secret is an
// identity token. "credentials not found" gives empty Credentials.
absl::StatusOr<Credentials> RunCredentialHelper(absl::string_view helper,
                                                absl::string_view server_url,
                                                absl::Duration timeout = absl::Seconds(60));

// The host part of an `auths` key: "https://Host:5000/v1/" -> "host:5000".
std::string NormalizeAuthKey(absl::string_view key);

}  // namespace ocicache::registry

#endif  // OCICACHE_PKG_REGISTRY_CREDENTIALS_H_
