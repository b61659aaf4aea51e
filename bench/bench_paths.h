// What the benchmarks in bench/ share: which python runs the PyTorch column, and where the
// source tree's files are (the build may have been carried to another machine).
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

#ifndef SPARO_SOURCE_DIR
#define SPARO_SOURCE_DIR "."
#endif

namespace sparo::bench {

// SPARO_BENCH_PYTHON when set, else `fallback` (Debian's /usr/bin/python3 has torch here; a
// GPU machine's torch is the python3 on its PATH).
inline std::string python_path(const char* fallback = "/usr/bin/python3") {
  const char* p = std::getenv("SPARO_BENCH_PYTHON");
  return p && *p ? p : fallback;
}

// A file of the source tree: under SPARO_SOURCE_DIR, else relative to the working
// directory (a build carried elsewhere runs from the checkout's root there).
inline std::string source_path(const std::string& relative) {
  const std::string in_tree = std::string(SPARO_SOURCE_DIR) + "/" + relative;
  return std::ifstream(in_tree).good() ? in_tree : relative;
}

}  // namespace sparo::bench
