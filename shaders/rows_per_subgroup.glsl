// Row kernels, one row per subgroup (devices with subgroup arithmetic): the lanes of a
// subgroup stride over the row's columns, so neighbouring lanes read neighbouring memory,
// and combine their partials with subgroupAdd / subgroupMax. A workgroup of 256 holds
// gl_NumSubgroups rows; the host dispatches for the device's largest subgroup size, and a
// driver that runs smaller subgroups only covers more rows per workgroup. Every lane of a
// subgroup has the same row, so the bounds check retires whole subgroups.
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "common.glsl"

#define ROW_INDEX ((gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * gl_NumSubgroups + gl_SubgroupID)
#define ROW_LANE gl_SubgroupInvocationID
#define ROW_LANES gl_SubgroupSize
#define ROW_SUM(v) subgroupAdd(v)
#define ROW_MAX(v) subgroupMax(v)
