// Evaluation metrics on embeddings: OpenCLIP's zero-shot classification and retrieval,
// DINO's weighted k-NN, and a linear probe. Pure functions of the embeddings (no model code).
//
// Embeddings are f32 [N, E] on any device; they stay there for the heavy products (engine
// matmul) and only scores or small statistics are copied to the host. Rows are expected to be
// L2-normalised; where the reference protocol normalises (retrieval, k-NN), so do we.
//
// Ranking ties are broken by the smaller index (a class, text or image listed first wins), so
// every result is deterministic. Non-finite scores are an error, never a silent miss.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

// Checks that `tensor` is f32 [N, E] with N, E >= 1; the error names the function and the
// argument, e.g. "knn_accuracy: test_features must be f32 [N, E] with both sizes >= 1, got f32 [0, 4]".
void check_embeddings(const char* function, const char* name, const Tensor& tensor);

// Top-1 / top-5 accuracy over `count` samples. Top-5 looks at the min(5, C) best classes.
struct TopK {
  double top1 = 0, top5 = 0;
  int64_t count = 0;
};

// OpenCLIP's zero-shot classifier: for each class, the text embeddings of all its templates
// L2-normalised, averaged, then re-normalised. text_embeds [C·T, E] is class-major (class c,
// template t at row c·T + t). Returns [C, E] on text_embeds' device.
Tensor zero_shot_weights(const Tensor& text_embeds, int64_t classes, int64_t templates);

// scores [N, C] (higher is better), labels in [0, C): the label's rank among the C scores.
TopK classify_accuracy(const Tensor& scores, const std::vector<int>& labels);

// classify_accuracy of image_embeds [N, E] · class_weightsᵀ [E, C].
TopK zero_shot_accuracy(const Tensor& image_embeds, const Tensor& class_weights, const std::vector<int>& labels);

// Conditional zero-shot: image i is classified with the class weights of its group groups[i]
// (e.g. prompts naming the place the question is about, when other items are in the picture).
// group_weights[g] is [C, E], the same C for every group.
TopK grouped_zero_shot_accuracy(const Tensor& image_embeds, const std::vector<Tensor>& group_weights,
                                const std::vector<int>& groups, const std::vector<int>& labels);

// OpenCLIP's retrieval metric. Image i's captions are the texts j with text_image[j] == i; every
// image needs at least one. image→text recall@K: the fraction of images with at least one of
// their captions among the K texts most similar to the image; text→image recall@K: the fraction
// of texts whose image is among the K images most similar to the text. Cosine similarity (both
// sides normalised).
// image_group (optional, one entry per image) makes images interchangeable: images of the same
// group share their captions, so an image's caption is also correct for every image of its group
// and a text's image is any image of that group (scenes whose captions are identical: the
// caption cannot tell them apart). Empty: every image is its own group, as OpenCLIP.
struct Recall {
  double i2t_r1 = 0, i2t_r5 = 0, i2t_r10 = 0, t2i_r1 = 0, t2i_r5 = 0, t2i_r10 = 0;
};
Recall retrieval_recall(const Tensor& image_embeds, const Tensor& text_embeds, const std::vector<int64_t>& text_image,
                        const std::vector<int64_t>& image_group = {});

// DINO's weighted k-NN classifier (eval_knn.py): cosine similarity of the L2-normalised test
// features to the L2-normalised train features, the k most similar train samples each vote for
// their class with weight exp(sim / temperature), classes ranked by their summed votes. A class
// that got no vote never counts as a top-5 hit (as DINO's top-min(5, k)). 1 <= k <= train size.
TopK knn_accuracy(const Tensor& train_features, const std::vector<int>& train_labels, const Tensor& test_features,
                  const std::vector<int>& test_labels, int classes, int k = 20, float temperature = 0.07f);

// Linear probe: multinomial logistic regression (a Linear layer, cross-entropy) on frozen
// features, trained with AdamW (weight decay on the weight, not the bias) from a zero
// initialisation for a fixed number of epochs of mini-batches (batch >= rows: full batch) in an
// order drawn from the seed; features are standardised with the mean and standard deviation of
// the set the classifier is fit on (a feature whose std is below 1e-6 is only centred). Every
// (lr, weight decay) of the grid is fit on train and scored by top-1 on val (the first best in
// grid order, lr outer, wins); the chosen pair is then refit on train + val and evaluated on
// test. Deterministic for a seed. val_x and test_x are moved to train_x's device.
struct LinearProbeOptions {
  std::vector<float> lrs = {1e-3f, 1e-2f, 1e-1f};
  std::vector<float> weight_decays = {0.0f, 1e-4f, 1e-2f};
  int epochs = 100;
  int64_t batch = 256;
  uint64_t seed = 0;
};
struct LinearProbeResult {
  TopK test;
  float lr = 0, weight_decay = 0;
  double val_top1 = 0;  // the chosen pair's validation top-1
};
LinearProbeResult linear_probe(const Tensor& train_x, const std::vector<int>& train_y, const Tensor& val_x,
                               const std::vector<int>& val_y, const Tensor& test_x, const std::vector<int>& test_y,
                               int classes, const LinearProbeOptions& options = {});

}  // namespace sparo
