#!/usr/bin/env bash
# The fleet measurement (not in CI): N = 4 and 8 modelfs nodes behind one nginx site cache
# (packaging/site-cache/), the Hub simulator in the WAN profile behind nginx, a ~310 MB GGUF.
#
#   sudo tests/fleet/run.sh [--modelfs BIN] [--work DIR] [--nodes 4,8] [--md FILE]
#
# --modelfs: the binary to measure (default build/cli/modelfs); --work: where the fixtures are
# made once (default /var/tmp/modelfs-fleet, or $MODELFS_FLEET_WORK); --md: the results
# (default tests/fleet/results.md). Needs nginx + libnginx-mod-http-lua and tests/node
# (packaging/install-deps.sh --test). Only 127.0.0.1 is contacted. What it measures:
# tests/fleet/fleet.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/build/cli/modelfs
work=${MODELFS_FLEET_WORK:-/var/tmp/modelfs-fleet}
nodes=4,8
md=$here/results.md
cmd="tests/fleet/run.sh $*"
while [ $# -gt 0 ]; do
  case $1 in
    --modelfs) bin=$2 ;;
    --work) work=$2 ;;
    --nodes) nodes=$2 ;;
    --md) md=$2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (FUSE mounts, nginx); use sudo" >&2; exit 1; }
[ -x "$bin" ] || { echo "run.sh: no modelfs binary at $bin (--modelfs BIN)" >&2; exit 1; }
command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
  { echo "run.sh: needs nginx and libnginx-mod-http-lua (packaging/install-deps.sh --test)" >&2; exit 1; }
nm=${MODELFS_NODE_MODULES:-$root/tests/node/node_modules}
[ -d "$nm/node-llama-cpp" ] ||
  { echo "run.sh: no node-llama-cpp in $nm (packaging/install-deps.sh --test)" >&2; exit 1; }
mkdir -p "$work"

vocab=$work/ggml-vocab-llama-spm.gguf
[ -s "$vocab" ] || timeout 300 "$root/tests/fixtures/extract_vocab.sh" "$nm" "$vocab"
timeout 900 python3 "$here/fleet_fixtures.py" --out "$work/fixtures" --vocab "$vocab" --size full

MODELFS_BIN=$(realpath "$bin") MODELFS_SOURCE_DIR=$root MODELFS_NODE_MODULES=$nm \
  timeout 3600 python3 "$here/fleet.py" --fixtures "$work/fixtures" --nodes "$nodes" \
  --md "$md" --json "$work/results.json" --command "$cmd"
