// The k-NN classifier of DINO's eval_knn.py, top-1 only, for monitoring a run while it trains
// (training/dino_task.cpp). The evaluation's knn_accuracy (eval/metrics.h) is the full version
// (top-5, every input checked); a test holds the two to the same answers.
#pragma once

#include <vector>

#include "engine/tensor.h"

namespace sparo {

// Cosine similarity of each test row to every train row, the k most similar vote for their
// class with weight exp(sim / temperature); the fraction of test rows whose best class is
// their label. Features [N, E] and [M, E] (any device), labels in [0, classes).
double knn_top1(const Tensor& train_features, const std::vector<int>& train_labels, const Tensor& test_features,
                const std::vector<int>& test_labels, int classes, int k = 20, float temperature = 0.07f);

}  // namespace sparo
