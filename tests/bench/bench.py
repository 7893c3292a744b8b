#!/usr/bin/env python3
"""modelfs benchmark harness: every workload against modelfs and its peers, on this machine.

    bench.py --modelfs BIN --work DIR [--quick] [--runs 3] [--only W1,W6,...]
             [--json OUT.json] [--md OUT.md]

Normally started by tests/bench/run.sh (which installs the tools, builds the Release binary
and generates the data). Needs root (drop_caches, FUSE). Everything talks to 127.0.0.1 only.

Upstream: tests/hubsim/hubsim.py answers the Hub API; nginx (sendfile on) fronts it on one
port (proxy, rewriting the simulator's CDN redirects to itself) and serves the file bytes on
another port from a tmpfs copy of the LFS blobs (/cdn/<sha256>/<name>, ETag = sha256 like the
Hub's CDN) plus a browsable /files/<repo>/<path> tree for rclone's http remote. Upstream file
bytes are counted from nginx's access log, Hub requests from the simulator's counters.

Workloads (README.md explains each): W0 ceilings, W1 cold sequential, W2 warm, W3 hot,
W4 random reads, W5 model load, W6 metadata, W7 parallel, W8 cost. Each figure is the median
of --runs runs; "vs best peer" is modelfs / best peer for times (lower is better).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MIB = 1024 * 1024
GIB = 1024 * MIB
ORG = "modelfs-bench"
CLK = os.sysconf("SC_CLK_TCK")

# ------------------------------------------------------------------------------------ helpers

_children = []  # Popen objects we started and must stop


def log(msg):
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout, check=True, **kw):
    r = subprocess.run(cmd, timeout=timeout, stdout=kw.pop("stdout", subprocess.PIPE),
                       stderr=kw.pop("stderr", subprocess.PIPE), **kw)
    if check and r.returncode != 0:
        err = r.stderr.decode(errors="replace")[-2000:] if r.stderr else ""
        raise RuntimeError(f"{cmd[0]} exited {r.returncode}: {err}")
    return r


def timed(cmds, timeout, cwd=None, env=None):
    """Starts every command at once; waits for all (bounded). Returns (wall seconds,
    [rusage]) and raises if any fails. stdout goes to /dev/null."""
    procs = []
    t0 = time.perf_counter()
    for c in cmds:
        procs.append(subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      cwd=cwd, env=env))
    usages = {}
    deadline = time.monotonic() + timeout
    pending = {p.pid: p for p in procs}
    while pending:
        if time.monotonic() > deadline:
            for p in pending.values():
                p.kill()
            for p in pending.values():
                p.wait(5)
            raise RuntimeError(f"timed out after {timeout}s: {cmds[0]}")
        reaped = False
        for cpid in list(pending):
            pid, status, ru = os.wait4(cpid, os.WNOHANG)  # only our own commands
            if pid == 0:
                continue
            reaped = True
            p = pending.pop(pid)
            p.returncode = os.waitstatus_to_exitcode(status)
            usages[pid] = ru
            if p.returncode != 0:
                err = p.stderr.read().decode(errors="replace")[-1500:]
                raise RuntimeError(f"{p.args} exited {p.returncode}: {err}")
        if not reaped:
            time.sleep(0.002)
    wall = time.perf_counter() - t0
    for p in procs:
        p.stderr.close()
    return wall, [usages[p.pid] for p in procs]


def drop_caches(prewarm=()):
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    for path in prewarm:
        read_all(path)


def read_all(path):
    if os.path.isdir(path):
        for dp, _, fns in os.walk(path):
            for fn in fns:
                p = os.path.join(dp, fn)
                if os.path.getsize(p) < 20 * MIB:
                    read_all(p)
        return
    with open(path, "rb", buffering=0) as f:
        while f.read(4 * MIB):
            pass


def ismount(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def unmount(path):
    for i in range(20):
        if not ismount(path):
            return
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True, timeout=30)
        if r.returncode == 0:
            return
        time.sleep(0.25)
    subprocess.run(["fusermount3", "-uz", path], capture_output=True, timeout=30)


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except OSError:
        return None


def proc_hwm_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def settle(pid, quiet=0.6, timeout=60):
    """Waits until the process stops using CPU (background work such as the sha256 check of a
    completed file). Returns the seconds waited."""
    t0 = time.monotonic()
    last = proc_cpu(pid)
    still = time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.1)
        now = proc_cpu(pid)
        if now is None:
            break
        if now - last > 0.01:
            last = now
            still = time.monotonic()
        elif time.monotonic() - still >= quiet:
            break
    return time.monotonic() - t0


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rm_rf(path):
    shutil.rmtree(path, ignore_errors=True)


def http_json(url, data=None, timeout=10):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        return json.loads(body) if body else {}, r.headers


# ------------------------------------------------------------------------------------ upstream

NGINX_CONF = r"""
worker_processes 2;
daemon off;
master_process on;
user root;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  default_type application/octet-stream;
  log_format bench '$msec\t$server_port\t$status\t$request_method\t$request_uri\t$http_range\t$body_bytes_sent\t$connection\t$request_time';
  access_log {run}/access.log bench;
  client_body_temp_path {run}/tmp-body;
  proxy_temp_path {run}/tmp-proxy;
  fastcgi_temp_path {run}/tmp-fastcgi;
  uwsgi_temp_path {run}/tmp-uwsgi;
  scgi_temp_path {run}/tmp-scgi;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 600s;
  keepalive_requests 10000000;
  upstream hubsim {{ server 127.0.0.1:{sim_hub}; keepalive 32; }}
  # The Hub: everything goes to the simulator; its CDN redirects are rewritten to nginx.
  server {{
    listen 127.0.0.1:{hub};
    location / {{
      proxy_pass http://hubsim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_redirect http://127.0.0.1:{sim_cdn}/ http://127.0.0.1:{cdn}/;
    }}
  }}
  # The CDN: LFS bytes by sha256, with the Hub CDN's ETag (the sha256).
  server {{
    listen 127.0.0.1:{cdn};
    location ~ "^/cdn/(?<sha>[0-9a-f]{{64}})/" {{
      alias {blobs}/$sha;
      etag off;
      add_header ETag "\"$sha\"" always;
      add_header X-Cache "Miss from cloudfront" always;
    }}
    location /files/ {{
      alias {files}/;
      autoindex on;
      autoindex_exact_size on;
    }}
  }}
}}
"""


class Upstream:
    def __init__(self, work, fixtures, page_size):
        self.work = work
        self.fixtures = fixtures
        self.run_dir = os.path.join(work, "run", "nginx")
        rm_rf(self.run_dir)
        os.makedirs(self.run_dir)
        with open(os.path.join(fixtures, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.page_size = page_size
        self.files = {}  # "repo/path" -> entry (+ local path)
        for rid, repo in self.manifest["repos"].items():
            sha = repo["branches"]["main"]
            for e in repo["commits"][sha]["files"]:
                e = dict(e)
                e["local"] = os.path.join(fixtures, "repos", rid, sha, e["path"])
                self.files[f"{rid.split('/')[1]}/{e['path']}"] = e

    def prepare_blobs(self):
        """LFS bytes (and the rclone tree) go to tmpfs, so that drop_caches never turns the
        upstream into a disk reader; falls back to the work dir (then re-read after drops)."""
        need = sum(e["size"] for e in self.files.values()) * 1.1 + 64 * MIB
        shm = "/dev/shm"
        self.tmpfs = False
        try:
            st = os.statvfs(shm)
            self.tmpfs = st.f_bavail * st.f_frsize > need + 2 * GIB
        except OSError:
            pass
        base = os.path.join(shm, "modelfs-bench-upstream") if self.tmpfs else \
            os.path.join(self.work, "upstream")
        self.base = base
        rm_rf(base)
        self.blobs = os.path.join(base, "blobs")
        self.tree = os.path.join(base, "files")
        os.makedirs(self.blobs)
        t0 = time.monotonic()
        for key, e in self.files.items():
            dst = os.path.join(self.tree, key)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if e["lfs"]:
                blob = os.path.join(self.blobs, e["sha256"])
                if not os.path.exists(blob):
                    shutil.copyfile(e["local"], blob)
                os.link(blob, dst)
            else:
                shutil.copyfile(e["local"], dst)
        log(f"upstream bytes in {base} ({'tmpfs' if self.tmpfs else 'disk'}), "
            f"{time.monotonic() - t0:.1f}s")

    def prewarm_paths(self):
        return [] if self.tmpfs else [self.blobs]

    def start(self):
        self.prepare_blobs()
        ready = os.path.join(self.run_dir, "hubsim.json")
        self.sim_log = open(os.path.join(self.run_dir, "hubsim.log"), "w")
        self.sim = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "hubsim", "hubsim.py"),
             "--fixtures", self.fixtures, "--port", "0", "--cdn-port", "0",
             "--ready-file", ready, "--page-size", str(self.page_size)],
            stdout=self.sim_log, stderr=self.sim_log)
        _children.append(self.sim)
        wait_for(lambda: os.path.exists(ready) or self.sim.poll() is not None, 30, "hubsim")
        if self.sim.poll() is not None:
            raise RuntimeError("hubsim exited; see " + self.sim_log.name)
        with open(ready) as f:
            info = json.load(f)
        self.sim_hub = info["hub"]
        sim_hub_port = int(self.sim_hub.rsplit(":", 1)[1])
        sim_cdn_port = int(info["cdn"].rsplit(":", 1)[1])
        self.hub_port, self.cdn_port = free_port(), free_port()
        conf = os.path.join(self.run_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(run=self.run_dir, sim_hub=sim_hub_port, sim_cdn=sim_cdn_port,
                                      hub=self.hub_port, cdn=self.cdn_port, blobs=self.blobs,
                                      files=self.tree))
        self.access_log = os.path.join(self.run_dir, "access.log")
        open(self.access_log, "w").close()
        self.nginx = subprocess.Popen(["nginx", "-p", self.run_dir, "-c", conf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _children.append(self.nginx)

        def up():
            if self.nginx.poll() is not None:
                raise RuntimeError("nginx exited: " + self.nginx.stderr.read().decode())
            try:
                with socket.create_connection(("127.0.0.1", self.cdn_port), 0.2):
                    pass
                with socket.create_connection(("127.0.0.1", self.hub_port), 0.2):
                    return True
            except OSError:
                return False
        wait_for(up, 20, "nginx")
        self.hub = f"http://127.0.0.1:{self.hub_port}"
        self.cdn = f"http://127.0.0.1:{self.cdn_port}"
        log(f"upstream: hub {self.hub} (nginx -> hubsim {self.sim_hub}), cdn {self.cdn}")

    def stop(self):
        for p in (getattr(self, "nginx", None), getattr(self, "sim", None)):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM if p is self.sim else signal.SIGQUIT)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if getattr(self, "base", None):
            rm_rf(self.base)

    # --- URLs
    def resolve_url(self, key):
        repo, path = key.split("/", 1)
        return f"{self.hub}/{ORG}/{repo}/resolve/main/{path}"

    def cdn_url(self, key):
        e = self.files[key]
        return f"{self.cdn}/cdn/{e['sha256']}/{os.path.basename(e['path'])}"

    def rclone_url(self):
        return f"{self.cdn}/files/"

    # --- accounting
    def mark(self):
        """Returns a marker; self.since(marker) gives what upstream did after it."""
        try:
            http_json(self.sim_hub + "/_sim/reset", data=b"{}")
        except OSError as e:
            log(f"warning: hubsim reset failed: {e}")
        return os.path.getsize(self.access_log)

    def since(self, marker, settle_s=0.3):
        time.sleep(settle_s)  # nginx logs a request when it completes
        with open(self.access_log, "rb") as f:
            f.seek(marker)
            lines = f.read().decode(errors="replace").splitlines()
        file_bytes = file_reqs = hub_reqs = 0
        conns = set()
        for line in lines:
            p = line.split("\t")
            if len(p) < 9:
                continue
            port, uri, sent = int(p[1]), p[4], int(p[6])
            if port == self.cdn_port and (uri.startswith("/cdn/") or uri.startswith("/files/")) \
                    and not uri.endswith("/"):
                file_bytes += sent
                file_reqs += 1
                conns.add(p[7])
            else:
                hub_reqs += 1
        c, _ = http_json(self.sim_hub + "/_sim/counters")
        sim_reqs = sum(int(c.get(k, 0)) for k in ("api", "tree", "paths_info", "resolve", "raw",
                                                   "other"))
        return {"upstream_file_bytes": file_bytes, "file_requests": file_reqs,
                "file_connections": len(conns), "nginx_hub_requests": hub_reqs,
                "hub_requests": sim_reqs,
                "hub_by_kind": {k: c.get(k, 0) for k in ("api", "tree", "paths_info", "resolve",
                                                        "raw", "other")}}

    def tree_pages(self, repo):
        url = f"{self.sim_hub}/api/models/{ORG}/{repo}/tree/main?recursive=true"
        pages = entries = 0
        while url:
            body, headers = http_json(url)
            pages += 1
            entries += len(body)
            m = re.search(r'<([^>]+)>;\s*rel="next"', headers.get("Link") or "")
            url = m.group(1) if m else None
        return pages, entries


# ------------------------------------------------------------------------------------ systems

class Modelfs:
    def __init__(self, binary, work, upstream):
        self.bin = binary
        self.mnt = os.path.join(work, "mnt", "modelfs")
        self.cache_root = os.path.join(work, "cache", "modelfs")
        self.up = upstream
        self.proc = None
        self.n = 0

    def start(self, fresh=True):
        os.makedirs(self.mnt, exist_ok=True)
        unmount(self.mnt)
        if fresh:
            rm_rf(self.cache_root)
        self.cache = self.cache_root
        os.makedirs(self.cache, exist_ok=True)
        self.n += 1
        self.log_path = os.path.join(self.up.work, "run", f"modelfs-{self.n}.log")
        self.log_f = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.bin, "mount", self.mnt, "--foreground", "--cache-dir", self.cache,
             "--cache-size", "24G", "--endpoint", self.up.hub, "--log-level", "warn"],
            stdout=self.log_f, stderr=self.log_f)
        _children.append(self.proc)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelfs exited {self.proc.returncode}; see {self.log_path}")
            return ismount(self.mnt)
        wait_for(ready, 30, "the modelfs mount")
        return self

    def path(self, key):
        repo, p = key.split("/", 1)
        return os.path.join(self.mnt, "models", ORG, repo, p)

    def repo_path(self, repo):
        return os.path.join(self.mnt, "models", ORG, repo)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc is None:
            return
        unmount(self.mnt)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            log("warning: modelfs did not exit after unmount; killing it")
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.returncode not in (0, None):
            log(f"warning: modelfs exited {self.proc.returncode} (log {self.log_path})")
        self.log_f.close()
        self.proc = None

    def chunk_files(self, sha256):
        d = os.path.join(self.cache, "chunks", sha256[:2], sha256)
        names = [n for n in os.listdir(d) if n.isdigit()]
        return [os.path.join(d, n) for n in sorted(names, key=int)]


class Rclone:
    def __init__(self, work, upstream):
        self.mnt = os.path.join(work, "mnt", "rclone")
        self.cache = os.path.join(work, "cache", "rclone")
        self.conf = os.path.join(work, "run", "rclone.conf")
        self.up = upstream
        self.proc = None

    def start(self, fresh=True):
        os.makedirs(self.mnt, exist_ok=True)
        unmount(self.mnt)
        if fresh:
            rm_rf(self.cache)
        os.makedirs(self.cache, exist_ok=True)
        open(self.conf, "a").close()
        self.log_f = open(os.path.join(self.up.work, "run", "rclone.log"), "a")
        self.proc = subprocess.Popen(
            ["rclone", "mount", ":http:", self.mnt, "--config", self.conf,
             "--http-url", self.up.rclone_url(), "--vfs-cache-mode", "full",
             "--cache-dir", self.cache, "--read-only", "--log-level", "ERROR"],
            stdout=self.log_f, stderr=self.log_f)
        _children.append(self.proc)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("rclone mount exited; see run/rclone.log")
            return ismount(self.mnt)
        wait_for(ready, 30, "the rclone mount")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def path(self, key):
        return os.path.join(self.mnt, key)

    def stop(self):
        if self.proc is None:
            return
        unmount(self.mnt)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log_f.close()
        self.proc = None


# ------------------------------------------------------------------------------------ results

class Results:
    def __init__(self, meta):
        self.meta = meta
        self.ceilings = {}
        self.workloads = {}   # id -> {"title", "rows": [row]}
        self.targets = []
        self.notes = []

    def workload(self, wid, title, metric, unit, lower_is_better=True):
        w = self.workloads.setdefault(wid, {"title": title, "metric": metric, "unit": unit,
                                            "lower_is_better": lower_is_better, "rows": []})
        return w

    def row(self, wid, system, runs, peer=True, **extra):
        w = self.workloads[wid]
        r = {"system": system, "runs": runs, "median": median(runs), "peer": peer}
        r.update(extra)
        w["rows"].append(r)
        log(f"{wid} {system}: median {fmt(r['median'])} {w['unit']}  runs {[fmt(x) for x in runs]}"
            + "".join(f"  {k}={fmt(v)}" for k, v in extra.items() if not isinstance(v, (dict, list))))
        return r

    def finish_ratios(self):
        for w in self.workloads.values():
            peers = [r for r in w["rows"] if r["peer"] and r["median"] is not None]
            if not peers:
                continue
            best = (min if w["lower_is_better"] else max)(peers, key=lambda r: r["median"])
            w["best_peer"] = best["system"]
            for r in w["rows"]:
                if r["median"] is not None and best["median"]:
                    r["vs_best_peer"] = r["median"] / best["median"]

    def target(self, name, measured, threshold, op, unit="", detail=""):
        if measured is None:
            met = None
        else:
            met = {"<=": measured <= threshold, "<": measured < threshold,
                   ">=": measured >= threshold}[op]
        self.targets.append({"target": name, "measured": measured, "threshold": threshold,
                             "op": op, "unit": unit, "met": met, "detail": detail})


def fmt(x, nd=None):
    if x is None:
        return "—"
    if isinstance(x, float):
        if nd is not None:
            return f"{x:.{nd}f}"
        a = abs(x)
        return f"{x:.3g}" if a < 10 else f"{x:.1f}" if a < 1000 else f"{x:.0f}"
    return str(x)


# ------------------------------------------------------------------------------------ bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.runs = args.runs
        self.up = Upstream(args.work, args.fixtures, args.page_size)
        self.mfs = Modelfs(args.modelfs, args.work, self.up)
        self.rc = Rclone(args.work, self.up)
        self.out_dir = os.path.join(args.work, "out")
        self.big = "big-file/weights.bin"
        self.parts = [f"parallel/part-{i}.bin" for i in range(4)]
        self.gguf = "gguf/model.gguf"
        self.only = set(args.only.split(",")) if args.only else None
        node_mods = os.path.join(ROOT, "tests", "node", "node_modules")
        self.runtime_paths = [os.path.realpath(shutil.which("node")),
                              os.path.join(node_mods, "node-llama-cpp", "dist"),
                              os.path.join(node_mods, "@node-llama-cpp"),
                              os.path.join(node_mods, "node-llama-cpp", "package.json")]
        self.R = Results({})

    def want(self, wid):
        return self.only is None or wid in self.only

    def drop(self, runtime=False):
        drop_caches(self.up.prewarm_paths() + (self.runtime_paths if runtime else []))

    def size(self, key):
        return self.up.files[key]["size"]

    def clean_out(self):
        rm_rf(self.out_dir)
        os.makedirs(self.out_dir)

    # -- peers that download to disk
    def curl_cmd(self, key, out):
        return ["curl", "-sSfL", "--max-time", "600", "-o", out, self.up.resolve_url(key)]

    def aria_cmd(self, key, out):
        return ["aria2c", "--no-conf", "-q", "-x8", "-s8", "--file-allocation=falloc",
                "--allow-overwrite=true", "--auto-file-renaming=false", "--timeout=60",
                "-d", os.path.dirname(out), "-o", os.path.basename(out), self.up.resolve_url(key)]

    # ---------------------------------------------------------------- W0 ceilings
    def w0_ceilings(self):
        n = self.size(self.big)
        url = self.up.cdn_url(self.big)
        c = {}
        # upstream, one stream
        runs = []
        for _ in range(self.runs):
            wall, _ = timed([["curl", "-sSf", "--max-time", "300", "-o", "/dev/null", url]], 300)
            runs.append(n / wall / 1e6)
        c["upstream_curl_1_stream_MBps"] = {"runs": runs, "median": median(runs)}
        # upstream, 4 streams (ranges)
        runs = []
        q = n // 4
        for _ in range(self.runs):
            cmds = [["curl", "-sSf", "--max-time", "300", "-o", "/dev/null", "-r",
                     f"{i * q}-{n - 1 if i == 3 else (i + 1) * q - 1}", url] for i in range(4)]
            wall, _ = timed(cmds, 300)
            runs.append(n / wall / 1e6)
        c["upstream_curl_4_streams_MBps"] = {"runs": runs, "median": median(runs)}
        # disk: write with fdatasync (source hot in page cache), then cold read
        src = self.up.files[self.big]["local"]
        dst = os.path.join(self.work, "ddtest.bin")
        read_all(src)
        wr, rd = [], []
        dn = min(n, GIB)  # 1 GiB is enough to see the sustained rate and saves time
        for _ in range(self.runs):
            if os.path.exists(dst):
                os.unlink(dst)
            os.sync()
            wall, _ = timed([["dd", f"if={src}", f"of={dst}", "bs=4M", f"count={dn // (4 * MIB)}",
                              "conv=fdatasync", "status=none"]], 300)
            wr.append(dn / wall / 1e6)
            self.drop()
            wall, _ = timed([["dd", f"if={dst}", "of=/dev/null", "bs=4M", "status=none"]], 300)
            rd.append(dn / wall / 1e6)
        os.unlink(dst)
        c["disk_write_fdatasync_MBps"] = {"runs": wr, "median": median(wr)}
        c["disk_cold_read_MBps"] = {"runs": rd, "median": median(rd)}
        # disk 4 KiB random read latency (cold page cache), for W4's warm figures
        self.drop()
        fio = self.fio(src, "4k", runtime=2)
        c["disk_4k_random_read_p50_us"] = {"runs": [fio["p50_us"]], "median": fio["p50_us"]}
        self.R.ceilings = c
        for k, v in c.items():
            log(f"W0 {k}: {fmt(v['median'])}  runs {[fmt(x) for x in v['runs']]}")

    # ---------------------------------------------------------------- one cold run per system
    # Runs are interleaved (round r of every system, then round r+1) so that a change of the
    # machine's load during the benchmark hits every system alike.
    def cold_cat_modelfs(self, keys, keep=False):
        """Fresh mount and cache, page cache dropped, `cat` of keys at once."""
        self.mfs.start(fresh=True)
        for k in set(keys):
            os.stat(self.mfs.path(k))
        self.drop()
        m = self.up.mark()
        cpu0 = proc_cpu(self.mfs.pid)
        wall, _ = timed([["cat", self.mfs.path(k)] for k in keys], 600)
        cpu1 = proc_cpu(self.mfs.pid)
        waited = settle(self.mfs.pid)
        cpu2 = proc_cpu(self.mfs.pid)
        acct = self.up.since(m)
        r = {"time": wall, "rss_mib": proc_hwm_mib(self.mfs.pid), "cpu_s": cpu1 - cpu0,
             "cpu_s_incl_background": cpu2 - cpu0, "background_s": waited, **acct}
        if not keep:
            self.mfs.stop()
        return r

    def cold_cat_rclone(self, keys):
        self.rc.start(fresh=True)
        for k in set(keys):
            os.stat(self.rc.path(k))
        self.drop()
        m = self.up.mark()
        cpu0 = proc_cpu(self.rc.pid)
        wall, _ = timed([["cat", self.rc.path(k)] for k in keys], 600)
        cpu1 = proc_cpu(self.rc.pid)
        acct = self.up.since(m)
        r = {"time": wall, "rss_mib": proc_hwm_mib(self.rc.pid), "cpu_s": cpu1 - cpu0, **acct}
        self.rc.stop()
        return r

    def cold_download(self, mk, keys):
        self.clean_out()
        outs = [os.path.join(self.out_dir, f"o{i}.bin") for i in range(len(keys))]
        self.drop()
        m = self.up.mark()
        wall, ru = timed([mk(k, o) for k, o in zip(keys, outs)], 600)
        acct = self.up.since(m)
        for k, o in zip(keys, outs):
            if os.path.getsize(o) != self.size(k):
                raise RuntimeError(f"{mk.__name__}: {o} has {os.path.getsize(o)} bytes")
        self.clean_out()
        return {"time": wall, "rss_mib": max(u.ru_maxrss for u in ru) / 1024,
                "cpu_s": sum(u.ru_utime + u.ru_stime for u in ru), **acct}

    # ---------------------------------------------------------------- W1, W8 cold sequential
    def w1_cold_seq(self):
        key, n = self.big, self.size(self.big)
        R = self.R
        R.workload("W1", f"Cold sequential read of {n / GIB:g} GiB (cat / download)", "time", "s")
        systems = [("curl -o", lambda: self.cold_download(self.curl_cmd, [key])),
                   ("aria2c -x8", lambda: self.cold_download(self.aria_cmd, [key])),
                   ("rclone mount", lambda: self.cold_cat_rclone([key])),
                   ("modelfs", None)]
        rows = {name: [] for name, _ in systems}
        for i in range(self.runs):
            for name, fn in systems:
                if name == "modelfs":
                    # the last mount is kept: it holds the whole file for W2, W3 and W4 warm
                    rows[name].append(self.cold_cat_modelfs([key], keep=(i == self.runs - 1)))
                else:
                    rows[name].append(fn())
        for name, rr in rows.items():
            times = [r["time"] for r in rr]
            R.row("W1", name, times, peer=(name != "modelfs"),
                  MBps=n / median(times) / 1e6, rss_mib=median([r["rss_mib"] for r in rr]),
                  cpu_s_per_gib=median([r["cpu_s"] / (n / GIB) for r in rr]),
                  cpu_s_per_gib_incl_background=median(
                      [r.get("cpu_s_incl_background", r["cpu_s"]) / (n / GIB) for r in rr]),
                  amplification=median([r["upstream_file_bytes"] / n for r in rr]),
                  file_requests=median([r["file_requests"] for r in rr]),
                  file_connections=median([r["file_connections"] for r in rr]),
                  hub_requests=median([r["hub_requests"] for r in rr]),
                  per_run=rr)

    # ---------------------------------------------------------------- W2 warm, W3 hot
    def ensure_cached_mount(self):
        """A modelfs mount whose cache holds the whole big file."""
        if self.mfs.proc is None:
            self.mfs.start(fresh=True)
            timed([["cat", self.mfs.path(self.big)]], 600)
        settle(self.mfs.pid)

    def w2_warm(self):
        key, n = self.big, self.size(self.big)
        self.ensure_cached_mount()
        self.R.workload("W2", "Warm read: in the modelfs cache, page cache dropped", "time", "s")
        chunks = self.mfs.chunk_files(self.up.files[key]["sha256"])
        on_disk = sum(os.path.getsize(c) for c in chunks)
        mf, local = [], []
        for _ in range(self.runs):
            self.drop()
            m = self.up.mark()
            mf.append(timed([["cat", self.mfs.path(key)]], 600)[0])
            acct = self.up.since(m, 0.05)
            if acct["upstream_file_bytes"]:
                self.R.notes.append(f"W2: modelfs fetched {acct['upstream_file_bytes']} bytes "
                                    "from upstream on a warm read")
            self.drop()
            local.append(timed([["cat"] + chunks], 600)[0])
        self.R.row("W2", "modelfs", mf, peer=False, MBps=n / median(mf) / 1e6)
        self.R.row("W2", "local disk: cat of the cache's chunk files", local,
                   MBps=on_disk / median(local) / 1e6, chunk_files=len(chunks))

    def w3_hot(self):
        key, n = self.big, self.size(self.big)
        self.ensure_cached_mount()
        self.R.workload("W3", "Hot read: page cache warm", "time", "s")
        p, local = self.mfs.path(key), self.up.files[key]["local"]
        timed([["cat", p]], 600)
        timed([["cat", local]], 600)
        mf, lf = [], []
        for _ in range(max(self.runs, 7)):  # cheap and noisy: more runs
            mf.append(timed([["cat", p]], 600)[0])
            lf.append(timed([["cat", local]], 600)[0])
        self.R.row("W3", "modelfs", mf, peer=False, MBps=n / median(mf) / 1e6)
        self.R.row("W3", "local file (cat)", lf, MBps=n / median(lf) / 1e6)

    # ---------------------------------------------------------------- W4 random reads
    def fio(self, path, bs, runtime=None, number_ios=None):
        cmd = ["fio", "--name=r", f"--filename={path}", "--readonly", "--rw=randread",
               f"--bs={bs}", "--ioengine=psync", "--direct=0", "--iodepth=1", "--numjobs=1",
               "--randrepeat=0", "--invalidate=1", "--output-format=json",
               "--percentile_list=50:99"]
        if runtime:
            cmd += [f"--runtime={runtime}", "--time_based"]
        if number_ios:
            cmd += [f"--number_ios={number_ios}"]
        r = run(cmd, timeout=(runtime or 0) + 300)
        j = json.loads(r.stdout.decode()[r.stdout.find(b"{"):])
        rd = j["jobs"][0]["read"]
        pct = rd["clat_ns"].get("percentile", {})
        return {"iops": rd["iops"], "ios": rd["total_ios"],
                "p50_us": pct.get("50.000000", 0) / 1000, "p99_us": pct.get("99.000000", 0) / 1000,
                "mean_us": rd["clat_ns"]["mean"] / 1000}

    def http_rtt(self, key, size, count):
        """p50/p99 of `count` random ranges of `size` bytes on one keep-alive connection."""
        n = self.size(key)
        url = self.up.cdn_url(key)
        rnd = random.Random(size)
        cfg = []
        for _ in range(count + 1):
            off = rnd.randrange(0, n - size) // 4096 * 4096
            cfg.append(f'url = "{url}"\nrange = "{off}-{off + size - 1}"\noutput = "/dev/null"\n'
                       'write-out = "%{time_total} %{num_connects}\\n"\n')
        path = os.path.join(self.work, "run", "rtt.curlrc")
        with open(path, "w") as f:
            f.write("next\n".join(cfg))
        r = run(["curl", "-sS", "-K", path], timeout=300)
        lines = r.stdout.decode().split()
        times = [float(t) for t, c in zip(lines[0::2], lines[1::2])][1:]  # skip the connect
        conns = sum(int(c) for c in lines[1::2])
        times.sort()
        return {"p50_us": times[len(times) // 2] * 1e6,
                "p99_us": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6,
                "connects": conns}

    def w4_random(self):
        key = self.big
        R = self.R
        warm_rt = 2 if self.args.quick else 3
        cold_ios = {"4k": 200, "1m": 60}
        # warm: the whole file cached, page cache dropped before each run
        self.ensure_cached_mount()
        for bs in ("4k", "1m"):
            wid = f"W4-warm-{bs}"
            R.workload(wid, f"Warm random {bs} pread (in cache, page cache dropped): p50 "
                       "latency", "p50", "us")
            res, loc = [], []
            for _ in range(self.runs):
                self.drop()
                res.append(self.fio(self.mfs.path(key), bs, runtime=warm_rt))
                self.drop()
                loc.append(self.fio(self.up.files[key]["local"], bs, runtime=warm_rt))
            for name, rr, peer in (("modelfs", res, False),
                                   ("local file (page cache dropped)", loc, True)):
                R.row(wid, name, [r["p50_us"] for r in rr], peer=peer,
                      p99_us=median([r["p99_us"] for r in rr]),
                      iops=median([r["iops"] for r in rr]), per_run=rr)
        self.mfs.stop()
        # cold: fresh cache each run
        for bs in ("4k", "1m"):
            wid = f"W4-cold-{bs}"
            R.workload(wid, f"Cold random {bs} pread ({cold_ios[bs]} reads, empty cache): p50 "
                       "latency", "p50", "us")
            size = 4096 if bs == "4k" else MIB
            res, rtt = [], []
            for _ in range(self.runs):
                self.mfs.start(fresh=True)
                # the open (metadata) is outside fio's timing; make sure it is done first
                os.stat(self.mfs.path(key))
                self.drop()
                m = self.up.mark()
                f = self.fio(self.mfs.path(key), bs, number_ios=cold_ios[bs])
                settle(self.mfs.pid, quiet=0.3)
                acct = self.up.since(m)
                f["amplification"] = acct["upstream_file_bytes"] / (f["ios"] * size)
                f.update(acct)
                res.append(f)
                self.mfs.stop()
                rtt.append(self.http_rtt(key, size, 100))
            R.row(wid, "modelfs", [r["p50_us"] for r in res], peer=False,
                  p99_us=median([r["p99_us"] for r in res]), iops=median([r["iops"] for r in res]),
                  amplification=median([r["amplification"] for r in res]), per_run=res)
            R.row(wid, f"one HTTP {bs} range request (curl, keep-alive)",
                  [r["p50_us"] for r in rtt], p99_us=median([r["p99_us"] for r in rtt]),
                  per_run=rtt)

    # ---------------------------------------------------------------- W5 model load
    def ttft(self, path):
        r = run(["node", os.path.join(HERE, "llama_ttft.mjs"), path], timeout=240)
        return json.loads(r.stdout.decode().strip().splitlines()[-1])

    def w5_model(self):
        key = self.gguf
        n = self.size(key)
        R = self.R
        R.workload("W5", f"Model load: node-llama-cpp, {n / 1e6:.0f} MB GGUF, time to first token "
                   "(ms since process start)", "ttft", "ms")
        local = self.up.files[key]["local"]
        self.ttft(local)  # the first run of node-llama-cpp may be slower; not counted
        loc, cold, warm, cold_acct = [], [], [], []
        for _ in range(self.runs):
            self.drop(runtime=True)
            loc.append(self.ttft(local))
            self.mfs.start(fresh=True)
            self.drop(runtime=True)
            m = self.up.mark()
            cold.append(self.ttft(self.mfs.path(key)))
            settle(self.mfs.pid)
            cold_acct.append(self.up.since(m))
            self.drop(runtime=True)
            warm.append(self.ttft(self.mfs.path(key)))
            self.mfs.stop()

        def row(name, rr, peer, **kw):
            R.row("W5", name, [r["first_token_ms"] for r in rr], peer=peer,
                  load_only_ms=median([r["load_only_ms"] for r in rr]),
                  init_ms=median([r["init_ms"] for r in rr]), per_run=rr, **kw)
        row("modelfs cold", cold, False,
            amplification=median([a["upstream_file_bytes"] / n for a in cold_acct]))
        row("modelfs warm (cached, page cache dropped)", warm, False)
        row("local disk (page cache dropped)", loc, True)

    # ---------------------------------------------------------------- W6 metadata
    def w6_metadata(self):
        R = self.R
        repo = "many-files"
        pages, entries = self.up.tree_pages(repo)
        self.meta_pages = pages
        nfiles = sum(1 for k in self.up.files if k.startswith(repo + "/"))
        R.workload("W6", f"Metadata: ls -lR of a repo with {nfiles} files ({entries} tree "
                   f"entries, {pages} pages of {self.up.page_size})", "time", "ms")
        ls = lambda p: timed([["ls", "-lR", p]], 120)[0] * 1000  # noqa: E731
        local_dir = os.path.dirname(self.up.files[f"{repo}/README.md"]["local"])
        cold, warm, warm_dropped, rc_cold, rc_warm, loc = [], [], [], [], [], []
        for _ in range(self.runs):
            self.mfs.start(fresh=True)
            self.drop()
            m = self.up.mark()
            t = ls(self.mfs.repo_path(repo))
            cold.append({"ms": t, **self.up.since(m, 0.1)})
            m = self.up.mark()
            t = ls(self.mfs.repo_path(repo))
            warm.append({"ms": t, **self.up.since(m, 0.1)})
            self.drop()
            warm_dropped.append({"ms": ls(self.mfs.repo_path(repo))})
            self.mfs.stop()
            self.rc.start(fresh=True)
            self.drop()
            m = self.up.mark()
            t = ls(os.path.join(self.rc.mnt, repo))
            a = self.up.since(m, 0.1)
            # rclone's listings and HEAD requests all go to nginx's CDN port: count every line
            rc_cold.append({"ms": t, "requests": a["file_requests"] + a["nginx_hub_requests"]})
            rc_warm.append({"ms": ls(os.path.join(self.rc.mnt, repo))})
            self.rc.stop()
            self.drop()
            loc.append(ls(local_dir))
        R.row("W6", "modelfs cold", [r["ms"] for r in cold], peer=False,
              hub_requests=median([r["hub_requests"] for r in cold]),
              hub_by_kind=cold[-1]["hub_by_kind"], tree_pages=pages)
        R.row("W6", "modelfs warm (same mount, 2nd ls)", [r["ms"] for r in warm], peer=False,
              hub_requests=median([r["hub_requests"] for r in warm]))
        R.row("W6", "modelfs warm after drop_caches", [r["ms"] for r in warm_dropped], peer=False)
        R.row("W6", "rclone mount cold", [r["ms"] for r in rc_cold],
              upstream_requests=median([r["requests"] for r in rc_cold]))
        R.row("W6", "rclone mount warm (2nd ls)", [r["ms"] for r in rc_warm])
        R.row("W6", "local dir (page cache dropped)", loc, peer=False)

    # ---------------------------------------------------------------- W7 parallel
    def w7_parallel(self):
        R = self.R
        psize = self.size(self.parts[0])
        for wid, keys, title in (
                ("W7-distinct", self.parts, f"Parallel: 4 processes, 4 different files of "
                                            f"{psize / MIB:g} MiB, cold"),
                ("W7-same", [self.parts[0]] * 4, f"Parallel: 4 processes, the same "
                                                 f"{psize / MIB:g} MiB file, cold")):
            R.workload(wid, title, "time", "s")
            uniq = psize * len(set(keys))
            systems = [("curl -o x4", lambda: self.cold_download(self.curl_cmd, keys)),
                       ("aria2c -x8 x4", lambda: self.cold_download(self.aria_cmd, keys)),
                       ("rclone mount", lambda: self.cold_cat_rclone(keys)),
                       ("modelfs", lambda: self.cold_cat_modelfs(keys))]
            res = {name: [] for name, _ in systems}
            for _ in range(self.runs):
                for name, fn in systems:
                    r = fn()
                    r["upstream_vs_unique"] = r["upstream_file_bytes"] / uniq
                    res[name].append(r)
            for name, rr in res.items():
                t = [r["time"] for r in rr]
                R.row(wid, name, t, peer=(name != "modelfs"), MBps=4 * psize / median(t) / 1e6,
                      upstream_vs_unique=median([r["upstream_vs_unique"] for r in rr]),
                      per_run=rr)

    # ---------------------------------------------------------------- targets
    def targets(self):
        R = self.R
        W = R.workloads
        c = R.ceilings

        def row(wid, system):
            for r in W.get(wid, {}).get("rows", []):
                if r["system"] == system:
                    return r
            return None
        w1 = row("W1", "modelfs")
        if w1:
            R.target("W1 cold sequential: time vs best of curl/aria2c/rclone",
                     w1.get("vs_best_peer"), 1.0, "<=", "x", f"best peer: {W['W1'].get('best_peer')}")
            if c:
                up = c["upstream_curl_1_stream_MBps"]["median"]
                dw = c["disk_write_fdatasync_MBps"]["median"]
                ceiling = min(up, dw)
                R.target("W1 cold sequential: time vs min(disk write, upstream) ceiling",
                         ceiling / w1["MBps"], 1.25, "<=", "x",
                         f"modelfs {w1['MBps']:.0f} MB/s; ceiling {ceiling:.0f} MB/s "
                         f"({'disk write' if dw < up else 'upstream curl'})")
            R.target("W8 amplification, sequential (upstream bytes / bytes read)",
                     w1["amplification"], 1.05, "<=", "x")
            R.target("W8 mount peak RSS while streaming", w1["rss_mib"], 256, "<", "MiB")
        r2 = row("W2", "modelfs")
        if r2:
            R.target("W2 warm: throughput vs local disk (cache chunk files)", 1 / r2["vs_best_peer"],
                     0.8, ">=", "x")
        r3 = row("W3", "modelfs")
        if r3:
            R.target("W3 hot: throughput vs local file", 1 / r3["vs_best_peer"], 0.9, ">=", "x")
        r4 = row("W4-cold-4k", "modelfs")
        if r4:
            R.target("W4 cold 4 KiB p50 vs one HTTP 4 KiB range round trip", r4["vs_best_peer"],
                     2.0, "<=", "x", f"modelfs p50 {r4['median']:.0f} us")
        r4w = row("W4-warm-4k", "modelfs")
        if r4w:
            R.target("W4 warm 4 KiB p50", r4w["median"], 200, "<=", "us")
        r5c = row("W5", "modelfs cold")
        r5w = row("W5", "modelfs warm (cached, page cache dropped)")
        if r5c:
            R.target("W5 model load cold vs local disk (time to first token)", r5c["vs_best_peer"],
                     1.5, "<=", "x")
            R.target("W5 model load warm vs local disk (time to first token)", r5w["vs_best_peer"],
                     1.1, "<=", "x")
            r5l = row("W5", "local disk (page cache dropped)")
            for label, r, thr in (("cold", r5c, 1.5), ("warm", r5w, 1.1)):
                R.target(f"W5 model load {label}, loadModel() alone vs local (info: excludes node "
                         "start-up)", r["load_only_ms"] / r5l["load_only_ms"], thr, "<=", "x",
                         f"{r['load_only_ms']:.0f} ms vs {r5l['load_only_ms']:.0f} ms")
        r6c = row("W6", "modelfs cold")
        r6w = row("W6", "modelfs warm (same mount, 2nd ls)")
        if r6c:
            R.target("W6 metadata cold: Hub requests", r6c["hub_requests"], 1 + self.meta_pages,
                     "<=", "requests", f"1 + {self.meta_pages} tree pages")
            R.target("W6 metadata warm ls -lR", r6w["median"], 100, "<", "ms")
        r7 = row("W7-same", "modelfs")
        if r7:
            R.target("W7 same file x4: upstream bytes / file size", r7["upstream_vs_unique"], 1.0,
                     "<=", "x")
        r7d = row("W7-distinct", "modelfs")
        if r7d:
            R.target("W7 4 different files: time vs best peer (no stated target)",
                     r7d.get("vs_best_peer"), 1.0, "<=", "x")
        r4c1 = row("W4-cold-1m", "modelfs")
        if r4 and r4c1:
            R.target("W8 amplification, random 4 KiB (no stated target)", r4["amplification"],
                     1.05, "<=", "x")
            R.target("W8 amplification, random 1 MiB (no stated target)", r4c1["amplification"],
                     1.05, "<=", "x")

    # ---------------------------------------------------------------- main
    def main(self):
        t0 = time.monotonic()
        meta = self.R.meta
        meta.update({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host_cpus": os.cpu_count(),
                     "mode": "quick" if self.args.quick else "full", "runs": self.runs,
                     "loadavg_start": os.getloadavg(), "kernel": os.uname().release,
                     "modelfs": self.args.modelfs, "page_size": self.args.page_size,
                     "big_file_bytes": None,
                     "source": os.environ.get("MODELFS_BENCH_SOURCE", "unknown"),
                     "build_note": os.environ.get("MODELFS_BENCH_BUILD_NOTE", "")})
        if meta["build_note"]:
            self.R.notes.append(meta["build_note"])
        for tool, cmd in (("nginx", ["nginx", "-v"]), ("curl", ["curl", "--version"]),
                          ("aria2c", ["aria2c", "--version"]), ("rclone", ["rclone", "version"]),
                          ("fio", ["fio", "--version"])):
            r = subprocess.run(cmd, capture_output=True, timeout=20)
            meta[tool] = (r.stdout or r.stderr).decode().splitlines()[0].strip()
        self.up.start()
        meta["big_file_bytes"] = self.size(self.big)
        meta["upstream_on_tmpfs"] = self.up.tmpfs
        steps = [("W0", self.w0_ceilings), ("W1", self.w1_cold_seq), ("W2", self.w2_warm),
                 ("W3", self.w3_hot), ("W4", self.w4_random), ("W5", self.w5_model),
                 ("W6", self.w6_metadata), ("W7", self.w7_parallel)]
        timings = {}
        try:
            for wid, fn in steps:
                if not self.want(wid):
                    continue
                s = time.monotonic()
                log(f"--- {wid}")
                try:
                    fn()
                except Exception as e:  # one broken workload must not lose the others
                    log(f"{wid} FAILED: {e}")
                    self.R.notes.append(f"{wid} failed: {e}")
                    self.mfs.stop()
                    self.rc.stop()
                timings[wid] = time.monotonic() - s
        finally:
            self.mfs.stop()
            self.rc.stop()
            self.up.stop()
        self.R.finish_ratios()
        self.targets()
        meta["workload_seconds"] = timings
        meta["bench_seconds"] = time.monotonic() - t0
        meta["loadavg_end"] = os.getloadavg()
        return self.R


# ------------------------------------------------------------------------------------ report

def to_markdown(R):
    m = R.meta
    out = [f"# modelfs benchmark ({m['mode']}, {m['date']})", ""]
    out.append(f"Median of {m['runs']} runs per figure. {m['host_cpus']} CPUs, kernel "
               f"{m['kernel']}, load average at start {m['loadavg_start'][0]:.2f}. Big file "
               f"{m['big_file_bytes'] / GIB:g} GiB. modelfs source {m.get('source')}. Upstream: hubsim behind {m['nginx']} "
               f"(sendfile on, blobs on {'tmpfs' if m.get('upstream_on_tmpfs') else 'disk'}). "
               f"Harness time {m['bench_seconds']:.0f} s (+ build and data in run.sh).")
    out.append("")
    if R.ceilings:
        out += ["## Physical ceilings", "", "| ceiling | median | runs |", "|---|---:|---|"]
        for k, v in R.ceilings.items():
            out.append(f"| {k} | {fmt(v['median'])} | {', '.join(fmt(x) for x in v['runs'])} |")
        out.append("")
    out += ["## Workloads", "",
            "`vs best peer`: this row's median / the best peer's median (for times and "
            "latencies lower is better; a row marked * is a peer).", "",
            "| workload | system | median | unit | vs best peer | MB/s | other |",
            "|---|---|---:|---|---:|---:|---|"]
    skip = {"system", "runs", "median", "peer", "vs_best_peer", "MBps", "per_run", "hub_by_kind"}
    for wid, w in R.workloads.items():
        for r in w["rows"]:
            other = ", ".join(f"{k} {fmt(v)}" for k, v in r.items()
                              if k not in skip and not isinstance(v, (list, dict)))
            name = r["system"] + (" *" if r["peer"] else "")
            out.append(f"| {wid} {w['title']} | {name} | {fmt(r['median'])} | {w['unit']} | "
                       f"{fmt(r.get('vs_best_peer'), 2)} | {fmt(r.get('MBps'))} | {other} |")
    out.append("")
    out += ["## Targets", "", "| target | measured | target | met |", "|---|---:|---:|---|"]
    for t in R.targets:
        met = {True: "met", False: "**MISSED**", None: "not measured"}[t["met"]]
        det = f" ({t['detail']})" if t["detail"] else ""
        out.append(f"| {t['target']}{det} | {fmt(t['measured'])} {t['unit']} | {t['op']} "
                   f"{fmt(t['threshold'])} {t['unit']} | {met} |")
    out.append("")
    if R.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in R.notes] + [""]
    out.append("Workload times: " + ", ".join(f"{k} {v:.0f}s" for k, v in
                                              m.get("workload_seconds", {}).items()))
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modelfs", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--only", help="comma-separated workload ids (W0..W7) for development")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--md", default=os.path.join(HERE, "results.md"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.py: needs root (drop_caches, FUSE)")
    args.work = os.path.abspath(args.work)
    os.makedirs(os.path.join(args.work, "run"), exist_ok=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    b = Bench(args)
    try:
        R = b.main()
    finally:
        for p in _children:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for mnt in (b.mfs.mnt, b.rc.mnt):
            unmount(mnt)
    data = {"meta": R.meta, "ceilings": R.ceilings, "workloads": R.workloads,
            "targets": R.targets, "notes": R.notes}
    with open(args.json, "w") as f:
        json.dump(data, f, indent=2, default=str)
    md = to_markdown(R)
    with open(args.md, "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
