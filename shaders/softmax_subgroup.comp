#version 450
// softmax.glsl, one row per subgroup.
#include "rows_per_subgroup.glsl"
#include "softmax.glsl"
