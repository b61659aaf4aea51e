/* The C API from C11, through libsparo.so, on the files capi_fixture writes (a tiny
 * SPARO-CLIP, a plain CLIP, a vocabulary, wrong inputs): embeddings are unit norm and
 * deterministic, zero-shot agrees with the same classifier computed here from the API's own
 * embeddings, and every error path returns its status with a message naming what was wrong.
 * (tests/capi/test_capi.cpp compares the embeddings with `sparo embed`'s.)
 *   test_capi_c FIXTURE_DIR */
#define _GNU_SOURCE /* RTLD_NODELETE */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparo/sparo.h"

static int failures = 0;
static char dir[4096];

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                            \
    }                                                                        \
  } while (0)

/* A call's status must be `want` and sparo_last_error() must contain `fragment`. */
static void expect_error(int line, sparo_status got, sparo_status want, const char* fragment) {
  if (got != want || strstr(sparo_last_error(), fragment) == NULL) {
    fprintf(stderr, "test_capi.c:%d: got %s \"%s\", want %s with \"%s\"\n", line, sparo_status_name(got),
            sparo_last_error(), sparo_status_name(want), fragment);
    ++failures;
  }
}
#define EXPECT_ERROR(call, want, fragment) expect_error(__LINE__, (call), (want), (fragment))

