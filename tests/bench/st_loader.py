#!/usr/bin/env python3
"""A sharded-safetensors loader that reads like transformers does (Python 3 stdlib only).

    st_loader.py DIR     # DIR holds model.safetensors.index.json and the shards

Reads the index json, then shard after shard (in the order the weight map first names them):
opens the file, parses the safetensors header (8-byte little-endian length + JSON), maps the
file (mmap, MAP_SHARED, read-only, as safetensors' safe_open does) and touches every tensor:
a CRC32 of the whole tensor region read through the mapping in tensor order (the page faults
a per-tensor copy would take) and a sum of one byte per 4 KiB page. Every tensor of the index
must be found in its shard with the right size.

stdout: one JSON line {"seconds", "shards", "tensors", "bytes", "crc": {shard: crc32},
"page_sum"}; the harness compares crc with the local copy's to catch wrong bytes.
"""

import json
import mmap
import os
import struct
import sys
import time
import zlib

DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
              "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
STEP = 1 << 20  # CRC in 1 MiB pieces of the mapping: bounded memory, sequential faults


def load(folder):
    t0 = time.perf_counter()
    with open(os.path.join(folder, "model.safetensors.index.json"), "rb") as f:
        index = json.load(f)
    wmap = index["weight_map"]
    shards = list(dict.fromkeys(wmap.values()))
    want = {}
    for name, shard in wmap.items():
        want.setdefault(shard, set()).add(name)
    total, ntensors, page_sum, crcs = 0, 0, 0, {}
    for shard in shards:
        with open(os.path.join(folder, shard), "rb") as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hlen))
            header.pop("__metadata__", None)
            missing = want[shard] - header.keys()
            if missing:
                raise SystemExit(f"st_loader: {shard} lacks {sorted(missing)[:3]}")
            base = 8 + hlen
            mm = mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
            try:
                view = memoryview(mm)
                crc = 0
                for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                    b, e = t["data_offsets"]
                    n = 1
                    for d in t["shape"]:
                        n *= d
                    if e - b != n * DTYPE_SIZE[t["dtype"]] or base + e > len(mm):
                        raise SystemExit(f"st_loader: {shard}: {name} has a bad size or offset")
                    for p in range(base + b, base + e, STEP):
                        crc = zlib.crc32(view[p:min(p + STEP, base + e)], crc)
                    page_sum += sum(mm[p] for p in range(base + b, base + e, 4096))
                    total += e - b
                    ntensors += 1
                crcs[shard] = crc
                view.release()
            finally:
                mm.close()
    return {"seconds": time.perf_counter() - t0, "shards": len(shards), "tensors": ntensors,
            "bytes": total, "crc": crcs, "page_sum": page_sum}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    print(json.dumps(load(sys.argv[1])))
