// The C API (include/sparo/sparo.h) over TrainedClip (eval/encode.h), which `sparo embed`
// uses too: this file checks arguments, turns every exception into a status and a
// thread-local message, and copies results into the caller's buffers. It computes no
// embedding itself, so the C API and the command cannot drift apart.
#include "sparo/sparo.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/ops.h"
#include "eval/encode.h"
#include "eval/image_folder.h"
#include "eval/metrics.h"

using namespace sparo;

struct sparo_model {
  std::unique_ptr<TrainedClip> clip;
  // The engine's tensors and tape are not meant to be driven by two threads through one
  // model at once; the lock makes one model safe to share, at the price of serialising it.
  std::mutex mutex;
};

namespace {

thread_local std::string last_error;

// Thrown inside an entry point for a failure whose status is known; caught at the boundary.
struct ApiError {
  sparo_status status;
  std::string message;
};

[[noreturn]] void fail(sparo_status status, std::string message) { throw ApiError{status, std::move(message)}; }

sparo_status record(sparo_status status, const char* function, const char* message) noexcept {
  try {
    last_error = std::string(function) + ": " + message;
  } catch (...) {  // no memory for the message: keep the status, say as much as fits
    last_error.clear();
  }
  return status;
}

// Runs an entry point's body: ApiError keeps its status; any other sparo::Error or standard
// exception from the library becomes `library_status` (what failing means for this call).
template <typename Body>
sparo_status guarded(const char* function, sparo_status library_status, Body&& body) noexcept {
  last_error.clear();
  try {
    body();
    return SPARO_OK;
  } catch (const ApiError& e) {
    return record(e.status, function, e.message.c_str());
  } catch (const std::bad_alloc&) {
    return record(SPARO_ERROR_OUT_OF_MEMORY, function, "out of memory");
  } catch (const std::exception& e) {
    return record(library_status, function, e.what());
  } catch (...) {
    return record(SPARO_ERROR_INTERNAL, function, "an unknown exception");
  }
}

void require(bool ok, const std::string& message) {
  if (!ok) fail(SPARO_ERROR_INVALID_ARGUMENT, message);
}

// A file the loader will read: missing, a directory or unreadable is SPARO_ERROR_IO, so that
// the status separates "wrong path" from "wrong contents" (SPARO_ERROR_MODEL).
void check_readable(const char* what, const char* path) {
  require(path != nullptr, std::string(what) + " is NULL");
  require(*path != '\0', std::string(what) + " is empty");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(SPARO_ERROR_IO, std::string(what) + " " + path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) fail(SPARO_ERROR_IO, std::string(what) + " " + path + ": is a directory");
  if (!std::ifstream(path, std::ios::binary)) fail(SPARO_ERROR_IO, std::string(what) + " " + path + ": cannot be opened for reading");
}

Device check_device(const char* text) {
  const std::string name = text ? text : "cpu";
  try {
    const Device device = Device::parse(name);
    backend_for(device);  // not in this build or not on this machine: fail before reading weights
    return device;
  } catch (const ApiError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    fail(SPARO_ERROR_DEVICE, "device \"" + name + "\": " + e.what());
  }
}

const TrainedClip& clip_of(const sparo_model* model) {
  require(model != nullptr, "model is NULL");
  return *model->clip;
}

// The images of sparo_embed_images: checked, then handed out in chunks so that a long batch
// never holds more than one chunk of decoded copies.
struct ImageBatch {
  const uint8_t* rgb;
  int width, height, stride, count;

