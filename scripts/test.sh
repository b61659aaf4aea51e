#!/usr/bin/env bash
# Builds sparo twice (Release, and Debug with ASan + UBSan) and runs every test in both, then
# runs each fuzzer of fuzz/ for 20 seconds (scripts/fuzz.sh; 4.5 minutes on 2 shared cores,
# its build included).
set -euo pipefail
cd "$(dirname "$0")/.."
export SPARO_TEST_DATA="${SPARO_TEST_DATA:-$(cd .. && pwd)/shared/data}"
for flavour in release sanitize; do
  echo "=== $flavour build ==="
  scripts/build.sh "$flavour"
  dir=build; [[ $flavour == sanitize ]] && dir=build-asan
  echo "=== $flavour tests ==="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions="$PWD/tests/lsan_suppressions.txt" \
    ctest --test-dir "$dir" --output-on-failure -j "$(nproc)"
done
echo "=== fuzzing ==="
scripts/fuzz.sh 20
