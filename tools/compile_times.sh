#!/usr/bin/env bash
# Per-TU compile cost of the test suite and of two user TUs, as CPU time (user + sys) and peak memory
# from /usr/bin/time -v (wall time is noisy on a shared machine). No ccache; one compile at a time.
#   bash tools/compile_times.sh [build-dir]     (default: build-times; configured Release like CI)
#   ONLY='regex' bash tools/compile_times.sh      only the TUs whose path matches (the PCH always)
# Prints one line per TU: seconds (user+sys), max RSS in MiB, file. The two user TUs are compiled
# with plain g++ -O2 (tools/compile_probe/one_layer.cpp: one layer header and one forward;
# tools/compile_probe/factory_one.cpp: attn/attn.hpp and one layer through the factory).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bld=${1:-$src/build-times}
cxx=${CXX:-g++}
cmake -S "$src" -B "$bld" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_CXX_COMPILER_LAUNCHER= -DATTN_CCACHE=ATTN_CCACHE-NOTFOUND -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DATTN_BUILD_TESTS=ON -DATTN_TEST_ONLY= -DATTN_BUILD_EXAMPLES=OFF -DATTN_HEADER_CHECK=OFF >/dev/null
measure() {  # label, command...
  local label=$1 log
  shift
  log=$(mktemp)
  /usr/bin/time -v "$@" 2>"$log" >/dev/null || { cat "$log"; rm -f "$log"; return 1; }
  awk -v label="$label" '/User time/ {u=$NF} /System time/ {s=$NF} /Maximum resident/ {m=$NF}
    END {printf "%7.1f s %6.0f MiB  %s\n", u+s, m/1024, label}' "$log"
  rm -f "$log"
}
# the precompiled headers first (their own line), then every TU of the test suite with them
cd "$bld"
for pch in $(ninja -t targets all | grep -o '^[^:]*cmake_pch[^:]*\.gch' | sort -u); do
  cmd=$(ninja -t commands "$pch" | tail -n 1)
  measure "$pch" bash -c "$cmd"
done
python3 - "$bld/compile_commands.json" "${ONLY:-.}" <<'PY' >"$bld/tu_commands.txt"
import json, re, sys
only = sys.argv[2]
for e in json.load(open(sys.argv[1])):
    if "/tests/" in e["file"] and not e["file"].endswith(".hxx.cxx") and re.search(only, e["file"]):
        print(e["file"] + "\t" + e["directory"] + "\t" + e["command"])
PY
while IFS=$'\t' read -r file dir cmd; do
  (cd "$dir" && measure "${file#$src/}" bash -c "$cmd")
done <"$bld/tu_commands.txt"
inc=(-std=c++20 -O2 -I"$src/include" -isystem /usr/include/eigen3)
for probe in "$src"/tools/compile_probe/*.cpp; do
  [[ $probe =~ ${ONLY:-.} ]] || continue
  measure "${probe#$src/} (g++ -O2)" "$cxx" "${inc[@]}" -c "$probe" -o /dev/null
done
