#!/usr/bin/env bash
# Demo with no internet: mounts the hub simulator's fixture repos through modelfs and runs a
# real model (node-llama-cpp) from the mount.   usage: tests/demo.sh [BUILD_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
bin=$build/cli/modelfs
work=$(mktemp -d /tmp/modelfs-demo.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
sim_pid=
cleanup() {
  fusermount3 -u "$mnt" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$src/tests/prepare.sh" "$build/fixtures" >/dev/null
python3 "$src/tests/hubsim/hubsim.py" --fixtures "$build/fixtures" --port 0 --cdn-port 0 \
  --ready-file "$work/ready.json" >"$work/hubsim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do [ -s "$work/ready.json" ] && break; sleep 0.1; done
hub=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hub"])' "$work/ready.json")
echo "hub simulator on $hub"

set -x
"$bin" mount "$mnt" --cache-dir "$work/cache" --cache-size 1G --endpoint "$hub"
ls -l "$mnt/modelfs-test/tiny-llama-GGUF/"
ls "$mnt/modelfs-test/versioned@v1.0/"
ls "$mnt/" "$mnt/modelfs-test/"
node "$src/tests/e2e/llama_generate.mjs" "$mnt/modelfs-test/tiny-llama-GGUF/model.gguf"
getfattr -d "$mnt/modelfs-test/tiny-llama-GGUF/model.gguf"
sha256sum "$mnt/modelfs-test/tiny-llama-GGUF/model.gguf" \
  "$build"/fixtures/repos/modelfs-test/tiny-llama-GGUF/*/model.gguf
set +x
curl -s "$hub/_sim/counters" | python3 -c '
import json, sys
c = json.load(sys.stdin)
mib = c["bytes_served"] / 2**20
print("upstream: %d API calls, %d tree pages, %d ranged CDN requests, %.1f MiB served"
      % (c["api"], c["tree"], c["cdn"], mib))'
"$bin" umount "$mnt"
echo "demo ok"
