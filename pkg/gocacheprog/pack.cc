// The session pack: reading it into the local directory at start, writing it at
// close.
#include "pkg/gocacheprog/session.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pkg/oci/digest.h"
#include "pkg/gocacheprog/zstd_frame.h"
#include "pkg/oci/stream.h"
#include "zstd.h"

namespace ocicache::gocacheprog {
namespace {

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
        return absl::InternalError(
            absl::StrCat("read ", paths_[next_], ": ", std::strerror(errno)));
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

// Compresses files (a run of the pack's objects) as one zstd frame into fd,
// hashing what it writes; returns the frame's size.
absl::StatusOr<int64_t> CompressFrame(const std::vector<std::string>& paths, int level, int fd,
                                      oci::Sha256& sha) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (cctx == nullptr) return absl::ResourceExhaustedError("ZSTD_createCCtx failed");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  // Every core when libzstd has threads (Debian's does); ignored otherwise.
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers,
                         static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::string inbuf(1 << 20, '\0'), outbuf(ZSTD_CStreamOutSize(), '\0');
  int64_t written = 0;
  auto drain = [&](ZSTD_inBuffer* in, ZSTD_EndDirective mode) -> absl::Status {
    for (;;) {
      ZSTD_outBuffer out{outbuf.data(), outbuf.size(), 0};
      size_t left = ZSTD_compressStream2(cctx.get(), &out, in, mode);
      if (ZSTD_isError(left)) {
        return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(left)));
      }
      if (out.pos > 0) {
        oci::FdSink sink(fd);
        if (absl::Status s = sink.Write(absl::string_view(outbuf.data(), out.pos)); !s.ok()) {
          return s;
        }
        sha.Update(outbuf.data(), out.pos);
        written += static_cast<int64_t>(out.pos);
      }
      const bool done = mode == ZSTD_e_end ? left == 0 : in->pos == in->size;
      if (done) return absl::OkStatus();
    }
  };
  ConcatFiles files(paths);
  for (;;) {
    auto n = files.Read(inbuf.data(), inbuf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    ZSTD_inBuffer in{inbuf.data(), *n, 0};
    if (absl::Status s = drain(&in, ZSTD_e_continue); !s.ok()) return s;
  }
  ZSTD_inBuffer none{nullptr, 0, 0};
  if (absl::Status s = drain(&none, ZSTD_e_end); !s.ok()) return s;
  return written;
}

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

