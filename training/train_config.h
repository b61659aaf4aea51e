// The configuration of a training run: one flat JSON object (every key optional, defaults
// below), overridable key by key from the command line (--set key=value; --set
// model.key=value sets a key of the model config). Unknown keys
// and values of the wrong type or range are errors that name the key: a typo must not
// silently train something else.
//
// "model" is the model configuration: a path (absolute, relative to the current directory,
// or relative to the config file's directory) to a model JSON (models/configs/*.json), or
// the model object itself. The run directory's config.json holds the resolved config with
// the model object inline, so a run can be resumed or evaluated without the original files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "training/data/caption_table.h"

namespace sparo {

struct TrainConfig {
  std::string task = "clip";    // clip | dino
  std::string model_json;       // the model configuration (JSON text), resolved

  // Data.
  std::string dataset;          // clip: fashion-scenes | csv; dino: fashion-mnist | csv ("" = the task's default)
  std::string data_dir;         // Fashion-MNIST directory ("" = $SPARO_FASHION_MNIST or the Debian package's)
  std::string csv_path;         // dataset csv: the caption table
  std::string csv_image_key = "filepath", csv_caption_key = "title", csv_separator = "\t";
  int64_t train_size = 20000;   // fashion-scenes: scenes in the training split
  int64_t scene_canvas = 64, scene_min_items = 1, scene_max_items = 3;
  // fashion-scenes: a batch is batch_size / scene_group_size groups, each a scene and its
  // siblings (same places and colours, other items: SceneGenerator::make_group); 1 = no groups.
  int64_t scene_group_size = 1;
  // fashion-scenes groups: the probability that a sibling's item is a look-alike of the item it
  // replaces (SceneOptions::sibling_lookalike), 0..1.
  double scene_lookalike = 0.0;

  // Optimisation.
  int64_t steps = 1000, batch_size = 128, accum_steps = 1;
  double lr = 5e-4, min_lr = 0.0;
  // 0: lr is used as given. N > 0: lr is the rate for a batch of N and scales linearly with
  // the batch (DINO's lr = base_lr × batch / 256 is lr_reference_batch = 256).
  double lr_reference_batch = 0.0;
  int64_t warmup_steps = 100;
  double weight_decay = 0.2, weight_decay_end = -1.0;  // dino: cosine from weight_decay to weight_decay_end (-1: constant)
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-6;
  double grad_clip = 1.0;       // max gradient norm; 0 = off
  // "global": one norm over all gradients (torch's clip_grad_norm_); "per_parameter": each
  // parameter's gradient clipped to its own norm (DINO's clip_gradients).
  std::string grad_clip_mode = "global";

  // CLIP.
  double max_logit_scale = 100.0;  // exp(logit_scale) is clamped to [1, this] after each step

  // DINO.
  int64_t local_crops = 4, local_crop_size = 16;
  double global_scale_min = 0.4, global_scale_max = 1.0, local_scale_min = 0.05, local_scale_max = 0.4;
  double student_temp = 0.1, teacher_temp = 0.04, warmup_teacher_temp = 0.04;
  int64_t warmup_teacher_temp_steps = 0;
  double center_momentum = 0.9, momentum_teacher = 0.996, momentum_teacher_end = 1.0;  // cosine from → to
  int64_t freeze_last_layer_steps = -1;  // -1: one epoch
  // Multi-crop photometric augmentation (DINO's defaults are 1.0, 0.1, 0.5, 2.0, 0.2; a 16-pixel
  // crop of a 28-pixel item loses its shape under a blur of σ 2).
  double blur_p_global1 = 1.0, blur_p_global2 = 0.1, blur_p_local = 0.5, blur_sigma_max = 2.0, solarize_p = 0.2;
  // The k-NN monitor (Fashion-MNIST only): every eval_every steps (and at step 0), the teacher's
  // and the student's features of the first monitor_train train images classify the first
  // monitor_test test images (cosine, k 20, T 0.07); 0 = off.
  int64_t eval_every = 0, monitor_train = 2000, monitor_test = 1000;

  // Run.
  uint64_t seed = 0;
  std::string device = "cpu";
  // Matmul precision (engine/ops.h): "f32", or "bf16" for bf16 inputs with f32 sums
  // (mixed precision; weights, optimiser state, norms and losses stay f32).
  std::string precision = "f32";
  // Data parallel (mpirun): average each bucket of gradients as soon as backward has finished
  // it, while the rest of backward runs (CPU devices; on Vulkan the buckets start after backward).
  // false: all after backward. The same bits either way.
  bool grad_overlap = true;
  double grad_bucket_mib = 4.0;  // the size of a bucket of gradients (MiB); > 0
  int64_t log_every = 10, checkpoint_every = 200, keep_checkpoints = 2;

  // Parses a config file and applies "key=value" overrides (value: JSON, or a bare string).
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  static TrainConfig from_json(const std::string& text, const std::string& source,
                               const std::vector<std::string>& overrides = {},
                               const std::string& base_dir = ".");
  std::string to_json() const;  // the resolved config, model inline
  void validate(const std::string& source) const;

  std::string resolved_dataset() const;  // dataset, or the task's default
  CaptionTableOptions caption_table_options() const;  // from the csv_* keys
  int64_t samples_per_step() const { return batch_size * accum_steps; }
  // The peak learning rate the schedule uses: lr, scaled with the batch when lr_reference_batch > 0.
  double peak_lr() const {
    return lr_reference_batch > 0 ? lr * static_cast<double>(samples_per_step()) / lr_reference_batch : lr;
  }
};

}  // namespace sparo
