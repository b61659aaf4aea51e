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
#include <cstdlib>
#include <cstring>

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
class CommTimer {
 public:
  explicit CommTimer(double CommStats::*field) : field_(field), outer_(g_depth++ == 0) {
    if (outer_) start_ = Clock::now();
  }
  ~CommTimer() {
    --g_depth;
    if (!outer_) return;
    g_stats.*field_ += seconds_since(start_);
    ++g_stats.calls;
  }
  CommTimer(const CommTimer&) = delete;
  CommTimer& operator=(const CommTimer&) = delete;

 private:
  double CommStats::*field_;
  bool outer_;
  Clock::time_point start_{};
};

// ---- the MPI primitives everything else is built from (or their one-process versions) ----

#if SPARO_HAVE_MPI
bool g_started = false;  // MPI_Init ran in this process

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

int count_of(size_t n) {
  if (n > static_cast<size_t>(INT_MAX)) throw Error("MPI: a message of " + std::to_string(n) + " elements exceeds INT_MAX");
  return static_cast<int>(n);
}
#endif

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
  sums.resize(chunk);
  check(timed([&] {
          return MPI_Alltoall(data.data(), count_of(chunk), MPI_FLOAT, copies.data(), count_of(chunk), MPI_FLOAT,
                              MPI_COMM_WORLD);
        }),
        "MPI_Alltoall");
  for (size_t i = 0; i < chunk; ++i) {
    float acc = copies[i];
    for (size_t r = 1; r < ranks; ++r) acc += copies[r * chunk + i];
    sums[i] = acc;
  }
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
  check(timed([&] {
          return MPI_Allgather(sums.data(), count_of(chunk), MPI_FLOAT, data.data(), count_of(chunk), MPI_FLOAT,
                               MPI_COMM_WORLD);
        }),
        "MPI_Allgather");
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
  check(timed([&] {
          return MPI_Allgather(value, count_of(bytes), MPI_BYTE, out.data(), count_of(bytes), MPI_BYTE, MPI_COMM_WORLD);
        }),
        "MPI_Allgather");
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
#endif
}

void finalize() {
#if SPARO_HAVE_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_started && !finalized) MPI_Finalize();
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
  check(timed([&] { return MPI_Bcast(&length, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD); }), "MPI_Bcast");
  out.resize(static_cast<size_t>(length));
  check(timed([&] { return MPI_Bcast(out.data(), count_of(out.size()), MPI_CHAR, 0, MPI_COMM_WORLD); }), "MPI_Bcast");
#endif
  return out;
}

void barrier() {
#if SPARO_HAVE_MPI
  if (g_size == 1) return;
  const CommTimer timer(&CommStats::other_s);
  check(timed([] { return MPI_Barrier(MPI_COMM_WORLD); }), "MPI_Barrier");
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
