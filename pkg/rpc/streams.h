// The byte-stream adapters every blob RPC shares (ocicache.v1 Blobs and REAPI
// ByteStream): a store's ByteSink that sends server-streaming response chunks,
// and a ByteSource over a client-streaming upload. Templates over the message
// types, which agree on the fields used: responses have `data`; write requests
// have `data`, `write_offset` and `finish_write`.
#ifndef OCICACHE_PKG_RPC_STREAMS_H_
#define OCICACHE_PKG_RPC_STREAMS_H_

#include <grpcpp/support/sync_stream.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "pkg/oci/stream.h"

namespace ocicache::rpc {

// Sends what the store streams as Response chunks of at most chunk_bytes,
// stopping after `limit` bytes (0: no limit; Write then returns CANCELLED, see
// limit_reached()) or when the client is gone (client_gone()). One buffer for
// the whole stream: a fresh chunk-sized string per message cost copies and page
// faults.
template <typename Response>
class ChunkSink : public oci::ByteSink {
 public:
  ChunkSink(grpc::ServerWriterInterface<Response>* writer, size_t chunk_bytes, int64_t limit)
      : writer_(writer), chunk_(chunk_bytes), left_(limit > 0 ? limit : -1),
        buf_(msg_.mutable_data()) {
    buf_->reserve(chunk_);
  }

  absl::Status Write(absl::string_view data) override {
    if (left_ >= 0 && static_cast<int64_t>(data.size()) >= left_) {
      data = data.substr(0, static_cast<size_t>(left_));
      limit_reached_ = true;
    }
    if (left_ >= 0) left_ -= static_cast<int64_t>(data.size());
    while (!data.empty()) {
      size_t take = std::min(chunk_ - buf_->size(), data.size());
      buf_->append(data.data(), take);
      data.remove_prefix(take);
      if (buf_->size() == chunk_) {
        if (absl::Status s = Send(); !s.ok()) return s;
      }
    }
    if (limit_reached_) return absl::CancelledError("read limit reached");
    return absl::OkStatus();
  }

  // Sends what is buffered.
  absl::Status Flush() { return buf_->empty() ? absl::OkStatus() : Send(); }

  bool limit_reached() const { return limit_reached_; }
  bool client_gone() const { return client_gone_; }

  // Says that the receiver of this stream checks the digest of what it gets
  // (ocicache.v1 Blobs.Read's contract): a store streaming bytes it does not
  // keep (a registry's, passed through) then leaves the hash to that one end
  // instead of both ends hashing in series. A store that keeps the bytes (a
  // local tier filling) still verifies them before it commits them.
  void set_receiver_verifies(bool v) { receiver_verifies_ = v; }
  bool ChecksEveryByte() const override { return receiver_verifies_; }
  int64_t sent() const { return sent_; }

 private:
  absl::Status Send() {
    if (client_gone_) return absl::CancelledError("the client went away");
    if (!writer_->Write(msg_)) {
      client_gone_ = true;
      return absl::CancelledError("the client went away");
    }
    sent_ += static_cast<int64_t>(buf_->size());
    buf_->clear();  // keeps the capacity
    return absl::OkStatus();
  }

  grpc::ServerWriterInterface<Response>* writer_;
  const size_t chunk_;
  int64_t left_;  // -1: no limit
  Response msg_;
  std::string* buf_;  // msg_'s data
  bool limit_reached_ = false;
  bool client_gone_ = false;
  bool receiver_verifies_ = false;
  int64_t sent_ = 0;
};

// The data of an upload stream, starting with `first`, as a ByteSource: checks
// that every message's write_offset follows the data before it (counted from
// `first_offset`), that the data stays within `size` (what `size_source` says,
// e.g. "the declared size"; -1: unknown) and `max_bytes`, hands each message's
// data to `on_data` (e.g. staging for a resume) before the store sees it, stops
// at finish_write, and fails (so the store commits nothing) when the stream
// ends without it. Messages' buffers are taken, not copied.
template <typename Request>
class UploadSource : public oci::ByteSource {
 public:
  struct Options {
    int64_t first_offset = 0;
    int64_t size = -1;
    std::string size_source = "the declared size";
    int64_t max_bytes = INT64_MAX;
    std::function<absl::Status(absl::string_view)> on_data;
  };

  UploadSource(grpc::ServerReaderInterface<Request>* reader, const Request& first, Options opts)
      : reader_(reader), opts_(std::move(opts)), offset_(opts_.first_offset) {
    msg_ = first;
    Take();
  }

  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    while (pos_ == pending_.size()) {
      if (!error_.ok()) return error_;
      if (finished_) return size_t{0};
      if (!reader_->Read(&msg_)) {
        error_ = absl::CancelledError("the upload stream ended without finish_write");
        return error_;
      }
      Take();
    }
    size_t k = std::min(n, pending_.size() - pos_);
    std::memcpy(buf, pending_.data() + pos_, k);
    pos_ += k;
    return k;
  }

  const absl::Status& error() const { return error_; }
  // Offset after the last byte received (first_offset + bytes taken).
  int64_t received() const { return offset_; }

 private:
  void Fail(absl::Status s) {
    error_ = std::move(s);
    pending_.clear();
  }

  void Take() {
    pending_.swap(*msg_.mutable_data());
    pos_ = 0;
    finished_ = msg_.finish_write();
    if (msg_.write_offset() != offset_) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("write_offset ", msg_.write_offset(),
                       " does not follow the data sent so far (", offset_, " bytes)")));
    }
    int64_t end = offset_ + static_cast<int64_t>(pending_.size());
    if (opts_.size >= 0 && end > opts_.size) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "more data than ", opts_.size_source, " of ", opts_.size, " bytes")));
    }
    if (end > opts_.max_bytes) {
      return Fail(absl::ResourceExhaustedError(
          absl::StrCat("more than the server's limit of ", opts_.max_bytes, " bytes per blob")));
    }
    if (opts_.on_data) {
      if (absl::Status s = opts_.on_data(pending_); !s.ok()) return Fail(s);
    }
    offset_ = end;
  }

  grpc::ServerReaderInterface<Request>* reader_;
  const Options opts_;
  Request msg_;  // the last message read
  std::string pending_;
  size_t pos_ = 0;
  bool finished_ = false;
  int64_t offset_;
  absl::Status error_;
};

}  // namespace ocicache::rpc

#endif  // OCICACHE_PKG_RPC_STREAMS_H_
