// Data-parallel training (training/distributed.h) equals one process: `mpirun -np 2 sparo train`
// against `sparo train` on tiny CLIP and DINO runs, 10 steps on the CPU with one thread per
// process (and CLIP for 3 steps on Vulkan, lavapipe): the losses agree within 1e-5 (relative)
// and so do the final weights. Plus resuming
// a 2-process run with 2 and with 1 process, and a batch that does not split over the processes.
// Skipped (visibly) only in a build without MPI; CI has it (scripts/setup.sh installs OpenMPI).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/safetensors.h"
#include "tests/temp_dir.h"
#include "training/distributed.h"

namespace sparo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Outcome {
  int code;
  std::string output;
};

Outcome shell(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

// `ranks` processes under mpirun (0: the plain command, no mpirun), one thread each. `command`
// replaces the sparo command under mpirun (a script that changes one rank's arguments).
Outcome sparo(int ranks, const std::string& args, std::string command = "") {
  if (command.empty()) command = std::string(SPARO_BIN) + " --threads 1 " + args;
  if (ranks == 0) return shell(command);
  std::string env = "timeout 300 ";  // a hang fails the test (exit 124) rather than CI
#if defined(__SANITIZE_ADDRESS__)
  // OpenMPI's plugins (dlopen'd, unloaded at MPI_Finalize) leave allocations LeakSanitizer reports
  // without a module name to suppress; under mpirun the ASan build keeps every other check on.
  // The same code without mpirun, in the other tests, keeps leak checking.
  env = "ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" " + env;
#endif
  return shell(env + "mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " " + command);
}

#define SKIP_WITHOUT_MPI()                                                                                      \
  if (!distributed::compiled_with_mpi())                                                                        \
  GTEST_SKIP() << "this build has no MPI (SPARO_MPI=OFF, or libopenmpi-dev missing at configure time): "       \
                  "data-parallel training is not tested"

// The tiny models of tests/training/test_trainer.cpp; batches of 8 (4 per process), 10 steps.
const char* kClipModel = R"({"embed_dim": 64, "use_sparo": true, "L": 8, "V": 8,
  "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
  "text_cfg": {"context_length": 24, "vocab_size": 600, "width": 64, "heads": 2, "layers": 2}})";
const char* kDinoModel = R"({"model": "dino", "image_size": 16, "patch_size": 4, "width": 64, "depth": 2, "heads": 2,
  "drop_path_rate": 0.1, "readout": "sparo", "L": 8, "V": 8, "head_hidden": 64, "head_bottleneck": 32, "head_out": 128})";

std::string write_config(const TempDir& tmp, const std::string& task) {
  json j = {{"task", task}, {"steps", 10}, {"batch_size", 8}, {"warmup_steps", 3}, {"log_every", 1},
            {"checkpoint_every", 5}, {"keep_checkpoints", 2}};
  if (task == "clip") {
    j.update({{"model", json::parse(kClipModel)}, {"train_size", 256}, {"lr", 2e-3}});
  } else {
    // Local crops and drop-path: both draw random numbers per sample, which the processes must
    // draw as one process does; the last layer is frozen for the first 2 steps.
    j.update({{"model", json::parse(kDinoModel)}, {"lr", 1e-3}, {"local_crops", 2}, {"local_crop_size", 8},
              {"teacher_temp", 0.04}, {"weight_decay", 0.04}, {"weight_decay_end", 0.4},
              {"freeze_last_layer_steps", 2}, {"eval_every", 5}, {"monitor_train", 64}, {"monitor_test", 32}});
  }
  const std::string path = tmp / (task + ".json");
  std::ofstream(path) << j.dump(2);
  return path;
}

std::vector<double> losses(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains("loss")) out.push_back(j.at("loss").get<double>());
  }
  return out;
}

void expect_close_losses(const std::string& a, const std::string& b, double rel) {
  const std::vector<double> la = losses(a), lb = losses(b);
  ASSERT_EQ(la.size(), lb.size()) << a << " vs " << b;
  ASSERT_FALSE(la.empty());
  for (size_t i = 0; i < la.size(); ++i)
    EXPECT_LE(std::abs(la[i] - lb[i]), rel * std::abs(lb[i])) << "step " << i + 1 << ": " << la[i] << " vs " << lb[i];
}

