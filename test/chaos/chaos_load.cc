// chaos_load: bounded clients of one ocicached address (in test/e2e/chaos_test.sh, a
// proxy in front of two replicas) through client::GrpcStore, every read verified
// against what was put, while the test script breaks things. Flags:
//   --server HOST:PORT; --clients N (16), each with its own channel and GrpcStore;
//   --duration S (60): no call starts after it; --max_calls N (5000) per client;
//   --grace S (45): calls still running S s after --duration count as errors (HUNG)
//       and the process exits 1 at once; --think_ms MS (20) between calls;
//   --call_timeout S (30) for unary calls; --seed N (0: the clock);
//   --phase_file FILE: read before every call, its first word is the call's phase;
//   --accepted FILE: written at the end, "KEY CONFIG_DIGEST BLOB_DIGEST SIZE" per
//       Put that returned OK.
// Each client loops over: put (Blobs/Write of 1-64 KiB of random bytes, then
// Entries/Put of a new key chaos/RUN/cCLIENT/N with a small JSON config),
// lookup-own/-refused (a key it put, accepted or not: a hit must carry exactly the
// config and blob put, and the blob read back, read-after-hit, must be those bytes),
// lookup-never (must miss), read-own, stat-own, read-never (a digest nobody wrote).
// Outcomes: ok; miss (NOT_FOUND on a lookup, read or stat); unavail (UNAVAILABLE on
// a retry-safe call: lookup, read, stat); put-unav (UNAVAILABLE on a write or put:
// not accepted); error (any other code, DEADLINE_EXCEEDED included); and, apart,
// wrong content (bytes other than those put, or a hit where a miss is due). Prints
// per phase calls, outcomes and p50/p99/max latency; outcomes by op and gRPC code;
// misses of what was accepted and failures by phase. Exit 1 on errors or wrong content.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "pkg/cache/entry.h"
#include "pkg/client/grpc_store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/stream.h"

ABSL_FLAG(std::string, server, "", "ocicached (or proxy) HOST:PORT");
ABSL_FLAG(int, clients, 16, "concurrent clients");
ABSL_FLAG(int, duration, 60, "seconds after which no call starts");
ABSL_FLAG(int, max_calls, 5000, "calls per client at most");
ABSL_FLAG(int, grace, 45, "seconds after --duration for calls in flight; then they are HUNG");
ABSL_FLAG(int, think_ms, 20, "pause between a client's calls, in milliseconds");
ABSL_FLAG(int, call_timeout, 30, "deadline of unary calls, in seconds");
ABSL_FLAG(uint64_t, seed, 0, "random seed (0: from the clock)");
ABSL_FLAG(std::string, phase_file, "", "file naming the current phase");
ABSL_FLAG(std::string, accepted, "", "output: keys whose Put returned OK, with digests");

namespace {
using ocicache::cache::Entry;
using ocicache::oci::Digest;
using ocicache::client::Dial;
using Code = absl::StatusCode;

enum Op { kWrite, kPut, kLookupOwn, kLookupRefused, kReadAfterHit, kLookupNever, kReadOwn,
          kStatOwn, kReadNever, kOps };
const char* const kOpNames[] = {"write",        "put",      "lookup-own", "lookup-refused",
                                "read-after-hit", "lookup-never", "read-own", "stat-own",
                                "read-never"};
enum Outcome { kOk, kMiss, kUnavailable, kPutUnavailable, kError, kOutcomes };
const char* const kOutcomeNames[] = {"ok", "miss", "unavail", "put-unav", "error"};

struct Sample {
  absl::Time at;  // when the call started
  std::string phase;
  Op op;
  Code code;
  Outcome outcome;
  double ms;
  std::string message;  // of a failed call
};

struct Put {  // a key a client tried to put (its write succeeded)
  std::string key, config;
  uint64_t blob_seed = 0;  // the blob's bytes are BlobBytes(blob_seed, blob_size)
  int64_t blob_size = 0;
  Digest blob_digest;
  bool accepted = false;
};

std::string BlobBytes(uint64_t seed, int64_t size) {
  std::mt19937_64 gen(seed);
  std::string b(static_cast<size_t>(size), '\0');
  for (char& c : b) c = static_cast<char>(gen());
  return b;
}

std::string Phase(const std::string& file) {
  std::ifstream in(file);
  std::string word;
  return !file.empty() && (in >> word) ? word : "none";
}

// What a client did, read by Report; guarded by mu.
struct Client {
  absl::Mutex mu;
  std::vector<Sample> samples;
  std::vector<Put> puts;
  std::vector<std::string> wrong;
  bool in_call = false;  // the call in flight, for a report at the end of the grace
  Sample current;
};

class Runner {
 public:
  Runner(int id, Client& c, uint64_t seed, const std::string& run)
      : id_(id), c_(c), gen_(seed), run_(run) {
    ocicache::client::GrpcStoreOptions opts;
    opts.timeout = absl::Seconds(absl::GetFlag(FLAGS_call_timeout));
    std::string server = absl::GetFlag(FLAGS_server);
    store_ = std::make_unique<ocicache::client::GrpcStore>(Dial(server), server, opts);
  }

