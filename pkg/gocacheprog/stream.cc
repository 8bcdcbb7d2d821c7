#include "pkg/gocacheprog/stream.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace ocicache::gocacheprog {
namespace {

constexpr size_t kChunk = 64 << 10;

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string Shown(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  if (absl::ascii_isprint(c)) return std::string(1, ch);
  return absl::StrCat("\\x", absl::Hex(c, absl::kZeroPad2));
}

}  // namespace

absl::StatusOr<size_t> FdInput::Read(char* buf, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd_, buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno == EINTR) continue;
    return absl::UnavailableError(absl::StrCat("read stdin: ", std::strerror(errno)));
  }
}

absl::StatusOr<size_t> IstreamInput::Read(char* buf, size_t n) {
  if (n == 0) return 0;
  int c = in_->get();
  if (c == std::char_traits<char>::eof()) return 0;
  buf[0] = static_cast<char>(c);
  std::streamsize more = in_->readsome(buf + 1, static_cast<std::streamsize>(n - 1));
  return 1 + static_cast<size_t>(std::max<std::streamsize>(more, 0));
}

LineReader::LineReader(Input* in, size_t buffer_bytes) : in_(in), buf_(buffer_bytes, '\0') {}

absl::Status LineReader::Fill() {
  if (pos_ < end_ || eof_) return absl::OkStatus();
  pos_ = end_ = 0;
  auto n = in_->Read(buf_.data(), buf_.size());
  if (!n.ok()) return n.status();
  if (*n == 0) {
    eof_ = true;
  } else {
    end_ = *n;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LineReader::PeekLine() {
  for (;;) {
    if (absl::Status s = Fill(); !s.ok()) return s;
    if (pos_ == end_) return -1;
    char c = buf_[pos_];
    if (c == '\n' || IsBlank(c)) {
      ++pos_;
      ++consumed_;
      continue;
    }
    return static_cast<unsigned char>(c);
  }
}

absl::StatusOr<bool> LineReader::ReadLine(std::string* line, size_t max_bytes, bool* overlong) {
  line->clear();
  *overlong = false;
  bool any = false;
  for (;;) {
    if (absl::Status s = Fill(); !s.ok()) return s;
    if (pos_ == end_) return any;
    any = true;
    const char* start = buf_.data() + pos_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', end_ - pos_));
    size_t len = nl != nullptr ? static_cast<size_t>(nl - start) : end_ - pos_;
    size_t keep = std::min(len, max_bytes - std::min(max_bytes, line->size()));
    line->append(start, keep);
    if (keep < len) *overlong = true;
    pos_ += len;
    consumed_ += static_cast<int64_t>(len);
    if (nl != nullptr) {
      ++pos_;
      ++consumed_;
      return true;
    }
  }
}

absl::StatusOr<absl::string_view> LineReader::ReadInLine(size_t n) {
  if (absl::Status s = Fill(); !s.ok()) return s;
  if (pos_ == end_) return absl::string_view();
  const char* start = buf_.data() + pos_;
  size_t avail = std::min(n, end_ - pos_);
  const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
  size_t len = nl != nullptr ? static_cast<size_t>(nl - start) : avail;
  pos_ += len;
  consumed_ += static_cast<int64_t>(len);
  return absl::string_view(start, len);
}

absl::Status LineReader::SkipLine() {
  for (;;) {
    auto chunk = ReadInLine(buf_.size());
    if (!chunk.ok()) return chunk.status();
    if (!chunk->empty()) continue;
    if (AtEndOfLine()) {
      ++pos_;
      ++consumed_;
    }
    return absl::OkStatus();
  }
}

// ---------------------------------------------------------------------------

absl::Status BodySource::Fail(absl::Status s) {
  if (error_.ok()) error_ = std::move(s);
  return error_;
}

absl::Status BodySource::Step() {
  auto got = reader_->ReadInLine(kChunk);
  if (!got.ok()) {
    truncated_ = true;
    return Fail(got.status());
  }
  absl::string_view chunk = *got;
  if (chunk.empty()) {
    // End of the line or of the stream before the body was complete.
    if (state_ == kAfterString) return absl::OkStatus();
    if (reader_->AtEof()) {
      truncated_ = true;
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "the request stream ended inside a put body (", decoder_.decoded(), " of ", size_,
          " bytes)")));
    }
    if (state_ == kStart) {
      return Fail(absl::InvalidArgumentError("put body line is empty"));
    }
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "put body line ends without its closing quote (", decoder_.decoded(), " of ", size_,
        " bytes)")));
  }
  size_t i = 0;
  while (i < chunk.size() && error_.ok()) {
    switch (state_) {
      case kStart:
        if (IsBlank(chunk[i])) {
          ++i;
        } else if (chunk[i] == '"') {
          state_ = kInString;
          ++i;
        } else {
          return Fail(absl::InvalidArgumentError(absl::StrCat(
              "put body is not a JSON string of base64 (it starts with '", Shown(chunk[i]), "')")));
        }
        break;
      case kInString: {
        size_t q = chunk.find('"', i);
        absl::string_view text = chunk.substr(i, q == absl::string_view::npos ? q : q - i);
        if (absl::Status s = decoder_.Feed(text, &pending_); !s.ok()) {
          return Fail(absl::InvalidArgumentError(absl::StrCat("put body: ", s.message())));
        }
        if (decoder_.decoded() > size_) {
          return Fail(absl::InvalidArgumentError(
              absl::StrCat("put body is longer than BodySize ", size_)));
        }
        if (q == absl::string_view::npos) {
          i = chunk.size();
          break;
        }
        i = q + 1;
        state_ = kAfterString;
        if (absl::Status s = decoder_.Finish(); !s.ok()) {
          return Fail(absl::InvalidArgumentError(absl::StrCat("put body: ", s.message())));
        }
        if (decoder_.decoded() != size_) {
          return Fail(absl::InvalidArgumentError(absl::StrCat(
              "put body has ", decoder_.decoded(), " bytes, BodySize says ", size_)));
        }
        break;
      }
      case kAfterString:
        if (!IsBlank(chunk[i])) {
          return Fail(absl::InvalidArgumentError(
              absl::StrCat("unexpected '", Shown(chunk[i]), "' after the put body")));
        }
        ++i;
        break;
    }
  }
  return error_;
}

absl::StatusOr<size_t> BodySource::Read(char* buf, size_t n) {
  while (pending_pos_ == pending_.size()) {
    if (!error_.ok()) return error_;
    if (state_ == kAfterString) return 0;
    pending_.clear();
    pending_pos_ = 0;
    if (absl::Status s = Step(); !s.ok()) return s;
  }
  size_t k = std::min(n, pending_.size() - pending_pos_);
  std::memcpy(buf, pending_.data() + pending_pos_, k);
  pending_pos_ += k;
  return k;
}

absl::Status BodySource::Finish() {
  if (finished_) return error_;
  finished_ = true;
  // Decode (and check) whatever the consumer did not read, to the end of the line.
  while (error_.ok()) {
    pending_.clear();
    pending_pos_ = 0;
    if (state_ == kAfterString && (reader_->AtEndOfLine() || reader_->AtEof())) break;
    // After the closing quote only blanks may follow; Step checks them.
    if (!Step().ok()) break;
  }
  pending_.clear();
  if (truncated_) return error_;
  // Skip what is left of the line (after an error) and its newline.
  if (absl::Status s = reader_->SkipLine(); !s.ok()) {
    truncated_ = true;
    return Fail(s);
  }
  return error_;
}

}  // namespace ocicache::gocacheprog
