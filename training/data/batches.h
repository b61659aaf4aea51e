// The sample order of a training run and background preparation of the next batch.
//
// Order: the run reads one endless stream of samples, epoch after epoch; within epoch e the
// samples come in a permutation of [0, n) drawn from (seed, e). Sample k of the stream is a
// pure function of (seed, k), so the data position of a run is just the number of samples
// consumed — a resumed run continues with exactly the samples it would have seen.
//
// Prefetch: while the model trains on batch k, batch k + 1 is prepared on a oneTBB task.
// A batch is a pure function of its index, so prefetching changes timing, never content.
#pragma once

#include <tbb/task_group.h>

#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <vector>

#include "engine/tensor.h"
#include "training/data/sample_rng.h"

namespace sparo {

class SampleOrder {
 public:
  SampleOrder(int64_t count, uint64_t seed) : count_(count), seed_(seed) {
    if (count <= 0) throw Error("sample order: the dataset is empty");
  }
  int64_t count() const { return count_; }
  // The dataset index of stream position k (k >= 0).
  int64_t operator[](int64_t k) {
    const int64_t epoch = k / count_;
    if (epoch != epoch_) shuffle(epoch);
    return permutation_[static_cast<size_t>(k % count_)];
  }

 private:
  void shuffle(int64_t epoch) {  // Fisher–Yates with the epoch's own stream
    permutation_.resize(static_cast<size_t>(count_));
    std::iota(permutation_.begin(), permutation_.end(), int64_t{0});
    SampleRng rng(seed_, mix_stream(0x5EED0DE7ull, static_cast<uint64_t>(epoch)));
    for (int64_t i = count_ - 1; i > 0; --i) std::swap(permutation_[static_cast<size_t>(i)], permutation_[static_cast<size_t>(rng.below(i + 1))]);
    epoch_ = epoch;
  }
  int64_t count_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> permutation_;
};

template <typename Batch>
class Prefetcher {
 public:
  explicit Prefetcher(std::function<Batch(int64_t)> make) : make_(std::move(make)) {}
  // noexcept: tbb::task_group may throw from its destructor only when tasks are still running,
  // and wait_quietly() has waited for them.
  ~Prefetcher() noexcept { wait_quietly(); }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Batch k (waiting for it if it is being prepared), and starts preparing k + 1.
  Batch get(int64_t k) {
    std::optional<Batch> batch;
    if (pending_ == k) {
      group_.wait();  // rethrows an error from the preparation
      batch = std::move(next_);
    } else {
      wait_quietly();
      batch = make_(k);
    }
    pending_ = k + 1;
    next_.reset();
    group_.run([this, k] { next_ = make_(k + 1); });
    return std::move(*batch);
  }

 private:
  void wait_quietly() {
    try {
      group_.wait();
    } catch (...) {  // an error in a batch nobody asked for yet is reported when it is asked for
    }
    pending_ = -1;
  }
  std::function<Batch(int64_t)> make_;
  tbb::task_group group_;
  std::optional<Batch> next_;
  int64_t pending_ = -1;
};

}  // namespace sparo