  static ImageBatch checked(const uint8_t* rgb, int width, int height, int stride, int count) {
    require(rgb != nullptr, "rgb is NULL");
    require(width > 0 && height > 0,
            "width and height must be positive, got " + std::to_string(width) + " × " + std::to_string(height));
    require(count > 0, "count must be positive, got " + std::to_string(count));
    require(static_cast<int64_t>(stride) >= 3 * static_cast<int64_t>(width),
            "stride_bytes " + std::to_string(stride) + " is less than 3 × width = " + std::to_string(3 * int64_t{width}));
    require(int64_t{width} * height <= kMaxImagePixels,
            "an image of " + std::to_string(width) + " × " + std::to_string(height) + " pixels is more than " +
                std::to_string(kMaxImagePixels));
    // count · height · stride bytes must be addressable (each factor < 2^31: two products fit in 64 bits).
    const int64_t per_image = int64_t{height} * stride;
    require(per_image <= std::numeric_limits<int64_t>::max() / count, "count × height × stride_bytes overflows");
    return {rgb, width, height, stride, count};
  }

  std::vector<Image> images(int begin, int end) const {
    std::vector<Image> out;
    for (int i = begin; i < end; ++i) {
      Image img;
      img.width = width, img.height = height;
      img.rgb.resize(static_cast<size_t>(width) * height * 3);
      const uint8_t* first = rgb + static_cast<int64_t>(i) * height * stride;
      for (int y = 0; y < height; ++y)
        std::copy_n(first + int64_t{y} * stride, int64_t{width} * 3, img.rgb.data() + int64_t{y} * width * 3);
      out.push_back(std::move(img));
    }
    return out;
  }
};

constexpr int kImageChunk = 64;

// Copies a CPU tensor's values to out, checking the size the caller was told to allocate.
void copy_out(const Tensor& t, const Shape& expected, float* out, const char* what) {
  if (t.shape() != expected)
    fail(SPARO_ERROR_INTERNAL, std::string(what) + " has shape " + shape_str(t.shape()) + ", expected " + shape_str(expected));
  const std::vector<float> host = t.to_float_vector();
  std::copy(host.begin(), host.end(), out);
}

int64_t attention_tokens(const ClipConfig& cfg, sparo_tower tower) {
  if (tower == SPARO_TOWER_IMAGE) {
    const int64_t side = cfg.vision.image_size / cfg.vision.patch_size;
    return side * side + 1;  // the patches and the class token
  }
  return cfg.text.context_length;
}

void check_attention_request(const TrainedClip& clip, const float* attention_out) {
  if (attention_out && !clip.config().sparo.enabled)
    fail(SPARO_ERROR_UNSUPPORTED, "attention_out given, but the model has no SPARO read-out (use_sparo is false)");
}

// Embeds a checked image batch into out (count × E) and, when asked, attention_out.
void embed_images(const TrainedClip& clip, const ImageBatch& batch, float* out, float* attention_out) {
  const int64_t E = clip.config().output_dim(), L = clip.config().sparo.L;
  const int64_t N = attention_tokens(clip.config(), SPARO_TOWER_IMAGE);
  for (int begin = 0; begin < batch.count; begin += kImageChunk) {
    const int end = std::min(batch.count, begin + kImageChunk);
    const Embeddings e = clip.encode_images(batch.images(begin, end), kImageChunk, attention_out != nullptr);
    copy_out(e.embeds, {end - begin, E}, out + int64_t{begin} * E, "image embeddings");
    if (attention_out) copy_out(e.attention, {end - begin, L, N}, attention_out + int64_t{begin} * L * N, "image attention");
  }
}

std::vector<std::string> checked_texts(const char* const* utf8, int count, const char* what) {
  require(utf8 != nullptr, std::string(what) + " is NULL");
  require(count > 0, "count must be positive, got " + std::to_string(count));
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    require(utf8[i] != nullptr, std::string(what) + "[" + std::to_string(i) + "] is NULL");
    texts.emplace_back(utf8[i]);
  }
  return texts;
}

void require_vocabulary(const TrainedClip& clip) {
  if (!clip.has_tokenizer())
    fail(SPARO_ERROR_UNSUPPORTED, "the model was loaded without a vocabulary (vocab_path NULL): it cannot embed text");
}

}  // namespace

