// Streams bytes from a producer (something that writes into a ByteSink, like a
// blob download) to a consumer (something that reads a ByteSource, like an
// upload) through a bounded buffer, so copies between stores never hold a whole
// blob in memory.
#ifndef OCICACHE_PKG_OCI_PIPE_H_
#define OCICACHE_PKG_OCI_PIPE_H_

#include <cstddef>
#include <functional>

#include "absl/status/status.h"
#include "pkg/oci/stream.h"

namespace ocicache::oci {

// Runs producer in a new thread and consumer in this one. Returns the first
// error: the producer's if both failed, since the consumer then only saw a cut
// stream. When the consumer stops early the producer's writes fail with
// Cancelled and the producer is expected to return; if the consumer succeeded
// that way (e.g. the destination already had the blob), the result is OK.
absl::Status Transfer(const std::function<absl::Status(ByteSink&)>& producer,
                      const std::function<absl::Status(ByteSource&)>& consumer,
                      size_t buffer_bytes = 4 << 20);

}  // namespace ocicache::oci

#endif  // OCICACHE_PKG_OCI_PIPE_H_
