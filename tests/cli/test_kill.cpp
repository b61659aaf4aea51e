// Kill tests: `sparo train` is killed with SIGKILL at random moments — some while a
// checkpoint is being written — and resumed each time; the run must end with weights
// byte-identical to an uninterrupted run's and metrics.jsonl holding every step once, with the
// same losses. CLIP and DINO on the CPU, DINO once on Vulkan (lavapipe).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace sparo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The losses of metrics.jsonl by step, in file order.
std::vector<std::pair<int, double>> losses(const fs::path& run) {
  std::vector<std::pair<int, double>> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.emplace_back(j.at("step").get<int>(), j.at("loss").get<double>());
  }
  return out;
}

size_t loss_lines(const fs::path& run) {
  std::ifstream in(run / "metrics.jsonl");
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find("\"loss\"") != std::string::npos;
  return n;
}

// Starts `sparo train TASK ARGS...` with its output in log_path; returns its pid.
pid_t start_sparo(const std::vector<std::string>& args, const fs::path& log_path, const std::string& vk_icd) {
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* log = std::fopen(log_path.c_str(), "a");
    if (log) {
      dup2(fileno(log), STDOUT_FILENO);
      dup2(fileno(log), STDERR_FILENO);
    }
    if (!vk_icd.empty()) {
      setenv("VK_DRIVER_FILES", vk_icd.c_str(), 1);
      // Under ASan, the Vulkan driver's own small leaks come from a library unloaded before
      // LeakSanitizer reports, so no suppression can name them; our code's leaks are checked
      // in process by the Vulkan tests, which keep the driver mapped (tests/vulkan_env.h).
      const char* asan = std::getenv("ASAN_OPTIONS");
      setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":detect_leaks=0").c_str(), 1);
    }
    std::vector<char*> argv;
    std::string bin = SPARO_BIN;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(SPARO_BIN, argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits (bounded) until a new step has been logged since `since` lines, or the process ended.
bool wait_for_progress(pid_t pid, const fs::path& run, size_t since) {
  const auto deadline = Clock::now() + std::chrono::minutes(5);
  while (Clock::now() < deadline) {
    if (loss_lines(run) > since) return true;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ADD_FAILURE() << "no progress in 5 minutes";
  return false;
}

// Blocks until a checkpoint's temporary file appears in dir (the write under way), or timeout.
bool wait_for_checkpoint_write(const fs::path& dir, std::chrono::milliseconds timeout) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return false;
  const int wd = inotify_add_watch(fd, dir.c_str(), IN_CREATE);
  bool seen = false;
  const auto deadline = Clock::now() + timeout;
  alignas(inotify_event) char buf[4096];
  while (wd >= 0 && !seen && Clock::now() < deadline) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    for (ssize_t off = 0; off < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
      if (e->len > 0 && std::string(e->name).find(".tmp") != std::string::npos) seen = true;
      off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
  }
  close(fd);
  return seen;
}

struct KillCase {
  std::string task, config, vk_icd;
  int kills;
};

void kill_and_resume(const KillCase& c, const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "train.json") << c.config;
  const fs::path straight = dir / "straight", killed = dir / "killed";
  const std::vector<std::string> fresh_args = {"--threads", "1", "train", c.task, "--config", (dir / "train.json").string(),
                                               "--progress", "0", "--out"};
  std::vector<std::string> args = fresh_args;
  args.push_back(straight.string());
  ASSERT_EQ(wait_exit_code(start_sparo(args, dir / "straight.log", c.vk_icd)), 0) << read_all(dir / "straight.log");

  std::mt19937 rng(12345);  // fixed: the same kill schedule every run of the test
  int kills = 0, during_write = 0;
  for (int round = 0; round < c.kills; ++round) {
    args = fresh_args;
    if (fs::exists(killed / "config.json")) {
      args = {"--threads", "1", "train", c.task, "--progress", "0", "--resume", killed.string()};
    } else {
      args.push_back(killed.string());
    }
    const size_t before = loss_lines(killed);
    const pid_t pid = start_sparo(args, dir / "killed.log", c.vk_icd);
    if (!wait_for_progress(pid, killed, before)) {
      wait_exit_code(pid);
      break;  // finished before the kill: nothing left to interrupt
    }
    // Every other round aims at a checkpoint write; the others at a random moment of a step.
    if (round % 2 == 1 && wait_for_checkpoint_write(killed / "checkpoints", std::chrono::seconds(20))) {
      ++during_write;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 30)(rng)));
    }
    kill(pid, SIGKILL);
    const int code = wait_exit_code(pid);
    kills += code == 128 + SIGKILL;
  }
  args = {"--threads", "1", "train", c.task, "--progress", "0", "--resume", killed.string()};
  ASSERT_EQ(wait_exit_code(start_sparo(args, dir / "killed.log", c.vk_icd)), 0) << read_all(dir / "killed.log");

  std::cout << "[ kills  ] " << c.task << ": " << kills << " SIGKILLs, " << during_write
            << " of them while a checkpoint was being written\n";
  EXPECT_GE(kills, c.kills - 1) << "most rounds must land a kill\n" << read_all(dir / "killed.log");
  EXPECT_GE(during_write, 1) << "at least one kill during a checkpoint write";
  EXPECT_EQ(losses(killed), losses(straight)) << read_all(dir / "killed.log");  // each step once, same bits
  const std::string weights = read_all(straight / "model.safetensors");
  EXPECT_FALSE(weights.empty());
  EXPECT_TRUE(read_all(killed / "model.safetensors") == weights) << "weights differ from the uninterrupted run's";
  for (const auto& e : fs::directory_iterator(killed / "checkpoints"))
    EXPECT_EQ(e.path().extension(), ".safetensors") << "left behind: " << e.path();
}

