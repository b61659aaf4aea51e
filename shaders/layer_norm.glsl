// y = (x - mean)·rstd·w + b over each row of x [rows, cols]; saves mean and rstd.
// The row macros come from rows_per_invocation.glsl or rows_per_subgroup.glsl.

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
layout(std430, binding = 4) writeonly buffer Mean { float mean[]; };
layout(std430, binding = 5) writeonly buffer Rstd { float rstd[]; };
layout(push_constant) uniform Params { uint rows, cols, has_bias; float eps; } p;

void main() {
  const uint r = ROW_INDEX;
  if (r >= p.rows) return;
  const uint base = r * p.cols;
  float s = 0.0;
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) s += x[base + c];
  const float mu = ROW_SUM(s) / float(p.cols);
  float sq = 0.0;  // two passes: no cancellation for rows with a large mean
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) { const float d = x[base + c] - mu; sq += d * d; }
  const float inv = 1.0 / sqrt(ROW_SUM(sq) / float(p.cols) + p.eps);
  if (ROW_LANE == 0u) {
    mean[r] = mu;
    rstd[r] = inv;
  }
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES)
    y[base + c] = (x[base + c] - mu) * inv * w[c] + (p.has_bias != 0u ? b[c] : 0.0);
}
