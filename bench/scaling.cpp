// bench_scaling: data-parallel scaling of the tiny SPARO-CLIP training step over MPI, one
// process against two, one thread each, measured in one run (docs/SCALING.md uses its figures).
//
//   bench_scaling [--batch B] [--steps N] [--rounds R] [--warmup W] [--quick] [--no-collectives]
//
// Sides, each a fresh process (or pair of processes) per round, interleaved in rounds
// (A B C E D, A B C E D, ...) so that a burst of load from elsewhere hits every side:
//   A  1 process,  batch B          (the weak-scaling reference: the same rows per process)
//   B  1 process,  batch 2·B        (the strong-scaling reference: the same global batch)
//   C  2 processes (mpirun -np 2), B rows each, global batch 2·B, gradients averaged after backward
//   E  as C, each bucket of gradients averaged as soon as backward has filled it (the overlap)
//   D  2 processes: MPI_Allreduce, MPI_Allgather and sparo's allreduce_mean timed alone on
//      messages of 4 KiB ... 16 MiB (the α–β fit; --no-collectives leaves it out)
// The bench starts every side itself: A and B as `bench_scaling --worker train ...`, C and D
// under `mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 bench_scaling --worker
// ...` (not bound to cores, as the one-process sides are not). Each worker prints one line
// `RESULT {json}` (rank 0), which the bench reads.
//
// The step is the trainer's data-parallel CLIP step (training/trainer.cpp, clip_task.cpp):
// zero_grad; image and text embeddings of the local rows, all_gather'ed over the processes
// (training/distributed.h); clip_loss over the global batch's logits (global × global, as
// sparo computes it); backward (the gathers' backward sums the gradients over the processes);
// loss.item() and its mean over the processes; GradientReducer::finish, the gradients' average
// (buckets of 4 MiB; E: buckets started from backward's GradReadyHook); AdamW (lr 5e-4, betas 0.9/0.98, eps 1e-6, weight decay 0.2 on ndim >= 2). Inputs as
// bench_train_step's (N(0, 1) images, token rows of varied lengths), a different draw per rank.
// One process runs exactly this code with every collective a no-op.
//
// Reported: median and minimum step time over all rounds' timed steps (rank 0's clock; the
// collectives keep the ranks in step), samples/s of the global batch, rank 0's CPU time per step
// (which a busy machine disturbs less: the efficiencies are given from it too), and per step the time in
// communication (distributed::comm_stats: the gradient allreduce; the embedding gather,
// forward and backward; the rest, e.g. the loss's mean), whose remainder is the step's compute.
//   weak-scaling efficiency = (2·B / t_C) / (2 · B / t_A) = t_A / t_C
//   strong-scaling speedup  = t_B / t_C
//   overlap: t_E against C's compute alone (its step less its communication) [target <= 1.05]
// The load average is printed at the start and the end, with a warning when the machine was
// not quiet (a 1-minute load above 0.5 at the start, or above 2.5 at the end: the bench itself
// keeps up to 2 cores busy).
#include <nlohmann/json.hpp>

#include <time.h>
#include <unistd.h>

#if SPARO_HAVE_MPI
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_paths.h"
#include "models/clip.h"
#include "training/distributed.h"
#include "training/optimizer.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace dist = sparo::distributed;

constexpr float kLr = 5e-4f, kBeta1 = 0.9f, kBeta2 = 0.98f, kEps = 1e-6f, kWeightDecay = 0.2f;
constexpr int32_t kSot = 1022, kEot = 1023, kMaxId = 1000;
constexpr int kRanks = 2;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

using sparo::bench::median;

// This process's CPU time (all threads; one here): unlike the wall clock it does not grow while
// other processes hold the cores, so on a busy machine it still shows what a step costs. MPI's
// shared-memory transport polls while it waits, so waiting for the other rank counts too.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double minimum(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

std::vector<double> doubles(const json& j) {
  std::vector<double> v;
  for (const json& x : j) v.push_back(x.get<double>());
  return v;
}

// ---- worker: one side's training steps ----

