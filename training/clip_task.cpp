// The CLIP objective in the trainer: image–caption batches from Fashion scenes or a caption
// table, symmetric InfoNCE with the learnable logit scale (clamped at max_logit_scale after
// each update, as OpenCLIP does), and a BPE tokenizer learned from the training captions.
#include <tbb/parallel_for.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>

#include "image/image.h"
#include "models/clip.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"
#include "training/data/augment.h"
#include "training/data/batches.h"
#include "training/data/caption_table.h"
#include "training/data/fashion_mnist.h"
#include "training/data/scenes.h"
#include "training/distributed.h"
#include "training/trainer.h"

namespace sparo {

namespace fs = std::filesystem;

namespace {

struct ClipBatch {
  Tensor images;             // [B, 3, S, S] on the CPU
  std::vector<int32_t> ids;  // [B, context]
};

// The training captions and images, from either source.
class CaptionedImages {
 public:
  CaptionedImages(const TrainConfig& cfg) {
    if (cfg.resolved_dataset() == "fashion-scenes") {
      fashion_ = std::make_unique<LabeledImages>(
          load_fashion_mnist(cfg.data_dir.empty() ? default_fashion_mnist_dir() : cfg.data_dir, "train"));
      SceneOptions o;
      o.canvas = static_cast<int>(cfg.scene_canvas);
      o.min_items = static_cast<int>(cfg.scene_min_items);
      o.max_items = static_cast<int>(cfg.scene_max_items);
      o.seed = cfg.seed;
      o.count = cfg.train_size;
      o.sibling_lookalike = static_cast<float>(cfg.scene_lookalike);
      scenes_.emplace(*fashion_, SceneSplit::train, o);
      count_ = cfg.train_size;
      std::string groups;
      if (cfg.scene_group_size > 1)
        groups = ", in groups of " + std::to_string(cfg.scene_group_size) + " sharing places and colours";
      if (cfg.scene_lookalike > 0)
        groups += ", " + std::to_string(std::lround(cfg.scene_lookalike * 100)) + " % of sibling items look-alikes";
      description_ = "Fashion scenes (train split, " + std::to_string(count_) + " scenes, " +
                     std::to_string(cfg.scene_canvas) + "×" + std::to_string(cfg.scene_canvas) + ", " +
                     std::to_string(cfg.scene_min_items) + "–" + std::to_string(cfg.scene_max_items) + " items" +
                     groups + ")";
      return;
    }
    table_.emplace(cfg.csv_path, cfg.caption_table_options());
    count_ = table_->size();
    description_ = table_->description();
  }
  int64_t count() const { return count_; }
  const std::string& description() const { return description_; }
  std::string skipped_summary() const { return table_ ? table_->skipped_summary() : ""; }

  // Sample i and, for fashion scenes with group_size > 1, its group_size - 1 siblings.
  std::vector<std::pair<Image, std::string>> get(int64_t i, int group_size) const {
    std::vector<std::pair<Image, std::string>> out;
    if (scenes_) {
      for (Scene& s : scenes_->make_group(i, group_size)) out.emplace_back(std::move(s.image), std::move(s.caption));
    } else {
      out.emplace_back(table_->image(i), table_->caption(i));
    }
    return out;
  }
  // Captions to learn the tokenizer from: the first n samples (all for a table).
  std::vector<std::string> captions(int64_t n) const {
    std::vector<std::string> out;
    if (scenes_) {
      for (int64_t i = 0; i < std::min(n, count_); ++i) out.push_back(scenes_->make(i).caption);
    } else {
      out = table_->all_captions();
    }
    return out;
  }

 private:
  std::unique_ptr<LabeledImages> fashion_;
  std::optional<SceneGenerator> scenes_;
  std::optional<UsableCaptionTable> table_;
  int64_t count_ = 0;
  std::string description_;
};

class ClipTask : public TrainTask {
 public:
  ClipTask(const TrainConfig& cfg, const std::string& run_dir, bool resuming)
      : cfg_(cfg),
        mcfg_(ClipConfig::from_json(cfg.model_json, "model")),
        device_(Device::parse(cfg.device)),
        model_(mcfg_, cfg.seed),
        generator_(cfg.seed),
        data_(cfg),
        order_(distinct_pairs(data_, cfg.batch_size), cfg.seed),
        shard_(local_batch(cfg)),
        tokenizer_(make_tokenizer(run_dir, resuming)),
        prefetch_([this](int64_t k) { return make_batch(k); }) {
    to_device(model_, device_);
  }

