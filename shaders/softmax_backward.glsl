// softmax: dx = y·(dy - Σ dy·y);  log-softmax: dx = dy - exp(y)·Σ dy, per row.
// The row macros come from rows_per_invocation.glsl or rows_per_subgroup.glsl.

layout(std430, binding = 0) readonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Params { uint rows, cols, log_out; } p;

void main() {
  const uint r = ROW_INDEX;
  if (r >= p.rows) return;
  const uint base = r * p.cols;
  float total = 0.0;
  if (p.log_out != 0u) {
    for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) total += dy[base + c];
    total = ROW_SUM(total);
    for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) dx[base + c] = dy[base + c] - exp(y[base + c]) * total;
  } else {
    for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) total += dy[base + c] * y[base + c];
    total = ROW_SUM(total);
    for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) dx[base + c] = y[base + c] * (dy[base + c] - total);
  }
}
