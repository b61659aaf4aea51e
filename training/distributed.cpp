#include "training/distributed.h"

#if SPARO_HAVE_MPI
// The C API only: OpenMPI's and MPICH's deprecated C++ bindings do not compile warning-free.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#endif

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace sparo::distributed {

namespace {

int g_rank = 0, g_size = 1;

// ---- communication time (comm_stats) ----

using Clock = std::chrono::steady_clock;
CommStats g_stats;
int g_depth = 0;  // collectives in progress: one called inside another is counted by the outer one

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Adds the time from construction to destruction to one field of g_stats, unless it runs inside
// another CommTimer (allreduce_mean's shape check, all_gather's): that time is the outer one's.
// `collective`: the timed code is one collective (counted in g_stats.calls).
class CommTimer {
 public:
  explicit CommTimer(double CommStats::*field, bool collective = true)
      : field_(field), outer_(g_depth++ == 0), collective_(collective) {
    if (outer_) start_ = Clock::now();
  }
  ~CommTimer() {
    --g_depth;
    if (!outer_) return;
    g_stats.*field_ += seconds_since(start_);
    if (collective_) ++g_stats.calls;
  }
  CommTimer(const CommTimer&) = delete;
  CommTimer& operator=(const CommTimer&) = delete;

 private:
  double CommStats::*field_;
  bool outer_, collective_;
  Clock::time_point start_{};
};

// ---- the MPI primitives everything else is built from (or their one-process versions) ----

#if SPARO_HAVE_MPI
bool g_started = false;  // MPI_Init ran in this process
// GradientReducer's own communicators (copies of the world): its non-blocking all-to-alls and
// all-gathers each keep one order on every rank, whatever else is called in between.
MPI_Comm g_bucket_scatter_comm = MPI_COMM_NULL, g_bucket_gather_comm = MPI_COMM_NULL;

std::string at_rank() { return " (rank " + std::to_string(g_rank) + " of " + std::to_string(g_size) + ")"; }

// MPI_ERRORS_RETURN is set on the world communicator, so a failed call returns here.
void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(std::string("MPI: ") + call + " failed" + at_rank() + ": " + std::string(text, static_cast<size_t>(length)));
}

// Runs one MPI call, its time added to g_stats.mpi_s; returns its return code.
template <typename Call>
int timed(Call&& call) {
  const auto start = Clock::now();
  const int rc = call();
  g_stats.mpi_s += seconds_since(start);
  return rc;
}

// Seconds a collective waits for the other ranks before this rank gives up: SPARO_MPI_TIMEOUT
// (default 1800; 0 = no limit). mpirun ends the job when a rank dies, but a rank that is stuck or
// stopped (a hung file system, SIGSTOP) would leave the others waiting for ever. The default
// leaves room for what rank 0 does alone between collectives (checkpoints, the k-NN monitor).
double collective_timeout_s() {
  static const double seconds = [] {
    const char* text = std::getenv("SPARO_MPI_TIMEOUT");
    if (!text || !*text) return 1800.0;
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (*end != '\0' || !(v >= 0) || v > 1e9)
      throw Error("SPARO_MPI_TIMEOUT=" + std::string(text) + ": expected seconds, a number from 0 (no limit) to 1e9");
    return v;
  }();
  return seconds;
}

// Completes `request` by testing it in a loop (Open MPI's blocking calls poll the same way);
// throws when the other ranks have not arrived within collective_timeout_s().
int wait_for(MPI_Request& request, const char* call) {
  const double limit = collective_timeout_s();
  const auto start = Clock::now();
  for (unsigned spins = 0;; ++spins) {
    int done = 0;
    const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done) return rc;
    if (limit > 0 && spins % 1024 == 0 && seconds_since(start) > limit) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%g", limit);
      throw Error(std::string("MPI: ") + call + " waited " + seconds +
                  " s for the other ranks and gives up (SPARO_MPI_TIMEOUT): one of them is stuck or stopped; "
                  "ending the job");
    }
  }
}

