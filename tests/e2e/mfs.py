"""Harness for end-to-end tests: a hub simulator on loopback and real modelfs FUSE mounts.

Everything is bounded in time and cleaned up: simulators are killed, mounts are unmounted
(lazily if a test left a file open), temp dirs removed.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

SOURCE = os.environ.get("MODELFS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.environ.get("MODELFS_FIXTURES") or os.path.join(SOURCE, "build", "fixtures")
BIN = os.environ.get("MODELFS_BIN") or os.path.join(SOURCE, "build", "cli", "modelfs")
ORG = "modelfs-test"
FULL_TOKEN = "hf_modelfs_full"


def ensure_traversable(path):
    """Tests run the binary and scripts as other Unix users; a checkout under a 0700 directory
    (mktemp -d) would hide them. Grant search (x, not read) on each ancestor that lacks it."""
    path = os.path.abspath(path)
    while True:
        try:
            st = os.stat(path)
            if not st.st_mode & 0o001:
                os.chmod(path, st.st_mode | 0o001)
                print(f"mfs: granted o+x on {path} so test users can reach the build")
        except OSError:
            pass
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


if os.geteuid() == 0:
    ensure_traversable(SOURCE)
    ensure_traversable(os.path.dirname(BIN))
BASIC_TOKEN = "hf_modelfs_basic"


def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                return h.hexdigest()
            h.update(b)


def free_port():
    """A loopback TCP port nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_page_cache(path):
    """Forget the kernel's cached pages of one file, so the next read reaches modelfs."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class HubSim:
    """The hub simulator as a child process."""

    def __init__(self, page_size=20, extra=(), fixtures=None):
        self.dir = tempfile.mkdtemp(prefix="mfs-hubsim-")
        ready = os.path.join(self.dir, "ready.json")
        self.log = open(os.path.join(self.dir, "hubsim.log"), "wb")
        self.proc = subprocess.Popen(
            ["python3", os.path.join(SOURCE, "tests", "hubsim", "hubsim.py"),
             "--fixtures", fixtures or FIXTURES, "--port", "0", "--cdn-port", "0", "--ready-file", ready,
             "--page-size", str(page_size), *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("hub simulator did not start; see " + self.log.name)
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        self.url = info["hub"]
        self.cdn = info["cdn"]

    def _call(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_sim/" + path, data=data,
                                     method="GET" if body is None else "POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def counters(self):
        return self._call("counters")

    def reset(self):
        return self._call("reset", {})

    def fault(self, **spec):
        return self._call("fault", spec)

    def move_branch(self, repo, branch, to):
        return self._call("move_branch", {"repo": repo, "branch": branch, "to": to})

    def file_bytes(self, key=None):
        """Body bytes served, for one file key (sha256 or org/name/path) or in total."""
        files = self.counters()["files"]
        if key is not None:
            return files.get(key, {}).get("bytes", 0)
        return sum(v.get("bytes", 0) for v in files.values())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


class Mount:
    """A modelfs mount in the foreground (its own process) on a temp dir."""

    def __init__(self, hub, cache_dir=None, cache_size="2G", args=(), token=None, env=None,
                 wait=True, log_level="debug", endpoint_flag=True):
        self.root = tempfile.mkdtemp(prefix="mfs-mount-")
        self.mnt = os.path.join(self.root, "mnt")
        os.mkdir(self.mnt)
        self.own_cache = cache_dir is None
        self.cache = cache_dir or os.path.join(self.root, "cache")
        self.logpath = os.path.join(self.root, "modelfs.log")
        self.log = open(self.logpath, "ab")
        e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        e["HF_HOME"] = os.path.join(self.root, "hf-home")  # no stray token from the machine
        if token:
            e["HF_TOKEN"] = token
        e.update(env or {})
        endpoint = hub.url if hub else "http://127.0.0.1:9"
        cmd = [BIN, "mount", self.mnt, "--foreground", "--cache-dir", self.cache,
               "--cache-size", cache_size, "--log-level", log_level, *args]
        if endpoint_flag:  # else the config file (--config in args) names the endpoints
            cmd += ["--endpoint", endpoint]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=e)
        if wait:
            self.wait_mounted()

    def wait_mounted(self, timeout=20):
        deadline = time.time() + timeout
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mount failed:\n" + self.log_text())
            time.sleep(0.05)

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def log_text(self):
        self.log.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def unmount(self, timeout=20):
        if is_mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return self.proc.returncode

    def close(self):
        self.unmount()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class MountTest(unittest.TestCase):
    """Base class: one simulator for the class, helpers for mounts made in tests."""

    page_size = 20

    @classmethod
    def setUpClass(cls):
        cls.m = manifest()
        cls.hub = HubSim(page_size=cls.page_size)

    @classmethod
    def tearDownClass(cls):
        cls.hub.close()

    def setUp(self):
        self.hub.reset()
        self._mounts = []

    def tearDown(self):
        for m in self._mounts:
            m.close()

    def mount(self, hub=None, **kw):
        kw.setdefault("token", FULL_TOKEN)
        m = Mount(hub or self.hub, **kw)
        self._mounts.append(m)
        return m

    # Manifest helpers
    def repo(self, name):
        return self.m["repos"][f"{ORG}/{name}"]

    def local(self, name, path, commit=None):
        """Path of a fixture file's bytes on local disk."""
        r = self.repo(name)
        commit = commit or r["branches"]["main"]
        return os.path.join(FIXTURES, "repos", ORG, name, commit, path)


