#include "pkg/rpc/uploads.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/base/files.h"
#include "pkg/oci/stream.h"

namespace ocicache::rpc {
namespace {

absl::Status Errno(absl::string_view what) { return base::ErrnoStatus(errno, what); }

absl::Status MkdirAll(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      cur = dir.substr(0, i);
      if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir " + cur);
    }
  }
  return absl::OkStatus();
}

}  // namespace

constexpr size_t kDirectBuffer = 1 << 20;  // a multiple of any block size O_DIRECT needs

UploadStaging::Upload::~Upload() {
  {
    // A stream that paused or broke keeps every byte it received staged; one
    // that was taken over leaves its unwritten bytes to the new stream.
    absl::MutexLock l(&claim_->mu);
    if (!claim_->superseded && fd_ >= 0) (void)FlushLocked();
  }
  if (direct_fd_ >= 0) ::close(direct_fd_);
  std::free(direct_buf_);
  if (fd_ >= 0) ::close(fd_);
  staging_->Release(stem_, claim_);
}

void UploadStaging::Upload::StageDirect() {
  absl::MutexLock l(&claim_->mu);
  if (claim_->superseded || fd_ < 0 || direct_fd_ >= 0 || state_.committed != 0) return;
  void* buf = nullptr;
  if (::posix_memalign(&buf, 4096, kDirectBuffer) != 0) return;
  std::string part = absl::StrCat(staging_->dir_, "/", stem_, ".part");
  int dfd = ::open(part.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOFOLLOW);
  if (dfd < 0) {  // tmpfs and others refuse O_DIRECT: stage as before
    std::free(buf);
    return;
  }
  direct_fd_ = dfd;
  direct_buf_ = static_cast<char*>(buf);
  file_size_ = 0;
}

absl::Status UploadStaging::Upload::WriteLocked(absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd_, data.data(), data.size(), file_size_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(absl::StrCat("write upload ", id_));
    file_size_ += n;
    data.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status UploadStaging::Upload::AppendPlainLocked(absl::string_view data) {
  file_size_ = state_.committed;  // no bytes wait in a buffer on this path
  absl::Status s = WriteLocked(data);
  state_.committed = file_size_;
  return s;
}

absl::Status UploadStaging::Upload::FlushLocked() {
  if (direct_len_ == 0) return absl::OkStatus();
  absl::Status s = WriteLocked(absl::string_view(direct_buf_, direct_len_));
  direct_len_ = 0;
  return s;
}

absl::Status UploadStaging::Upload::Superseded() const {
  return absl::AbortedError(
      absl::StrCat("upload ", id_, " was taken over by a newer stream (a resume)"));
}

absl::Status UploadStaging::Upload::Append(absl::string_view data) {
  absl::MutexLock l(&claim_->mu);
  if (claim_->superseded) return Superseded();
  if (fd_ < 0) return absl::FailedPreconditionError("upload is complete or discarded");
  if (state_.size >= 0 && state_.committed + static_cast<int64_t>(data.size()) > state_.size) {
    DiscardLocked();
    return absl::InvalidArgumentError(absl::StrCat("upload ", id_, ": more than the declared ",
                                                   state_.size, " bytes; upload discarded"));
  }
  if (direct_fd_ < 0) return AppendPlainLocked(data);
  while (!data.empty()) {
    size_t take = std::min(kDirectBuffer - direct_len_, data.size());
    std::memcpy(direct_buf_ + direct_len_, data.data(), take);
    direct_len_ += take;
    state_.committed += static_cast<int64_t>(take);
    data.remove_prefix(take);
    if (direct_len_ < kDirectBuffer) break;
    // A whole aligned block at an aligned offset (file_size_ only grows by
    // whole blocks while direct_fd_ is open).
    ssize_t n;
    do {
      n = ::pwrite(direct_fd_, direct_buf_, kDirectBuffer, file_size_);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(kDirectBuffer)) {
      file_size_ += n;
      direct_len_ = 0;
      continue;
    }
    // Refused or short: the rest goes through the page cache.
    ::close(direct_fd_);
    direct_fd_ = -1;
    if (n > 0) {
      // An O_DIRECT write that stopped short is redone whole below.
      if (::ftruncate(fd_, file_size_) != 0) return Errno(absl::StrCat("truncate upload ", id_));
    }
    if (absl::Status s = FlushLocked(); !s.ok()) return s;
    return AppendPlainLocked(data);  // what follows is written as before
  }
  return absl::OkStatus();
}

absl::StatusOr<oci::Descriptor> UploadStaging::Upload::Commit(cache::BlobStore& store) {
  return Commit([&store](const oci::Digest& digest, int64_t size, oci::ByteSource& source) {
    return store.WriteBlob(digest, size, source);
  });
}

absl::StatusOr<oci::Descriptor> UploadStaging::Upload::Commit(const Writer& write) {
  // Held throughout: a resume that comes meanwhile finds the upload complete.
  absl::MutexLock l(&claim_->mu);
  if (claim_->superseded) return Superseded();
  if (fd_ < 0) return absl::FailedPreconditionError("upload is complete or discarded");
  if (state_.size >= 0 && state_.committed != state_.size) {
    return absl::InvalidArgumentError(absl::StrCat("upload ", id_, ": finished at ",
                                                   state_.committed, " bytes of ", state_.size));
  }
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  std::string part = absl::StrCat(staging_->dir_, "/", stem_, ".part");
  int rfd = ::open(part.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0) return Errno("open " + part);
  oci::FdSource src(rfd);
  auto d = write(state_.digest, state_.committed, src);
  ::close(rfd);
  if (!d.ok()) {
    if (absl::IsInvalidArgument(d.status())) DiscardLocked();
    return d.status();
  }
  if (absl::Status s = MarkCompleteLocked(d->digest, d->size); !s.ok()) return s;
  return d;
}

absl::Status UploadStaging::Upload::MarkComplete(const oci::Digest& digest, int64_t size) {
  absl::MutexLock l(&claim_->mu);
  if (claim_->superseded) return Superseded();
  return MarkCompleteLocked(digest, size);
}

absl::Status UploadStaging::Upload::MarkCompleteLocked(const oci::Digest& digest, int64_t size) {
  state_.digest = digest;
  state_.size = size;
  state_.committed = size;
  state_.complete = true;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  absl::Status s = staging_->WriteMeta(stem_, id_, state_);
  ::unlink(absl::StrCat(staging_->dir_, "/", stem_, ".part").c_str());
  return s;
}

void UploadStaging::Upload::OnSuperseded(std::function<void()> fn) {
  absl::MutexLock l(&claim_->mu);
  claim_->on_superseded = claim_->superseded ? nullptr : std::move(fn);
}

void UploadStaging::Upload::Discard() {
  absl::MutexLock l(&claim_->mu);
  if (claim_->superseded) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return;
  }
  DiscardLocked();
}

