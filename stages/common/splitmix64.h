// SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro): the one seeded random stream of
// the stages (ablate's random heads, the toy world and train's length draws). Pure: no IO, no torch.
#pragma once

#include <cstdint>

namespace stages {

// state += 0x9E3779B97F4A7C15, then z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
// z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^ (z >> 31).
// Same output on every platform and compiler, unlike std::uniform_int_distribution.
class SplitMix64 {
 public:
  // seed -> generator state (any 64-bit value, 0 included).
  explicit SplitMix64(uint64_t seed) : m_state(seed) {}
  uint64_t next();  // -> next 64-bit output
  // n >= 1 -> uniform integer in [0, n) by rejection of the top partial block (no modulo bias).
  uint64_t uniform_below(uint64_t n);

 private:
  uint64_t m_state;
};

}  // namespace stages
