#!/usr/bin/env bash
# Builds the deterministic test fixtures into $1 (default build/fixtures). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../build/fixtures}
mkdir -p "$out"
if [ ! -d "$here/node/node_modules/node-llama-cpp" ]; then
  echo "prepare.sh: $here/node/node_modules is missing; run packaging/install-deps.sh --test" >&2
  exit 1
fi
vocab=$out/ggml-vocab-llama-spm.gguf
[ -s "$vocab" ] || "$here/fixtures/extract_vocab.sh" "$here/node/node_modules" "$vocab"
gguf=$out/tiny-llama.gguf
[ -s "$gguf" ] || python3 "$here/fixtures/make_gguf.py" --vocab "$vocab" --out "$gguf"
python3 "$here/fixtures/gen_fixtures.py" --out "$out" --gguf "$gguf"
echo "fixtures ready in $out"
