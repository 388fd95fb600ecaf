#!/usr/bin/env bash
# Builds the benchmarks (attn_bench_attention, and attn_bench_torch when libtorch is found), runs them
# and prints one markdown table: attn / plain Eigen / libtorch / GEMM ceiling, with ratios (and the
# attention core alone, whose GFLOP/s count only Q·Kᵀ and P·V). The ceiling is OpenBLAS's sgemm of
# 1024³ on 1 and 2 threads in the same run (Debian's libopenblas-dev; the attention runs go without
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, and the table names the OpenBLAS core), next to attn's GEMM and
# Eigen's of the forward's flops; a second table gives the forward's phases alone (QKV projection,
# attention core, output projection).
#
#   bash benchmarks/compare.sh
#
# Environment (all optional):
#   BUILD_DIR   build directory (default: build-bench in the repository)
#   CMAKE_ARGS  extra CMake arguments, e.g. "-DATTN_BENCH_NATIVE=ON" for -march=native
#   FILTER      Google Benchmark regex on "B:<b>/L:<l>/causal:<c>/threads:<t>" (default: all 32 shapes)
#   MIN_TIME    --benchmark_min_time in seconds (default 0.05; big shapes run once anyway)
#   REPS        --benchmark_repetitions (default 1); the table keeps the fastest repetition, which is
#               the robust choice on a shared machine; the conv benchmarks run REPS rounds instead,
#               each of attn then libtorch once
#   TORCH_LD_LIBRARY_PATH  library path for the libtorch run only (e.g. another BLAS)
#   JOBS        build parallelism (default 2)
#   OUT_DIR     keep the Google Benchmark JSON files there (default: a temporary directory)
#   REUSE       1: run nothing, print the attention tables from the JSON files already in OUT_DIR
#   CLOCK       real (default) or cpu: the attention and conv tables from the CPU time of the 1-thread
#               runs (the 2-thread rows are left out), for a machine that other jobs share
#   ATTN_SIMD   attn's SIMD level (generic, avx2, avx512; default: the best the CPU has)
#   WHAT        attention, conv or all (default): conv runs attn_bench_conv and attn_bench_torch_conv
#               (conv2d 3x3 56x56x64->64 and 14x14x256->256, depthwise 7x7 56x56x96, B = 8) and prints
#               attn / libtorch / the same-size GEMM with ratios
#               block runs attention_block (attn_bench_vision_layers, 14x14x384, 6 heads, B = 8) and libtorch's
#               nn::TransformerEncoderLayer times the per-channel scale (attn_bench_torch), 1 and 2 threads
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-bench}
filter=${FILTER:-.}
min_time=${MIN_TIME:-0.05}
reps=${REPS:-1}
jobs=${JOBS:-2}
what=${WHAT:-all}

# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_BENCHMARKS=ON \
  -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_HEADER_CHECK=OFF ${CMAKE_ARGS:-} >/dev/null
targets=()
[ "$what" != conv ] && targets+=(attn_bench_attention)
[ "$what" != attention ] && targets+=(attn_bench_conv)
if [ -n "$(cmake --build "$build" --target help | grep -o '^attn_bench_torch' || true)" ]; then
  [ "$what" != conv ] && targets+=(attn_bench_torch)
  [ "$what" != attention ] && targets+=(attn_bench_torch_conv)
fi
[ "$what" = block ] && targets+=(attn_bench_vision_layers)
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >/dev/null

if [ -n "${OUT_DIR:-}" ]; then
  out=$OUT_DIR
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
export CLOCK=${CLOCK:-real}

if [ "$what" = block ]; then
  echo "running attn_bench_vision_layers and attn_bench_torch (attention_block) ..." >&2
  "$build/benchmarks/attn_bench_vision_layers" --benchmark_filter=attention_block --benchmark_min_time="$min_time" \
    --benchmark_repetitions="$reps" --benchmark_out="$out/attn_block.json" --benchmark_out_format=json >&2
  LD_LIBRARY_PATH="${TORCH_LD_LIBRARY_PATH:-${LD_LIBRARY_PATH:-}}" \
    "$build/benchmarks/attn_bench_torch" --benchmark_filter=attention_block --benchmark_min_time="$min_time" \
    --benchmark_repetitions="$reps" --benchmark_out="$out/torch_block.json" --benchmark_out_format=json >&2
  python3 - "$out" <<'EOF'
