// Evaluation metrics (eval/metrics.h) on hand-made embeddings whose answers are worked out in
// the comments: zero-shot weights and accuracy, top-k with ties, retrieval recall in both
// directions, DINO's weighted k-NN vote, and the linear probe on Gaussian blobs.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops.h"
#include "eval/metrics.h"
#include "training/knn.h"
#include "tests/expect_error.h"

namespace sparo {
namespace {

Tensor matrix(const std::vector<std::vector<float>>& rows) {
  std::vector<float> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return Tensor::from_vector(flat, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

void expect_floats_near(const std::vector<float>& got, const std::vector<float>& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "at " << i;
}

// ---- zero-shot --------------------------------------------------------------------------

TEST(EvalZeroShot, WeightsAreTheRenormalisedMeanOfNormalisedTemplates) {
  // Class 0: (2,0,0) and (0,3,0) normalise to e0 and e1, mean (.5,.5,0), renormalised (1,1,0)/√2.
  // Class 1: (0,0,5) and (0,4,3) normalise to (0,0,1) and (0,.8,.6), mean (0,.4,.8) -> (0,1,2)/√5.
  // Without the per-template normalisation class 0 would lean to e1 (2 < 3).
  const Tensor text = matrix({{2, 0, 0}, {0, 3, 0}, {0, 0, 5}, {0, 4, 3}});
  const Tensor w = zero_shot_weights(text, 2, 2);
  ASSERT_EQ(w.shape(), (Shape{2, 3}));
  const float r2 = 1.0f / std::sqrt(2.0f), r5 = 1.0f / std::sqrt(5.0f);
  expect_floats_near(w.to_float_vector(), {r2, r2, 0, 0, r5, 2 * r5}, 1e-6f);
}

TEST(EvalZeroShot, WeightsRejectARowCountThatIsNotClassesTimesTemplates) {
  const Tensor text = Tensor::ones({5, 3});
  expect_error([&] { zero_shot_weights(text, 2, 2); }, {"zero_shot_weights", "[5, 3]", "2 × 2"});
  expect_error([&] { zero_shot_weights(text, 0, 5); }, {"zero_shot_weights", ">= 1"});
  expect_error([&] { zero_shot_weights(Tensor::ones({4}), 2, 2); }, {"zero_shot_weights", "text_embeds", "[N, E]", "[4]"});
}

TEST(EvalZeroShot, AccuracyOnAConstructedCase) {
  // Classes are the axes; the last image points at class 0 but is labelled 2.
  const Tensor weights = matrix({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}});
  const Tensor images = matrix({{0.9f, 0.1f, 0}, {0, 1, 0}, {0.2f, 0.1f, 0.9f}, {1, 0, 0}});
  const TopK acc = zero_shot_accuracy(images, weights, {0, 1, 2, 2});
  EXPECT_DOUBLE_EQ(acc.top1, 0.75);
  EXPECT_DOUBLE_EQ(acc.top5, 1.0);  // only 3 classes: top-5 is top-3
  EXPECT_EQ(acc.count, 4);
  expect_error([&] { zero_shot_accuracy(images, Tensor::ones({3, 2}), {0, 1, 2, 2}); },
               {"zero_shot_accuracy", "[4, 3]", "[3, 2]", "same embedding width"});
  expect_error([&] { zero_shot_accuracy(images, weights, {0, 1, 3, 2}); }, {"zero_shot_accuracy", "labels[2] = 3", "[0, 3)"});
}

TEST(EvalZeroShot, GroupedUsesEachImagesOwnGroupWeights) {
  // Group 0 maps class c to axis c, group 1 swaps the two classes. The images point at axes
  // 0, 1, 0, 1: in group 0 they are classes 0, 1, 0, 1; in group 1 classes 1, 0, 1, 0.
  const Tensor identity = matrix({{1, 0}, {0, 1}});
  const Tensor swapped = matrix({{0, 1}, {1, 0}});
  const Tensor images = matrix({{1, 0}, {0, 1}, {0.9f, 0.1f}, {0.2f, 0.8f}});
  const TopK right = grouped_zero_shot_accuracy(images, {identity, swapped}, {0, 0, 1, 1}, {0, 1, 1, 0});
  EXPECT_DOUBLE_EQ(right.top1, 1.0);
  EXPECT_EQ(right.count, 4);
  // One set of weights for everything gets the group-1 images wrong.
  EXPECT_DOUBLE_EQ(grouped_zero_shot_accuracy(images, {identity, swapped}, {0, 0, 0, 0}, {0, 1, 1, 0}).top1, 0.5);
  expect_error([&] { grouped_zero_shot_accuracy(images, {identity, swapped}, {0, 2, 1, 1}, {0, 1, 1, 0}); },
               {"grouped_zero_shot_accuracy", "groups[1] = 2", "[0, 2)"});
  expect_error([&] { grouped_zero_shot_accuracy(images, {identity, Tensor::ones({3, 2})}, {0, 0, 1, 1}, {0, 1, 1, 0}); },
               {"grouped_zero_shot_accuracy", "group_weights[1]", "[3, 2]", "2 classes"});
}

// ---- top-k ---------------------------------------------------------------------------

TEST(EvalClassify, TopFiveCountsRanksBelowFive) {
  // Scores 6..0 over 7 classes; the label is chosen to have rank 0, 4, 5 and 2.
  const std::vector<float> row = {6, 5, 4, 3, 2, 1, 0};
  const Tensor scores = matrix({row, row, row, row});
  const TopK acc = classify_accuracy(scores, {0, 4, 5, 2});
  EXPECT_DOUBLE_EQ(acc.top1, 0.25);
  EXPECT_DOUBLE_EQ(acc.top5, 0.75);
  EXPECT_EQ(acc.count, 4);
}

TEST(EvalClassify, TiesGoToTheSmallerClassIndex) {
  // Equal scores: class 0 is ranked first, class 6 last (rank 6).
  const Tensor scores = matrix({std::vector<float>(7, 1.0f), std::vector<float>(7, 1.0f), std::vector<float>(7, 1.0f)});
  const TopK acc = classify_accuracy(scores, {0, 4, 6});
  EXPECT_DOUBLE_EQ(acc.top1, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(acc.top5, 2.0 / 3.0);
}

TEST(EvalClassify, RejectsBadLabelsAndNonFiniteScores) {
  const Tensor scores = matrix({{1, 2}, {3, 4}});
  expect_error([&] { classify_accuracy(scores, {0}); }, {"classify_accuracy", "1 labels", "[2, 2]"});
  expect_error([&] { classify_accuracy(scores, {0, -1}); }, {"classify_accuracy", "labels[1] = -1"});
  expect_error([&] { classify_accuracy(matrix({{1, NAN}}), {0}); }, {"classify_accuracy", "non-finite"});
  expect_error([&] { classify_accuracy(Tensor::zeros({0, 3}), {}); }, {"classify_accuracy", "[N, C]", "[0, 3]"});
}

// ---- retrieval --------------------------------------------------------------------------

TEST(EvalRetrieval, IdenticalEmbeddingsRecallEverything) {
  // 12 orthogonal images, each with two captions equal to it.
  std::vector<float> eye(144, 0.0f);
  for (int i = 0; i < 12; ++i) eye[static_cast<size_t>(i * 13)] = 1.0f;
  const Tensor images = Tensor::from_vector(eye, {12, 12});
  std::vector<int64_t> text_image;
  for (int64_t i = 0; i < 24; ++i) text_image.push_back(i % 12);
  const Recall r = retrieval_recall(images, concat({images, images}, 0), text_image);
  for (double v : {r.i2t_r1, r.i2t_r5, r.i2t_r10, r.t2i_r1, r.t2i_r5, r.t2i_r10}) EXPECT_DOUBLE_EQ(v, 1.0);
}

TEST(EvalRetrieval, ShiftedCaptionsHaveKnownRanks) {
  // Images are the 12 axes; text j has component v[(j - i) mod 12] = 12 - (j - i) mod 12 on axis
  // i, so the similarity of image i and text j ranks (j - i) mod 12 in both directions. Text j
  // belongs to image p(j): p is the identity on 0..5 and a shift by 3 within 6..11, so
  // (j - p(j)) mod 12 is 0 for six texts, 9 for j = 6, 7, 8 and 3 for j = 9, 10, 11.
  const int n = 12;
  std::vector<float> text(n * n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) text[static_cast<size_t>(j * n + i)] = static_cast<float>(n - ((j - i + n) % n));
  std::vector<float> eye(n * n, 0.0f);
  for (int i = 0; i < n; ++i) eye[static_cast<size_t>(i * (n + 1))] = 1.0f;
  const std::vector<int64_t> text_image = {0, 1, 2, 3, 4, 5, 9, 10, 11, 6, 7, 8};
  const Recall r = retrieval_recall(Tensor::from_vector(eye, {n, n}), Tensor::from_vector(text, {n, n}), text_image);
  EXPECT_DOUBLE_EQ(r.i2t_r1, 0.5);
  EXPECT_DOUBLE_EQ(r.i2t_r5, 0.75);
  EXPECT_DOUBLE_EQ(r.i2t_r10, 1.0);
  EXPECT_DOUBLE_EQ(r.t2i_r1, 0.5);
  EXPECT_DOUBLE_EQ(r.t2i_r5, 0.75);
  EXPECT_DOUBLE_EQ(r.t2i_r10, 1.0);
}

TEST(EvalRetrieval, TwoCaptionsAndUnnormalisedImages) {
  // Unit texts; image 0 owns t0 and t1, image 1 owns t2, image 2 owns t3.
  //   image→text: image 0's best text is its own t1 (.8) -> hit; image 1 sees t0 .8, t3 .8, t2 .6
  //   -> its caption ranks 2; image 2 sees t2 .8, then t1 .6, t3 .6 -> rank 2. R@1 = 1/3.
  //   text→image: t0 (.6,.8,0) prefers image 1, t1 image 0 (hit), t2 and t3 each prefer the
  //   other image -> R@1 = 1/4.
  // The images' norms (5, 1, 0.5) must not matter: both sides are normalised.
  const Tensor images = matrix({{5, 0, 0}, {0, 1, 0}, {0, 0, 0.5f}});
  const Tensor texts = matrix({{0.6f, 0.8f, 0}, {0.8f, 0, 0.6f}, {0, 0.6f, 0.8f}, {0, 0.8f, 0.6f}});
  const Recall r = retrieval_recall(images, texts, {0, 0, 1, 2});
  EXPECT_DOUBLE_EQ(r.i2t_r1, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.t2i_r1, 0.25);
  EXPECT_DOUBLE_EQ(r.i2t_r5, 1.0);
  EXPECT_DOUBLE_EQ(r.t2i_r5, 1.0);
}

TEST(EvalRetrieval, RejectsBadCaptionMaps) {
  const Tensor images = Tensor::ones({2, 3}), texts = Tensor::ones({3, 3});
  expect_error([&] { retrieval_recall(images, texts, {0, 1}); }, {"retrieval_recall", "2 entries", "[3, 3]"});
  expect_error([&] { retrieval_recall(images, texts, {0, 1, 2}); }, {"retrieval_recall", "text_image[2] = 2", "[0, 2)"});
  expect_error([&] { retrieval_recall(images, texts, {0, 0, 0}); }, {"retrieval_recall", "image 1 has no caption"});
  expect_error([&] { retrieval_recall(images, Tensor::ones({3, 4}), {0, 1, 1}); }, {"retrieval_recall", "same embedding width"});
}

// ---- k-NN -----------------------------------------------------------------------------

TEST(EvalKnn, SeparableClustersAreAllRight) {
  // Three classes around three axes of a 4-D space, small noise.
  Generator gen(7);
  const int per_class = 10;
  std::vector<float> noise = Tensor::randn({6 * per_class, 4}, gen).to_float_vector();
  std::vector<float> train, test;
  std::vector<int> train_y, test_y;
  for (int s = 0; s < 2 * 3 * per_class; ++s) {
    const int c = s % 3;
    std::vector<float>& dst = s < 3 * per_class ? train : test;
    (s < 3 * per_class ? train_y : test_y).push_back(c);
    for (int f = 0; f < 4; ++f) dst.push_back((f == c ? 1.0f : 0.0f) + 0.1f * noise[static_cast<size_t>(s * 4 + f)]);
  }
  const TopK acc = knn_accuracy(Tensor::from_vector(train, {3 * per_class, 4}), train_y,
                                Tensor::from_vector(test, {3 * per_class, 4}), test_y, 3, 5);
  EXPECT_DOUBLE_EQ(acc.top1, 1.0);
  EXPECT_DOUBLE_EQ(acc.top5, 1.0);
  EXPECT_EQ(acc.count, 3 * per_class);
}

TEST(EvalKnn, WeightedVoteBeatsMajority) {
  // The test point is (1, 0). Its 3 nearest train points: one of class 1 at cosine 0.9, two of
  // class 0 at cosine 0.1; two class-2 points point away. With T = 0.07 the single close
  // neighbour outweighs the two far ones (e^{0.9/0.07} > 2 e^{0.1/0.07}); with T = 100 the
  // weights are nearly equal and the majority (class 0) wins.
  const float s9 = std::sqrt(1.0f - 0.81f), s1 = std::sqrt(1.0f - 0.01f);
  const Tensor train = matrix({{0.1f, s1}, {0.9f, s9}, {-1, 0}, {0.1f, -s1}, {-1, 0.1f}});
  const std::vector<int> train_y = {0, 1, 2, 0, 2};
  const Tensor test = matrix({{1, 0}, {2, 0}, {1, 0}});  // norms do not matter
  const std::vector<int> test_y = {1, 1, 2};
  const TopK weighted = knn_accuracy(train, train_y, test, test_y, 3, 3, 0.07f);
  EXPECT_DOUBLE_EQ(weighted.top1, 2.0 / 3.0);
  // Class 2 got no vote: never a top-5 hit, although there are only 3 classes.
  EXPECT_DOUBLE_EQ(weighted.top5, 2.0 / 3.0);
  const TopK flat = knn_accuracy(train, train_y, test, test_y, 3, 3, 100.0f);
  EXPECT_DOUBLE_EQ(flat.top1, 0.0);
  EXPECT_DOUBLE_EQ(flat.top5, 2.0 / 3.0);
  // k = 5 brings in both class-2 points: the third test sample now has a vote for its class.
  EXPECT_DOUBLE_EQ(knn_accuracy(train, train_y, test, test_y, 3, 5, 0.07f).top5, 1.0);
}

TEST(EvalKnn, RejectsBadArguments) {
  const Tensor train = Tensor::ones({4, 2}), test = Tensor::ones({2, 2});
  const std::vector<int> ty = {0, 1, 0, 1}, sy = {0, 1};
  expect_error([&] { knn_accuracy(train, ty, test, sy, 2, 5); }, {"knn_accuracy", "k = 5", "[1, 4]", "[4, 2]"});
  expect_error([&] { knn_accuracy(train, ty, test, sy, 2, 0); }, {"knn_accuracy", "k = 0"});
  expect_error([&] { knn_accuracy(train, ty, test, sy, 2, 2, 0.0f); }, {"knn_accuracy", "temperature"});
  expect_error([&] { knn_accuracy(train, {0, 1, 2, 0}, test, sy, 2, 2); }, {"knn_accuracy", "train_labels[2] = 2", "[0, 2)"});
  expect_error([&] { knn_accuracy(train, ty, Tensor::ones({2, 3}), sy, 2, 2); }, {"knn_accuracy", "same embedding width"});
  expect_error([&] { knn_accuracy(train, ty, test, {0}, 2, 2); }, {"knn_accuracy", "test_labels", "1 labels"});
}

// ---- linear probe --------------------------------------------------------------------------

// Three Gaussian blobs in 5-D, centres 4 apart on three axes, all shifted by 100 (which the
// standardisation must undo), unit noise.
void blobs(int per_class, Generator& gen, Tensor& x, std::vector<int>& y) {
  const std::vector<float> noise = Tensor::randn({3 * per_class, 5}, gen).to_float_vector();
  std::vector<float> values;
  y.clear();
  for (int s = 0; s < 3 * per_class; ++s) {
    const int c = s % 3;
    y.push_back(c);
    for (int f = 0; f < 5; ++f) values.push_back(100.0f + (f == c ? 4.0f : 0.0f) + noise[static_cast<size_t>(s * 5 + f)]);
  }
  x = Tensor::from_vector(values, {3 * per_class, 5});
}

TEST(EvalLinearProbe, SeparatesBlobsDeterministically) {
  Generator gen(3);
  Tensor train, val, test;
  std::vector<int> train_y, val_y, test_y;
  blobs(30, gen, train, train_y);
  blobs(15, gen, val, val_y);
  blobs(30, gen, test, test_y);
  LinearProbeOptions options;
  options.lrs = {1e-2f, 1e-1f};
  options.weight_decays = {0.0f, 1e-2f};
  options.epochs = 30;
  options.batch = 32;  // mini-batches: the shuffled order is exercised
  options.seed = 5;
  const LinearProbeResult a = linear_probe(train, train_y, val, val_y, test, test_y, 3, options);
  EXPECT_GT(a.test.top1, 0.95);
  EXPECT_GT(a.val_top1, 0.9);
  EXPECT_EQ(a.test.count, 90);
  EXPECT_TRUE(a.lr == 1e-2f || a.lr == 1e-1f) << a.lr;
  EXPECT_TRUE(a.weight_decay == 0.0f || a.weight_decay == 1e-2f) << a.weight_decay;

  const LinearProbeResult b = linear_probe(train, train_y, val, val_y, test, test_y, 3, options);
  EXPECT_EQ(a.test.top1, b.test.top1);
  EXPECT_EQ(a.test.top5, b.test.top5);
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.weight_decay, b.weight_decay);
  EXPECT_EQ(a.val_top1, b.val_top1);
}

TEST(EvalLinearProbe, SingleGridPointAndFullBatch) {
  Generator gen(11);
  Tensor train, val, test;
  std::vector<int> train_y, val_y, test_y;
  blobs(20, gen, train, train_y);
  blobs(10, gen, val, val_y);
  blobs(20, gen, test, test_y);
  LinearProbeOptions options;
  options.lrs = {5e-2f};
  options.weight_decays = {1e-4f};
  options.epochs = 40;
  options.batch = 1000;
  const LinearProbeResult r = linear_probe(train, train_y, val, val_y, test, test_y, 3, options);
  EXPECT_EQ(r.lr, 5e-2f);
  EXPECT_EQ(r.weight_decay, 1e-4f);
  EXPECT_GT(r.test.top1, 0.95);
}

TEST(EvalLinearProbe, RejectsBadOptionsAndInputs) {
  const Tensor x = Tensor::ones({4, 2});
  const std::vector<int> y = {0, 1, 0, 1};
  LinearProbeOptions options;
  options.lrs = {};
  expect_error([&] { linear_probe(x, y, x, y, x, y, 2, options); }, {"linear_probe", "options.lrs"});
  options.lrs = {1e-2f, -1.0f};
  expect_error([&] { linear_probe(x, y, x, y, x, y, 2, options); }, {"linear_probe", "options.lrs[1]"});
  options.lrs = {1e-2f};
  options.weight_decays = {NAN};
  expect_error([&] { linear_probe(x, y, x, y, x, y, 2, options); }, {"linear_probe", "options.weight_decays[0]"});
  options.weight_decays = {0.0f};
  options.epochs = 0;
  expect_error([&] { linear_probe(x, y, x, y, x, y, 2, options); }, {"linear_probe", "options.epochs = 0"});
  expect_error([&] { linear_probe(x, y, x, {0, 1, 2, 0}, x, y, 2); }, {"linear_probe", "val_y[2] = 2"});
  expect_error([&] { linear_probe(x, y, x, y, Tensor::ones({4, 3}), y, 2); }, {"linear_probe", "test_x", "same embedding width"});
  expect_error([&] { linear_probe(Tensor::from_vector(std::vector<float>{1, NAN, 0, 0, 1, 1, 2, 2}, {4, 2}), y, x, y, x, y, 2); },
               {"linear_probe", "non-finite"});
}

// ---- retrieval with caption-identical scenes ------------------------------------------------

TEST(EvalRetrieval, ScenesWithTheSameCaptionAreInterchangeable) {
  // Images 0 and 1 share a caption (group 0); image 2 is alone. Text j is caption j of image j.
  // Text 0 is closest to image 1 and image 0 closest to text 1: wrong without groups, right with.
  const Tensor images = matrix({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}});
  const Tensor texts = matrix({{0.1f, 1, 0}, {1, 0, 0}, {0, 0, 1}});  // t0 ≈ image 1, t1 = image 0
  const Recall plain = retrieval_recall(images, texts, {0, 1, 2});
  EXPECT_DOUBLE_EQ(plain.i2t_r1, 1.0 / 3.0);  // only image 2 finds its own caption first
  EXPECT_DOUBLE_EQ(plain.t2i_r1, 1.0 / 3.0);
  const Recall grouped = retrieval_recall(images, texts, {0, 1, 2}, {0, 0, 2});
  EXPECT_DOUBLE_EQ(grouped.i2t_r1, 1.0);
  EXPECT_DOUBLE_EQ(grouped.t2i_r1, 1.0);
  expect_error([&] { retrieval_recall(images, texts, {0, 1, 2}, {0, 0}); }, {"retrieval_recall", "image_group has 2 entries"});
}

TEST(EvalKnn, TheTrainingMonitorAgreesWithTheEvaluation) {
  // training/knn.h's top-1 (the DINO k-NN monitor) against knn_accuracy on random features
  // whose classes overlap, so that votes are close and ranking details matter.
  Generator gen(7);
  const Tensor train = Tensor::randn({300, 16}, gen), test = Tensor::randn({120, 16}, gen);
  std::vector<int> train_y, test_y;
  for (int i = 0; i < 300; ++i) train_y.push_back(i % 5);
  for (int i = 0; i < 120; ++i) test_y.push_back((i * 7) % 5);
  const Tensor shift = Tensor::randn({5, 16}, gen);
  const auto shifted = [&](const Tensor& x, const std::vector<int>& y) {
    std::vector<int32_t> idx(y.begin(), y.end());
    return add(x, index_select(shift, 0, Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())})));
  };
  const Tensor a = shifted(train, train_y), b = shifted(test, test_y);
  for (int k : {1, 5, 20}) {
    const double expected = knn_accuracy(a, train_y, b, test_y, 5, k).top1;
    EXPECT_DOUBLE_EQ(knn_top1(a, train_y, b, test_y, 5, k), expected) << "k " << k;
    EXPECT_GT(expected, 0.3);  // far from chance (0.2): the test means something
  }
  expect_error([&] { knn_top1(a, train_y, b, test_y, 5, 301); }, {"knn_top1", "k = 301"});
  expect_error([&] { knn_top1(a, {0, 1}, b, test_y, 5); }, {"knn_top1", "2 labels"});
}

}  // namespace
}  // namespace sparo
