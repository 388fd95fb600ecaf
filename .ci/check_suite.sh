#!/usr/bin/env bash
# Cheap checks that the test command runs the whole suite, whatever the build dir held before.
#   bash .ci/check_suite.sh configured   after: the quick-start's configure, a developer's subset, the
#                                        test command's configure (all on build/, nothing built yet)
#   bash .ci/check_suite.sh built        after the test command built and ran build/
# Fails (exit 1, with the reason) when a test target is missing, the suite would be a subset, a
# ctest entry of the suite is absent, or test discovery lost cases.
set -euo pipefail
cd "$(dirname "$0")/.."
bld=build
fail() { echo "check_suite: $*" >&2; exit 1; }
listing=$(ctest --test-dir "$bld" -N)
total=$(sed -n 's/^Total Tests: \([0-9]*\)$/\1/p' <<<"$listing")
[ -n "$total" ] && [ "$total" -gt 0 ] || fail "ctest -N lists no test in $bld"
for t in attn_tests_simd_generic layers_registered_and_tested attn_tests_nothing_hidden readme_quickstart \
         example_quickstart example_weights consumer_add_subdirectory; do
  grep -Eq "Test +#[0-9]+: $t\$" <<<"$listing" || fail "ctest -N does not list '$t'"
done
case ${1:-} in
  configured)
    targets=$(ninja -C "$bld" -t targets all)
    for target in attn_tests attn_layers attn_cli readme_quickstart quickstart weights attn_header_check; do
      grep -q "^$target:" <<<"$targets" || fail "no build target '$target'"
    done
    # the whole suite, not a subset left in the cache: every test file is compiled into attn_tests
    only=$(sed -n 's/^ATTN_TEST_ONLY:[A-Z]*=//p' "$bld/CMakeCache.txt")
    [ -z "$only" ] || fail "ATTN_TEST_ONLY is '$only' after the test command's configure"
    # the suite's programs link the precompiled layer types, whatever the quick-start's configure cached
    pre=$(sed -n 's/^ATTN_PRECOMPILED_LAYERS:[A-Z]*=//p' "$bld/CMakeCache.txt")
    [ "$pre" = ON ] || fail "ATTN_PRECOMPILED_LAYERS is '$pre' after the test command's configure"
    # (tests/CMakeLists.txt writes which translation unit compiles each test file: the file itself, or a
    # generated unit of several that includes it)
    units="$bld/tests/attn_tests_units.txt"
    [ -f "$units" ] || fail "$units is missing"
    for f in tests/{core,ops,io,layers}/test_*.cpp; do
      unit=$(awk -v f="$PWD/$f" '$1 == f {print $2}' "$units")
      [ -n "$unit" ] || fail "$f is not in $units"
      case $unit in
        "$PWD/$f") object=${f#tests/} ;;
        *) grep -qxF "#include \"$PWD/$f\"" "$unit" || fail "$unit does not include $f"
           object=unity/$(basename "$unit") ;;
      esac
      grep -q "attn_tests.dir/$object.o:" "$bld/build.ninja" || fail "$f is not compiled into attn_tests"
    done
    # Catch2's discovery is hooked (it lists a placeholder until the binary exists)
    grep -Eq "Test +#[0-9]+: attn_tests_NOT_BUILT" <<<"$listing" || fail "attn_tests' cases are not discovered by ctest"
    echo "check_suite: configured build/ would build and run the whole suite ($total ctest entries before discovery)"
    ;;
  built)
    ! grep -q NOT_BUILT <<<"$listing" || fail "attn_tests was not built"
    # (Catch2 2 exits with the number of names it listed)
    names=$({ "$bld/tests/attn_tests" --list-test-names-only || true; } | sed '/^$/d')
    cases=$(grep -c . <<<"$names")
    # the ctest entries that are test cases of attn_tests (others: whole-binary runs, scripts, examples)
    discovered=$(sed -n 's/^ *Test *#[0-9]*: //p' <<<"$listing" | grep -cFx -f <(printf '%s\n' "$names") || true)
    [ "$cases" -gt 0 ] && [ "$discovered" -eq "$cases" ] ||
      fail "attn_tests has $cases test cases but ctest discovered $discovered of them"
    echo "check_suite: ctest runs all $cases test cases of attn_tests ($total entries)"
    ;;
  *) echo "usage: bash .ci/check_suite.sh configured|built" >&2; exit 2 ;;
esac