import json, os, re, sys

out = sys.argv[1]
best = {}  # (who, post, threads) -> fastest ms (real time) over the repetitions
for name in ("attn_block.json", "torch_block.json"):
    with open(os.path.join(out, name)) as f:
        for b in json.load(f)["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration":
                continue
            m = re.match(r"BM_(torch_)?attention_block(?:/post:(\d))?/threads:(\d+)", b["name"])
            if not m:
                continue
            ms = b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
            key = ("torch" if m.group(1) else "attn", int(m.group(2) or 1), int(m.group(3)))
            best[key] = min(ms, best.get(key, ms))
fmt = lambda v: "—" if v is None else "{:.1f}".format(v)
print("| threads | attn post-norm ms | attn pre-norm ms | libtorch TransformerEncoderLayer ms | libtorch / attn (post) |")
print("|---|---|---|---|---|")
for t in (1, 2):
    a, p, tt = best.get(("attn", 1, t)), best.get(("attn", 0, t)), best.get(("torch", 1, t))
    print("| {} | {} | {} | {} | {} |".format(t, fmt(a), fmt(p), fmt(tt),
                                              "—" if a is None or tt is None else "{:.2f}x".format(tt / a)))
EOF
  exit 0
fi

if [ "$what" != attention ]; then
  # REPS rounds, each running attn then libtorch once, so that both see the same spells of load on a
  # shared machine (rather than all of attn's repetitions, then all of libtorch's)
  rm -f "$out"/attn_conv_*.json "$out"/torch_conv_*.json
  for ((round = 1; round <= reps; ++round)); do
    echo "running attn_bench_conv (round $round of $reps) ..." >&2
    "$build/benchmarks/attn_bench_conv" --benchmark_min_time="$min_time" \
      --benchmark_out="$out/attn_conv_$round.json" --benchmark_out_format=json >&2
    if [ -x "$build/benchmarks/attn_bench_torch_conv" ]; then
      echo "running attn_bench_torch_conv (round $round of $reps) ..." >&2
      LD_LIBRARY_PATH="${TORCH_LD_LIBRARY_PATH:-${LD_LIBRARY_PATH:-}}" \
        "$build/benchmarks/attn_bench_torch_conv" --benchmark_min_time="$min_time" \
        --benchmark_out="$out/torch_conv_$round.json" --benchmark_out_format=json >&2
    fi
  done
  python3 - "$out" <<'EOF'
import json, os, re, sys

out = sys.argv[1]
names = {0: "conv 3x3 56x56x64->64", 1: "conv 3x3 14x14x256->256", 2: "depthwise 7x7 56x56x96"}
cpu_clock = os.environ.get("CLOCK") == "cpu"
rows = {}  # (shape, threads) -> {impl: (ms, gflops)}
for name in sorted(f for f in os.listdir(out) if re.match(r"(attn|torch)_conv_\d+\.json$", f)):
    for b in json.load(open(os.path.join(out, name)))["benchmarks"]:
        m = re.match(r"BM_(\w+)/shape:(\d+)/threads:(\d+)", b["name"])
        if not m or b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
            continue
        unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        ms, gflops = b["real_time"] * unit, b.get("GFLOPS", 0.0)
        key = (int(m.group(2)), int(m.group(3)))
        if cpu_clock:  # the rate counter is per wall-clock second: rescale it to the CPU time
            if key[1] != 1:
                continue
            gflops *= b["real_time"] / b["cpu_time"]
            ms = b["cpu_time"] * unit
        best = rows.setdefault(key, {}).get(m.group(1))
        if best is None or ms < best[0]:
            rows[key][m.group(1)] = (ms, gflops)

def cell(v, fmt):
    return "—" if v is None else fmt.format(v)

print("| shape (B = 8) | threads | attn ms | attn GFLOP/s | libtorch ms | libtorch GFLOP/s | libtorch / attn "
      "| same-size GEMM GFLOP/s | attn / GEMM |")
print("|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows):
    r = rows[key]
    a, t, g = r.get("attn"), r.get("torch"), r.get("gemm")
    print("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        names.get(key[0], key[0]), key[1], cell(a and a[0], "{:.2f}"), cell(a and a[1], "{:.1f}"),
        cell(t and t[0], "{:.2f}"), cell(t and t[1], "{:.1f}"),
        cell(a and t and t[0] / a[0], "{:.2f}x"), cell(g and g[1], "{:.1f}"),
        cell(a and g and a[1] / g[1], "{:.2f}")))
if cpu_clock:
    print("Times are the CPU times of the 1-thread runs (CLOCK=cpu), not wall-clock times.")
print()
EOF
fi
[ "$what" = conv ] && exit 0
# The environment of some machines sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) to keep old OpenBLAS
# builds on safe kernels; that forces e.g. Haswell's AVX2 kernels on an AVX-512 CPU and halves the
# ceiling (and libtorch, which calls the system BLAS). The benchmark runs, and only they, go without.
bench_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
echo "benchmarks run without OPENBLAS_CORETYPE (was '${OPENBLAS_CORETYPE:-unset}') and OPENBLAS_L2_SIZE (was '${OPENBLAS_L2_SIZE:-unset}')" >&2
if [ "${REUSE:-0}" != 1 ]; then
echo "running attn_bench_attention (filter '$filter', min_time $min_time) ..." >&2
# The ceilings (BM_openblas, BM_gemm1024) always run, whatever the filter.
"${bench_env[@]}" "$build/benchmarks/attn_bench_attention" --benchmark_filter="($filter)|BM_openblas|BM_gemm1024" \
  --benchmark_min_time="$min_time" \
  --benchmark_repetitions="$reps" --benchmark_out="$out/attn.json" --benchmark_out_format=json >&2
if [ -x "$build/benchmarks/attn_bench_torch" ]; then
  echo "running attn_bench_torch ..." >&2
  LD_LIBRARY_PATH="${TORCH_LD_LIBRARY_PATH:-${LD_LIBRARY_PATH:-}}" \
    "${bench_env[@]}" "$build/benchmarks/attn_bench_torch" --benchmark_filter="$filter" --benchmark_min_time="$min_time" \
    --benchmark_repetitions="$reps" --benchmark_out="$out/torch.json" --benchmark_out_format=json >&2
else
  echo "libtorch not found: no libtorch column" >&2
fi
fi

python3 - "$out" <<'EOF'
import json, os, re, sys

out = sys.argv[1]
cpu_clock = os.environ.get("CLOCK") == "cpu"
rows = {}  # (B, L, causal, threads) -> {path: (ms, gflops)}
ceil = {}  # threads -> {"openblas" | "gemm1024": gflops}
context = {}
for name in ("attn.json", "torch.json"):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        continue
    with open(path) as f:
        data = json.load(f)
    if name == "attn.json":
        context = data.get("context", {})
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
            continue
        unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        ms = b["real_time"] * unit
        gflops = b.get("GFLOPS", 0.0)
        threads = re.search(r"threads:(\d+)", b["name"])
        if cpu_clock:
            if threads is None or threads.group(1) != "1":
                continue
            ms, gflops = b["cpu_time"] * unit, gflops * b["real_time"] / b["cpu_time"]
        m = re.match(r"BM_(openblas|gemm1024)/threads:(\d+)", b["name"])
        if m:
            c = ceil.setdefault(int(m.group(2)), {})
            c[m.group(1)] = max(c.get(m.group(1), 0.0), gflops)
            continue
        m = re.match(r"BM_(\w+)/B:(\d+)/L:(\d+)/causal:(\d)/threads:(\d+)", b["name"])
        if not m:
            continue
        key = tuple(int(x) for x in m.groups()[1:])
        best = rows.setdefault(key, {}).get(m.group(1))
        if best is None or ms < best[0]:
            rows[key][m.group(1)] = (ms, gflops)

def cell(v, fmt):
    return "—" if v is None else fmt.format(v)

def get(r, p, i):
    return r[p][i] if p in r else None

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

def best(*vals):
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None

E = 512
if cpu_clock:
    print("Times are the CPU times of the 1-thread runs (CLOCK=cpu), not wall-clock times.")
print("attn SIMD level: {}".format(context.get("attn_simd") or os.environ.get("ATTN_SIMD") or "default (best supported)"))
print("OpenBLAS core: {} (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for the benchmarks)".format(
    context.get("openblas_core", "— (OpenBLAS not found: no ceiling column)")))
print()
print("| sgemm 1024³ | threads | OpenBLAS GFLOP/s | attn GEMM GFLOP/s | attn / OpenBLAS |")
print("|---|---|---|---|---|")
for t in sorted(ceil):
    o, g = ceil[t].get("openblas"), ceil[t].get("gemm1024")
    print("| | {} | {} | {} | {} |".format(t, cell(o, "{:.1f}"), cell(g, "{:.1f}"), cell(ratio(g, o), "{:.2f}")))
print()
print("Whole forward (GFLOP/s count the 4 projections and Q·Kᵀ, P·V over the full L x L; the causal floor is "
      "(8E² + 2LE) / (8E² + 4LE): dense projections, half the attention).")
print()
print("| B | L | causal | threads | attn ms | attn GFLOP/s | attn / OpenBLAS | plain Eigen ms | libtorch ms "
      "| libtorch / attn | same-flops GEMM GFLOP/s (attn, Eigen) | attn / GEMM | causal / full | causal floor |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows):
    B, L, c, t = key
    r = rows[key]
    if "attn" not in r and "torch" not in r:
        continue
    attn_ms = get(r, "attn", 0)
    full = rows.get((B, L, 0, t), {})
    ob = ceil.get(t, {}).get("openblas")
    g, ge = get(r, "gemm", 1), get(r, "gemm_eigen", 1)
    print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        B, L, "yes" if c else "no", t,
        cell(attn_ms, "{:.1f}"), cell(get(r, "attn", 1), "{:.1f}"), cell(ratio(get(r, "attn", 1), ob), "{:.2f}"),
        cell(get(r, "eigen", 0), "{:.1f}"), cell(get(r, "torch", 0), "{:.1f}"),
        cell(ratio(get(r, "torch", 0), attn_ms), "{:.2f}x"),
        "{}, {}".format(cell(g, "{:.1f}"), cell(ge, "{:.1f}")),
        cell(ratio(get(r, "attn", 1), best(g, ge)), "{:.2f}"),
        cell(ratio(attn_ms, get(full, "attn", 0)) if c else None, "{:.2f}"),
        cell((8 * E * E + 2 * L * E) / (8 * E * E + 4 * L * E) if c else None, "{:.2f}")))
