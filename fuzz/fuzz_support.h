// Shared by the harnesses. Every harness holds the same contract for its parser: any input
// gives a result or a sparo::Error, never a crash, a hang, a leak or undefined behaviour.
// Anything else escaping the parser (another exception type included) reaches libFuzzer as a
// crash, which keeps the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/tensor.h"  // sparo::Error
#include "tests/temp_dir.h"

namespace sparo::fuzz {

// Parsers whose entry point is a path read the input from a file: one scratch folder per
// fuzzer process, removed at exit (scripts/fuzz.sh points TMPDIR into build-fuzz/, so a
// crashed run leaves nothing elsewhere).
inline const TempDir& scratch() {
  static const TempDir dir("fuzz");
  return dir;
}

// Writes bytes to scratch()/name, replacing it, and returns the path.
inline std::string write_file(const std::string& name, const void* data, size_t size) {
  const std::string path = scratch() / name;
  // A new file each time: ext4 flushes a file truncated and rewritten in place at its close
  // (auto_da_alloc), which made the file-based harnesses 30 times slower.
  std::remove(path.c_str());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();  // the harness cannot work: stop the run rather than fuzz nothing
  }
  return path;
}

// A property that every successful parse must have; a failure is a finding.
inline void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz check failed: %s\n", what);
  std::abort();
}

}  // namespace sparo::fuzz