json train_worker(int64_t batch, int warmup, int steps, bool overlap) {
  sparo::set_num_threads(1);
  const sparo::ClipConfig cfg = sparo::ClipConfig::load(sparo::bench::source_path("models/configs/tiny-clip-sparo.json"));
  if (cfg.text.vocab_size != kEot + 1) throw sparo::Error("tiny-clip-sparo: expected vocab_size 1024 (end of text 1023)");
  const sparo::Clip model(cfg, 0);  // the same initial weights on every rank
  const int rank = dist::rank();
  sparo::Generator gen(static_cast<uint64_t>(1234 + rank));
  std::mt19937 rng(static_cast<uint32_t>(1234 + rank));
  const int64_t S = cfg.vision.image_size, T = cfg.text.context_length;
  const sparo::Tensor images = sparo::Tensor::randn({batch, 3, S, S}, gen);
  std::vector<int32_t> ids(static_cast<size_t>(batch * T), 0);
  std::uniform_int_distribution<int32_t> id(1, kMaxId);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = b == 0 ? T : 2 + (7 * b) % (T - 1);
    int32_t* row = ids.data() + b * T;
    row[0] = kSot;
    for (int64_t j = 1; j < n - 1; ++j) row[j] = id(rng);
    row[n - 1] = kEot;
  }
  const sparo::Tensor text = sparo::Tensor::from_vector(ids, {batch, T});

  std::vector<sparo::ParamGroup> groups(2);
  groups[0].weight_decay = kWeightDecay;
  std::vector<sparo::Tensor> params;
  int64_t parameters = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    groups[p.dim() >= 2 ? 0 : 1].params.push_back(p);
    params.push_back(p);
    parameters += p.numel();
  }
  sparo::AdamW opt(groups, kLr, kBeta1, kBeta2, kEps);
  dist::GradientReducer reducer(params);

  std::vector<double> step_s, cpu_s, forward_s, backward_s, allreduce_s, optimizer_s, grad_s, gather_s, other_s, mpi_s;
  int64_t grad_bytes = 0, gather_bytes = 0;
  double loss_value = 0.0;
  dist::barrier();
  for (int i = 0; i < warmup + steps; ++i) {
    const dist::CommStats before = dist::comm_stats();
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    opt.zero_grad();
    const sparo::Tensor image = dist::all_gather(model.encode_image(images).embedding);
    const sparo::Tensor txt = dist::all_gather(model.encode_text(text).embedding);
    const sparo::Tensor loss = sparo::clip_loss(model.logits(image, txt));
    const auto t1 = Clock::now();
    {
      const sparo::GradReadyScope grad_ready(overlap ? reducer.hook() : sparo::GradReadyHook{});
      loss.backward();
    }
    const auto t2 = Clock::now();
    loss_value = dist::allreduce_mean(static_cast<double>(loss.item()));
    reducer.finish();
    const auto t3 = Clock::now();
    opt.step();
    const auto t4 = Clock::now();
    const double c4 = cpu_seconds();
    const dist::CommStats after = dist::comm_stats();
    if (i < warmup) continue;
    step_s.push_back(seconds(t0, t4));
    cpu_s.push_back(c4 - c0);
    forward_s.push_back(seconds(t0, t1));
    backward_s.push_back(seconds(t1, t2));
    allreduce_s.push_back(seconds(t2, t3));
    optimizer_s.push_back(seconds(t3, t4));
    grad_s.push_back(after.grad_s - before.grad_s);
    gather_s.push_back(after.gather_s - before.gather_s);
    other_s.push_back(after.other_s - before.other_s);
    mpi_s.push_back(after.mpi_s - before.mpi_s);
    grad_bytes = after.grad_bytes - before.grad_bytes;
    gather_bytes = after.gather_bytes - before.gather_bytes;
  }
  // Every rank's communication time over the timed steps (ns), to see the ranks agree.
  double total = 0.0;
  for (size_t i = 0; i < grad_s.size(); ++i) total += grad_s[i] + gather_s[i] + other_s[i];
  const std::vector<int64_t> per_rank = dist::allgather(static_cast<int64_t>(total * 1e9));
  json comm_per_rank = json::array();
  for (int64_t ns : per_rank) comm_per_rank.push_back(static_cast<double>(ns) * 1e-9 / static_cast<double>(steps));
  return {{"ranks", dist::size()},       {"batch_per_rank", batch},  {"global_batch", batch * dist::size()},
          {"parameters", parameters},    {"step_s", step_s}, {"cpu_s", cpu_s}, {"forward_s", forward_s},
          {"backward_s", backward_s},    {"allreduce_s", allreduce_s}, {"optimizer_s", optimizer_s},
          {"grad_s", grad_s},            {"gather_s", gather_s},     {"other_s", other_s},
          {"mpi_s", mpi_s},              {"grad_bytes", grad_bytes}, {"gather_bytes", gather_bytes},
          {"comm_per_rank_s", comm_per_rank}, {"loss", loss_value}, {"overlap", overlap},
          {"buckets", reducer.buckets()}, {"buckets_in_backward", reducer.started_during_backward()}};
}

