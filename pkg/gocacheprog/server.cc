#include "pkg/gocacheprog/server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/format.h"
#include "pkg/cache/registry_store.h"
#include "pkg/cache/tiered_store.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/oci/pipe.h"

namespace ocicache::gocacheprog {
namespace {

constexpr char kKind[] = "go-action";
constexpr char kToolAnnotation[] = "org.ocicache.tool.go";
// Objects up to this size are downloaded into memory, larger ones streamed.
constexpr int64_t kInMemoryFetch = 8 << 20;
// Warnings of one kind shown before they are only counted.
constexpr int kMaxWarnings = 3;

std::string ConfigFor(const oci::Digest& output_id, int64_t size) {
  return absl::StrCat(R"({"kind":")", kKind, R"(","outputID":")", output_id.str(),
                      R"(","size":)", size, "}");
}

// Whether a remote failure means "stop asking for a while".
bool PausesRemote(const absl::Status& s) {
  return cache::IsOutage(s) || absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s) ||
         absl::IsUnimplemented(s);
}

}  // namespace

// A fixed set of threads running queued tasks.
class Server::Pool {
 public:
  Pool(int threads, size_t max_queue) : max_queue_(max_queue) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~Pool() {
    Abort();
    for (auto& t : threads_) t.join();
  }

  // False when the queue is full or the pool is stopping.
  bool Submit(std::function<void()> fn) {
    absl::MutexLock l(&mu_);
    if (stopping_ || (max_queue_ > 0 && queue_.size() >= max_queue_)) return false;
    queue_.push_back(std::move(fn));
    return true;
  }
  // Waits until no task is queued or running; false at the deadline.
  bool WaitIdle(absl::Time deadline) {
    absl::MutexLock l(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(this, &Pool::IdleLocked), deadline);
  }
  // Stops taking tasks and drops the queued ones; returns how many were dropped.
  size_t Abort() {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    size_t n = queue_.size();
    queue_.clear();
    return n;
  }
  int active() {
    absl::MutexLock l(&mu_);
    return active_;
  }
  bool stopping() {
    absl::MutexLock l(&mu_);
    return stopping_;
  }

 private:
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && active_ == 0;
  }
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  }
  void Run() {
    for (;;) {
      std::function<void()> fn;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(this, &Pool::HasWorkLocked));
        if (queue_.empty()) return;  // stopping
        fn = std::move(queue_.front());
        queue_.pop_front();
        ++active_;
      }
      fn();
      absl::MutexLock l(&mu_);
      --active_;
    }
  }

  const size_t max_queue_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

absl::StatusOr<std::unique_ptr<Server>> Server::Create(layout::LayoutStore* local,
                                                       cache::Store* remote_lookup,
                                                       cache::Store* remote_upload,
                                                       ServerOptions opts) {
  if (local == nullptr) return absl::InvalidArgumentError("gocacheprog needs a local directory");
  if (!absl::StartsWith(local->dir(), "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("the local directory must be an absolute path: ", local->dir()));
  }
  if (opts.lookup_threads < 1 || opts.upload_threads < 1) {
    return absl::InvalidArgumentError("thread counts must be at least 1");
  }
  if (!opts.warn) {
    opts.warn = [](absl::string_view line) { std::cerr << line << "\n" << std::flush; };
  }
  std::unique_ptr<Server> s(new Server(local, remote_lookup, remote_upload, std::move(opts)));
  // The empty file answering for zero-size objects.
  std::string dir = absl::StrCat(local->dir(), "/gocacheprog");
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", std::strerror(errno)));
  }
  s->empty_path_ = absl::StrCat(dir, "/empty");
  int fd = ::open(s->empty_path_.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("create ", s->empty_path_, ": ", std::strerror(errno)));
  }
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            (st.st_size == 0 || ::ftruncate(fd, 0) == 0);
  ::close(fd);
  if (!ok) return absl::InternalError(absl::StrCat(s->empty_path_, " cannot be an empty file"));
  s->lookups_ = std::make_unique<Pool>(s->opts_.lookup_threads, 0);
  // The session: from the registry, or from the local copy alone (no registry).
  if (!s->opts_.session_key.empty()) {
    s->prefetches_ = std::make_unique<Pool>(std::max(1, s->opts_.prefetch_threads), 0);
  }
  if (s->remote_upload_ != nullptr) {
    s->uploads_ = std::make_unique<Pool>(s->opts_.upload_threads, s->opts_.upload_queue);
  }
  return s;
}

Server::Server(layout::LayoutStore* local, cache::Store* remote_lookup,
               cache::Store* remote_upload, ServerOptions opts)
    : local_(local),
      remote_lookup_(remote_lookup),
      remote_upload_(remote_upload),
      opts_(std::move(opts)) {}

Server::~Server() {
  // Join the workers before the state they use goes away.
  prefetches_.reset();
  lookups_.reset();
  uploads_.reset();
}

// ---------------------------------------------------------------------------
// Output.

void Server::Send(const std::string& line) {
  absl::MutexLock l(&out_mu_);
  if (out_ == nullptr || out_broken_) return;
  out_->write(line.data(), static_cast<std::streamsize>(line.size()));
  out_->flush();
  if (!*out_) out_broken_ = true;
}

void Server::SendError(int64_t id, absl::string_view message) {
  ++n_.errors;
  Send(ErrorLine(id, message));
}

void Server::Warn(absl::string_view message) {
  opts_.warn(absl::StrCat("ocicache gocacheprog: ", message));
}

// ---------------------------------------------------------------------------
// The request loop.