// One collective to completion: `start` begins it (non-blocking, filling the request), then
// wait_for; its time is added to g_stats.mpi_s.
template <typename Start>
void collective(const char* call, Start&& start) {
  check(timed([&] {
          MPI_Request request = MPI_REQUEST_NULL;
          const int rc = start(&request);
          return rc != MPI_SUCCESS ? rc : wait_for(request, call);
        }),
        call);
}

int count_of(size_t n) {
  if (n > static_cast<size_t>(INT_MAX)) throw Error("MPI: a message of " + std::to_string(n) + " elements exceeds INT_MAX");
  return static_cast<int>(n);
}
#endif

// sums[i] = Σ_r copies[r·chunk + i], added in rank order 0, 1, ..., N-1.
void sum_in_rank_order(const std::vector<float>& copies, size_t chunk, std::vector<float>& sums) {
  const size_t ranks = static_cast<size_t>(g_size);
  sums.resize(chunk);
  for (size_t i = 0; i < chunk; ++i) {
    float acc = copies[i];
    for (size_t r = 1; r < ranks; ++r) acc += copies[r * chunk + i];
    sums[i] = acc;
  }
}

// This rank's chunk of Σ_ranks data_rank, each element summed in rank order: `data` (padded
// with zeros to N equal chunks, in place) is split into N chunks, an all-to-all hands rank r
// every rank's copy of chunk r, and it adds them in rank order — the traffic of a ring
// reduce-scatter, but the order of the additions is ours, not the MPI library's choice, so every
// run gets the same bits.
std::vector<float> sum_chunk_over_ranks(std::vector<float>& data) {
  if (g_size == 1) return data;
  std::vector<float> sums;
#if SPARO_HAVE_MPI
  const size_t ranks = static_cast<size_t>(g_size);
  const size_t chunk = (data.size() + ranks - 1) / ranks;
  data.resize(chunk * ranks, 0.0f);
  std::vector<float> copies(chunk * ranks);
  collective("MPI_Ialltoall", [&](MPI_Request* request) {
    return MPI_Ialltoall(data.data(), count_of(chunk), MPI_FLOAT, copies.data(), count_of(chunk), MPI_FLOAT,
                         MPI_COMM_WORLD, request);
  });
  sum_in_rank_order(copies, chunk, sums);
#endif
  return sums;
}

// In place: element i becomes Σ_ranks data_rank[i], summed in rank order: each rank sums its
// chunk (sum_chunk_over_ranks) and an all-gather spreads the sums — the traffic of a ring
// allreduce, and every rank gets the same bits on every run.
void sum_over_ranks([[maybe_unused]] std::vector<float>& data) {
  if (g_size == 1) return;
#if SPARO_HAVE_MPI
  const size_t n = data.size();
  const std::vector<float> sums = sum_chunk_over_ranks(data);
  const size_t chunk = sums.size();
  collective("MPI_Iallgather", [&](MPI_Request* request) {
    return MPI_Iallgather(sums.data(), count_of(chunk), MPI_FLOAT, data.data(), count_of(chunk), MPI_FLOAT,
                          MPI_COMM_WORLD, request);
  });
  data.resize(n);
#endif
}

// Every rank's `bytes` bytes, in rank order.
std::vector<unsigned char> gather_bytes(const void* value, size_t bytes) {
  std::vector<unsigned char> out(bytes * static_cast<size_t>(g_size));
  if (g_size == 1) {
    std::memcpy(out.data(), value, bytes);
    return out;
  }
#if SPARO_HAVE_MPI
  const CommTimer timer(&CommStats::other_s);
  collective("MPI_Iallgather", [&](MPI_Request* request) {
    return MPI_Iallgather(value, count_of(bytes), MPI_BYTE, out.data(), count_of(bytes), MPI_BYTE, MPI_COMM_WORLD,
                          request);
  });
#endif
  return out;
}

