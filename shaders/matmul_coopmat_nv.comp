#version 450
// C[b] (= or +=) op(A[b])·op(B[b]) on the device's matrix units: fp16 inputs, fp32
// accumulation, through VK_NV_cooperative_matrix with 16×16×16 fragments (used only where
// the device lists that shape; SPARO_VULKAN_COOPMAT=1 switches it on, see vulkan_backend.cpp).
//
// A workgroup of 4 subgroups computes a 64×64 tile of C, each subgroup a 32×32 quarter held
// in 2×2 accumulator fragments. K advances in slices of 32: the workgroup converts the
// slice of A and of B to fp16 in shared memory (zeros outside the matrices; neighbouring
// invocations on neighbouring addresses along the operand's contiguous axis), then each
// subgroup loads its fragments from there. The result goes out through shared memory, so
// that edge tiles are bounds-checked and `accumulate` adds to what C holds.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require

layout(local_size_x = 128, local_size_y = 1, local_size_z = 1) in;
layout(local_size_x_id = 0) in;  // 4 × the device's subgroup size

const uint TILE = 64u, BK = 32u, F = 16u;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params {
  uint batch, M, N, K, trans_a, trans_b, a_stride, b_stride, c_stride, flags;  // flags: bit 0 accumulate (bf16.glsl); fp16 inputs always
} p;

shared float16_t tile_a[TILE * BK];  // [m][k]
shared float16_t tile_b[BK * TILE];  // [k][n]
shared float tile_c[TILE * TILE];    // [m][n]

float load_a(uint base, uint m, uint k) {
  if (m >= p.M || k >= p.K) return 0.0;
  return a[base + (p.trans_a != 0u ? k * p.M + m : m * p.K + k)];
}
float load_b(uint base, uint k, uint n) {
  if (k >= p.K || n >= p.N) return 0.0;
  return b[base + (p.trans_b != 0u ? n * p.K + k : k * p.N + n)];
}

void main() {
  const uint threads = gl_WorkGroupSize.x, lid = gl_LocalInvocationID.x;
  const uint bi = gl_WorkGroupID.z;
  const uint row0 = gl_WorkGroupID.y * TILE, col0 = gl_WorkGroupID.x * TILE;
  const uint abase = bi * p.a_stride, bbase = bi * p.b_stride;
  const bool a_k_contiguous = p.trans_a == 0u, b_k_contiguous = p.trans_b != 0u;
  const uint sm = (gl_SubgroupID / 2u) * 32u, sn = (gl_SubgroupID % 2u) * 32u;  // this subgroup's quarter

  fcoopmatNV<32, gl_ScopeSubgroup, F, F> acc[2][2];
  for (uint i = 0u; i < 2u; ++i)
    for (uint j = 0u; j < 2u; ++j) acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, F, F>(0.0);

  for (uint k0 = 0u; k0 < p.K; k0 += BK) {
    for (uint e = lid; e < TILE * BK; e += threads) {
      const uint kk = a_k_contiguous ? e % BK : e / TILE, mm = a_k_contiguous ? e / BK : e % TILE;
      tile_a[mm * BK + kk] = float16_t(load_a(abase, row0 + mm, k0 + kk));
      const uint kb = b_k_contiguous ? e % BK : e / TILE, nn = b_k_contiguous ? e / BK : e % TILE;
      tile_b[kb * TILE + nn] = float16_t(load_b(bbase, k0 + kb, col0 + nn));
    }
    barrier();
    for (uint ks = 0u; ks < BK; ks += F) {
      fcoopmatNV<16, gl_ScopeSubgroup, F, F> fa[2], fb[2];
      for (uint i = 0u; i < 2u; ++i) coopMatLoadNV(fa[i], tile_a, (sm + i * F) * BK + ks, BK, false);
      for (uint j = 0u; j < 2u; ++j) coopMatLoadNV(fb[j], tile_b, ks * TILE + sn + j * F, TILE, false);
      for (uint i = 0u; i < 2u; ++i)
        for (uint j = 0u; j < 2u; ++j) acc[i][j] = coopMatMulAddNV(fa[i], fb[j], acc[i][j]);
    }
    barrier();
  }
  for (uint i = 0u; i < 2u; ++i)
    for (uint j = 0u; j < 2u; ++j) coopMatStoreNV(acc[i][j], tile_c, (sm + i * F) * TILE + sn + j * F, TILE, false);
  barrier();
  for (uint e = lid; e < TILE * TILE; e += threads) {
    const uint m = row0 + e / TILE, n = col0 + e % TILE;
    if (m >= p.M || n >= p.N) continue;
    const uint ci = bi * p.c_stride + m * p.N + n;
    c[ci] = (p.flags & 1u) != 0u ? c[ci] + tile_c[e] : tile_c[e];
  }
}