int Server::Serve(Input& in, std::ostream& out) {
  {
    absl::MutexLock l(&out_mu_);
    out_ = &out;
  }
  Send(HelloLine());
  if (prefetches_ != nullptr && !LoadLocalSession() && remote_lookup_ != nullptr) {
    prefetches_->Submit([this] { LoadSession(); });
  }
  LineReader reader(&in);
  std::string line;
  int rc = 0;
  for (;;) {
    auto next = reader.PeekLine();
    if (!next.ok()) {
      Warn(absl::StrCat("reading requests: ", next.status().message()));
      rc = 2;
      break;
    }
    if (*next < 0) break;  // end of input without close
    if (*next == '"') {
      // A body whose request was refused (or a stray one): skip it.
      Warn(absl::StrCat("skipping a put body at byte ", reader.offset(),
                        " that follows no valid put request"));
      if (absl::Status s = reader.SkipLine(); !s.ok()) {
        rc = 2;
        break;
      }
      continue;
    }
    bool overlong = false;
    int64_t at = reader.offset();
    auto got = reader.ReadLine(&line, opts_.max_request_bytes, &overlong);
    if (!got.ok()) {
      Warn(absl::StrCat("reading requests: ", got.status().message()));
      rc = 2;
      break;
    }
    if (!*got) break;
    ParsedRequest p = ParseRequest(line, overlong);
    const Request& r = p.request;
    if (!p.status.ok()) {
      if (!p.id_known) {
        Warn(absl::StrCat("unusable request at byte ", at, " of the input: ", p.status.message(),
                          "; stopping"));
        rc = 2;
        break;
      }
      SendError(r.id, p.status.message());
      if (p.body_follows && !SkipBody(reader)) {
        rc = 2;
        break;
      }
      continue;
    }
    if (r.command == "get") {
      if (r.action_id.size() != kIdBytes) {
        SendError(r.id, "get needs an ActionID");
      } else {
        ++n_.gets;
        int64_t id = r.id;
        std::string action = r.action_id;
        lookups_->Submit([this, id, action] { HandleGet(id, action); });
      }
      if (p.body_follows && !SkipBody(reader)) {
        rc = 2;
        break;
      }
    } else if (r.command == "put") {
      if (!HandlePut(r, reader)) {
        rc = 2;
        break;
      }
    } else if (r.command == "close") {
      if (p.body_follows && !SkipBody(reader)) {
        rc = 2;
        break;
      }
      Drain();
      Send(CloseLine(r.id));
      return 0;
    } else {
      SendError(r.id, absl::StrCat("unknown command \"", r.command, "\""));
      if (p.body_follows && !SkipBody(reader)) {
        rc = 2;
        break;
      }
    }
  }
  Drain();
  return rc;
}

bool Server::SkipBody(LineReader& reader) {
  auto next = reader.PeekLine();
  if (!next.ok() || *next < 0) {
    Warn("the request stream ended where a put body was expected");
    return false;
  }
  if (*next == '{') return true;  // no body after all: that is the next request
  return reader.SkipLine().ok();
}

