// The DINO objective in the trainer: multi-crop views of Fashion-MNIST (or a folder of
// images), a student and an EMA teacher, DINO's centred and sharpened teacher targets, the
// teacher-temperature warm-up, the teacher-momentum and weight-decay cosine schedules, and
// the last layer frozen during the first epoch — facebookresearch/dino's main_dino.py.
#include <tbb/parallel_for.h>

#include <memory>
#include <optional>
#include <ostream>

#include "image/image.h"
#include "models/dino.h"
#include "training/data/augment.h"
#include "training/data/batches.h"
#include "training/data/caption_table.h"
#include "training/data/fashion_mnist.h"
#include "training/distributed.h"
#include "training/knn.h"
#include "training/losses.h"
#include "training/schedule.h"
#include "training/trainer.h"

namespace sparo {

namespace {

struct DinoBatch {
  Tensor globals;  // [2·B, 3, S, S], crop-major: global crop 0 of every image, then crop 1
  Tensor locals;   // [n·B, 3, s, s], crop-major; undefined without local crops
};

class UnlabeledImages {
 public:
  explicit UnlabeledImages(const TrainConfig& cfg) {
    if (cfg.resolved_dataset() == "fashion-mnist") {
      const std::string dir = cfg.data_dir.empty() ? default_fashion_mnist_dir() : cfg.data_dir;
      fashion_ = load_fashion_mnist(dir, "train");
      description_ = "Fashion-MNIST train (" + std::to_string(fashion_.count) + " images, " + dir + ")";
      count_ = fashion_.count;
      return;
    }
    table_.emplace(cfg.csv_path, cfg.caption_table_options());
    count_ = table_->size();
    description_ = table_->description();
  }
  int64_t count() const { return count_; }
  const std::string& description() const { return description_; }
  std::string skipped_summary() const { return table_ ? table_->skipped_summary() : ""; }

  Image get(int64_t i) const {
    if (table_) return table_->image(i);
    return gray_to_rgb(fashion_.image(i), fashion_.rows, fashion_.cols);
  }
  // Labels exist for Fashion-MNIST only (the k-NN monitor needs them).
  const LabeledImages* labelled() const { return table_ ? nullptr : &fashion_; }

 private:
  LabeledImages fashion_;
  std::optional<UsableCaptionTable> table_;
  int64_t count_ = 0;
  std::string description_;
};

DinoConfig teacher_config(DinoConfig c) {
  c.drop_path_rate = 0.0f;  // DINO's teacher has no stochastic depth
  return c;
}

class DinoTask : public TrainTask {
 public:
  DinoTask(const TrainConfig& cfg)
      : cfg_(cfg),
        mcfg_(DinoConfig::from_json(cfg.model_json, "model")),
        device_(Device::parse(cfg.device)),
        student_(mcfg_, cfg.seed),
        teacher_(teacher_config(mcfg_), cfg.seed),
        loss_(mcfg_.head_out, 2 + cfg.local_crops, static_cast<float>(cfg.student_temp),
              static_cast<float>(cfg.center_momentum)),
        generator_(cfg.seed),
        data_(cfg),
        order_(data_.count(), cfg.seed),
        shard_(distributed::batch_shard(cfg.batch_size, "batch_size")),
        prefetch_([this](int64_t k) { return make_batch(k); }) {
    if (cfg.local_crop_size % mcfg_.patch_size != 0)
      throw Error("local_crop_size " + std::to_string(cfg.local_crop_size) + " must be a multiple of the patch size " +
                  std::to_string(mcfg_.patch_size));
    crops_.global_size = static_cast<int>(mcfg_.image_size);
    crops_.global_scale_lo = static_cast<float>(cfg.global_scale_min);
    crops_.global_scale_hi = static_cast<float>(cfg.global_scale_max);
    crops_.local_crops = static_cast<int>(cfg.local_crops);
    crops_.local_size = static_cast<int>(cfg.local_crop_size);
    crops_.local_scale_lo = static_cast<float>(cfg.local_scale_min);
    crops_.local_scale_hi = static_cast<float>(cfg.local_scale_max);
    crops_.global1_blur_p = static_cast<float>(cfg.blur_p_global1);
    crops_.global2_blur_p = static_cast<float>(cfg.blur_p_global2);
    crops_.local_blur_p = static_cast<float>(cfg.blur_p_local);
    crops_.blur_sigma_hi = static_cast<float>(cfg.blur_sigma_max);
    crops_.solarize_p = static_cast<float>(cfg.solarize_p);
    validate(crops_);
    // Drop-path draws for the whole global batch and keeps this process's rows (random.h).
    generator_.set_batch_shard(shard_);
    // The k-NN monitor runs on the first process only (the trainer's monitor() call): it draws
    // no random numbers and changes nothing, so the others skip its images.
    if (cfg.eval_every > 0 && distributed::is_root()) prepare_monitor();
    load_state_dict(teacher_, state_dict(student_));  // the teacher starts as the student
    teacher_.set_training(false);
    for (Tensor p : teacher_.parameters()) p.requires_grad_(false);
    to_device(student_, device_);
    to_device(teacher_, device_);
    loss_.center = loss_.center.to(device_);
    const int64_t epoch_steps = data_.count() / cfg.samples_per_step() + (data_.count() % cfg.samples_per_step() != 0);  // ceil, no overflow
    freeze_steps_ = cfg.freeze_last_layer_steps >= 0 ? cfg.freeze_last_layer_steps : epoch_steps;
  }

