#version 450
// softmax_backward.glsl, one row per invocation.
#include "rows_per_invocation.glsl"
#include "softmax_backward.glsl"