// The f32 tensors whose names start with `prefix` of file `name` in run a within tol of run b's
// (relative to max(1, |b|)); returns the largest difference seen.
double expect_close_tensors(const std::string& a, const std::string& b, const std::string& name, double tol,
                            const std::string& prefix = "") {
  const safetensors::Contents ca = safetensors::read_file(a + "/" + name);
  const safetensors::Contents cb = safetensors::read_file(b + "/" + name);
  EXPECT_EQ(ca.tensors.size(), cb.tensors.size());
  for (const char* key : {"step", "generator_offset"}) {  // checkpoints: the step and the drop-path stream
    const auto ka = ca.metadata.find(key), kb = cb.metadata.find(key);
    EXPECT_EQ(ka == ca.metadata.end() ? "" : ka->second, kb == cb.metadata.end() ? "" : kb->second) << name << " " << key;
  }
  double worst = 0.0;
  for (const safetensors::TensorRecord& ta : ca.tensors) {
    if (ta.dtype != "F32" || ta.name.rfind(prefix, 0) != 0) continue;
    const safetensors::TensorRecord* tb = cb.find(ta.name);
    if (!tb) {
      ADD_FAILURE() << ta.name << " missing from " << b;
      continue;
    }
    const std::vector<float> va = safetensors::to_f32(ta), vb = safetensors::to_f32(*tb);
    EXPECT_EQ(va.size(), vb.size()) << ta.name;
    double max_diff = 0.0;
    for (size_t i = 0; i < std::min(va.size(), vb.size()); ++i)
      max_diff = std::max(max_diff, std::abs(static_cast<double>(va[i]) - vb[i]) / std::max(1.0, std::abs(static_cast<double>(vb[i]))));
    EXPECT_LE(max_diff, tol) << ta.name;
    worst = std::max(worst, max_diff);
  }
  return worst;
}

void two_processes_equal_one(const std::string& task) {
  const TempDir tmp("mpi_" + task);
  const std::string config = write_config(tmp, task);
  const Outcome one = sparo(0, "train " + task + " --config " + config + " --out " + tmp / "one" + " --progress 0");
  ASSERT_EQ(one.code, 0) << one.output;
  const Outcome two = sparo(2, "train " + task + " --config " + config + " --out " + tmp / "two" + " --progress 0");
  ASSERT_EQ(two.code, 0) << two.output;
  EXPECT_NE(two.output.find("data parallel: 2 processes, each 4 of every batch of 8"), std::string::npos) << two.output;
  // Only the first process prints: one line per step, not two.
  EXPECT_EQ(std::count(two.output.begin(), two.output.end(), '\n'), std::count(one.output.begin(), one.output.end(), '\n') + 1)
      << two.output;
  expect_close_losses(tmp / "two", tmp / "one", 1e-5);
  // Each logged step of the 2-process run reports its communication time (the gradients'
  // allreduce at least); the 1-process run communicates nothing and reports none.
  for (const auto& [run, ranks] : {std::pair{tmp / "one", 1}, std::pair{tmp / "two", 2}}) {
    std::ifstream in(run + "/metrics.jsonl");
    int steps = 0;
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      if (!j.contains("loss")) continue;
      ++steps;
      if (ranks == 1)
        EXPECT_FALSE(j.contains("comm_s")) << line;
      else
        EXPECT_GT(j.value("comm_s", 0.0), 0.0) << line;
    }
    EXPECT_EQ(steps, 10) << run;
  }
  // The exported weights (DINO: the teacher) and the trained model in the last checkpoint (DINO:
  // the student, which moves faster; its teacher and centre are the "extra." tensors).
  const double exported = expect_close_tensors(tmp / "two", tmp / "one", "model.safetensors", 1e-5);
  const std::string last = "checkpoints/step-00000010.safetensors";
  const double trained = expect_close_tensors(tmp / "two", tmp / "one", last, 1e-5, "model.");
  expect_close_tensors(tmp / "two", tmp / "one", last, 1e-5, "extra.");
  std::printf("%s: 2 processes vs 1, largest weight difference %.3g (exported), %.3g (trained)\n", task.c_str(),
              exported, trained);

  // Resume from the step-5 checkpoint, with 2 processes and with 1 (the sample order is global,
  // so the number of processes may change): the same weights as the uninterrupted runs.
  for (const int ranks : {2, 1}) {
    const std::string resumed = tmp / ("resumed" + std::to_string(ranks));
    fs::copy(tmp / "two", resumed, fs::copy_options::recursive);
    fs::remove(resumed + "/checkpoints/step-00000010.safetensors");
    fs::remove(resumed + "/model.safetensors");
    const Outcome r = sparo(ranks == 1 ? 0 : ranks, "train " + task + " --resume " + resumed + " --progress 0");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("at step 5"), std::string::npos) << r.output;
    expect_close_losses(resumed, tmp / "two", ranks == 2 ? 0.0 : 1e-5);  // 2 again: bit for bit
    expect_close_tensors(resumed, tmp / "two", "model.safetensors", ranks == 2 ? 0.0 : 1e-5);
  }
}

