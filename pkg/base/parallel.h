// A bounded parallel loop: the server's batch requests (BatchLookup, Stat,
// FindMissingBlobs, the REAPI completeness check) and the tiered store's copies
// of a hit's blobs into the local tier.
#ifndef OCICACHE_PKG_BASE_PARALLEL_H_
#define OCICACHE_PKG_BASE_PARALLEL_H_

#include <cstddef>
#include <functional>

#include "pkg/base/thread_pool.h"

namespace ocicache::base {

// Calls fn(i) for each i in [0, n), on this thread and on up to max_threads - 1
// helpers from `pool` (SharedThreadPool() when null), under this thread's
// call limits (base::CallScope). Returns when every fn(i) has returned. The
// caller works too, so the loop finishes even when no helper is free; a helper
// that starts after the caller ran out of work does nothing.
void ParallelFor(size_t n, size_t max_threads, const std::function<void(size_t)>& fn,
                 ThreadPool* pool = nullptr);

}  // namespace ocicache::base

#endif  // OCICACHE_PKG_BASE_PARALLEL_H_
