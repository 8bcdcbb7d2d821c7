// A throwaway public key infrastructure for TLS tests, made in memory with OpenSSL 3:
// a self-signed test CA (basicConstraints critical CA:TRUE, keyCertSign) and a server
// certificate signed by it for the loopback names, with its private key. ECDSA P-256
// keys (instant to generate), SHA-256 signatures, valid from an hour ago for 30 days,
// random serial numbers. Nothing is read from or written to disk here.
//
//   auto pki = MakeTestPki();                 // SAN IP:127.0.0.1, DNS:localhost
//   WriteFile(dir + "/ca.pem", pki->ca_cert_pem);  // what clients trust
//   // server.pem + server-key.pem: what the server presents.
#ifndef OCICACHE_TEST_HARNESS_TEST_PKI_H_
#define OCICACHE_TEST_HARNESS_TEST_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ocicache::harness {

struct TestPki {
  std::string ca_cert_pem;      // "-----BEGIN CERTIFICATE-----" of the CA
  std::string server_cert_pem;  // the server's certificate (leaf only)
  std::string server_key_pem;   // its key, PKCS#8 "-----BEGIN PRIVATE KEY-----"
};

struct TestPkiOptions {
  // subjectAltName entries of the server certificate.
  std::vector<std::string> ip_names = {"127.0.0.1"};
  std::vector<std::string> dns_names = {"localhost"};
  std::string ca_common_name = "ocicache test CA";
  std::string server_common_name = "ocicache test registry";
};

absl::StatusOr<TestPki> MakeTestPki(const TestPkiOptions& options = {});

}  // namespace ocicache::harness

#endif  // OCICACHE_TEST_HARNESS_TEST_PKI_H_