TEST(Distributed, ClipOnTwoProcessesEqualsOne) {
  SKIP_WITHOUT_MPI();
  two_processes_equal_one("clip");
}

TEST(Distributed, DinoOnTwoProcessesEqualsOne) {
  SKIP_WITHOUT_MPI();
  two_processes_equal_one("dino");
}

// Overlap (issue 15, item 2): with buckets of 10 KiB (dozens per step), gradients averaged while
// backward runs — between them CLIP's backward calls the gathers' own collective — give the
// same bits as averaging every bucket after backward, and most buckets did start during it.
TEST(Distributed, GradientsAveragedDuringBackwardEqualThoseAveragedAfterItBitForBit) {
  SKIP_WITHOUT_MPI();
  const TempDir tmp("mpi_overlap");
  const std::string config = write_config(tmp, "clip");
  for (const std::string overlap : {"true", "false"}) {
    const Outcome r = sparo(2, "train clip --config " + config + " --set grad_bucket_mib=0.01 --set grad_overlap=" +
                                   overlap + " --out " + tmp / overlap + " --progress 0");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find(overlap == "true" ? "buckets as backward fills them" : "buckets after backward"),
              std::string::npos)
        << r.output;
    std::ifstream in(tmp / overlap + "/metrics.jsonl");
    int steps = 0;
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      if (!j.contains("loss")) continue;
      ++steps;
      if (overlap == "true")
        EXPECT_GT(j.at("grad_buckets_in_backward").get<int>(), 10) << line;
      else
        EXPECT_EQ(j.at("grad_buckets_in_backward").get<int>(), 0) << line;
    }
    EXPECT_EQ(steps, 10);
  }
  expect_close_losses(tmp / "true", tmp / "false", 0.0);
  expect_close_tensors(tmp / "true", tmp / "false", "model.safetensors", 0.0);
}

// The same on Vulkan (issue 15, item 5): each process trains on its own lavapipe device; the
// gradients, the gathered embeddings and the loss travel through host copies. 3 steps of the
// tiny CLIP, 1 process against 2, losses and weights within 1e-5. Both runs go through mpirun
// (-np 1 and 2): a leak check of the driver's own allocations is off there, as for the CPU runs.
TEST(Distributed, ClipOnTwoProcessesEqualsOneOnVulkan) {
  SKIP_WITHOUT_MPI();
#if !defined(SPARO_HAVE_VULKAN)
  GTEST_SKIP() << "this build has no Vulkan backend";
#endif
  const TempDir tmp("mpi_vulkan");
  json j = json::parse(std::ifstream(write_config(tmp, "clip")));
  j.update({{"steps", 3}, {"warmup_steps", 1}, {"checkpoint_every", 3}, {"device", "vulkan"}});
  const std::string config = tmp / "clip_vulkan.json";
  std::ofstream(config) << j.dump(2);
  // mpirun hands its environment to the processes it starts on this machine.
  setenv("VK_DRIVER_FILES", "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", 1);
  setenv("SPARO_PIPELINE_CACHE", "off", 0);
  const std::string args = "train clip --config " + config + " --progress 0 --out ";
  const Outcome one = sparo(1, args + tmp / "one");
  ASSERT_EQ(one.code, 0) << one.output;
  const Outcome two = sparo(2, args + tmp / "two");
  ASSERT_EQ(two.code, 0) << two.output;
  EXPECT_NE(two.output.find("device vulkan:0"), std::string::npos) << two.output;
  EXPECT_NE(two.output.find("data parallel: 2 processes, each 4 of every batch of 8"), std::string::npos) << two.output;
  expect_close_losses(tmp / "two", tmp / "one", 1e-5);
  const double worst = expect_close_tensors(tmp / "two", tmp / "one", "model.safetensors", 1e-5);
  std::printf("clip on vulkan: 2 processes vs 1, largest weight difference %.3g\n", worst);
}

