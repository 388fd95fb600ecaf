#!/usr/bin/env bash
# Installs what is missing, builds the quick-start example and runs it.
#   --configure-only   configure build/ as below and stop (CI checks that the test command still
#                      runs the suite in a build dir configured this way first: .ci/check_suite.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--configure-only" ] || bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=ON -DATTN_PRECOMPILED_LAYERS=OFF \
  -DATTN_HEADER_CHECK=OFF
[ "${1:-}" = "--configure-only" ] && exit 0
cmake --build build --target quickstart
./build/examples/quickstart examples/configs/quickstart.json
