#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite through ctest.
#   bash scripts/test.sh              g++, Release (build dir build)
#   bash scripts/test.sh --sanitize   clang++, AddressSanitizer + UBSan (build dir build-asan); without
#                                     the consumer builds and the whole-binary reruns per SIMD level (the
#                                     kernel and core tests still cover every level); the library
#                                     code -O1, the test files -O0, with line tables only (file:line in
#                                     reports, without full debug info's compile time)
#   --configure-only                  configure as above and stop (CI checks the result, .ci/check_suite.sh)
# Every option the suite depends on is set on the command line, so whatever an earlier configure of
# the same build dir left in its cache (the quick-start's ATTN_BUILD_TESTS=OFF, an ATTN_TEST_ONLY
# subset) is reset; ctest fails when it finds no test.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
sanitize=0
configure_only=0
for arg in "$@"; do
  case $arg in
    --sanitize) sanitize=1 ;;
    --configure-only) configure_only=1 ;;
    *) echo "usage: bash scripts/test.sh [--sanitize] [--configure-only]" >&2; exit 2 ;;
  esac
done
suite=(-DATTN_BUILD_TESTS=ON -DATTN_BUILD_EXAMPLES=ON -DATTN_BUILD_CLI=ON -DATTN_PRECOMPILED_LAYERS=ON -DATTN_TEST_ONLY=)
if [ $sanitize = 1 ]; then
  [ $configure_only = 1 ] || bash scripts/deps.sh clang
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-O1" -DATTN_TESTS_OPTIMIZE=-O0 -DATTN_SANITIZE=ON "${suite[@]}" -DATTN_HEADER_CHECK=OFF \
    -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_CLI=OFF
  [ $configure_only = 1 ] && exit 0
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --no-tests=error --test-dir build-asan --output-on-failure -j "$jobs" -E '^(consumer_|attn_tests_simd_)'
else
  [ $configure_only = 1 ] || bash scripts/deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${suite[@]}" -DATTN_TESTS_OPTIMIZE= -DATTN_HEADER_CHECK=ON
  [ $configure_only = 1 ] && exit 0
  cmake --build build -j "$jobs"
  ctest --no-tests=error --test-dir build --output-on-failure -j "$jobs"
fi
