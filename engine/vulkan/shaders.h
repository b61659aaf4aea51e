// The compute shaders of shaders/*.comp, compiled by glslc at build time and embedded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparo::vk {

struct EmbeddedShader {
  const char* name;     // the .comp file's name without extension
  const uint32_t* spirv;
  size_t words;
};

const std::vector<EmbeddedShader>& embedded_shaders();

}  // namespace sparo::vk