/* dir/name in one of 8 rotating buffers: valid until 8 more calls. */
static const char* path(const char* name) {
  static char buf[8][4200];
  static int next = 0;
  char* p = buf[next++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

/* count images of w × h with rows `stride` bytes apart (padding filled with 0xAB, which must
 * not be read): a pattern that differs per image. */
static uint8_t* make_images(int w, int h, int stride, int count) {
  uint8_t* rgb = malloc((size_t)count * h * stride);
  memset(rgb, 0xAB, (size_t)count * h * stride);
  for (int i = 0; i < count; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          rgb[(size_t)i * h * stride + (size_t)y * stride + 3 * x + c] = (uint8_t)(x * 5 + y * 3 + c * 70 + i * 40);
  return rgb;
}

static double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}

static void test_embeddings_and_zero_shot(sparo_model* model) {
  const int E = sparo_embed_dim(model), w = 40, h = 30, stride = 3 * w + 7, count = 3;
  if (E != 768) { /* L·V = 48·16; the buffers below assume it */
    fprintf(stderr, "embed_dim %d, expected 768\n", E);
    ++failures;
    return;
  }
  CHECK(sparo_image_size(model) == 32);
  uint8_t* rgb = make_images(w, h, stride, count);
  float* embeds = malloc(sizeof(float) * count * E);
  CHECK(sparo_embed_images(model, rgb, w, h, stride, count, embeds) == SPARO_OK);
  CHECK(strcmp(sparo_last_error(), "") == 0);
  for (int i = 0; i < count; ++i) CHECK(fabs(dot(embeds + i * E, embeds + i * E, E) - 1.0) < 1e-4);
  CHECK(fabs(dot(embeds, embeds + E, E) - 1.0) > 1e-6); /* different images, different embeddings */

  /* One image alone, from the middle of the batch, gives the same row. */
  float* one = malloc(sizeof(float) * E);
  CHECK(sparo_embed_images(model, rgb + (size_t)h * stride, w, h, stride, 1, one) == SPARO_OK);
  for (int e = 0; e < E; ++e) CHECK(fabsf(one[e] - embeds[E + e]) <= 1e-6f);
  /* The same image with packed rows: the stride is honoured and the padding never read. */
  uint8_t* packed = make_images(w, h, 3 * w, 1);
  CHECK(sparo_embed_images(model, packed, w, h, 3 * w, 1, one) == SPARO_OK);
  for (int e = 0; e < E; ++e) CHECK(fabsf(one[e] - embeds[e]) <= 1e-6f);
  free(packed);

  /* Zero-shot against the classifier built here from sparo_embed_texts. */
  const char* labels[] = {"shirt", "sneaker", "bag"};
  const char* templates[] = {"a photo of a {}", "a picture of a {}"};
  const char* prompts[] = {"a photo of a shirt",   "a picture of a shirt", "a photo of a sneaker",
                           "a picture of a sneaker", "a photo of a bag",     "a picture of a bag"};
  float* text = malloc(sizeof(float) * 6 * E);
  CHECK(sparo_embed_texts(model, prompts, 6, text) == SPARO_OK);
  int top1[3];
  float probs[3 * 3];
  CHECK(sparo_zero_shot(model, rgb, w, h, stride, count, labels, 3, templates, 2, top1, probs) == SPARO_OK);
  for (int i = 0; i < count; ++i) {
    double best = -2, sum = 0;
    int best_c = -1;
    for (int c = 0; c < 3; ++c) {
      double weight[768], norm = 0;
      for (int e = 0; e < E; ++e) weight[e] = (text[(2 * c) * E + e] + text[(2 * c + 1) * E + e]) / 2.0;
      for (int e = 0; e < E; ++e) norm += weight[e] * weight[e];
      double cosine = 0;
      for (int e = 0; e < E; ++e) cosine += weight[e] / sqrt(norm) * embeds[i * E + e];
      if (cosine > best) best = cosine, best_c = c;
      sum += probs[i * 3 + c];
    }
    CHECK(top1[i] == best_c);
    CHECK(fabs(sum - 1.0) < 1e-5);
    for (int c = 0; c < 3; ++c) CHECK(probs[i * 3 + c] <= probs[i * 3 + top1[i]]);
  }
  int bare[3]; /* no templates: the bare labels, probabilities not asked for */
  CHECK(sparo_zero_shot(model, rgb, w, h, stride, count, labels, 3, NULL, 0, bare, NULL) == SPARO_OK);

  /* SPARO attentions: slots × tokens per input, each slot's attention a distribution. */
  int slots = 0, tokens = 0;
  CHECK(sparo_attention_shape(model, SPARO_TOWER_IMAGE, &slots, &tokens) == SPARO_OK);
  CHECK(slots == 48 && tokens == 65);
  float* attention = malloc(sizeof(float) * count * slots * tokens);
  CHECK(sparo_embed_images_ex(model, rgb, w, h, stride, count, embeds, attention) == SPARO_OK);
  double row = 0;
  for (int t = 0; t < tokens; ++t) row += attention[t];
  CHECK(fabs(row - 1.0) < 1e-4);
  CHECK(sparo_attention_shape(model, SPARO_TOWER_TEXT, &slots, &tokens) == SPARO_OK);
  CHECK(slots == 48 && tokens == 32);

  free(attention);
  free(text);
  free(one);
  free(embeds);
  free(rgb);
}

static void test_argument_errors(sparo_model* model, sparo_model* plain) {
  uint8_t* rgb = make_images(8, 8, 24, 1);
  float out[768];
  int top1[1];
  const char* labels[] = {"shirt", NULL};
  const char* texts[] = {"a shirt", NULL};
  const char* no_slot[] = {"a photo"};
  EXPECT_ERROR(sparo_embed_images(NULL, rgb, 8, 8, 24, 1, out), SPARO_ERROR_INVALID_ARGUMENT, "model is NULL");
  EXPECT_ERROR(sparo_embed_images(model, NULL, 8, 8, 24, 1, out), SPARO_ERROR_INVALID_ARGUMENT, "rgb is NULL");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 8, 8, 24, 1, NULL), SPARO_ERROR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 0, 8, 24, 1, out), SPARO_ERROR_INVALID_ARGUMENT, "0 × 8");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 8, -3, 24, 1, out), SPARO_ERROR_INVALID_ARGUMENT, "8 × -3");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 8, 8, 24, 0, out), SPARO_ERROR_INVALID_ARGUMENT, "count must be positive, got 0");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 8, 8, 24, -2, out), SPARO_ERROR_INVALID_ARGUMENT, "got -2");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 8, 8, 23, 1, out), SPARO_ERROR_INVALID_ARGUMENT,
               "stride_bytes 23 is less than 3 × width = 24");
  EXPECT_ERROR(sparo_embed_images(model, rgb, 100000, 100000, 300000, 1, out), SPARO_ERROR_INVALID_ARGUMENT,
               "100000 × 100000 pixels");
  EXPECT_ERROR(sparo_embed_texts(model, NULL, 1, out), SPARO_ERROR_INVALID_ARGUMENT, "utf8 is NULL");
  EXPECT_ERROR(sparo_embed_texts(model, texts, 2, out), SPARO_ERROR_INVALID_ARGUMENT, "utf8[1] is NULL");
  EXPECT_ERROR(sparo_embed_texts(model, texts, 0, out), SPARO_ERROR_INVALID_ARGUMENT, "count must be positive");
  EXPECT_ERROR(sparo_embed_texts(model, texts, 1, NULL), SPARO_ERROR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 24, 1, NULL, 1, NULL, 0, top1, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "labels is NULL");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 24, 1, labels, 2, NULL, 0, top1, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "labels[1] is NULL");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 24, 1, labels, 0, NULL, 0, top1, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "n_labels must be positive, got 0");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 24, 1, labels, 1, no_slot, 1, top1, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "templates[0] \"a photo\" has no \"{}\"");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 24, 1, labels, 1, NULL, 2, top1, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "templates is NULL");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 24, 1, labels, 1, NULL, 0, NULL, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "top1_out is NULL");
  EXPECT_ERROR(sparo_zero_shot(model, rgb, 8, 8, 6, 1, labels, 1, NULL, 0, top1, NULL), SPARO_ERROR_INVALID_ARGUMENT,
               "stride_bytes 6");
  int slots, tokens;
  EXPECT_ERROR(sparo_attention_shape(model, 7, &slots, &tokens), SPARO_ERROR_INVALID_ARGUMENT, "got 7");
  EXPECT_ERROR(sparo_attention_shape(model, SPARO_TOWER_IMAGE, NULL, &tokens), SPARO_ERROR_INVALID_ARGUMENT, "NULL");
  /* What a plain CLIP cannot do. */
  float attention[1];
  EXPECT_ERROR(sparo_attention_shape(plain, SPARO_TOWER_IMAGE, &slots, &tokens), SPARO_ERROR_UNSUPPORTED, "no SPARO read-out");
  EXPECT_ERROR(sparo_embed_images_ex(plain, rgb, 8, 8, 24, 1, out, attention), SPARO_ERROR_UNSUPPORTED, "no SPARO read-out");
  EXPECT_ERROR(sparo_embed_texts(plain, texts, 1, out), SPARO_ERROR_UNSUPPORTED, "without a vocabulary");
  CHECK(sparo_embed_images(plain, rgb, 8, 8, 24, 1, out) == SPARO_OK);
  CHECK(fabs(dot(out, out, sparo_embed_dim(plain)) - 1.0) < 1e-4);
  CHECK(sparo_embed_dim(NULL) == 0 && sparo_image_size(NULL) == 0);
  free(rgb);
}

