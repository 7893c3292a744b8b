#!/usr/bin/env python3
"""Benchmark fixtures for the hub simulator (Python 3 stdlib only).

    gen_bench_fixtures.py --out DIR --big-size BYTES --part-size BYTES --gguf MODEL.gguf
                          [--shard-size BYTES] [--no-100k]

Writes the same layout as tests/fixtures/gen_fixtures.py (DIR/repos/<org>/<name>/repo.json,
DIR/repos/<org>/<name>/<commit>/<path>, DIR/manifest.json; schema in tests/hubsim/README.md)
for the org `modelfs-bench`:

  big-file     weights.bin (--big-size, LFS)
  parallel     part-0.bin .. part-3.bin (--part-size each, LFS, all different)
  gguf         model.gguf (copied from --gguf, LFS)
  many-files   1,000 small plain files in nested folders (d_X/s_Y/f_Z.txt / .json)
  sharded      model-0000N-of-00004.safetensors (4 x --shard-size, LFS, valid safetensors:
               8-byte little-endian header length, JSON header, BF16 tensors) plus
               model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}) and
               config.json, like a transformers checkpoint
  many-files-100k  100,000 tiny plain files in 1,000 folders (g_XX/s_Y/f_ZZ.txt, 100 per
               folder); only 97 distinct contents (hard-linked), to keep generation short

Large files are streamed (never held in memory): a 64 MiB block drawn once from a seeded PRNG
is repeated, and every 64 KiB of the output is stamped with (file seed, offset), so no two
64 KiB pieces of any file are equal and nothing compresses. sha256 and the git blob id are
computed while writing. Deterministic: the same arguments give the same bytes and ids.
The git helpers (ids, trees, commits) come from tests/fixtures/gen_fixtures.py.

DIR/stamp.json records the arguments; a rerun with the same arguments and intact files does
nothing.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import gen_fixtures as gf  # noqa: E402

ORG = "modelfs-bench"
MIB = 1024 * 1024
BLOCK = 64 * MIB
STAMP_EVERY = 64 * 1024

_block_cache = {}


def _base_block():
    if "b" not in _block_cache:
        _block_cache["b"] = random.Random(20240101).randbytes(BLOCK)
    return _block_cache["b"]


def write_stream(path, size, seed, prefix=b""):
    """Writes `size` bytes: `prefix`, then deterministic incompressible bytes (stamped with
    offsets counted from the end of the prefix). Returns (sha256 hex, git blob sha1)."""
    base = _base_block()
    sha = hashlib.sha256(prefix)
    git = hashlib.sha1(b"blob %d\0" % size + prefix)
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(prefix)
        off, total = 0, size - len(prefix)
        while off < total:
            n = min(BLOCK, total - off)
            buf = bytearray(base[:n])
            # rotate the base block per block index so blocks differ even before stamping
            rot = (off // BLOCK * 7919 * 4096 + seed * 104729) % BLOCK
            if rot:
                buf[:] = (base[rot:] + base[:rot])[:n]
            for p in range(0, n, STAMP_EVERY):
                buf[p:p + 16] = struct.pack("<QQ", seed, off + p)
            sha.update(buf)
            git.update(buf)
            f.write(buf)
            off += n
    os.replace(tmp, path)
    return sha.hexdigest(), git.hexdigest()


def file_hashes(path):
    size = os.path.getsize(path)
    sha = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while True:
            b = f.read(16 * MIB)
            if not b:
                break
            sha.update(b)
            git.update(b)
    return sha.hexdigest(), git.hexdigest()


def entry_for(path, size, sha256_hex, git_sha1):
    lfs = gf.is_lfs(path, size)
    e = {"path": path, "size": size, "sha256": sha256_hex, "git_sha1": git_sha1, "lfs": lfs}
    if lfs:
        pointer = gf.lfs_pointer(sha256_hex, size)
        e["oid"] = gf.git_hash("blob", pointer)
        e["pointer_size"] = len(pointer)
        e["etag"] = sha256_hex
    else:
        e["oid"] = git_sha1
        e["etag"] = git_sha1
    return e


def make_repo(repos_root, name, day, title, producers, org=ORG):
    """producers: {path: callable(dest) -> (sha256, git_sha1)}. One commit on main."""
    repo_dir = os.path.join(repos_root, org, name)
    if os.path.isdir(repo_dir):
        shutil.rmtree(repo_dir)
    work = os.path.join(repo_dir, "_work")
    entries, nested = [], {}
    for path in sorted(producers):
        dest = os.path.join(work, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        sha256_hex, git_sha1 = producers[path](dest)
        e = entry_for(path, os.path.getsize(dest), sha256_hex, git_sha1)
        entries.append(e)
        gf.add_to_tree(nested, path, e["oid"])
    dirs = {}
    tree = gf.build_tree(nested, dirs)
    date = gf.EPOCH + 86400 * day
    sha = gf.commit_object(tree, None, title, date)
    os.replace(work, os.path.join(repo_dir, sha))
    repo = {
        "id": f"{org}/{name}", "private": False, "gated": False, "default_branch": "main",
        "branches": {"main": sha}, "tags": {}, "refs": {}, "commit_order": [sha],
        "commits": {sha: {"parent": None, "title": title, "date": gf.iso(date), "tree": tree,
                          "dirs": dict(sorted(dirs.items())), "files": entries}},
    }
    gf.atomic_write(os.path.join(repo_dir, "repo.json"), gf.jbytes(repo))
    return repo


def small(data):
    def produce(dest):
        with open(dest, "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest(), gf.git_hash("blob", data)
    return produce


def big(size, seed):
    return lambda dest: write_stream(dest, size, seed)


def copied(src):
    def produce(dest):
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        return file_hashes(dest)
    return produce


def base(readme):
    return {".gitattributes": small(gf.GITATTRIBUTES.encode()), "README.md": small(readme.encode())}


def many_files():
    files = base("# many-files\n\n1,000 small files in nested folders (modelfs benchmark).\n")
    n = 0
    for d in range(10):
        for s in range(10):
            for k in range(10):
                seed = 9000 + n
                if k == 9:
                    data = gf.jbytes({"d": d, "s": s, "index": n,
                                      "values": list(random.Random(seed).randbytes(16))})
                    files[f"d_{d}/s_{s}/f_{k}.json"] = small(data)
                else:
                    files[f"d_{d}/s_{s}/f_{k}.txt"] = small(gf.rtext(seed, 2 + n % 29))
                n += 1
    return files


def sharded(shard_size, n_shards=4):
    """A transformers-style sharded checkpoint: n valid safetensors files of exactly
    `shard_size` bytes and model.safetensors.index.json. Tensors are BF16 [rows, 2048]
    (4 KiB per row), named like a llama's layers; the last tensor of a shard fills it."""
    cols, row = 2048, 4096
    names = iter(f"model.layers.{layer}.{t}.weight" for layer in range(10000)
                 for t in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
    rows_cycle = [2048, 512, 512, 2048, 5632, 5632, 5632]  # 8 MiB, 2 MiB, ..., 22 MiB
    header_len = 8 * 1024 - 8   # JSON padded with spaces; data starts at 8 KiB (page aligned)
    files, weight_map, total = {}, {}, 0
    k = 0
    for i in range(n_shards):
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        room = (shard_size - 8 - header_len) // row
        hdr, off = {"__metadata__": {"format": "pt"}}, 0
        while room > 0:
            rows = min(rows_cycle[k % len(rows_cycle)], room)
            name = next(names)
            k += 1
            hdr[name] = {"dtype": "BF16", "shape": [rows, cols],
                         "data_offsets": [off, off + rows * row]}
            weight_map[name] = fname
            off += rows * row
            room -= rows
        total += off
        hj = json.dumps(hdr, separators=(",", ":")).encode()
        if len(hj) > header_len:
            raise SystemExit(f"gen_bench_fixtures: safetensors header too long ({len(hj)})")
        prefix = struct.pack("<Q", header_len) + hj + b" " * (header_len - len(hj))
        size = 8 + header_len + off
        files[fname] = (lambda sz, sd, pf: lambda dest: write_stream(dest, sz, sd, pf))(
            size, 100 + i, prefix)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = small(gf.jbytes(index))
    files["config.json"] = small(gf.jbytes({"architectures": ["LlamaForCausalLM"],
                                            "model_type": "llama", "torch_dtype": "bfloat16",
                                            "hidden_size": cols}))
    return files


def many_files_100k(n_groups=100, n_sub=10, per_dir=100):
    """n_groups x n_sub folders of per_dir tiny files; few distinct contents, hard-linked
    (hashes computed once per content) so that 100k files take seconds, not minutes."""
    files = base("# many-files-100k\n\n100,000 tiny files in 1,000 folders (modelfs "
                 "benchmark).\n")
    contents = [gf.rtext(50000 + c, 1 + c % 3) for c in range(97)]
    hashes = [(hashlib.sha256(d).hexdigest(), gf.git_hash("blob", d)) for d in contents]
    first = {}  # content index -> the first file written with it

    def linked(c):
        def produce(dest):
            if c in first:
                os.link(first[c], dest)
            else:
                with open(dest, "wb") as f:
                    f.write(contents[c])
                first[c] = dest
            return hashes[c]
        return produce
    n = 0
    for g in range(n_groups):
        for s in range(n_sub):
            for k in range(per_dir):
                files[f"g_{g:02d}/s_{s}/f_{k:02d}.txt"] = linked(n % len(contents))
                n += 1
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--big-size", type=int, required=True)
    ap.add_argument("--part-size", type=int, required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--shard-size", type=int, default=256 * MIB)
    ap.add_argument("--no-100k", action="store_true", help="leave out many-files-100k")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    want = {"version": 3, "big_size": args.big_size, "part_size": args.part_size,
            "gguf_size": os.path.getsize(args.gguf), "shard_size": args.shard_size,
            "many_100k": not args.no_100k}
    stamp = os.path.join(out, "stamp.json")
    try:
        with open(stamp) as f:
            if json.load(f) == want and os.path.isfile(os.path.join(out, "manifest.json")):
                print(f"gen_bench_fixtures: {out} is up to date")
                return 0
    except (OSError, ValueError):
        pass
    if os.path.exists(stamp):
        os.unlink(stamp)
    repos_root = os.path.join(out, "repos")
    repos = {}
    specs = [
        ("big-file", 0, "Add a big file",
         dict(base("# big-file\n"), **{"weights.bin": big(args.big_size, 1)})),
        ("parallel", 1, "Add four parts",
         dict(base("# parallel\n"), **{f"part-{i}.bin": big(args.part_size, 10 + i)
                                       for i in range(4)})),
        ("gguf", 2, "Add a GGUF model",
         dict(base("# gguf\n"), **{"model.gguf": copied(os.path.abspath(args.gguf))})),
        ("many-files", 3, "Add many files", many_files()),
        ("sharded", 4, "Add a sharded checkpoint",
         dict(base("# sharded\n"), **sharded(args.shard_size))),
    ]
    if not args.no_100k:
        specs.append(("many-files-100k", 5, "Add 100k files", many_files_100k()))
    for name, day, title, producers in specs:
        repo = make_repo(repos_root, name, day, title, producers)
        repos[repo["id"]] = repo
        print(f"gen_bench_fixtures: {repo['id']}: {len(producers)} files", flush=True)
    for stale in set(os.listdir(os.path.join(repos_root, ORG))) - {n for n, *_ in specs}:
        shutil.rmtree(os.path.join(repos_root, ORG, stale))  # e.g. 100k after --no-100k
    manifest = {"schema": 1, "org": ORG,
                "lfs_rule": {"extensions": sorted(gf.LFS_EXTENSIONS), "min_size": gf.LFS_MIN_SIZE},
                "tokens": {}, "repos": repos}
    gf.atomic_write(os.path.join(out, "manifest.json"), gf.jbytes(manifest))
    gf.atomic_write(stamp, gf.jbytes(want))
    return 0


if __name__ == "__main__":
    sys.exit(main())
