#version 450
// layer_norm_backward.glsl, one row per invocation.
#include "rows_per_invocation.glsl"
#include "layer_norm_backward.glsl"
