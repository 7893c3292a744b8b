#!/usr/bin/env python3
"""The fleet measurement behind tests/fleet/run.sh (not in CI; root, FUSE, nginx).

    fleet.py --fixtures DIR [--nodes 4,8] [--md FILE] [--json FILE]

For each N: N modelfs nodes (each its own mount and cache) load the same GGUF at once, two ways
(node-llama-cpp to the first token, and a plain `cat` of the whole file), in three waves:
  hub      every node's endpoint is the simulated Hub itself (no site cache): the baseline
  cold     endpoint = a fresh nginx site cache (packaging/site-cache/) in front of the Hub
  warm     N more fresh nodes on the same site cache, which now holds the file
The Hub is the simulator in the WAN profile (30 ms before every response, 50 MB/s per
connection). Every node's bytes are checked (sha256) after its wave. Prints a Markdown table
and writes it to --md.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
from mfs import BIN, HubSim, Mount, SiteCacheNginx, sha256_file  # noqa: E402
import fleet_fixtures  # noqa: E402

NODE_MODULES = os.environ.get("MODELFS_NODE_MODULES") or os.path.join(
    SRC, "tests", "node", "node_modules")
TTFT = os.path.join(SRC, "tests", "bench", "llama_ttft.mjs")
PATH = (fleet_fixtures.ORG, fleet_fixtures.REPO, "model.gguf")


def log(*a):
    print("[fleet]", *a, file=sys.stderr, flush=True)


def load_at_once(paths, how):
    """Starts one loader per path at the same moment; -> per node {"s": launch to first token
    (llama) or to the end of the read (cat), ...}."""
    out = [None] * len(paths)
    gate = threading.Barrier(len(paths))

    def one(i):
        gate.wait()
        t0 = time.monotonic()
        if how == "llama":
            r = subprocess.run(["node", TTFT, paths[i]], capture_output=True, text=True,
                               timeout=600, env=dict(os.environ, MODELFS_NODE_MODULES=NODE_MODULES))
            if r.returncode != 0:
                out[i] = {"error": r.stderr[-2000:]}
                return
            t = json.loads(r.stdout.strip().splitlines()[-1])
            # first_token_ms counts from the node process's start, about t0
            out[i] = {"s": t["first_token_ms"] / 1000, "init_s": t["init_ms"] / 1000,
                      "load_s": t["load_only_ms"] / 1000}
        else:
            with open(os.devnull, "wb") as null:
                r = subprocess.run(["cat", paths[i]], stdout=null, stderr=subprocess.PIPE,
                                   timeout=600)
            if r.returncode != 0:
                out[i] = {"error": r.stderr.decode(errors="replace")}
                return
            out[i] = {"s": time.monotonic() - t0}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(out):
        if r is None or "error" in r:
            raise SystemExit(f"fleet: node {i} failed: {r}")
    return out


def wave(hub, endpoint, n, how, entry):
    """n fresh nodes load the model at once -> a result row."""
    nodes = []
    try:
        for _ in range(n):
            nodes.append(Mount(types.SimpleNamespace(url=endpoint), log_level="info",
                               cache_size="4G"))
        before = hub.file_bytes(entry["sha256"])
        resolves = hub.counters()["resolve"]
        t0 = time.monotonic()
        res = load_at_once([m.path(*PATH) for m in nodes], how)
        wall = time.monotonic() - t0
        hub_bytes = hub.file_bytes(entry["sha256"]) - before
        resolves = hub.counters()["resolve"] - resolves
        for i, m in enumerate(nodes):
            if sha256_file(m.path(*PATH)) != entry["sha256"]:
                raise SystemExit(f"fleet: node {i} read wrong bytes")
    finally:
        for m in nodes:
            m.close()
    slowest = max(r["s"] for r in res)
    return {"n": n, "how": how, "per_node_s": [r["s"] for r in res], "slowest_s": slowest,
            "median_s": statistics.median(r["s"] for r in res), "wall_s": wall,
            "load_s": [r.get("load_s") for r in res], "init_s": [r.get("init_s") for r in res],
            "hub_bytes": hub_bytes, "hub_x": hub_bytes / entry["size"], "resolves": resolves,
            "aggregate_mb_s": n * entry["size"] / slowest / 1e6}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--nodes", default="4,8")
    ap.add_argument("--md", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--json")
    ap.add_argument("--command", default="tests/fleet/run.sh", help="shown in the results")
    args = ap.parse_args(argv)
    entry = fleet_fixtures._entries(os.path.join(args.fixtures, "repos", fleet_fixtures.ORG,
                                                 fleet_fixtures.REPO))["model.gguf"]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    t_start = time.monotonic()
    rows = []
    hub = HubSim(fixtures=args.fixtures, extra=["--profile", "wan"])
    try:
        for n in [int(x) for x in args.nodes.split(",")]:
            for how in ("llama", "cat"):
                log(f"N={n} {how}: Hub direct")
                rows.append(dict(wave(hub, hub.url, n, how, entry), wave="hub"))
                site = SiteCacheNginx(hub.url, max_size="8g")
                try:
                    for name in ("cold", "warm"):
                        log(f"N={n} {how}: site cache {name}")
                        rows.append(dict(wave(hub, site.url, n, how, entry), wave=name))
                finally:
                    site.close()
    finally:
        hub.close()
    total = time.monotonic() - t_start
    md = render(rows, entry, started, load0, total, args.command)
    print(md)
    with open(args.md, "w") as f:
        f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "file_size": entry["size"], "rows": rows}, f, indent=1)
    return 0


WAVES = {"hub": "Hub direct (no site cache)", "cold": "site cache, cold",
         "warm": "site cache, warm (new nodes)"}


def render(rows, entry, started, load0, total, command):
    src = subprocess.run(["git", "-C", SRC, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    lines = [
        "# Fleet measurement",
        "",
        f"`{command}`, {started}, {total / 60:.1f} min. Machine: {platform.node()}, "
        f"{os.cpu_count()} CPUs, kernel {platform.release()}, load average {load0:.2f} at the "
        f"start. modelfs: `{BIN}`; tests from {src}.",
        "",
        f"All on loopback: the Hub is the simulator in the WAN profile (30 ms before every "
        f"response, 50 MB/s per connection); the site cache is packaging/site-cache/ (nginx, 2 "
        f"workers) in front of it; every node is its own modelfs mount with its own cache, on "
        f"this one VM, so the nodes share its CPUs. File: model.gguf, "
        f"{entry['size'] / 1e6:.1f} MB (tests/bench/make_bench_gguf.py). Every node's bytes "
        f"were checked (sha256).",
        "",
        "- **llama**: node-llama-cpp loads the model (mmap of the whole file) and generates one "
        "token; time = node's start to the first token (node's own start, `getLlama`, is in "
        "it: the `init` figure). **cat**: `cat FILE > /dev/null`; time = the whole cold read.",
        "- **Hub bytes / file**: file bytes the simulated Hub (its CDN) sent during the wave, "
        "over the file size. **Hub resolves / node**: `resolve` requests the Hub answered "
        "(GET and HEAD, the site cache's access checks included) over N: the Hub's request "
        "budget a wave costs. **Aggregate**: N x file size / the slowest node's time.",
        "",
        "| N | load | wave | per node (s) | median (s) | slowest (s) | Hub bytes / file | "
        "Hub resolves / node | aggregate MB/s |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per = ", ".join(f"{s:.2f}" for s in r["per_node_s"])
        how = r["how"]
        if how == "llama":
            init = statistics.median(x for x in r["init_s"])
            load = statistics.median(x for x in r["load_s"])
            how = f"llama (init {init:.2f} s, loadModel {load:.2f} s, medians)"
        lines.append(f"| {r['n']} | {how} | {WAVES[r['wave']]} | {per} | {r['median_s']:.2f} | "
                     f"{r['slowest_s']:.2f} | {r['hub_x']:.2f} | {r['resolves'] / r['n']:.0f} | "
                     f"{r['aggregate_mb_s']:.0f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
