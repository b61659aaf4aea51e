// A small deterministic random source for the data pipeline: one per sample, keyed by
// (seed, stream), so a sample's draws do not depend on which thread prepares it or in what
// order samples are prepared. Streams are built from the sample's identity, e.g.
// SampleRng(seed, mix(epoch, index)), which makes the data order and every augmentation
// reproducible for a seed and resumable at any position.
#pragma once

#include <cstdint>

#include "engine/random.h"

namespace sparo {

// Combines two 64-bit values into one stream id (splitmix64 finaliser of a ⊕ rotated b).
constexpr uint64_t mix_stream(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + ((b << 29) | (b >> 35)) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t stream) : seed_(mix_stream(seed, stream)) {}

  uint32_t next_u32() {
    if (used_ == 4) {
      words_ = philox4x32(seed_, block_++);
      used_ = 0;
    }
    return words_[used_++];
  }
  // Uniform in [0, 1) with 24 random bits.
  float uniform() { return philox_uniform01(next_u32()); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n >= 1 (64-bit multiply-shift: bias < 2^-32 for small n).
  int64_t below(int64_t n) {
    return static_cast<int64_t>((static_cast<uint64_t>(next_u32()) * static_cast<uint64_t>(n)) >> 32);
  }
  bool bernoulli(float p) { return uniform() < p; }

 private:
  uint64_t seed_;
  uint64_t block_ = 0;
  std::array<uint32_t, 4> words_{};
  int used_ = 4;
};

}  // namespace sparo
