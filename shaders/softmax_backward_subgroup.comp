#version 450
// softmax_backward.glsl, one row per subgroup.
#include "rows_per_subgroup.glsl"
#include "softmax_backward.glsl"
