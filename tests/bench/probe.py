#!/usr/bin/env python3
"""Profile one benchmark scenario of modelfs (the tool behind the findings of README.md).

    probe.py --modelfs BIN --fixtures FX [--work DIR] SCENARIO [--strace] [--perf]
             [--mount-arg=--chunk-size=64K ...]

--profile lan|wan|wan-harsh picks the upstream network (as bench.py's profiles).
SCENARIO: cold-seq | warm-seq | cold-rand-4k | cold-rand-1m | warm-rand-4k | parallel4 |
          meta-warm (a second `ls -lR` of many-files after drop_caches) |
          model-load (W5: node-llama-cpp loads the bench GGUF, cold; with a timeline)
Starts the same upstream as bench.py, runs the scenario once on a fresh mount and prints: wall
time, what upstream served (requests, histogram of range sizes, peak concurrent requests),
the mount's CPU and peak RSS, and optionally `strace -c -f` or `perf record -g` of the mount
process during the timed part. Needs root.
"""

import argparse
import collections
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as B  # noqa: E402


def upstream_detail(up, marker):
    with open(up.access_log, "rb") as f:
        f.seek(marker)
        lines = f.read().decode(errors="replace").splitlines()
    sizes = collections.Counter()
    spans = []
    for line in lines:
        p = line.split("\t")
        if len(p) < 9 or not p[4].startswith("/cdn/"):
            continue
        sent, end, dur = int(p[6]), float(p[0]), float(p[8])
        sizes[sent] += 1
        spans.append((end - dur, end))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return sizes, peak, len(spans)


