// Statistics over seeds for the experiment's table: mean ± sample standard deviation per arm
// and the paired difference of two arms with its 95 % confidence interval (Student's t over
// the seeds: each seed trains both arms on the same data order, so the differences are paired).
#pragma once

#include <cstddef>
#include <vector>

namespace sparo {

struct MeanStd {
  double mean = 0, std = 0;  // std: sample standard deviation (n − 1); 0 for one value
  size_t n = 0;
};
MeanStd mean_std(const std::vector<double>& values);  // values must not be empty

// The two-sided 97.5 % quantile of Student's t with `dof` degrees of freedom (dof >= 1), as
// scipy.stats.t.ppf(0.975, dof): tabulated to 30, then the normal's 1.96 limit approached as
// 1.96 + 2.4 / dof (within 0.002 of the exact value for dof > 30).
double t_quantile_975(size_t dof);

// b[i] − a[i] over paired seeds: mean, and the 95 % interval mean ± t · sd / √n; with one
// pair the interval is undefined (lo = hi = NaN). a and b must have the same, non-zero size.
struct PairedDifference {
  double mean = 0, lo = 0, hi = 0;
  size_t n = 0;
  bool excludes_zero() const { return n >= 2 && (lo > 0 || hi < 0); }
};
PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace sparo