static void test_load_errors(void) {
  sparo_model* m = (sparo_model*)&failures; /* must be set to NULL on failure */
  char cfg[4200], ckpt[4200], vocab[4200]; /* copies: path() reuses its buffers */
  snprintf(cfg, sizeof cfg, "%s", path("model.json"));
  snprintf(ckpt, sizeof ckpt, "%s", path("model.safetensors"));
  snprintf(vocab, sizeof vocab, "%s", path("merges.txt"));
  EXPECT_ERROR(sparo_model_load(path("nothere.json"), ckpt, vocab, "cpu", &m), SPARO_ERROR_IO, "nothere.json: no such file");
  CHECK(m == NULL);
  EXPECT_ERROR(sparo_model_load(dir, ckpt, vocab, "cpu", &m), SPARO_ERROR_IO, "is a directory");
  EXPECT_ERROR(sparo_model_load(path("bad.json"), ckpt, vocab, "cpu", &m), SPARO_ERROR_MODEL, "bad.json");
  EXPECT_ERROR(sparo_model_load(cfg, path("nothere.safetensors"), vocab, "cpu", &m), SPARO_ERROR_IO,
               "checkpoint_path");
  EXPECT_ERROR(sparo_model_load(cfg, path("garbage.safetensors"), vocab, "cpu", &m), SPARO_ERROR_MODEL,
               "garbage.safetensors");
  EXPECT_ERROR(sparo_model_load(cfg, path("dino.safetensors"), vocab, "cpu", &m), SPARO_ERROR_MODEL, "missing keys");
  EXPECT_ERROR(sparo_model_load(path("plain.json"), ckpt, vocab, "cpu", &m), SPARO_ERROR_MODEL, "visual.sparo.q_emb");
  EXPECT_ERROR(sparo_model_load(cfg, ckpt, path("nothere.txt"), "cpu", &m), SPARO_ERROR_IO, "vocab_path");
  EXPECT_ERROR(sparo_model_load(cfg, ckpt, ckpt, "cpu", &m), SPARO_ERROR_MODEL, "model.safetensors");
  EXPECT_ERROR(sparo_model_load(cfg, ckpt, vocab, "gpu", &m), SPARO_ERROR_DEVICE, "device \"gpu\"");
  EXPECT_ERROR(sparo_model_load(cfg, ckpt, vocab, "vulkan:9", &m), SPARO_ERROR_DEVICE, "vulkan:9");
  EXPECT_ERROR(sparo_model_load(NULL, ckpt, vocab, "cpu", &m), SPARO_ERROR_INVALID_ARGUMENT, "config_path is NULL");
  EXPECT_ERROR(sparo_model_load(cfg, "", vocab, "cpu", &m), SPARO_ERROR_INVALID_ARGUMENT, "checkpoint_path is empty");
  EXPECT_ERROR(sparo_model_load(cfg, ckpt, vocab, "cpu", NULL), SPARO_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK(m == NULL);
  sparo_model_free(NULL);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_capi_c FIXTURE_DIR (written by capi_fixture)\n");
    return 2;
  }
  snprintf(dir, sizeof dir, "%s", argv[1]);
  /* The "vulkan:9" check opens the Vulkan driver and unloads it again; kept mapped, Mesa's
   * lavapipe stays nameable to LeakSanitizer, whose suppressions list its own small leaks
   * (tests/lsan_suppressions.txt; tests/vulkan_env.h does the same). No driver: no matter. */
  dlopen("/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
  CHECK(strcmp(sparo_version(), "") != 0);
  CHECK(strcmp(sparo_status_name(SPARO_ERROR_DEVICE), "SPARO_ERROR_DEVICE") == 0);
  sparo_model *model = NULL, *plain = NULL;
  if (sparo_model_load(path("model.json"), path("model.safetensors"), path("merges.txt"), NULL, &model) != SPARO_OK ||
      sparo_model_load(path("plain.json"), path("plain.safetensors"), NULL, "cpu", &plain) != SPARO_OK) {
    fprintf(stderr, "loading the fixture's models: %s\n", sparo_last_error());
    return 1;
  }
  test_embeddings_and_zero_shot(model);
  test_argument_errors(model, plain);
  test_load_errors();
  sparo_model_free(plain);
  sparo_model_free(model);
  if (failures) fprintf(stderr, "%d checks failed\n", failures);
  else printf("all C API checks passed\n");
  return failures ? 1 : 0;
}
