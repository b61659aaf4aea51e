// What the benchmarks in bench/ share: which python runs the PyTorch column, where the source
// tree's files are (the build may have been carried to another machine), medians and the
// machine's load average.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

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

// The median (0 for none).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The 1-minute load average, and all three as printed by uptime.
inline double load_1min() {
  std::ifstream f("/proc/loadavg");
  double a = 0;
  f >> a;
  return a;
}
inline std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace sparo::bench
