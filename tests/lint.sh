#!/usr/bin/env bash
# Style and static checks over the C++ sources (run by .ci/run):
#   tests/lint.sh format          every C++ file must be as .clang-format formats it
#   tests/lint.sh fix             formats them in place
#   tests/lint.sh tidy BUILD_DIR  clang-tidy (.clang-tidy) over fs/ fetch/ index/ cli/, using
#                                 BUILD_DIR/compile_commands.json (a clang build, e.g. build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-format}
sources() { git ls-files -- '*.cc' '*.h' | grep -v '^tests/node/'; }
case $mode in
  format)
    if ! sources | xargs clang-format --dry-run --Werror 2>/tmp/lint-format.$$; then
      grep -o '^[^:]*' /tmp/lint-format.$$ | sort -u | sed 's/^/  not formatted: /' >&2
      rm -f /tmp/lint-format.$$
      echo "lint: run tests/lint.sh fix (clang-format $(clang-format --version | grep -o '[0-9.]*' | head -1))" >&2
      exit 1
    fi
    rm -f /tmp/lint-format.$$
    echo "lint: format ok ($(sources | wc -l) files)"
    ;;
  fix)
    sources | xargs clang-format -i
    ;;
  tidy)
    build=${2:?usage: tests/lint.sh tidy BUILD_DIR}
    [ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json" >&2; exit 1; }
    files=$(git ls-files -- 'fs/*.cc' 'fetch/*.cc' 'index/*.cc' 'cli/*.cc')
    start=$(date +%s)
    # run-clang-tidy exits non-zero when any file has a finding (WarningsAsErrors in .clang-tidy).
    run-clang-tidy -quiet -j "$(nproc)" -p "$build" $files >/tmp/lint-tidy.$$ 2>&1 || {
      grep -E 'error:|warning:' /tmp/lint-tidy.$$ | sort -u >&2
      rm -f /tmp/lint-tidy.$$
      echo "lint: clang-tidy found the problems above" >&2
      exit 1
    }
    rm -f /tmp/lint-tidy.$$
    echo "lint: tidy ok ($(echo "$files" | wc -w) files, $(( $(date +%s) - start )) s)"
    ;;
  *) echo "usage: tests/lint.sh format|fix|tidy BUILD_DIR" >&2; exit 2 ;;
esac