print()
print("Phases (each alone, same shapes): the fused QKV projection, the attention core (causal rows: the core "
      "alone; its GFLOP/s count the full L x L), the output projection; 'sum' is their total, next to the whole "
      "forward.")
print()
print("| B | L | causal | threads | QKV ms | QKV / OpenBLAS | core ms | core GFLOP/s | core / OpenBLAS "
      "| out proj ms | out / OpenBLAS | sum ms | forward ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows):
    B, L, c, t = key
    r = rows[key]
    if "core" not in r:
        continue
    dense = rows.get((B, L, 0, t), {})
    ob = ceil.get(t, {}).get("openblas")
    q, o, k = get(dense, "qkv", 0), get(dense, "outproj", 0), get(r, "core", 0)
    parts = [q, k, o]
    print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        B, L, "yes" if c else "no", t, cell(q, "{:.2f}"), cell(ratio(get(dense, "qkv", 1), ob), "{:.2f}"),
        cell(k, "{:.2f}"), cell(get(r, "core", 1), "{:.1f}"), cell(ratio(get(r, "core", 1), ob), "{:.2f}"),
        cell(o, "{:.2f}"), cell(ratio(get(dense, "outproj", 1), ob), "{:.2f}"),
        cell(sum(parts) if None not in parts else None, "{:.2f}"), cell(get(r, "attn", 0), "{:.2f}")))
EOF
