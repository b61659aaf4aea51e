// Define-by-run reverse-mode autodiff.
//
// Every op that may need a gradient calls record() with its output, its inputs and
// a backward closure written right beside its forward (micrograd style). backward()
// walks the recorded nodes in reverse topological order, accumulates gradients for
// tensors used more than once, stores them on the leaves, and frees each node once
// it has run, so the graph (and the activations it holds) is gone after backward.
//
// Backward closures must not capture the op's output Tensor itself (that would be
// a reference cycle output -> node -> output); capture out.detach() instead.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sparo {

// Returns one gradient per input, in input order; an undefined Tensor for an input
// that gets none (integer inputs, masks).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Node {
  std::string op;
  std::vector<std::shared_ptr<TensorImpl>> inputs;  // nullptr: this input needs no gradient
  BackwardFn backward;
  bool released = false;  // backward already ran and freed what it saved
};

bool grad_enabled();

// Inside its scope no op records anything (inference, optimiser updates, EMA).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when at least one input requires a gradient and grad mode is on: only then
// does an op need to save anything for backward.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Attaches a node to `out` when needs_grad(inputs); returns out.
Tensor record(const char* op, Tensor out, std::initializer_list<const Tensor*> inputs,
              BackwardFn backward);
Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward);

// Runs the backward pass from `root` with upstream gradient `grad` (same shape as root).
void run_backward(const Tensor& root, const Tensor& grad);

}  // namespace sparo