void UploadStaging::Upload::DiscardLocked() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ::unlink(absl::StrCat(staging_->dir_, "/", stem_, ".part").c_str());
  ::unlink(absl::StrCat(staging_->dir_, "/", stem_, ".meta").c_str());
}

absl::StatusOr<std::unique_ptr<UploadStaging>> UploadStaging::Open(std::string dir, Options opts) {
  if (dir.empty()) return absl::InvalidArgumentError("upload staging: no directory");
  if (absl::Status s = MkdirAll(dir); !s.ok()) return s;
  std::unique_ptr<UploadStaging> u(new UploadStaging(std::move(dir), opts));
  u->Expire();
  return u;
}

absl::Status UploadStaging::ValidateId(absl::string_view id) const {
  if (id.empty()) return absl::InvalidArgumentError("upload_id: empty");
  if (id.size() > opts_.max_id_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload_id: ", id.size(), " bytes, the limit is ", opts_.max_id_bytes));
  }
  return absl::OkStatus();
}

std::string UploadStaging::Stem(absl::string_view id) const { return oci::Digest::Of(id).hex(); }

absl::StatusOr<UploadState> UploadStaging::ReadMeta(const std::string& stem, std::string* id) {
  std::string path = absl::StrCat(dir_, "/", stem, ".meta");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError("no such upload");
    return Errno("open " + path);
  }
  std::string bytes;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || bytes.size() > 65536) break;
    bytes.append(buf, n);
  }
  ::close(fd);
  nlohmann::json j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  UploadState st;
  if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string() ||
      !j.contains("size") || !j["size"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat("upload metadata ", path, " is unreadable"));
  }
  *id = j["id"].get<std::string>();
  st.size = j["size"].get<int64_t>();
  std::string digest = j.value("digest", "");
  if (!digest.empty()) {
    auto d = oci::Digest::Parse(digest);
    if (!d.ok()) return absl::DataLossError(absl::StrCat("upload metadata ", path, ": bad digest"));
    st.digest = *d;
  }
  st.complete = j.value("complete", false);
  if (st.complete) {
    st.committed = st.size;
  } else {
    struct stat sb;
    std::string part = absl::StrCat(dir_, "/", stem, ".part");
    st.committed = ::stat(part.c_str(), &sb) == 0 ? sb.st_size : 0;
  }
  return st;
}

