// Mixed-precision matmul (MatmulPrecision::bf16): operands rounded to bfloat16, to nearest
// even, as the CPU backend's round_to_bf16 (engine/cpu/gemm.h) does; NaN stays NaN. The
// products of rounded values are exact in f32, so both backends compute the same sums.
float round_bf16(float x) {
  uint u = floatBitsToUint(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uintBitsToFloat((u | 0x00400000u) & 0xFFFF0000u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uintBitsToFloat(u & 0xFFFF0000u);
}

// The matmul shaders' flags (push constant): bit 0 adds to C, bit 1 rounds the inputs.
const uint kMatmulAccumulate = 1u;
const uint kMatmulBf16 = 2u;
