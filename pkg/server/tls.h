// TLS for ocicached's gRPC port: the certificate, key and (for mTLS) client CA
// read from PEM files and checked with OpenSSL before gRPC sees them, so a
// wrong file is one clear line at start instead of a server that fails every
// handshake.
#ifndef OCICACHE_PKG_SERVER_TLS_H_
#define OCICACHE_PKG_SERVER_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace ocicache::server {

struct TlsConfig {
  std::string cert_chain_pem;  // the server's certificate, then intermediates
  std::string key_pem;         // its private key
  // Clients must present a certificate issued by one of these (mTLS); empty: no client certificates.
  std::string client_ca_pem;
};

// Reads and checks the files: `cert_file` holds at least one certificate,
// `key_file` a private key matching the first, `client_ca_file` (optional) at
// least one CA certificate. Both or neither of cert and key; a client CA needs
// them. All empty: returns a TlsConfig with empty cert_chain_pem (plaintext).
absl::StatusOr<TlsConfig> LoadTlsConfig(const std::string& cert_file, const std::string& key_file,
                                        const std::string& client_ca_file);

// gRPC credentials for `tls`: insecure when tls.cert_chain_pem is empty; TLS
// 1.2+ otherwise, requiring and verifying a client certificate when
// client_ca_pem is set.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsConfig& tls);

}  // namespace ocicache::server

#endif  // OCICACHE_PKG_SERVER_TLS_H_