template <typename T>
std::vector<T> gather_values(T value) {
  const std::vector<unsigned char> bytes = gather_bytes(&value, sizeof(T));
  std::vector<T> out(static_cast<size_t>(g_size));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace

bool compiled_with_mpi() {
#if SPARO_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void init([[maybe_unused]] int* argc, [[maybe_unused]] char*** argv) {
#if SPARO_HAVE_MPI
  if (g_started) return;
  // Only under a launcher: a plain `sparo ...` must not start MPI's singleton machinery (and
  // then behaves exactly as a build without MPI).
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE");
  if (!launched) return;
  int provided = 0;
  // FUNNELED: oneTBB's worker threads exist, but only the main thread calls MPI.
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw Error("MPI: MPI_Init_thread failed");
  g_started = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &g_size), "MPI_Comm_size");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &g_bucket_scatter_comm), "MPI_Comm_dup");  // errors return, as the world's
  check(MPI_Comm_dup(MPI_COMM_WORLD, &g_bucket_gather_comm), "MPI_Comm_dup");
#endif
}

void finalize() {
#if SPARO_HAVE_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_started && !finalized) {
    for (MPI_Comm* comm : {&g_bucket_scatter_comm, &g_bucket_gather_comm})
      if (*comm != MPI_COMM_NULL) MPI_Comm_free(comm);
    MPI_Finalize();
  }
#endif
}

