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
// The tile shape is a set of specialization constants (the defaults below: 64×64 tiles,
// 4×4 per invocation, slices of 16), chosen per pipeline by VulkanBackend::matmul
// (SPARO_VULKAN_MATMUL_TILES overrides it).
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;
layout(local_size_x_id = 0, local_size_y_id = 1) in;  // WX, WY
layout(constant_id = 2) const uint TM = 4u;
layout(constant_id = 3) const uint TN = 4u;
layout(constant_id = 4) const uint BK = 16u;
const uint WX = gl_WorkGroupSize.x, WY = gl_WorkGroupSize.y;
const uint BM = WY * TM, BN = WX * TN, THREADS = WX * WY;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params {
  uint batch, M, N, K, trans_a, trans_b, a_stride, b_stride, c_stride, accumulate;
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

void main() {
  const uint bi = gl_WorkGroupID.z;
  const uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint lid = ty * WX + tx;
  const uint abase = bi * p.a_stride, bbase = bi * p.b_stride;
  const bool a_k_contiguous = p.trans_a == 0u;  // A stored [M][K]
  const bool b_k_contiguous = p.trans_b != 0u;  // B stored [N][K]
  float acc[TM][TN];
  [[unroll]] for (uint i = 0u; i < TM; ++i)
    [[unroll]] for (uint j = 0u; j < TN; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < p.K; k0 += BK) {
    [[unroll]] for (uint r = 0u; r < (BM * BK + THREADS - 1u) / THREADS; ++r) {
      const uint e = lid + r * THREADS;
      if (e < BM * BK) {
        const uint kk = a_k_contiguous ? e % BK : e / BM, mm = a_k_contiguous ? e / BK : e % BM;
        tile_a[kk][mm] = load_a(abase, row0 + mm, k0 + kk);
      }
    }
    [[unroll]] for (uint r = 0u; r < (BN * BK + THREADS - 1u) / THREADS; ++r) {
      const uint e = lid + r * THREADS;
      if (e < BN * BK) {
        const uint kk = b_k_contiguous ? e % BK : e / BN, nn = b_k_contiguous ? e / BK : e % BN;
        tile_b[kk][nn] = load_b(bbase, k0 + kk, col0 + nn);
      }
    }
    barrier();
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
      c[ci] = p.accumulate != 0u ? c[ci] + acc[i][j] : acc[i][j];
    }
  }
}
