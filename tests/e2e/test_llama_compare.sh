#!/usr/bin/env bash
# Greedy-generate with node-llama-cpp from two copies of a GGUF model (e.g. the
# local fixture and the same file seen through the modelfs mount) and fail
# unless both produce the same, non-empty list of token ids.
#
# usage: test_llama_compare.sh MODEL_A MODEL_B
# env:   LLAMA_COMPARE_TIMEOUT (seconds per run, default 180); NODE (default node)
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 MODEL_A MODEL_B" >&2
    exit 2
fi
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
gen=$here/llama_generate.mjs
node=${NODE:-node}
limit=${LLAMA_COMPARE_TIMEOUT:-180}

run() {  # run MODEL LABEL -> prints the JSON line on stdout
    local out rc=0
    out=$(timeout -k 10 "$limit" "$node" "$gen" "$1") || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "FAIL: llama_generate.mjs $2 ($1) exited $rc" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

tokens_of() {  # JSON line -> "id,id,..." (empty if no/invalid tokens)
    python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
    t = d["tokens"]
    assert isinstance(t, list) and all(isinstance(x, int) for x in t)
    print(",".join(map(str, t)))
except Exception as e:
    print("bad output: %r" % (e,), file=sys.stderr)
' "$1"
}

out_a=$(run "$1" A)
echo "A: $1"
echo "   $out_a"
out_b=$(run "$2" B)
echo "B: $2"
echo "   $out_b"

tok_a=$(tokens_of "$out_a")
tok_b=$(tokens_of "$out_b")
if [[ -z $tok_a || -z $tok_b ]]; then
    echo "FAIL: empty token list (A=[$tok_a] B=[$tok_b])" >&2
    exit 1
fi
if [[ $tok_a != "$tok_b" ]]; then
    echo "FAIL: token ids differ: A=[$tok_a] B=[$tok_b]" >&2
    exit 1
fi
echo "OK: identical token ids [$tok_a]"
