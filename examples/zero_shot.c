/* zero_shot: classify image files with a CLIP or SPARO-CLIP model through sparo's C API.
 *
 *   zero_shot CONFIG CHECKPOINT VOCAB LABEL,LABEL,... IMAGE...
 *
 * prints one line per image, "IMAGE: LABEL (PROBABILITY)", and exits with 1 if any image
 * failed. Images are decoded with stb_image (Debian's libstb-dev), as an app would bring its
 * own decoder: the C API takes pixels, not files. (stb_image 2.27 mis-decodes some crafted
 * JPEGs, see image/image.cpp; an app that takes untrusted files should use a hardened
 * decoder.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "sparo/sparo.h"

enum { kMaxLabels = 256 };

int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s CONFIG CHECKPOINT VOCAB LABEL,LABEL,... IMAGE...\n", argv[0]);
    return 2;
  }
  const char* labels[kMaxLabels];
  int n_labels = 0;
  for (char* label = strtok(argv[4], ","); label && n_labels < kMaxLabels; label = strtok(NULL, ","))
    labels[n_labels++] = label;

  sparo_model* model = NULL;
  if (sparo_model_load(argv[1], argv[2], argv[3], "cpu", &model) != SPARO_OK) {
    fprintf(stderr, "zero_shot: %s\n", sparo_last_error());
    return 1;
  }
  /* Several phrasings per label, averaged into one class weight (OpenCLIP's prompt ensemble). */
  const char* templates[] = {"a photo of a {}.", "a picture of a {}.", "{}"};
  float* probs = malloc(sizeof(float) * (size_t)n_labels); /* ours: sparo writes into it */
  int failed = probs == NULL;
  for (int i = 5; i < argc && probs; ++i) {
    int width, height;
    unsigned char* rgb = stbi_load(argv[i], &width, &height, NULL, 3); /* packed RGB8 rows */
    if (!rgb) {
      fprintf(stderr, "zero_shot: %s: %s\n", argv[i], stbi_failure_reason());
      failed = 1;
      continue;
    }
    int top1;
    if (sparo_zero_shot(model, rgb, width, height, 3 * width, 1, labels, n_labels, templates, 3, &top1, probs) ==
        SPARO_OK) {
      printf("%s: %s (%.3f)\n", argv[i], labels[top1], probs[top1]);
    } else {
      fprintf(stderr, "zero_shot: %s: %s\n", argv[i], sparo_last_error());
      failed = 1;
    }
    stbi_image_free(rgb);
  }
  free(probs);
  sparo_model_free(model);
  return failed;
}