// ---- worker: the collectives alone (2 processes) ----

#if SPARO_HAVE_MPI
// Seconds per call of `op`: `trials` times, after a barrier, `reps` calls back to back; the
// median and the minimum over the trials of (time / reps), rank 0's clock.
template <typename Op>
std::pair<double, double> time_op(Op&& op, int reps, int trials) {
  op();  // warm: buffers registered, pages touched
  std::vector<double> per_call;
  for (int t = 0; t < trials; ++t) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) op();
    per_call.push_back(seconds(t0, Clock::now()) / reps);
  }
  return {median(per_call), minimum(per_call)};
}
#endif

json collectives_worker() {
#if SPARO_HAVE_MPI
  sparo::set_num_threads(1);
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  std::string library(version, static_cast<size_t>(std::max(length, 0)));
  if (const size_t nl = library.find_first_of("\n,"); nl != std::string::npos) library.resize(nl);
  const int p = dist::size();
  json rows = json::array();
  for (size_t bytes = size_t{4} << 10; bytes <= (size_t{16} << 20); bytes *= 4) {
    const size_t n = bytes / sizeof(float);
    const int reps = static_cast<int>(std::clamp<size_t>((size_t{32} << 20) / bytes, 3, 400));
    const int trials = 5;
    std::vector<float> in(n, 1.0f), out(n);
    const auto allreduce = time_op(
        [&] { MPI_Allreduce(in.data(), out.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }, reps,
        trials);
    const int part = static_cast<int>(n / static_cast<size_t>(p));  // n is the gathered size
    const auto allgather = time_op(
        [&] { MPI_Allgather(in.data(), part, MPI_FLOAT, out.data(), part, MPI_FLOAT, MPI_COMM_WORLD); }, reps, trials);
    const sparo::Tensor t = sparo::Tensor::from_vector(in, {static_cast<int64_t>(n)});
    const auto ours = time_op([&] { dist::allreduce_mean({t}); }, reps, trials);
    rows.push_back({{"bytes", bytes},
                    {"reps", reps},
                    {"allreduce_s", allreduce.first},
                    {"allreduce_min_s", allreduce.second},
                    {"allgather_s", allgather.first},
                    {"allgather_min_s", allgather.second},
                    {"sparo_allreduce_s", ours.first},
                    {"sparo_allreduce_min_s", ours.second}});
  }
  return {{"ranks", p}, {"library", library}, {"sizes", rows}};
#else
  return {{"error", "this build has no MPI"}};
#endif
}

// ---- the bench: starts the sides, merges the rounds, prints the tables ----

std::string self_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "bench_scaling";
  return std::string(buf, static_cast<size_t>(n));
}

const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2";

// Runs `command` (stderr passes through), returns the JSON of its `RESULT ` line or {"error"}.
json run_side(const std::string& command) {
  std::fflush(nullptr);
  std::FILE* pipe = popen(("timeout 900 " + command).c_str(), "r");
  if (!pipe) return {{"error", "could not start: " + command}};
  std::string text;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, got);
  const int status = pclose(pipe);
  const size_t at = text.rfind("RESULT ");
  if (at == std::string::npos)
    return {{"error", "no result from `" + command + "` (status " + std::to_string(status) + ")"}};
  const size_t end = text.find('\n', at);
  const json j = json::parse(text.substr(at + 7, end == std::string::npos ? std::string::npos : end - at - 7), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return {{"error", "unreadable result from `" + command + "`"}};
  return j;
}

