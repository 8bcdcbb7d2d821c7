#include "pkg/registry/pacer.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace ocicache::registry {
namespace {

// The payload registry::IsTemporary reads (errors.cc; pacer_test checks that
// the budget error is permanent), and the one that marks the budget error.
constexpr char kTemporaryPayload[] = "ocicache.registry/temporary";
constexpr char kBudgetPayload[] = "ocicache.registry/budget-spent";

}  // namespace

RequestPacer::Clock RequestPacer::RealClock() {
  return Clock{[] { return absl::Now(); }, [](absl::Duration d) { absl::SleepFor(d); }};
}

RequestPacer::RequestPacer(PacerOptions opts, Clock clock)
    : opts_(opts),
      clock_(std::move(clock)),
      interval_(opts.requests_per_second > 0 ? absl::Seconds(1.0 / opts.requests_per_second)
                                             : absl::ZeroDuration()) {}

absl::Status RequestPacer::Admit(absl::Time until) {
  absl::Time now, turn;
  {
    absl::MutexLock l(&mu_);
    if (opts_.budget > 0 && admitted_ >= opts_.budget) {
      absl::Status s = absl::ResourceExhaustedError(
          absl::StrCat("the registry request budget of ", opts_.budget,
                       " is spent (--registry-budget): what was done stays done; run the "
                       "command again to go on"));
      s.SetPayload(kTemporaryPayload, absl::Cord("0"));
      s.SetPayload(kBudgetPayload, absl::Cord("1"));
      return s;
    }
    now = clock_.now();
    turn = std::max(now, next_);
    if (turn > until) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the registry request rate limit (", opts_.requests_per_second,
          "/s, --registry-rate) leaves no turn before the call's deadline"));
    }
    next_ = turn + interval_;
    ++admitted_;
  }
  if (turn > now) clock_.sleep(turn - now);
  return absl::OkStatus();
}

int64_t RequestPacer::admitted() const {
  absl::MutexLock l(&mu_);
  return admitted_;
}

bool IsBudgetSpent(const absl::Status& s) {
  return !s.ok() && s.GetPayload(kBudgetPayload).has_value();
}

}  // namespace ocicache::registry
