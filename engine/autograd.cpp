#include "engine/autograd.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"
#include "engine/profiler.h"

namespace sparo {

namespace {
thread_local bool grad_mode = true;
thread_local GradReadyHook grad_ready_hook;

// Op names seen by record(), keyed by the literal's address (cheap on the hot path).
std::mutex recorded_mutex;
std::unordered_set<const char*> recorded_names;
}  // namespace

bool grad_enabled() { return grad_mode; }
NoGradGuard::NoGradGuard() : previous_(grad_mode) { grad_mode = false; }
NoGradGuard::~NoGradGuard() { grad_mode = previous_; }

GradReadyScope::GradReadyScope(GradReadyHook hook) : previous_(std::move(grad_ready_hook)) {
  grad_ready_hook = std::move(hook);
}
GradReadyScope::~GradReadyScope() { grad_ready_hook = std::move(previous_); }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_mode) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

static Edge edge_to(const Tensor& t) {
  Edge e;
  if (!t.defined() || !t.requires_grad()) return e;
  if (t.impl()->grad_fn)
    e.node = t.impl()->grad_fn;
  else
    e.leaf = t.impl_ptr();
  e.shape = t.shape();
  return e;
}

static Tensor attach(const char* op, Tensor out, std::vector<Edge> inputs, BackwardFn backward) {
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
  std::vector<Edge> edges;
  for (const Tensor* t : inputs) edges.push_back(edge_to(*t));
  return attach(op, std::move(out), std::move(edges), std::move(backward));
}

Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  bool any = false;
  std::vector<Edge> edges;
  for (const Tensor& t : inputs) {
    edges.push_back(edge_to(t));
    any = any || edges.back().defined();
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

  // A leaf root: its gradient is the upstream gradient.
  std::unordered_map<TensorImpl*, std::pair<std::shared_ptr<TensorImpl>, Tensor>> leaf_grads;
  const auto to_leaf = [&](const std::shared_ptr<TensorImpl>& leaf, Tensor g) {
    auto slot = leaf_grads.find(leaf.get());
    if (slot == leaf_grads.end()) {
      leaf_grads.emplace(leaf.get(), std::make_pair(leaf, std::move(g)));
    } else {
      profiler::Scope scope("grad_accumulate", profiler::Phase::backward);
      slot->second.second = add(slot->second.second, g);
    }
  };

  // Reverse topological order of the nodes by an iterative depth-first search (deep graphs
  // must not overflow the stack). `order` owns each node until its turn comes and drops it
  // right after, so what the nodes saved is freed as backward proceeds.
  std::vector<std::shared_ptr<Node>> order;
  if (root.impl()->grad_fn) {
    std::unordered_set<Node*> visited;
    std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root.impl()->grad_fn, 0}};
    visited.insert(stack.back().first.get());
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < node->inputs.size()) {
        const std::shared_ptr<Node>& child = node->inputs[next++].node;
        if (child && visited.insert(child.get()).second) stack.emplace_back(child, 0);
        continue;
      }
      order.push_back(std::move(node));
      stack.pop_back();
    }
    std::reverse(order.begin(), order.end());  // root first
  }

  // Each leaf's .grad is written as soon as its last contribution has arrived, not after the
  // whole walk, so a GradReadyHook can act on it while backward goes on: `pending` counts the
  // edges into each leaf from the nodes still to run (a node that gets no gradient, or returns
  // none for that input, still counts down).
  std::unordered_map<TensorImpl*, int> pending;
  for (const std::shared_ptr<Node>& node : order)
    for (const Edge& edge : node->inputs)
      if (edge.leaf) ++pending[edge.leaf.get()];
  const auto accumulate_into_grad = [&](TensorImpl* key) {
    auto entry = leaf_grads.find(key);
    if (entry == leaf_grads.end()) return;  // nothing flowed to it
    const std::shared_ptr<TensorImpl> impl = std::move(entry->second.first);
    const Tensor g = std::move(entry->second.second);
    leaf_grads.erase(entry);
    if (!impl->requires_grad) return;
    {
      profiler::Scope scope("grad_accumulate", profiler::Phase::backward);
      if (!impl->grad) {
        impl->grad = g.clone().impl_ptr();
      } else {
        Tensor acc(impl->grad);
        add_(acc, g);
      }
    }
    if (grad_ready_hook) grad_ready_hook(Tensor(impl));
  };
  const auto one_edge_done = [&](const Edge& edge) {
    auto count = pending.find(edge.leaf.get());
    if (--count->second > 0) return;
    pending.erase(count);
    accumulate_into_grad(edge.leaf.get());
  };

  NoGradGuard no_grad;  // backward closures compute with plain ops
  std::unordered_map<Node*, Tensor> grads;
  if (order.empty()) {
    to_leaf(root.impl_ptr(), grad.detach());
    accumulate_into_grad(root.impl());
  } else {
    grads[order.front().get()] = grad.detach();
  }
  for (std::shared_ptr<Node>& owned : order) {
    const std::shared_ptr<Node> node_ptr = std::move(owned);
    Node& node = *node_ptr;
    auto found = grads.find(&node);
    if (found == grads.end()) {  // nothing flowed here
      for (const Edge& edge : node.inputs)
        if (edge.leaf) one_edge_done(edge);
      continue;
    }
    Tensor g = std::move(found->second);
    grads.erase(found);
    if (node.released)
      throw Error("backward: the graph through op \"" + node.op +
                  "\" was already freed by an earlier backward pass");
    std::vector<Tensor> input_grads;
    {
      // The node's row: the op's backward is everything its closure runs.
      profiler::Scope scope(node.op.c_str(), profiler::Phase::backward);
      input_grads = node.backward(g);
    }
    if (input_grads.size() != node.inputs.size())
      throw Error("backward of op \"" + node.op + "\" returned " + std::to_string(input_grads.size()) +
                  " gradients for " + std::to_string(node.inputs.size()) + " inputs");
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Edge& edge = node.inputs[i];
      if (!edge.defined()) continue;
      if (input_grads[i].defined() && input_grads[i].shape() != edge.shape)
        throw Error("backward of op \"" + node.op + "\": gradient for input " + std::to_string(i) +
                    " has shape " + shape_str(input_grads[i].shape()) + ", expected " + shape_str(edge.shape));
      if (edge.leaf) {
        if (input_grads[i].defined()) to_leaf(edge.leaf, std::move(input_grads[i]));
        one_edge_done(edge);
        continue;
      }
      if (!input_grads[i].defined()) continue;
      auto slot = grads.find(edge.node.get());
      if (slot == grads.end()) {
        grads.emplace(edge.node.get(), std::move(input_grads[i]));
      } else {
        // A tensor used twice: summing its gradients is backward work of no one op.
        profiler::Scope scope("grad_accumulate", profiler::Phase::backward);
        slot->second = add(slot->second, input_grads[i]);
      }
    }
    // Free what this node saved and its edges: the graph does not outlive backward.
    node.backward = nullptr;
    node.inputs.clear();
    node.released = true;
  }
}

}  // namespace sparo
