#!/usr/bin/env bash
# Configures and builds one flavour of sparo with warnings as errors.
#   scripts/build.sh            Release build in build/
#   scripts/build.sh sanitize   Debug + AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-release}" in
  release)  dir=build;      flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DSPARO_SANITIZE=ON -DSPARO_BENCH=OFF) ;;
  *) echo "usage: $0 [release|sanitize]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja -DSPARO_WERROR=ON "${flags[@]}" >/dev/null
cmake --build "$dir"
