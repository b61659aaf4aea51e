#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "training/data/sample_rng.h"
#include "training/optimizer.h"

namespace sparo {

namespace {

// f32, two axes, neither empty; `axes` names them for the message, e.g. "[N, C]".
void check_matrix(const char* function, const char* name, const Tensor& tensor, const std::string& axes) {
  if (!tensor.defined()) throw Error(std::string(function) + ": " + name + " is undefined, expected f32 " + axes);
  if (tensor.dtype() != DType::f32 || tensor.dim() != 2 || tensor.size(0) < 1 || tensor.size(1) < 1)
    throw Error(std::string(function) + ": " + name + " must be f32 " + axes + " with both sizes >= 1, got " +
                dtype_name(tensor.dtype()) + " " + shape_str(tensor.shape()));
}

}  // namespace

void check_embeddings(const char* function, const char* name, const Tensor& tensor) {
  check_matrix(function, name, tensor, "[N, E]");
}

namespace {

std::string fn_arg(const char* function, const char* name) { return std::string(function) + ": " + name; }

void check_same_width(const char* function, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  if (a.size(1) != b.size(1))
    throw Error(fn_arg(function, a_name) + " " + shape_str(a.shape()) + " and " + b_name + " " + shape_str(b.shape()) +
                " must have the same embedding width");
}

// One label per row, each in [0, classes).
void check_labels(const char* function, const char* name, const std::vector<int>& labels, int64_t rows,
                  const std::string& rows_of, int64_t classes) {
  if (static_cast<int64_t>(labels.size()) != rows)
    throw Error(fn_arg(function, name) + " has " + std::to_string(labels.size()) + " labels, expected one per row of " +
                rows_of + " (" + std::to_string(rows) + ")");
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      throw Error(fn_arg(function, name) + "[" + std::to_string(i) + "] = " + std::to_string(labels[i]) +
                  " is outside [0, " + std::to_string(classes) + ")");
}

void check_finite(const char* function, const char* what, const std::vector<float>& values) {
  for (float v : values)
    if (!std::isfinite(v)) throw Error(std::string(function) + ": " + what + " contain a non-finite value (" + std::to_string(v) + ")");
}

// The rank of `target` among values[0, n): how many entries come before it when sorted by
// value, descending, ties by the smaller index.
template <typename T>
int64_t rank_of(const T* values, int64_t n, int64_t target) {
  int64_t rank = 0;
  for (int64_t i = 0; i < n; ++i)
    if (values[i] > values[target] || (values[i] == values[target] && i < target)) ++rank;
  return rank;
}

// Calls row_fn(i, scores of row i) for every row i of a · bᵀ, computed in blocks of rows so
// the host never holds more than a few million scores at once.
void for_each_score_row(const char* function, const Tensor& a, const Tensor& b,
                        const std::function<void(int64_t, const float*)>& row_fn) {
  const int64_t rows = a.size(0), cols = b.size(0);
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / cols);
  for (int64_t start = 0; start < rows; start += block) {
    const int64_t end = std::min(rows, start + block);
    const std::vector<float> scores = matmul(slice(a, 0, start, end), b, false, true).to_float_vector();
    check_finite(function, "similarities", scores);
    for (int64_t i = start; i < end; ++i) row_fn(i, scores.data() + (i - start) * cols);
  }
}

// Adds the hits of one sample to a TopK holding counts (divided by count at the end).
void count_hit(TopK& acc, int64_t rank, int64_t top5_ranks, bool can_hit = true) {
  if (can_hit && rank == 0) acc.top1 += 1;
  if (can_hit && rank < top5_ranks) acc.top5 += 1;
  ++acc.count;
}

TopK finish(TopK acc) {
  acc.top1 /= static_cast<double>(acc.count);
  acc.top5 /= static_cast<double>(acc.count);
  return acc;
}

}  // namespace

Tensor zero_shot_weights(const Tensor& text_embeds, int64_t classes, int64_t templates) {
  check_embeddings("zero_shot_weights", "text_embeds", text_embeds);
  if (classes < 1 || templates < 1 || text_embeds.size(0) != classes * templates)
    throw Error("zero_shot_weights: text_embeds " + shape_str(text_embeds.shape()) + " must have classes × templates = " +
                std::to_string(classes) + " × " + std::to_string(templates) + " rows (both >= 1)");
  NoGradGuard no_grad;
  const Tensor per_template = l2_normalize(reshape(text_embeds, {classes, templates, text_embeds.size(1)}), -1);
  return l2_normalize(mean(per_template, 1), -1);
}

