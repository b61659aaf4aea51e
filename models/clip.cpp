#include "models/clip.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/safetensors.h"
#include "models/layers.h"

namespace sparo {

Clip::Clip(const ClipConfig& c, uint64_t seed) : cfg(c) {
  c.validate("clip config");
  Generator gen(seed);
  const Activation act = c.quick_gelu ? Activation::quick_gelu : Activation::gelu;
  const int64_t tower_dim = c.bottleneck_dim ? c.bottleneck_dim : c.embed_dim;
  const SparoConfig* sparo = c.sparo.enabled ? &c.sparo : nullptr;
  visual = VisionTransformer(c.vision, c.vision.layers - c.reduce_depth, tower_dim, act, sparo, gen);
  text = TextTransformer(c.text, c.text.layers - c.reduce_depth, tower_dim, act, sparo, gen);
  if (sparo && c.sparo.share_queries) {
    text.sparo->q_emb = visual.sparo->q_emb;
    text.sparo->owns_queries = false;
  }
  if (c.bottleneck_dim) {
    vision_bottleproj.emplace(c.bottleneck_dim, c.embed_dim, gen);
    text_bottleproj.emplace(c.bottleneck_dim, c.embed_dim, gen);
  }
  logit_scale = Tensor::scalar(std::log(1.0f / 0.07f)).requires_grad_();
}

static EncoderOutput finish(EncoderOutput out, const std::optional<Linear>& bottleproj, bool sparo) {
  if (sparo) return out;  // already unit norm
  if (bottleproj) out.embedding = bottleproj->forward(out.embedding);
  out.embedding = l2_normalize(out.embedding, -1);
  return out;
}

EncoderOutput Clip::encode_image(const Tensor& images) const {
  return finish(visual.forward(images), vision_bottleproj, cfg.sparo.enabled);
}

EncoderOutput Clip::encode_text(const Tensor& ids) const {
  return finish(text.forward(ids), text_bottleproj, cfg.sparo.enabled);
}

ClipOutput Clip::forward(const Tensor& images, const Tensor& ids) const {
  const EncoderOutput image = encode_image(images), txt = encode_text(ids);
  return {image.embedding, txt.embedding, logits(image.embedding, txt.embedding), image.attention, txt.attention};
}

Tensor Clip::logits(const Tensor& image_embeds, const Tensor& text_embeds) const {
  return mul(matmul(image_embeds, text_embeds, false, true), exp(logit_scale));
}

Tensor clip_loss(const Tensor& logits) {
  if (logits.dim() != 2 || logits.size(0) != logits.size(1))
    throw Error("clip_loss: logits must be square [B, B], got " + shape_str(logits.shape()));
  const Tensor labels = Tensor::arange(0, static_cast<double>(logits.size(0)), 1, DType::i32, logits.device());
  return affine(add(cross_entropy(logits, labels), cross_entropy(transpose(logits, 0, 1), labels)), 0.5f, 0.0f);
}

void Clip::collect_parameters(const std::string& p, NamedTensors& out) const {
  visual.collect_parameters(p + "visual.", out);
  text.collect_parameters(p, out);
  out.emplace_back(p + "logit_scale", logit_scale);
  if (vision_bottleproj) vision_bottleproj->collect_parameters(p + "vision_bottleproj.", out);
  if (text_bottleproj) text_bottleproj->collect_parameters(p + "text_bottleproj.", out);
}

StateAliases Clip::aliases() const {
  StateAliases a;
  if (visual.sparo) visual.sparo->add_aliases("visual.sparo.", a);
  if (text.sparo) text.sparo->add_aliases("text_sparo.", a);
  return a;
}

std::unique_ptr<Clip> load_clip(const std::string& config_path, const std::string& checkpoint_path, Device device) {
  const ClipConfig config = ClipConfig::load(config_path);
  std::unique_ptr<Clip> model;
  {
    const SkipInitGuard no_random_init;  // every parameter is about to come from the file
    model = std::make_unique<Clip>(config);
  }
  {
    NoGradGuard no_grad;
    // The file's pages are the weights (no copy); the unwritten storage they replace goes back.
    adopt_state_dict(*model, map_safetensors(checkpoint_path), model->aliases(), checkpoint_path);
  }
  backend_for(Device::cpu()).empty_cache();
  to_device(*model, device);
  model->set_training(false);
  return model;
}

}  // namespace sparo