void Session::ReadPack(const std::vector<oci::Descriptor>& layers, const PackFrames& frames,
                       const std::string& list,
                       const std::vector<GoObject>& pack,
                       const std::vector<std::vector<std::string>>& pack_keys,
                       const std::vector<std::string>& empty) {
  const ServerOptions& opts = *env_.opts;
  layout::LayoutStore* local = env_.local;
  // The pack is read as runs of whole objects, each by its own exact ranged GET
  // (Range: bytes=X-Y), several at once, so receiving, verifying and writing use
  // more than one core; go asks for the objects in about pack order and runs
  // start in that order. Every object is verified against its digest as it
  // lands, so no run needs a blob's digest: a run stops its stream at its last
  // object. A raw pack is cut into runs here; a compressed one is read frame by
  // frame; a referenced object is a run of its own (its blob, decoded when it is
  // a zstd frame).
  struct Run {
    const oci::Descriptor* layer;
    int64_t offset = 0, bytes = 0;
    bool zstd = false;
    bool ref = false;             // the object's own blob (noted as stored once read)
    std::vector<size_t> objects;  // pack indices, in stream order
  };
  std::vector<Run> runs;
  std::vector<int64_t> sizes;
  sizes.reserve(pack.size());
  for (const auto& o : pack) sizes.push_back(o.size);
  if (frames.raw()) {
    std::vector<size_t> starts =
        PackSegments(sizes, opts.pack_streams, opts.pack_segment_min_bytes);
    int64_t at = 0;
    for (size_t r = 0; r + 1 < starts.size(); ++r) {
      Run run{&layers[1], at};
      for (size_t i = starts[r]; i < starts[r + 1]; ++i) {
        run.objects.push_back(i);
        run.bytes += sizes[i];
      }
      at += run.bytes;
      runs.push_back(std::move(run));
    }
  } else {
    // The frames hold the objects that are not references, in pack order.
    std::vector<size_t> framed;
    for (size_t i = 0, j = 0; i < pack.size(); ++i) {
      if (j < frames.refs.size() && frames.refs[j] == i) {
        ++j;
      } else {
        framed.push_back(i);
      }
    }
    int64_t at = 0;
    for (size_t r = 0; r < frames.starts.size(); ++r) {
      Run run{&layers[1], at, frames.bytes[r], /*zstd=*/true};
      const size_t end = r + 1 < frames.starts.size() ? frames.starts[r + 1] : framed.size();
      for (size_t k = frames.starts[r]; k < end; ++k) run.objects.push_back(framed[k]);
      at += run.bytes;
      runs.push_back(std::move(run));
    }
    const size_t first_ref = layers.size() - frames.refs.size();
    for (size_t j = 0; j < frames.refs.size(); ++j) {
      const oci::Descriptor& d = layers[first_ref + j];
      runs.push_back(Run{&d, 0, d.size, d.media_type == oci::media::kZstd, /*ref=*/true,
                         {frames.refs[j]}});
    }
    std::stable_sort(runs.begin(), runs.end(), [](const Run& x, const Run& y) {
      return x.objects.front() < y.objects.front();
    });
  }

  // go may have an object as soon as its file is in place. What later builds in
  // this directory read is recorded after the streams: the local session copy (one
  // entry). A session too large for one manifest gets an entry per key instead,
  // stored by one more thread off the streams' path. Either is stored before this
  // returns, so before close is answered.
  const bool per_key = pack.size() > static_cast<size_t>(opts.local_session_max_objects);
  struct EntryQueue {
    std::vector<size_t> objects;  // whose entries are to be stored
    bool streams_done = false;
    static bool Ready(EntryQueue* q) { return !q->objects.empty() || q->streams_done; }
  } queue;
  absl::Mutex entries_mu;
  auto write_entries = [&] {
    const GoObject none{oci::Digest::Of(""), 0};
    for (const auto& key : empty) local->Put(EntryFor(key, none, opts.go_version)).IgnoreError();
    for (;;) {
      std::vector<size_t> batch;
      {
        absl::MutexLock l(&entries_mu);
        entries_mu.Await(absl::Condition(&EntryQueue::Ready, &queue));
        batch.swap(queue.objects);
        if (batch.empty()) return;  // streams done, queue empty
      }
      for (size_t i : batch) {
        for (const auto& key : pack_keys[i]) {
          local->Put(EntryFor(key, pack[i], opts.go_version)).IgnoreError();
        }
      }
    }
  };
  std::thread entry_writer;
  if (per_key) entry_writer = std::thread(write_entries);
  // Settles the keys of object i: in place (ok), or to be looked up alone.
  auto settle = [&](size_t i, bool ok) {
    {
      // Keys of objects that were here already are settled (as not downloaded).
      absl::MutexLock l(&mu_);
      for (const auto& key : pack_keys[i]) {
        auto it = prefetch_.find(key);
        if (it == prefetch_.end() || it->second.state != State::kFetching) continue;
        it->second.state = ok ? State::kOk : State::kFailed;
        it->second.downloaded = ok;
      }
    }
    if (ok && per_key) {
      absl::MutexLock l(&entries_mu);
      queue.objects.push_back(i);
    }
  };
  auto done = [&](const Run& run, size_t i, const std::string& bytes) {
    const GoObject& o = pack[i];
    oci::StringSource src(bytes);
    // Verified against its digest on the way in: a bad byte fails this object only.
    bool ok = local->WriteBlob(o.output_id, o.size, src).ok();
    // A referenced blob that held the object: a list this build writes may name it.
    if (ok && run.ref) NoteStored(o.output_id, *run.layer);
    settle(i, ok);
  };
  std::vector<size_t> completed(runs.size(), 0);
  std::vector<absl::Status> status(runs.size());
  auto read_run = [&](size_t r) {
    const Run& run = runs[r];
    // A run whose objects are all here by now is not read: a get that came
    // before the list was read fetched them itself, or the directory had them.
    bool all_here = true;
    for (size_t i : run.objects) {
      auto have = local->StatBlob(pack[i].output_id);
      all_here = all_here && have.ok() && *have == pack[i].size;
    }
    if (all_here) {
      for (size_t i : run.objects) settle(i, true);
      completed[r] = run.objects.size();
      return;
    }
    std::vector<int64_t> run_sizes;
    for (size_t i : run.objects) run_sizes.push_back(sizes[i]);
    PackSplitter splitter(
        std::move(run_sizes), [&](size_t k, const std::string& b) { done(run, run.objects[k], b); },
        [this] { return draining_.load(); });
    absl::Status s;
    if (draining_.load()) {
      s = absl::CancelledError("the session is closing");
    } else if (!run.zstd) {
      s = env_.remote_lookup->ReadBlobRange(run.layer->digest, run.offset, run.bytes, splitter);
    } else {
      ZstdFrameSink frame(splitter);  // zstd_frame.h
      s = env_.remote_lookup->ReadBlobRange(run.layer->digest, run.offset, run.bytes, frame);
    }
    completed[r] = splitter.completed();
    if (splitter.finished()) s = absl::OkStatus();  // stopped on purpose, or read to the end
    status[r] = s;
  };

  bool probe = false;
  absl::Status s = absl::UnavailableError("registry paused");
  absl::Time t0 = absl::Now();
  if (env_.registry->Enter(&probe)) {
    // The frames' streams, plus up to pack_ref_streams for referenced objects
    // (small GETs, each about one round trip).
    const size_t workers = std::min(
        runs.size(), static_cast<size_t>(std::max(1, opts.pack_streams)) +
                         (frames.refs.empty() ? 0 : std::max(0, opts.pack_ref_streams)));
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t r = next++; r < runs.size(); r = next++) read_run(r);
    };
    std::vector<std::thread> others;
    for (size_t w = 1; w < workers; ++w) others.emplace_back(work);
    work();
    for (auto& t : others) t.join();
    s = absl::OkStatus();
    for (const absl::Status& st : status) {
      if (!st.ok()) {
        s = st;
        break;
      }
    }
    env_.registry->Exit(probe, absl::IsCancelled(s) ? absl::OkStatus() : s,
                        "reading the session pack");
  }
  env_.n->fetch_us += Micros(t0);
  if (s.ok()) ++env_.n->packs_read;
  // What the streams did not bring is fetched one by one (unless closing).
  std::vector<std::string> rest;
  {
    absl::MutexLock l(&mu_);
    for (size_t r = 0; r < runs.size(); ++r) {
      for (size_t k = completed[r]; k < runs[r].objects.size(); ++k) {
        for (const auto& key : pack_keys[runs[r].objects[k]]) {
          auto it = prefetch_.find(key);
          if (it != prefetch_.end() && it->second.state == State::kFetching) {
            it->second.state = State::kQueued;
            rest.push_back(key);
          }
        }
      }
    }
  }
  for (const auto& k : rest) {
    if (!prefetches_->Submit([this, k] { PrefetchOne(k); })) Settle(k, false);
  }
  {
    absl::MutexLock l(&entries_mu);
    queue.streams_done = true;
  }
  if (per_key) {
    entry_writer.join();
  } else {
    StoreLocal(list, pack, /*remote_pack=*/true);
  }
}