extern "C" {

SPARO_API const char* sparo_version(void) { return SPARO_VERSION; }

SPARO_API const char* sparo_last_error(void) { return last_error.c_str(); }

SPARO_API const char* sparo_status_name(int status) {
  switch (status) {
    case SPARO_OK: return "SPARO_OK";
    case SPARO_ERROR_INVALID_ARGUMENT: return "SPARO_ERROR_INVALID_ARGUMENT";
    case SPARO_ERROR_IO: return "SPARO_ERROR_IO";
    case SPARO_ERROR_MODEL: return "SPARO_ERROR_MODEL";
    case SPARO_ERROR_DEVICE: return "SPARO_ERROR_DEVICE";
    case SPARO_ERROR_UNSUPPORTED: return "SPARO_ERROR_UNSUPPORTED";
    case SPARO_ERROR_OUT_OF_MEMORY: return "SPARO_ERROR_OUT_OF_MEMORY";
    case SPARO_ERROR_INTERNAL: return "SPARO_ERROR_INTERNAL";
  }
  return "unknown status";
}

SPARO_API sparo_status sparo_model_load(const char* config_path, const char* checkpoint_path, const char* vocab_path,
                                        const char* device, sparo_model** out) {
  if (out) *out = nullptr;
  return guarded("sparo_model_load", SPARO_ERROR_MODEL, [&] {
    require(out != nullptr, "out is NULL");
    check_readable("config_path", config_path);
    check_readable("checkpoint_path", checkpoint_path);
    if (vocab_path) check_readable("vocab_path", vocab_path);
    const Device dev = check_device(device);
    auto model = std::make_unique<sparo_model>();
    model->clip = TrainedClip::from_files(config_path, checkpoint_path, vocab_path ? vocab_path : "", dev);
    *out = model.release();
  });
}

SPARO_API void sparo_model_free(sparo_model* model) { delete model; }

SPARO_API int sparo_embed_dim(const sparo_model* model) {
  return model ? static_cast<int>(model->clip->config().output_dim()) : 0;
}

SPARO_API int sparo_image_size(const sparo_model* model) {
  return model ? static_cast<int>(model->clip->config().vision.image_size) : 0;
}

SPARO_API sparo_status sparo_embed_images_ex(sparo_model* model, const uint8_t* rgb, int width, int height,
                                             int stride_bytes, int count, float* out, float* attention_out) {
  return guarded("sparo_embed_images", SPARO_ERROR_INTERNAL, [&] {
    const TrainedClip& clip = clip_of(model);
    const ImageBatch batch = ImageBatch::checked(rgb, width, height, stride_bytes, count);
    require(out != nullptr, "out is NULL");
    check_attention_request(clip, attention_out);
    std::lock_guard<std::mutex> lock(model->mutex);
    embed_images(clip, batch, out, attention_out);
  });
}

SPARO_API sparo_status sparo_embed_images(sparo_model* model, const uint8_t* rgb, int width, int height,
                                          int stride_bytes, int count, float* out) {
  return sparo_embed_images_ex(model, rgb, width, height, stride_bytes, count, out, nullptr);
}

SPARO_API sparo_status sparo_embed_texts_ex(sparo_model* model, const char* const* utf8, int count, float* out,
                                            float* attention_out) {
  return guarded("sparo_embed_texts", SPARO_ERROR_INTERNAL, [&] {
    const TrainedClip& clip = clip_of(model);
    const std::vector<std::string> texts = checked_texts(utf8, count, "utf8");
    require(out != nullptr, "out is NULL");
    require_vocabulary(clip);
    check_attention_request(clip, attention_out);
    std::lock_guard<std::mutex> lock(model->mutex);
    const Embeddings e = clip.encode_texts(texts, 256, attention_out != nullptr);
    copy_out(e.embeds, {count, clip.config().output_dim()}, out, "text embeddings");
    if (attention_out)
      copy_out(e.attention, {count, clip.config().sparo.L, attention_tokens(clip.config(), SPARO_TOWER_TEXT)},
               attention_out, "text attention");
  });
}

SPARO_API sparo_status sparo_embed_texts(sparo_model* model, const char* const* utf8, int count, float* out) {
  return sparo_embed_texts_ex(model, utf8, count, out, nullptr);
}

SPARO_API sparo_status sparo_attention_shape(const sparo_model* model, int tower, int* slots, int* tokens) {
  return guarded("sparo_attention_shape", SPARO_ERROR_INTERNAL, [&] {
    const TrainedClip& clip = clip_of(model);
    require(tower == SPARO_TOWER_IMAGE || tower == SPARO_TOWER_TEXT,
            "tower must be SPARO_TOWER_IMAGE or SPARO_TOWER_TEXT, got " + std::to_string(tower));
    require(slots != nullptr && tokens != nullptr, "slots and tokens must not be NULL");
    if (!clip.config().sparo.enabled) fail(SPARO_ERROR_UNSUPPORTED, "the model has no SPARO read-out (use_sparo is false)");
    *slots = static_cast<int>(clip.config().sparo.L);
    *tokens = static_cast<int>(attention_tokens(clip.config(), static_cast<sparo_tower>(tower)));
  });
}

SPARO_API sparo_status sparo_zero_shot(sparo_model* model, const uint8_t* rgb, int width, int height, int stride_bytes,
                                       int count, const char* const* labels, int n_labels,
                                       const char* const* templates, int n_templates, int* top1_out,
                                       float* probs_out) {
  return guarded("sparo_zero_shot", SPARO_ERROR_INTERNAL, [&] {
    const TrainedClip& clip = clip_of(model);
    const ImageBatch batch = ImageBatch::checked(rgb, width, height, stride_bytes, count);
    require(n_labels > 0, "n_labels must be positive, got " + std::to_string(n_labels));
    const std::vector<std::string> names = checked_texts(labels, n_labels, "labels");
    std::vector<std::string> forms{"{}"};
    if (templates != nullptr || n_templates != 0) {
      require(n_templates > 0, "n_templates must be positive when templates is given, got " + std::to_string(n_templates));
      forms = checked_texts(templates, n_templates, "templates");
      for (size_t t = 0; t < forms.size(); ++t)
        require(forms[t].find("{}") != std::string::npos,
                "templates[" + std::to_string(t) + "] \"" + forms[t] + "\" has no \"{}\" for the label");
    }
    require(top1_out != nullptr, "top1_out is NULL");
    require_vocabulary(clip);
    std::lock_guard<std::mutex> lock(model->mutex);

    // OpenCLIP's classifier: prompts class-major (label c, template t at row c·T + t).
    std::vector<std::string> prompts;
    for (const std::string& name : names)
      for (const std::string& form : forms) prompts.push_back(fill_template(form, name));
    const int64_t C = n_labels, T = static_cast<int64_t>(forms.size()), E = clip.config().output_dim();
    const Tensor weights = zero_shot_weights(clip.encode_texts(prompts).embeds, C, T);
    std::vector<float> image_embeds(static_cast<size_t>(count) * E);
    embed_images(clip, batch, image_embeds.data(), nullptr);
    const std::vector<float> cosines =
        matmul(Tensor::from_vector(image_embeds, {count, E}), weights, false, true).to_float_vector();
    const double scale = std::exp(double{clip.model().logit_scale.to(Device::cpu()).item()});
    for (int64_t i = 0; i < count; ++i) {
      const float* row = cosines.data() + i * C;
      const int64_t best = std::max_element(row, row + C) - row;  // the first maximum
      top1_out[i] = static_cast<int>(best);
      if (!probs_out) continue;
      double total = 0;  // softmax shifted by the maximum, in doubles
      for (int64_t c = 0; c < C; ++c) total += std::exp(scale * (double{row[c]} - row[best]));
      for (int64_t c = 0; c < C; ++c) probs_out[i * C + c] = static_cast<float>(std::exp(scale * (double{row[c]} - row[best])) / total);
    }
  });
}

}  // extern "C"