  Module& model() override { return student_; }
  const Module& exported_model() override { return teacher_; }
  StateAliases aliases() const override { return student_.aliases(); }
  Generator& generator() override { return generator_; }
  std::vector<ParamGroup> param_groups() const override {
    // DINO's get_params_groups: no weight decay on biases and norm gains (rank 1).
    return split_weight_decay(student_.named_parameters(), static_cast<float>(cfg_.weight_decay));
  }

  Tensor loss(int64_t step, int64_t micro) override {
    DinoBatch batch = prefetch_.get(step * cfg_.accum_steps + micro);
    const Tensor globals = batch.globals.to(device_);
    Tensor teacher_out;
    {
      NoGradGuard no_grad;
      teacher_out = teacher_.head.forward(teacher_.backbone.forward(globals).embedding);
    }
    std::vector<Tensor> features = {student_.backbone.forward(globals, &generator_).embedding};
    if (batch.locals.defined()) features.push_back(student_.backbone.forward(batch.locals.to(device_), &generator_).embedding);
    const Tensor student_out = student_.head.forward(features.size() == 1 ? features[0] : concat(features, 0));
    return loss_(student_out, teacher_out, teacher_temp(step));
  }

  void before_update(int64_t step, Optimizer& optimizer) override {
    if (step < freeze_steps_) student_.head.weight_v.zero_grad();  // DINO's cancel_gradients_last_layer
    optimizer.set_weight_decay(0, weight_decay(step));
  }

  void after_update(int64_t step) override {  // teacher = m · teacher + (1 - m) · student
    NoGradGuard no_grad;
    const float m = static_cast<float>(momentum(step));
    const NamedTensors s = student_.named_parameters(), t = teacher_.named_parameters();
    for (size_t i = 0; i < s.size(); ++i) {
      Tensor target = t[i].second;
      ema_(target, s[i].second, m);
    }
  }

  NamedTensors extra_state() const override {
    NamedTensors out;
    for (const auto& [name, t] : teacher_.named_parameters()) out.emplace_back("teacher." + name, t);
    out.emplace_back("center", loss_.center);
    return out;
  }
  void load_extra_state(const NamedTensors& state, const std::string& source) override {
    NamedTensors teacher;
    bool have_center = false;
    for (const auto& [name, t] : state) {
      if (name.rfind("teacher.", 0) == 0) {
        teacher.emplace_back(name.substr(8), t);
      } else if (name == "center") {
        if (t.shape() != loss_.center.shape())
          throw Error(source + ": extra.center has shape " + shape_str(t.shape()) + ", expected " +
                      shape_str(loss_.center.shape()));
        copy_(loss_.center, t.to(device_));
        have_center = true;
      } else {
        throw Error(source + ": unexpected task state \"extra." + name + "\"");
      }
    }
    if (!have_center) throw Error(source + ": lacks extra.center (the DINO centre)");
    load_state_dict(teacher_, teacher, {}, source + " (teacher)");
  }

