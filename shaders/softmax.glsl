// softmax / log-softmax over each row of x [rows, cols], with an optional additive mask
// mapped by a broadcast plan (dims and the mask's strides over x's index space).
// The row macros come from rows_per_invocation.glsl or rows_per_subgroup.glsl.

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer M { float mask[]; };
layout(std430, binding = 2) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint dims[8];
  uint mask_strides[8];
  uint rank, rows, cols, flags;  // flags: 1 = log, 2 = has mask
} p;

float shifted(uint r, uint c) {
  const uint index = r * p.cols + c;
  if ((p.flags & 2u) == 0u) return x[index];
  uint rem = index, off = 0u;
  for (int axis = int(p.rank) - 1; axis >= 0; --axis) {
    off += (rem % p.dims[axis]) * p.mask_strides[axis];
    rem /= p.dims[axis];
  }
  return x[index] + mask[off];
}

void main() {
  const uint r = ROW_INDEX;
  if (r >= p.rows) return;
  const bool log_out = (p.flags & 1u) != 0u;
  float m = uintBitsToFloat(0xff800000u);
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) m = max(m, shifted(r, c));
  m = ROW_MAX(m);
  if (isinf(m) && m < 0.0) {  // everything masked: no probability mass
    for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) y[r * p.cols + c] = log_out ? uintBitsToFloat(0xff800000u) : 0.0;
    return;
  }
  float total = 0.0;
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) total += exp(shifted(r, c) - m);
  total = ROW_SUM(total);
  const float log_total = log(total);
  for (uint c = ROW_LANE; c < p.cols; c += ROW_LANES) {
    const float s = shifted(r, c) - m;
    y[r * p.cols + c] = log_out ? s - log_total : exp(s) / total;
  }
}
