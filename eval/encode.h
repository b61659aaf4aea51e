// Trained models read back from a run directory (sparo train's config.json + model.safetensors,
// plus CLIP's tokenizer.txt) and batched, gradient-free encoding of images and captions: the
// embeddings every evaluation starts from.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"
#include "models/clip.h"
#include "models/dino.h"
#include "text/tokenizer.h"
#include "training/train_config.h"

namespace sparo {

struct Embeddings {
  Tensor embeds;     // [N, E] on the CPU; unit rows (CLIP, SPARO) or raw features (DINO CLS)
  Tensor attention;  // SPARO: [N, L, tokens] on the CPU, else undefined
};

// Which weights a run is read back with: the trained ones (model.safetensors), or the
// run's random initialisation (the model built from config.json with the run's seed, as
// training started): the baseline every trained model must beat.
enum class Weights { trained, initial };

class TrainedClip {
 public:
  // Reads run_dir/{config.json, model.safetensors, tokenizer.txt}; errors name the missing file.
  // Weights::initial reads no model.safetensors (the tokenizer is still the run's).
  static std::unique_ptr<TrainedClip> load(const std::string& run_dir, Device device = Device::cpu(),
                                           Weights weights = Weights::trained);
  // A model given as files, as `sparo embed` and the C API take it: config JSON, safetensors
  // weights (load_clip), and the BPE vocabulary, optional (empty: a model for images only;
  // encode_texts is then an error). A vocabulary larger than the model's is an error.
  static std::unique_ptr<TrainedClip> from_files(const std::string& config_path, const std::string& checkpoint_path,
                                                 const std::string& vocab_path, Device device = Device::cpu());
  // Images in any size: OpenCLIP's evaluation preprocessing to the model's size, CLIP normalisation.
  Embeddings encode_images(const std::vector<Image>& images, int64_t batch = 256, bool attention = false) const;
  Embeddings encode_texts(const std::vector<std::string>& texts, int64_t batch = 256, bool attention = false) const;
  const ClipConfig& config() const { return model_->cfg; }
  const Clip& model() const { return *model_; }
  bool has_tokenizer() const { return tokenizer_.has_value(); }
  const Tokenizer& tokenizer() const;  // an error for a model loaded without a vocabulary

 private:
  TrainedClip(std::unique_ptr<Clip> model, std::optional<Tokenizer> tokenizer, Device device)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), device_(device) {}
  std::unique_ptr<Clip> model_;
  std::optional<Tokenizer> tokenizer_;
  Device device_;
};

class TrainedDino {
 public:
  static std::unique_ptr<TrainedDino> load(const std::string& run_dir, Device device = Device::cpu(),
                                           Weights weights = Weights::trained);
  // The backbone's representation (CLS token or SPARO embedding), images resized (bicubic) to the
  // model's size and normalised as in training.
  Embeddings encode_images(const std::vector<Image>& images, int64_t batch = 256, bool attention = false) const;
  const DinoConfig& config() const { return model_->cfg; }
  const Dino& model() const { return *model_; }

 private:
  TrainedDino(std::unique_ptr<Dino> model, Device device) : model_(std::move(model)), device_(device) {}
  std::unique_ptr<Dino> model_;
  Device device_;
};

}  // namespace sparo
