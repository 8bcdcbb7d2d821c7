#include "pkg/oci/digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ocicache::oci {
namespace {

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<Digest> Digest::FromHex(absl::string_view hex) {
  if (hex.size() != 64 || !IsLowerHex(hex)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid sha256 hex \"", hex.substr(0, 80), "\": want 64 lowercase hex characters"));
  }
  return Digest(std::string(hex));
}

absl::StatusOr<Digest> Digest::Parse(absl::string_view s) {
  if (!absl::StartsWith(s, "sha256:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", s.substr(0, 80), "\": want sha256:<64 hex>"));
  }
  return FromHex(s.substr(7));
}

Digest Digest::Of(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

std::string Digest::raw() const { return absl::HexStringToBytes(hex_); }

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(new Ctx) {
  ctx_->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

void Sha256::Update(const void* data, size_t n) {
  EVP_DigestUpdate(ctx_->md, data, n);
  size_ += static_cast<int64_t>(n);
}

Digest Sha256::Finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, out, &len);
  return Digest(absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(out), len)));
}

absl::StatusOr<Digest> DigestOfFile(int fd, int64_t* size) {
  Sha256 h;
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), h.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("read: ", strerror(errno)));
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
  }
  *size = h.size();
  return h.Finish();
}

}  // namespace ocicache::oci
