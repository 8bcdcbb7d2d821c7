// A bounded parallel loop for batch requests (BatchLookup, Stat).
#ifndef OCICACHE_PKG_RPC_PARALLEL_H_
#define OCICACHE_PKG_RPC_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "pkg/base/call_scope.h"

namespace ocicache::rpc {

// Calls fn(i) for i in [0, n) on at most max_threads threads (this one included).
// The other threads work under this thread's call limits (base::CallScope).
inline void ParallelFor(size_t n, size_t max_threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::function<void()> worker = base::WithCurrentLimits([&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  });
  size_t k = std::min(n, std::max<size_t>(max_threads, 1));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < k; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}

}  // namespace ocicache::rpc

#endif  // OCICACHE_PKG_RPC_PARALLEL_H_