  void Run(absl::Time end) {
    int max_calls = absl::GetFlag(FLAGS_max_calls);
    absl::Duration think = absl::Milliseconds(absl::GetFlag(FLAGS_think_ms));
    while (calls_ < max_calls && absl::Now() < end) {
      int r = std::uniform_int_distribution<int>(0, 99)(gen_);
      if (r < 30 || puts_.empty()) DoPut();
      else if (r < 60) DoLookupOwn();
      else if (r < 70) DoLookupNever();
      else if (r < 85) DoReadOwn(kReadOwn, Pick());
      else if (r < 93) DoStatOwn();
      else DoReadNever();
      absl::SleepFor(think);
    }
  }

 private:
  // Runs one call, classifies and records it. `miss_ok`: NOT_FOUND is an answer.
  absl::Status Call(Op op, bool miss_ok, const std::function<absl::Status()>& fn) {
    Sample x{absl::Now(), Phase(absl::GetFlag(FLAGS_phase_file)), op, Code::kOk, kOk, 0, ""};
    c_.mu.Lock();
    c_.in_call = true;
    c_.current = x;
    c_.mu.Unlock();
    absl::Status s = fn();
    x.ms = absl::ToDoubleMilliseconds(absl::Now() - x.at), x.code = s.code();
    ++calls_;
    bool put = op == kWrite || op == kPut;
    if (s.code() == Code::kNotFound && miss_ok) x.outcome = kMiss;
    else if (s.code() == Code::kUnavailable) x.outcome = put ? kPutUnavailable : kUnavailable;
    else if (!s.ok()) x.outcome = kError;
    if (x.outcome != kOk && x.outcome != kMiss) x.message = std::string(s.message());
    absl::MutexLock l(&c_.mu);
    c_.in_call = false;
    c_.samples.push_back(std::move(x));
    return s;
  }

  void Wrong(const std::string& what) { absl::MutexLock l(&c_.mu); c_.wrong.push_back(what); }

  Put* Pick() { return &puts_[std::uniform_int_distribution<size_t>(0, puts_.size() - 1)(gen_)]; }

  void DoPut() {
    Put p;
    p.key = absl::StrCat("chaos/", run_, "/c", id_, "/", puts_.size());
    p.blob_seed = gen_();
    p.blob_size = std::uniform_int_distribution<int64_t>(1024, 64 * 1024)(gen_);
    p.config = absl::StrFormat(R"({"client":%d,"n":%d,"nonce":"%x"})", id_, puts_.size(), gen_());
    std::string blob = BlobBytes(p.blob_seed, p.blob_size);
    p.blob_digest = Digest::Of(blob);
    ocicache::oci::Descriptor desc;
    absl::Status s = Call(kWrite, false, [&] {
      ocicache::oci::StringSource src(blob);
      auto d = store_->WriteBlob(p.blob_digest, p.blob_size, src);
      if (d.ok()) desc = *d;
      return d.status();
    });
    if (!s.ok()) return;
    if (desc.digest != p.blob_digest || desc.size != p.blob_size)
      Wrong(absl::StrCat("write for ", p.key, ": ", desc.digest.str(), " size ", desc.size));
    Entry e;
    e.key = p.key, e.config = p.config, e.blobs = {desc};
    p.accepted = Call(kPut, false, [&] { return store_->Put(e); }).ok();
    c_.mu.Lock();
    c_.puts.push_back(p);
    c_.mu.Unlock();
    puts_.push_back(std::move(p));
  }

  void DoLookupOwn() {
    Put* p = Pick();  // its put accepted (lookup-own) or refused (lookup-refused)
    Entry e;
    absl::Status s = Call(p->accepted ? kLookupOwn : kLookupRefused, true, [&] {
      auto r = store_->Lookup(p->key, {});
      if (r.ok()) e = *std::move(r);
      return r.status();
    });
    if (!s.ok()) return;
    if (e.key != p->key || e.config != p->config || e.blobs.size() != 1 ||
        e.blobs[0].digest != p->blob_digest || e.blobs[0].size != p->blob_size) {
      return Wrong(absl::StrCat("lookup ", p->key, ": key ", e.key, ", config \"",
                                e.config.substr(0, 120), "\", ", e.blobs.size(), " blobs, first ",
                                e.blobs.empty() ? "-" : e.blobs[0].digest.str(), "; put \"",
                                p->config, "\", ", p->blob_digest.str()));
    }
    DoReadOwn(kReadAfterHit, p);
  }

