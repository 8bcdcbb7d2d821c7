// A fuzz target for the decoding of ocicache.v1 requests: the first byte picks
// a message type, the rest is parsed as that message; what parses goes through
// the conversions of pkg/wire/convert.h and through the real servicers
// (pkg/service) over gRPC's in-process channel (no socket, no network; Mount
// into other repositories is converted but not called, since it would dial),
// backed by a LayoutStore and upload staging in a temporary directory.
//
// Invariants checked on every input (a violation prints the input and aborts,
// which libFuzzer and the driver report as a crash):
//   - the servicers answer; never UNKNOWN, and INTERNAL only with a message;
//   - an accepted Put carried an entry the converter accepts;
//   - a Lookup / BatchLookup hit is an entry the converter accepts, for the key asked;
//   - Stat accounts for every blob asked; a full Read returns bytes that hash
//     to the digest asked;
//   - a converted entry, descriptor or location converts back to the same message.
//
// LLVMFuzzerTestOneInput is the libFuzzer entry point (bazel build
// --config=fuzz //test/fuzz:request_fuzzer); request_fuzz_test drives it
// without libFuzzer in the normal test command.
#ifndef OCICACHE_TEST_FUZZ_REQUEST_FUZZER_H_
#define OCICACHE_TEST_FUZZ_REQUEST_FUZZER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ocicache::fuzz {

// The message types the first byte selects (byte % kKinds).
enum Kind : uint8_t {
  kLookup, kBatchLookup, kPut, kDelete, kList, kStat, kRead, kWrite, kQueryWrite, kMount,
  kGarbageCollect, kSync, kStats, kEntry, kEntryInfo, kRpcStatus, kKinds
};
const char* KindName(int kind);

// What the target saw, for the driver's summary and checks.
struct FuzzStats {
  int64_t inputs = 0;
  int64_t parsed[kKinds] = {};   // inputs that parsed as their message
  int64_t ok[kKinds] = {};       // ... and were answered OK
  int64_t codes[17] = {};        // answers by grpc::StatusCode
};
const FuzzStats& Stats();

// Valid inputs of every kind (kind byte included): the driver's seeds.
std::vector<std::string> Seeds();

}  // namespace ocicache::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#endif  // OCICACHE_TEST_FUZZ_REQUEST_FUZZER_H_
