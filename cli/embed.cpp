// `sparo embed`: CLIP embeddings of images and/or captions, with OpenCLIP's evaluation
// preprocessing, written to a safetensors file.
#include <iostream>

#include "cli/commands.h"
#include "engine/profiler.h"
#include "eval/encode.h"
#include "text/text_files.h"

namespace sparo::cli {

namespace {

struct EmbedOptions {
  std::string config, checkpoint, vocab, texts_file, out, device = "cpu", precision = "f32";
  std::vector<std::string> images;
  bool attention = false, profile = false;
  int batch = 32;
};

// Runs `encode` over [0, n) in batches and concatenates the embeddings (and attentions). The
// batches here bound how many decoded images are held at once; TrainedClip (eval/encode.h)
// does the preprocessing and encoding, the same as the C API's.
template <typename Encode>
std::pair<Tensor, Tensor> in_batches(int64_t n, int batch, bool want_attention, Encode encode) {
  std::vector<Tensor> embeds, attentions;
  for (int64_t start = 0; start < n; start += batch) {
    const Embeddings out = encode(start, std::min<int64_t>(n, start + batch));
    embeds.push_back(out.embeds);
    if (want_attention && out.attention.defined()) attentions.push_back(out.attention);
    std::cerr << "\rembed: " << std::min<int64_t>(n, start + batch) << "/" << n << std::flush;
  }
  std::cerr << "\n";
  return {concat(embeds, 0), attentions.empty() ? Tensor() : concat(attentions, 0)};
}

void run(const EmbedOptions& o) {
  if (o.images.empty() && o.texts_file.empty()) throw Error("embed: give --images and/or --texts-file");
  if (o.batch <= 0) throw Error("embed: --batch must be positive");
  // The table covers the whole command, loading and writing included (in other/untracked).
  const MatmulPrecisionScope precision(parse_matmul_precision(o.precision, "embed: --precision"));
  const bool profile = profiler::requested(o.profile);
  if (profile) profiler::set_enabled(true);
  if (!o.texts_file.empty() && o.vocab.empty()) throw Error("embed: --texts-file needs --vocab (the BPE merges file)");
  const std::unique_ptr<TrainedClip> clip = TrainedClip::from_files(o.config, o.checkpoint, o.vocab, Device::parse(o.device));
  const ClipConfig& cfg = clip->config();
  NamedTensors out;
  if (o.attention && !cfg.sparo.enabled)
    std::cerr << "embed: --attention: the model has no SPARO read-out; no attention is written\n";
  if (!o.images.empty()) {
    auto [embeds, attention] = in_batches(static_cast<int64_t>(o.images.size()), o.batch, o.attention, [&](int64_t b, int64_t e) {
      std::vector<Image> batch;
      for (int64_t i = b; i < e; ++i) batch.push_back(load_image(o.images[static_cast<size_t>(i)]));
      return clip->encode_images(batch, e - b, o.attention);
    });
    out.emplace_back("image_embeds", embeds);
    if (attention.defined()) out.emplace_back("image_attention", attention);
  }
  if (!o.texts_file.empty()) {
    // Row i of text_embeds is line i of the file, blank lines included (embedded as the empty
    // text), so the output lines up with the input; only a final newline ends no row.
    const std::vector<std::string> texts = read_lines(o.texts_file, "embed: texts file", kMaxCaptionFileBytes);
    if (texts.empty()) throw Error("embed: " + o.texts_file + " holds no text (one caption per line)");
    auto [embeds, attention] = in_batches(static_cast<int64_t>(texts.size()), o.batch, o.attention, [&](int64_t b, int64_t e) {
      return clip->encode_texts(std::vector<std::string>(texts.begin() + b, texts.begin() + e), e - b, o.attention);
    });
    out.emplace_back("text_embeds", embeds);
    if (attention.defined()) out.emplace_back("text_attention", attention);
  }
  save_safetensors(o.out, out, {{"config", cfg.to_json()}, {"checkpoint", o.checkpoint}});
  for (const auto& [name, t] : out) std::cout << name << " " << shape_str(t.shape()) << "\n";
  std::cout << "wrote " << o.out << "\n";
  if (profile) std::cerr << profiler::format(profiler::report(), "sparo embed");
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto o = std::make_shared<EmbedOptions>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Embed images and/or captions with a CLIP checkpoint (normalised embeddings, SPARO attentions)");
  cmd->add_option("--config", o->config, "Model config (OpenCLIP JSON schema), e.g. models/configs/ViT-B-32.json")
      ->required()->check(CLI::ExistingFile);
  cmd->add_option("--checkpoint", o->checkpoint, "Weights (.safetensors; tools/convert_checkpoint.py converts .pt)")
      ->required()->check(CLI::ExistingFile);
  cmd->add_option("--images", o->images, "Image files (PNG, JPEG, BMP, ...)")->check(CLI::ExistingFile);
  cmd->add_option("--texts-file", o->texts_file, "Captions, one per line")->check(CLI::ExistingFile);
  cmd->add_option("--vocab", o->vocab, "BPE merges file for the captions (e.g. bpe_simple_vocab_16e6.txt.gz)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Output .safetensors: image_embeds, text_embeds (+ *_attention)")->required();
  cmd->add_flag("--attention", o->attention, "Also write the SPARO slot attentions");
  cmd->add_option("--device", o->device, "cpu or vulkan[:N]")->capture_default_str();
  cmd->add_option("--precision", o->precision, "Matmul precision: f32, or bf16 (bf16 inputs, f32 sums)")
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "Inputs per forward pass")->capture_default_str();
  cmd->add_flag("--profile", o->profile, "Print a per-op time table at the end (also: env SPARO_PROFILE=1)");
  cmd->callback([o] { run(*o); });
}

}  // namespace sparo::cli
