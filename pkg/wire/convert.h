// Conversions between the domain types (cache::Entry, oci::Descriptor, ...) and
// the ocicache.v1 messages, shared by the servicers and the client. *FromProto
// validate what comes off the wire (keys, digests, sizes, timestamps) and say
// which field is wrong; *ToProto cannot fail.
#ifndef OCICACHE_PKG_WIRE_CONVERT_H_
#define OCICACHE_PKG_WIRE_CONVERT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "api/ocicache/v1/cache.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "pkg/cache/entry.h"
#include "pkg/cache/store.h"
#include "pkg/oci/digest.h"
#include "pkg/oci/types.h"

namespace ocicache::wire {

// absl::InfinitePast() (unset) clears the timestamp.
void TimeToProto(absl::Time t, google::protobuf::Timestamp* out);
// An unset (all zero) timestamp is InfinitePast(); out-of-range fields are
// InvalidArgument.
absl::StatusOr<absl::Time> TimeFromProto(const google::protobuf::Timestamp& ts,
                                         absl::string_view field);

// A digest field: "sha256:<64 hex>". Empty is InvalidArgument unless allow_empty
// (then the invalid Digest()).
absl::StatusOr<oci::Digest> DigestFromProto(absl::string_view s, absl::string_view field,
                                            bool allow_empty = false);

void DescriptorToProto(const oci::Descriptor& d, v1::Descriptor* out);
// size must be >= 0.
absl::StatusOr<oci::Descriptor> DescriptorFromProto(const v1::Descriptor& d,
                                                    absl::string_view field);

void LocationToProto(const cache::Location& l, v1::Location* out);
// size must be >= 0, or -1 (unknown) when allow_unknown_size.
absl::StatusOr<cache::Location> LocationFromProto(const v1::Location& l, absl::string_view field,
                                                  bool allow_unknown_size = false);

void EntryToProto(const cache::Entry& e, v1::Entry* out);
// Validates the key (cache::ValidateKey), digests, sizes and timestamps.
absl::StatusOr<cache::Entry> EntryFromProto(const v1::Entry& e);

void EntryInfoToProto(const cache::EntryInfo& i, v1::EntryInfo* out);
absl::StatusOr<cache::EntryInfo> EntryInfoFromProto(const v1::EntryInfo& i);

// Proto3 strings must be UTF-8: a key that is not cannot travel over gRPC
// (InvalidArgument, naming `what`).
absl::Status CheckUtf8(absl::string_view s, absl::string_view what);
// Every string field of an entry that goes into a proto3 string.
absl::Status CheckEntryUtf8(const cache::Entry& e);

}  // namespace ocicache::wire

#endif  // OCICACHE_PKG_WIRE_CONVERT_H_
