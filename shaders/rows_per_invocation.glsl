// Row kernels, one row per invocation (any device): the lane macros of the row bodies
// (softmax.glsl, ...) reduce to a plain loop.
#include "common.glsl"

#define ROW_INDEX global_index()
#define ROW_LANE 0u
#define ROW_LANES 1u
#define ROW_SUM(v) (v)
#define ROW_MAX(v) (v)
