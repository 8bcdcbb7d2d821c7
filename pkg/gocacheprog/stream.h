// Reading the request stream: lines of bounded length for requests, and put
// bodies (one line holding a JSON string of base64) decoded while streaming, so a
// body of any size never sits in memory as text.
#ifndef OCICACHE_PKG_GOCACHEPROG_STREAM_H_
#define OCICACHE_PKG_GOCACHEPROG_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pkg/gocacheprog/protocol.h"
#include "pkg/oci/stream.h"

namespace ocicache::gocacheprog {

// Where requests come from. Read returns what is available now (at least one
// byte, blocking until then), 0 at end of stream. It must never wait for more
// than one byte: go waits for our answer before it writes more.
class Input {
 public:
  virtual ~Input() = default;
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;
};

// A file descriptor (stdin). Not owned.
class FdInput : public Input {
 public:
  explicit FdInput(int fd) : fd_(fd) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  int fd_;
};

// A std::istream (tests): one blocking get(), then what readsome() has.
class IstreamInput : public Input {
 public:
  explicit IstreamInput(std::istream* in) : in_(in) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  std::istream* in_;
};

class LineReader {
 public:
  explicit LineReader(Input* in, size_t buffer_bytes = 256 << 10);

  // Skips blank lines (whitespace only). Returns the next line's first byte
  // without consuming it, or -1 at end of stream.
  absl::StatusOr<int> PeekLine();

  // Reads one line without its '\n' (a trailing '\r' is kept; JSON ignores it).
  // At most max_bytes are kept: the rest of a longer line is read and dropped,
  // and *overlong is set. Returns false at end of stream when nothing was read.
  // A last line without '\n' is returned as a line.
  absl::StatusOr<bool> ReadLine(std::string* line, size_t max_bytes, bool* overlong);

  // Bytes of the current line, up to n, without consuming its '\n'. Empty at the
  // end of the line or of the stream (see AtEndOfLine / AtEof).
  absl::StatusOr<absl::string_view> ReadInLine(size_t n);
  // Consumes the rest of the current line and its '\n'.
  absl::Status SkipLine();
  // Whether the next byte is '\n' (after ReadInLine returned empty).
  bool AtEndOfLine() const { return pos_ < end_ && buf_[pos_] == '\n'; }
  // Whether the stream has ended (after ReadInLine returned empty).
  bool AtEof() const { return eof_ && pos_ == end_; }
  // Total bytes consumed, for messages.
  int64_t offset() const { return consumed_; }

 private:
  // Makes at least one byte available unless at end of stream.
  absl::Status Fill();

  Input* in_;
  std::string buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  int64_t consumed_ = 0;
};

// A put's body line as a ByteSource: `"` base64 `"` then the end of the line.
// Read yields decoded bytes; errors (InvalidArgument) for a line that is not a
// base64 JSON string, or whose decoded size differs from the declared one.
// Whatever happens, call Finish() afterwards: it consumes the rest of the line so
// the next request is read from its start, and reports the first error.
class BodySource : public oci::ByteSource {
 public:
  BodySource(LineReader* reader, int64_t size) : reader_(reader), size_(size) {}

  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  // Drains the line. OK only if the whole line was a well-formed body of exactly
  // the declared size.
  absl::Status Finish();
  // The stream ended inside the body (the request stream is unusable).
  bool truncated() const { return truncated_; }
  int64_t decoded() const { return decoder_.decoded(); }

 private:
  // Decodes more of the line into pending_. Sets done_ at the closing quote.
  absl::Status Step();
  absl::Status Fail(absl::Status s);

  LineReader* reader_;
  const int64_t size_;
  enum State { kStart, kInString, kAfterString } state_ = kStart;
  Base64StreamDecoder decoder_;
  std::string pending_;  // decoded, not yet returned
  size_t pending_pos_ = 0;
  absl::Status error_;
  bool truncated_ = false;
  bool finished_ = false;
};

}  // namespace ocicache::gocacheprog

#endif  // OCICACHE_PKG_GOCACHEPROG_STREAM_H_
