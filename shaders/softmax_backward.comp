#version 450
// softmax: dx = y·(dy - Σ dy·y);  log-softmax: dx = dy - exp(y)·Σ dy. One row per invocation.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Params { uint rows, cols, log_out; } p;

void main() {
  const uint r = global_index();
  if (r >= p.rows) return;
  const uint base = r * p.cols;
  float total = 0.0;
  if (p.log_out != 0u) {
    for (uint c = 0u; c < p.cols; ++c) total += dy[base + c];
    for (uint c = 0u; c < p.cols; ++c) dx[base + c] = dy[base + c] - exp(y[base + c]) * total;
  } else {
    for (uint c = 0u; c < p.cols; ++c) total += dy[base + c] * y[base + c];
    for (uint c = 0u; c < p.cols; ++c) dx[base + c] = y[base + c] * (dy[base + c] - total);
  }
}
