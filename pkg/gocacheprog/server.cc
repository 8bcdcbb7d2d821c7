#include "pkg/gocacheprog/server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/cache/registry_store.h"
#include "pkg/gocacheprog/internal.h"
#include "pkg/base/thread_pool.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/gocacheprog/registry_gate.h"
#include "pkg/gocacheprog/session.h"
#include "pkg/oci/stream.h"
#include "pkg/oci/zstd_stream.h"

namespace ocicache::gocacheprog {

struct Server::Upload {
  cache::Entry entry;
  oci::Digest digest;
  int64_t size = 0;
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
  s->lookups_ = std::make_unique<base::ThreadPool>(s->opts_.lookup_threads, 0);
  // The session: from the registry, or from the local copy alone (no registry).
  if (!s->opts_.session_key.empty()) {
    Session::Env env;
    env.local = s->local_;
    env.remote_lookup = s->remote_lookup_;
    env.remote_upload = s->remote_upload_;
    env.opts = &s->opts_;
    env.registry = s->registry_.get();
    env.n = s->n_.get();
    env.warn = [server = s.get()](absl::string_view message) { server->Warn(message); };
    s->session_ = std::make_unique<Session>(std::move(env));
  }
  if (s->remote_upload_ != nullptr) {
    s->uploads_ =
        std::make_unique<base::ThreadPool>(s->opts_.upload_threads, s->opts_.upload_queue);
    auto backlog = cache::Backlog::Open(absl::StrCat(local->dir(), "/backlog"));
    if (backlog.ok()) {
      s->backlog_ = *std::move(backlog);
      // Puts an earlier run could not upload: push them behind this build.
      if (s->backlog_->size() > 0) s->uploads_->Submit([srv = s.get()] { srv->RetryBacklog(); });
    } else {
      s->Warn(absl::StrCat("puts that fail to upload will not be retried later: ",
                           backlog.status().message()));
    }
  }
  return s;
}

Server::Server(layout::LayoutStore* local, cache::Store* remote_lookup,
               cache::Store* remote_upload, ServerOptions opts)
    : local_(local),
      remote_lookup_(remote_lookup),
      remote_upload_(remote_upload),
      opts_(std::move(opts)),
      n_(std::make_unique<Counters>()) {
  const cache::Store* remote = remote_lookup_ != nullptr ? remote_lookup_ : remote_upload_;
  registry_ = std::make_unique<RegistryGate>(
      remote != nullptr ? remote->Describe() : "registry", opts_.remote_retry_after,
      [this](absl::string_view message) { Warn(message); });
}

Server::~Server() {
  // Join the workers before the state they use goes away: the prefetches first
  // (gets may wait for them), then gets and uploads, and only then the session,
  // which gets use.
  if (session_ != nullptr) session_->StopPrefetching();
  registry_->StopWaiting();  // uploads waiting out a pause (never served: no Drain)
  lookups_.reset();
  uploads_.reset();
  session_.reset();
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
  ++n_->errors;
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
  if (session_ != nullptr) session_->Start();
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
        ++n_->gets;
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
  ++n_->puts;
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
        SendError(r.id,
                  absl::StrCat("put body does not match ObjectID ", digest->str(), ": ", msg));
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
  if (session_ != nullptr) session_->RecordUse(e.key, GoObject{*digest, r.body_size});
  if (uploads_ != nullptr) {
    Upload u{e, *digest, r.body_size};
    {
      absl::MutexLock l(&pending_mu_);
      pending_.insert(e.key);
    }
    if (!uploads_->Submit([this, u] { UploadOrDefer(u); })) {
      ++n_->upload_failures;
      absl::MutexLock l(&pending_mu_);
      pending_.erase(e.key);
      if (backlog_ != nullptr) backlog_->Add(e.key).IgnoreError();
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Gets.

std::string Server::HitFor(int64_t id, const GoObject& o, absl::Time created) const {
  std::string path = o.size > 0 ? local_->BlobPath(o.output_id) : empty_path_;
  return HitLine(id, o.output_id.raw(), o.size, created, path);
}

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
  } in_flight(n_.get());

  std::string key = Hex(action_id);
  cache::LookupOptions lo;
  absl::Time t0 = absl::Now();
  auto local = local_->Lookup(key, lo);
  n_->local_us += Micros(t0);
  if (local.ok()) {
    std::string data;
    auto o = CheckEntry(*local, &data);
    // An entry in its registry form (copied here by `ocicache sync`, say),
    // holding its object or naming its zstd frame, gets the object's file
    // first: go reads it by path.
    if (o.ok() && (!data.empty() || o->frame.valid())) {
      absl::Status s = FetchObject(local_, nullptr, *o, n_.get(), data.empty() ? nullptr : &data);
      if (!s.ok()) o = s;
    }
    if (o.ok()) {
      // An entry a prefetch brought in this session came from the registry.
      if (session_ != nullptr && session_->Downloaded(key)) {
        ++n_->remote_hits;
        ++n_->prefetched;
      } else {
        ++n_->local_hits;
      }
      Send(HitFor(id, *o, local->created));
      if (session_ != nullptr) session_->RecordUse(key, *o);
      return;
    }
  }
  if (session_ != nullptr) {
    GoObject o;
    bool fetched_here = false, from_registry = true;
    if (session_->Claim(key, &o, &fetched_here, &from_registry) == Session::State::kOk) {
      if (from_registry) {
        ++n_->remote_hits;
        ++n_->prefetched;
      } else {
        ++n_->local_hits;  // the local session copy, or an object already here
      }
      Send(HitFor(id, o, absl::Now()));
      session_->RecordUse(key, o);
      if (fetched_here) local_->Put(EntryFor(key, o, opts_.go_version)).IgnoreError();
      return;
    }
  }
  bool known = false;
  if (remote_lookup_ != nullptr) {
    absl::MutexLock l(&mu_);
    known = known_misses_.contains(key);
  }
  bool probe = false;
  bool ask = remote_lookup_ != nullptr && !known && registry_->Enter(&probe);
  // Asked after Enter, which holds a get back while the session's start reads
  // the list (and takes the snapshot, Session::Start). A call that tests the
  // registry is made whatever the snapshot says; another has nothing to tell the
  // gate when it is not made.
  if (ask && !probe && session_ != nullptr && session_->KnownAbsent(key)) {
    ask = false;
    ++n_->known_absent;
  }
  if (ask) {
    absl::Time t1 = absl::Now();
    auto remote = remote_lookup_->Lookup(key, lo);
    n_->remote_lookup_us += Micros(t1);
    absl::Status outcome = remote.status();
    absl::StatusOr<GoObject> o;
    std::string data;  // the object, when its entry holds it
    if (remote.ok()) {
      o = CheckEntry(*remote, &data);
      outcome = o.ok() ? FetchObject(local_, remote_lookup_, *o, n_.get(),
                                     data.empty() ? nullptr : &data)
                       : o.status();
    }
    registry_->Exit(probe, outcome, remote.ok() ? "fetching an object" : "lookup");
    if (outcome.ok()) {
      ++n_->remote_hits;
      Send(HitFor(id, *o, remote->created));
      if (session_ != nullptr) {
        session_->RecordUse(key, *o);
        // Checked by CheckEntry: the frame, or the object's own blob.
        if (data.empty() && !remote->blobs.empty()) {
          session_->NoteStored(o->output_id, remote->blobs[0]);
        }
      }
      // The object is in place; recording the entry can follow the answer. A
      // failure only costs a later remote lookup.
      absl::Time t2 = absl::Now();
      // The directory keeps the object's blob (go reads it by path): an entry
      // holding the object, or naming its zstd frame, is recorded in local form.
      const bool names_object_blob = data.empty() && !o->frame.valid();
      absl::Status s = local_->Put(names_object_blob ? *remote : LocalEntry(*remote, *o));
      n_->fill_us += Micros(t2);
      if (!s.ok() && registry_->TakeWarning()) {
        Warn(absl::StrCat("storing a fetched entry in ", local_->Describe(), ": ", s.message()));
      }
      return;
    }
    if (absl::IsNotFound(remote.status())) {
      absl::MutexLock l(&mu_);
      known_misses_.insert(key);
    } else {
      ++n_->remote_errors;
    }
  }
  ++n_->misses;
  Send(MissLine(id));
}

// ---------------------------------------------------------------------------
// Uploads.

bool Server::UploadOrDefer(const Upload& u) {
  // An outage met on the way leaves the gate paused; the next attempt waits out
  // the pause (RunUpload), so one blip costs a delay, not the upload. Attempts
  // are bounded, and at close a paused gate ends them after one recheck of the
  // registry per outage (StopWaiting).
  constexpr int kAttempts = 3;
  absl::Status s;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    s = RunUpload(u);
    // Skipped by the gate (UNAVAILABLE) counts too: the pause may have ended by
    // the time this looks (a recheck at close answered).
    if (s.ok() || !(absl::IsUnavailable(s) || registry_->Skipping())) break;
  }
  if (s.ok()) {
    ++n_->uploaded;
  } else {
    ++n_->upload_failures;
  }
  {
    absl::MutexLock l(&pending_mu_);
    pending_.erase(u.entry.key);
  }
  if (backlog_ == nullptr) return s.ok();
  if (!s.ok()) {
    backlog_->Add(u.entry.key).IgnoreError();
  } else if (backlog_->size() > 0) {
    backlog_->Remove(u.entry.key).IgnoreError();  // a retry of a recorded one
  }
  return s.ok();
}

void Server::RetryBacklog() {
  auto keys = backlog_->Keys(opts_.upload_queue);
  if (!keys.ok()) return;
  cache::LookupOptions quiet;
  quiet.touch = false;
  for (const std::string& key : *keys) {
    if (uploads_->stopping()) return;  // the rest waits for a later run
    auto e = local_->Lookup(key, quiet);
    if (absl::IsNotFound(e.status())) {
      backlog_->Remove(key).IgnoreError();  // evicted meanwhile: nothing to push
      continue;
    }
    if (!e.ok()) continue;
    Upload u{*e, oci::Digest::Of(""), 0};
    if (!e->blobs.empty()) {
      u.digest = e->blobs[0].digest;
      u.size = e->blobs[0].size;
    }
    // One failure (the registry is out, most likely) leaves the rest for later.
    if (!UploadOrDefer(u)) return;
  }
}

absl::StatusOr<std::optional<oci::Descriptor>> Server::UploadObject(const Upload& u,
                                                                     oci::ByteSource& src) {
  auto head = oci::ReadUpTo(src, opts_.object_compression ? kInlineMaxBytes : 0);
  if (!head.ok()) return head.status();
  const bool pays = opts_.object_compression && oci::ZstdPays(*head, opts_.pack_zstd_level);
  oci::PrefixedSource all(*std::move(head), &src);
  if (!pays) {
    auto d = remote_upload_->WriteBlob(u.digest, u.size, all);
    if (!d.ok()) return d.status();
    return std::nullopt;
  }
  oci::ZstdSource zstd(all, opts_.pack_zstd_level, u.size);
  if (u.size > kInMemoryUpload) {
    auto d = remote_upload_->WriteBlob(oci::Digest(), -1, zstd);
    if (!d.ok()) return d.status();
    return *d;
  }
  // In memory first, so the frame's digest is known: a registry that has it
  // already (the same object under another key) is not sent it again.
  auto frame = oci::ReadUpTo(zstd, -1);
  if (!frame.ok()) return frame.status();
  oci::StringSource frame_src(*frame);
  auto d = remote_upload_->WriteBlob(oci::Digest::Of(*frame), static_cast<int64_t>(frame->size()),
                                     frame_src);
  if (!d.ok()) return d.status();
  return *d;
}

absl::Status Server::RunUpload(const Upload& u) {
  bool probe = false;
  // An upload waits out a pause after an outage (go does not wait for it): the
  // registry's next answer lets it through, and at close, Drain asks once more
  // before what still waits goes to the backlog.
  if (uploads_->stopping() || !registry_->EnterOrWait(&probe)) {
    return absl::UnavailableError("the registry is skipped");
  }
  if (probe) {
    // First contact from an upload: probe with the fast lookup client, so a
    // registry that never answers costs a lookup timeout, not an upload's.
    cache::Store* prober = remote_lookup_ != nullptr ? remote_lookup_ : remote_upload_;
    absl::Status s = prober->StatBlob(u.digest.valid() ? u.digest : oci::Digest::Of("")).status();
    if (registry_->Exit(true, s, "probe")) return s;
  }
  // The entry's blobs were just written (or found) there, or it has none: a
  // registry store need not check them again.
  auto put_entry = [this](const cache::Entry& e) {
    auto* registry = dynamic_cast<cache::RegistryStore*>(remote_upload_);
    return registry != nullptr ? registry->PutFresh(e) : remote_upload_->Put(e);
  };
  absl::Status s;
  std::string what;
  if (u.size > 0 && u.size <= kInlineMaxBytes) {
    // Small: the object goes up inside its entry (one manifest, no blob).
    std::string bytes;
    oci::BoundedStringSink sink(&bytes, u.size, "object");
    s = local_->ReadBlob(u.digest, 0, sink);
    if (s.ok() && static_cast<int64_t>(bytes.size()) != u.size) {
      s = absl::DataLossError(absl::StrCat(bytes.size(), " bytes, not ", u.size));
    }
    if (!s.ok()) {  // this directory's trouble, not the registry's (as for a blob below)
      std::string msg = absl::StrCat("cannot upload ", u.digest.str(), ": reading it from ",
                                     local_->Describe(), ": ", s.message());
      Warn(msg);
      return absl::InternalError(msg);
    }
    s = put_entry(InlineEntry(u.entry, GoObject{u.digest, u.size}, bytes));
    registry_->Exit(false, s, absl::StrCat("uploading entry ", u.entry.key));
    return s;
  }
  cache::Entry entry = u.entry;  // or its form naming the object's zstd frame
  if (u.size > 0) {
    std::string path = local_->BlobPath(u.digest);
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      std::string msg =
          absl::StrCat("cannot upload ", u.digest.str(), ": open ", path, ": ", std::strerror(errno));
      Warn(msg);
      return absl::InternalError(msg);
    }
    oci::FdSource src(fd);
    auto frame = UploadObject(u, src);
    ::close(fd);
    s = frame.status();
    what = absl::StrCat("uploading object ", u.digest.str());
    if (s.ok() && frame->has_value()) {
      entry = EncodedEntry(u.entry, GoObject{u.digest, u.size}, **frame);
    }
  }
  if (s.ok()) {
    s = put_entry(entry);
    what = absl::StrCat("uploading entry ", u.entry.key);
  }
  // The registry holds the object now: the session pack written at close may name it.
  if (s.ok() && session_ != nullptr && u.size > 0 && !entry.blobs.empty()) {
    session_->NoteStored(u.digest, entry.blobs[0]);
  }
  registry_->Exit(false, s, what);
  return s;
}

