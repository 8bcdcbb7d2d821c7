#include "pkg/oci/stream.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ocicache::oci {

absl::Status BoundedStringSink::Write(absl::string_view chunk) {
  if (static_cast<int64_t>(out_->size() + chunk.size()) > max_) {
    return absl::ResourceExhaustedError(absl::StrCat(what_, " larger than ", max_, " bytes"));
  }
  out_->append(chunk.data(), chunk.size());
  return absl::OkStatus();
}

absl::StatusOr<size_t> StringSource::Read(char* buf, size_t n) {
  size_t k = std::min(n, data_.size() - pos_);
  std::memcpy(buf, data_.data() + pos_, k);
  pos_ += k;
  return k;
}

absl::StatusOr<std::string> ReadUpTo(ByteSource& source, int64_t n) {
  std::string out;
  char buf[64 << 10];
  while (n < 0 || static_cast<int64_t>(out.size()) < n) {
    size_t want = sizeof buf;
    if (n >= 0) want = std::min(want, static_cast<size_t>(n - static_cast<int64_t>(out.size())));
    auto got = source.Read(buf, want);
    if (!got.ok()) return got.status();
    if (*got == 0) break;
    out.append(buf, *got);
  }
  return out;
}

absl::StatusOr<size_t> PrefixedSource::Read(char* buf, size_t n) {
  if (pos_ < prefix_.size()) {
    size_t k = std::min(n, prefix_.size() - pos_);
    std::memcpy(buf, prefix_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  return rest_->Read(buf, n);
}

absl::StatusOr<size_t> FdSource::Read(char* buf, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd_, buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno == EINTR) continue;
    return absl::InternalError(absl::StrCat("read: ", std::strerror(errno)));
  }
}

absl::Status FdSource::Rewind() {
  if (::lseek(fd_, 0, SEEK_SET) < 0) {
    return absl::UnimplementedError(absl::StrCat("cannot rewind: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status FdSink::Write(absl::string_view chunk) {
  const char* p = chunk.data();
  size_t left = chunk.size();
  while (left > 0) {
    ssize_t w = ::write(fd_, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("write: ", std::strerror(errno)));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

}  // namespace ocicache::oci
