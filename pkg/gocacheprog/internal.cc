#include "pkg/gocacheprog/internal.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pkg/oci/pipe.h"
#include "pkg/oci/zstd_stream.h"

namespace ocicache::gocacheprog {
namespace {

// Objects up to this size are downloaded into memory, larger ones streamed.
constexpr int64_t kInMemoryFetch = 8 << 20;

}  // namespace

ServerStats Counters::Snapshot() const {
  ServerStats s;
#define OCICACHE_GOCACHEPROG_LOAD(name) s.name = name.load();
  OCICACHE_GOCACHEPROG_COUNTERS(OCICACHE_GOCACHEPROG_LOAD)
#undef OCICACHE_GOCACHEPROG_LOAD
  return s;
}

std::string ConfigFor(const oci::Digest& output_id, int64_t size, absl::string_view data) {
  std::string c = absl::StrCat(R"({"kind":")", kKind, R"(","outputID":")", output_id.str(),
                               R"(","size":)", size);
  if (!data.empty()) absl::StrAppend(&c, R"(,"data":")", absl::Base64Escape(data), "\"");
  c += "}";
  return c;
}

cache::Entry EntryFor(const std::string& key, const GoObject& o, const std::string& go_version) {
  cache::Entry e;
  e.key = key;
  e.config = ConfigFor(o.output_id, o.size);
  if (!go_version.empty()) e.annotations[kToolAnnotation] = go_version;
  if (o.size > 0) {
    oci::Descriptor d;
    d.media_type = oci::media::kOctetStream;
    d.digest = o.output_id;
    d.size = o.size;
    e.blobs.push_back(d);
  }
  return e;
}

cache::Entry InlineEntry(const cache::Entry& e, const GoObject& o, absl::string_view bytes) {
  cache::Entry r = e;
  r.config = ConfigFor(o.output_id, o.size, bytes);
  r.blobs.clear();
  return r;
}

cache::Entry EncodedEntry(const cache::Entry& e, const GoObject& o,
                          const oci::Descriptor& frame) {
  cache::Entry r = e;
  std::string c = ConfigFor(o.output_id, o.size);
  c.pop_back();  // the closing brace
  r.config = c + R"(,"encoding":"zstd"})";
  r.blobs.clear();
  r.blobs.push_back(oci::Descriptor{oci::media::kZstd, frame.digest, frame.size});
  return r;
}

cache::Entry LocalEntry(const cache::Entry& e, const GoObject& o) {
  cache::Entry r = e;
  r.config = ConfigFor(o.output_id, o.size);
  r.blobs.clear();
  if (o.size > 0) {
    r.blobs.push_back(oci::Descriptor{oci::media::kOctetStream, o.output_id, o.size});
  }
  return r;
}

absl::StatusOr<GoObject> CheckEntry(const cache::Entry& e, std::string* data) {
  auto j = nlohmann::json::parse(e.config, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("entry config is not a JSON object");
  }
  auto kind = j.find("kind");
  auto out = j.find("outputID");
  auto size = j.find("size");
  if (kind == j.end() || !kind->is_string() || kind->get<std::string>() != kKind) {
    return absl::DataLossError("entry is not a go-action entry");
  }
  if (out == j.end() || !out->is_string() || size == j.end() || !size->is_number_integer()) {
    return absl::DataLossError("entry config lacks outputID or size");
  }
  auto digest = oci::Digest::Parse(out->get<std::string>());
  if (!digest.ok()) return absl::DataLossError("entry config has a bad outputID");
  GoObject o{*digest, size->get<int64_t>()};
  if (o.size < 0) return absl::DataLossError("entry config has a negative size");
  if (o.size == 0) {
    if (o.output_id != oci::Digest::Of("")) {
      return absl::DataLossError("entry of size 0 names a non-empty object");
    }
    return o;
  }
  if (auto in = j.find("data"); in != j.end()) {
    std::string bytes;
    if (!in->is_string() || !absl::Base64Unescape(in->get<std::string>(), &bytes)) {
      return absl::DataLossError("entry config has data that is not base64");
    }
    if (static_cast<int64_t>(bytes.size()) != o.size || oci::Digest::Of(bytes) != o.output_id) {
      return absl::DataLossError("entry data does not match its outputID and size");
    }
    if (data != nullptr) *data = std::move(bytes);
    return o;
  }
  if (auto enc = j.find("encoding"); enc != j.end()) {
    if (!enc->is_string() || enc->get<std::string>() != "zstd") {
      return absl::DataLossError("entry config has an encoding other than zstd");
    }
    if (e.blobs.empty() || e.blobs[0].media_type != oci::media::kZstd ||
        !e.blobs[0].digest.valid() || e.blobs[0].size <= 0) {
      return absl::DataLossError("entry says zstd but names no zstd frame");
    }
    o.frame = e.blobs[0].digest;
    return o;
  }
  if (e.blobs.empty() || e.blobs[0].digest != o.output_id || e.blobs[0].size != o.size) {
    return absl::DataLossError("entry blob does not match its outputID and size");
  }
  return o;
}

