#!/usr/bin/env bash
# Builds modelfs and the libFuzzer targets with clang and runs each target for a bounded time over
# its seed corpus.
#   tests/fuzz/run.sh [BUILD_DIR] [SECONDS]      defaults: build-fuzz, 20 (seconds per target)
# Installs nothing: clang and its libFuzzer runtime come from `packaging/install-deps.sh --test`.
# A crash or a violated property fails the run; the input is kept in
# BUILD_DIR/tests/fuzz/artifacts/<target>/ (add it to tests/fuzz/corpus/<target>/ once fixed).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
seconds=${2:-20}
case $seconds in
  '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

cxx=${FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found; install clang (packaging/install-deps.sh --test)" >&2
  exit 1
fi
# Checked here too so a missing runtime is one clear line, not a failed CMake probe.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
  'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$probe/p.cc"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" 2>"$probe/err"; then
  cat "$probe/err" >&2
  echo "fuzz: $cxx cannot link -fsanitize=fuzzer: clang with its libFuzzer runtime is needed" \
    "(Debian 12: libclang-rt-14-dev, from packaging/install-deps.sh --test)" >&2
  exit 1
fi

start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMODELFS_FUZZ=ON -DMODELFS_TESTS=OFF -DMODELFS_FUZZ_SECONDS="$seconds" >/dev/null
# modelfs too: the whole product compiled by clang, whose -Wthread-safety checks the locking
# annotations (errors, like every warning in this build).
cmake --build "$build" --target fuzz modelfs
if ! ctest --test-dir "$build" --output-on-failure -j2 -R '^fuzz_'; then
  echo "fuzz: failing inputs are in $build/tests/fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz: ok in $(( $(date +%s) - start )) s"