  Module& model() override { return model_; }
  StateAliases aliases() const override { return model_.aliases(); }
  Generator& generator() override { return generator_; }
  std::vector<ParamGroup> param_groups() const override {
    // OpenCLIP: no weight decay on gains, biases and the logit scale (all of rank < 2).
    return split_weight_decay(model_.named_parameters(), static_cast<float>(cfg_.weight_decay));
  }

  Tensor loss(int64_t step, int64_t micro) override {
    ClipBatch batch = prefetch_.get(step * cfg_.accum_steps + micro);
    const Tensor images = batch.images.to(device_);
    const Tensor ids = Tensor::from_vector(batch.ids, {shard_.local, mcfg_.text.context_length}, device_);
    // Data parallel (training/distributed.h): every process gathers the embeddings of the whole
    // global batch and computes the same loss over all B × B pairs as one process would
    // (OpenCLIP's gather_with_grad=True, local_loss=False), so its reported loss and every other
    // process's batch as negatives come for free. The gather's backward sums the N identical
    // gradients of that loss for this process's rows: N · ∂L/∂(local embeddings). The towers'
    // gradients on each process are then N times their share of ∂L/∂θ, and the average over the
    // processes (allreduce_mean) is Σ shares = ∂L/∂θ, the one-process gradient; the logit
    // scale's gradient ∂L/∂s is the same on every process and the average keeps it. (The
    // local_loss=True form, B/N rows per process against B columns, is equal too and cheaper for
    // very large batches; this one keeps the loss value itself the one-process computation.)
    // With one process the gathers return their input: exactly forward()'s logits.
    const Tensor image = distributed::all_gather(model_.encode_image(images).embedding);
    const Tensor text = distributed::all_gather(model_.encode_text(ids).embedding);
    return clip_loss(model_.logits(image, text));
  }

  void after_update(int64_t) override {
    NoGradGuard no_grad;
    copy_(model_.logit_scale, clamp(model_.logit_scale, 0.0f, static_cast<float>(std::log(cfg_.max_logit_scale))));
  }

  std::vector<std::pair<std::string, double>> metrics(int64_t) const override {
    return {{"logit_scale", std::exp(static_cast<double>(model_.logit_scale.item()))}};
  }

  void describe(std::ostream& out) const override {
    out << "clip: " << model_.parameter_count() << " parameters ("
        << (mcfg_.sparo.enabled ? "SPARO L=" + std::to_string(mcfg_.sparo.L) + " V=" + std::to_string(mcfg_.sparo.V)
                                : std::string("baseline read-out"))
        << "), image " << mcfg_.vision.image_size << ", context " << mcfg_.text.context_length << ", device "
        << device_.str() << "\n"
        << "data: " << data_.description() << "; tokenizer " << tokenizer_.vocab_size() << " tokens\n";
    if (const std::string s = data_.skipped_summary(); !s.empty()) out << "data: " << s << "\n";
    out << "steps " << cfg_.steps << ", batch " << cfg_.batch_size << " × " << cfg_.accum_steps << " accumulation, lr "
        << cfg_.lr << " (warm-up " << cfg_.warmup_steps << "), weight decay " << cfg_.weight_decay << "\n";
  }

 private:
  // A batch larger than the data holds pairs twice, each copy the other's negative: the loss
  // then pushes a caption away from its own image. Refused rather than trained on quietly.
  static int64_t distinct_pairs(const CaptionedImages& data, int64_t batch_size) {
    if (data.count() < batch_size)
      throw Error("clip: " + data.description() + " holds " + std::to_string(data.count()) +
                  " pairs, fewer than batch_size " + std::to_string(batch_size) +
                  ": a contrastive batch needs distinct pairs (raise train_size or lower batch_size)");
    return data.count();
  }

