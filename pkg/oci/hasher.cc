#include "pkg/oci/hasher.h"

namespace ocicache::oci {

PipelinedSha256::PipelinedSha256(size_t max_in_flight)
    : max_in_flight_(std::max<size_t>(max_in_flight, 2 * kBatch)), worker_([this] { Run(); }) {
  batch_.reserve(kBatch);
}

PipelinedSha256::~PipelinedSha256() {
  if (!finished_) (void)Finish();
}

void PipelinedSha256::Update(absl::string_view data) {
  size_ += static_cast<int64_t>(data.size());
  while (!data.empty()) {
    size_t n = std::min(data.size(), kBatch - batch_.size());
    batch_.append(data.data(), n);
    data.remove_prefix(n);
    if (batch_.size() == kBatch) Flush();
  }
}

void PipelinedSha256::Flush() {
  if (batch_.empty()) return;
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(this, &PipelinedSha256::HasRoomLocked));
  queued_bytes_ += batch_.size();
  queue_.push_back(std::move(batch_));
  batch_ = std::string();
  batch_.reserve(kBatch);
}

void PipelinedSha256::Run() {
  for (;;) {
    std::string work;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &PipelinedSha256::HasWorkLocked));
      if (queue_.empty()) return;  // done_ and drained
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    sha_.Update(work);
    absl::MutexLock l(&mu_);
    queued_bytes_ -= work.size();
  }
}

Digest PipelinedSha256::Finish() {
  Flush();
  {
    absl::MutexLock l(&mu_);
    done_ = true;
  }
  worker_.join();
  finished_ = true;
  return sha_.Finish();
}

}  // namespace ocicache::oci
