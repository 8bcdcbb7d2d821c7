#include "pkg/base/call_scope.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace ocicache::base {
namespace {
thread_local const CallScope* current = nullptr;
}  // namespace

CallScope::CallScope(CallLimits limits)
    : outer_(current),
      deadline_(limits.deadline),
      cap_(limits.cap),
      check_(std::move(limits.check)),
      local_only_(std::move(limits.local_only)) {
  if (outer_ != nullptr) {
    deadline_ = std::min(deadline_, outer_->deadline_);
    cap_ = std::min(cap_, outer_->cap_);
    if (local_only_ == nullptr) local_only_ = outer_->local_only_;
  }
  current = this;
}

CallScope::~CallScope() { current = outer_; }

const CallScope* CallScope::Current() { return current; }

absl::Status CallScope::Check() const {
  for (const CallScope* s = this; s != nullptr; s = s->outer_) {
    if (s->check_) {
      if (absl::Status st = s->check_(); !st.ok()) return st;
    }
  }
  if (absl::Now() >= end()) return TimeUp();
  return absl::OkStatus();
}

absl::Status CallScope::TimeUp() const {
  if (deadline_ <= cap_) {
    return absl::DeadlineExceededError("the caller's deadline passed");
  }
  return absl::UnavailableError("no answer within the server's limit for backend calls");
}

CallLimits CallScope::Capture() {
  CallLimits l;
  const CallScope* s = current;
  if (s == nullptr) return l;
  l.deadline = s->deadline_;
  l.cap = s->cap_;
  l.local_only = s->local_only_;
  // Copies of every check in the chain, so the captured limits outlive nothing.
  std::vector<std::function<absl::Status()>> checks;
  for (; s != nullptr; s = s->outer_) {
    if (s->check_) checks.push_back(s->check_);
  }
  if (!checks.empty()) {
    l.check = [checks = std::move(checks)]() -> absl::Status {
      for (const auto& c : checks) {
        if (absl::Status st = c(); !st.ok()) return st;
      }
      return absl::OkStatus();
    };
  }
  return l;
}

bool LocalOnly() {
  const CallScope* s = current;
  if (s == nullptr || s->local_only_ == nullptr) return false;
  s->local_only_->store(true, std::memory_order_relaxed);
  return true;
}

std::function<void()> WithCurrentLimits(std::function<void()> fn) {
  if (CallScope::Current() == nullptr) return fn;
  return [limits = CallScope::Capture(), fn = std::move(fn)]() mutable {
    CallScope scope(limits);
    fn();
  };
}

}  // namespace ocicache::base