  // This process's rows of each global batch (all of them without mpirun); a scene group
  // stays whole on one process, as one process's batch holds it.
  static BatchShard local_batch(const TrainConfig& cfg) {
    const BatchShard shard = distributed::batch_shard(cfg.batch_size, "batch_size");
    if (shard.local % cfg.scene_group_size != 0)
      throw Error("clip: batch_size " + std::to_string(cfg.batch_size) + " over " + std::to_string(distributed::size()) +
                  " processes gives " + std::to_string(shard.local) + " samples each, not a multiple of scene_group_size " +
                  std::to_string(cfg.scene_group_size));
    return shard;
  }

  Tokenizer make_tokenizer(const std::string& run_dir, bool resuming) const {
    const std::string path = (fs::path(run_dir) / "tokenizer.txt").string();
    if (!resuming) {
      const int64_t merges = mcfg_.text.vocab_size - 512 - 2;
      if (merges < 0) throw Error("model.text_cfg.vocab_size: needs at least 514 tokens (bytes + specials), got " +
                                  std::to_string(mcfg_.text.vocab_size));
      // Only the first process writes into the run directory; the others read what it wrote.
      if (distributed::is_root()) train_bpe(data_.captions(20000), static_cast<int>(merges), path);
      distributed::barrier();
    }
    Tokenizer t = Tokenizer::load(path);
    if (t.vocab_size() > mcfg_.text.vocab_size)
      throw Error(path + ": " + std::to_string(t.vocab_size()) + " tokens, more than the model's vocab_size " +
                  std::to_string(mcfg_.text.vocab_size));
    return t;
  }

  // Batch k of the run: G = scene_group_size samples per stream position, positions
  // [k·B/G, (k+1)·B/G) of the stream (each with its siblings when G > 1), each image with its
  // own random crop. This process makes its rows [first, first + local) of it.
  ClipBatch make_batch(int64_t k) {
    const int64_t B = cfg_.batch_size, S = mcfg_.vision.image_size, G = cfg_.scene_group_size, groups = B / G;
    const int64_t first_group = shard_.first / G, local_groups = shard_.local / G;
    std::vector<int64_t> index(static_cast<size_t>(local_groups));
    for (int64_t g = 0; g < local_groups; ++g) index[static_cast<size_t>(g)] = order_[k * groups + first_group + g];
    std::vector<Image> images(static_cast<size_t>(shard_.local));
    std::vector<std::string> captions(static_cast<size_t>(shard_.local));
    tbb::parallel_for(int64_t{0}, local_groups, [&](int64_t g) {
      auto samples = data_.get(index[static_cast<size_t>(g)], static_cast<int>(G));
      for (int64_t m = 0; m < G; ++m) {
        const int64_t b = g * G + m;  // row of this process's batch; shard_.first + b of the global one
        auto& [image, caption] = samples[static_cast<size_t>(m)];
        SampleRng rng(cfg_.seed, mix_stream(0xC11Bull, static_cast<uint64_t>(k * B + shard_.first + b)));
        images[static_cast<size_t>(b)] = clip_train_transform(image, static_cast<int>(S), rng);
        captions[static_cast<size_t>(b)] = std::move(caption);
      }
    });
    return {images_to_tensor(images, kClipMean, kClipStd), tokenizer_.tokenize(captions, static_cast<int>(mcfg_.text.context_length))};
  }

  TrainConfig cfg_;
  ClipConfig mcfg_;
  Device device_;
  Clip model_;
  Generator generator_;
  CaptionedImages data_;
  SampleOrder order_;
  BatchShard shard_;
  Tokenizer tokenizer_;
  Prefetcher<ClipBatch> prefetch_;
};

}  // namespace

std::unique_ptr<TrainTask> make_clip_task(const TrainConfig& cfg, const std::string& run_dir, bool resuming) {
  return std::make_unique<ClipTask>(cfg, run_dir, resuming);
}

}  // namespace sparo
