// Data-parallel training over MPI: the one module that talks to MPI (distributed.cpp; a build
// without SPARO_MPI compiles the same functions for a world of one process).
//
// A run under `mpirun -np N sparo train ...` keeps the config's batch_size as the global batch:
// rank r computes rows [r·B/N, (r+1)·B/N) of every global batch, in the one-process sample
// order, and the ranks average their gradients (GradientReducer), so every rank
// holds the same parameters after each update and the run equals the one-process run up to
// floating-point reduction order. Outside mpirun the world is this one process: every call
// below returns its input unchanged and nothing touches MPI, so such a run is bit for bit
// the run of a build without MPI.
//
// Faults: an MPI error becomes a sparo::Error; a rank that fails calls abort(), which ends
// every rank of the job (MPI_Abort), and a rank that dies (a signal) makes mpirun end the
// others. A rank that is stuck or stopped (alive, so mpirun sees nothing) makes the others give
// up after SPARO_MPI_TIMEOUT seconds (default 1800) in a collective, with an error that says so.
// No rank is left waiting in a collective.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace sparo::distributed {

// Whether this build has MPI (CMake option SPARO_MPI).
bool compiled_with_mpi();

// Starts MPI when mpirun launched this process (its environment names a world size); a
// second call does nothing. finalize() ends it at a normal exit.
void init(int* argc, char*** argv);
void finalize();
// After an error on this rank: ends the whole job with `code` (MPI_Abort); a plain exit when
// the world is one process.
[[noreturn]] void abort(int code);

int rank();  // 0 outside mpirun
int size();  // 1 outside mpirun
inline bool is_root() { return rank() == 0; }

// This rank's rows of a global batch of `global_batch` rows; refuses a batch that does not
// split evenly (`what` names the setting in the message).
BatchShard batch_shard(int64_t global_batch, const std::string& what);

// In place: every tensor becomes the mean of its values over the ranks. The tensors travel in
// flat buckets of about `bucket_bytes`; each element is summed in rank order 0, 1, ..., N-1
// whatever MPI's algorithm, so every rank gets the same bits and a run repeats bit for bit.
// Every rank must pass tensors of the same shapes in the same order.
void allreduce_mean(const std::vector<Tensor>& tensors, size_t bucket_bytes = size_t{4} << 20);
double allreduce_mean(double value);  // the mean over ranks, summed in rank order

// allreduce_mean of the gradients of `params` (the same buckets of about `bucket_bytes`, each
// element summed in rank order: the same bits), able to start each bucket during backward, as
// soon as the last of its gradients is final, so that communication overlaps computation:
//
//   GradientReducer reducer(params);               // once: the bucket layout
//   { GradReadyScope overlap(reducer.hook());       // per step, on the last backward only
//     loss.backward(); }                            // full buckets start while backward goes on
//   reducer.finish();                               // starts the rest, waits, writes the means
//
// Without the hook, finish() alone is allreduce_mean. Buckets hold the parameters in reverse
// order (backward reaches the last layers first). Parameters without a gradient are skipped, as
// allreduce_mean skips them: every rank must have the same ones. Open MPI moves non-blocking
// collectives on only inside MPI calls, so each hook call also tests the oldest bucket in
// flight. The buckets use two communicators of their own (for the all-to-all and for the
// all-gather), each in the order the buckets started — the same on every rank, since it follows
// the graph — so they never pair with each other or with the blocking collectives backward
// itself calls (all_gather's backward). Outside mpirun it does nothing.
class GradientReducer {
 public:
  explicit GradientReducer(std::vector<Tensor> params, size_t bucket_bytes = size_t{4} << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  GradReadyHook hook();  // empty outside mpirun
  void finish();
  int64_t buckets() const;
  // Of the last finish()'s buckets, those the hook started during backward.
  int64_t started_during_backward() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};
int allreduce_max(int value);
// value of every rank, in rank order.
std::vector<int64_t> allgather(int64_t value);
std::vector<uint64_t> allgather(uint64_t value);
// The root's string on every rank.
std::string broadcast(const std::string& value);
void barrier();

// Differentiable: the ranks' `local` tensors ([n, ...], the same shape on every rank) concatenated
// along axis 0 in rank order ([N·n, ...]). Backward sums the incoming gradient over the ranks
// and returns this rank's rows of the sum, i.e. the gradient of Σ_ranks loss_rank with respect to
// the local rows (torch.distributed.nn.all_gather). Outside mpirun: `local` itself.
Tensor all_gather(const Tensor& local);

// Time spent communicating, accumulated since the start or the last reset_comm_stats(): a
// steady_clock read on entry and exit of each collective above (cheap beside any message). A
// collective's time includes waiting for the slowest rank to arrive, so it is communication plus
// imbalance, not link time alone. Outside mpirun nothing communicates and everything stays 0.
struct CommStats {
  double grad_s = 0.0;        // allreduce_mean(tensors), GradientReducer: packing, MPI and unpacking
  int64_t grad_bytes = 0;     // the f32 bytes those calls averaged (per rank, before any split)
  double gather_s = 0.0;      // all_gather's forward (the gather) and backward (the sum of gradients)
  int64_t gather_bytes = 0;   // the bytes all_gather's forwards returned (the gathered tensors)
  double other_s = 0.0;       // everything else: scalars, broadcasts, barriers, hashes
  double mpi_s = 0.0;         // of all the above, the time inside MPI calls alone
  int64_t calls = 0;          // collectives counted (an all_gather's forward and backward: 2)
  double total_s() const { return grad_s + gather_s + other_s; }
};
CommStats comm_stats();
void reset_comm_stats();

// A 64-bit FNV-1a hash of the tensors' values (and shapes), in order.
uint64_t hash_tensors(const std::vector<Tensor>& tensors);
// Throws, naming every rank whose tensors differ from rank 0's, unless all ranks hold the same
// values; `what` says which tensors and when (e.g. "parameters at step 20").
void check_identical(const std::vector<Tensor>& tensors, const std::string& what);

}  // namespace sparo::distributed