TopK classify_accuracy(const Tensor& scores, const std::vector<int>& labels) {
  check_matrix("classify_accuracy", "scores", scores, "[N, C]");
  const int64_t n = scores.size(0), classes = scores.size(1);
  check_labels("classify_accuracy", "labels", labels, n, "scores " + shape_str(scores.shape()), classes);
  const std::vector<float> host = scores.to_float_vector();
  check_finite("classify_accuracy", "scores", host);
  TopK acc;
  for (int64_t i = 0; i < n; ++i)
    count_hit(acc, rank_of(host.data() + i * classes, classes, labels[static_cast<size_t>(i)]), std::min<int64_t>(5, classes));
  return finish(acc);
}

TopK zero_shot_accuracy(const Tensor& image_embeds, const Tensor& class_weights, const std::vector<int>& labels) {
  check_embeddings("zero_shot_accuracy", "image_embeds", image_embeds);
  check_embeddings("zero_shot_accuracy", "class_weights", class_weights);
  check_same_width("zero_shot_accuracy", "image_embeds", image_embeds, "class_weights", class_weights);
  check_labels("zero_shot_accuracy", "labels", labels, image_embeds.size(0), "image_embeds " + shape_str(image_embeds.shape()),
               class_weights.size(0));
  NoGradGuard no_grad;
  // An image's norm scales all its class scores alike, so OpenCLIP's normalisation is not needed here.
  return classify_accuracy(matmul(image_embeds, class_weights.to(image_embeds.device()), false, true), labels);
}

TopK grouped_zero_shot_accuracy(const Tensor& image_embeds, const std::vector<Tensor>& group_weights,
                                const std::vector<int>& groups, const std::vector<int>& labels) {
  const char* fn = "grouped_zero_shot_accuracy";
  check_embeddings(fn, "image_embeds", image_embeds);
  if (group_weights.empty()) throw Error(std::string(fn) + ": no group weights");
  const int64_t classes = group_weights[0].dim() == 2 ? group_weights[0].size(0) : 0;
  for (size_t g = 0; g < group_weights.size(); ++g) {
    const std::string name = "group_weights[" + std::to_string(g) + "]";
    check_embeddings(fn, name.c_str(), group_weights[g]);
    check_same_width(fn, "image_embeds", image_embeds, name.c_str(), group_weights[g]);
    if (group_weights[g].size(0) != classes)
      throw Error(std::string(fn) + ": " + name + " is " + shape_str(group_weights[g].shape()) + ", expected " +
                  std::to_string(classes) + " classes as group_weights[0]");
  }
  const std::string rows_of = "image_embeds " + shape_str(image_embeds.shape());
  check_labels(fn, "labels", labels, image_embeds.size(0), rows_of, classes);
  check_labels(fn, "groups", groups, image_embeds.size(0), rows_of, static_cast<int64_t>(group_weights.size()));
  NoGradGuard no_grad;
  // One product with every group's classes side by side; each row ranks its label among its group's C.
  std::vector<Tensor> on_device;
  for (const Tensor& w : group_weights) on_device.push_back(w.to(image_embeds.device()));
  TopK acc;
  for_each_score_row(fn, image_embeds, concat(on_device, 0), [&](int64_t i, const float* s) {
    const size_t row = static_cast<size_t>(i);
    count_hit(acc, rank_of(s + groups[row] * classes, classes, labels[row]), std::min<int64_t>(5, classes));
  });
  return finish(acc);
}

