#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ with clang++ (-fsanitize=fuzzer,address,undefined) and runs
# each for a while, starting from its committed corpus fuzz/corpus/<harness>/.
#   bash scripts/fuzz.sh [seconds per harness, default 60] [harness ...]   (config, safetensors)
# New inputs go to build-fuzz/corpus-<harness>/ (not committed); a crash, leak, sanitizer report, a
# non-attn exception or a timeout stops the harness and leaves its input as build-fuzz/crash-* etc.: add
# that file to fuzz/corpus/<harness>/ with the fix, so ctest replays it from then on. Environment:
# JOBS (parallel fuzzing processes per harness, default 1), FUZZ_ARGS (extra libFuzzer flags, e.g.
# "-runs=10000000"). libFuzzer comes with Debian's clang runtime package libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(config safetensors)
bash scripts/deps.sh clang libclang-rt-14-dev
out=build-fuzz
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer -Iinclude -isystem /usr/include/eigen3)
status=0
jobs=""
[ "${JOBS:-1}" -le 1 ] || jobs="-jobs=$JOBS -workers=$JOBS"
for h in "${harnesses[@]}"; do
  echo "== building $h"
  clang++ "${flags[@]}" "fuzz/${h}_fuzzer.cpp" -lfmt -o "$out/${h}_fuzzer"
  mkdir -p "$out/corpus-$h"
  echo "== fuzzing $h for ${seconds}s"
  # shellcheck disable=SC2086
  (cd "$out" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "./${h}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
     $jobs ${FUZZ_ARGS:-} "corpus-$h" "../fuzz/corpus/$h") || status=1
done
exit $status
