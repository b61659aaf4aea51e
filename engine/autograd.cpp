#include "engine/autograd.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace sparo {

namespace {
thread_local bool grad_mode = true;

// Op names seen by record(), keyed by the literal's address (cheap on the hot path).
std::mutex recorded_mutex;
std::unordered_set<const char*> recorded_names;
}  // namespace

bool grad_enabled() { return grad_mode; }
NoGradGuard::NoGradGuard() : previous_(grad_mode) { grad_mode = false; }
NoGradGuard::~NoGradGuard() { grad_mode = previous_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_mode) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

static Tensor attach(const char* op, Tensor out, std::vector<std::shared_ptr<TensorImpl>> inputs,
                     BackwardFn backward) {
  {
    std::lock_guard<std::mutex> lock(recorded_mutex);
    recorded_names.insert(op);
  }
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

Tensor record(const char* op, Tensor out, std::initializer_list<const Tensor*> inputs, BackwardFn backward) {
  if (!needs_grad(inputs)) return out;
  std::vector<std::shared_ptr<TensorImpl>> edges;
  for (const Tensor* t : inputs)
    edges.push_back(t->defined() && t->requires_grad() ? t->impl_ptr() : nullptr);
  return attach(op, std::move(out), std::move(edges), std::move(backward));
}

Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  bool any = false;
  std::vector<std::shared_ptr<TensorImpl>> edges;
  for (const Tensor& t : inputs) {
    const bool wants = t.defined() && t.requires_grad();
    any = any || wants;
    edges.push_back(wants ? t.impl_ptr() : nullptr);
  }
  if (!grad_mode || !any) return out;
  return attach(op, std::move(out), std::move(edges), std::move(backward));
}

std::vector<std::string> recorded_op_names() {
  std::lock_guard<std::mutex> lock(recorded_mutex);
  std::vector<std::string> names(recorded_names.begin(), recorded_names.end());
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

void run_backward(const Tensor& root, const Tensor& grad) {
  if (!root.requires_grad())
    throw Error("backward: the tensor does not require a gradient (no input of the ops that made it "
                "has requires_grad set)");
  if (grad.shape() != root.shape())
    throw Error("backward: upstream gradient shape " + shape_str(grad.shape()) +
                " differs from the tensor's shape " + shape_str(root.shape()));

  // Reverse topological order by an iterative depth-first search (deep graphs must
  // not overflow the stack). `order` owns a reference to every tensor until its turn
  // comes, and drops it right after, so activations are freed as backward proceeds.
  std::vector<std::shared_ptr<TensorImpl>> order;
  std::unordered_set<TensorImpl*> visited;
  std::vector<std::pair<std::shared_ptr<TensorImpl>, size_t>> stack{{root.impl_ptr(), 0}};
  visited.insert(root.impl());
  while (!stack.empty()) {
    auto& [impl, next] = stack.back();
    Node* node = impl->grad_fn.get();
    if (node && next < node->inputs.size()) {
      const std::shared_ptr<TensorImpl>& child = node->inputs[next++];
      if (child && visited.insert(child.get()).second) stack.emplace_back(child, 0);
      continue;
    }
    order.push_back(std::move(impl));
    stack.pop_back();
  }
  std::reverse(order.begin(), order.end());  // root first

  std::unordered_map<TensorImpl*, Tensor> grads;
  grads[root.impl()] = grad.detach();
  NoGradGuard no_grad;  // backward closures compute with plain ops
  for (std::shared_ptr<TensorImpl>& owned : order) {
    const std::shared_ptr<TensorImpl> impl = std::move(owned);
    auto found = grads.find(impl.get());
    if (found == grads.end()) continue;  // nothing flowed here
    Tensor g = std::move(found->second);
    grads.erase(found);

    if (!impl->grad_fn) {  // a leaf: accumulate into .grad
      if (!impl->requires_grad) continue;
      if (!impl->grad) impl->grad = g.clone().impl_ptr();
      else { Tensor acc(impl->grad); add_(acc, g); }
      continue;
    }
    Node& node = *impl->grad_fn;
    if (node.released)
      throw Error("backward: the graph through op \"" + node.op +
                  "\" was already freed by an earlier backward pass");
    std::vector<Tensor> input_grads = node.backward(g);
    if (input_grads.size() != node.inputs.size())
      throw Error("backward of op \"" + node.op + "\" returned " + std::to_string(input_grads.size()) +
                  " gradients for " + std::to_string(node.inputs.size()) + " inputs");
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      TensorImpl* input = node.inputs[i].get();
      if (!input || !input_grads[i].defined()) continue;
      if (input_grads[i].shape() != input->shape)
        throw Error("backward of op \"" + node.op + "\": gradient for input " + std::to_string(i) +
                    " has shape " + shape_str(input_grads[i].shape()) + ", expected " + shape_str(input->shape));
      auto slot = grads.find(input);
      if (slot == grads.end()) grads.emplace(input, std::move(input_grads[i]));
      else slot->second = add(slot->second, input_grads[i]);
    }
    // Free what this node saved and its edges: the graph does not outlive backward.
    node.backward = nullptr;
    node.inputs.clear();
    node.released = true;
  }
}

}  // namespace sparo
