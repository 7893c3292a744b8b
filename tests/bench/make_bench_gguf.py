#!/usr/bin/env python3
"""A few-hundred-MB llama GGUF for the model-load benchmark (Python 3 stdlib only).

    make_bench_gguf.py --vocab VOCAB.gguf --out MODEL.gguf [--n-embd 1536] [--n-layer 2]
                       [--n-ff 4096] [--n-head 12]

tests/fixtures/make_gguf.py builds a tiny model (fixed n_embd 64) and its weight generator is
pure Python (about a microsecond per value), too slow for 150 M values. This script reuses its
GGUF reader, model layout (build_model: same keys, tensors and token handling) and writer,
and only swaps the weight source for a fast deterministic one: f16 values with random
mantissas and small exponents (|w| < 2^-4, or < 2^-1 for output.weight), drawn from a PRNG
seeded by (seed, tensor name). Defaults give ~310 MB; the output is valid for llama.cpp
(node-llama-cpp loads it and generates tokens); its text is meaningless.
"""

import argparse
import hashlib
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_gguf as mg  # noqa: E402


class LazyValues:
    """Stands in for make_gguf's list of floats: remembers what to generate, and which rows
    build_model zeroes (slice assignment), until _pack turns it into bytes."""

    def __init__(self, seed, name, n, scale):
        self.seed, self.name, self.n, self.scale = seed, name, n, scale
        self.zeroed = []

    def __len__(self):
        return self.n

    def __setitem__(self, key, value):
        if not isinstance(key, slice):
            raise TypeError("only slice assignment is supported")
        self.zeroed.append((key.start, key.stop))


def _exp_table(max_exp):
    # f16 high byte: sign(1) exponent(5) mantissa-top(2); exponent in [max_exp-4, max_exp]
    table = bytearray(256)
    for b in range(256):
        e = max_exp - ((b >> 2) % 5)
        table[b] = (b & 0x83) | (e << 2)
    return bytes(table)


def fast_pack(values, ttype, _orig=mg._pack):
    if not isinstance(values, LazyValues):
        return _orig(values, ttype)
    if ttype != mg.GGML_F16:
        raise SystemExit("make_bench_gguf: only f16 weights are supported")
    v = values
    digest = hashlib.sha256(f"{v.seed}/{v.name}".encode()).digest()
    raw = random.Random(int.from_bytes(digest[:8], "little")).randbytes(2 * v.n)
    max_exp = 14 if v.scale >= 0.5 else 11  # 2^(14-15) = 0.5, 2^(11-15) = 1/16
    out = bytearray(raw)
    out[1::2] = raw[1::2].translate(_exp_table(max_exp))
    for start, stop in v.zeroed:
        out[2 * start:2 * stop] = bytes(2 * (stop - start))
    return bytes(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-embd", type=int, default=1536)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-ff", type=int, default=4096)
    ap.add_argument("--n-head", type=int, default=12)
    args = ap.parse_args(argv)
    mg._uniform = lambda seed, name, n, scale: LazyValues(seed, name, n, scale)
    mg._pack = fast_pack
    kvs, tensors = mg.build_model(args.vocab, args.seed, mg.GGML_F16, n_embd=args.n_embd,
                                  n_layer=args.n_layer, n_head=args.n_head,
                                  n_head_kv=args.n_head, n_ff=args.n_ff, n_ctx=512)
    mg.write_gguf(args.out, kvs, tensors)
    print(f"make_bench_gguf: {args.out}: {os.path.getsize(args.out) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
