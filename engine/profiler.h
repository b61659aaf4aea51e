// Per-op time table, like torch.profiler's key averages: SPARO_PROFILE=1, or --profile on
// `sparo train`, `sparo embed` and bench_train_step.
//
// Every op that runs a kernel opens a profiler::Scope at its entry (engine/ops/*.cpp), named as
// the node it records in the autograd graph, so an op's forward and backward land in one row;
// run_backward opens one around each node's backward closure. Composite ops (linear, mean,
// l2_normalize, cross_entropy, dropout, ...) open none: their parts are the rows, as their
// backward nodes are.
//
// Nesting: only the outermost scope of a thread is timed and counted (an op built from other
// ops, a backward closure calling ops); inner scopes add no time and no call, so nothing is
// counted twice. The work they declare (add_work: FLOPs, bytes) goes to the outermost scope, so
// matmul's backward row holds the FLOPs of the GEMMs its closure runs.
//
// Timing is host wall-clock (std::chrono::steady_clock). On the CPU backend a kernel has finished
// when its op returns, so the numbers are exact. The Vulkan backend records work and submits it
// lazily: there a row measures recording and submission, and the GPU's time lands on whichever
// op waits for it (a host read such as item(), a sync), unless something synchronises per op.
//
// Off (the default), a scope costs one relaxed atomic load and a branch: no clock read.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sparo::profiler {

enum class Phase { forward, backward };

namespace detail {
extern std::atomic<bool> enabled_flag;
void add_work(double flops, double bytes);
}  // namespace detail

inline bool enabled() { return detail::enabled_flag.load(std::memory_order_relaxed); }

// On turns recording on and starts a fresh table (reset()); off stops recording.
void set_enabled(bool on);
// True when `flag` (a --profile option) is set or SPARO_PROFILE is set to anything but "" or "0".
bool requested(bool flag);
// Clears the table and restarts the wall clock the shares are taken of.
void reset();

// Times one op call; the name must outlive the scope (a literal, or the autograd node's name).
class Scope {
 public:
  explicit Scope(const char* name, Phase phase = Phase::forward) {
    if (enabled()) begin(name, phase);
  }
  ~Scope() {
    if (active_) end();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void begin(const char* name, Phase phase);
  void end();
  bool active_ = false;  // began while enabled: end() must balance the thread's nesting depth
};

// Work done by the op under way on this thread, for the GFLOP/s and GB/s columns: the FLOPs
// of a GEMM (2·M·N·K), the bytes an elementwise kernel reads and writes. Arguments are evaluated
// even when the profiler is off: where they cost more than a few multiplications (tensor sizes),
// check enabled() first, as engine/ops/op_support.h's add_bytes does.
inline void add_work(double flops, double bytes) {
  if (enabled()) detail::add_work(flops, bytes);
}

struct PhaseStats {
  int64_t calls = 0;
  double seconds = 0.0, flops = 0.0, bytes = 0.0;
};

struct Row {
  std::string op;
  PhaseStats forward, backward;
  double seconds() const { return forward.seconds + backward.seconds; }
};

struct Report {
  double wall_seconds = 0.0;  // since set_enabled(true) or the last reset()
  std::vector<Row> rows;      // by total time, largest first
  const Row* find(const std::string& op) const;
};

Report report();
// The aligned text table, with "other/untracked" = wall - sum of the rows so that it adds up.
std::string format(const Report& report, const std::string& title);

}  // namespace sparo::profiler
