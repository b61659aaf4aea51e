/* sparo.h — the C API of sparo: embed images and texts with a CLIP or SPARO-CLIP model and
 * classify images zero-shot, from C or any language with a C FFI (Swift, Rust, Go, Python).
 *
 * C11, no C++ types; no C++ exception ever crosses it: every function returns a status (or a
 * value documented below) and sparo_last_error() says what went wrong. docs/LIBRARY.md has
 * the whole story: building, linking, a complete example, ownership, threads, the ABI promise.
 *
 * Ownership: a model comes from sparo_model_load and goes back with sparo_model_free. Every
 * output buffer is the caller's, allocated by the caller with the size each function states;
 * sparo never keeps a pointer it was given past the call.
 *
 * Threads: calls on one model are serialised by a lock inside the model (safe from any
 * thread, not parallel); different models may be used from different threads at once. Each
 * call itself runs on the engine's worker threads (all cores; SPARO_THREADS=N limits them).
 */
#ifndef SPARO_SPARO_H
#define SPARO_SPARO_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
/* libsparo.so is built with hidden visibility: only what carries SPARO_API is exported. */
#define SPARO_API __attribute__((visibility("default")))
#else
#define SPARO_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a function is added (the ABI only grows within one SONAME, see LIBRARY.md). */
#define SPARO_C_API_VERSION 1

typedef enum sparo_status {
  SPARO_OK = 0,
  SPARO_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, a size <= 0, a stride too small, ... */
  SPARO_ERROR_IO = 2,               /* a file is missing or cannot be read */
  SPARO_ERROR_MODEL = 3,            /* a config, checkpoint or vocabulary is malformed or does not fit */
  SPARO_ERROR_DEVICE = 4,           /* an unknown device string, or a device not available */
  SPARO_ERROR_UNSUPPORTED = 5,      /* the model cannot do this: attention without SPARO, text without a vocabulary */
  SPARO_ERROR_OUT_OF_MEMORY = 6,
  SPARO_ERROR_INTERNAL = 7          /* anything else; the message says what */
} sparo_status;

/* Which tower's attentions sparo_attention_shape describes. */
typedef enum sparo_tower { SPARO_TOWER_IMAGE = 0, SPARO_TOWER_TEXT = 1 } sparo_tower;

typedef struct sparo_model sparo_model; /* opaque */

/* "0.1.0": the library's version (static storage, never freed). */
SPARO_API const char* sparo_version(void);

/* The message of the last failed call on this thread (naming the path, argument or shape at
 * fault), or "" when the last call succeeded. Valid until this thread's next sparo_* call. */
SPARO_API const char* sparo_last_error(void);

/* "SPARO_OK", "SPARO_ERROR_IO", ... ("unknown status" otherwise); static storage.
 * Enum values are passed as int here and in sparo_attention_shape: a C caller may pass any
 * int, and C++, which implements the API, may not even read an enum outside its values. */
SPARO_API const char* sparo_status_name(int status);

/* Loads a CLIP model as `sparo embed` does: config_path an OpenCLIP-schema JSON
 * (the presets in models/configs/), checkpoint_path its safetensors weights (every key and shape is
 * checked), vocab_path the BPE merges file (.txt or .txt.gz), or NULL for a model that embeds
 * images only. device: "cpu", "vulkan" or "vulkan:N"; NULL means "cpu". On success *out is
 * the model; on failure *out is NULL. */
SPARO_API sparo_status sparo_model_load(const char* config_path, const char* checkpoint_path, const char* vocab_path,
                                        const char* device, sparo_model** out);

/* Frees the model; NULL is allowed and does nothing. */
SPARO_API void sparo_model_free(sparo_model* model);

/* The width E of every embedding (SPARO: L·V), or 0 for NULL. */
SPARO_API int sparo_embed_dim(const sparo_model* model);

/* The input side of the image tower, in pixels (images of any size are resized to it), or 0 for NULL. */
SPARO_API int sparo_image_size(const sparo_model* model);

/* Unit-norm embeddings of `count` RGB images of one size: image i starts at
 * rgb + i·height·stride_bytes; each row holds width pixels of 3 bytes (R, G, B) and starts
 * stride_bytes after the previous one (stride_bytes >= 3·width). Preprocessing is OpenCLIP's
 * evaluation one (shorter side resized bicubically to sparo_image_size, centre crop, CLIP
 * normalisation). out: count × sparo_embed_dim floats, row-major. */
SPARO_API sparo_status sparo_embed_images(sparo_model* model, const uint8_t* rgb, int width, int height,
                                          int stride_bytes, int count, float* out);

/* Unit-norm embeddings of `count` UTF-8, NUL-terminated texts (cut to the model's context
 * length as OpenCLIP does). out: count × sparo_embed_dim floats. Needs a vocabulary. */
SPARO_API sparo_status sparo_embed_texts(sparo_model* model, const char* const* utf8, int count, float* out);

/* SPARO slot attentions (tower: a sparo_tower): for a SPARO model, the size of one input's attention, slots × tokens
 * (image: tokens = patches + 1 for the class token; text: tokens = the context length).
 * SPARO_ERROR_UNSUPPORTED for a model without the SPARO read-out. */
SPARO_API sparo_status sparo_attention_shape(const sparo_model* model, int tower, int* slots, int* tokens);

/* As sparo_embed_images / sparo_embed_texts; attention_out, when not NULL, receives
 * count × slots × tokens floats (sparo_attention_shape): each slot's attention over the
 * input's tokens. A non-NULL attention_out for a model without SPARO is SPARO_ERROR_UNSUPPORTED. */
SPARO_API sparo_status sparo_embed_images_ex(sparo_model* model, const uint8_t* rgb, int width, int height,
                                             int stride_bytes, int count, float* out, float* attention_out);
SPARO_API sparo_status sparo_embed_texts_ex(sparo_model* model, const char* const* utf8, int count, float* out,
                                            float* attention_out);

/* Zero-shot classification of `count` images (laid out as for sparo_embed_images) among
 * n_labels classes, as OpenCLIP's classifier: each label is put into every template (its "{}"
 * replaced by the label), the prompts are embedded, and a class's weight is the re-normalised
 * mean of its prompts' embeddings. templates NULL with n_templates 0 means the single template
 * "{}" (the bare label). top1_out: count ints, the best label's index (the first on a tie).
 * probs_out (NULL allowed): count × n_labels floats, the softmax over labels of the cosine
 * similarities times the model's learned logit scale, exp(logit_scale), as in training. */
SPARO_API sparo_status sparo_zero_shot(sparo_model* model, const uint8_t* rgb, int width, int height, int stride_bytes,
                                       int count, const char* const* labels, int n_labels,
                                       const char* const* templates, int n_templates, int* top1_out,
                                       float* probs_out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPARO_SPARO_H */
