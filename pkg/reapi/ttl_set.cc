#include "pkg/reapi/ttl_set.h"

#include <algorithm>
#include <vector>

namespace ocicache::reapi {

bool TtlSet::Contains(absl::string_view key, absl::Time now) const {
  absl::MutexLock l(&mu_);
  auto it = added_.find(key);
  return it != added_.end() && now - it->second < ttl_;
}

void TtlSet::Add(absl::string_view key, absl::Time now) {
  if (max_ == 0 || ttl_ <= absl::ZeroDuration()) return;
  absl::MutexLock l(&mu_);
  auto it = added_.find(key);
  if (it != added_.end()) {
    it->second = now;
    return;
  }
  if (added_.size() >= max_) EvictLocked(now);
  added_.emplace(std::string(key), now);
}

void TtlSet::Remove(absl::string_view key) {
  absl::MutexLock l(&mu_);
  added_.erase(key);
}

size_t TtlSet::size() const {
  absl::MutexLock l(&mu_);
  return added_.size();
}

void TtlSet::EvictLocked(absl::Time now) {
  // Expired entries first; if that is not enough, the older half.
  for (auto it = added_.begin(); it != added_.end();) {
    if (now - it->second >= ttl_) {
      added_.erase(it++);
    } else {
      ++it;
    }
  }
  if (added_.size() < max_) return;
  std::vector<absl::Time> times;
  times.reserve(added_.size());
  for (const auto& [k, t] : added_) times.push_back(t);
  auto mid = times.begin() + times.size() / 2;
  std::nth_element(times.begin(), mid, times.end());
  absl::Time cutoff = *mid;
  for (auto it = added_.begin(); it != added_.end();) {
    if (it->second <= cutoff) {
      added_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace ocicache::reapi
