#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite through ctest.
#   bash scripts/test.sh              g++, Release
#   bash scripts/test.sh --sanitize   clang++, AddressSanitizer + UBSan (build dir build-asan); without
#                                     the consumer builds and the whole-binary reruns per SIMD level (the
#                                     kernel and core tests still cover every level)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
if [ "${1:-}" = "--sanitize" ]; then
  bash scripts/deps.sh clang
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-O1" -DATTN_SANITIZE=ON -DATTN_BUILD_TESTS=ON -DATTN_BUILD_EXAMPLES=ON -DATTN_HEADER_CHECK=OFF
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --no-tests=error --test-dir build-asan --output-on-failure -j "$jobs" -E '^(consumer_|attn_tests_simd_)'
else
  bash scripts/deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_TESTS=ON -DATTN_BUILD_EXAMPLES=ON -DATTN_HEADER_CHECK=ON
  cmake --build build -j "$jobs"
  ctest --no-tests=error --test-dir build --output-on-failure -j "$jobs"
fi
