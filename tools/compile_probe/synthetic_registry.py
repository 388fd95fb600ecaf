#!/usr/bin/env python3
"""Copies the source tree to a throwaway directory and registers N layer types there by repeating
today's types under new names, to measure how compile time grows with the registry.

    python3 tools/compile_probe/synthetic_registry.py 50 /tmp/attn-syn50

Copy k of a layer header goes to include/attn/layers/<type>_<k>.hpp with its namespace renamed to
attn::syn<k> and its type string to "<type>_<k>"; registry.hpp includes it and lists it (first, in the
registry's own line form, so cmake/AttnLayers.cmake generates attn::layers for all N). The copy's test
suite would reject the extra types (no test files): compile single TUs or targets in it, e.g.
tools/compile_times.sh's commands, g++ directly, or `cmake --build <dir>/b --target attn_layers`.
"""
import pathlib
import re
import shutil
import sys

src = pathlib.Path(__file__).resolve().parent.parent.parent
n, dst = int(sys.argv[1]), pathlib.Path(sys.argv[2])
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "build*", "__pycache__"))
reg_path = dst / "include/attn/registry.hpp"
reg = reg_path.read_text()
entries = re.findall(r"^\s+(\w+),?\s+// (\w+)\n", reg, re.M)  # (class template, type string)
assert entries, "no Registry lines found"
includes, lines = [], []
k, total = 1, len(entries)
while total < n:
    for cls, type_name in entries:
        if total >= n:
            break
        text = (dst / f"include/attn/layers/{type_name}.hpp").read_text()
        # (the config's JSON functions are found by ADL, so the new namespace re-declares them)
        text = text.replace("namespace attn {", f"namespace attn::syn{k} {{\nusing attn::from_json;\nusing attn::to_json;", 1)
        text, count = re.subn(rf'type_name = "{type_name}"', f'type_name = "{type_name}_{k}"', text)
        assert count == 1, type_name
        out = dst / f"include/attn/layers/{type_name}_{k}.hpp"
        out.write_text(text)
        includes.append(f'#include "attn/layers/{type_name}_{k}.hpp"')
        lines.append(f"    syn{k}::{cls},  // {type_name}_{k}")
        total += 1
    k += 1
# the synthetic lines (each ending in a comma) go first in the list
head = "using Registry = LayerTypes<\n"
assert head in reg
reg = reg.replace(head, head + "\n".join(lines) + "\n", 1)
reg = reg.replace('#include "attn/layers/spatial.hpp"\n', '#include "attn/layers/spatial.hpp"\n' + "\n".join(includes) + "\n")
reg_path.write_text(reg)
print(f"{dst}: {total} registered types")