absl::Status UploadStaging::WriteMeta(const std::string& stem, absl::string_view id,
                                      const UploadState& st) {
  nlohmann::json j = {{"id", std::string(id)},
                      {"digest", st.digest.str()},
                      {"size", st.size},
                      {"complete", st.complete}};
  std::string data = j.dump();
  return base::WriteFileAtomically(absl::StrCat(dir_, "/", stem, ".meta"), data,
                                   {.mode = 0600, .keep_mode = false});
}

void UploadStaging::Release(const std::string& stem, const std::shared_ptr<Upload::Claim>& claim) {
  absl::MutexLock l(&mu_);
  auto it = claimed_.find(stem);
  if (it != claimed_.end() && it->second == claim) claimed_.erase(it);
}

absl::StatusOr<std::unique_ptr<UploadStaging::Upload>> UploadStaging::Begin(
    absl::string_view id, const oci::Digest& digest, int64_t size, int64_t offset) {
  if (absl::Status s = ValidateId(id); !s.ok()) return s;
  if (size < -1) return absl::InvalidArgumentError(absl::StrCat("size: invalid (", size, ")"));
  if (offset < 0) {
    return absl::InvalidArgumentError(absl::StrCat("write_offset: negative (", offset, ")"));
  }
  bool expire = false;
  std::string stem = Stem(id);
  auto other_blob = [&](const std::string& stored_id, const UploadState& existing) {
    return stored_id != id || existing.digest != digest || existing.size != size;
  };
  auto other_blob_error = [&](const UploadState& existing) {
    return absl::InvalidArgumentError(absl::StrCat("upload ", id, " was started for another blob (",
                                                   existing.digest.str(), ", ", existing.size,
                                                   " bytes)"));
  };
  {
    // A stream for another blob must not take the upload over (checked again
    // below, under the claim).
    std::string stored_id;
    auto existing = ReadMeta(stem, &stored_id);
    if (existing.ok() && other_blob(stored_id, *existing)) return other_blob_error(*existing);
  }
  auto claim = std::make_shared<Upload::Claim>();
  std::shared_ptr<Upload::Claim> old;
  {
    absl::MutexLock l(&mu_);
    std::shared_ptr<Upload::Claim>& slot = claimed_[stem];
    old = std::move(slot);
    slot = claim;
    absl::Time now = absl::Now();
    if (now - last_expire_ > opts_.ttl / 24) {
      last_expire_ = now;
      expire = true;
    }
  }
  if (old != nullptr) {
    // Waits for a write of the old stream in progress; it writes no more.
    absl::MutexLock l(&old->mu);
    old->superseded = true;
    if (old->on_superseded) {
      old->on_superseded();
      old->on_superseded = nullptr;
    }
  }
  // From here the claim is released by the Upload's destructor, or below.
  auto fail = [&](absl::Status s) {
    Release(stem, claim);
    return s;
  };
  if (expire) Expire();

  std::string stored_id;
  auto existing = ReadMeta(stem, &stored_id);
  UploadState st;
  if (existing.ok()) {
    if (other_blob(stored_id, *existing)) return fail(other_blob_error(*existing));
    st = *existing;
  } else if (absl::IsNotFound(existing.status()) || absl::IsDataLoss(existing.status())) {
    st.digest = digest;
    st.size = size;
    if (absl::Status s = WriteMeta(stem, id, st); !s.ok()) return fail(s);
    ::unlink(absl::StrCat(dir_, "/", stem, ".part").c_str());
  } else {
    return fail(existing.status());
  }
  if (st.complete) {
    return std::unique_ptr<Upload>(new Upload(this, std::string(id), stem, st, -1, claim));
  }
  if (offset > st.committed) {
    return fail(absl::OutOfRangeError(absl::StrCat("write_offset ", offset,
                                                   " is past the committed size ", st.committed,
                                                   " of upload ", id)));
  }
  std::string part = absl::StrCat(dir_, "/", stem, ".part");
  int fd = ::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(Errno("open " + part));
  if (offset < st.committed) {
    if (::ftruncate(fd, offset) != 0) {
      absl::Status s = Errno("truncate " + part);
      ::close(fd);
      return fail(s);
    }
    st.committed = offset;
  }
  // Touch the metadata too, so Expire measures from the last write.
  ::utimensat(AT_FDCWD, absl::StrCat(dir_, "/", stem, ".meta").c_str(), nullptr, 0);
  return std::unique_ptr<Upload>(new Upload(this, std::string(id), stem, st, fd, claim));
}

