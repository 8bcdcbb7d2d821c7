#include "test/harness/test_pki.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ocicache::harness {
namespace {

constexpr long kNotBeforeSeconds = -3600;          // Tolerates a little clock skew.
constexpr long kValiditySeconds = 30L * 24 * 3600;  // Longer than any test run.

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

// OpenSSL's error queue as text, for messages.
absl::Status SslError(absl::string_view what) {
  std::string out = absl::StrCat("test PKI: ", what);
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, ": ", buf);
  }
  return absl::InternalError(out);
}

absl::StatusOr<Pkey> NewKey() {
  Pkey key(EVP_EC_gen("P-256"));
  if (key == nullptr) return SslError("generating a P-256 key");
  return key;
}

// Adds one extension written in openssl.cnf syntax ("critical,CA:TRUE").
bool AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `cn`, not yet signed and without extensions. The
// issuer name is the subject's (self-signed) unless `issuer` is given.
absl::StatusOr<Cert> NewCert(EVP_PKEY* key, const std::string& cn, X509* issuer) {
  Cert cert(X509_new());
  if (cert == nullptr) return SslError("X509_new");
  // A random positive 63-bit serial: two test CAs never share (issuer, serial) by accident.
  uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof(serial)) != 1) {
    return SslError("RAND_bytes");
  }
  serial = (serial >> 1) | 1;
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), kNotBeforeSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValiditySeconds) == nullptr ||
      X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>("ocicache tests"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name) !=
          1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return SslError(absl::StrCat("filling in the certificate for \"", cn, "\""));
  }
  return cert;
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return SslError("PEM-encoding a certificate");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  // PKCS#8, unencrypted: what Go's tls.X509KeyPair (docker-registry) reads.
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return SslError("PEM-encoding a private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const TestPkiOptions& options) {
  if (options.ip_names.empty() && options.dns_names.empty()) {
    return absl::InvalidArgumentError("test PKI: the server certificate needs at least one name");
  }
  ERR_clear_error();

  // The CA: self-signed, may sign certificates and nothing else.
  absl::StatusOr<Pkey> ca_key = NewKey();
  if (!ca_key.ok()) return ca_key.status();
  absl::StatusOr<Cert> ca = NewCert(ca_key->get(), options.ca_common_name, nullptr);
  if (!ca.ok()) return ca.status();
  X509* ca_cert = ca->get();
  if (!AddExt(ca_cert, ca_cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !AddExt(ca_cert, ca_cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExt(ca_cert, ca_cert, NID_subject_key_identifier, "hash")) {
    return SslError("CA certificate extensions");
  }
  if (X509_sign(ca_cert, ca_key->get(), EVP_sha256()) <= 0) return SslError("signing the CA");

  // The server: a TLS server leaf for the loopback names, signed by the CA.
  absl::StatusOr<Pkey> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Cert> server = NewCert(key->get(), options.server_common_name, ca_cert);
  if (!server.ok()) return server.status();
  std::string san;
  for (const std::string& ip : options.ip_names) {
    absl::StrAppend(&san, san.empty() ? "" : ",", "IP:", ip);
  }
  for (const std::string& dns : options.dns_names) {
    absl::StrAppend(&san, san.empty() ? "" : ",", "DNS:", dns);
  }
  X509* cert = server->get();
  if (!AddExt(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExt(cert, ca_cert, NID_key_usage, "critical,digitalSignature") ||
      !AddExt(cert, ca_cert, NID_ext_key_usage, "serverAuth") ||
      !AddExt(cert, ca_cert, NID_subject_key_identifier, "hash") ||
      !AddExt(cert, ca_cert, NID_authority_key_identifier, "keyid:always") ||
      !AddExt(cert, ca_cert, NID_subject_alt_name, san.c_str())) {
    return SslError(absl::StrCat("server certificate extensions (subjectAltName ", san, ")"));
  }
  if (X509_sign(cert, ca_key->get(), EVP_sha256()) <= 0) {
    return SslError("signing the server certificate");
  }

  TestPki pki;
  absl::StatusOr<std::string> pem = CertPem(ca_cert);
  if (!pem.ok()) return pem.status();
  pki.ca_cert_pem = std::move(*pem);
  pem = CertPem(cert);
  if (!pem.ok()) return pem.status();
  pki.server_cert_pem = std::move(*pem);
  pem = KeyPem(key->get());
  if (!pem.ok()) return pem.status();
  pki.server_key_pem = std::move(*pem);
  return pki;
}

}  // namespace ocicache::harness