  std::vector<std::pair<std::string, double>> metrics(int64_t step) const override {
    std::vector<std::pair<std::string, double>> m = {
        {"teacher_temp", teacher_temp(step)}, {"momentum", momentum(step)}, {"weight_decay", weight_decay(step)}};
    // The collapse signals of the step's last micro-batch (losses.h).
    if (loss_.teacher_entropy.defined()) {
      m.emplace_back("teacher_entropy", loss_.teacher_entropy.item());
      m.emplace_back("teacher_batch_entropy", loss_.teacher_batch_entropy.item());
      m.emplace_back("kl_teacher_student", loss_.kl.item());
    }
    NoGradGuard no_grad;
    m.emplace_back("center_norm", sqrt(sum(square(loss_.center))).item());
    return m;
  }

  // k-NN top-1 of the teacher's and the student's features (no generator: no drop-path) on the
  // fixed monitor subset; no random numbers are drawn, so monitoring leaves the run unchanged.
  std::vector<std::pair<std::string, double>> monitor() override {
    if (!monitor_train_.defined()) return {};
    NoGradGuard no_grad;
    std::vector<std::pair<std::string, double>> out;
    for (const auto& [name, model] : {std::pair<const char*, const Dino*>{"knn_teacher", &teacher_}, {"knn_student", &student_}}) {
      const auto encode = [&, model = model](const Tensor& images) {
        std::vector<Tensor> parts;
        for (int64_t a = 0; a < images.size(0); a += 256)
          parts.push_back(model->backbone.forward(slice(images, 0, a, std::min(images.size(0), a + 256)).to(device_)).embedding);
        return concat(parts, 0);
      };
      out.emplace_back(name, knn_top1(encode(monitor_train_), monitor_train_labels_, encode(monitor_test_),
                                      monitor_test_labels_, 10));
    }
    return out;
  }

  void describe(std::ostream& out) const override {
    out << "dino: " << student_.parameter_count() << " parameters (" << mcfg_.readout << " read-out"
        << (mcfg_.readout == "sparo" ? ", L=" + std::to_string(mcfg_.sparo.L) + " V=" + std::to_string(mcfg_.sparo.V) : "")
        << ", head " << mcfg_.head_out << " prototypes), device " << device_.str() << "\n"
        << "data: " << data_.description() << "; crops 2 × " << crops_.global_size << " + " << crops_.local_crops << " × "
        << crops_.local_size << "\n";
    if (const std::string s = data_.skipped_summary(); !s.empty()) out << "data: " << s << "\n";
    out << "steps " << cfg_.steps << ", batch " << cfg_.batch_size << " × " << cfg_.accum_steps << " accumulation, lr "
        << cfg_.peak_lr();
    if (cfg_.lr_reference_batch > 0) out << " (" << cfg_.lr << " × " << cfg_.samples_per_step() << " / " << cfg_.lr_reference_batch << ")";
    out << " (warm-up " << cfg_.warmup_steps << "), last layer frozen for " << freeze_steps_ << " steps, gradient clip "
        << cfg_.grad_clip << " (" << cfg_.grad_clip_mode << "), teacher momentum " << cfg_.momentum_teacher << " → "
        << cfg_.momentum_teacher_end << "\n";
    if (cfg_.eval_every > 0)
      out << (monitor_train_.defined() ? "k-NN monitor every " + std::to_string(cfg_.eval_every) + " steps: " +
                                             std::to_string(monitor_train_.size(0)) + " train images, " +
                                             std::to_string(monitor_test_.size(0)) + " test images\n"
                                       : std::string("k-NN monitor: off (it needs Fashion-MNIST's labels)\n"));
  }