Recall retrieval_recall(const Tensor& image_embeds, const Tensor& text_embeds, const std::vector<int64_t>& text_image,
                        const std::vector<int64_t>& image_group) {
  check_embeddings("retrieval_recall", "image_embeds", image_embeds);
  check_embeddings("retrieval_recall", "text_embeds", text_embeds);
  check_same_width("retrieval_recall", "image_embeds", image_embeds, "text_embeds", text_embeds);
  const int64_t images = image_embeds.size(0), texts = text_embeds.size(0);
  if (static_cast<int64_t>(text_image.size()) != texts)
    throw Error("retrieval_recall: text_image has " + std::to_string(text_image.size()) + " entries, expected one per row of text_embeds " +
                shape_str(text_embeds.shape()));
  std::vector<std::vector<int64_t>> captions(static_cast<size_t>(images));
  for (size_t j = 0; j < text_image.size(); ++j) {
    if (text_image[j] < 0 || text_image[j] >= images)
      throw Error("retrieval_recall: text_image[" + std::to_string(j) + "] = " + std::to_string(text_image[j]) +
                  " is outside [0, " + std::to_string(images) + ") (image_embeds " + shape_str(image_embeds.shape()) + ")");
    captions[static_cast<size_t>(text_image[j])].push_back(static_cast<int64_t>(j));
  }
  for (size_t i = 0; i < captions.size(); ++i)
    if (captions[i].empty()) throw Error("retrieval_recall: image " + std::to_string(i) + " has no caption in text_image");
  if (!image_group.empty() && static_cast<int64_t>(image_group.size()) != images)
    throw Error("retrieval_recall: image_group has " + std::to_string(image_group.size()) +
                " entries, expected one per row of image_embeds " + shape_str(image_embeds.shape()));
  // The members of each image's group (itself alone without groups).
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(images));
  if (image_group.empty()) {
    for (int64_t i = 0; i < images; ++i) members[static_cast<size_t>(i)] = {i};
  } else {
    std::map<int64_t, std::vector<int64_t>> by_group;
    for (int64_t i = 0; i < images; ++i) by_group[image_group[static_cast<size_t>(i)]].push_back(i);
    for (int64_t i = 0; i < images; ++i) members[static_cast<size_t>(i)] = by_group[image_group[static_cast<size_t>(i)]];
  }

  NoGradGuard no_grad;
  const Tensor img = l2_normalize(image_embeds, -1);
  const Tensor txt = l2_normalize(text_embeds.to(image_embeds.device()), -1);
  Recall r;
  // The best-ranked correct answer decides whether a query is answered within K.
  const auto best_of = [](const float* s, int64_t first, const auto& candidates) {
    int64_t best = first;
    for (int64_t c : candidates)
      if (s[c] > s[best]) best = c;
    return best;
  };
  for_each_score_row("retrieval_recall", img, txt, [&](int64_t i, const float* s) {
    int64_t best = captions[static_cast<size_t>(i)].front();
    for (int64_t m : members[static_cast<size_t>(i)]) best = best_of(s, best, captions[static_cast<size_t>(m)]);
    const int64_t rank = rank_of(s, texts, best);
    r.i2t_r1 += rank < 1;
    r.i2t_r5 += rank < 5;
    r.i2t_r10 += rank < 10;
  });
  for_each_score_row("retrieval_recall", txt, img, [&](int64_t j, const float* s) {
    const int64_t target = text_image[static_cast<size_t>(j)];
    const int64_t rank = rank_of(s, images, best_of(s, target, members[static_cast<size_t>(target)]));
    r.t2i_r1 += rank < 1;
    r.t2i_r5 += rank < 5;
    r.t2i_r10 += rank < 10;
  });
  for (double* v : {&r.i2t_r1, &r.i2t_r5, &r.i2t_r10}) *v /= static_cast<double>(images);
  for (double* v : {&r.t2i_r1, &r.t2i_r5, &r.t2i_r10}) *v /= static_cast<double>(texts);
  return r;
}

