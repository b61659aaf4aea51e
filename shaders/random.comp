#version 450
// Philox4x32-10, the stream of engine/random.h: element i takes word i % 4 of block
// first + i / 4 (counter = (block lo, block hi, 0, 0), key = seed). One block per invocation.
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params { uint n, seed_lo, seed_hi, first_lo, first_hi, normal; float a, b; } p;

uvec4 philox(uvec4 ctr, uvec2 key) {
  for (int round = 0; round < 10; ++round) {
    uint hi0, lo0, hi1, lo1;
    umulExtended(0xD2511F53u, ctr.x, hi0, lo0);
    umulExtended(0xCD9E8D57u, ctr.z, hi1, lo1);
    ctr = uvec4(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
    key += uvec2(0x9E3779B9u, 0xBB67AE85u);
  }
  return ctr;
}

float uniform01(uint w) { return float(w >> 8) * (1.0 / 16777216.0); }
float uniform01_open_low(uint w) { return float((w >> 8) + 1u) * (1.0 / 16777216.0); }

void main() {
  const uint blk = global_index();
  if (blk * 4u >= p.n) return;
  const uint lo = p.first_lo + blk;
  const uint carry = lo < blk ? 1u : 0u;
  const uvec4 w = philox(uvec4(lo, p.first_hi + carry, 0u, 0u), uvec2(p.seed_lo, p.seed_hi));
  float v[4];
  if (p.normal == 0u) {
    for (int k = 0; k < 4; ++k) v[k] = p.a + (p.b - p.a) * uniform01(w[k]);
  } else {
    for (int pair = 0; pair < 2; ++pair) {
      const float radius = sqrt(-2.0 * log(uniform01_open_low(w[2 * pair])));
      const float angle = 6.28318530717958647692 * uniform01(w[2 * pair + 1]);
      v[2 * pair] = p.a + p.b * radius * cos(angle);
      v[2 * pair + 1] = p.a + p.b * radius * sin(angle);
    }
  }
  for (uint k = 0u; k < 4u; ++k)
    if (blk * 4u + k < p.n) y[blk * 4u + k] = v[k];
}