// One side's rounds as one: the per-step series pooled.
json merge(const std::vector<json>& rounds) {
  for (const json& r : rounds)
    if (r.contains("error")) return r;
  json out = rounds.front();
  for (const char* k : {"step_s", "cpu_s", "forward_s", "backward_s", "allreduce_s", "optimizer_s", "grad_s", "gather_s",
                        "other_s", "mpi_s"}) {
    json all = json::array();
    for (const json& r : rounds)
      for (const json& x : r[k]) all.push_back(x);
    out[k] = all;
  }
  return out;
}

using sparo::bench::load_1min;
using sparo::bench::load_average;

// The line t = a + b·n through the smallest and the largest message: the smallest is nearly
// all latency, the largest nearly all bandwidth (out of cache: 16 MiB). Least squares on these
// few points, whose cost per byte changes with the caches in between, gave negative latencies.
// The bench prints how far the line is from each size. Returns {a, b}; the sizes ascend.
std::pair<double, double> fit_line(const std::vector<double>& n, const std::vector<double>& t) {
  const size_t k = n.size();
  const double b = (t[k - 1] - t[0]) / (n[k - 1] - n[0]);
  return {t[0] - b * n[0], b};
}

int usage(int status) {
  std::fprintf(status ? stderr : stdout,
               "usage: bench_scaling [--batch B] [--steps N] [--rounds R] [--warmup W] [--quick] [--no-collectives]\n"
               "  --batch B        rows per process (default 64): 1×B, 1×2B and 2 processes × B\n"
               "  --steps N        timed steps per side and round (default 10; --quick: 3)\n"
               "  --rounds R       rounds, each running every side once (default 3; --quick: 1)\n"
               "  --warmup W       untimed steps first (default 2; --quick: 1)\n"
               "  --no-collectives leave out the collectives' own timings\n");
  return status;
}

