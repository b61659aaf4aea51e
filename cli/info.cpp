// `sparo info`: what this build and this machine offer.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "engine/backend.h"
#include "engine/cpu/gemm.h"
#include "engine/tensor.h"
#if defined(SPARO_HAVE_VULKAN)
#include "engine/vulkan/context.h"
#endif

namespace sparo::cli {

namespace {

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string simd_features() {
  __builtin_cpu_init();
  std::string out;
  auto add = [&](bool present, const char* name) {
    if (present) out += (out.empty() ? "" : " ") + std::string(name);
  };
  add(__builtin_cpu_supports("sse4.2"), "sse4.2");
  add(__builtin_cpu_supports("avx"), "avx");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("f16c"), "f16c");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512dq"), "avx512dq");
  add(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
  add(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
  return out.empty() ? "none detected" : out;
}

std::string build_flags() {
  std::string flags;
#if defined(__AVX512F__)
  flags += "avx512f ";
#endif
#if defined(__AVX2__)
  flags += "avx2 ";
#endif
#if defined(__FMA__)
  flags += "fma ";
#endif
#if defined(__SANITIZE_ADDRESS__)
  flags += "asan ";
#endif
#if !defined(NDEBUG)
  flags += "debug-asserts ";
#endif
  return flags.empty() ? "baseline x86-64" : flags;
}

void print_vulkan_devices() {
#if defined(SPARO_HAVE_VULKAN)
  std::string why_not;
  const std::vector<vk::DeviceInfo> devices = vk::list_devices(&why_not);
  if (devices.empty()) {
    std::cout << "vulkan:        none (" << why_not << ")\n";
    return;
  }
  const int preferred = vk::choose_device(devices, -1);
  for (const vk::DeviceInfo& d : devices) {
    std::cout << "vulkan:" << d.index << (d.index == preferred ? " (default)" : "") << "  " << d.name << " — " << d.type
              << ", driver " << d.driver << ", Vulkan " << d.api_version << "\n";
    std::cout << "    memory heaps:";
    for (const vk::MemoryHeap& h : d.heaps)
      std::cout << " " << (h.size >> 20) << " MiB" << (h.device_local ? " (device-local)" : "");
    std::cout << "\n    subgroup " << d.subgroup_size << (d.subgroup_arithmetic ? " (arithmetic)" : "") << ", shared memory " << d.max_shared_memory / 1024
              << " KiB, workgroup <= " << d.max_workgroup_invocations << " invocations\n"
              << "    storage buffer range " << (d.max_storage_buffer_range >> 20) << " MiB, allocation <= "
              << (d.max_allocation_size >> 20) << " MiB\n"
              << "    fp16 " << (d.fp16 ? "yes" : "no") << ", cooperative matrix: KHR "
              << (d.cooperative_matrix ? "yes" : "no") << ", NV fp16 16x16x16 "
              << (d.coopmat_nv_f16 ? "yes (SPARO_VULKAN_COOPMAT=1 uses it)" : "no")
              << ", push descriptors " << (d.push_descriptors ? "yes" : "no") << "\n";
  }
#else
  std::cout << "vulkan:        not built (SPARO_VULKAN=OFF)\n";
#endif
}

}  // namespace

void add_info_command(CLI::App& app) {
  CLI::App* info = app.add_subcommand("info", "Print the version, compiled backends, threads and CPU features");
  info->callback([] {
    std::string backends;
    for (const std::string& b : compiled_backends()) backends += (backends.empty() ? "" : ", ") + b;
    std::cout << "sparo " << SPARO_VERSION << "\n"
              << "backends:      " << backends << "\n"
              << "threads:       " << num_threads() << " (hardware: " << std::thread::hardware_concurrency()
              << "; set with --threads or SPARO_THREADS)\n"
              << "cpu:           " << cpu_model() << "\n"
              << "cpu features:  " << simd_features() << "\n"
              << "compiled for:  " << build_flags() << "\n"
              << "gemm kernel:   " << cpu::sgemm_kernel_name() << "\n";
    print_vulkan_devices();
  });
}

}  // namespace sparo::cli
