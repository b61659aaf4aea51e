// dx = rstd·(g - mean(g) - x̂·mean(g·x̂)), g = dy·w, per row.
// The row macros come from rows_per_invocation.glsl or rows_per_subgroup.glsl.

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer Mean { float mean[]; };
layout(std430, binding = 3) readonly buffer Rstd { float rstd[]; };
layout(std430, binding = 4) readonly buffer DY { float dy[]; };
layout(std430, binding = 5) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Params { uint rows, cols; } p;

void main() {
  const uint r = ROW_INDEX;
  if (r >= p.rows) return;
  const uint base = r * p.cols;
  const float mu = mean[r], inv = rstd[r];
  float sum_g = 0.0, sum_gx = 0.0;
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) {
    const float g = dy[base + c] * w[c];
    sum_g += g;
    sum_gx += g * (x[base + c] - mu) * inv;
  }
  const float mean_g = ROW_SUM(sum_g) / float(p.cols), mean_gx = ROW_SUM(sum_gx) / float(p.cols);
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) {
    const float xhat = (x[base + c] - mu) * inv;
    dx[base + c] = inv * (dy[base + c] * w[c] - mean_g - xhat * mean_gx);
  }
}
