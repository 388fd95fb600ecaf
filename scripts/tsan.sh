#!/usr/bin/env bash
# ThreadSanitizer run of the threaded tests: the attention core and the kernels (attn's pool, thread-count
# independence), multi_head (threaded projections) and core/test_threads.cpp (two user threads sharing
# one const layer), built with clang++ -fsanitize=thread in build-tsan and run.
#   bash scripts/tsan.sh
# Not part of .ci/run (see the README for its time); a data race fails the run (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh clang libclang-rt-14-dev
start=$(date +%s)
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="-O1 -g -fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
  -DATTN_BUILD_TESTS=ON -DATTN_BUILD_EXAMPLES=OFF -DATTN_HEADER_CHECK=OFF \
  -DATTN_TEST_ONLY="ops/test_attention_core.cpp;ops/test_kernels.cpp;layers/test_multi_head.cpp;core/test_threads.cpp"
cmake --build build-tsan -j "$(nproc)" --target attn_tests
echo "tsan build done in $(( $(date +%s) - start )) s"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./build-tsan/tests/attn_tests -w NoAssertions
echo "tsan done in $(( $(date +%s) - start )) s"
