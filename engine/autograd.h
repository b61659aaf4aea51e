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

// Where the gradient of one input goes: to the node that produced it, or, for a leaf, to
// the leaf itself. An edge never holds a non-leaf input's TensorImpl: that would keep every
// intermediate tensor's storage alive for as long as the graph lives, not only what the
// backward closures save (measured: ~2.5× the activation memory of a transformer block).
struct Edge {
  std::shared_ptr<Node> node;        // the op that made the input (non-leaf input)
  std::shared_ptr<TensorImpl> leaf;  // the input itself (leaf that requires a gradient)
  Shape shape;                       // the input's shape, to check its gradient
  bool defined() const { return node || leaf; }
};

struct Node {
  std::string op;
  std::vector<Edge> inputs;  // an undefined edge: this input needs no gradient
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

// Called by this thread's backward passes for each leaf that requires a gradient, as soon as its
// last contribution of the pass has arrived and been added into its .grad (so .grad is final for
// this pass), in the order that happens. Data-parallel training uses it to start averaging a
// bucket of gradients while backward goes on (training/distributed.h, GradientReducer).
using GradReadyHook = std::function<void(const Tensor& leaf)>;

// Installs `hook` for this thread until the scope ends (then the previous one again).
class GradReadyScope {
 public:
  explicit GradReadyScope(GradReadyHook hook);
  ~GradReadyScope();
  GradReadyScope(const GradReadyScope&) = delete;
  GradReadyScope& operator=(const GradReadyScope&) = delete;

 private:
  GradReadyHook previous_;
};

}  // namespace sparo