void Server::Drain() {
  const absl::Time drain_start = absl::Now();
  lookups_->WaitIdle(absl::InfiniteFuture());
  if (session_ != nullptr) session_->StopPrefetching();
  if (uploads_ != nullptr) {
    // Uploads held back by a pause after an outage, now or met later by an
    // upload still in flight: the registry is asked again at once rather than at
    // the end of the pause (one lookup's timeout at most, once per outage); if
    // it does not answer, they go to the backlog.
    cache::Store* prober = remote_lookup_ != nullptr ? remote_lookup_ : remote_upload_;
    registry_->StopWaiting(
        [prober] { return prober->StatBlob(oci::Digest::Of("")).status(); });
  }
  if (uploads_ != nullptr &&
      !uploads_->WaitIdle(absl::Now() + opts_.flush_timeout)) {
    size_t dropped = uploads_->Abort();
    int running = uploads_->active();
    n_->upload_failures += static_cast<int64_t>(dropped) + running;
    if (running > 0) abandoned_ = true;
    // What did not go up waits in the backlog for the next run.
    if (backlog_ != nullptr) {
      absl::MutexLock l(&pending_mu_);
      for (const auto& key : pending_) backlog_->Add(key).IgnoreError();
    }
    Warn(absl::StrCat("uploads did not finish within ", absl::FormatDuration(opts_.flush_timeout),
                      " (--flush-timeout): ", dropped + running, " not uploaded"));
  }
  if (!abandoned_ && session_ != nullptr) session_->Write();
  if (absl::Status s = local_->Flush(); !s.ok()) {
    Warn(absl::StrCat("updating ", local_->Describe(), "/index.json: ", s.message()));
  }
  n_->close_us += Micros(drain_start);
  int64_t failed = n_->upload_failures.load();
  if (failed > 0) {
    Warn(absl::StrCat(failed, " of ", n_->puts.load(), " puts were not uploaded to the registry",
                      backlog_ != nullptr
                          ? absl::StrCat("; they wait in ", backlog_->dir(),
                                         " for the next run (or a server on this directory)")
                          : std::string()));
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

ServerStats Server::stats() const { return n_->Snapshot(); }

std::string Server::StatsLine() const {
  ServerStats s = stats();
  return absl::StrCat(s.gets, " gets (", s.local_hits, " local hits, ", s.remote_hits,
                      " remote hits, ", s.misses, " misses), ", s.puts, " puts (", s.uploaded,
                      " uploaded, ", s.upload_failures, " upload failures), ", s.errors,
                      " errors");
}

std::string Server::StatsJson() const {
  ServerStats s = stats();
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
#define OCICACHE_GOCACHEPROG_JSON(name) j[#name] = s.name;
  OCICACHE_GOCACHEPROG_COUNTERS(OCICACHE_GOCACHEPROG_JSON)
#undef OCICACHE_GOCACHEPROG_JSON
  return j.dump();
}

}  // namespace ocicache::gocacheprog
