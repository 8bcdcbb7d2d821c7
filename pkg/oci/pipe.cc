#include "pkg/oci/pipe.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace ocicache::oci {

absl::Status Transfer(const std::function<absl::Status(ByteSink&)>& producer,
                      const std::function<absl::Status(ByteSource&)>& consumer,
                      size_t buffer_bytes) {
  BoundedPipe pipe(std::max<size_t>(buffer_bytes, 64 << 10));
  absl::Status produced;
  std::thread t([&] {
    PipeSink sink(&pipe);
    produced = producer(sink);
    pipe.CloseWrite(produced.ok() ? absl::OkStatus() : produced);
  });
  PipeSource source(&pipe);
  absl::Status consumed = consumer(source);
  pipe.CloseRead();
  t.join();
  if (!produced.ok() && !absl::IsCancelled(produced)) return produced;
  // A consumer that succeeded without reading everything (the destination had
  // the blob already) cancels the producer: that is success.
  return consumed;
}

}  // namespace ocicache::oci