absl::Status FetchObject(layout::LayoutStore* local, cache::Store* remote, const GoObject& o,
                         Counters* n, const std::string* inline_bytes) {
  if (o.size == 0) return absl::OkStatus();
  auto have = local->StatBlob(o.output_id);
  if (have.ok() && *have == o.size) return absl::OkStatus();
  absl::Time t0 = absl::Now();
  absl::Status s;
  // The local tier checks the digest before it keeps the object, so the
  // remote's reader does not hash it as well.
  if (inline_bytes != nullptr) {
    oci::StringSource src(*inline_bytes);
    s = local->WriteBlob(o.output_id, o.size, src).status();
  } else if (o.frame.valid()) {
    // Decoded as it arrives; the local tier checks outputID and size.
    cache::Store* from = remote != nullptr ? remote : local;
    s = oci::Transfer(
        [&](oci::ByteSink& sink) {
          oci::ZstdSink decoded(sink);
          absl::Status r = from->ReadBlob(o.frame, 0, decoded);
          return r.ok() ? decoded.Finish(o.size) : r;
        },
        [&](oci::ByteSource& src) { return local->WriteBlob(o.output_id, o.size, src).status(); });
  } else if (o.size <= kInMemoryFetch) {
    std::string data;
    data.reserve(static_cast<size_t>(o.size));
    oci::StringSink into(&data);
    oci::CheckedDownstreamSink sink(into);
    s = remote->ReadBlob(o.output_id, 0, sink);
    if (s.ok()) {
      oci::StringSource src(data);
      s = local->WriteBlob(o.output_id, o.size, src).status();
    }
  } else {
    s = oci::Transfer(
        [&](oci::ByteSink& sink) {
          oci::CheckedDownstreamSink checked(sink);
          return remote->ReadBlob(o.output_id, 0, checked);
        },
        [&](oci::ByteSource& src) { return local->WriteBlob(o.output_id, o.size, src).status(); });
  }
  n->fetch_us += Micros(t0);
  return s;
}

absl::Status FetchPair(layout::LayoutStore* local, cache::Store* remote, const std::string& key,
                       const GoObject& o, Counters* n, oci::Descriptor* stored) {
  if (o.size == 0) return absl::OkStatus();
  if (auto have = local->StatBlob(o.output_id); have.ok() && *have == o.size) {
    return absl::OkStatus();
  }
  // The entry says where the object is: inside it, in a zstd frame, or in a
  // blob of its outputID (what older writers stored for every object over
  // 16 KiB; such a blob is then read below).
  cache::LookupOptions lo;
  lo.touch = false;
  auto e = remote->Lookup(key, lo);
  if (!e.ok() && !absl::IsNotFound(e.status())) return e.status();
  if (e.ok()) {
    std::string data;
    auto got = CheckEntry(*e, &data);
    if (got.ok() && got->output_id == o.output_id && (!data.empty() || got->frame.valid())) {
      absl::Status s = FetchObject(local, remote, *got, n, data.empty() ? nullptr : &data);
      if (s.ok() && got->frame.valid() && stored != nullptr) *stored = e->blobs[0];
      return s;
    }
  }
  absl::Status s = FetchObject(local, remote, o, n);
  if (s.ok() && stored != nullptr) {
    *stored = oci::Descriptor{oci::media::kOctetStream, o.output_id, o.size};
  }
  return s;
}

int64_t Micros(absl::Time since) { return absl::ToInt64Microseconds(absl::Now() - since); }

}  // namespace ocicache::gocacheprog
