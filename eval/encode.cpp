#include "eval/encode.h"

#include <filesystem>
#include <optional>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "models/layers.h"
#include "models/module.h"

namespace sparo {

namespace fs = std::filesystem;

namespace {

std::string required_file(const std::string& run_dir, const std::string& name) {
  const fs::path p = fs::path(run_dir) / name;
  if (!fs::is_regular_file(p)) throw Error(run_dir + ": no " + name + " (is it a finished sparo train run?)");
  return p.string();
}

// Runs encode on [start, start + batch) slices and concatenates on the CPU.
template <typename Encode>
Embeddings batched(int64_t n, int64_t batch, bool attention, Encode&& encode) {
  if (batch <= 0) throw Error("encode: batch must be positive");
  NoGradGuard no_grad;
  std::vector<Tensor> embeds, attentions;
  for (int64_t start = 0; start < n; start += batch) {
    const EncoderOutput out = encode(start, std::min(n, start + batch));
    embeds.push_back(out.embedding.to(Device::cpu()));
    if (attention && out.attention.defined()) attentions.push_back(out.attention.to(Device::cpu()));
  }
  if (embeds.empty()) throw Error("encode: nothing to encode");
  return {concat(embeds, 0), attentions.empty() ? Tensor() : concat(attentions, 0)};
}

}  // namespace

std::unique_ptr<TrainedClip> TrainedClip::load(const std::string& run_dir, Device device, Weights which) {
  const TrainConfig cfg = TrainConfig::load(required_file(run_dir, "config.json"));
  if (cfg.task != "clip") throw Error(run_dir + ": a \"" + cfg.task + "\" run, not a CLIP run");
  std::unique_ptr<Clip> model;
  {
    // Trained weights replace every parameter: no random init to write first.
    std::optional<SkipInitGuard> no_random_init;
    if (which == Weights::trained) no_random_init.emplace();
    model = std::make_unique<Clip>(ClipConfig::from_json(cfg.model_json, run_dir + "/config.json model"), cfg.seed);
  }
  if (which == Weights::trained) {
    const std::string weights = required_file(run_dir, "model.safetensors");
    adopt_state_dict(*model, map_safetensors(weights), model->aliases(), weights);  // the file's pages, no copy
    backend_for(Device::cpu()).empty_cache();  // the random init they replaced
  }
  model->set_training(false);
  to_device(*model, device);
  Tokenizer tokenizer = Tokenizer::load(required_file(run_dir, "tokenizer.txt"));
  return std::unique_ptr<TrainedClip>(new TrainedClip(std::move(model), std::move(tokenizer), device));
}

std::unique_ptr<TrainedClip> TrainedClip::from_files(const std::string& config_path, const std::string& checkpoint_path,
                                                     const std::string& vocab_path, Device device) {
  std::unique_ptr<Clip> model = load_clip(config_path, checkpoint_path, device);
  std::optional<Tokenizer> tokenizer;
  if (!vocab_path.empty()) {
    tokenizer = Tokenizer::load(vocab_path);
    // Ids past the model's embedding table would fail only at the first caption that uses them.
    if (tokenizer->vocab_size() > model->cfg.text.vocab_size)
      throw Error("the vocabulary " + vocab_path + " has " + std::to_string(tokenizer->vocab_size()) +
                  " tokens but the model's text_cfg.vocab_size is " + std::to_string(model->cfg.text.vocab_size));
  }
  return std::unique_ptr<TrainedClip>(new TrainedClip(std::move(model), std::move(tokenizer), device));
}

const Tokenizer& TrainedClip::tokenizer() const {
  if (!tokenizer_) throw Error("this CLIP model was loaded without a vocabulary: it cannot embed text");
  return *tokenizer_;
}

Embeddings TrainedClip::encode_images(const std::vector<Image>& images, int64_t batch, bool attention) const {
  const int size = static_cast<int>(model_->cfg.vision.image_size);
  return batched(static_cast<int64_t>(images.size()), batch, attention, [&](int64_t a, int64_t b) {
    std::vector<Image> chunk;
    for (int64_t i = a; i < b; ++i) chunk.push_back(clip_preprocess(images[static_cast<size_t>(i)], size));
    return model_->encode_image(images_to_tensor(chunk, kClipMean, kClipStd, device_));
  });
}

Embeddings TrainedClip::encode_texts(const std::vector<std::string>& texts, int64_t batch, bool attention) const {
  const int64_t ctx = model_->cfg.text.context_length;
  return batched(static_cast<int64_t>(texts.size()), batch, attention, [&](int64_t a, int64_t b) {
    const std::vector<std::string> chunk(texts.begin() + a, texts.begin() + b);
    return model_->encode_text(Tensor::from_vector(tokenizer().tokenize(chunk, static_cast<int>(ctx)), {b - a, ctx}, device_));
  });
}

std::unique_ptr<TrainedDino> TrainedDino::load(const std::string& run_dir, Device device, Weights which) {
  const TrainConfig cfg = TrainConfig::load(required_file(run_dir, "config.json"));
  if (cfg.task != "dino") throw Error(run_dir + ": a \"" + cfg.task + "\" run, not a DINO run");
  std::unique_ptr<Dino> model;
  {
    // Trained weights replace every parameter: no random init to write first.
    std::optional<SkipInitGuard> no_random_init;
    if (which == Weights::trained) no_random_init.emplace();
    model = std::make_unique<Dino>(DinoConfig::from_json(cfg.model_json, run_dir + "/config.json model"), cfg.seed);
  }
  if (which == Weights::trained) {
    const std::string weights = required_file(run_dir, "model.safetensors");
    adopt_state_dict(*model, map_safetensors(weights), model->aliases(), weights);  // the file's pages, no copy
    backend_for(Device::cpu()).empty_cache();  // the random init they replaced
  }
  model->set_training(false);
  model->backbone.set_training(false);
  to_device(*model, device);
  return std::unique_ptr<TrainedDino>(new TrainedDino(std::move(model), device));
}

Embeddings TrainedDino::encode_images(const std::vector<Image>& images, int64_t batch, bool attention) const {
  const int size = static_cast<int>(model_->cfg.image_size);
  return batched(static_cast<int64_t>(images.size()), batch, attention, [&](int64_t a, int64_t b) {
    std::vector<Image> chunk;
    for (int64_t i = a; i < b; ++i) {
      const Image& img = images[static_cast<size_t>(i)];
      chunk.push_back(img.width == size && img.height == size ? img : resize_bicubic(img, size, size));
    }
    return model_->backbone.forward(images_to_tensor(chunk, kImageNetMean, kImageNetStd, device_));
  });
}

}  // namespace sparo
