// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// A draw is a pure function of (seed, counter), so any backend, any thread count
// and any GPU produce the same stream: element i of a fill that starts at counter
// block `c` takes 32-bit word (i % 4) of philox(seed, c + i / 4).
//   uniform[0,1): (word >> 8) · 2^-24
//   normal:       Box–Muller on the pairs (word0, word1) and (word2, word3) of a block,
//                 u1 = ((word0 >> 8) + 1) · 2^-24 ∈ (0, 1], u2 = (word1 >> 8) · 2^-24,
//                 n0 = sqrt(-2 ln u1) cos(2π u2), n1 = sqrt(-2 ln u1) sin(2π u2).
// A Generator is just the seed and the next unused counter block.
#pragma once

#include <array>
#include <cstdint>

namespace sparo {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);
// The engine's use: counter = (block, 0), key = seed.
std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t block);
// The value transforms shared by every backend (see the top of this file).
inline float philox_uniform01(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }
inline float philox_uniform01_open_low(uint32_t word) {  // (0, 1], safe for log
  return static_cast<float>((word >> 8) + 1) * (1.0f / 16777216.0f);
}

// Data-parallel training: this process computes rows [first, first + local) of every group of
// `global` rows of a batch (N processes, each with its slice of one process's batch). A
// generator with an active shard draws a batch's random numbers as one process would for the
// whole batch and keeps this process's rows (dropout, drop_path), so N processes draw the
// numbers of one and their generators stay at the same offset.
struct BatchShard {
  int64_t global = 0, first = 0, local = 0;
  bool active() const { return local > 0 && local != global; }
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }   // next unused counter block
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  const BatchShard& batch_shard() const { return shard_; }
  void set_batch_shard(const BatchShard& shard) { shard_ = shard; }
  // Reserves the blocks for n values and returns the first block.
  uint64_t reserve(int64_t n) {
    uint64_t first = offset_;
    offset_ += static_cast<uint64_t>((n + 3) / 4);
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  BatchShard shard_;
};

}  // namespace sparo
