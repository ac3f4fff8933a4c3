#include "stages/common/splitmix64.h"

#include "pipeline/core/error.h"

namespace stages {

uint64_t SplitMix64::next() {
  uint64_t z = (m_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::uniform_below(uint64_t n) {
  RHEAD_CHECK(n >= 1, pipeline::InternalError, "[splitmix64] uniform_below: got n = 0, expected n >= 1");
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n: outputs below it would bias the modulo
  while (true) {
    const uint64_t r = next();
    if (r >= threshold) return r % n;
  }
}

}  // namespace stages
