#!/usr/bin/python3
"""Golden data for attn's parity tests, computed with PyTorch operators.

Run by a developer (never by CI) with Debian's python3-torch and python3-numpy:

    /usr/bin/python3 tools/make_golden.py              # every case, into tests/data/
    /usr/bin/python3 tools/make_golden.py --only sdpa  # the cases of one type
    /usr/bin/python3 tools/make_golden.py --list

The cases live in one module per type, tools/golden/<type>.py, over the shared helpers of
tools/golden/common.py (the safetensors writer, the case registry, reference building blocks made of
torch operators). This script imports every module it finds there. Each case is one function
decorated with @case(type, name): it draws its inputs and weights from a
seeded generator, builds the reference result from torch operators (never from attn), and returns the
tensors to store plus metadata. Every case is written once per dtype as
tests/data/<type>/<name>_<f32|f64>.safetensors. The inputs and weights of the f32 file are rounded to
float32 first and the reference is computed in float64 on the rounded values, so the stored expected
values are the exact answer to the stored inputs (up to one final rounding); the C++ test's tolerance
only has to cover its own arithmetic.

Metadata (safetensors "__metadata__", all strings): type, case, dtype, rtol, atol, generator, torch,
config (a JSON object: the attn layer's parameters, or the function's options) and, per case, a few
more keys documented in the case. Tensor names: "input/..." for inputs, "weights/..." for weights in
attn's names (Keras layout), a torch module prefix for PyTorch state_dict tensors, "expected/..." for
the reference results. Boolean masks are stored as 0/1 in the file's float dtype (1 = attend).

Adding a layer type: write tools/golden/<type>.py (`from common import Case, case, ...`) with one
function per case that returns Case(tensors, config, ...), decorated with @case("<type>", "<case>");
rerun with --only <type>, commit the files under tests/data/<type>/, and read them in the golden
TEST_CASE of tests/layers/test_<type>.cpp (tests/support/golden.hpp). The safetensors writer in
common.py is written from the format description (8-byte little-endian header length, JSON header, raw
little-endian data).
"""

import argparse
import importlib
import os
import pathlib
import sys

# float64 products in torch go through OpenBLAS, whose kernel (chosen from the CPU, or from this
# variable when the environment sets it) changes the last bit of some results; one fixed kernel makes
# the files reproducible byte for byte on any x86-64 machine with AVX. Set before torch is imported.
os.environ["OPENBLAS_CORETYPE"] = "Sandybridge"

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))

import common  # noqa: E402  (tools/golden/common.py)
from common import *  # noqa: E402,F401,F403  the helpers stay reachable as make_golden.<name>

def load_modules():
    """Imports every tools/golden/<type>.py (each registers its cases in common.CASES)."""
    for path in sorted(GOLDEN.glob("*.py")):
        if path.stem != "common" and not path.stem.startswith("_"):
            importlib.import_module(path.stem)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="generate only this type (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--out", type=pathlib.Path, default=common.DATA, help="output directory (default tests/data)")
    args = parser.parse_args(argv)
    load_modules()
    known = {type_name for type_name, _, _, _ in common.CASES}
    for t in args.only or []:
        if t not in known:
            sys.exit(f"--only {t}: no such type; the generator knows {', '.join(sorted(known))}")
    common.torch.set_num_threads(1)
    total = 0
    for type_name, name, dtypes, fn in common.CASES:
        if args.only and type_name not in args.only:
            continue
        for dtype_key in dtypes:
            if args.list:
                print(f"{type_name}/{name}_{dtype_key}")
                continue
            path = common.generate(type_name, name, dtype_key, fn, args.out)
            total += path.stat().st_size
            print(f"{path.relative_to(args.out)}  {path.stat().st_size} bytes")
    if not args.list:
        print(f"{total} bytes in all")
        if total > 10 * 1024 * 1024:
            sys.exit("golden data exceeds 10 MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
