#!/usr/bin/env bash
# Installs what is missing, builds the quick-start example and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_TESTS=OFF -DATTN_HEADER_CHECK=OFF
cmake --build build --target quickstart
./build/examples/quickstart examples/configs/quickstart.json
