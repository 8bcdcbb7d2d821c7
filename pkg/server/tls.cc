#include "pkg/server/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ocicache::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  if (data.size() > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is over 1 MiB: not a PEM file"));
  }
  return data;
}

std::unique_ptr<BIO, BioFree> MemBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The certificates in `pem` (at least one), the first in *first.
absl::Status ParseCerts(const std::string& pem, const std::string& path, const char* flag,
                        std::unique_ptr<X509, X509Free>* first) {
  auto bio = MemBio(pem);
  int n = 0;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (n++ == 0 && first != nullptr) {
      first->reset(x);
    } else {
      X509_free(x);
    }
  }
  ERR_clear_error();  // the end of the input reads as an error
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TlsConfig> LoadTlsConfig(const std::string& cert_file, const std::string& key_file,
                                        const std::string& client_ca_file) {
  TlsConfig c;
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  if (cert_file.empty()) {
    if (!client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key: client certificates are checked in a TLS handshake");
    }
    return c;
  }
  auto cert = ReadSmallFile(cert_file, "--tls_cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadSmallFile(key_file, "--tls_key");
  if (!key.ok()) return key.status();
  std::unique_ptr<X509, X509Free> leaf;
  if (absl::Status s = ParseCerts(*cert, cert_file, "--tls_cert", &leaf); !s.ok()) return s;
  auto kbio = MemBio(*key);
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
      PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key: ", key_file, " holds no unencrypted PEM private key (\"-----BEGIN ... PRIVATE KEY-----\")"));
  }
  if (X509_check_private_key(leaf.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls_key: ", key_file,
                                                   " is not the key of the certificate in ", cert_file));
  }
  c.cert_chain_pem = *std::move(cert);
  c.key_pem = *std::move(key);
  if (!client_ca_file.empty()) {
    auto ca = ReadSmallFile(client_ca_file, "--tls_client_ca");
    if (!ca.ok()) return ca.status();
    if (absl::Status s = ParseCerts(*ca, client_ca_file, "--tls_client_ca", nullptr); !s.ok()) {
      return s;
    }
    c.client_ca_pem = *std::move(ca);
  }
  return c;
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsConfig& tls) {
  if (tls.cert_chain_pem.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions opts(
      tls.client_ca_pem.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = tls.client_ca_pem;
  opts.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_chain_pem});
  return grpc::SslServerCredentials(opts);
}

}  // namespace ocicache::server
