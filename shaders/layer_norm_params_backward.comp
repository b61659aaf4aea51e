#version 450
// dw[c] = Σ_rows dy·x̂, db[c] = Σ_rows dy: one column per invocation, rows in order.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Mean { float mean[]; };
layout(std430, binding = 2) readonly buffer Rstd { float rstd[]; };
layout(std430, binding = 3) readonly buffer DY { float dy[]; };
layout(std430, binding = 4) writeonly buffer DW { float dw[]; };
layout(std430, binding = 5) writeonly buffer DB { float db[]; };
layout(push_constant) uniform Params { uint rows, cols, want_dw, want_db; } p;

void main() {
  const uint c = global_index();
  if (c >= p.cols) return;
  float acc_w = 0.0, acc_b = 0.0;
  for (uint r = 0u; r < p.rows; ++r) {
    const float g = dy[r * p.cols + c];
    acc_w += g * (x[r * p.cols + c] - mean[r]) * rstd[r];
    acc_b += g;
  }
  if (p.want_dw != 0u) dw[c] = acc_w;
  if (p.want_db != 0u) db[c] = acc_b;
}