absl::StatusOr<UploadState> UploadStaging::Query(absl::string_view id) {
  if (absl::Status s = ValidateId(id); !s.ok()) return s;
  std::string stored_id;
  auto st = ReadMeta(Stem(id), &stored_id);
  if (absl::IsNotFound(st.status()) || (st.ok() && stored_id != id)) {
    return absl::NotFoundError(absl::StrCat("no upload ", id));
  }
  return st;
}

void UploadStaging::Expire(absl::Duration idle) {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  absl::Time cutoff = absl::Now() - idle;
  for (const auto& name : names) {
    std::string stem = name.substr(0, name.find('.'));
    {
      absl::MutexLock l(&mu_);
      if (claimed_.count(stem)) continue;
    }
    std::string path = absl::StrCat(dir_, "/", name);
    struct stat sb;
    if (::lstat(path.c_str(), &sb) != 0) continue;
    if (absl::FromTimeT(sb.st_mtime) < cutoff) ::unlink(path.c_str());
  }
}

// ---------------------------------------------------------------------------
// StreamingPush.

class StreamingPush::Source : public oci::ByteSource {
 public:
  explicit Source(StreamingPush* p) : p_(p) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    absl::MutexLock l(&p_->mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
      return !p_->queue_.empty() || p_->closed_ || p_->abandoned_;
    };
    p_->mu_.Await(absl::Condition(&ready));
    if (p_->abandoned_) return absl::CancelledError("the upload stream broke or was taken over");
    if (p_->queue_.empty()) return size_t{0};  // closed: the end
    std::string& front = p_->queue_.front();
    size_t take = std::min(n, front.size() - p_->front_used_);
    std::memcpy(buf, front.data() + p_->front_used_, take);
    p_->front_used_ += take;
    if (p_->front_used_ == front.size()) {
      p_->queued_bytes_ -= front.size();
      front.clear();  // keeps the capacity for Feed
      if (p_->spare_.size() < 4) p_->spare_.push_back(std::move(front));
      p_->queue_.pop_front();
      p_->front_used_ = 0;
    }
    return take;
  }

 private:
  StreamingPush* p_;
};

StreamingPush::StreamingPush(cache::BlobStore& store, oci::Digest digest, int64_t size,
                             size_t max_buffered)
    : max_buffered_(max_buffered),
      result_(absl::UnknownError("push not finished")),
      thread_(&StreamingPush::Run, this, &store, std::move(digest), size) {}

void StreamingPush::Run(cache::BlobStore* store, oci::Digest digest, int64_t size) {
  Source src(this);
  absl::StatusOr<oci::Descriptor> d = store->WriteBlob(digest, size, src);
  absl::MutexLock l(&mu_);
  result_ = std::move(d);
  done_ = true;
  queue_.clear();
  queued_bytes_ = 0;
}

StreamingPush::~StreamingPush() {
  Abandon();
  thread_.join();
}

void StreamingPush::Abandon() {
  absl::MutexLock l(&mu_);
  if (!done_) abandoned_ = true;
}

bool StreamingPush::Feed(std::string* data) {
  if (data->empty()) return true;
  absl::MutexLock l(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ || abandoned_ || queued_bytes_ < max_buffered_;
  };
  mu_.Await(absl::Condition(&room));
  if (done_ || abandoned_) return false;
  queued_bytes_ += data->size();
  queue_.emplace_back();
  queue_.back().swap(*data);
  if (!spare_.empty()) {
    data->swap(spare_.back());
    spare_.pop_back();
  }
  return true;
}

absl::StatusOr<oci::Descriptor> StreamingPush::Finish() {
  absl::MutexLock l(&mu_);
  closed_ = true;
  mu_.Await(absl::Condition(&done_));
  return result_;
}

}  // namespace ocicache::rpc
