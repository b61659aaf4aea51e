#version 450
// C[b] (= or +=) op(A[b])·op(B[b]) with shared-memory tiling and register blocking.
//
// A workgroup of WX×WY invocations computes a BM×BN tile of C (BM = WY·TM, BN = WX·TN).
// Each invocation keeps TM×TN outputs in registers: rows ty + WY·i and columns tx + WX·j,
// strided so that neighbouring invocations read neighbouring shared-memory words. K
// advances in slices of BK staged through shared memory. A slice is loaded with
// neighbouring invocations on neighbouring addresses of global memory, along whichever
// of m/n or k is contiguous for the operand's layout (transposed operands are read
// through their strides, no copies). Batch entries are the z dimension.
//
// With VEC = 4, slices are read as vec4s along the contiguous axis, where that axis's extent,
// the batch stride and the tile sides allow it (checked per dispatch; else one float at a
// time): a quarter of the load instructions.
//
// The tile shape and VEC are specialization constants (the defaults below: 64×64 tiles,
// 4×4 per invocation, slices of 16, scalar loads), chosen per pipeline by
// VulkanBackend::matmul (SPARO_VULKAN_MATMUL_TILES overrides them).
#extension GL_EXT_control_flow_attributes : enable
#include "bf16.glsl"

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;
layout(local_size_x_id = 0, local_size_y_id = 1) in;  // WX, WY
layout(constant_id = 2) const uint TM = 4u;
layout(constant_id = 3) const uint TN = 4u;
layout(constant_id = 4) const uint BK = 16u;
layout(constant_id = 5) const uint VEC = 1u;  // 1 or 4
const uint WX = gl_WorkGroupSize.x, WY = gl_WorkGroupSize.y;
const uint BM = WY * TM, BN = WX * TN, THREADS = WX * WY;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 0) readonly buffer A4 { vec4 a4[]; };  // the same buffers, 4 floats at a time
layout(std430, binding = 1) readonly buffer B4 { vec4 b4[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params {
  uint batch, M, N, K, trans_a, trans_b, a_stride, b_stride, c_stride, flags;
} p;

shared float tile_a[BK][BM + 1u];  // [k][m], padded against bank conflicts
shared float tile_b[BK][BN + 1u];  // [k][n]

float load_a(uint base, uint m, uint k) {
  if (m >= p.M || k >= p.K) return 0.0;
  return a[base + (p.trans_a != 0u ? k * p.M + m : m * p.K + k)];
}
float load_b(uint base, uint k, uint n) {
  if (k >= p.K || n >= p.N) return 0.0;
  return b[base + (p.trans_b != 0u ? n * p.K + k : k * p.N + n)];
}

// The slice of A at k0 into tile_a: the scalar path, or vec4s along the contiguous axis.
void load_tile_a(uint abase, uint row0, uint k0, uint lid, bool k_contiguous, bool vec) {
  if (!vec) {
    [[unroll]] for (uint r = 0u; r < (BM * BK + THREADS - 1u) / THREADS; ++r) {
      const uint e = lid + r * THREADS;
      if (e < BM * BK) {
        const uint kk = k_contiguous ? e % BK : e / BM, mm = k_contiguous ? e / BK : e % BM;
        tile_a[kk][mm] = load_a(abase, row0 + mm, k0 + kk);
      }
    }
    return;
  }
  const uint groups = BM * BK / 4u;
  [[unroll]] for (uint r = 0u; r < (groups + THREADS - 1u) / THREADS; ++r) {
    const uint g = lid + r * THREADS;
    if (g >= groups) continue;
    // The 4 values are all inside A or all outside: the extent along them is a multiple of 4.
    if (k_contiguous) {
      const uint mm = g / (BK / 4u), kk = g % (BK / 4u) * 4u, m = row0 + mm, k = k0 + kk;
      const vec4 v = m < p.M && k < p.K ? a4[(abase + m * p.K + k) / 4u] : vec4(0.0);
      [[unroll]] for (uint i = 0u; i < 4u; ++i) tile_a[kk + i][mm] = v[i];
    } else {
      const uint kk = g / (BM / 4u), mm = g % (BM / 4u) * 4u, m = row0 + mm, k = k0 + kk;
      const vec4 v = m < p.M && k < p.K ? a4[(abase + k * p.M + m) / 4u] : vec4(0.0);
      [[unroll]] for (uint i = 0u; i < 4u; ++i) tile_a[kk][mm + i] = v[i];
    }
  }
}

// The slice of B at k0 into tile_b, as load_tile_a.
void load_tile_b(uint bbase, uint col0, uint k0, uint lid, bool k_contiguous, bool vec) {
  if (!vec) {
    [[unroll]] for (uint r = 0u; r < (BN * BK + THREADS - 1u) / THREADS; ++r) {
      const uint e = lid + r * THREADS;
      if (e < BN * BK) {
        const uint kk = k_contiguous ? e % BK : e / BN, nn = k_contiguous ? e / BK : e % BN;
        tile_b[kk][nn] = load_b(bbase, k0 + kk, col0 + nn);
      }
    }
    return;
  }
  const uint groups = BN * BK / 4u;
  [[unroll]] for (uint r = 0u; r < (groups + THREADS - 1u) / THREADS; ++r) {
    const uint g = lid + r * THREADS;
    if (g >= groups) continue;
    if (k_contiguous) {
      const uint nn = g / (BK / 4u), kk = g % (BK / 4u) * 4u, n = col0 + nn, k = k0 + kk;
      const vec4 v = n < p.N && k < p.K ? b4[(bbase + n * p.K + k) / 4u] : vec4(0.0);
      [[unroll]] for (uint i = 0u; i < 4u; ++i) tile_b[kk + i][nn] = v[i];
    } else {
      const uint kk = g / (BN / 4u), nn = g % (BN / 4u) * 4u, n = col0 + nn, k = k0 + kk;
      const vec4 v = n < p.N && k < p.K ? b4[(bbase + k * p.N + n) / 4u] : vec4(0.0);
      [[unroll]] for (uint i = 0u; i < 4u; ++i) tile_b[kk][nn + i] = v[i];
    }
  }
}

void main() {
  const uint bi = gl_WorkGroupID.z;
  const uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint lid = ty * WX + tx;
  const uint abase = bi * p.a_stride, bbase = bi * p.b_stride;
  const bool a_k_contiguous = p.trans_a == 0u;  // A stored [M][K]
  const bool b_k_contiguous = p.trans_b != 0u;  // B stored [N][K]
  // vec4 loads where every vec4 starts at a multiple of 4 floats and the tile's side along
  // the contiguous axis is a multiple of 4 (the buffers are bound from offset 0).
  const bool vec_a = VEC == 4u && p.a_stride % 4u == 0u &&
                     (a_k_contiguous ? p.K % 4u == 0u && BK % 4u == 0u : p.M % 4u == 0u && BM % 4u == 0u);
  const bool vec_b = VEC == 4u && p.b_stride % 4u == 0u &&
                     (b_k_contiguous ? p.K % 4u == 0u && BK % 4u == 0u : p.N % 4u == 0u && BN % 4u == 0u);
  const bool bf16 = (p.flags & kMatmulBf16) != 0u;
  float acc[TM][TN];
  [[unroll]] for (uint i = 0u; i < TM; ++i)
    [[unroll]] for (uint j = 0u; j < TN; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < p.K; k0 += BK) {
    load_tile_a(abase, row0, k0, lid, a_k_contiguous, vec_a);
    load_tile_b(bbase, col0, k0, lid, b_k_contiguous, vec_b);
    barrier();
    if (bf16) {  // round the slice in shared memory (each value once), then multiply as usual
      [[unroll]] for (uint r = 0u; r < (BM * BK + THREADS - 1u) / THREADS; ++r) {
        const uint e = lid + r * THREADS;
        if (e < BM * BK) tile_a[e / BM][e % BM] = round_bf16(tile_a[e / BM][e % BM]);
      }
      [[unroll]] for (uint r = 0u; r < (BN * BK + THREADS - 1u) / THREADS; ++r) {
        const uint e = lid + r * THREADS;
        if (e < BN * BK) tile_b[e / BN][e % BN] = round_bf16(tile_b[e / BN][e % BN]);
      }
      barrier();
    }
    [[unroll]] for (uint kk = 0u; kk < BK; ++kk) {
      float av[TM], bv[TN];
      [[unroll]] for (uint i = 0u; i < TM; ++i) av[i] = tile_a[kk][ty + WY * i];
      [[unroll]] for (uint j = 0u; j < TN; ++j) bv[j] = tile_b[kk][tx + WX * j];
      [[unroll]] for (uint i = 0u; i < TM; ++i)
        [[unroll]] for (uint j = 0u; j < TN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }
    barrier();
  }
  [[unroll]] for (uint i = 0u; i < TM; ++i) {
    const uint m = row0 + ty + WY * i;
    if (m >= p.M) continue;
    [[unroll]] for (uint j = 0u; j < TN; ++j) {
      const uint n = col0 + tx + WX * j;
      if (n >= p.N) continue;
      const uint ci = bi * p.c_stride + m * p.N + n;
      c[ci] = (p.flags & kMatmulAccumulate) != 0u ? c[ci] + acc[i][j] : acc[i][j];
    }
  }
}
