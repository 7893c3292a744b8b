#!/usr/bin/env python3
"""Fixtures for the fleet tests, in the hub simulator's layout (tests/hubsim/README.md).

    fleet_fixtures.py --out DIR --vocab VOCAB.gguf [--size ci|full] [--gated-from FIXTURES]

Writes DIR/repos/modelfs-fleet/model-GGUF/ (one commit on main) with:
  model.gguf     a llama GGUF from tests/bench/make_bench_gguf.py that node-llama-cpp loads:
                 ~72 MB for `ci` (1 layer, n_embd 512), ~310 MB for `full` (its defaults)
  failover.bin   96 MiB of incompressible bytes: read while the site cache is killed
  client.bin     24 MiB: downloaded by @huggingface/hub through the site cache
  probe-N.bin    2 MiB each (N = 0..11): small cold reads, one per attempt
and hard-links (or copies) the gated repo of the standard fixtures next to it
(DIR/repos/modelfs-test/gated-model). Deterministic: the same arguments give the same bytes.
The standard fixtures are not reused as they are because the simulator serves one folder and
holds nothing of the size a fleet test needs; the copy keeps the gated repo's ids.
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import gen_bench_fixtures as gbf  # noqa: E402
import make_bench_gguf as mbg  # noqa: E402

ORG = "modelfs-fleet"
REPO = "model-GGUF"
MIB = 1 << 20
PROBES = 12
GGUF_ARGS = {"ci": ["--n-embd", "512", "--n-layer", "1", "--n-ff", "1024", "--n-head", "8"],
             "full": []}


def build(out, vocab, size="ci", gated_from=None):
    """Writes the fixtures (again, if the stamp differs) and returns the fleet repo's
    {path: manifest entry (+ "local")}."""
    out = os.path.abspath(out)
    want = {"version": 1, "size": size, "gated_from": bool(gated_from)}
    stamp = os.path.join(out, "stamp.json")
    repo_dir = os.path.join(out, "repos", ORG, REPO)
    try:
        with open(stamp) as f:
            if json.load(f) == want:
                return _entries(repo_dir)
    except (OSError, ValueError):
        pass
    if os.path.exists(stamp):
        os.unlink(stamp)
    os.makedirs(out, exist_ok=True)
    gguf = os.path.join(out, "model.gguf.src")
    mbg.main(["--vocab", vocab, "--out", gguf, *GGUF_ARGS[size]])
    files = {".gitattributes": gbf.small(gbf.gf.GITATTRIBUTES.encode()),
             "README.md": gbf.small(b"# model-GGUF\n\nThe fleet tests' model (modelfs).\n"),
             "model.gguf": gbf.copied(gguf),
             "failover.bin": gbf.big(96 * MIB, 501),
             "client.bin": gbf.big(24 * MIB, 502)}
    for i in range(PROBES):
        files[f"probe-{i}.bin"] = gbf.big(2 * MIB, 600 + i)
    gbf.make_repo(os.path.join(out, "repos"), REPO, 0, "Add the fleet model", files, org=ORG)
    os.unlink(gguf)
    if gated_from:
        src = os.path.join(gated_from, "repos", "modelfs-test", "gated-model")
        dst = os.path.join(out, "repos", "modelfs-test", "gated-model")
        shutil.rmtree(dst, ignore_errors=True)
        try:
            shutil.copytree(src, dst, copy_function=os.link)
        except OSError:  # another file system
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
    gbf.gf.atomic_write(stamp, gbf.gf.jbytes(want))
    return _entries(repo_dir)


def _entries(repo_dir):
    with open(os.path.join(repo_dir, "repo.json")) as f:
        repo = json.load(f)
    commit = repo["branches"]["main"]
    return {e["path"]: dict(e, commit=commit, local=os.path.join(repo_dir, commit, e["path"]))
            for e in repo["commits"][commit]["files"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--size", choices=sorted(GGUF_ARGS), default="ci")
    ap.add_argument("--gated-from", help="standard fixtures folder (tests/prepare.sh)")
    args = ap.parse_args(argv)
    entries = build(args.out, args.vocab, args.size, args.gated_from)
    print(f"fleet_fixtures: {args.out}: model.gguf {entries['model.gguf']['size'] / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
