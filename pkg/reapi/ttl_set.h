// A bounded set of recently confirmed facts ("this blob exists", "this action
// result is complete"), each valid for a time-to-live. Only positive facts go
// in: a blob that is absent now may be uploaded a moment later, so absence is
// always asked again. When full, the oldest half is dropped. Thread-safe.
#ifndef OCICACHE_PKG_REAPI_TTL_SET_H_
#define OCICACHE_PKG_REAPI_TTL_SET_H_

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ocicache::reapi {

class TtlSet {
 public:
  // max_entries 0 or ttl <= 0: remembers nothing.
  TtlSet(size_t max_entries, absl::Duration ttl) : max_(max_entries), ttl_(ttl) {}

  // Whether `key` was added less than ttl ago (as of `now`).
  bool Contains(absl::string_view key, absl::Time now = absl::Now()) const;
  void Add(absl::string_view key, absl::Time now = absl::Now());
  void Remove(absl::string_view key);
  size_t size() const;

 private:
  void EvictLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_;
  const absl::Duration ttl_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> added_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ocicache::reapi

#endif  // OCICACHE_PKG_REAPI_TTL_SET_H_