  void DoReadOwn(Op op, Put* p) {
    std::string got;
    absl::Status s = Call(op, true, [&] {
      got.clear();
      ocicache::oci::StringSink sink(&got);
      return store_->ReadBlob(p->blob_digest, 0, sink);
    });
    if (s.ok() && got != BlobBytes(p->blob_seed, p->blob_size)) {
      Wrong(absl::StrCat(kOpNames[op], " ", p->blob_digest.str(), " of ", p->key, ": ", got.size(),
                         " bytes that differ from the ", p->blob_size, " put"));
    }
  }

  void DoStatOwn() {
    Put* p = Pick();
    int64_t size = -1;
    absl::Status s = Call(kStatOwn, true, [&] {
      auto r = store_->StatBlob(p->blob_digest);
      if (r.ok()) size = *r;
      return r.status();
    });
    if (s.ok() && size != p->blob_size) {
      Wrong(absl::StrCat("stat ", p->blob_digest.str(), ": size ", size, ", put ", p->blob_size));
    }
  }

  void DoLookupNever() {
    std::string key = absl::StrCat("chaos/", run_, "/never/c", id_, "/", gen_());
    if (Call(kLookupNever, true, [&] { return store_->Lookup(key, {}).status(); }).ok())
      Wrong(absl::StrCat("lookup of never-put ", key, " hit"));
  }

  void DoReadNever() {
    Digest d = Digest::Of(absl::StrCat("chaos never written ", run_, " ", gen_()));
    ocicache::oci::NullSink sink;
    if (Call(kReadNever, true, [&] { return store_->ReadBlob(d, 0, sink); }).ok())
      Wrong(absl::StrCat("read of never-written ", d.str(), " succeeded"));
  }

  int id_;
  Client& c_;
  std::mt19937_64 gen_;
  std::string run_;
  std::unique_ptr<ocicache::client::GrpcStore> store_;
  std::vector<Put> puts_;
  int calls_ = 0;
};

// p50/p99/max of the samples' latencies.
std::string Latency(const std::vector<const Sample*>& v) {
  std::vector<double> ms;
  for (const Sample* s : v) ms.push_back(s->ms);
  if (ms.empty()) return absl::StrFormat("%8s %8s %8s", "-", "-", "-");
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[static_cast<size_t>(q * (ms.size() - 1) + 0.5)]; };
  return absl::StrFormat("%8.1f %8.1f %8.1f", at(0.5), at(0.99), ms.back());
}

