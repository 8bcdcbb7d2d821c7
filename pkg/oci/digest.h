// Content digests as the OCI image spec defines them ("sha256:<64 lowercase hex>").
// Only sha256 is supported: it is what every registry and REAPI client here uses.
#ifndef OCICACHE_PKG_OCI_DIGEST_H_
#define OCICACHE_PKG_OCI_DIGEST_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ocicache::oci {

class Digest {
 public:
  Digest() = default;  // An empty, invalid digest; valid() is false.

  // Parses "sha256:<64 lowercase hex>". Anything else is InvalidArgument.
  static absl::StatusOr<Digest> Parse(absl::string_view s);
  // Builds a digest from 64 lowercase hex characters.
  static absl::StatusOr<Digest> FromHex(absl::string_view hex);
  // The sha256 digest of `data`.
  static Digest Of(absl::string_view data);

  bool valid() const { return !hex_.empty(); }
  const std::string& hex() const { return hex_; }
  std::string algorithm() const { return "sha256"; }
  std::string str() const { return valid() ? "sha256:" + hex_ : std::string(); }
  // The 32 raw bytes of the hash.
  std::string raw() const;

  friend bool operator==(const Digest& a, const Digest& b) { return a.hex_ == b.hex_; }
  friend bool operator!=(const Digest& a, const Digest& b) { return a.hex_ != b.hex_; }
  friend bool operator<(const Digest& a, const Digest& b) { return a.hex_ < b.hex_; }
  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine(std::move(h), d.hex_);
  }

 private:
  friend class Sha256;
  explicit Digest(std::string hex) : hex_(std::move(hex)) {}
  std::string hex_;
};

// Incremental SHA-256 over a stream (OpenSSL EVP). Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t n);
  void Update(absl::string_view s) { Update(s.data(), s.size()); }
  // Bytes hashed so far.
  int64_t size() const { return size_; }
  // Finishes the hash; the object must not be updated afterwards.
  Digest Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  int64_t size_ = 0;
};

// The digest of everything an open file holds, read with pread from offset 0 (the
// file offset is left alone); *size gets the bytes read. For a caller that wants to
// ask a store whether it has the bytes before sending them.
absl::StatusOr<Digest> DigestOfFile(int fd, int64_t* size);

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_DIGEST_H_
