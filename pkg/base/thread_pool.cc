#include "pkg/base/thread_pool.h"

namespace ocicache::base {

ThreadPool& SharedThreadPool(int threads) {
  static ThreadPool* pool = new ThreadPool(threads, 0);
  return *pool;
}

}  // namespace ocicache::base