TEST(Distributed, ABatchThatDoesNotSplitIsRefused) {
  SKIP_WITHOUT_MPI();
  const TempDir tmp("mpi_split");
  const std::string config = write_config(tmp, "dino");
  const Outcome r = sparo(3, "train dino --config " + config + " --out " + tmp / "run" + " --progress 0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("batch_size 8 does not split evenly over 3 processes"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "run/config.json"));
}

// Every rank would run another command on its own, writing the same files at once.
TEST(Distributed, OnlyTrainRunsUnderMpirun) {
  SKIP_WITHOUT_MPI();
  const Outcome r = sparo(2, "info");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("under mpirun only 'sparo train' runs"), std::string::npos) << r.output;
}

// Two processes of which rank 1 gets `rank1_args` added to its sparo train dino command.
Outcome dino_with_rank1_args(const TempDir& tmp, const std::string& rank1_args) {
  const std::string script = tmp / "rank.sh";
  std::ofstream(script) << "#!/bin/sh\nextra=\"\"\n[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && extra=\"" << rank1_args << "\"\n"
                        << "exec " << SPARO_BIN << " --threads 1 train dino --config " << write_config(tmp, "dino")
                        << " --out " << tmp / "run" << " --progress 0 $extra\n";
  return sparo(2, "", "sh " + script);
}

// Ranks whose weights part (here rank 1 trains with another learning rate) are stopped at the
// next checkpoint by an error naming the rank, on every rank.
TEST(Distributed, RanksWhoseWeightsDifferAreNamed) {
  SKIP_WITHOUT_MPI();
  const TempDir tmp("mpi_differ");
  const Outcome r = dino_with_rank1_args(tmp, "--set lr=3e-3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, 124) << "timed out:\n" << r.output;
  EXPECT_NE(r.output.find("the ranks disagree on the weights at step 5: rank(s) 1 differ from rank 0"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(tmp / "run/checkpoints/step-00000005.safetensors"));
}

// A rank that fails (here rank 1 cannot read its data) ends the whole job with its message; the
// other is not left waiting in a collective.
TEST(Distributed, ARankThatFailsEndsTheJob) {
  SKIP_WITHOUT_MPI();
  const TempDir tmp("mpi_fail");
  const Outcome r = dino_with_rank1_args(tmp, "--set data_dir=/nonexistent/fashion");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, 124) << "timed out:\n" << r.output;
  EXPECT_NE(r.output.find("sparo: error: rank 1 of 2: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/fashion"), std::string::npos) << r.output;
}

// A rank that is stopped, not dead (SIGSTOP here; a hung file system does the same), is not
// noticed by mpirun: the other gives up after SPARO_MPI_TIMEOUT seconds in a collective, says so,
// and ends the job.
TEST(Distributed, ARankThatStopsRespondingEndsTheJobAfterTheTimeout) {
  SKIP_WITHOUT_MPI();
  const TempDir tmp("mpi_stuck");
  const std::string script = tmp / "rank.sh";
  // `$$` is the shell, which exec turns into sparo: rank 1 is stopped 2 s into its run.
  std::ofstream(script) << "#!/bin/sh\n[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && (sleep 2; kill -STOP $$) &\n"
                        << "exec env SPARO_MPI_TIMEOUT=3 " << SPARO_BIN << " --threads 1 train dino --config "
                        << write_config(tmp, "dino") << " --set steps=1000000 --out " << tmp / "run" << " --progress 0\n";
  const Outcome r = sparo(2, "", "sh " + script);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, 124) << "timed out:\n" << r.output;
  EXPECT_NE(r.output.find("sparo: error: rank 0 of 2: MPI: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" waited 3 s for the other ranks and gives up (SPARO_MPI_TIMEOUT)"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace sparo