std::optional<oci::Descriptor> Session::UploadPack(const std::vector<GoObject>& pack,
                                                   PackFrames* frames, bool frames_only) {
  const ServerOptions& opts = *env_.opts;
  layout::LayoutStore* local = env_.local;
  *frames = PackFrames{};
  int64_t total = 0;
  std::vector<std::string> paths;
  std::vector<int64_t> sizes;
  bool complete = true;
  for (const auto& o : pack) {
    total += o.size;
    auto have = local->StatBlob(o.output_id);
    complete = complete && have.ok() && *have == o.size;
    paths.push_back(local->BlobPath(o.output_id));
    sizes.push_back(o.size);
  }
  if (!complete || total <= 0 || total > opts.max_pack_bytes) return std::nullopt;
  if (opts.pack_compression || frames_only) {
    if (auto d = UploadCompressedPack(paths, sizes, total, frames_only, frames)) return d;
    *frames = PackFrames{};
    if (frames_only) return std::nullopt;
  }
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
  if (!rs.ok() || sha.size() != total || !files.Rewind().ok()) return std::nullopt;
  auto pd = env_.remote_upload->WriteBlob(sha.Finish(), total, files);
  if (!pd.ok()) {
    env_.warn(absl::StrCat("uploading the session pack: ", pd.status().message()));
    return std::nullopt;
  }
  env_.n->pack_bytes_written += total;
  return *pd;
}

std::optional<oci::Descriptor> Session::UploadCompressedPack(const std::vector<std::string>& paths,
                                                             const std::vector<int64_t>& sizes,
                                                             int64_t total, bool always,
                                                             PackFrames* frames) {
  const ServerOptions& opts = *env_.opts;
  // Frames are the runs a reader streams in parallel, cut as a raw pack's would be.
  std::vector<size_t> starts =
      PackSegments(sizes, opts.pack_streams, opts.pack_segment_min_bytes);
  // An unnamed file in the directory's tmp/ (the pack may be large): gone on close.
  std::string name = absl::StrCat(env_.local->dir(), "/tmp/session-pack-XXXXXX");
  int fd = ::mkstemp(name.data());
  if (fd < 0) {
    env_.warn(absl::StrCat("compressing the session pack: ", name, ": ", std::strerror(errno)));
    return std::nullopt;
  }
  ::unlink(name.c_str());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  oci::Sha256 sha;
  int64_t stored = 0;
  for (size_t r = 0; r + 1 < starts.size(); ++r) {
    std::vector<std::string> run(paths.begin() + starts[r], paths.begin() + starts[r + 1]);
    auto n = CompressFrame(run, opts.pack_zstd_level, fd, sha);
    if (!n.ok()) {
      env_.warn(absl::StrCat("compressing the session pack: ", n.status().message()));
      return std::nullopt;
    }
    frames->starts.push_back(starts[r]);
    frames->bytes.push_back(*n);
    stored += *n;
  }
  // Not worth a format a reader must decode: stored raw instead.
  if (!always && stored * 10 > total * 9) return std::nullopt;
  oci::FdSource src(fd);
  if (!src.Rewind().ok()) return std::nullopt;
  auto pd = env_.remote_upload->WriteBlob(sha.Finish(), stored, src);
  if (!pd.ok()) {
    env_.warn(absl::StrCat("uploading the session pack: ", pd.status().message()));
    return std::nullopt;
  }
  env_.n->pack_bytes_written += stored;
  return *pd;
}

}  // namespace ocicache::gocacheprog