def timeline(up, marker, step=0.1):
    """CDN requests per `step` seconds from the first: started, in flight, MB received."""
    with open(up.access_log, "rb") as f:
        f.seek(marker)
        lines = f.read().decode(errors="replace").splitlines()
    spans = []
    for line in lines:
        p = line.split("\t")
        if len(p) >= 9 and p[4].startswith("/cdn/"):
            end, dur = float(p[0]), float(p[8])
            spans.append((end - dur, end, int(p[6])))
    if not spans:
        return []
    t0 = min(s for s, _, _ in spans)
    rows = []
    t = 0.0
    while any(e - t0 > t for _, e, _ in spans):
        lo, hi = t0 + t, t0 + t + step
        started = sum(1 for s, _, _ in spans if lo <= s < hi)
        flight = sum(1 for s, e, _ in spans if s < hi and e > lo)
        # bytes spread evenly over each request's duration
        got = sum(n * (min(e, hi) - max(s, lo)) / max(e - s, 1e-6)
                  for s, e, n in spans if s < hi and e > lo)
        rows.append((t, started, flight, got / 1e6))
        t += step
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["cold-seq", "warm-seq", "cold-rand-4k", "cold-rand-1m",
                                         "warm-rand-4k", "parallel4", "meta-warm", "model-load"])
    ap.add_argument("--modelfs", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--work", default="/var/tmp/modelfs-bench")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--mount-arg", action="append", default=[])
    ap.add_argument("--profile", choices=["lan", "wan", "wan-harsh"], default="lan",
                    help="upstream network: wan = 30 ms, 50 MB/s per connection; harsh = 80 ms, 20 MB/s")
    ap.add_argument("--fuse-ra-kb", type=int, help="set the mount's bdi read_ahead_kb (experiment)")
    args = ap.parse_args()
    os.makedirs(os.path.join(args.work, "run"), exist_ok=True)
    wan = {"wan": {"latency_ms": 30, "rate": 50_000_000},
           "wan-harsh": {"latency_ms": 80, "rate": 20_000_000}}
    up = B.Upstream(args.work, args.fixtures, 100, {args.profile: wan.get(args.profile)})
    mfs = B.Modelfs(args.modelfs, args.work, up)
    if args.mount_arg:
        orig = subprocess.Popen

        def popen(cmd, *a, **kw):
            if cmd and cmd[0] == args.modelfs:
                cmd = list(cmd) + [x for m in args.mount_arg for x in m.split("=", 1)]
            return orig(cmd, *a, **kw)
        B.subprocess.Popen = popen
    big = "gguf/model.gguf" if args.scenario == "model-load" else "big-file/weights.bin"
    try:
        up.start()
        up.use(args.profile)
        mfs.start(fresh=True)
        path = mfs.path(big)
        st = os.stat(path)
        bdi = f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"
        if args.fuse_ra_kb:
            with open(bdi, "w") as f:
                f.write(str(args.fuse_ra_kb))
        print(f"fuse bdi read_ahead_kb {open(bdi).read().strip()}")
        if args.scenario == "meta-warm":
            B.timed([["ls", "-lR", mfs.repo_path("many-files")]], 120)
        if args.scenario.startswith("warm"):
            B.timed([["cat", path]], 600)
            B.settle(mfs.pid)
        B.drop_caches()
        m = up.mark()
        tracer = None
        if args.strace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(mfs.pid), "-o",
                                       "/tmp/probe.strace"], stderr=subprocess.DEVNULL)
            time.sleep(1)
        elif args.perf:
            tracer = subprocess.Popen(["perf", "record", "-g", "-o", "/tmp/probe.perf", "-p",
                                       str(mfs.pid)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu0 = B.proc_cpu(mfs.pid)
        if args.scenario.endswith("seq"):
            wall, _ = B.timed([["cat", path]], 600)
            print(f"wall {wall:.2f}s  {up.files[big]['size'] / wall / 1e6:.0f} MB/s")
        elif args.scenario == "meta-warm":
            wall, _ = B.timed([["ls", "-lR", mfs.repo_path("many-files")]], 120)
            print(f"ls -lR {wall * 1000:.0f} ms")
        elif args.scenario == "model-load":
            import json
            r = subprocess.run(["node", os.path.join(HERE, "llama_ttft.mjs"), path],
                               capture_output=True, timeout=240)
            print("llama_ttft:", r.stdout.decode().strip().splitlines()[-1])
            wall = json.loads(r.stdout.decode().strip().splitlines()[-1])["load_only_ms"] / 1e3
        elif args.scenario == "parallel4":
            parts = [mfs.path(f"parallel/part-{i}.bin") for i in range(4)]
            wall, _ = B.timed([["cat", p] for p in parts], 600)
            print(f"wall {wall:.2f}s")
        else:
            bs = "4k" if args.scenario.endswith("4k") else "1m"
            kw = {"runtime": 3} if args.scenario.startswith("warm") else \
                {"number_ios": 200 if bs == "4k" else 60}
            b = B.Bench.__new__(B.Bench)
            print(b.fio(path, bs, **kw))
        cpu1 = B.proc_cpu(mfs.pid)
        if tracer:
            tracer.send_signal(2)
            tracer.wait(60)
        B.settle(mfs.pid, quiet=0.3)
        acct = up.since(m)
        sizes, peak, n = upstream_detail(up, m)
        print(f"mount cpu {cpu1 - cpu0:.2f}s  rss peak {B.proc_hwm_mib(mfs.pid):.0f} MiB")
        print(f"upstream: {acct['upstream_file_bytes']} bytes, {n} CDN requests, "
              f"{acct['file_connections']} connections, peak {peak} concurrent, "
              f"hub {acct['hub_by_kind']}")
        st = subprocess.run([args.modelfs, "stats", "--json", "--mount", mfs.mnt],
                            capture_output=True, timeout=60)
        if st.returncode == 0:
            import json
            def find(d):  # the reader's section, wherever the stats put it
                if isinstance(d, dict):
                    if "bytes_from_memory" in d:
                        return d
                    for v in d.values():
                        if (r := find(v)) is not None:
                            return r
                return None
            rd = find(json.loads(st.stdout)) or {}
            print("read:", ", ".join(f"{k} {v}" for k, v in rd.items()
                                     if not isinstance(v, (dict, list))))
            for k, v in rd.items():
                if isinstance(v, dict):
                    print(f"  {k}:", ", ".join(f"{a} {b}" for a, b in v.items()
                                               if not isinstance(b, (dict, list))))
        if args.scenario == "model-load":
            print("timeline (s from the first CDN request: started, in flight, MB received):")
            for t, started, flight, mb in timeline(up, m):
                print(f"  {t:5.1f}  {started:3d}  {flight:3d}  {mb:6.1f}")
        print("range sizes (bytes: count):",
              ", ".join(f"{s}: {c}" for s, c in sorted(sizes.items(), key=lambda x: -x[1])[:12]))
        if args.strace:
            print(open("/tmp/probe.strace").read())
        if args.perf:
            r = subprocess.run(["perf", "report", "-i", "/tmp/probe.perf", "--stdio",
                                "--no-children", "--sort", "sym", "-g", "none",
                                "--percent-limit", "1.5"], capture_output=True, timeout=300)
            print("\n".join(line for line in r.stdout.decode().splitlines()
                            if line.strip() and not line.startswith("#")))
    finally:
        mfs.stop()
        up.stop()


if __name__ == "__main__":
    main()