 private:
  float teacher_temp(int64_t step) const {
    if (step >= cfg_.warmup_teacher_temp_steps) return static_cast<float>(cfg_.teacher_temp);
    const double f = cfg_.warmup_teacher_temp_steps > 1
                         ? static_cast<double>(step) / static_cast<double>(cfg_.warmup_teacher_temp_steps - 1)
                         : 1.0;  // np.linspace(warmup, final, W)
    return static_cast<float>(cfg_.warmup_teacher_temp + f * (cfg_.teacher_temp - cfg_.warmup_teacher_temp));
  }
  double momentum(int64_t step) const {
    return CosineSchedule{cfg_.momentum_teacher, cfg_.momentum_teacher_end, cfg_.steps}(step);
  }

  // The monitor's images, preprocessed as the evaluation does (TrainedDino::encode_images):
  // the first monitor_train train images as the k-NN memory, the first monitor_test test images
  // as queries.
  void prepare_monitor() {
    const LabeledImages* train = data_.labelled();
    if (!train) return;
    const LabeledImages test =
        load_fashion_mnist(cfg_.data_dir.empty() ? default_fashion_mnist_dir() : cfg_.data_dir, "test");
    const int size = static_cast<int>(mcfg_.image_size);
    const auto tensor = [&](const LabeledImages& set, int64_t n, std::vector<int>& labels) {
      n = std::min(n, set.count);
      std::vector<Image> images;
      for (int64_t i = 0; i < n; ++i) {
        Image img = gray_to_rgb(set.image(i), set.rows, set.cols);
        images.push_back(img.width == size && img.height == size ? img : resize_bicubic(img, size, size));
        labels.push_back(set.labels[static_cast<size_t>(i)]);
      }
      return images_to_tensor(images, kImageNetMean, kImageNetStd);
    };
    monitor_train_ = tensor(*train, cfg_.monitor_train, monitor_train_labels_);
    monitor_test_ = tensor(test, cfg_.monitor_test, monitor_test_labels_);
  }
  float weight_decay(int64_t step) const {
    if (cfg_.weight_decay_end < 0) return static_cast<float>(cfg_.weight_decay);
    return static_cast<float>(CosineSchedule{cfg_.weight_decay, cfg_.weight_decay_end, cfg_.steps}(step));
  }

  // Batch k of the run: stream positions [k·B, (k+1)·B); this process makes its rows
  // [first, first + local) of it (all of them without mpirun), crop-major.
  DinoBatch make_batch(int64_t k) {
    const int64_t B = shard_.local, n = cfg_.local_crops, first = k * cfg_.batch_size + shard_.first;
    std::vector<Image> globals(static_cast<size_t>(2 * B)), locals(static_cast<size_t>(n * B));
    std::vector<int64_t> index(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) index[static_cast<size_t>(b)] = order_[first + b];
    tbb::parallel_for(int64_t{0}, B, [&](int64_t b) {
      SampleRng rng(cfg_.seed, mix_stream(0xD1B0ull, static_cast<uint64_t>(first + b)));
      std::vector<Image> views = dino_multi_crop(data_.get(index[static_cast<size_t>(b)]), crops_, rng);
      for (int64_t c = 0; c < 2; ++c) globals[static_cast<size_t>(c * B + b)] = std::move(views[static_cast<size_t>(c)]);
      for (int64_t c = 0; c < n; ++c) locals[static_cast<size_t>(c * B + b)] = std::move(views[static_cast<size_t>(2 + c)]);
    });
    DinoBatch batch;
    batch.globals = images_to_tensor(globals, kImageNetMean, kImageNetStd);
    if (n > 0) batch.locals = images_to_tensor(locals, kImageNetMean, kImageNetStd);
    return batch;
  }

  TrainConfig cfg_;
  DinoConfig mcfg_;
  Device device_;
  Dino student_, teacher_;
  DinoLoss loss_;
  Generator generator_;
  UnlabeledImages data_;
  SampleOrder order_;
  BatchShard shard_;
  MultiCropOptions crops_;
  int64_t freeze_steps_ = 0;
  Tensor monitor_train_, monitor_test_;  // [N, 3, S, S] on the CPU
  std::vector<int> monitor_train_labels_, monitor_test_labels_;
  Prefetcher<DinoBatch> prefetch_;
};

}  // namespace

std::unique_ptr<TrainTask> make_dino_task(const TrainConfig& cfg) { return std::make_unique<DinoTask>(cfg); }

}  // namespace sparo
