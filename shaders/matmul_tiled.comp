#version 450
// C[b] (= or +=) op(A[b])·op(B[b]) with shared-memory tiling and register blocking:
// a workgroup of 16×16 invocations computes a 64×64 tile of C, each invocation a 4×4 block
// held in registers; K advances in slices of 16 staged through shared memory. Transposed
// operands are read through their strides (no copies). Batch entries are the z dimension.
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params {
  uint batch, M, N, K, trans_a, trans_b, a_stride, b_stride, c_stride, accumulate;
} p;

const uint TILE = 64u, SLICE = 16u, PER = 4u;  // PER = TILE / 16 outputs per invocation per axis
shared float tile_a[SLICE][TILE + 1u];  // [k][m], padded against bank conflicts
shared float tile_b[SLICE][TILE + 1u];  // [k][n]

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
  const uint row0 = gl_WorkGroupID.y * TILE, col0 = gl_WorkGroupID.x * TILE;
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint lid = ty * 16u + tx;
  const uint abase = bi * p.a_stride, bbase = bi * p.b_stride;
  float acc[PER][PER];
  [[unroll]] for (uint i = 0u; i < PER; ++i)
    [[unroll]] for (uint j = 0u; j < PER; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < p.K; k0 += SLICE) {
    // 256 invocations load the 16×64 slices of A and B: 4 values each.
    [[unroll]] for (uint r = 0u; r < 4u; ++r) {
      const uint e = lid + r * 256u;  // 0 .. 1023
      const uint kk = e / TILE, mm = e % TILE;
      tile_a[kk][mm] = load_a(abase, row0 + mm, k0 + kk);
      tile_b[kk][mm] = load_b(bbase, k0 + kk, col0 + mm);
    }
    barrier();
    [[unroll]] for (uint kk = 0u; kk < SLICE; ++kk) {
      float av[PER], bv[PER];
      [[unroll]] for (uint i = 0u; i < PER; ++i) av[i] = tile_a[kk][ty + 16u * i];
      [[unroll]] for (uint j = 0u; j < PER; ++j) bv[j] = tile_b[kk][tx + 16u * j];
      [[unroll]] for (uint i = 0u; i < PER; ++i)
        [[unroll]] for (uint j = 0u; j < PER; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }
    barrier();
  }
  [[unroll]] for (uint i = 0u; i < PER; ++i) {
    const uint m = row0 + ty + 16u * i;
    if (m >= p.M) continue;
    [[unroll]] for (uint j = 0u; j < PER; ++j) {
      const uint n = col0 + tx + 16u * j;
      if (n >= p.N) continue;
      const uint ci = bi * p.c_stride + m * p.N + n;
      c[ci] = p.accumulate != 0u ? c[ci] + acc[i][j] : acc[i][j];
    }
  }
}
