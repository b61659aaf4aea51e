#include "eval/stats.h"

#include <array>
#include <cmath>
#include <string>

#include "engine/tensor.h"

namespace sparo {

MeanStd mean_std(const std::vector<double>& values) {
  if (values.empty()) throw Error("mean_std: no values");
  MeanStd r;
  r.n = values.size();
  for (double v : values) r.mean += v;
  r.mean /= static_cast<double>(r.n);
  if (r.n < 2) return r;
  double ss = 0;
  for (double v : values) ss += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(ss / static_cast<double>(r.n - 1));
  return r;
}

double t_quantile_975(size_t dof) {
  if (dof < 1) throw Error("t_quantile_975: degrees of freedom must be >= 1");
  static const std::array<double, 30> table = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                               2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                               2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (dof <= table.size()) return table[dof - 1];
  return 1.96 + 2.4 / static_cast<double>(dof);
}

PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || a.size() != b.size())
    throw Error("paired_difference: expected two equally long, non-empty series, got " + std::to_string(a.size()) +
                " and " + std::to_string(b.size()) + " values");
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = b[i] - a[i];
  const MeanStd m = mean_std(d);
  PairedDifference r;
  r.mean = m.mean;
  r.n = m.n;
  if (m.n < 2) {
    r.lo = r.hi = NAN;
    return r;
  }
  const double half = t_quantile_975(m.n - 1) * m.std / std::sqrt(static_cast<double>(m.n));
  r.lo = m.mean - half;
  r.hi = m.mean + half;
  return r;
}

}  // namespace sparo