void abort(int code) {
#if SPARO_HAVE_MPI
  if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

int rank() { return g_rank; }
int size() { return g_size; }

BatchShard batch_shard(int64_t global_batch, const std::string& what) {
  const int64_t ranks = g_size;
  if (global_batch % ranks != 0)
    throw Error(what + " " + std::to_string(global_batch) + " does not split evenly over " + std::to_string(ranks) +
                " processes (mpirun -np " + std::to_string(ranks) + "): it is the global batch, each process takes " +
                what + " / " + std::to_string(ranks) + " of it; choose a multiple of " + std::to_string(ranks));
  const int64_t local = global_batch / ranks;
  return {global_batch, g_rank * local, local};
}

void allreduce_mean(const std::vector<Tensor>& tensors, size_t bucket_bytes) {
  if (g_size == 1) return;
  const CommTimer timer(&CommStats::grad_s);
  // Every rank must bring the same tensors, or the buckets would pair unrelated values.
  int64_t total = 0;
  for (const Tensor& t : tensors) total += t.numel();
  const std::vector<int64_t> totals = allgather(total);
  for (int r = 0; r < g_size; ++r)
    if (totals[static_cast<size_t>(r)] != total)
      throw Error("allreduce_mean: rank " + std::to_string(r) + " brings " + std::to_string(totals[static_cast<size_t>(r)]) +
                  " values, rank " + std::to_string(g_rank) + " " + std::to_string(total));
  g_stats.grad_bytes += total * static_cast<int64_t>(sizeof(float));
  NoGradGuard no_grad;
  const float inv = 1.0f / static_cast<float>(g_size);
  const size_t bucket_floats = std::max<size_t>(1, bucket_bytes / sizeof(float));
  for (size_t begin = 0; begin < tensors.size();) {
    size_t end = begin, floats = 0;  // [begin, end): one bucket (at least one tensor)
    while (end < tensors.size() && (end == begin || floats + static_cast<size_t>(tensors[end].numel()) <= bucket_floats))
      floats += static_cast<size_t>(tensors[end++].numel());
    std::vector<float> flat;
    flat.reserve(floats);
    for (size_t i = begin; i < end; ++i) {
      const std::vector<float> v = tensors[i].to_float_vector();
      flat.insert(flat.end(), v.begin(), v.end());
    }
    sum_over_ranks(flat);
    size_t at = 0;
    for (size_t i = begin; i < end; ++i) {
      Tensor t = tensors[i];
      const size_t n = static_cast<size_t>(t.numel());
      std::vector<float> mean(flat.begin() + static_cast<std::ptrdiff_t>(at), flat.begin() + static_cast<std::ptrdiff_t>(at + n));
      for (float& x : mean) x *= inv;
      copy_(t, Tensor::from_vector(mean, t.shape(), t.device()));
      at += n;
    }
    begin = end;
  }
}

// ---- GradientReducer ----

struct GradientReducer::State {
  struct Bucket {
    std::vector<size_t> members;  // indices into params, in packing order
    size_t waiting = 0;           // members whose gradient the hook has not yet reported final
    bool started = false;
    size_t chunk = 0;             // floats per rank: the packed gradients, padded to ranks × chunk
    std::vector<float> flat;      // packed gradients; after the all-gather, the sums
    std::vector<float> copies;    // every rank's copy of this rank's chunk
    std::vector<float> sums;      // this rank's chunk, summed in rank order
#if SPARO_HAVE_MPI
    MPI_Request request = MPI_REQUEST_NULL;  // the all-to-all, then the all-gather
#endif
  };
  std::vector<Tensor> params;
  std::unordered_map<const TensorImpl*, size_t> bucket_of;
  std::vector<Bucket> buckets;
  std::vector<size_t> started;  // bucket indices in the order they started (the same on every rank)
  size_t summed = 0;            // started[0, summed) are summed and their all-gather started
  int64_t started_during_backward = 0, last_started_during_backward = 0;

  // Packs the bucket's gradients and starts its all-to-all (sum_chunk_over_ranks's, non-blocking).
  void start(size_t index) {
    Bucket& b = buckets[index];
    b.started = true;
    b.flat.clear();
    for (size_t m : b.members) {
      const Tensor g = params[m].grad();
      if (!g.defined()) continue;
      const std::vector<float> v = g.to_float_vector();
      b.flat.insert(b.flat.end(), v.begin(), v.end());
    }
    g_stats.grad_bytes += static_cast<int64_t>(b.flat.size() * sizeof(float));
    const size_t ranks = static_cast<size_t>(g_size);
    b.chunk = (b.flat.size() + ranks - 1) / ranks;
    b.flat.resize(b.chunk * ranks, 0.0f);
    b.copies.resize(b.chunk * ranks);
#if SPARO_HAVE_MPI
    check(timed([&] {
            return MPI_Ialltoall(b.flat.data(), count_of(b.chunk), MPI_FLOAT, b.copies.data(), count_of(b.chunk),
                                 MPI_FLOAT, g_bucket_scatter_comm, &b.request);
          }),
          "MPI_Ialltoall");
#endif
    started.push_back(index);
  }

  // Moves the started buckets on, oldest first: once a bucket's all-to-all is done, sums its
  // chunk in rank order and starts the all-gather of the sums. `wait`: until every started
  // bucket is that far; otherwise only as far as MPI has already got.
  void advance([[maybe_unused]] bool wait) {
    while (summed < started.size()) {
      Bucket& b = buckets[started[summed]];
#if SPARO_HAVE_MPI
      int done = 1;
      if (wait)
        check(timed([&] { return wait_for(b.request, "MPI_Ialltoall"); }), "MPI_Ialltoall");
      else
        check(timed([&] { return MPI_Test(&b.request, &done, MPI_STATUS_IGNORE); }), "MPI_Test");
      if (!done) return;
#endif
      sum_in_rank_order(b.copies, b.chunk, b.sums);
#if SPARO_HAVE_MPI
      check(timed([&] {
              return MPI_Iallgather(b.sums.data(), count_of(b.chunk), MPI_FLOAT, b.flat.data(), count_of(b.chunk),
                                    MPI_FLOAT, g_bucket_gather_comm, &b.request);
            }),
            "MPI_Iallgather");
#endif
      ++summed;
    }
  }

  bool in_flight() const { return !started.empty(); }
};

GradientReducer::GradientReducer(std::vector<Tensor> params, size_t bucket_bytes) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.params = std::move(params);
  const size_t bucket_floats = std::max<size_t>(1, bucket_bytes / sizeof(float));
  size_t floats = 0;
  for (size_t i = s.params.size(); i-- > 0;) {  // reverse order: the last layers' gradients come first
    const size_t n = static_cast<size_t>(s.params[i].numel());
    if (s.buckets.empty() || (!s.buckets.back().members.empty() && floats + n > bucket_floats)) {
      s.buckets.emplace_back();
      floats = 0;
    }
    if (!s.bucket_of.emplace(s.params[i].impl(), s.buckets.size() - 1).second)
      throw Error("GradientReducer: a parameter is listed twice");
    s.buckets.back().members.push_back(i);
    floats += n;
  }
  for (State::Bucket& b : s.buckets) b.waiting = b.members.size();
}

GradientReducer::~GradientReducer() {
  // Buckets still in flight (an error left backward or finish): MPI may yet write into their
  // buffers, so they are left allocated; the error ends the job (abort).
  if (state_ && state_->in_flight()) (void)state_.release();
}

