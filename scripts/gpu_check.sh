#!/usr/bin/env bash
# The Vulkan checks for a real GPU, as one run on the device machine (from the repo root,
# with .device/ from scripts/gpu_prepare.sh carried): the device list, the op ring and the
# Vulkan kernel tests on that GPU against the CPU backend, then the GEMM benchmark and one
# training step of each tiny model against PyTorch on the same GPU. Everything is also
# written to $OUT/gpu_check.log when OUT is set. About 3 to 5 minutes on an H100 (not yet
# timed there). GPU_CHECK_SIZES (default 1024,2048,4096) and GPU_CHECK_OPS_SIZE (4096)
# shrink the work for a dry run on lavapipe.
set -uo pipefail
log=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$log") 2>&1
for f in .device/debs/*.deb; do dpkg -x "$f" /; done
ldconfig
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
icd=""
for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
         /etc/vulkan/icd.d/nvidia_icd.json; do
  [[ -f $f ]] && { icd=$f; break; }
done
[[ -n $icd ]] || echo "gpu_check: no nvidia_icd.json found; the loader's default drivers are used"
[[ -n $icd ]] && export VK_DRIVER_FILES=$icd
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv 2>/dev/null
bin=.device/bin
echo "== sparo info"
$bin/sparo info
echo "== op ring and Vulkan kernels on the GPU, validation layers on (any message fails a test)"
SPARO_TEST_VULKAN_ICD=$icd timeout 300 $bin/sparo_tests \
  --gtest_filter='*OpRingVulkan*:*VulkanOps*:VulkanMatmulTiles*' 2>&1 | grep -E '^\[ +(FAILED|PASSED) |^\[==========\]|Failure|error' | head -60
echo "== GEMM: sparo fp32 tile shapes, then the best against PyTorch"
timeout 300 $bin/bench_vulkan_gemm --sizes "${GPU_CHECK_SIZES:-1024,2048,4096}" --reps 10 --windows 5
echo "== one training step: sparo on Vulkan against PyTorch on CUDA (fp32, TF32 off)"
SPARO_BENCH_PYTHON=$(command -v python3) timeout 300 $bin/bench_train_step --device vulkan --quick
echo "== sparo bench ops"
timeout 120 $bin/sparo bench ops --device vulkan --size "${GPU_CHECK_OPS_SIZE:-4096}" --reps 5 --windows 3
