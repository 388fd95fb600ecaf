#!/usr/bin/env python3
"""Projects the time of `.ci/run` at N registered layer types from one finished run.

    python3 tools/ci_projection.py [--types 50] [--cores 2] <clone>   (after `bash .ci/run` in <clone>)

Reads what the run left: the ninja logs of build/ (release suite) and build-asan/ (sanitizer suite),
and ctest's per-entry times (Testing/Temporary/CTestCostData.txt of both). A layer type's own cost is
what carries its type string: its test file (a share of the translation unit that compiles it with
others), its attn::layers instance, its header check, and the ctest
entries of its test cases (named "<type>: ..."). The rest (core, ops, factory, examples, registry-wide
tests) is the base, except the registry-wide work (the contract and limit tests, the factory's translation units,
the header-only README program), which grows with the number of types. The projection adds the per-type
mean of the type-named work for each missing type and scales the registry-wide work linearly. Times are job durations; the wall-time estimate divides CPU-bound
work by the cores. Run on an idle machine.
"""
import argparse
import pathlib
import re
import statistics


def ninja_jobs(build):
    log = build / ".ninja_log"
    if not log.exists():
        return {}
    jobs = {}
    for line in log.read_text().splitlines()[1:]:
        start, end, _, target, _ = line.split("\t")
        jobs[target] = (int(end) - int(start)) / 1000.0  # the last build of each target wins
    return jobs


def ctest_times(build):
    cost = build / "Testing/Temporary/CTestCostData.txt"
    out = {}
    if not cost.exists():
        return out
    for line in cost.read_text().splitlines():
        if line.startswith("---"):
            break
        m = re.match(r"^(.*) (\d+) ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(3))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clone", type=pathlib.Path)
    ap.add_argument("--types", type=int, default=50)
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    reg = (a.clone / "include/attn/registry.hpp").read_text()
    types = re.findall(r"^\s+[\w:]+,?\s*// (\w+)$", reg, re.M)
    n = len(types)
    total_cpu = 0.0
    per_type = {t: 0.0 for t in types}
    registry_wide = 0.0  # work that covers every type at once: grows in proportion, assumed linearly
    for build in ("build", "build-asan"):
        jobs = ninja_jobs(a.clone / build)
        tests = ctest_times(a.clone / build)
        total_cpu += sum(jobs.values()) + sum(tests.values())
        # A translation unit of several test files (tests/CMakeLists.txt, ATTN_TESTS_UNITY) counts for
        # each of its files in equal parts.
        members = {}
        units = a.clone / build / "tests/attn_tests_units.txt"
        if units.exists():
            for line in units.read_text().splitlines():
                if " " in line:
                    src, unit = line.split(" ", 1)
                    members.setdefault(pathlib.Path(unit).name, []).append(pathlib.Path(src).name)
        for k, d in list(jobs.items()):
            m = re.search(r"/unity/(attn_tests_\d+\.cpp)\.o$", k)
            if m and m.group(1) in members:
                del jobs[k]
                for src in members[m.group(1)]:
                    jobs[f"{k}/{src}.o"] = d / len(members[m.group(1)])
        for t in types:
            pats = [f"/test_{t}.cpp.o", f"attn_layers/{t}.cpp.o", f"attn_layers_{t}_hpp.cpp.o"]
            per_type[t] += sum(d for k, d in jobs.items() if any(k.endswith(p) for p in pats))
            per_type[t] += sum(d for k, d in tests.items() if k.startswith(f"{t}: "))
        registry_wide += sum(d for k, d in jobs.items()
                             if re.search(r"(test_contract\.cpp|test_limits\.cpp|attn_layers/factory_\w+\.cpp|readme_quickstart\.cpp)\.o$", k))
        registry_wide += sum(d for k, d in tests.items() if k.startswith("contract: "))
    mean = statistics.mean(per_type.values())
    typed = sum(per_type.values())
    wall_now = total_cpu / a.cores
    growth = (a.types - n) * mean + registry_wide * (a.types / n - 1)
    wall_proj = (total_cpu + growth) / a.cores
    print(f"registered types: {n}")
    print(f"job time, both builds (compile + ctest entries): {total_cpu:.0f} s; per-type work {typed:.0f} s "
          f"({100 * typed / total_cpu:.0f}%), mean {mean:.1f} s per type (max {max(per_type.values()):.1f} s, "
          f"{max(per_type, key=per_type.get)})")
    print(f"estimated wall on {a.cores} cores: {wall_now / 60:.1f} min now; {wall_proj / 60:.1f} min at {a.types} types "
          f"(+{growth / a.cores / 60:.1f} min: {a.types - n} types' own work, and the registry-wide work "
          f"({registry_wide:.0f} s now) scaled by {a.types}/{n}); compare with the run's own 'ci done in' line, which adds "
          f"configure, package checks and serial steps")
    for t in sorted(per_type, key=per_type.get, reverse=True)[:8]:
        print(f"  {per_type[t]:6.1f} s  {t}")


if __name__ == "__main__":
    main()
