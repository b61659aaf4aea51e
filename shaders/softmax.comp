#version 450
// softmax.glsl, one row per invocation.
#include "rows_per_invocation.glsl"
#include "softmax.glsl"
