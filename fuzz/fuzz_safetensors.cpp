// safetensors::parse on arbitrary bytes. A file it accepts must also go through the engine's
// conversions (to_f32 / to_i32, which may refuse a dtype with an error) and come back the
// same through serialize and parse: the writer emits only what the strict reader accepts.
#include "engine/safetensors.h"
#include "fuzz/fuzz_support.h"

using namespace sparo::safetensors;
using sparo::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Contents contents;
  try {
    contents = parse(data, size, "fuzz input");
  } catch (const sparo::Error&) {
    return 0;
  }
  for (const TensorRecord& t : contents.tensors) {
    try {
      (void)to_f32(t);
    } catch (const sparo::Error&) {
    }
    try {
      (void)to_i32(t);
    } catch (const sparo::Error&) {
    }
  }
  const std::vector<uint8_t> bytes = serialize(contents.tensors, contents.metadata);
  const Contents back = parse(bytes.data(), bytes.size(), "fuzz input, rewritten");
  check(back.metadata == contents.metadata, "metadata changed by serialize + parse");
  check(back.tensors.size() == contents.tensors.size(), "tensor count changed by serialize + parse");
  for (size_t i = 0; i < back.tensors.size(); ++i) {
    const TensorRecord &a = contents.tensors[i], &b = back.tensors[i];
    check(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes,
          "a tensor changed by serialize + parse");
  }
  return 0;
}