# ---- Helpers for the reliability and security tests (additive) ----------------------------

def run_cli(args, env=None, user=None, timeout=120):
    """Runs `modelfs ARGS` (as `user` via runuser if given); returns the CompletedProcess."""
    cmd = [BIN, *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)


def mount_stats(mount, timeout=30):
    """`modelfs stats --json` through the mount's control socket, parsed."""
    r = run_cli(["stats", "--json", "--mount", mount.mnt], timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"modelfs stats failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def chunk_usage(cache):
    """What the chunk directory holds on disk: {"files", "payload", "disk", "tmp"}.
    payload is the data bytes of complete chunk files (file size minus the 4 KiB header)."""
    out = {"files": 0, "payload": 0, "disk": 0, "tmp": 0}
    for root, _dirs, names in os.walk(os.path.join(cache, "chunks")):
        for n in names:
            try:
                size = os.path.getsize(os.path.join(root, n))
            except OSError:
                continue
            out["disk"] += size
            if ".tmp" in n:
                out["tmp"] += 1
            else:
                out["files"] += 1
                out["payload"] += max(0, size - 4096)
    return out


def lazy_unmount(path):
    """Detaches a (possibly dead) mount; bounded."""
    if not is_mounted(path):
        return
    r = subprocess.run(["fusermount3", "-uz", path], capture_output=True, timeout=20)
    if r.returncode != 0 and is_mounted(path):
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=20)


def kill9(mount, timeout=20):
    """SIGKILL the mount process, wait for it, and clean up the dead mount point."""
    if mount.proc.poll() is None:
        mount.proc.kill()
    mount.proc.wait(timeout)
    lazy_unmount(mount.mnt)
    deadline = time.time() + timeout
    while is_mounted(mount.mnt):
        if time.time() > deadline:
            raise RuntimeError("dead mount did not go away: " + mount.mnt)
        time.sleep(0.05)


# ---- The nginx site cache of packaging/site-cache/, for the fleet tests (additive) ---------

NGINX_MODULES = "/usr/lib/nginx/modules"


def site_cache_missing():
    """Why the site cache cannot run on this machine (a skip reason), or None."""
    if shutil.which("nginx") is None:
        return "nginx is not installed (packaging/install-deps.sh --test)"
    if not os.path.exists(os.path.join(NGINX_MODULES, "ngx_http_lua_module.so")):
        return "libnginx-mod-http-lua is not installed (packaging/install-deps.sh --test)"
    return None


class SiteCacheNginx:
    """nginx with the rendered site-cache config in front of `hub_url`, all in a temp dir.
    Restartable on the same cache (start after kill9), as an operator would restart it."""

    def __init__(self, hub_url, max_size="4g", branch_ttl="2s", workers=2):
        self.dir = tempfile.mkdtemp(prefix="mfs-site-cache-")
        os.chmod(self.dir, 0o700)
        for d in ("cache", "logs", "tmp"):
            os.mkdir(os.path.join(self.dir, d))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.out = None
        conf = subprocess.run(
            [os.path.join(SOURCE, "packaging", "site-cache", "render.sh"), "--hub", hub_url,
             "--listen", f"127.0.0.1:{self.port}", "--cache-dir", os.path.join(self.dir, "cache"),
             "--log-dir", os.path.join(self.dir, "logs"), "--resolver", "127.0.0.1",
             "--max-size", max_size, "--branch-ttl", branch_ttl],
            capture_output=True, text=True, check=True).stdout
        with open(os.path.join(self.dir, "site-cache.conf"), "w") as f:
            f.write(conf)
        t = os.path.join(self.dir, "tmp")
        user = "user root;" if os.geteuid() == 0 else ""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(f"""load_module {NGINX_MODULES}/ndk_http_module.so;
load_module {NGINX_MODULES}/ngx_http_lua_module.so;
{user}
worker_processes {workers};
error_log {self.dir}/logs/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;
    include {self.dir}/site-cache.conf;
}}
""")
        self.start()

    def start(self, timeout=20):
        # a SIGKILLed nginx leaves its unix socket behind, and bind() would refuse it
        sock = os.path.join(self.dir, "cache", "auth.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        if self.out is None:
            self.out = open(os.path.join(self.dir, "nginx.out"), "ab")
        self.proc = subprocess.Popen(
            ["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
             "-g", f"daemon off; pid {self.dir}/nginx.pid;"],
            stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.out.flush()
                    with open(self.out.name, errors="replace") as f:
                        text = f.read()
                    self.close()
                    raise RuntimeError("nginx did not start:\n" + text)
                time.sleep(0.05)

    def pids(self):
        """The master and its workers (and cache manager/loader)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        out = [self.proc.pid]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                out.append(int(d))
        return out

    def kill9(self):
        """A crash: SIGKILL to the master and every worker at once (workers left alive would
        go on serving)."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        for pid in pids[1:]:  # not our children: wait until they are gone
            deadline = time.time() + 10
            while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            break
                except OSError:
                    break
                time.sleep(0.02)
        return pids

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers end, sockets removed
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def close(self, keep=False):
        self.stop()
        if self.out is not None:
            self.out.close()
            self.out = None
        if keep:
            print("site cache dir kept:", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "logs", "access.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""