const char* kDinoConfig = R"({"task": "dino", "steps": 60, "batch_size": 8, "warmup_steps": 2, "local_crops": 2,
  "local_crop_size": 8, "log_every": 1, "checkpoint_every": 2, "device": "DEVICE",
  "model": {"model": "dino", "image_size": 16, "patch_size": 4, "width": 32, "depth": 1, "heads": 2,
            "readout": "sparo", "L": 4, "V": 8, "head_hidden": 32, "head_bottleneck": 16, "head_out": 64}})";

std::string on_device(std::string config, const std::string& device) {
  config.replace(config.find("DEVICE"), 6, device);
  return config;
}

fs::path test_dir() {
  return fs::temp_directory_path() /
         ("sparo_kill_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
          std::to_string(getpid()));
}

TEST(KillTest, ClipKilledAtRandomAndDuringCheckpointsResumesBitIdentical) {
  const std::string config = R"({"task": "clip", "train_size": 256, "steps": 60, "batch_size": 16, "warmup_steps": 2,
    "log_every": 1, "checkpoint_every": 2,
    "model": {"embed_dim": 32, "use_sparo": true, "L": 4, "V": 8,
      "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
      "text_cfg": {"context_length": 24, "vocab_size": 600, "width": 32, "heads": 2, "layers": 1}}})";
  kill_and_resume({"clip", config, "", 6}, test_dir());
  fs::remove_all(test_dir());
}

TEST(KillTest, DinoKilledAtRandomAndDuringCheckpointsResumesBitIdentical) {
  kill_and_resume({"dino", on_device(kDinoConfig, "cpu"), "", 6}, test_dir());
  fs::remove_all(test_dir());
}

#if defined(SPARO_HAVE_VULKAN)
TEST(KillTest, DinoOnVulkanKilledAndResumedBitIdentical) {
  const char* icd = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";
  const char* other = std::getenv("SPARO_TEST_VULKAN_ICD");
  kill_and_resume({"dino", on_device(kDinoConfig, "vulkan"), other && *other ? other : icd, 4}, test_dir());
  fs::remove_all(test_dir());
}
#endif

}  // namespace
}  // namespace sparo
