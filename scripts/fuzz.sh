#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang, ASan + UBSan, warnings as errors) in
# build-fuzz/ and runs each, one after the other, for SECONDS (default 20) on a copy of its
# seed corpus fuzz/corpus/<name>/, so the committed corpus never grows. Prints one line per
# fuzzer and exits non-zero on any crash, leak, timeout or out-of-memory; the input that
# caused it is kept in build-fuzz/findings/, the fuzzer's log in build-fuzz/runs/<name>/log.
#   scripts/fuzz.sh [SECONDS]
#   FUZZERS="safetensors idx" scripts/fuzz.sh 60     only these
# Reproduce a finding: build-fuzz/fuzz/fuzz_<name> build-fuzz/findings/<file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
for tool in clang++ ld.lld; do
  command -v $tool >/dev/null || { echo "fuzz: $tool not found; run scripts/setup.sh" >&2; exit 1; }
done

out=$PWD/build-fuzz
start=$SECONDS
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSPARO_FUZZ=ON -DSPARO_WERROR=ON \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j "$(nproc)"
built=$((SECONDS - start))

# The harnesses write their inputs to files for the parsers that read paths: in memory where
# /dev/shm allows (three times the executions of ext4), in a folder removed at the end, so
# that a crashed run leaves nothing behind.
scratch_root=/dev/shm; [[ -d $scratch_root && -w $scratch_root ]] || scratch_root=$out
TMPDIR=$(mktemp -d "$scratch_root/sparo-fuzz.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
mkdir -p "$out/findings"
export UBSAN_OPTIONS=print_stacktrace=1

names=${FUZZERS:-$(cd build-fuzz/fuzz && ls fuzz_* | sed 's/^fuzz_//' | sort)}
failed=0
for name in $names; do
  bin=$out/fuzz/fuzz_$name
  [[ -x $bin ]] || { echo "fuzz: no fuzzer $bin" >&2; exit 2; }
  work=$out/runs/$name
  rm -rf "$work" && mkdir -p "$work/corpus"
  seeds=0
  if [[ -d fuzz/corpus/$name ]]; then
    cp fuzz/corpus/$name/* "$work/corpus/"
    seeds=$(ls "$work/corpus" | wc -l)
  fi
  # From its own folder, so that relative paths in the input (a model config path) resolve there.
  # Memory that is used counts (-rss_limit_mb); one allocation above that does not by itself
  # (-malloc_limit_mb, which defaults to the RSS limit): stb_image reserves up to 2 GiB for a
  # PNG's image data from the chunk lengths a 76-byte file declares, and frees it unused when
  # the data runs out.
  rc=0 t0=$SECONDS
  (cd "$work" && "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=4096 -timeout=10 \
     -print_final_stats=1 -artifact_prefix="$out/findings/$name-" corpus >log 2>&1) || rc=$?
  took=$((SECONDS - t0)); ((took > 0)) || took=1
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
  line=$(printf '%-14s %9s execs %7s/s  cov %5s  corpus %3s -> %4s' "$name" "${execs:-?}" \
         "$(( ${execs:-0} / took ))" "${cov:-?}" "$seeds" "$(ls "$work/corpus" | wc -l)")
  if ((rc == 0)); then
    echo "$line  ok"
  else
    failed=1
    what=$(grep -m1 -oE 'terminate called .*|runtime error: .*|fuzz check failed: .*|ERROR: [A-Za-z]+: [a-z -]+' \
           "$work/log" || echo "exit status $rc")
    input=$(sed -n 's/.*Test unit written to //p' "$work/log" | tail -1)
    echo "$line  FAILED: $what; input ${input:-none kept}; log $work/log"
  fi
done
echo "fuzz: build ${built}s, total $((SECONDS - start))s"
exit $failed
