#version 450
// dw[c] = Σ_rows dy·x̂, db[c] = Σ_rows dy. A workgroup takes 32 neighbouring columns with 8
// lanes of rows each: invocation (l, r) folds rows r, r + 8, … of column l (so 32 neighbours
// read 128 contiguous bytes of a row), then lane 0 adds the 8 partials in order: a fixed
// order, so the result is deterministic. (One invocation per column left a GPU nearly idle:
// a model of width 192 had 192 invocations for B·T rows.)
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x = 32, local_size_y = 8, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Mean { float mean[]; };
layout(std430, binding = 2) readonly buffer Rstd { float rstd[]; };
layout(std430, binding = 3) readonly buffer DY { float dy[]; };
layout(std430, binding = 4) writeonly buffer DW { float dw[]; };
layout(std430, binding = 5) writeonly buffer DB { float db[]; };
layout(push_constant) uniform Params { uint rows, cols, want_dw, want_db; } p;

shared float partial_w[8][32], partial_b[8][32];

void main() {
  const uint l = gl_LocalInvocationID.x, lane = gl_LocalInvocationID.y;
  const uint c = gl_WorkGroupID.x * 32u + l;
  float acc_w = 0.0, acc_b = 0.0;
  if (c < p.cols) {
    for (uint r = lane; r < p.rows; r += 8u) {
      const float g = dy[r * p.cols + c];
      acc_w += g * (x[r * p.cols + c] - mean[r]) * rstd[r];
      acc_b += g;
    }
  }
  partial_w[lane][l] = acc_w;
  partial_b[lane][l] = acc_b;
  barrier();
  if (lane != 0u || c >= p.cols) return;
  float w = 0.0, b = 0.0;
  [[unroll]] for (uint i = 0u; i < 8u; ++i) {
    w += partial_w[i][l];
    b += partial_b[i][l];
  }
  if (p.want_dw != 0u) dw[c] = w;
  if (p.want_db != 0u) db[c] = b;
}
