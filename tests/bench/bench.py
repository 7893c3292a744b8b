#!/usr/bin/env python3
"""modelfs benchmark harness: every workload against modelfs and its peers, on this machine,
in one or more network profiles side by side.

    bench.py --modelfs BIN --work DIR --fixtures FX [--quick] [--runs 3] [--only W1,W6,...]
             [--profiles lan,wan[,wan-harsh]] [--wan-latency-ms 30] [--wan-rate 50M]
             [--harsh-latency-ms 80] [--harsh-rate 20M] [--slow-peer-runs 1]
             [--json OUT.json] [--md OUT.md]

Normally started by tests/bench/run.sh (which installs the tools, builds the Release binary
and generates the data). Needs root (drop_caches, FUSE). Everything talks to 127.0.0.1 only.

Upstream: tests/hubsim/hubsim.py answers the Hub API; one nginx (sendfile on) fronts it with a
pair of ports per profile: a Hub port (proxy, rewriting the simulator's CDN redirects to the
same profile's CDN port) and a CDN port serving the file bytes from a tmpfs copy of the LFS
blobs (/cdn/<sha256>/<name>, ETag = sha256 like the Hub's CDN) plus a browsable
/files/<repo>/<path> tree for rclone's http remote. `lan` is plain loopback; `wan` and
`wan-harsh` add a delay before every response of both ports (lua `ngx.sleep`, time to first
byte) and a per-connection rate cap on the bytes (`limit_rate`). Upstream file bytes are
counted from nginx's access log, Hub requests from the simulator's counters.

Workloads (README.md explains each): W0 ceilings, W1 cold sequential, W2 warm, W3 hot,
W4 random reads, W5 model load, W6 metadata, W7 parallel, W8 cost (columns of W1/W4),
W9 sharded safetensors model, W10 100,000-file listing and the mount's memory. Each figure is
the median of --runs runs; "vs best peer" is this row / the best peer for times (lower is
better). Workloads run one after the other; within one, each profile in turn, and within a
profile the systems are interleaved round by round.
"""

import argparse
import hashlib
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


def timed(cmds, timeout, cwd=None, env=None, hwm=None):
    """Starts every command at once; waits for all (bounded). Returns (wall seconds,
    [rusage]) and raises if any fails. stdout goes to /dev/null. If `hwm` is a list, it gets
    each command's peak RSS in MiB, sampled from /proc (VmHWM of the exec'd program): rusage's
    ru_maxrss is useless here, as it keeps the forking Python's RSS from before the exec."""
    procs = []
    t0 = time.perf_counter()
    for c in cmds:
        procs.append(subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      cwd=cwd, env=env))
    usages = {}
    peak = {p.pid: 0.0 for p in procs}
    next_sample = 0.0
    deadline = time.monotonic() + timeout
    pending = {p.pid: p for p in procs}
    while pending:
        if time.monotonic() > deadline:
            for p in pending.values():
                p.kill()
            for p in pending.values():
                p.wait(5)
            raise RuntimeError(f"timed out after {timeout}s: {cmds[0]}")
        if hwm is not None and time.monotonic() >= next_sample:
            next_sample = time.monotonic() + 0.02
            for cpid in pending:
                peak[cpid] = max(peak[cpid], proc_hwm_mib(cpid) or 0.0)
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
    if hwm is not None:
        hwm[:] = [peak[p.pid] for p in procs]
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