// Prints the figures and writes --accepted; returns the exit status. With `hung`,
// the calls still in flight count as errors.
int Report(std::vector<std::unique_ptr<Client>>& clients, absl::Duration elapsed, bool hung) {
  std::vector<Sample> all;
  std::vector<Put> puts;
  std::vector<std::string> wrong;
  int hung_calls = 0;
  for (auto& c : clients) {
    absl::MutexLock l(&c->mu);
    all.insert(all.end(), c->samples.begin(), c->samples.end());
    puts.insert(puts.end(), c->puts.begin(), c->puts.end());
    wrong.insert(wrong.end(), c->wrong.begin(), c->wrong.end());
    if (hung && c->in_call) {
      ++hung_calls;
      const Sample& x = c->current;
      all.push_back({x.at, x.phase, x.op, Code::kDeadlineExceeded, kError,
                     absl::ToDoubleMilliseconds(absl::Now() - x.at), "HUNG: still running"});
    }
  }
  // Phases in the order they began.
  std::map<std::string, absl::Time> began;
  for (const Sample& s : all) {
    auto it = began.emplace(s.phase, s.at).first;
    it->second = std::min(it->second, s.at);
  }
  std::map<std::pair<absl::Time, std::string>, std::vector<const Sample*>> by_phase;
  std::vector<const Sample*> every, by_op[kOps];
  std::map<Code, int> codes;
  std::map<std::pair<int, Code>, int> by_code;
  // By phase, outcome, op and code: how many, the first message.
  std::map<std::tuple<absl::Time, std::string, int, int, Code>, std::pair<int, std::string>> failed;
  for (const Sample& s : all) {
    by_phase[{began[s.phase], s.phase}].push_back(&s);
    every.push_back(&s);
    by_op[s.op].push_back(&s);
    ++codes[s.code];
    ++by_code[{s.op, s.code}];
    bool due = s.outcome == kMiss && (s.op == kLookupNever || s.op == kReadNever ||
                                      s.op == kLookupRefused);
    if (s.outcome == kOk || due) continue;  // listed: misses of what was put, failures
    auto& f = failed[{began[s.phase], s.phase, s.outcome, s.op, s.code}];
    if (f.first++ == 0) f.second = s.message;
  }
  absl::PrintF("chaos_load: %d clients, %.1f s, %d calls%s\n", clients.size(),
               absl::ToDoubleSeconds(elapsed), all.size(),
               hung ? absl::StrCat(", ", hung_calls, " HUNG") : "");
  absl::PrintF("%-16s %7s %7s %6s %7s %8s %6s %8s %8s %8s\n", "phase", "calls", "ok", "miss",
               "unavail", "put-unav", "error", "p50ms", "p99ms", "maxms");
  int n[kOutcomes] = {};
  auto row = [&](const std::string& name, const std::vector<const Sample*>& v) {
    std::fill(n, n + kOutcomes, 0);
    for (const Sample* s : v) ++n[s->outcome];
    absl::PrintF("%-16s %7d %7d %6d %7d %8d %6d %s\n", name, v.size(), n[kOk], n[kMiss],
                 n[kUnavailable], n[kPutUnavailable], n[kError], Latency(v));
  };
  for (auto& [k, v] : by_phase) row(k.second, v);
  row("total", every);
  const int errors = n[kError];

  absl::PrintF("\noutcomes by op and gRPC code, latency in all phases:\n%-15s", "op");
  for (auto& [code, _] : codes) absl::PrintF(" %12s", absl::StatusCodeToString(code));
  absl::PrintF(" %8s %8s %8s\n", "p50ms", "p99ms", "maxms");
  for (int op = 0; op < kOps; ++op) {
    absl::PrintF("%-15s", kOpNames[op]);
    for (auto& [code, _] : codes) absl::PrintF(" %12d", by_code[{op, code}]);
    absl::PrintF(" %s\n", Latency(by_op[op]));
  }

  absl::PrintF("\nmisses of own keys, failures (phase, outcome, op, code, count, a message):\n");
  for (auto& [k, f] : failed) {
    absl::PrintF("  %-16s %-8s %-14s %-19s %5d  %s\n", std::get<1>(k),
                 kOutcomeNames[std::get<2>(k)], kOpNames[std::get<3>(k)],
                 absl::StatusCodeToString(std::get<4>(k)), f.first, f.second.substr(0, 300));
  }

  int accepted = 0;
  std::string out;
  for (const Put& p : puts) {
    if (!p.accepted) continue;
    ++accepted;
    absl::StrAppend(&out, p.key, " ", Digest::Of(p.config).str(), " ", p.blob_digest.str(), " ",
                    p.blob_size, "\n");
  }
  std::string path = absl::GetFlag(FLAGS_accepted);
  if (!path.empty()) std::ofstream(path, std::ios::trunc) << out;
  int put_unavailable = by_code[{kPut, Code::kUnavailable}];
  absl::PrintF("\nputs (of written blobs) %d: accepted %d, UNAVAILABLE %d, other errors %d\n",
               puts.size(), accepted, put_unavailable, puts.size() - accepted - put_unavailable);
  absl::PrintF("wrong content: %d\n", wrong.size());
  for (size_t i = 0; i < wrong.size() && i < 10; ++i) absl::PrintF("  WRONG %s\n", wrong[i]);
  absl::PrintF("errors: %d\n", errors);
  std::fflush(stdout);
  return errors > 0 || !wrong.empty() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  int n = absl::GetFlag(FLAGS_clients);
  if (absl::GetFlag(FLAGS_server).empty() || n < 1 || n > 256 ||
      std::min({absl::GetFlag(FLAGS_duration), absl::GetFlag(FLAGS_max_calls),
                absl::GetFlag(FLAGS_grace)}) < 1) {
    std::fprintf(stderr, "chaos_load: --server; --clients 1-256; --duration, --max_calls, "
                         "--grace at least 1\n");
    return 2;
  }
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  std::string run = absl::StrFormat("%x", seed & 0xffffffffffULL);
  absl::Time start = absl::Now();
  absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_duration));
  std::atomic<int> done{0};
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    Client* c = clients.emplace_back(std::make_unique<Client>()).get();
    threads.emplace_back([&, i, c] {
      Runner(i, *c, seed + 7919 * (i + 1), run).Run(end);
      done.fetch_add(1);
    });
  }
  absl::Time limit = end + absl::Seconds(absl::GetFlag(FLAGS_grace));
  while (done.load() < n && absl::Now() < limit) absl::SleepFor(absl::Milliseconds(100));
  if (done.load() < n) {  // calls that do not end: report them and leave without joining
    Report(clients, absl::Now() - start, /*hung=*/true);
    std::_Exit(1);
  }
  for (auto& t : threads) t.join();
  return Report(clients, absl::Now() - start, /*hung=*/false);
}
