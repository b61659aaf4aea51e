// Shared by every compute shader: one workgroup of 256 invocations per 256 elements,
// 2-D dispatch for tensors larger than 65535 workgroups in x.
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

uint global_index() {
  return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
}
