#version 450
// layer_norm.glsl, one row per subgroup.
#include "rows_per_subgroup.glsl"
#include "layer_norm.glsl"