bool Server::HandlePut(const Request& r, LineReader& reader) {
  ++n_.puts;
  bool body_follows = r.body_size > 0;
  auto refuse = [&](absl::string_view message) {
    SendError(r.id, message);
    return body_follows ? SkipBody(reader) : true;
  };
  if (r.action_id.size() != kIdBytes) return refuse("put needs an ActionID");
  if (r.object_id.size() != kIdBytes) return refuse("put needs an ObjectID");
  if (r.body_size > opts_.max_object_bytes) {
    return refuse(absl::StrCat("object of ", r.body_size, " bytes is larger than the limit of ",
                               opts_.max_object_bytes));
  }
  auto digest = oci::Digest::FromHex(Hex(r.object_id));
  if (!digest.ok()) return refuse(digest.status().message());

  cache::Entry e;
  e.key = Hex(r.action_id);
  e.config = ConfigFor(*digest, r.body_size);
  if (!opts_.go_version.empty()) e.annotations[kToolAnnotation] = opts_.go_version;
  e.created = e.last_used = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  std::string path;
  if (r.body_size == 0) {
    if (*digest != oci::Digest::Of("")) {
      return refuse("ObjectID is not the SHA-256 of an empty body (BodySize is 0)");
    }
    path = empty_path_;
  } else {
    auto next = reader.PeekLine();
    if (!next.ok() || *next < 0) {
      SendError(r.id, "the request stream ended before the put body");
      Warn("the request stream ended before a put body");
      return false;
    }
    if (*next == '{') {
      // The body line is missing: what follows is the next request.
      SendError(r.id, absl::StrCat("put body (", r.body_size, " bytes) is missing"));
      return true;
    }
    BodySource body(&reader, r.body_size);
    auto d = local_->WriteBlob(*digest, r.body_size, body);
    absl::Status fin = body.Finish();
    if (body.truncated()) {
      SendError(r.id, fin.message());
      Warn(fin.message());
      return false;
    }
    if (!fin.ok()) {
      SendError(r.id, fin.message());
      return true;
    }
    if (!d.ok()) {
      // The body was well formed: a digest mismatch or a local I/O failure.
      std::string msg(d.status().message());
      if (absl::IsInvalidArgument(d.status())) {
        SendError(r.id, absl::StrCat("put body does not match ObjectID ", digest->str(), ": ", msg));
      } else {
        SendError(r.id, absl::StrCat("storing the object in ", local_->Describe(), ": ", msg));
      }
      return true;
    }
    e.blobs.push_back(*d);
    path = local_->BlobPath(*digest);
  }
  if (absl::Status s = local_->Put(e); !s.ok()) {
    SendError(r.id, absl::StrCat("storing the entry in ", local_->Describe(), ": ", s.message()));
    return true;
  }
  Send(PutLine(r.id, path));
  {
    absl::MutexLock l(&mu_);
    known_misses_.erase(e.key);
  }
  RecordUse(e.key, GoObject{*digest, r.body_size});
  if (uploads_ != nullptr) {
    Upload u{e, *digest, r.body_size};
    if (!uploads_->Submit([this, u] { RunUpload(u); })) {
      ++n_.upload_failures;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Gets.

absl::StatusOr<Server::GoObject> Server::CheckEntry(const cache::Entry& e) const {
  auto j = nlohmann::json::parse(e.config, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("entry config is not a JSON object");
  }
  auto kind = j.find("kind");
  auto out = j.find("outputID");
  auto size = j.find("size");
  if (kind == j.end() || !kind->is_string() || kind->get<std::string>() != kKind) {
    return absl::DataLossError("entry is not a go-action entry");
  }
  if (out == j.end() || !out->is_string() || size == j.end() || !size->is_number_integer()) {
    return absl::DataLossError("entry config lacks outputID or size");
  }
  auto digest = oci::Digest::Parse(out->get<std::string>());
  if (!digest.ok()) return absl::DataLossError("entry config has a bad outputID");
  GoObject o{*digest, size->get<int64_t>()};
  if (o.size < 0) return absl::DataLossError("entry config has a negative size");
  if (o.size == 0) {
    if (o.output_id != oci::Digest::Of("")) {
      return absl::DataLossError("entry of size 0 names a non-empty object");
    }
    return o;
  }
  if (e.blobs.empty() || e.blobs[0].digest != o.output_id || e.blobs[0].size != o.size) {
    return absl::DataLossError("entry blob does not match its outputID and size");
  }
  return o;
}

std::string Server::HitFor(int64_t id, const GoObject& o, absl::Time created) const {
  std::string path = o.size > 0 ? local_->BlobPath(o.output_id) : empty_path_;
  return HitLine(id, o.output_id.raw(), o.size, created, path);
}

namespace {

int64_t Micros(absl::Time since) { return absl::ToInt64Microseconds(absl::Now() - since); }

}  // namespace

void Server::HandleGet(int64_t id, const std::string& action_id) {
  struct InFlight {
    explicit InFlight(Counters* n) : n_(n) {
      int64_t now = ++n_->in_flight;
      int64_t max = n_->max_in_flight.load();
      while (now > max && !n_->max_in_flight.compare_exchange_weak(max, now)) {
      }
    }
    ~InFlight() { --n_->in_flight; }
    Counters* n_;
  } in_flight(&n_);

  std::string key = Hex(action_id);
  cache::LookupOptions lo;
  absl::Time t0 = absl::Now();
  auto local = local_->Lookup(key, lo);
  n_.local_us += Micros(t0);
  if (local.ok()) {
    auto o = CheckEntry(*local);
    if (o.ok()) {
      // An entry a prefetch brought in this session came from the registry.
      bool prefetched = false;
      if (prefetches_ != nullptr) {
        absl::MutexLock l(&mu_);
        auto it = prefetch_.find(key);
        prefetched = it != prefetch_.end() && it->second.state == PrefetchState::kOk &&
                     it->second.downloaded;
      }
      if (prefetched) {
        ++n_.remote_hits;
        ++n_.prefetched;
      } else {
        ++n_.local_hits;
      }
      Send(HitFor(id, *o, local->created));
      RecordUse(key, *o);
      return;
    }
  }
  if (prefetches_ != nullptr) {
    GoObject o;
    bool fetched_here = false, from_registry = true;
    if (ClaimPrefetch(key, &o, &fetched_here, &from_registry) == PrefetchState::kOk) {
      if (from_registry) {
        ++n_.remote_hits;
        ++n_.prefetched;
      } else {
        ++n_.local_hits;  // the local session copy, or an object already here
      }
      Send(HitFor(id, o, absl::Now()));
      RecordUse(key, o);
      if (fetched_here) local_->Put(EntryFor(key, o)).IgnoreError();
      return;
    }
  }
  bool known = false;
  if (remote_lookup_ != nullptr) {
    absl::MutexLock l(&mu_);
    known = known_misses_.contains(key);
  }
  bool probe = false;
  if (remote_lookup_ != nullptr && !known && EnterRemote(&probe)) {
    absl::Time t1 = absl::Now();
    auto remote = remote_lookup_->Lookup(key, lo);
    n_.remote_lookup_us += Micros(t1);
    absl::Status outcome = remote.status();
    absl::StatusOr<GoObject> o;
    if (remote.ok()) {
      o = CheckEntry(*remote);
      outcome = o.ok() ? FetchObject(*o) : o.status();
    }
    ExitRemote(probe, outcome, remote.ok() ? "fetching an object" : "lookup");
    if (outcome.ok()) {
      ++n_.remote_hits;
      Send(HitFor(id, *o, remote->created));
      RecordUse(key, *o);
      // The object is in place; recording the entry can follow the answer. A
      // failure only costs a later remote lookup.
      absl::Time t2 = absl::Now();
      absl::Status s = local_->Put(*remote);
      n_.fill_us += Micros(t2);
      if (!s.ok()) {
        bool show;
        {
          absl::MutexLock l(&mu_);
          show = upload_warnings_++ < kMaxWarnings;
        }
        if (show) {
          Warn(absl::StrCat("storing a fetched entry in ", local_->Describe(), ": ", s.message()));
        }
      }
      return;
    }
    if (absl::IsNotFound(remote.status())) {
      absl::MutexLock l(&mu_);
      known_misses_.insert(key);
    } else {
      ++n_.remote_errors;
    }
  }
  ++n_.misses;
  Send(MissLine(id));
}

absl::Status Server::FetchObject(const GoObject& o) {
  if (o.size == 0) return absl::OkStatus();
  auto have = local_->StatBlob(o.output_id);
  if (have.ok() && *have == o.size) return absl::OkStatus();
  absl::Time t0 = absl::Now();
  absl::Status s;
  if (o.size <= kInMemoryFetch) {
    std::string data;
    data.reserve(static_cast<size_t>(o.size));
    oci::StringSink sink(&data);
    s = remote_lookup_->ReadBlob(o.output_id, 0, sink);
    if (s.ok()) {
      oci::StringSource src(data);
      s = local_->WriteBlob(o.output_id, o.size, src).status();
    }
  } else {
    s = oci::Transfer(
        [&](oci::ByteSink& sink) { return remote_lookup_->ReadBlob(o.output_id, 0, sink); },
        [&](oci::ByteSource& src) { return local_->WriteBlob(o.output_id, o.size, src).status(); });
  }
  n_.fetch_us += Micros(t0);
  return s;
}

// ---------------------------------------------------------------------------
// The session list and prefetching.

namespace {
constexpr char kSessionKind[] = "go-session";
constexpr char kLocalSessionKind[] = "go-session-local";
constexpr int64_t kMaxSessionBytes = 64 << 20;
constexpr size_t kMaxSessionPairs = 200000;
// Packs with a larger object are not read (object by object instead).
constexpr int64_t kMaxPackObject = int64_t{512} << 20;

// Reads files one after the other: the session pack's upload.
class ConcatFiles : public oci::ByteSource {
 public:
  explicit ConcatFiles(std::vector<std::string> paths) : paths_(std::move(paths)) {}
  ~ConcatFiles() override { CloseCurrent(); }
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    while (next_ < paths_.size()) {
      if (fd_ < 0) {
        fd_ = ::open(paths_[next_].c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd_ < 0) {
          return absl::NotFoundError(
              absl::StrCat("open ", paths_[next_], ": ", std::strerror(errno)));
        }
      }
      ssize_t r = ::read(fd_, buf, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        return absl::InternalError(absl::StrCat("read ", paths_[next_], ": ", std::strerror(errno)));
      }
      if (r > 0) return static_cast<size_t>(r);
      CloseCurrent();
      ++next_;
    }
    return size_t{0};
  }
  absl::Status Rewind() override {
    CloseCurrent();
    next_ = 0;
    return absl::OkStatus();
  }

 private:
  void CloseCurrent() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  std::vector<std::string> paths_;
  size_t next_ = 0;
  int fd_ = -1;
};

// Cuts a run of the session pack's byte stream into its objects, handing each
// complete one to `done` (index in the run, bytes). Bytes past the run's last
// object stop the stream (SegmentDone, Cancelled); so does `stop`.
class PackSplitter : public oci::ByteSink {
 public:
  // Returned by Write once the last object is complete and more bytes come: the
  // reader of a segment stops the stream there.
  static absl::Status SegmentDone() { return absl::CancelledError("pack segment complete"); }

  PackSplitter(std::vector<int64_t> sizes,
               std::function<void(size_t, const std::string&)> done,
               std::function<bool()> stop)
      : sizes_(std::move(sizes)), done_(std::move(done)), stop_(std::move(stop)) {}
  absl::Status Write(absl::string_view chunk) override {
    if (stop_()) return absl::CancelledError("the session is closing");
    while (!chunk.empty()) {
      if (next_ >= sizes_.size()) return SegmentDone();
      size_t want = static_cast<size_t>(sizes_[next_]) - buf_.size();
      size_t take = std::min(want, chunk.size());
      buf_.append(chunk.data(), take);
      chunk.remove_prefix(take);
      if (buf_.size() == static_cast<size_t>(sizes_[next_])) {
        done_(next_, buf_);
        buf_.clear();
        ++next_;
      }
    }
    return absl::OkStatus();
  }
  // Each object is verified against its OutputID when it is stored.
  bool ChecksEveryByte() const override { return true; }
  // Objects handed over so far.
  size_t completed() const { return next_; }
  bool finished() const { return next_ == sizes_.size(); }

 private:
  std::vector<int64_t> sizes_;
  std::function<void(size_t, const std::string&)> done_;
  std::function<bool()> stop_;
  std::string buf_;
  size_t next_ = 0;
};

// Splits a pack's objects into at most `streams` runs of whole objects with about
// equal bytes each; returns the index of each run's first object, plus pack.size().
std::vector<size_t> PackSegments(const std::vector<int64_t>& sizes, int streams,
                                 int64_t min_segment_bytes) {
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  const int64_t want = std::max<int64_t>(
      1, std::min<int64_t>(streams, total / std::max<int64_t>(1, min_segment_bytes)));
  std::vector<size_t> starts{0};
  int64_t run = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    // Cut before object i once the runs so far hold their share.
    if (run > 0 && static_cast<int64_t>(starts.size()) < want &&
        run * want >= total * static_cast<int64_t>(starts.size())) {
      starts.push_back(i);
    }
    run += sizes[i];
  }
  starts.push_back(sizes.size());
  return starts;
}
}  // namespace

cache::Entry Server::EntryFor(const std::string& key, const GoObject& o) const {
  cache::Entry e;
  e.key = key;
  e.config = ConfigFor(o.output_id, o.size);
  if (!opts_.go_version.empty()) e.annotations[kToolAnnotation] = opts_.go_version;
  if (o.size > 0) {
    oci::Descriptor d;
    d.media_type = oci::media::kOctetStream;
    d.digest = o.output_id;
    d.size = o.size;
    e.blobs.push_back(d);
  }
  return e;
}

void Server::RecordUse(const std::string& key, const GoObject& o) {
  if (opts_.session_key.empty()) return;
  absl::MutexLock l(&mu_);
  if (used_.size() >= kMaxSessionPairs) return;
  if (used_keys_.insert(key).second) used_.emplace_back(key, o);
}

bool Server::LoadLocalSession() {
  // The pairs a build in this directory used, with their objects (most still
  // here): no registry round trip, and it works while the registry is down.
  cache::LookupOptions lo;
  auto e = local_->Lookup(LocalSessionKey(), lo);
  if (!e.ok()) return false;
  auto kind = nlohmann::json::parse(e->config, nullptr, false);
  if (!kind.is_object() || kind.value("kind", "") != kLocalSessionKind || e->blobs.empty() ||
      e->blobs[0].size > kMaxSessionBytes) {
    return false;
  }
  std::string list;
  oci::StringSink sink(&list);
  if (!local_->ReadBlob(e->blobs[0].digest, 0, sink).ok()) return false;
  UseSession(list, *e, /*from_local=*/true, kind.value("remotePack", false));
  return true;
}

void Server::LoadSession() {
  bool probe = false;
  if (!EnterRemote(&probe)) return;
  cache::LookupOptions lo;
  auto e = remote_lookup_->Lookup(opts_.session_key, lo);
  // The lookup settles the probe: gets waiting for it need not wait for the list.
  ExitRemote(probe, e.status(), "reading the session list");
  if (!e.ok()) return;
  std::string list;
  absl::Status s;
  auto kind = nlohmann::json::parse(e->config, nullptr, false);
  if (!kind.is_object() || kind.value("kind", "") != kSessionKind || e->blobs.empty() ||
      e->blobs[0].size > kMaxSessionBytes) {
    s = absl::DataLossError("not a session list");
  } else {
    oci::StringSink sink(&list);
    s = remote_lookup_->ReadBlob(e->blobs[0].digest, 0, sink);
  }
  if (!s.ok()) {
    ExitRemote(false, s, "reading the session list");
    return;
  }
  UseSession(list, *e, /*from_local=*/false, e->blobs.size() >= 2);
}

void Server::UseSession(const std::string& list, const cache::Entry& e, bool from_local,
                        bool remote_pack) {
  // Lines "ACTIONHEX OUTPUTHEX SIZE", in the order the last session used them.
  // The pack (blobs[1], if any) holds each object of size > 0 once, in list order.
  std::vector<std::string> keys;
  std::vector<GoObject> pack;                      // the pack's objects, in order
  std::vector<std::vector<std::string>> pack_keys;  // keys answered by each
  std::vector<std::string> empty;                  // keys of empty objects
  std::vector<std::string> queued;                 // keys to prefetch one by one
  bool pack_usable = !from_local && remote_pack && opts_.session_pack;
  {
    absl::MutexLock l(&mu_);
    loaded_session_ = e.blobs[0].digest;
    loaded_pack_ = remote_pack;
    absl::flat_hash_map<std::string, size_t> pack_index;  // output hex -> index in pack
    for (absl::string_view line : absl::StrSplit(list, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
      int64_t size = 0;
      if (f.size() != 3 || f[0].size() != 2 * kIdBytes || !absl::SimpleAtoi(f[2], &size) ||
          size < 0 || size > opts_.max_object_bytes) {
        pack_usable = false;  // the layout can no longer be followed
        continue;
      }
      auto d = oci::Digest::FromHex(f[1]);
      if (!d.ok() || (size == 0 && *d != oci::Digest::Of(""))) {
        pack_usable = false;
        continue;
      }
      std::string key(f[0]);
      size_t at = pack.size();
      if (size > 0) {
        auto [it, added] = pack_index.emplace(d->hex(), pack.size());
        if (added) {
          pack.push_back(GoObject{*d, size});
          pack_keys.emplace_back();
        } else if (pack[it->second].size != size) {
          pack_usable = false;
        }
        at = it->second;
      }
      if (prefetch_.count(key) > 0) continue;
      // An empty object needs no bytes: answered now. Its pair came from the
      // registry unless the local copy listed it.
      Prefetch p{GoObject{*d, size}, PrefetchState::kQueued};
      if (size == 0) {
        p.state = PrefetchState::kOk;
        p.downloaded = !from_local;
        empty.push_back(key);
      }
      prefetch_[key] = p;
      if (size > 0) pack_keys[at].push_back(key);
      keys.push_back(std::move(key));
    }
    int64_t total = 0, missing = 0;
    for (size_t i = 0; i < pack.size(); ++i) {
      const GoObject& o = pack[i];
      // The stream holds one object at a time in memory: not a huge one.
      if (o.size > kMaxPackObject) pack_usable = false;
      total += o.size;
      auto have = local_->StatBlob(o.output_id);
      if (!have.ok() || *have != o.size) {
        missing += o.size;
        continue;
      }
      // Already here (a warm directory): the list says which key it answers.
      for (const auto& k : pack_keys[i]) prefetch_[k].state = PrefetchState::kOk;
    }
    if (remote_lookup_ == nullptr) {
      // No registry to fetch the missing ones from: those keys take the normal path.
      for (const auto& k : keys) {
        if (prefetch_[k].state == PrefetchState::kQueued) prefetch_[k].state = PrefetchState::kFailed;
      }
    }
    // Worth it when most bytes are missing here (a fresh machine); a warm local
    // directory is topped up object by object.
    pack_usable = pack_usable && !pack.empty() && total == e.blobs[1].size && 2 * missing > total;
    if (pack_usable) {
      // The pack stream brings them all: gets for them wait for it.
      for (const auto& k : keys) {
        if (prefetch_[k].object.size > 0) prefetch_[k].state = PrefetchState::kFetching;
      }
    } else {
      for (const auto& k : keys) {
        if (prefetch_[k].state == PrefetchState::kQueued) queued.push_back(k);
      }
    }
  }
  n_.session_listed += static_cast<int64_t>(keys.size());
  if (pack_usable) {
    ReadPack(e.blobs[1].digest, list, pack, pack_keys, empty);
    return;
  }
  // Pairs read from the registry whose objects were here get no entries of
  // their own: what the list says is recorded by the local copy only when a pack
  // fills this directory. Missing objects are fetched (and their entries stored)
  // one by one.
  for (const auto& k : queued) prefetches_->Submit([this, k] { PrefetchOne(k); });
}

void Server::StoreLocalSession(const std::string& list, const std::vector<GoObject>& objects,
                               bool remote_pack) {
  const oci::Digest list_digest = oci::Digest::Of(list);
  oci::StringSource src(list);
  if (auto w = local_->WriteBlob(list_digest, static_cast<int64_t>(list.size()), src); !w.ok()) {
    Warn(absl::StrCat("recording the session in ", local_->Describe(), ": ", w.status().message()));
    return;
  }
  cache::Entry e;
  e.key = LocalSessionKey();
  e.config = absl::StrCat(R"({"kind":")", kLocalSessionKind, R"(","pairs":)",
                          std::count(list.begin(), list.end(), '\n'), R"(,"remotePack":)",
                          remote_pack ? "true" : "false", "}");
  if (!opts_.go_version.empty()) e.annotations[kToolAnnotation] = opts_.go_version;
  oci::Descriptor ld;
  ld.media_type = oci::media::kOctetStream;
  ld.digest = list_digest;
  ld.size = static_cast<int64_t>(list.size());
  e.blobs.push_back(ld);
  // Every object, so that GC and eviction keep them while the copy lives.
  for (const auto& o : objects) {
    auto have = local_->StatBlob(o.output_id);
    if (!have.ok() || *have != o.size) continue;
    oci::Descriptor d;
    d.media_type = oci::media::kOctetStream;
    d.digest = o.output_id;
    d.size = o.size;
    e.blobs.push_back(d);
  }
  if (absl::Status s = local_->Put(e); !s.ok()) {
    Warn(absl::StrCat("recording the session in ", local_->Describe(), ": ", s.message()));
  }
}

void Server::ReadPack(const oci::Digest& digest, const std::string& list,
                      const std::vector<GoObject>& pack,
                      const std::vector<std::vector<std::string>>& pack_keys,
                      const std::vector<std::string>& empty) {
  // The pack is read as a few runs of whole objects, each by its own ranged GET,
  // so receiving, verifying and writing use more than one core; go asks for the
  // objects in about pack order and the first run comes first. Every object is
  // verified against its digest as it lands, so no run needs the pack's digest:
  // a run stops its stream at its last object.
  std::vector<int64_t> sizes;
  sizes.reserve(pack.size());
  for (const auto& o : pack) sizes.push_back(o.size);
  const std::vector<size_t> starts =
      PackSegments(sizes, opts_.pack_streams, opts_.pack_segment_min_bytes);
  std::vector<int64_t> offsets{0};  // byte offset of each object
  for (int64_t n : sizes) offsets.push_back(offsets.back() + n);

  // go may have an object as soon as its file is in place. What later builds in
  // this directory read is recorded after the streams: the local session copy (one
  // entry). A session too large for one manifest gets an entry per key instead
  // (each three small files and a ref), stored by one more thread off the
  // streams' path. Either is stored before this returns, so before close is
  // answered.
  const bool per_key = pack.size() > static_cast<size_t>(opts_.local_session_max_objects);
  struct EntryQueue {
    std::vector<size_t> objects;  // whose entries are to be stored
    bool streams_done = false;
    static bool Ready(EntryQueue* q) { return !q->objects.empty() || q->streams_done; }
  } queue;
  absl::Mutex entries_mu;
  auto write_entries = [&] {
    const GoObject none{oci::Digest::Of(""), 0};
    for (const auto& key : empty) local_->Put(EntryFor(key, none)).IgnoreError();
    for (;;) {
      std::vector<size_t> batch;
      {
        absl::MutexLock l(&entries_mu);
        entries_mu.Await(absl::Condition(&EntryQueue::Ready, &queue));
        batch.swap(queue.objects);
        if (batch.empty()) return;  // streams done, queue empty
      }
      for (size_t i : batch) {
        for (const auto& key : pack_keys[i]) local_->Put(EntryFor(key, pack[i])).IgnoreError();
      }
    }
  };
  std::thread entry_writer;
  if (per_key) entry_writer = std::thread(write_entries);
  auto done = [&](size_t i, const std::string& bytes) {
    const GoObject& o = pack[i];
    oci::StringSource src(bytes);
    // Verified against its digest on the way in: a bad byte fails this object only.
    bool ok = local_->WriteBlob(o.output_id, o.size, src).ok();
    {
      // Keys of objects that were here already are settled (as not downloaded).
      absl::MutexLock l(&mu_);
      for (const auto& key : pack_keys[i]) {
        auto it = prefetch_.find(key);
        if (it == prefetch_.end() || it->second.state != PrefetchState::kFetching) continue;
        it->second.state = ok ? PrefetchState::kOk : PrefetchState::kFailed;
        it->second.downloaded = ok;
      }
    }
    if (ok && per_key) {
      absl::MutexLock l(&entries_mu);
      queue.objects.push_back(i);
    }
  };
  const size_t runs = starts.size() - 1;
  std::vector<size_t> completed(runs, 0);
  std::vector<absl::Status> status(runs);
  auto read_run = [&](size_t r) {
    const size_t first = starts[r];
    std::vector<int64_t> run_sizes(sizes.begin() + first, sizes.begin() + starts[r + 1]);
    PackSplitter splitter(
        std::move(run_sizes), [&](size_t i, const std::string& b) { done(first + i, b); },
        [this] { return draining_.load(); });
    absl::Status s = remote_lookup_->ReadBlob(digest, offsets[first], splitter);
    completed[r] = splitter.completed();
    if (splitter.finished()) s = absl::OkStatus();  // stopped on purpose, or read to the end
    status[r] = s;
  };

  bool probe = false;
  absl::Status s = absl::UnavailableError("registry paused");
  absl::Time t0 = absl::Now();
  if (EnterRemote(&probe)) {
    std::vector<std::thread> others;
    for (size_t r = 1; r < runs; ++r) others.emplace_back(read_run, r);
    read_run(0);
    for (auto& t : others) t.join();
    s = absl::OkStatus();
    for (const absl::Status& st : status) {
      if (!st.ok()) {
        s = st;
        break;
      }
    }
    ExitRemote(probe, absl::IsCancelled(s) ? absl::OkStatus() : s, "reading the session pack");
  }
  n_.fetch_us += Micros(t0);
  if (s.ok()) ++n_.packs_read;
  // What the streams did not bring is fetched one by one (unless closing).
  std::vector<std::string> rest;
  {
    absl::MutexLock l(&mu_);
    for (size_t r = 0; r < runs; ++r) {
      for (size_t i = starts[r] + completed[r]; i < starts[r + 1]; ++i) {
        for (const auto& key : pack_keys[i]) {
          auto it = prefetch_.find(key);
          if (it != prefetch_.end() && it->second.state == PrefetchState::kFetching) {
            it->second.state = PrefetchState::kQueued;
            rest.push_back(key);
          }
        }
      }
    }
  }
  for (const auto& k : rest) {
    if (!prefetches_->Submit([this, k] { PrefetchOne(k); })) SettlePrefetch(k, false);
  }
  {
    absl::MutexLock l(&entries_mu);
    queue.streams_done = true;
  }
  if (per_key) {
    entry_writer.join();
  } else {
    StoreLocalSession(list, pack, /*remote_pack=*/true);
  }
}

bool Server::PrefetchSettledLocked(const std::string* key) const {
  auto it = prefetch_.find(*key);
  return it == prefetch_.end() || it->second.state != PrefetchState::kFetching;
}

void Server::SettlePrefetch(const std::string& key, bool ok, bool downloaded) {
  absl::MutexLock l(&mu_);
  auto it = prefetch_.find(key);
  if (it == prefetch_.end()) return;
  it->second.state = ok ? PrefetchState::kOk : PrefetchState::kFailed;
  it->second.downloaded = ok && downloaded;
}

void Server::PrefetchOne(const std::string& key) {
  GoObject o;
  {
    absl::MutexLock l(&mu_);
    auto it = prefetch_.find(key);
    if (it == prefetch_.end() || it->second.state != PrefetchState::kQueued) return;
    it->second.state = PrefetchState::kFetching;
    o = it->second.object;
  }
  // Already here (a warm directory): nothing to fetch.
  cache::LookupOptions lo;
  lo.touch = false;
  if (auto local = local_->Lookup(key, lo); local.ok() && CheckEntry(*local).ok()) {
    SettlePrefetch(key, true, /*downloaded=*/false);
    return;
  }
  bool probe = false;
  if (!EnterRemote(&probe)) {
    SettlePrefetch(key, false);
    return;
  }
  absl::Status s = FetchObject(o);
  ExitRemote(probe, s, "prefetching an object");
  SettlePrefetch(key, s.ok());
  if (s.ok()) local_->Put(EntryFor(key, o)).IgnoreError();
}

Server::PrefetchState Server::ClaimPrefetch(const std::string& key, GoObject* o,
                                            bool* fetched_here, bool* from_registry) {
  *fetched_here = false;
  *from_registry = true;
  {
    absl::MutexLock l(&mu_);
    auto it = prefetch_.find(key);
    if (it == prefetch_.end()) return PrefetchState::kFailed;
    if (it->second.state == PrefetchState::kFetching) {
      // Another thread is on it: wait for it rather than download it twice.
      struct Wait {
        const Server* server;
        const std::string* key;
      } wait{this, &key};
      mu_.Await(absl::Condition(
          +[](Wait* w) { return w->server->PrefetchSettledLocked(w->key); }, &wait));
      it = prefetch_.find(key);
      *o = it->second.object;
      *from_registry = it->second.downloaded;
      return it->second.state;
    }
    *o = it->second.object;
    *from_registry = it->second.downloaded;
    if (it->second.state != PrefetchState::kQueued) return it->second.state;
    it->second.state = PrefetchState::kFetching;  // go asks for it first: fetch it now
  }
  bool probe = false;
  if (!EnterRemote(&probe)) {
    SettlePrefetch(key, false);
    return PrefetchState::kFailed;
  }
  absl::Status s = FetchObject(*o);
  ExitRemote(probe, s, "fetching an object");
  SettlePrefetch(key, s.ok());
  *fetched_here = s.ok();
  *from_registry = true;
  return s.ok() ? PrefetchState::kOk : PrefetchState::kFailed;
}

void Server::WriteSession() {
  if (remote_upload_ == nullptr || opts_.session_key.empty()) return;
  std::string list;
  std::vector<GoObject> pack;  // each object of size > 0 once, in list order
  {
    absl::MutexLock l(&mu_);
    if (used_.empty()) return;
    // The same pairs as the list read at start (in whatever order): keep that one.
    bool same = loaded_session_.valid() && used_.size() == prefetch_.size();
    absl::flat_hash_set<std::string> packed;
    int64_t total = 0;
    for (const auto& [key, o] : used_) {
      absl::StrAppend(&list, key, " ", o.output_id.hex(), " ", o.size, "\n");
      if (o.size > 0 && packed.insert(o.output_id.hex()).second) {
        pack.push_back(o);
        total += o.size;
      }
      if (same) {
        auto it = prefetch_.find(key);
        same = it != prefetch_.end() && it->second.object.output_id == o.output_id &&
               it->second.object.size == o.size;
      }
    }
    // A list close to this build's is kept too: rewriting costs a hash and an
    // upload of the whole pack while go waits for close, for every build that
    // changed a package. Close: at most a tenth of the pairs (and of the pack's
    // bytes) new or changed, and at most a quarter listed but unused; the next
    // machine looks the new pairs up one by one, concurrently.
    if (!same && loaded_session_.valid() && loaded_pack_ && !prefetch_.empty()) {
      size_t new_pairs = 0, unused_pairs = 0;
      int64_t listed_bytes = 0, new_bytes = 0, unused_bytes = 0;
      absl::flat_hash_set<std::string> listed;
      for (const auto& [key, p] : prefetch_) {
        if (p.object.size > 0 && listed.insert(p.object.output_id.hex()).second) {
          listed_bytes += p.object.size;
        }
        if (!used_keys_.contains(key)) {
          ++unused_pairs;
          unused_bytes += p.object.size;
        }
      }
      for (const auto& [key, o] : used_) {
        auto it = prefetch_.find(key);
        if (it == prefetch_.end() || it->second.object.output_id != o.output_id) {
          ++new_pairs;
          new_bytes += o.size;
        }
      }
      const size_t n = prefetch_.size();
      same = new_pairs * 10 <= n && new_bytes * 10 <= listed_bytes && unused_pairs * 4 <= n &&
             unused_bytes * 4 <= listed_bytes;
    }
    // A list written without a pack (an older version, or too big then) gets one.
    bool want_pack = opts_.session_pack && total > 0 && total <= opts_.max_pack_bytes;
    if (same && (loaded_pack_ || !want_pack)) return;
  }
  oci::Digest digest = oci::Digest::Of(list);
  bool probe = false;
  if (!EnterRemote(&probe)) return;
  oci::StringSource src(list);
  auto d = remote_upload_->WriteBlob(digest, static_cast<int64_t>(list.size()), src);
  absl::Status s = d.status();
  std::optional<oci::Descriptor> pack_desc;
  if (s.ok() && opts_.session_pack) {
    // The objects' bytes back to back: a fresh machine reads them in one stream.
    int64_t total = 0;
    std::vector<std::string> paths;
    bool complete = true;
    for (const auto& o : pack) {
      total += o.size;
      auto have = local_->StatBlob(o.output_id);
      complete = complete && have.ok() && *have == o.size;
      paths.push_back(local_->BlobPath(o.output_id));
    }
    if (complete && total > 0 && total <= opts_.max_pack_bytes) {
      ConcatFiles files(std::move(paths));
      oci::Sha256 sha;
      std::string buf(1 << 20, '\0');
      absl::Status rs;
      for (;;) {
        auto n = files.Read(buf.data(), buf.size());
        if (!n.ok()) {
          rs = n.status();
          break;
        }
        if (*n == 0) break;
        sha.Update(buf.data(), *n);
      }
      if (rs.ok() && sha.size() == total && files.Rewind().ok()) {
        auto pd = remote_upload_->WriteBlob(sha.Finish(), total, files);
        if (pd.ok()) {
          pack_desc = *pd;
          n_.pack_bytes_written += total;
        } else {
          Warn(absl::StrCat("uploading the session pack: ", pd.status().message()));
        }
      }
    }
  }
  if (s.ok()) {
    cache::Entry e;
    e.key = opts_.session_key;
    e.config = absl::StrCat(R"({"kind":")", kSessionKind, R"(","pairs":)",
                            std::count(list.begin(), list.end(), '\n'),
                            pack_desc ? absl::StrCat(R"(,"packedObjects":)", pack.size()) : "",
                            "}");
    if (!opts_.go_version.empty()) e.annotations[kToolAnnotation] = opts_.go_version;
    e.blobs.push_back(*d);
    if (pack_desc) e.blobs.push_back(*pack_desc);
    s = remote_upload_->Put(e);
  }
  // The directory's copy follows the list this build wrote: the next build here
  // compares against it, so an unchanged build does not write the list again.
  if (s.ok() && pack.size() <= static_cast<size_t>(opts_.local_session_max_objects)) {
    StoreLocalSession(list, pack, pack_desc.has_value());
  }
  ExitRemote(probe, s, "writing the session list");
}

// ---------------------------------------------------------------------------
// Remote health.

bool Server::EnterRemote(bool* probe) {
  *probe = false;
  absl::MutexLock l(&mu_);
  for (;;) {
    if (remote_known_ && !remote_down_) return true;
    if (remote_down_ && absl::Now() < remote_down_until_) return false;
    if (!probing_) {
      probing_ = true;
      *probe = true;
      return true;
    }
    // Someone is probing. After an outage, do not wait for it: go on without.
    if (remote_down_) return false;
    mu_.Await(absl::Condition(this, &Server::ProbeDoneLocked));
  }
}

void Server::ExitRemote(bool probe, const absl::Status& s, absl::string_view what) {
  const cache::Store* remote = remote_lookup_ != nullptr ? remote_lookup_ : remote_upload_;
  std::string where = remote != nullptr ? remote->Describe() : "registry";
  bool pause = !s.ok() && PausesRemote(s);
  bool first_outage = false;
  bool show = false;
  {
    absl::MutexLock l(&mu_);
    if (probe) probing_ = false;
    remote_known_ = true;
    if (pause) {
      first_outage = !remote_down_;
      remote_down_ = true;
      remote_down_until_ = absl::Now() + opts_.remote_retry_after;
    } else {
      // Any answer (a miss included) shows the registry is back.
      remote_down_ = false;
      if (!s.ok() && !absl::IsNotFound(s)) show = upload_warnings_++ < kMaxWarnings;
    }
  }
  if (first_outage) {
    Warn(absl::StrCat(where, " is unavailable (", what, ": ", s.message(),
                      "); going on without it, trying again every ",
                      absl::FormatDuration(opts_.remote_retry_after)));
  } else if (show) {
    Warn(absl::StrCat(where, ": ", what, ": ", s.message()));
  }
}

// ---------------------------------------------------------------------------
// Uploads.

void Server::RunUpload(const Upload& u) {
  bool probe = false;
  if (uploads_->stopping() || !EnterRemote(&probe)) {
    ++n_.upload_failures;
    return;
  }
  if (probe) {
    // First contact from an upload: probe with the fast lookup client, so a
    // registry that never answers costs a lookup timeout, not an upload's.
    cache::Store* prober = remote_lookup_ != nullptr ? remote_lookup_ : remote_upload_;
    absl::Status s = prober->StatBlob(u.digest.valid() ? u.digest : oci::Digest::Of("")).status();
    ExitRemote(true, s, "probe");
    if (!s.ok() && PausesRemote(s)) {
      ++n_.upload_failures;
      return;
    }
  }
  absl::Status s;
  std::string what;
  if (u.size > 0) {
    std::string path = local_->BlobPath(u.digest);
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      ++n_.upload_failures;
      Warn(absl::StrCat("cannot upload ", u.digest.str(), ": open ", path, ": ",
                        std::strerror(errno)));
      return;
    }
    oci::FdSource src(fd);
    s = remote_upload_->WriteBlob(u.digest, u.size, src).status();
    ::close(fd);
    what = absl::StrCat("uploading object ", u.digest.str());
  }
  if (s.ok()) {
    // The object was just written (or found) there: a registry store need not
    // check it again.
    auto* registry = dynamic_cast<cache::RegistryStore*>(remote_upload_);
    s = registry != nullptr ? registry->PutFresh(u.entry) : remote_upload_->Put(u.entry);
    what = absl::StrCat("uploading entry ", u.entry.key);
  }
  ExitRemote(false, s, what);
  if (!s.ok()) {
    ++n_.upload_failures;
    return;
  }
  ++n_.uploaded;
}

void Server::Drain() {
  lookups_->WaitIdle(absl::InfiniteFuture());
  draining_ = true;  // a session pack still streaming stops
  // Prefetches go would not ask for any more: drop what is queued.
  if (prefetches_ != nullptr) {
    prefetches_->Abort();
    prefetches_->WaitIdle(absl::InfiniteFuture());
  }
  if (uploads_ != nullptr &&
      !uploads_->WaitIdle(absl::Now() + opts_.flush_timeout)) {
    size_t dropped = uploads_->Abort();
    int running = uploads_->active();
    n_.upload_failures += static_cast<int64_t>(dropped) + running;
    if (running > 0) abandoned_ = true;
    Warn(absl::StrCat("uploads did not finish within ", absl::FormatDuration(opts_.flush_timeout),
                      " (--flush-timeout): ", dropped + running, " not uploaded"));
  }
  if (!abandoned_) WriteSession();
  if (absl::Status s = local_->Flush(); !s.ok()) {
    Warn(absl::StrCat("updating ", local_->Describe(), "/index.json: ", s.message()));
  }
  int64_t failed = n_.upload_failures.load();
  if (failed > 0) {
    Warn(absl::StrCat(failed, " of ", n_.puts.load(), " puts were not uploaded to the registry"));
  }
  if (opts_.print_stats) Warn(StatsLine());
  if (!opts_.stats_file.empty()) {
    std::ofstream f(opts_.stats_file, std::ios::app);
    f << StatsJson() << "\n";
    f.close();
    if (!f) Warn(absl::StrCat("cannot write ", opts_.stats_file));
  }
}

// ---------------------------------------------------------------------------
// Counters.

ServerStats Server::stats() const {
  ServerStats s;
  s.gets = n_.gets.load();
  s.local_hits = n_.local_hits.load();
  s.remote_hits = n_.remote_hits.load();
  s.misses = n_.misses.load();
  s.puts = n_.puts.load();
  s.uploaded = n_.uploaded.load();
  s.upload_failures = n_.upload_failures.load();
  s.errors = n_.errors.load();
  s.remote_errors = n_.remote_errors.load();
  s.local_us = n_.local_us.load();
  s.remote_lookup_us = n_.remote_lookup_us.load();
  s.fetch_us = n_.fetch_us.load();
  s.fill_us = n_.fill_us.load();
  s.max_in_flight = n_.max_in_flight.load();
  s.prefetched = n_.prefetched.load();
  s.session_listed = n_.session_listed.load();
  s.packs_read = n_.packs_read.load();
  s.pack_bytes_written = n_.pack_bytes_written.load();
  return s;
}

std::string Server::StatsLine() const {
  ServerStats s = stats();
  return absl::StrCat(s.gets, " gets (", s.local_hits, " local hits, ", s.remote_hits,
                      " remote hits, ", s.misses, " misses), ", s.puts, " puts (", s.uploaded,
                      " uploaded, ", s.upload_failures, " upload failures), ", s.errors,
                      " errors");
}

std::string Server::StatsJson() const {
  ServerStats s = stats();
  nlohmann::ordered_json j{{"gets", s.gets},           {"local_hits", s.local_hits},
                           {"remote_hits", s.remote_hits}, {"misses", s.misses},
                           {"puts", s.puts},           {"uploaded", s.uploaded},
                           {"upload_failures", s.upload_failures}, {"errors", s.errors},
                           {"remote_errors", s.remote_errors}, {"local_us", s.local_us},
                           {"remote_lookup_us", s.remote_lookup_us}, {"fetch_us", s.fetch_us},
                           {"fill_us", s.fill_us}, {"max_in_flight", s.max_in_flight},
                           {"prefetched", s.prefetched}, {"session_listed", s.session_listed},
                           {"packs_read", s.packs_read},
                           {"pack_bytes_written", s.pack_bytes_written}};
  return j.dump();
}

}  // namespace ocicache::gocacheprog
