// FNV-1a, 64-bit: the one non-cryptographic hash of the project (file fingerprints, store content digests,
// recipe hashes, seeds derived from names). Changing it changes every recorded fingerprint and toy-zoo seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pipeline {

inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;  // offset basis
inline constexpr uint64_t kFnv1aPrime = 0x100000001b3ull;
// The basis that store content digests (`rhead inspect --digest`) and the selftest stage's cell seeds start
// from: the offset basis with its last decimal digit lost (14695981039346656037 / 10). Not standard FNV-1a,
// but kept, so that digests recorded before and selftest stores stay comparable.
inline constexpr uint64_t kFnv1aShortBasis = 1469598103934665603ull;

// The hash of `n` bytes at `data`, continuing from `h` (kFnv1aOffset to start), so a stream hashes in pieces.
inline uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnv1aOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnv1aPrime;
  return h;
}

inline uint64_t fnv1a(std::string_view bytes, uint64_t h = kFnv1aOffset) {
  return fnv1a(bytes.data(), bytes.size(), h);
}

}  // namespace pipeline
