#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a GPU machine that has no Debian packages of
# ours: the Release binaries of build/ and the shared libraries they load that such a
# machine may lack (oneTBB, stb; the Vulkan loader and validation layers as .debs). Run it here, after
# `scripts/build.sh`; it fills .device/ (ignored by git), which a device run carries:
#   scripts/gpu_prepare.sh && (device run: carry .device, command: bash scripts/gpu_check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/bin .device/lib .device/debs
for exe in sparo sparo_tests bench_vulkan_gemm bench_train_step; do
  [[ -x build/$exe ]] || { echo "gpu_prepare: build/$exe is missing: run scripts/build.sh first" >&2; exit 1; }
  cp build/$exe .device/bin/
done
# Not libc, libm, libstdc++ or libgcc_s: the machine's own are newer, and a carried older
# libstdc++ on LD_LIBRARY_PATH would break the PyTorch that the benchmark starts.
for lib in libtbb.so.12 libstb.so.0; do cp -L "/lib/x86_64-linux-gnu/$lib" .device/lib/; done
# The Vulkan loader, and the validation layers, so that the tests run on the GPU with
# validation on as they do on lavapipe.
(cd .device/debs && apt-get download libvulkan1 vulkan-validationlayers >/dev/null)
du -sh .device
