// Training checkpoints: one safetensors file per checkpoint holding everything a run needs
// to continue exactly where it was —
//   "model.<name>"      the trained model's parameters
//   "optimizer.<name>"  the optimiser state (Optimizer::state())
//   "extra.<name>"      task state (DINO's teacher and centre)
// and, in the metadata, the step, the random generator's (seed, offset) and the format tag.
// The data position needs no field: the sample stream is a function of the step (see
// training/data/batches.h).
//
// Files are written atomically: to "<path>.tmp", flushed, then renamed over <path>, so a
// crash leaves either the old checkpoint or the new one, never half of one.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/safetensors.h"

namespace sparo {

struct Checkpoint {
  int64_t step = 0;  // optimiser steps completed
  uint64_t generator_seed = 0, generator_offset = 0;
  NamedTensors model, optimizer, extra;
};

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Strict: the format tag and every metadata field must be present and valid.
Checkpoint load_checkpoint(const std::string& path);

// Writes any safetensors file atomically (temporary file + rename).
void save_safetensors_atomic(const std::string& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata = {});

// Writes text through "<path>.tmp", flushed to the disk before it replaces path, so a crash or
// power loss leaves the old text or the new one; a failure removes the temporary file and
// says why.
void write_text_atomic(const std::string& path, const std::string& text);

// "<dir>/step-00001200.safetensors" and the steps of those present in dir, ascending (a
// step-N file whose N is past int64 is an error naming it).
std::string checkpoint_path(const std::string& dir, int64_t step);
std::vector<int64_t> list_checkpoints(const std::string& dir);

}  // namespace sparo