TopK knn_accuracy(const Tensor& train_features, const std::vector<int>& train_labels, const Tensor& test_features,
                  const std::vector<int>& test_labels, int classes, int k, float temperature) {
  check_embeddings("knn_accuracy", "train_features", train_features);
  check_embeddings("knn_accuracy", "test_features", test_features);
  check_same_width("knn_accuracy", "train_features", train_features, "test_features", test_features);
  if (classes < 1) throw Error("knn_accuracy: classes = " + std::to_string(classes) + ", expected >= 1");
  const int64_t train_rows = train_features.size(0);
  if (k < 1 || k > train_rows)
    throw Error("knn_accuracy: k = " + std::to_string(k) + " must be in [1, " + std::to_string(train_rows) +
                "] (train_features " + shape_str(train_features.shape()) + ")");
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    throw Error("knn_accuracy: temperature = " + std::to_string(temperature) + ", expected positive and finite");
  check_labels("knn_accuracy", "train_labels", train_labels, train_rows, "train_features " + shape_str(train_features.shape()), classes);
  check_labels("knn_accuracy", "test_labels", test_labels, test_features.size(0), "test_features " + shape_str(test_features.shape()),
               classes);

  NoGradGuard no_grad;
  const Tensor train = l2_normalize(train_features, -1);
  const Tensor test = l2_normalize(test_features.to(train_features.device()), -1);
  std::vector<int64_t> order(static_cast<size_t>(train_rows));
  std::vector<double> votes(static_cast<size_t>(classes));
  TopK acc;
  for_each_score_row("knn_accuracy", test, train, [&](int64_t i, const float* s) {
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [s](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    // exp((sim - max sim) / T) is DINO's exp(sim / T) times one factor per test sample: the
    // same ranking, without overflow at small temperatures.
    std::fill(votes.begin(), votes.end(), 0.0);
    const double top = s[order[0]];
    for (int j = 0; j < k; ++j)
      votes[static_cast<size_t>(train_labels[static_cast<size_t>(order[static_cast<size_t>(j)])])] +=
          std::exp((static_cast<double>(s[order[static_cast<size_t>(j)]]) - top) / temperature);
    const int label = test_labels[static_cast<size_t>(i)];
    count_hit(acc, rank_of(votes.data(), classes, label), std::min(5, classes), votes[static_cast<size_t>(label)] > 0.0);
  });
  return finish(acc);
}

namespace {

// x ↦ (x - mean) / std per feature, with the statistics of the rows it was fit on.
struct Standardiser {
  Tensor mean, inv_std;  // [1, E] on the features' device

  explicit Standardiser(const Tensor& x) {
    const int64_t n = x.size(0), e = x.size(1);
    const std::vector<float> host = x.to_float_vector();
    check_finite("linear_probe", "features", host);
    std::vector<double> m(static_cast<size_t>(e), 0.0), var(static_cast<size_t>(e), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t f = 0; f < e; ++f) m[static_cast<size_t>(f)] += host[static_cast<size_t>(i * e + f)];
    for (double& v : m) v /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t f = 0; f < e; ++f) {
        const double d = host[static_cast<size_t>(i * e + f)] - m[static_cast<size_t>(f)];
        var[static_cast<size_t>(f)] += d * d;
      }
    std::vector<float> mean_f(static_cast<size_t>(e)), inv_f(static_cast<size_t>(e));
    for (size_t f = 0; f < m.size(); ++f) {
      const double sd = std::sqrt(var[f] / static_cast<double>(n));
      mean_f[f] = static_cast<float>(m[f]);
      // A (nearly) constant feature carries no information; dividing would only blow up rounding noise.
      inv_f[f] = sd < 1e-6 ? 1.0f : static_cast<float>(1.0 / sd);
    }
    mean = Tensor::from_vector(mean_f, {1, e}, x.device());
    inv_std = Tensor::from_vector(inv_f, {1, e}, x.device());
  }
  Tensor operator()(const Tensor& x) const { return mul(sub(x, mean), inv_std); }
};

struct LinearClassifier {
  Standardiser standardise;
  Tensor weight, bias;  // [C, E], [C]

  Tensor scores(const Tensor& x) const {
    NoGradGuard no_grad;
    return linear(standardise(x), weight, bias);
  }
};

LinearClassifier fit_linear(const Tensor& x, const std::vector<int>& y, int classes, float lr, float weight_decay,
                            const LinearProbeOptions& options) {
  Standardiser standardise(x);
  const Device device = x.device();
  const int64_t n = x.size(0), e = x.size(1);
  Tensor xs;
  {
    NoGradGuard no_grad;
    xs = standardise(x.detach());
  }
  // Logistic regression is convex, so a zero start loses nothing and needs no random draw.
  Tensor weight = Tensor::zeros({classes, e}, DType::f32, device).requires_grad_();
  Tensor bias = Tensor::zeros({classes}, DType::f32, device).requires_grad_();
  AdamW optimizer({ParamGroup{{weight}, weight_decay, 1.0f, "weight"}, ParamGroup{{bias}, 0.0f, 1.0f, "bias"}}, lr);

  const bool full_batch = options.batch >= n;
  const Tensor all_targets = Tensor::from_vector(std::vector<int32_t>(y.begin(), y.end()), {n}, device);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    if (!full_batch) {
      SampleRng rng(options.seed, static_cast<uint64_t>(epoch));
      for (int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.below(i + 1))]);
    }
    for (int64_t start = 0; start < n; start += options.batch) {
      const int64_t end = std::min(n, start + options.batch);
      Tensor bx = xs, by = all_targets;
      if (!full_batch) {
        const std::vector<int32_t> rows(order.begin() + start, order.begin() + end);
        std::vector<int32_t> targets;
        for (int32_t r : rows) targets.push_back(y[static_cast<size_t>(r)]);
        bx = index_select(xs, 0, Tensor::from_vector(rows, {end - start}, device));
        by = Tensor::from_vector(targets, {end - start}, device);
      }
      optimizer.zero_grad();
      cross_entropy(linear(bx, weight, bias), by).backward();
      optimizer.step();
    }
  }
  return {standardise, weight.detach(), bias.detach()};
}

}  // namespace

