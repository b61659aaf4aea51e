#include "training/knn.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace sparo {

double knn_top1(const Tensor& train_features, const std::vector<int>& train_labels, const Tensor& test_features,
                const std::vector<int>& test_labels, int classes, int k, float temperature) {
  const int64_t n = train_features.dim() == 2 ? train_features.size(0) : 0;
  const int64_t m = test_features.dim() == 2 ? test_features.size(0) : 0;
  if (n < 1 || m < 1 || train_features.size(1) != test_features.size(1) ||
      static_cast<size_t>(n) != train_labels.size() || static_cast<size_t>(m) != test_labels.size())
    throw Error("knn_top1: expected train [N, E] and test [M, E] features with N and M labels, got " +
                shape_str(train_features.shape()) + " with " + std::to_string(train_labels.size()) + " labels and " +
                shape_str(test_features.shape()) + " with " + std::to_string(test_labels.size()));
  if (k < 1 || k > n) throw Error("knn_top1: k = " + std::to_string(k) + " must be in [1, " + std::to_string(n) + "]");
  NoGradGuard no_grad;
  const Tensor train = l2_normalize(train_features, -1);
  const Tensor test = l2_normalize(test_features.to(train_features.device()), -1);
  const std::vector<float> sims = matmul(test, train, false, true).to_float_vector();  // [M, N]
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::vector<double> votes(static_cast<size_t>(classes));
  int64_t hits = 0;
  for (int64_t i = 0; i < m; ++i) {
    const float* s = sims.data() + i * n;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [s](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    std::fill(votes.begin(), votes.end(), 0.0);
    const double top = s[order[0]];  // exp((sim - top) / T): the same ranking, no overflow
    for (int j = 0; j < k; ++j) {
      const int64_t t = order[static_cast<size_t>(j)];
      votes[static_cast<size_t>(train_labels[static_cast<size_t>(t)])] += std::exp((s[t] - top) / temperature);
    }
    // The best class; ties go to the lower class index.
    const auto best = std::max_element(votes.begin(), votes.end()) - votes.begin();
    hits += best == test_labels[static_cast<size_t>(i)];
  }
  return static_cast<double>(hits) / static_cast<double>(m);
}

}  // namespace sparo
