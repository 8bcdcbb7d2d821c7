#include "pkg/cache/backlog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "pkg/base/files.h"
#include "pkg/oci/digest.h"

namespace ocicache::cache {
namespace {

// A record's name: 64 hex digits (temporary files have other names).
bool IsRecordName(absl::string_view name) {
  return name.size() == 64 &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A record's contents (a key is at most 4 KiB).
absl::StatusOr<std::string> ReadRecord(const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return base::ErrnoStatus(errno, absl::StrCat("open ", path));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::ErrnoStatus(errno, absl::StrCat("read ", path));
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 64 * 1024) return absl::DataLossError(absl::StrCat(path, ": too long"));
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<Backlog>> Backlog::Open(std::string dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return base::ErrnoStatus(errno, absl::StrCat("create ", dir));
  }
  std::shared_ptr<Backlog> b(new Backlog(std::move(dir)));
  auto counted = b->Names(/*blobs=*/false, 1);  // counts every record
  if (!counted.ok()) return counted.status();
  return b;
}

std::string Backlog::PathOf(absl::string_view key) const {
  return absl::StrCat(dir_, "/", oci::Digest::Of(key).hex());
}

absl::Status Backlog::AddFile(const std::string& path, absl::string_view content,
                             std::atomic<int64_t>& count) {
  struct stat st;
  bool existed = ::stat(path.c_str(), &st) == 0;
  if (absl::Status s = base::WriteFileAtomically(path, content); !s.ok()) return s;
  if (!existed) count.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Backlog::RemoveFile(const std::string& path, absl::string_view what,
                                std::atomic<int64_t>& count) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return base::ErrnoStatus(errno, absl::StrCat("remove the backlog record of ", what));
  }
  if (count.fetch_sub(1, std::memory_order_relaxed) <= 0) count.store(0, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Backlog::Add(absl::string_view key) { return AddFile(PathOf(key), key, size_); }

absl::Status Backlog::Remove(absl::string_view key) { return RemoveFile(PathOf(key), key, size_); }

absl::Status Backlog::AddBlob(const oci::Digest& digest) {
  return AddFile(absl::StrCat(dir_, "/b-", digest.hex()), digest.str(), blob_count_);
}

absl::Status Backlog::RemoveBlob(const oci::Digest& digest) {
  return RemoveFile(absl::StrCat(dir_, "/b-", digest.hex()), digest.str(), blob_count_);
}

absl::StatusOr<std::vector<std::string>> Backlog::Names(bool blobs, size_t max) {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return base::ErrnoStatus(errno, absl::StrCat("open ", dir_));
  std::vector<std::pair<int64_t, std::string>> records;  // (mtime ns, name)
  int64_t entries = 0, blob_records = 0;
  while (struct dirent* e = ::readdir(d)) {
    absl::string_view name = e->d_name;
    bool is_blob = absl::ConsumePrefix(&name, "b-");
    if (!IsRecordName(name)) continue;
    ++(is_blob ? blob_records : entries);
    if (is_blob != blobs) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, 0) != 0) continue;
    records.emplace_back(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec, e->d_name);
  }
  ::closedir(d);
  size_.store(entries, std::memory_order_relaxed);
  blob_count_.store(blob_records, std::memory_order_relaxed);
  std::sort(records.begin(), records.end());
  if (max > 0 && records.size() > max) records.resize(max);
  std::vector<std::string> names;
  for (auto& r : records) names.push_back(std::move(r.second));
  return names;
}

absl::StatusOr<std::vector<std::string>> Backlog::Keys(size_t max) {
  auto names = Names(/*blobs=*/false, max);
  if (!names.ok()) return names.status();
  std::vector<std::string> keys;
  for (const auto& name : *names) {
    auto key = ReadRecord(absl::StrCat(dir_, "/", name));
    if (!key.ok() || key->empty() || oci::Digest::Of(*key).hex() != name) continue;  // torn: skip
    keys.push_back(*std::move(key));
  }
  return keys;
}

absl::StatusOr<std::vector<oci::Digest>> Backlog::Blobs(size_t max) {
  auto names = Names(/*blobs=*/true, max);
  if (!names.ok()) return names.status();
  std::vector<oci::Digest> out;
  for (const auto& name : *names) {
    auto d = oci::Digest::FromHex(name.substr(2));
    if (d.ok()) out.push_back(*d);
  }
  return out;
}

}  // namespace ocicache::cache