LinearProbeResult linear_probe(const Tensor& train_x, const std::vector<int>& train_y, const Tensor& val_x,
                               const std::vector<int>& val_y, const Tensor& test_x, const std::vector<int>& test_y,
                               int classes, const LinearProbeOptions& options) {
  const char* fn = "linear_probe";
  check_embeddings(fn, "train_x", train_x);
  check_embeddings(fn, "val_x", val_x);
  check_embeddings(fn, "test_x", test_x);
  check_same_width(fn, "train_x", train_x, "val_x", val_x);
  check_same_width(fn, "train_x", train_x, "test_x", test_x);
  if (classes < 1) throw Error("linear_probe: classes = " + std::to_string(classes) + ", expected >= 1");
  check_labels(fn, "train_y", train_y, train_x.size(0), "train_x " + shape_str(train_x.shape()), classes);
  check_labels(fn, "val_y", val_y, val_x.size(0), "val_x " + shape_str(val_x.shape()), classes);
  check_labels(fn, "test_y", test_y, test_x.size(0), "test_x " + shape_str(test_x.shape()), classes);
  if (options.lrs.empty() || options.weight_decays.empty())
    throw Error("linear_probe: options.lrs and options.weight_decays must each hold at least one value");
  for (size_t i = 0; i < options.lrs.size(); ++i)
    if (!(options.lrs[i] > 0.0f) || !std::isfinite(options.lrs[i]))
      throw Error("linear_probe: options.lrs[" + std::to_string(i) + "] = " + std::to_string(options.lrs[i]) +
                  ", expected positive and finite");
  for (size_t i = 0; i < options.weight_decays.size(); ++i)
    if (!(options.weight_decays[i] >= 0.0f) || !std::isfinite(options.weight_decays[i]))
      throw Error("linear_probe: options.weight_decays[" + std::to_string(i) + "] = " +
                  std::to_string(options.weight_decays[i]) + ", expected >= 0 and finite");
  if (options.epochs < 1 || options.batch < 1)
    throw Error("linear_probe: options.epochs = " + std::to_string(options.epochs) + " and options.batch = " +
                std::to_string(options.batch) + " must both be >= 1");

  const Device device = train_x.device();
  const Tensor val = val_x.to(device), test = test_x.to(device);
  LinearProbeResult result;
  bool first = true;
  for (float lr : options.lrs)
    for (float wd : options.weight_decays) {
      const LinearClassifier clf = fit_linear(train_x, train_y, classes, lr, wd, options);
      const double top1 = classify_accuracy(clf.scores(val), val_y).top1;
      if (first || top1 > result.val_top1) {
        result.lr = lr;
        result.weight_decay = wd;
        result.val_top1 = top1;
        first = false;
      }
    }

  Tensor train_val;
  {
    NoGradGuard no_grad;
    train_val = concat({train_x.detach(), val.detach()}, 0);
  }
  std::vector<int> train_val_y = train_y;
  train_val_y.insert(train_val_y.end(), val_y.begin(), val_y.end());
  const LinearClassifier final_clf = fit_linear(train_val, train_val_y, classes, result.lr, result.weight_decay, options);
  result.test = classify_accuracy(final_clf.scores(test), test_y);
  return result;
}

}  // namespace sparo