int bench(int64_t batch, int warmup, int steps, int rounds, bool collectives) {
  const std::string self = self_path();
  const double load_start = load_1min();
  std::printf("bench_scaling: tiny-clip-sparo, 1 thread per process; sides 1×%lld, 1×%lld, %d×%lld (mpirun), "
              "%d warm-up + %d timed steps × %d rounds (interleaved); load average %s at the start\n",
              static_cast<long long>(batch), static_cast<long long>(2 * batch), kRanks, static_cast<long long>(batch),
              warmup, steps, rounds, load_average().c_str());
  if (!dist::compiled_with_mpi()) std::printf("this build has no MPI: the 2-process sides are skipped\n");
  std::fflush(stdout);
  const std::string train = " --worker train --warmup " + std::to_string(warmup) + " --steps " + std::to_string(steps);
  struct Side {
    std::string name, command;
    std::vector<json> rounds;
  };
  std::vector<Side> sides = {{"1 process,  batch " + std::to_string(batch), self + train + " --batch " + std::to_string(batch), {}},
                             {"1 process,  batch " + std::to_string(2 * batch),
                              self + train + " --batch " + std::to_string(2 * batch), {}}};
  if (dist::compiled_with_mpi()) {
    sides.push_back({"2 processes × " + std::to_string(batch), kMpirun + " " + self + train + " --batch " + std::to_string(batch), {}});
    sides.push_back({"2 × " + std::to_string(batch) + ", overlap",
                     kMpirun + " " + self + train + " --overlap --batch " + std::to_string(batch), {}});
  }
  std::vector<json> coll_rounds;
  for (int r = 0; r < rounds; ++r) {
    for (Side& s : sides) {
      std::fprintf(stderr, "round %d/%d: %s...\n", r + 1, rounds, s.name.c_str());
      s.rounds.push_back(run_side(s.command));
    }
    if (collectives && dist::compiled_with_mpi()) {
      std::fprintf(stderr, "round %d/%d: collectives...\n", r + 1, rounds);
      coll_rounds.push_back(run_side(kMpirun + " " + self + " --worker collectives"));
    }
  }
  const double load_stop = load_1min();
  const std::string load_end = load_average();

  std::vector<json> merged;
  for (const Side& s : sides) merged.push_back(merge(s.rounds));
  std::printf("\nstep time over %d timed steps per side (%d rounds × %d); comm = distributed::comm_stats per step "
              "(median): grad = gradient allreduce_mean, gather = embedding all_gather forward + backward, other = "
              "the loss's mean etc.\n",
              rounds * steps, rounds, steps);
  std::printf("%-22s %8s %8s %10s %8s %8s %8s %8s %8s %8s %8s %8s\n", "side", "median", "min", "samples/s", "cpu",
              "fwd", "bwd", "opt", "grad", "gather", "other", "compute");
  for (size_t i = 0; i < sides.size(); ++i) {
    const json& m = merged[i];
    if (m.contains("error")) {
      std::printf("%-22s failed: %s\n", sides[i].name.c_str(), m["error"].get<std::string>().c_str());
      continue;
    }
    const std::vector<double> step = doubles(m["step_s"]);
    std::vector<double> compute;
    for (size_t k = 0; k < step.size(); ++k)
      compute.push_back(step[k] - m["grad_s"][k].get<double>() - m["gather_s"][k].get<double>() -
                        m["other_s"][k].get<double>());
    const double global = m["global_batch"].get<double>();
    std::printf("%-22s %8.4f %8.4f %10.1f %8.4f %8.4f %8.4f %8.4f %8.5f %8.5f %8.5f %8.4f\n", sides[i].name.c_str(),
                median(step), minimum(step), global / median(step), median(doubles(m["cpu_s"])),
                median(doubles(m["forward_s"])),
                median(doubles(m["backward_s"])), median(doubles(m["optimizer_s"])), median(doubles(m["grad_s"])),
                median(doubles(m["gather_s"])), median(doubles(m["other_s"])), median(compute));
  }
  const auto ok = [](const json& j) { return !j.contains("error"); };
  if (merged.size() == 4 && ok(merged[0]) && ok(merged[1]) && ok(merged[2])) {
    const json &a = merged[0], &b = merged[1], &c = merged[2];
    const double ta = median(doubles(a["step_s"])), tb = median(doubles(b["step_s"])), tc = median(doubles(c["step_s"]));
    const double ma = minimum(doubles(a["step_s"])), mb = minimum(doubles(b["step_s"])), mc = minimum(doubles(c["step_s"]));
    std::printf("\nparameters %lld; per step and rank: gradients averaged %.2f MiB, embeddings gathered %.2f MiB\n",
                static_cast<long long>(c["parameters"].get<int64_t>()), c["grad_bytes"].get<double>() / 1048576.0,
                c["gather_bytes"].get<double>() / 1048576.0);
    std::printf("weak-scaling efficiency  t(1×%lld) / t(2×%lld) = %.3f (medians), %.3f (minimums)  [target >= 0.90]\n",
                static_cast<long long>(batch), static_cast<long long>(batch), ta / tc, ma / mc);
    std::printf("strong-scaling speedup   t(1×%lld) / t(2×%lld) = %.3f (medians), %.3f (minimums)  [ideal 2]\n",
                static_cast<long long>(2 * batch), static_cast<long long>(batch), tb / tc, mb / mc);
    const double ca = median(doubles(a["cpu_s"])), cb = median(doubles(b["cpu_s"])), cc = median(doubles(c["cpu_s"]));
    std::printf("the same from rank 0's CPU time per step (blind to time without a core): weak %.3f, strong %.3f\n",
                ca / cc, cb / cc);
    std::vector<double> comm;
    for (size_t k = 0; k < c["step_s"].size(); ++k)
      comm.push_back(c["grad_s"][k].get<double>() + c["gather_s"][k].get<double>() + c["other_s"][k].get<double>());
    std::printf("2 processes: communication %.4f s per step (median; min %.4f), %.1f %% of the median step; inside "
                "MPI calls %.4f s (median)\n",
                median(comm), minimum(comm), 100.0 * median(comm) / tc, median(doubles(c["mpi_s"])));
    std::printf("mean communication per step, rank by rank (the last round): %s s\n", c["comm_per_rank_s"].dump().c_str());
    if (ok(merged[3])) {
      const json& e = merged[3];
      std::vector<double> compute;  // C's step without its communication
      for (size_t k = 0; k < comm.size(); ++k) compute.push_back(c["step_s"][k].get<double>() - comm[k]);
      const double te = median(doubles(e["step_s"])), me = minimum(doubles(e["step_s"]));
      std::printf("overlap: %lld of %lld buckets started during backward; step %.4f s (median; min %.4f) against "
                  "%.4f without overlap and %.4f of compute alone (C less its communication): %.3f × compute "
                  "(medians), %.3f (minimums)  [target <= 1.05]\n",
                  static_cast<long long>(e["buckets_in_backward"].get<int64_t>()),
                  static_cast<long long>(e["buckets"].get<int64_t>()), te, me, tc, median(compute),
                  te / median(compute), me / minimum(compute));
    }
  }

  const json* two = merged.size() == 4 && ok(merged[2]) ? &merged[2] : nullptr;
  if (!coll_rounds.empty()) {
    const json& first = coll_rounds.front();
    if (!ok(first)) {
      std::printf("\ncollectives failed: %s\n", first["error"].get<std::string>().c_str());
    } else {
      std::printf("\ncollectives on %d processes, %s; seconds per call, median over rounds of (median of 5 trials) "
                  "[min over all]; n = bytes reduced per rank / bytes gathered in all\n",
                  first["ranks"].get<int>(), first["library"].get<std::string>().c_str());
      std::printf("%10s %22s %22s %22s\n", "n (bytes)", "MPI_Allreduce", "MPI_Allgather", "sparo allreduce_mean");
      std::vector<double> ns, ar, ag, sa, ar_min, ag_min, sa_min;
      for (size_t k = 0; k < first["sizes"].size(); ++k) {
        std::vector<double> v[3], lo[3];
        const char* keys[3] = {"allreduce", "allgather", "sparo_allreduce"};
        for (const json& r : coll_rounds) {
          if (!ok(r)) continue;
          for (int q = 0; q < 3; ++q) {
            v[q].push_back(r["sizes"][k][std::string(keys[q]) + "_s"].get<double>());
            lo[q].push_back(r["sizes"][k][std::string(keys[q]) + "_min_s"].get<double>());
          }
        }
        const double bytes = first["sizes"][k]["bytes"].get<double>();
        ns.push_back(bytes);
        ar.push_back(median(v[0]));
        ag.push_back(median(v[1]));
        sa.push_back(median(v[2]));
        ar_min.push_back(minimum(lo[0]));
        ag_min.push_back(minimum(lo[1]));
        sa_min.push_back(minimum(lo[2]));
        char cell[3][64];
        for (int q = 0; q < 3; ++q) std::snprintf(cell[q], sizeof cell[q], "%.3e [%.3e]", median(v[q]), minimum(lo[q]));
        std::printf("%10.0f %22s %22s %22s\n", bytes, cell[0], cell[1], cell[2]);
      }
      // p = 2: ring allreduce t = 2(p-1)α + 2(p-1)/p · n/β = 2α + n/β;
      //        ring allgather t = (p-1)α + (p-1)/p · n/β = α + n/(2β).
      const double p = first["ranks"].get<double>();
      const auto report = [&](const char* what, const std::vector<double>& t, double alpha_terms, double beta_terms) {
        const auto [a, b] = fit_line(ns, t);
        std::string errors;  // the line against each size, in %
        for (size_t k = 0; k < ns.size(); ++k) {
          char e[16];
          std::snprintf(e, sizeof e, " %+.0f", 100.0 * ((a + b * ns[k]) / t[k] - 1.0));
          errors += e;
        }
        std::printf("fit %-22s t = %.3e s + n · %.3e s/B  ->  α = %.2f µs, β = %.2f GB/s; line vs measured (%%):%s\n",
                    what, a, b, 1e6 * a / alpha_terms, 1e-9 * beta_terms / b, errors.c_str());
        return std::pair{a, b};
      };
      std::printf("α–β fit (the line through the smallest and the largest size), ring model with p = %.0f, on the "
                  "medians:\n",
                  p);
      report("MPI_Allreduce", ar, 2 * (p - 1), 2 * (p - 1) / p);
      report("MPI_Allgather", ag, p - 1, (p - 1) / p);
      const auto sparo_median = report("sparo allreduce_mean", sa, 2 * (p - 1), 2 * (p - 1) / p);
      std::printf("... and on the minimums (what the links give when nothing else runs):\n");
      report("MPI_Allreduce", ar_min, 2 * (p - 1), 2 * (p - 1) / p);
      report("MPI_Allgather", ag_min, p - 1, (p - 1) / p);
      const auto sparo_min = report("sparo allreduce_mean", sa_min, 2 * (p - 1), 2 * (p - 1) / p);
      if (two) {
        // The model against the train step: its gradients travel in buckets of up to 4 MiB,
        // each one call of allreduce_mean.
        const double bytes = (*two)["grad_bytes"].get<double>();
        const double buckets = std::ceil(bytes / double(size_t{4} << 20));
        const std::vector<double> grad = doubles((*two)["grad_s"]);
        std::printf("the model for the train step's gradients (%.2f MiB, about %.0f buckets): %.4f s (median fit), "
                    "%.4f s (minimum fit); measured %.4f s (median), %.4f s (minimum)\n",
                    bytes / 1048576.0, buckets, buckets * sparo_median.first + bytes * sparo_median.second,
                    buckets * sparo_min.first + bytes * sparo_min.second, median(grad), minimum(grad));
      }
    }
  }

  std::printf("\nload average at the end: %s\n", load_end.c_str());
  if (load_start > 0.5 || load_stop > 2.5)
    std::printf("warning: the machine was not quiet (1-minute load %.2f at the start, %.2f at the end, against 0 and "
                "at most 2 from this bench): the sides were interleaved, so compare them with each other only\n",
                load_start, load_stop);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string worker;
  int64_t batch = 64;
  int steps = -1, rounds = -1, warmup = -1;
  bool quick = false, collectives = true, overlap = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(usage(2));
      }
      return argv[++i];
    };
    if (a == "--worker") {
      worker = value();
      if (worker != "train" && worker != "collectives") return usage(2);
    } else if (a == "--batch") {
      batch = std::atoll(value().c_str());
      if (batch < 1) return usage(2);
    } else if (a == "--steps") {
      steps = std::atoi(value().c_str());
      if (steps < 1) return usage(2);
    } else if (a == "--rounds") {
      rounds = std::atoi(value().c_str());
      if (rounds < 1) return usage(2);
    } else if (a == "--warmup") {
      warmup = std::atoi(value().c_str());
      if (warmup < 0) return usage(2);
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--no-collectives") {
      collectives = false;
    } else if (a == "--overlap") {  // worker train: start buckets from backward's hook
      overlap = true;
    } else if (a == "--help" || a == "-h") {
      return usage(0);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return usage(2);
    }
  }
  if (steps < 0) steps = quick ? 3 : 10;
  if (rounds < 0) rounds = quick ? 1 : 3;
  if (warmup < 0) warmup = quick ? 1 : 2;
  if (worker.empty()) return bench(batch, warmup, steps, rounds, collectives);

  int code = 0;
  try {
    dist::init(&argc, &argv);  // only under mpirun
    const json result = worker == "train" ? train_worker(batch, warmup, steps, overlap) : collectives_worker();
    if (dist::is_root()) std::printf("RESULT %s\n", result.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_scaling worker (rank %d): %s\n", dist::rank(), e.what());
    if (dist::size() > 1) dist::abort(1);
    code = 1;
  }
  std::fflush(stdout);
  dist::finalize();
  return code;
}