GradReadyHook GradientReducer::hook() {
  if (g_size == 1) return {};
  return [this](const Tensor& leaf) {
    State& s = *state_;
    const auto found = s.bucket_of.find(leaf.impl());
    if (found == s.bucket_of.end()) return;  // not one of these parameters
    const CommTimer timer(&CommStats::grad_s, /*collective=*/false);
    State::Bucket& b = s.buckets[found->second];
    if (b.started || b.waiting == 0)
      throw Error("GradientReducer: a gradient became final twice before finish() (the hook must be installed for "
                  "one backward pass per step, the last)");
    if (--b.waiting == 0) {
      s.start(found->second);
      ++s.started_during_backward;
    }
    s.advance(/*wait=*/false);
  };
}

void GradientReducer::finish() {
  if (g_size == 1) return;
  State& s = *state_;
  const CommTimer timer(&CommStats::grad_s);
  // Every rank must bring the same gradients, and its backward must have filled the buckets in
  // the same order (the same graph), or the buckets would pair unrelated values.
  struct Signature {
    int64_t values = 0;
    uint64_t order = 1469598103934665603ull;  // FNV-1a of the buckets started so far, in order
  } mine;
  for (const Tensor& p : s.params)
    if (p.grad().defined()) mine.values += p.grad().numel();
  for (size_t index : s.started) mine.order = (mine.order ^ index) * 1099511628211ull;
  const std::vector<Signature> all = gather_values(mine);
  for (int r = 0; r < g_size; ++r) {
    const Signature& theirs = all[static_cast<size_t>(r)];
    if (theirs.values != mine.values)
      throw Error("GradientReducer: rank " + std::to_string(r) + " brings " + std::to_string(theirs.values) +
                  " gradient values, rank " + std::to_string(g_rank) + " " + std::to_string(mine.values));
    if (theirs.order != mine.order)
      throw Error("GradientReducer: ranks " + std::to_string(r) + " and " + std::to_string(g_rank) +
                  " finished their buckets of gradients in different orders (their backward graphs differ); "
                  "set grad_overlap false");
  }
  for (size_t i = 0; i < s.buckets.size(); ++i)
    if (!s.buckets[i].started) s.start(i);  // in bucket order: the same on every rank
  s.advance(/*wait=*/true);
  NoGradGuard no_grad;
  const float inv = 1.0f / static_cast<float>(g_size);
  for (size_t index : s.started) {
    State::Bucket& b = s.buckets[index];
#if SPARO_HAVE_MPI
    check(timed([&] { return wait_for(b.request, "MPI_Iallgather"); }), "MPI_Iallgather");
#endif
    size_t at = 0;
    for (size_t m : b.members) {
      Tensor g = s.params[m].grad();
      if (!g.defined()) continue;
      const size_t n = static_cast<size_t>(g.numel());
      std::vector<float> mean(b.flat.begin() + static_cast<std::ptrdiff_t>(at),
                              b.flat.begin() + static_cast<std::ptrdiff_t>(at + n));
      for (float& x : mean) x *= inv;
      copy_(g, Tensor::from_vector(mean, g.shape(), g.device()));
      at += n;
    }
    b.started = false;
    b.waiting = b.members.size();
  }
  s.started.clear();
  s.summed = 0;
  s.last_started_during_backward = s.started_during_backward;
  s.started_during_backward = 0;
}

int64_t GradientReducer::buckets() const { return static_cast<int64_t>(state_->buckets.size()); }
int64_t GradientReducer::started_during_backward() const { return state_->last_started_during_backward; }

double allreduce_mean(double value) {
  if (g_size == 1) return value;
  double sum = 0.0;
  for (double v : gather_values(value)) sum += v;  // rank order
  return sum / static_cast<double>(g_size);
}

int allreduce_max(int value) {
  int best = value;
  for (int v : gather_values(value)) best = std::max(best, v);
  return best;
}

std::vector<int64_t> allgather(int64_t value) { return gather_values(value); }
std::vector<uint64_t> allgather(uint64_t value) { return gather_values(value); }