def proc_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(8 * MIB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def parse_rate(text):
    """'50M' -> 50e6 bytes/s (SI, like the issue's "50 MB/s"); also K, G or plain bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgG]?)[bB]?(/s)?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 50M)")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()])


# ------------------------------------------------------------------------------------ upstream

NGINX_CONF = r"""
{modules}
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
{servers}
}}
"""

# One pair per profile. {wan} is empty for lan; for a WAN profile it delays every response
# (access phase, before proxying or serving the file) and paces each connection.
NGINX_SERVERS = r"""
  # {profile}: the Hub. Everything goes to the simulator; its CDN redirects are rewritten to
  # this profile's CDN port.
  server {{
    listen 127.0.0.1:{hub};
{wan}
    location / {{
      proxy_pass http://hubsim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_redirect http://127.0.0.1:{sim_cdn}/ http://127.0.0.1:{cdn}/;
    }}
  }}
  # {profile}: the CDN. LFS bytes by sha256, with the Hub CDN's ETag (the sha256).
  server {{
    listen 127.0.0.1:{cdn};
{wan}
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
"""

# limit_rate delays the connection after each write by bytes/rate (whole milliseconds, rounded
# down), and sendfile writes up to sendfile_max_chunk at a time: a chunk of 5 ms worth of
# bytes keeps the pacing smooth (about 96% of the cap measured) and paces short ranges too
# (the last chunk of a response is not followed by a delay).
NGINX_WAN = r"""    access_by_lua_block {{ ngx.sleep({delay_s:.4f}) }}
    limit_rate {rate};
    sendfile_max_chunk {chunk};"""

LUA_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so",
               "/usr/lib/nginx/modules/ngx_http_lua_module.so")

# Repos that only modelfs reads: not copied into the /files/ tree (rclone's remote).
NOT_IN_TREE = ("many-files-100k/",)


class Upstream:
    def __init__(self, work, fixtures, page_size, profiles=None):
        """profiles: {name: None (lan) or {"latency_ms", "rate"}}; default: lan only."""
        self.work = work
        self.fixtures = fixtures
        self.profiles = profiles or {"lan": None}
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
        self.profile = None

    def repo_dir(self, repo):
        """The fixture folder holding `repo`'s files (its one commit)."""
        r = self.manifest["repos"][f"{ORG}/{repo}"]
        return os.path.join(self.fixtures, "repos", ORG, repo, r["branches"]["main"])

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
            if key.startswith(NOT_IN_TREE):
                continue
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
        wait_for(lambda: os.path.exists(ready) or self.sim.poll() is not None, 120, "hubsim")
        if self.sim.poll() is not None:
            raise RuntimeError("hubsim exited; see " + self.sim_log.name)
        with open(ready) as f:
            info = json.load(f)
        self.sim_hub = info["hub"]
        sim_hub_port = int(self.sim_hub.rsplit(":", 1)[1])
        sim_cdn_port = int(info["cdn"].rsplit(":", 1)[1])
        self.ports = {}  # profile -> (hub port, cdn port)
        servers = []
        for name, wan in self.profiles.items():
            hub, cdn = free_port(), free_port()
            while cdn == hub or any(cdn in p or hub in p for p in self.ports.values()):
                hub, cdn = free_port(), free_port()
            self.ports[name] = (hub, cdn)
            w = ""
            if wan:
                w = NGINX_WAN.format(delay_s=wan["latency_ms"] / 1000, rate=wan["rate"],
                                     chunk=max(16384, -(-wan["rate"] * 5 // 1000)))
            servers.append(NGINX_SERVERS.format(profile=name, hub=hub, cdn=cdn, wan=w,
                                                sim_cdn=sim_cdn_port, blobs=self.blobs,
                                                files=self.tree))
        self.cdn_ports = {c for _, c in self.ports.values()}
        modules = ""
        if any(self.profiles.values()):
            missing = [m for m in LUA_MODULES if not os.path.exists(m)]
            if missing:
                raise RuntimeError(f"WAN profiles need nginx's lua module ({missing[0]}): "
                                   "apt-get install libnginx-mod-http-lua (run.sh does)")
            modules = "\n".join(f"load_module {m};" for m in LUA_MODULES)
        conf = os.path.join(self.run_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(modules=modules, run=self.run_dir, sim_hub=sim_hub_port,
                                      servers="".join(servers)))
        self.access_log = os.path.join(self.run_dir, "access.log")
        open(self.access_log, "w").close()
        self.nginx = subprocess.Popen(["nginx", "-p", self.run_dir, "-c", conf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _children.append(self.nginx)

        def up():
            if self.nginx.poll() is not None:
                raise RuntimeError("nginx exited: " + self.nginx.stderr.read().decode())
            try:
                for hub, cdn in self.ports.values():
                    for port in (hub, cdn):
                        with socket.create_connection(("127.0.0.1", port), 0.2):
                            pass
                return True
            except OSError:
                return False
        wait_for(up, 20, "nginx")
        self.use(next(iter(self.profiles)))
        log("upstream: hubsim " + self.sim_hub + "; nginx " + ", ".join(
            f"{p}: hub :{h} cdn :{c}" for p, (h, c) in self.ports.items()))

    def use(self, profile):
        """Points every URL (and so every system started afterwards) at this profile."""
        self.profile = profile
        hub, cdn = self.ports[profile]
        self.hub_port, self.cdn_port = hub, cdn
        self.hub = f"http://127.0.0.1:{hub}"
        self.cdn = f"http://127.0.0.1:{cdn}"

    def check_profile(self, key):
        """Measures what the current profile delivers (curl -w: time to first byte on a new
        connection, the Hub's answer time, one connection's download rate) and fails if a WAN
        profile's delay is missing, so that a broken lua module cannot pass for a fast CDN."""
        wan = self.profiles[self.profile]
        url = self.cdn_url(key)
        fmt_w = "%{time_starttransfer} %{time_total} %{size_download}\\n"
        ttfb = []
        for _ in range(5):
            r = run(["curl", "-sSf", "-o", "/dev/null", "-r", "0-0", "-w", fmt_w, url], 30)
            ttfb.append(float(r.stdout.split()[0]) * 1000)
        r = run(["curl", "-sSf", "-o", "/dev/null", "-w", fmt_w,
                 f"{self.hub}/api/models/{ORG}/{key.split('/')[0]}"], 30)
        hub_ms = float(r.stdout.split()[0]) * 1000
        n = self.files[key]["size"]
        want = min(n, int((wan["rate"] * 2) if wan else GIB))  # ~2 s of the cap
        r = run(["curl", "-sSf", "-o", "/dev/null", "-r", f"0-{want - 1}", "-w", fmt_w, url], 120)
        t_first, t_total, got = (float(x) for x in r.stdout.split())
        rate = got / max(t_total - t_first, 1e-6)
        out = {"ttfb_ms_p50": median(ttfb), "hub_api_ms": hub_ms, "one_connection_MBps": rate / 1e6}
        if wan:
            out.update(latency_ms=wan["latency_ms"], rate_MBps=wan["rate"] / 1e6)
            if median(ttfb) < 0.8 * wan["latency_ms"] or hub_ms < 0.8 * wan["latency_ms"]:
                raise RuntimeError(f"profile {self.profile}: time to first byte "
                                   f"{median(ttfb):.1f} ms (Hub {hub_ms:.1f} ms), expected "
                                   f">= {wan['latency_ms']} ms: the nginx delay does not work")
            if rate > 1.15 * wan["rate"]:
                raise RuntimeError(f"profile {self.profile}: one connection ran at "
                                   f"{rate / 1e6:.0f} MB/s, cap {wan['rate'] / 1e6:.0f} MB/s: "
                                   "limit_rate does not work")
        log(f"profile {self.profile}: " + ", ".join(f"{k} {fmt(v)}" for k, v in out.items()))
        return out

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

    # --- URLs (of the current profile)
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
        conns, spans, sizes = set(), [], []
        for line in lines:
            p = line.split("\t")
            if len(p) < 9:
                continue
            port, uri, sent = int(p[1]), p[4], int(p[6])
            if port in self.cdn_ports and (uri.startswith("/cdn/") or uri.startswith("/files/")) \
                    and not uri.endswith("/"):
                file_bytes += sent
                file_reqs += 1
                conns.add(p[7])
                end = float(p[0])
                spans.append((end - float(p[8]), end))
                sizes.append(sent)
            else:
                hub_reqs += 1
        # file requests in flight at once (from each request's end time and duration)
        cur = peak = 0
        # (starts first on equal times: a LAN request often lasts 0.000 s in the log)
        for _, d in sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                           key=lambda ev: (ev[0], -ev[1])):
            cur += d
            peak = max(peak, cur)
        c, _ = http_json(self.sim_hub + "/_sim/counters")
        sim_reqs = sum(int(c.get(k, 0)) for k in ("api", "tree", "paths_info", "resolve", "raw",
                                                   "other"))
        return {"upstream_file_bytes": file_bytes, "file_requests": file_reqs,
                "file_connections": len(conns), "peak_requests_in_flight": peak,
                "median_request_bytes": median(sizes), "nginx_hub_requests": hub_reqs,
                "hub_requests": sim_reqs,
                "hub_by_kind": {k: c.get(k, 0) for k in ("api", "tree", "paths_info", "resolve",
                                                        "raw", "other")}}

    def tree_pages(self, repo):
        url = f"{self.sim_hub}/api/models/{ORG}/{repo}/tree/main?recursive=true"
        pages = entries = 0
        while url:
            body, headers = http_json(url, timeout=60)
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
        self.profile = None
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
        self.profile = self.up.profile
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

    def repo_path(self, repo):
        return os.path.join(self.mnt, ORG, repo)

    def path(self, key):
        repo, p = key.split("/", 1)
        return os.path.join(self.repo_path(repo), p)

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

    def prefetch_cmd(self, repo, patterns):
        return [self.bin, "prefetch", f"{ORG}/{repo}", *patterns, "--mount", self.mnt]

    def chunk_files(self, sha256, size):
        """The cache's own files holding content sha256, in order, and how they were found.
        Today: CACHE/chunks/xx/<sha256>/<n>. If that layout is gone (one data file per content
        is planned), any regular file under CACHE whose path names the sha256; failing that,
        every regular non-index file, if together they are about the content's size."""
        d = os.path.join(self.cache, "chunks", sha256[:2], sha256)
        if os.path.isdir(d):
            names = [n for n in os.listdir(d) if n.isdigit()]
            if names:
                return [os.path.join(d, n) for n in sorted(names, key=int)], "chunks/xx/<sha256>/<n>"
        named, other = [], []
        for dp, _, fns in os.walk(self.cache):
            for fn in fns:
                p = os.path.join(dp, fn)
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                (named if sha256 in p else other).append(p)
        key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)]  # noqa: E731
        if named:
            how = "files whose path names the sha256"
            log(f"W2: no chunks/xx/<sha256>/ layout; reading the {len(named)} {how}")
            return sorted(named, key=key), how
        other = [p for p in other if not re.search(r"(\.db|\.sqlite|-wal|-shm|\.sock|\.lock|"
                                                   r"\.json|\.log)$", p)]
        total = sum(os.path.getsize(p) for p in other)
        if other and size <= total <= size * 1.1 + 16 * MIB:
            how = "every data file of the cache (it holds only this content)"
            log(f"W2: no chunk layout and no file named after the sha256; reading {how}: "
                f"{len(other)} files, {total} bytes")
            return sorted(other, key=key), how
        raise RuntimeError(f"W2: cannot find the cache's files for {sha256} under {self.cache}")


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


NODE_MODULES = os.path.join(ROOT, "tests", "node", "node_modules")


class Downloader:
    """A peer that downloads files to local disk. cmds(keys, outdir) gives the commands for
    `keys` (one per key, or one for all) and where each file lands. `slow` marks peers with
    at most 3 connections per file: at a WAN rate cap their time is about size / (n x rate)
    (2 GiB at 50 MB/s on one connection: 43 s), so --slow-peer-runs applies to them there."""

    def __init__(self, name, up, slow=False):
        self.name, self.up, self.slow = name, up, slow

    def cmds(self, keys, outdir):
        outs = [os.path.join(outdir, f"o{i}-" + os.path.basename(k)) for i, k in enumerate(keys)]
        return [self.cmd(k, o) for k, o in zip(keys, outs)], outs


class Curl(Downloader):
    def __init__(self, up):
        super().__init__("curl -o", up, slow=True)

    def cmd(self, key, out):
        return ["curl", "-sSfL", "--max-time", "900", "-o", out, self.up.resolve_url(key)]


class Aria2(Downloader):
    def __init__(self, up, x):
        super().__init__(f"aria2c -x{x}", up)
        self.x = x

    def cmd(self, key, out):
        return ["aria2c", "--no-conf", "-q", f"-x{self.x}", f"-s{self.x}",
                "--file-allocation=falloc", "--allow-overwrite=true",
                "--auto-file-renaming=false", "--timeout=60", "-d", os.path.dirname(out),
                "-o", os.path.basename(out), self.up.resolve_url(key)]


class LlamaPull(Downloader):
    """node-llama-cpp's own downloader (ipull): parallel ranges, HF_ENDPOINT honoured for
    hf: URIs; 3 streams per file (ipull's default parallelStreams for Node). The package's
    bin is run directly (what `npx --no-install node-llama-cpp` runs, without npm's own
    start-up)."""

    def __init__(self, up):
        super().__init__("node-llama-cpp pull", up, slow=True)

    def cmd(self, key, out):
        repo, path = key.split("/", 1)
        return ["node", os.path.join(NODE_MODULES, "node-llama-cpp", "dist", "cli", "cli.js"),
                "pull", "--noProgress", "--override", "--dir", os.path.dirname(out),
                "--filename", os.path.basename(out), f"hf:{ORG}/{repo}/{path}"]


class HfHub(Downloader):
    """@huggingface/hub downloadFileToCacheDir (tests/bench/hfhub_download.mjs): one
    streamed GET per file into its models--org--name cache layout."""

    def __init__(self, up):
        super().__init__("@huggingface/hub", up, slow=True)

    def cmds(self, keys, outdir):
        cmds, outs = [], []
        for i, k in enumerate(keys):
            repo, path = k.split("/", 1)
            cache = os.path.join(outdir, f"hf{i}")
            cmds.append(["node", os.path.join(HERE, "hfhub_download.mjs"), "--hub", self.up.hub,
                         "--cache-dir", cache, f"{ORG}/{repo}", path])
            etag = self.up.files[k]["etag"]
            outs.append(os.path.join(cache, f"models--{ORG}--{repo}", "blobs", etag))
        return cmds, outs

    def snapshot_cmd(self, repo, paths, outdir):
        """All files of one repo in one process (how a script fetches a checkpoint); returns
        (cmd, snapshot folder)."""
        sha = self.up.manifest["repos"][f"{ORG}/{repo}"]["branches"]["main"]
        return (["node", os.path.join(HERE, "hfhub_download.mjs"), "--hub", self.up.hub,
                 "--cache-dir", outdir, f"{ORG}/{repo}", *paths],
                os.path.join(outdir, f"models--{ORG}--{repo}", "snapshots", sha))


# ------------------------------------------------------------------------------------ results

class Results:
    """workloads[wid] = {title, metric, unit, lower_is_better, only (profiles it runs in, None
    = every profile), by_profile: {profile: {rows, best_peer}}}. Rows and workloads go to the
    current profile (self.profile)."""

    def __init__(self, meta):
        self.meta = meta
        self.profile = "lan"
        self.ceilings = {}    # profile -> {name: {runs, median}}
        self.workloads = {}
        self.targets = []
        self.notes = []

    def workload(self, wid, title, metric, unit, lower_is_better=True, only=None):
        w = self.workloads.setdefault(wid, {"title": title, "metric": metric, "unit": unit,
                                            "lower_is_better": lower_is_better, "only": only,
                                            "by_profile": {}})
        w["by_profile"].setdefault(self.profile, {"rows": []})
        return w

    def rows(self, wid, profile=None):
        w = self.workloads.get(wid)
        p = w and w["by_profile"].get(profile or self.profile)
        return p["rows"] if p else []

    def row(self, wid, system, runs, peer=True, **extra):
        w = self.workloads[wid]
        r = {"system": system, "runs": runs, "median": median(runs), "peer": peer}
        r.update(extra)
        w["by_profile"][self.profile]["rows"].append(r)
        log(f"{wid} [{self.profile}] {system}: median {fmt(r['median'])} {w['unit']}  runs "
            f"{[fmt(x) for x in runs]}"
            + "".join(f"  {k}={fmt(v)}" for k, v in extra.items() if not isinstance(v, (dict, list))))
        return r

    def finish_ratios(self):
        for w in self.workloads.values():
            for p in w["by_profile"].values():
                peers = [r for r in p["rows"] if r["peer"] and r["median"] is not None]
                if not peers:
                    continue
                best = (min if w["lower_is_better"] else max)(peers, key=lambda r: r["median"])
                p["best_peer"] = best["system"]
                for r in p["rows"]:
                    if r["median"] is not None and best["median"]:
                        r["vs_best_peer"] = r["median"] / best["median"]

    def target(self, name, measured, threshold, op, unit="", detail="", profile=None):
        if measured is None:
            met = None
        else:
            met = {"<=": measured <= threshold, "<": measured < threshold,
                   ">=": measured >= threshold}[op]
        self.targets.append({"profile": profile or self.profile, "target": name,
                             "measured": measured, "threshold": threshold, "op": op,
                             "unit": unit, "met": met, "detail": detail})


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

def build_profiles(args):
    """Ordered {name: None (lan) | {latency_ms, rate}} from --profiles."""
    known = {"lan": None,
             "wan": {"latency_ms": args.wan_latency_ms, "rate": args.wan_rate},
             "wan-harsh": {"latency_ms": args.harsh_latency_ms, "rate": args.harsh_rate}}
    out = {}
    for p in args.profiles.split(","):
        p = p.strip()
        if p not in known:
            raise SystemExit(f"bench.py: unknown profile {p!r} (lan, wan, wan-harsh)")
        out[p] = known[p]
    return out


def describe_profile(name, wan):
    if not wan:
        return f"{name}: loopback, no added latency or rate cap"
    return (f"{name}: {wan['latency_ms']:g} ms before every response (Hub and CDN ports), "
            f"{wan['rate'] / 1e6:g} MB/s per connection")


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.runs = args.runs
        self.profiles = build_profiles(args)
        # workloads that involve no network (or only the LAN figures the issue asks for)
        # run once, in this profile
        self.base_profile = "lan" if "lan" in self.profiles else next(iter(self.profiles))
        self.up = Upstream(args.work, args.fixtures, args.page_size, self.profiles)
        self.mfs = Modelfs(args.modelfs, args.work, self.up)
        self.rc = Rclone(args.work, self.up)
        self.out_dir = os.path.join(args.work, "out")
        self.big = "big-file/weights.bin"
        self.parts = [f"parallel/part-{i}.bin" for i in range(4)]
        self.gguf = "gguf/model.gguf"
        self.only = set(args.only.split(",")) if args.only else None
        self.runtime_paths = [os.path.realpath(shutil.which("node")),
                              os.path.join(NODE_MODULES, "node-llama-cpp", "dist"),
                              os.path.join(NODE_MODULES, "@node-llama-cpp"),
                              os.path.join(NODE_MODULES, "node-llama-cpp", "package.json")]
        self.downloaders = [Curl(self.up), Aria2(self.up, 8), Aria2(self.up, 16),
                            LlamaPull(self.up), HfHub(self.up)]
        self.verified = set()   # (system, profile, key) whose download was sha256-checked
        self.st_ref = None      # the sharded loader's result on the local fixture
        self.node_warmed = False
        self.R = Results({})

    @property
    def prof(self):
        return self.R.profile

    @property
    def wan(self):
        return self.profiles[self.prof]

    @property
    def in_base(self):
        return self.prof == self.base_profile

    def runs_for(self, slow):
        """Peers with 1-3 connections at a WAN rate cap take about size / (n x rate) every
        time (2 GiB at 50 MB/s on one: 43 s): --slow-peer-runs of them there."""
        return min(self.runs, self.args.slow_peer_runs) if slow and self.wan else self.runs

    def want(self, wid):
        return self.only is None or wid in self.only

    def drop(self, runtime=False):
        drop_caches(self.up.prewarm_paths() + (self.runtime_paths if runtime else []))

    def size(self, key):
        return self.up.files[key]["size"]

    def clean_out(self):
        rm_rf(self.out_dir)
        os.makedirs(self.out_dir)

    def dl_env(self):
        return dict(os.environ, HF_ENDPOINT=self.up.hub, NODE_NO_WARNINGS="1")

    def verify(self, system, key, path):
        """sha256 of a downloaded file, once per (system, profile, file), outside the timing."""
        tag = (system, self.prof, key)
        if tag in self.verified:
            return
        want = self.up.files[key]["sha256"]
        got = sha256_file(path)
        if got != want:
            raise RuntimeError(f"{system} [{self.prof}] downloaded wrong bytes for {key}: "
                               f"sha256 {got}, expected {want}")
        self.verified.add(tag)
        log(f"verified sha256 of {key} from {system} [{self.prof}]")

    # ---------------------------------------------------------------- W0 ceilings
    def w0_ceilings(self):
        n = self.size(self.big)
        url = self.up.cdn_url(self.big)
        c = {}
        chk = self.R.meta["profiles"][self.prof].get("measured") or self.up.check_profile(self.big)
        if self.wan:
            c["upstream_ttfb_ms_p50"] = {"runs": [chk["ttfb_ms_p50"]], "median": chk["ttfb_ms_p50"]}
            c["upstream_hub_api_ms"] = {"runs": [chk["hub_api_ms"]], "median": chk["hub_api_ms"]}
            # one connection at the cap: ~2 s of bytes (a whole 2 GiB would take 43 s)
            c["upstream_curl_1_stream_MBps"] = {"runs": [chk["one_connection_MBps"]],
                                                "median": chk["one_connection_MBps"]}
            streams = 16
        else:
            runs = []
            for _ in range(self.runs):
                wall, _ = timed([["curl", "-sSf", "--max-time", "300", "-o", "/dev/null", url]], 300)
                runs.append(n / wall / 1e6)
            c["upstream_curl_1_stream_MBps"] = {"runs": runs, "median": median(runs)}
            streams = 4
        runs = []
        q = n // streams
        for _ in range(self.runs):
            cmds = [["curl", "-sSf", "--max-time", "300", "-o", "/dev/null", "-r",
                     f"{i * q}-{n - 1 if i == streams - 1 else (i + 1) * q - 1}", url]
                    for i in range(streams)]
            wall, _ = timed(cmds, 300)
            runs.append(n / wall / 1e6)
        c[f"upstream_curl_{streams}_streams_MBps"] = {"runs": runs, "median": median(runs)}
        if self.in_base:
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
                wall, _ = timed([["dd", f"if={src}", f"of={dst}", "bs=4M",
                                  f"count={dn // (4 * MIB)}", "conv=fdatasync", "status=none"]], 300)
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
        self.R.ceilings[self.prof] = c
        for k, v in c.items():
            log(f"W0 [{self.prof}] {k}: {fmt(v['median'])}  runs {[fmt(x) for x in v['runs']]}")

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
        wall, _ = timed([["cat", self.mfs.path(k)] for k in keys], 900)
        cpu1 = proc_cpu(self.mfs.pid)
        waited = settle(self.mfs.pid)
        cpu2 = proc_cpu(self.mfs.pid)
        acct = self.up.since(m)
        r = {"time": wall, "rss_mib": proc_hwm_mib(self.mfs.pid), "cpu_s": cpu1 - cpu0,
             "cpu_s_incl_background": cpu2 - cpu0, "background_s": waited, **acct}
        if not keep:
            self.mfs.stop()
        return r

    def cold_prefetch_modelfs(self, repo, patterns, keys):
        """Fresh mount and cache, page cache dropped, `modelfs prefetch` through the mount."""
        self.mfs.start(fresh=True)
        for k in keys:
            os.stat(self.mfs.path(k))
        self.drop()
        m = self.up.mark()
        cpu0 = proc_cpu(self.mfs.pid)
        wall, ru = timed([self.mfs.prefetch_cmd(repo, patterns)], 900)
        cpu1 = proc_cpu(self.mfs.pid)
        acct = self.up.since(m)
        r = {"time": wall, "rss_mib": proc_hwm_mib(self.mfs.pid), "cpu_s": cpu1 - cpu0,
             "cli_cpu_s": ru[0].ru_utime + ru[0].ru_stime, **acct}
        self.mfs.stop()
        return r

    def cold_cat_rclone(self, keys):
        self.rc.start(fresh=True)
        for k in set(keys):
            os.stat(self.rc.path(k))
        self.drop()
        m = self.up.mark()
        cpu0 = proc_cpu(self.rc.pid)
        wall, _ = timed([["cat", self.rc.path(k)] for k in keys], 900)
        cpu1 = proc_cpu(self.rc.pid)
        acct = self.up.since(m)
        r = {"time": wall, "rss_mib": proc_hwm_mib(self.rc.pid), "cpu_s": cpu1 - cpu0, **acct}
        self.rc.stop()
        return r

    def cold_download(self, dl, keys):
        self.clean_out()
        cmds, outs = dl.cmds(keys, self.out_dir)
        self.drop()
        m = self.up.mark()
        hwm = []
        wall, ru = timed(cmds, 900, env=self.dl_env(), hwm=hwm)
        acct = self.up.since(m)
        for k, o in zip(keys, outs):
            if os.path.getsize(o) != self.size(k):
                raise RuntimeError(f"{dl.name}: {o} has {os.path.getsize(o)} bytes")
            self.verify(dl.name, k, o)
        self.clean_out()
        return {"time": wall, "rss_mib": max(hwm),
                "cpu_s": sum(u.ru_utime + u.ru_stime for u in ru), **acct}

    # ---------------------------------------------------------------- W1, W8 cold sequential
    def w1_cold_seq(self):
        key, n = self.big, self.size(self.big)
        R = self.R
        R.workload("W1", f"Cold sequential read of {n / GIB:g} GiB (cat / download)", "time", "s")
        systems = [(dl.name, dl.slow, (lambda dl=dl: self.cold_download(dl, [key])))
                   for dl in self.downloaders]
        systems += [("rclone mount", True, lambda: self.cold_cat_rclone([key])),
                    ("modelfs", False, lambda: self.cold_cat_modelfs([key])),
                    ("modelfs prefetch", False,
                     lambda: self.cold_prefetch_modelfs("big-file", ["weights.bin"], [key]))]
        # No W1 target compares with these peers (the targets name curl, aria2c -x16 and
        # prefetch): they are context, run --slow-peer-runs times in every profile, which keeps
        # the whole benchmark near 20 minutes.
        context = {"aria2c -x8", "node-llama-cpp pull", "@huggingface/hub", "rclone mount"}
        rows = {name: [] for name, _, _ in systems}
        for i in range(self.runs):
            for name, slow, fn in systems:
                runs = (min(self.runs, self.args.slow_peer_runs) if name in context
                        else self.runs_for(slow))
                if i < runs:
                    rows[name].append(fn())
        for name, rr in rows.items():
            times = [r["time"] for r in rr]
            extra = {}
            if name.startswith("modelfs"):
                extra = {"peak_requests_in_flight": median([r["peak_requests_in_flight"] for r in rr]),
                         "median_request_bytes": median([r["median_request_bytes"] for r in rr])}
            R.row("W1", name, times, peer=not name.startswith("modelfs"),
                  MBps=n / median(times) / 1e6, rss_mib=median([r["rss_mib"] for r in rr]),
                  cpu_s_per_gib=median([r["cpu_s"] / (n / GIB) for r in rr]),
                  cpu_s_per_gib_incl_background=median(
                      [r.get("cpu_s_incl_background", r["cpu_s"]) / (n / GIB) for r in rr]),
                  amplification=median([r["upstream_file_bytes"] / n for r in rr]),
                  file_requests=median([r["file_requests"] for r in rr]),
                  file_connections=median([r["file_connections"] for r in rr]),
                  hub_requests=median([r["hub_requests"] for r in rr]),
                  **extra, per_run=rr)

    # ---------------------------------------------------------------- W2 warm, W3 hot
    def ensure_cached_mount(self):
        """A modelfs mount of this profile whose cache holds the whole big file. The cache
        dir left by W1 is reused (fresh=False): then the `cat` is served from the cache."""
        if self.mfs.proc is None or self.mfs.profile != self.prof:
            self.mfs.start(fresh=False)
            timed([["cat", self.mfs.path(self.big)]], 900)
        settle(self.mfs.pid)

    def w2_warm(self):
        key, n = self.big, self.size(self.big)
        self.ensure_cached_mount()
        self.R.workload("W2", "Warm read: in the modelfs cache, page cache dropped (no network: "
                        "measured once)", "time", "s", only=[self.prof])
        chunks, how = self.mfs.chunk_files(self.up.files[key]["sha256"], n)
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
        self.R.row("W2", "local disk: cat of the cache's own files", local,
                   MBps=on_disk / median(local) / 1e6, cache_files=len(chunks), found_by=how)

    def w3_hot(self):
        key, n = self.big, self.size(self.big)
        self.ensure_cached_mount()
        self.R.workload("W3", "Hot read: page cache warm (no network: measured once)", "time", "s",
                        only=[self.prof])
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
        # a WAN miss costs >= one round trip: fewer reads keep a run short, p50 stays stable
        cold_ios = {"4k": 100, "1m": 40} if self.wan else {"4k": 200, "1m": 60}
        rtt_count = 50 if self.wan else 100
        if self.in_base:
            # warm (no network): the whole file cached, page cache dropped before each run
            self.ensure_cached_mount()
            for bs in ("4k", "1m"):
                wid = f"W4-warm-{bs}"
                R.workload(wid, f"Warm random {bs} pread (in cache, page cache dropped; no "
                           "network: measured once): p50 latency", "p50", "us", only=[self.prof])
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
            R.workload(wid, f"Cold random {bs} pread (empty cache; {200 if bs == '4k' else 60} "
                       f"reads, {100 if bs == '4k' else 40} in WAN profiles): p50 latency",
                       "p50", "us")
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
                rtt.append(self.http_rtt(key, size, rtt_count))
            R.row(wid, "modelfs", [r["p50_us"] for r in res], peer=False,
                  p99_us=median([r["p99_us"] for r in res]), iops=median([r["iops"] for r in res]),
                  amplification=median([r["amplification"] for r in res]),
                  peak_requests_in_flight=median([r["peak_requests_in_flight"] for r in res]),
                  per_run=res)
            R.row(wid, f"one HTTP {bs} range request (curl, keep-alive)",
                  [r["p50_us"] for r in rtt], p99_us=median([r["p99_us"] for r in rtt]),
                  per_run=rtt)

    # ---------------------------------------------------------------- W5 model load
    def ttft(self, path):
        r = run(["node", os.path.join(HERE, "llama_ttft.mjs"), path], timeout=240)
        return json.loads(r.stdout.decode().strip().splitlines()[-1])

    def best_downloader(self):
        """The fastest download peer of W1 in this profile (so W1 must run first)."""
        by_name = {d.name: d for d in self.downloaders}
        rows = [r for r in self.R.rows("W1") if r["system"] in by_name and r["median"]]
        if rows:
            best = min(rows, key=lambda r: r["median"])
            return by_name[best["system"]], f"fastest download peer of W1 [{self.prof}]"
        dl = by_name["aria2c -x16"]
        note = f"W1 did not run in {self.prof}: assumed {dl.name} is the best downloader"
        if note not in self.R.notes:
            self.R.notes.append(note)
        return dl, "assumed (W1 not run)"

    def w5_model(self):
        key = self.gguf
        n = self.size(key)
        R = self.R
        dl, why = self.best_downloader()
        R.workload("W5", f"Model load: node-llama-cpp, {n / 1e6:.0f} MB GGUF, time to first token "
                   "(ms since the node process started; for a downloader: + the download)",
                   "ttft", "ms")
        local = self.up.files[key]["local"]
        if not self.node_warmed:
            self.ttft(local)  # the first run of node-llama-cpp may be slower; not counted
            self.node_warmed = True
        loc, cold, warm, cold_acct, peer = [], [], [], [], []
        for _ in range(self.runs):
            if self.in_base:
                self.drop(runtime=True)
                loc.append(self.ttft(local))
            self.mfs.start(fresh=True)
            self.drop(runtime=True)
            m = self.up.mark()
            cold.append(self.ttft(self.mfs.path(key)))
            settle(self.mfs.pid)
            cold_acct.append(self.up.since(m))
            if self.in_base:  # warm involves no network
                self.drop(runtime=True)
                warm.append(self.ttft(self.mfs.path(key)))
            self.mfs.stop()
            # download, then load the fresh copy (still in the page cache, as in real life)
            self.clean_out()
            cmds, outs = dl.cmds([key], self.out_dir)
            self.drop(runtime=True)
            wall, _ = timed(cmds, 900, env=self.dl_env())
            t = self.ttft(outs[0])
            t["download_ms"] = wall * 1000
            t["ttft_after_download_ms"] = t["first_token_ms"]
            t["first_token_ms"] += wall * 1000
            self.verify(dl.name, key, outs[0])
            self.clean_out()
            peer.append(t)

        def row(name, rr, is_peer, **kw):
            R.row("W5", name, [r["first_token_ms"] for r in rr], peer=is_peer,
                  load_only_ms=median([r["load_only_ms"] for r in rr]),
                  init_ms=median([r["init_ms"] for r in rr]), per_run=rr, **kw)
        row("modelfs cold", cold, False,
            amplification=median([a["upstream_file_bytes"] / n for a in cold_acct]),
            peak_requests_in_flight=median([a["peak_requests_in_flight"] for a in cold_acct]))
        if warm:
            row("modelfs warm (cached, page cache dropped)", warm, False)
        row("best downloader, then load from local disk", peer, True,
            download_ms=median([r["download_ms"] for r in peer]),
            ttft_after_download_ms=median([r["ttft_after_download_ms"] for r in peer]),
            downloader=dl.name, chosen=why)
        if loc:
            row("local disk only (page cache dropped; reference)", loc, False)

    # ---------------------------------------------------------------- W6 metadata
    def w6_metadata(self):
        R = self.R
        repo = "many-files"
        pages, entries = self.up.tree_pages(repo)
        self.meta_pages = pages
        nfiles = sum(1 for k in self.up.files if k.startswith(repo + "/"))
        R.workload("W6", f"Metadata: ls -lR of a repo with {nfiles} files ({entries} tree "
                   f"entries, {pages} pages of {self.up.page_size})", "time", "ms")
        ls = lambda p: timed([["ls", "-lR", p]], 300)[0] * 1000  # noqa: E731
        local_dir = self.up.repo_dir(repo)
        cold, warm, warm_dropped, rc_cold, rc_warm, loc = [], [], [], [], [], []
        for i in range(self.runs):
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
            # rclone HEADs every file on a cold listing (1,113 requests; ~10 s in wan)
            if i < self.runs_for(True):
                self.rc.start(fresh=True)
                self.drop()
                m = self.up.mark()
                t = ls(os.path.join(self.rc.mnt, repo))
                a = self.up.since(m, 0.1)
                # rclone's listings and HEAD requests all go to nginx's CDN port: count them all
                rc_cold.append({"ms": t, "requests": a["file_requests"] + a["nginx_hub_requests"]})
                rc_warm.append({"ms": ls(os.path.join(self.rc.mnt, repo))})
                self.rc.stop()
            if self.in_base:
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
        if loc:
            R.row("W6", "local dir (page cache dropped)", loc, peer=False)

    # ---------------------------------------------------------------- W7 parallel
    def w7_parallel(self):
        R = self.R
        psize = self.size(self.parts[0])
        curl, aria8 = self.downloaders[0], self.downloaders[1]
        for wid, keys, title in (
                ("W7-distinct", self.parts, f"Parallel: 4 processes, 4 different files of "
                                            f"{psize / MIB:g} MiB, cold"),
                ("W7-same", [self.parts[0]] * 4, f"Parallel: 4 processes, the same "
                                                 f"{psize / MIB:g} MiB file, cold")):
            R.workload(wid, title, "time", "s")
            uniq = psize * len(set(keys))
            systems = [("curl -o x4", True, lambda: self.cold_download(curl, keys)),
                       ("aria2c -x8 x4", False, lambda: self.cold_download(aria8, keys)),
                       ("rclone mount", True, lambda: self.cold_cat_rclone(keys)),
                       ("modelfs", False, lambda: self.cold_cat_modelfs(keys))]
            res = {name: [] for name, _, _ in systems}
            for i in range(self.runs):
                for name, slow, fn in systems:
                    if i < self.runs_for(slow):
                        r = fn()
                        r["upstream_vs_unique"] = r["upstream_file_bytes"] / uniq
                        res[name].append(r)
            for name, rr in res.items():
                t = [r["time"] for r in rr]
                R.row(wid, name, t, peer=(name != "modelfs"), MBps=4 * psize / median(t) / 1e6,
                      upstream_vs_unique=median([r["upstream_vs_unique"] for r in rr]),
                      rss_mib=median([r["rss_mib"] for r in rr]), per_run=rr)

    # ---------------------------------------------------------------- W9 sharded model
    def st_load(self, folder, timeout=900):
        t0 = time.perf_counter()
        r = run([sys.executable, os.path.join(HERE, "st_loader.py"), folder], timeout)
        wall = time.perf_counter() - t0
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        if self.st_ref and out["crc"] != self.st_ref["crc"]:
            raise RuntimeError(f"W9: the loader read other bytes from {folder} than from the "
                               f"local fixture: {out['crc']} vs {self.st_ref['crc']}")
        out["time"] = wall
        return out

    def w9_sharded(self):
        R = self.R
        repo = "sharded"
        if f"{ORG}/{repo}" not in self.up.manifest["repos"]:
            raise RuntimeError("no sharded repo in the fixtures: rerun gen_bench_fixtures.py")
        shards = sorted(k for k in self.up.files if k.startswith(repo + "/")
                        and k.endswith(".safetensors"))
        small = [f"{repo}/model.safetensors.index.json", f"{repo}/config.json"]
        total = sum(self.size(k) for k in shards)
        local_dir = self.up.repo_dir(repo)
        if self.st_ref is None:
            self.st_ref = self.st_load(local_dir)  # reference checksums, untimed
        dl, why = self.best_downloader()
        R.workload("W9", f"Sharded model: {len(shards)} safetensors shards of "
                   f"{self.size(shards[0]) / MIB:g} MiB + index, read by a loader shard after "
                   "shard (parse header, touch every tensor), cold", "time", "s")

        def mfs_loader():
            self.mfs.start(fresh=True)
            self.drop()
            m = self.up.mark()
            cpu0 = proc_cpu(self.mfs.pid)
            r = self.st_load(self.mfs.repo_path(repo))
            cpu1 = proc_cpu(self.mfs.pid)
            settle(self.mfs.pid)
            r.update(self.up.since(m), rss_mib=proc_hwm_mib(self.mfs.pid), cpu_s=cpu1 - cpu0)
            self.mfs.stop()
            return r

        def mfs_prefetch():
            return self.cold_prefetch_modelfs(repo, ["*.safetensors"], [])

        def download_then_load():
            self.clean_out()
            self.drop()
            m = self.up.mark()
            t0 = time.perf_counter()
            if isinstance(dl, HfHub):
                cmd, folder = dl.snapshot_cmd(repo, [k.split("/", 1)[1] for k in small + shards],
                                              self.out_dir)
                timed([cmd], 900, env=self.dl_env())
            else:
                folder = self.out_dir
                for k in small + shards:  # one file after the other, as a script would
                    timed([dl.cmd(k, os.path.join(folder, os.path.basename(k)))], 900,
                          env=self.dl_env())
            dl_s = time.perf_counter() - t0
            acct = self.up.since(m)
            r = self.st_load(folder)  # the fresh copies are in the page cache
            for k in shards:
                self.verify(dl.name, k, os.path.join(folder, os.path.basename(k)))
            self.clean_out()
            r.update(acct, download_s=dl_s, loader_s=r["time"])
            r["time"] += dl_s
            return r

        def local_only():
            self.drop()
            return self.st_load(local_dir)

        systems = [("modelfs cold: loader through the mount", False, mfs_loader),
                   ("modelfs prefetch of all shards", False, mfs_prefetch),
                   ("best downloader, then the loader on local disk", True,
                    download_then_load)]
        if self.in_base:
            systems.append(("loader on local disk only (page cache dropped; reference)", False,
                            local_only))
        res = {name: [] for name, _, _ in systems}
        for _ in range(self.runs):
            for name, _, fn in systems:
                res[name].append(fn())
        for name, is_peer, fn in systems:
            rr = res[name]
            t = [r["time"] for r in rr]
            extra = {}
            if "upstream_file_bytes" in rr[0]:
                extra["amplification"] = median([r["upstream_file_bytes"] / total for r in rr])
            if name.startswith("modelfs"):
                extra.update(rss_mib=median([r["rss_mib"] for r in rr]),
                             peak_requests_in_flight=median([r["peak_requests_in_flight"] for r in rr]))
            if "download_s" in rr[0]:
                extra.update(download_s=median([r["download_s"] for r in rr]),
                             loader_s=median([r["loader_s"] for r in rr]), downloader=dl.name,
                             chosen=why)
            R.row("W9", name, t, peer=is_peer, MBps=total / median(t) / 1e6, **extra, per_run=rr)

    # ---------------------------------------------------------------- W10 100k files
    def w10_many(self):
        R = self.R
        repo = "many-files-100k"
        if f"{ORG}/{repo}" not in self.up.manifest["repos"]:
            raise RuntimeError("no many-files-100k repo in the fixtures (gen_bench_fixtures.py "
                               "--no-100k?)")
        t0 = time.monotonic()
        pages, entries = self.up.tree_pages(repo)
        self.many_pages = pages
        log(f"W10: simulator lists {entries} entries in {pages} pages "
            f"({time.monotonic() - t0:.1f}s)")
        nfiles = sum(1 for k in self.up.files if k.startswith(repo + "/"))
        R.workload("W10", f"Metadata at scale: ls -lR of a repo with {nfiles} files ({entries} "
                   f"tree entries, {pages} pages of {self.up.page_size}) and the mount's RSS "
                   "(LAN only)", "time", "s", only=[self.prof])
        ls = lambda p: timed([["ls", "-lR", p]], 900)[0]  # noqa: E731
        # One mount: a cold listing costs ~15-20 s here, so it is taken once; the warm one
        # (the target) --runs times on the same mount; RSS before, after, after drop_caches.
        self.mfs.start(fresh=True)
        time.sleep(0.5)
        rss0 = proc_rss_mib(self.mfs.pid)
        self.drop()
        m = self.up.mark()
        cold = ls(self.mfs.repo_path(repo))
        acct = self.up.since(m, 0.1)
        warm = [ls(self.mfs.repo_path(repo)) for _ in range(self.runs)]
        rss1 = proc_rss_mib(self.mfs.pid)
        drop_caches()
        time.sleep(3)  # let the kernel's FORGETs reach the mount
        rss2 = proc_rss_mib(self.mfs.pid)
        hwm = proc_hwm_mib(self.mfs.pid)
        self.mfs.stop()
        loc = []
        for _ in range(self.runs):
            self.drop()
            loc.append(ls(self.up.repo_dir(repo)))
        R.row("W10", "modelfs cold (fresh mount)", [cold], peer=False,
              hub_requests=acct["hub_requests"], tree_pages=pages)
        R.row("W10", "modelfs warm (same mount, 2nd-4th ls)", warm, peer=False,
              rss_before_mib=rss0, rss_after_mib=rss1, rss_after_drop_mib=rss2, hwm_mib=hwm)
        R.row("W10", "local dir (page cache dropped)", loc, peer=False)

    # ---------------------------------------------------------------- targets
    def targets(self):
        """Every target of the issue's table in each profile it applies to (plus the older
        targets kept from the previous table), measured value, threshold, met or MISSED."""
        R = self.R

        def row(wid, system, prof, prefix=False):
            for r in R.rows(wid, prof):
                if r["system"] == system or (prefix and r["system"].startswith(system)):
                    return r
            return None

        def ratio(a, b):
            return a["median"] / b["median"] if a and b and a["median"] and b["median"] else None

        for prof, wan in self.profiles.items():
            R.profile = prof
            base = prof == self.base_profile
            cei = R.ceilings.get(prof, {})
            w1 = row("W1", "modelfs", prof)
            if w1:
                curl, a16 = row("W1", "curl -o", prof), row("W1", "aria2c -x16", prof)
                if wan:
                    R.target("W1 cold sequential (cat): time vs aria2c -x16", ratio(w1, a16), 1.0,
                             "<=", "x", f"modelfs {w1['MBps']:.0f} MB/s, aria2c -x16 "
                             f"{a16['MBps']:.0f} MB/s" if a16 else "")
                    R.target("W1 cold sequential (cat): time vs curl -o", ratio(w1, curl), 0.15,
                             "<=", "x", f"curl {curl['MBps']:.0f} MB/s" if curl else "")
                else:
                    R.target("W1 cold sequential (cat): time vs curl -o", ratio(w1, curl), 1.0,
                             "<=", "x", f"modelfs {w1['MBps']:.0f} MB/s, curl "
                             f"{curl['MBps']:.0f} MB/s" if curl else "")
                    R.target("W1 cold sequential: CPU-s/GiB of the mount incl. background work",
                             w1["cpu_s_per_gib_incl_background"], 2.0, "<=", "CPU-s/GiB",
                             f"curl {curl['cpu_s_per_gib']:.2f}" if curl else "")
                    if "disk_write_fdatasync_MBps" in cei:
                        up = cei["upstream_curl_1_stream_MBps"]["median"]
                        dw = cei["disk_write_fdatasync_MBps"]["median"]
                        R.target("W1 cold sequential: time vs min(disk write, upstream) ceiling "
                                 "(previous table)", min(up, dw) / w1["MBps"], 1.25, "<=", "x",
                                 f"ceiling {min(up, dw):.0f} MB/s "
                                 f"({'disk write' if dw < up else 'upstream curl'})")
                pf = row("W1", "modelfs prefetch", prof)
                R.target("W1 cold cat vs `modelfs prefetch` of the same file (section 2)",
                         ratio(w1, pf), 1.0, "<=", "x")
                R.target("W8 amplification, sequential (upstream bytes / bytes read)",
                         w1["amplification"], 1.05, "<=", "x")
                R.target("W8 mount peak RSS while streaming (W1)", w1["rss_mib"], 256, "<", "MiB",
                         f"{w1.get('peak_requests_in_flight')} requests in flight at peak")
            if base:
                r2 = row("W2", "modelfs", prof)
                if r2:
                    R.target("W2 warm: throughput vs the same bytes on local disk (cache files)",
                             1 / r2["vs_best_peer"], 0.9, ">=", "x")
                r3 = row("W3", "modelfs", prof)
                if r3:
                    R.target("W3 hot: throughput vs local file", 1 / r3["vs_best_peer"], 0.9,
                             ">=", "x")
                r4w = row("W4-warm-4k", "modelfs", prof)
                if r4w:
                    R.target("W4 warm 4 KiB p50 (previous table)", r4w["median"], 200, "<=", "us")
            r4 = row("W4-cold-4k", "modelfs", prof)
            if r4:
                R.target("W4 cold 4 KiB random read p50 vs one range request", r4.get("vs_best_peer"),
                         1.2, "<=", "x", f"modelfs p50 {r4['median']:.0f} us")
            r5c = row("W5", "modelfs cold", prof)
            if r5c:
                peer = row("W5", "best downloader", prof, prefix=True)
                R.target("W5 cold model load, time to first token vs best downloader then load"
                         + ("" if wan else " (info: the target is for WAN)"),
                         ratio(r5c, peer), 0.8, "<=", "x",
                         f"{r5c['median']:.0f} ms vs {peer['median']:.0f} ms with "
                         f"{peer['downloader']}" if peer else "")
                loc = row("W5", "local disk only", prof, prefix=True)
                r5w = row("W5", "modelfs warm (cached, page cache dropped)", prof)
                if loc:
                    R.target("W5 model load cold vs local disk (previous table)", ratio(r5c, loc),
                             1.5, "<=", "x")
                    if r5w:
                        R.target("W5 model load warm vs local disk (previous table)",
                                 ratio(r5w, loc), 1.1, "<=", "x")
            r9 = row("W9", "modelfs cold", prof, prefix=True)
            if r9:
                pf = row("W9", "modelfs prefetch", prof, prefix=True)
                R.target("W9 sharded model, loader through the mount vs `modelfs prefetch` of all "
                         "shards" + ("" if wan else " (info: the target is for WAN)"),
                         ratio(r9, pf), 1.1, "<=", "x",
                         f"{r9['median']:.2f} s vs {pf['median']:.2f} s" if pf else "")
                peer = row("W9", "best downloader", prof, prefix=True)
                R.target("W9 sharded model vs best downloader then loader (no stated target)",
                         ratio(r9, peer), 1.0, "<=", "x")
                R.target("W9 sharded model: amplification", r9.get("amplification"), 1.05, "<=", "x")
                R.target("W9 sharded model: mount peak RSS", r9.get("rss_mib"), 256, "<", "MiB")
            if base:
                r6c = row("W6", "modelfs cold", prof)
                r6w = row("W6", "modelfs warm (same mount, 2nd ls)", prof)
                if r6c:
                    R.target("W6 metadata cold: Hub requests (previous table)", r6c["hub_requests"],
                             1 + self.meta_pages, "<=", "requests",
                             f"1 + {self.meta_pages} tree pages")
                    R.target("W6 warm ls -lR, 1,000 files", r6w["median"], 100, "<", "ms")
                r10 = row("W10", "modelfs warm", prof, prefix=True)
                if r10:
                    R.target("W10 ls -lR of a 100,000-file repo, warm", r10["median"], 2.0, "<", "s")
                    b, a = r10["rss_before_mib"], r10["rss_after_drop_mib"]
                    R.target("W10 mount RSS after that listing and drop_caches vs before",
                             a / b if a and b else None, 1.25, "<=", "x",
                             f"{b:.0f} MiB before, {r10['rss_after_mib']:.0f} MiB after the ls, "
                             f"{a:.0f} MiB after drop_caches + 3 s" if a and b else "")
            r7 = row("W7-same", "modelfs", prof)
            if r7:
                R.target("W7 same file x4: upstream bytes / file size", r7["upstream_vs_unique"],
                         1.0, "<=", "x")
            r7d = row("W7-distinct", "modelfs", prof)
            if r7d:
                R.target("W7 4 different files: time vs best peer (no stated target)",
                         r7d.get("vs_best_peer"), 1.0, "<=", "x")
            r4c1 = row("W4-cold-1m", "modelfs", prof)
            if r4 and r4c1:
                R.target("W8 amplification, random 4 KiB (no stated target)", r4["amplification"],
                         1.05, "<=", "x")
                R.target("W8 amplification, random 1 MiB (no stated target)", r4c1["amplification"],
                         1.05, "<=", "x")

    # ---------------------------------------------------------------- main
    def main(self):
        t0 = time.monotonic()
        steal0 = cpu_steal()
        meta = self.R.meta
        meta.update({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host_cpus": os.cpu_count(),
                     "mode": "quick" if self.args.quick else "full", "runs": self.runs,
                     "slow_peer_runs": self.args.slow_peer_runs,
                     "loadavg_start": os.getloadavg(), "kernel": os.uname().release,
                     "modelfs": self.args.modelfs, "page_size": self.args.page_size,
                     "big_file_bytes": None,
                     "source": os.environ.get("MODELFS_BENCH_SOURCE", "unknown"),
                     "build_note": os.environ.get("MODELFS_BENCH_BUILD_NOTE", ""),
                     "profiles": {p: {"description": describe_profile(p, w), **(w or {})}
                                  for p, w in self.profiles.items()}})
        if meta["build_note"]:
            self.R.notes.append(meta["build_note"])
        for tool, cmd in (("nginx", ["nginx", "-v"]), ("curl", ["curl", "--version"]),
                          ("aria2c", ["aria2c", "--version"]), ("rclone", ["rclone", "version"]),
                          ("fio", ["fio", "--version"]), ("node", ["node", "--version"])):
            r = subprocess.run(cmd, capture_output=True, timeout=20)
            meta[tool] = (r.stdout or r.stderr).decode().splitlines()[0].strip()
        for pkg in ("node-llama-cpp", os.path.join("@huggingface", "hub")):
            with open(os.path.join(NODE_MODULES, pkg, "package.json")) as f:
                meta[pkg.replace(os.sep, "/")] = json.load(f)["version"]
        ALL, BASE = "all", "base"
        steps = [("W0", self.w0_ceilings, ALL), ("W1", self.w1_cold_seq, ALL),
                 ("W2", self.w2_warm, BASE), ("W3", self.w3_hot, BASE),
                 ("W4", self.w4_random, ALL), ("W5", self.w5_model, ALL),
                 ("W6", self.w6_metadata, ALL), ("W7", self.w7_parallel, ALL),
                 ("W9", self.w9_sharded, ALL), ("W10", self.w10_many, BASE)]
        timings = {}
        try:
            self.up.start()
            meta["big_file_bytes"] = self.size(self.big)
            meta["upstream_on_tmpfs"] = self.up.tmpfs
            for p in self.profiles:  # what each profile really delivers (and that WAN works)
                self.up.use(p)
                meta["profiles"][p]["measured"] = self.up.check_profile(self.big)
            for wid, fn, where in steps:
                if not self.want(wid):
                    continue
                for prof in (self.profiles if where == ALL else [self.base_profile]):
                    self.R.profile = prof
                    self.up.use(prof)
                    s = time.monotonic()
                    log(f"--- {wid} [{prof}]")
                    try:
                        fn()
                    except Exception as e:  # one broken workload must not lose the others
                        log(f"{wid} [{prof}] FAILED: {e}")
                        self.R.notes.append(f"{wid} [{prof}] failed: {e}")
                        self.mfs.stop()
                        self.rc.stop()
                    timings.setdefault(wid, {})[prof] = time.monotonic() - s
        finally:
            self.mfs.stop()
            self.rc.stop()
            self.up.stop()
            rm_rf(self.out_dir)
        self.R.finish_ratios()
        self.targets()
        meta["workload_seconds"] = timings
        meta["profile_seconds"] = {p: sum(t.get(p, 0) for t in timings.values())
                                   for p in self.profiles}
        meta["bench_seconds"] = time.monotonic() - t0
        meta["loadavg_end"] = os.getloadavg()
        # On a VM the host may take CPU time from it: every figure of a run with a large share
        # stolen is slower, peers included.
        steal1 = cpu_steal()
        meta["cpu_steal_pct"] = round(100 * (steal1[0] - steal0[0]) /
                                      max(1, steal1[1] - steal0[1]), 1)
        return self.R


def cpu_steal():
    """(steal, total) jiffies of all CPUs so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[7] if len(v) > 7 else 0, sum(v)


# ------------------------------------------------------------------------------------ report

UNIT_SUFFIX = {"s": " s", "ms": " ms", "us": " us"}


def to_markdown(R):
    m = R.meta
    profs = list(m["profiles"])
    out = [f"# modelfs benchmark ({m['mode']}, {m['date']})", ""]
    out.append(f"Median of {m['runs']} runs per figure (fewer where a row says `n=`). "
               f"{m['host_cpus']} CPUs, kernel {m['kernel']}, load average at start "
               f"{m['loadavg_start'][0]:.2f}, at the end {m['loadavg_end'][0]:.2f}, CPU time "
               f"stolen by the host {m.get('cpu_steal_pct', 0)}%. Big file "
               f"{m['big_file_bytes'] / GIB:g} GiB. modelfs source {m.get('source')}. Upstream: "
               f"hubsim behind {m['nginx']} (sendfile on, blobs on "
               f"{'tmpfs' if m.get('upstream_on_tmpfs') else 'disk'}). Harness time "
               f"{m['bench_seconds']:.0f} s (" + ", ".join(
                   f"{p} {m['profile_seconds'].get(p, 0):.0f} s" for p in profs)
               + "; + build and data in run.sh).")
    out += ["", "Profiles:"]
    for p, d in m["profiles"].items():
        me = d.get("measured") or {}
        out.append(f"- {d['description']} (measured: time to first byte "
                   f"{fmt(me.get('ttfb_ms_p50'))} ms, Hub API answer {fmt(me.get('hub_api_ms'))} "
                   f"ms, one connection {fmt(me.get('one_connection_MBps'))} MB/s)")
    out.append("")
    if R.ceilings:
        names = list(dict.fromkeys(k for c in R.ceilings.values() for k in c))
        out += ["## Physical ceilings", "", "| ceiling | " + " | ".join(profs) + " |",
                "|---|" + "---:|" * len(profs)]
        for k in names:
            cells = []
            for p in profs:
                v = R.ceilings.get(p, {}).get(k)
                cells.append(f"{fmt(v['median'])} ({', '.join(fmt(x) for x in v['runs'])})"
                             if v else "—")
            out.append(f"| {k} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Workloads", "",
            "Per profile: the median, `vs` = this row / the best peer's median of the same "
            "workload and profile (times and latencies: lower is better), and MB/s. `*` = peer. "
            "`n/a` = not run in that profile (no network involved, or LAN-only by the issue: "
            "measured once, in " + profs[0] + ").", "",
            "| workload | system | " + " | ".join(f"{p} | vs | MB/s" for p in profs) + " |",
            "|---|---|" + "---:|---:|---:|" * len(profs)]
    for wid, w in R.workloads.items():
        systems = list(dict.fromkeys(r["system"] for p in w["by_profile"].values()
                                     for r in p["rows"]))
        for s in systems:
            cells, peer = [], False
            for p in profs:
                bp = w["by_profile"].get(p)
                if bp is None:
                    cells += ["n/a", "", ""]
                    continue
                r = next((x for x in bp["rows"] if x["system"] == s), None)
                if r is None:
                    cells += ["n/a" if w.get("only") else "—", "", ""]
                    continue
                peer = peer or r["peer"]
                n = len([x for x in r["runs"] if x is not None])
                med = fmt(r["median"]) + UNIT_SUFFIX.get(w["unit"], " " + w["unit"])
                if n < m["runs"]:
                    med += f" (n={n})"
                cells += [med, fmt(r.get("vs_best_peer"), 2), fmt(r.get("MBps"))]
            out.append(f"| {wid} | {s}{' *' if peer else ''} | " + " | ".join(cells) + " |")
    out.append("")
    out += ["Workload titles: " + "; ".join(f"**{wid}** {w['title']}"
                                            for wid, w in R.workloads.items()), ""]
    out += ["## Details", "", "| workload | system | profile | other |", "|---|---|---|---|"]
    skip = {"system", "runs", "median", "peer", "vs_best_peer", "MBps", "per_run", "hub_by_kind"}
    for wid, w in R.workloads.items():
        for p in profs:
            for r in w["by_profile"].get(p, {}).get("rows", []):
                other = ", ".join(f"{k} {fmt(v)}" for k, v in r.items()
                                  if k not in skip and not isinstance(v, (list, dict)))
                if other:
                    out.append(f"| {wid} | {r['system']} | {p} | {other} |")
    out.append("")
    out += ["## Targets", "", "| profile | target | measured | goal | met |",
            "|---|---|---:|---:|---|"]
    for t in R.targets:
        met = {True: "met", False: "**MISSED**", None: "not measured"}[t["met"]]
        det = f" ({t['detail']})" if t["detail"] else ""
        out.append(f"| {t['profile']} | {t['target']}{det} | {fmt(t['measured'])} {t['unit']} | "
                   f"{t['op']} {fmt(t['threshold'])} {t['unit']} | {met} |")
    out.append("")
    if R.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in R.notes] + [""]
    out.append("Workload times: " + ", ".join(
        f"{k} " + "/".join(f"{v:.0f}s" for v in t.values())
        for k, t in m.get("workload_seconds", {}).items()) + " (per profile, in the order above)")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modelfs", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--only", help="comma-separated workload ids (W0..W7, W9, W10)")
    ap.add_argument("--profiles", default="lan,wan", help="lan, wan, wan-harsh (comma-separated)")
    ap.add_argument("--wan-latency-ms", type=float, default=30)
    ap.add_argument("--wan-rate", type=parse_rate, default=parse_rate("50M"),
                    help="bytes/s per connection, e.g. 50M (SI)")
    ap.add_argument("--harsh-latency-ms", type=float, default=80)
    ap.add_argument("--harsh-rate", type=parse_rate, default=parse_rate("20M"))
    ap.add_argument("--slow-peer-runs", type=int, default=1,
                    help="runs of the peers with 1-3 connections (curl, @huggingface/hub, "
                         "rclone, node-llama-cpp pull) in WAN profiles")
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
    signal.signal(signal.SIGHUP, on_signal)
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
        if getattr(b.up, "base", None):
            rm_rf(b.up.base)
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
