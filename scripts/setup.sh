#!/usr/bin/env bash
# Installs the Debian 12 packages sparo needs. Run as root (or with sudo available).
#   scripts/setup.sh             everything: compiler, CMake, Eigen, oneTBB, ..., the Vulkan
#                                toolchain, clang with libFuzzer and lld (scripts/fuzz.sh), and
#                                PyTorch + OpenBLAS (the checkpoint converter and its test, the
#                                side-by-side benchmarks, the golden scripts)
#   scripts/setup.sh --no-torch  the same without PyTorch (about 500 MB less; the converter's
#                                test is then skipped and the benchmarks run without PyTorch)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev libtbb-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libstb-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  clang libclang-rt-14-dev lld
  dataset-fashion-mnist
)
if [[ "${1:-}" != "--no-torch" ]]; then
  packages+=(python3 python3-torch python3-numpy libopenblas0-openmp)
fi

run_as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  run_as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive run_as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages already installed"
fi