std::string broadcast(const std::string& value) {
  if (g_size == 1) return value;
  std::string out = value;
#if SPARO_HAVE_MPI
  const CommTimer timer(&CommStats::other_s);
  uint64_t length = value.size();
  collective("MPI_Ibcast", [&](MPI_Request* request) { return MPI_Ibcast(&length, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, request); });
  out.resize(static_cast<size_t>(length));
  collective("MPI_Ibcast", [&](MPI_Request* request) {
    return MPI_Ibcast(out.data(), count_of(out.size()), MPI_CHAR, 0, MPI_COMM_WORLD, request);
  });
#endif
  return out;
}

void barrier() {
#if SPARO_HAVE_MPI
  if (g_size == 1) return;
  const CommTimer timer(&CommStats::other_s);
  collective("MPI_Ibarrier", [](MPI_Request* request) { return MPI_Ibarrier(MPI_COMM_WORLD, request); });
#endif
}

Tensor all_gather(const Tensor& local) {
  if (g_size == 1) return local;
  if (local.dtype() != DType::f32 || local.dim() < 1)
    throw Error("all_gather: needs an f32 tensor with a batch axis, got " + local.str());
  const CommTimer timer(&CommStats::gather_s);
  const int64_t rows = local.size(0), numel = local.numel();
  for (int64_t n : allgather(numel))
    if (n != numel)
      throw Error("all_gather: every rank must bring the same shape; rank " + std::to_string(g_rank) + " has " +
                  shape_str(local.shape()) + " (" + std::to_string(numel) + " values), another rank " + std::to_string(n));
  const std::vector<float> mine = local.to_float_vector();
  std::vector<float> all(mine.size() * static_cast<size_t>(g_size));
  const std::vector<unsigned char> bytes = gather_bytes(mine.data(), mine.size() * sizeof(float));
  std::memcpy(all.data(), bytes.data(), bytes.size());
  Shape shape = local.shape();
  shape[0] = rows * g_size;
  const Tensor out = Tensor::from_vector(all, shape, local.device());
  g_stats.gather_bytes += out.numel() * static_cast<int64_t>(sizeof(float));
  const Shape local_shape = local.shape();
  const Device device = local.device();
  return record("all_gather", out, {&local}, [local_shape, device, numel](const Tensor& grad_out) {
    // Each rank's loss may depend on every rank's rows, so the gradient of the local rows is the
    // sum of every rank's incoming gradient for them: a reduce-scatter, whose chunk r is rank r's
    // rows (N chunks of `numel`), half the traffic of summing everywhere and keeping a slice.
    const CommTimer timer(&CommStats::gather_s);
    std::vector<float> g = grad_out.to_float_vector();
    std::vector<float> mine = sum_chunk_over_ranks(g);
    if (mine.size() != static_cast<size_t>(numel)) throw Error("all_gather: backward's gradient has the wrong size");
    return std::vector<Tensor>{Tensor::from_vector(mine, local_shape, device)};
  });
}

CommStats comm_stats() { return g_stats; }
void reset_comm_stats() { g_stats = CommStats{}; }

uint64_t hash_tensors(const std::vector<Tensor>& tensors) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, one 32-bit word at a time
  const auto mix = [&h](uint64_t word) { h = (h ^ word) * 1099511628211ull; };
  for (const Tensor& t : tensors) {
    for (int64_t d : t.shape()) mix(static_cast<uint64_t>(d));
    for (float x : t.to_float_vector()) {
      uint32_t bits;
      std::memcpy(&bits, &x, sizeof bits);
      mix(bits);
    }
  }
  return h;
}

void check_identical(const std::vector<Tensor>& tensors, const std::string& what) {
  if (g_size == 1) return;
  const std::vector<uint64_t> hashes = allgather(hash_tensors(tensors));
  std::string differing;
  for (int r = 1; r < g_size; ++r)
    if (hashes[static_cast<size_t>(r)] != hashes[0]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  if (!differing.empty())
    throw Error("the ranks disagree on the " + what + ": rank(s) " + differing +
                " differ from rank 0 (a hash of each rank's values); their runs have diverged (the same binary and "
                "data on every rank?)");
}

}  // namespace sparo::distributed
