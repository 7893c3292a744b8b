#!/usr/bin/env python3
"""Hugging Face Hub simulator for modelfs tests (Python 3 stdlib only).

    hubsim.py --fixtures DIR [--port 0] [--cdn-port 0] [--ready-file FILE]
              [--page-size 50] [--host 127.0.0.1] [--cdn-host HOST] [--cdn-ttl 3600]
              [--token NAME:full|basic ...] [--profile lan|wan|wan-harsh]
              [--latency-ms N] [--rate BYTES_PER_S] [--verbose]

Serves the repos written by tests/fixtures/gen_fixtures.py on two HTTP/1.1 ports: the Hub
(API, resolve, /_sim control API) and a CDN that LFS files redirect to with signed,
expiring URLs. A WAN profile adds a delay before every response and a per-connection rate
cap on file bytes, like a CDN edge seen over a real network. Behaviour follows
fetch/hub-api.md; tests/hubsim/README.md documents the CLI, the control API and
the tokens.
"""

import argparse
import base64
import bisect
import collections
import hashlib
import hmac
import json
import os
import re
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1024 * 1024
RANGES_CAP = 10000  # served-range log entries kept (oldest dropped first)
COPY_CHUNK = 256 * 1024  # chunk of the slow (fault-injecting) body path
SENDFILE_CHUNK = 4 * MIB  # bytes are accounted after each sendfile() chunk
PACE_SLICE = 0.02  # a rate-capped connection sends ~20 ms worth of bytes per chunk ...
PACE_CHUNK_MIN, PACE_CHUNK_MAX = 64 * 1024, MIB  # ... within these bounds (few wakeups/s)
# name -> (latency ms, file bytes per second per connection; 0 = unlimited)
PROFILES = {"lan": (0.0, 0), "wan": (30.0, 50_000_000), "wan-harsh": (80.0, 20_000_000)}

TOKENS_DEFAULT = {
    "hf_modelfs_full": {"name": "modelfs-full", "private": True, "gated_approved": True},
    "hf_modelfs_basic": {"name": "modelfs-basic", "private": False, "gated_approved": False},
}
BAD_CREDENTIALS = "Invalid credentials in Authorization header"
ANON_DENIED = "Invalid username or password."


def parse_rate(v):
    """Bytes per second: a number, or a string with an optional decimal suffix k/M/G
    ("50M" = 50e6). 0, None, "unlimited" = no cap."""
    if v is None:
        return 0
    if isinstance(v, str):
        t = v.strip()
        if t.lower() in ("", "unlimited", "inf", "none"):
            return 0
        mult = {"k": 1e3, "m": 1e6, "g": 1e9}.get(t[-1].lower(), 1)
        v = float(t[:-1] if mult != 1 else t) * mult
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
        raise ValueError(f"bad rate {v!r}")
    return int(v)


def parse_latency_ms(v):
    v = float(v)
    if not 0 <= v < 600_000:  # also refuses NaN
        raise ValueError(f"bad latency {v!r}")
    return v


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


# --------------------------------------------------------------------------- repository model

def _path_key(path, is_dir):
    """Sort key giving git order with each directory right before its contents."""
    parts = path.split("/")
    return tuple(p.encode() + (b"/" if (i < len(parts) - 1 or is_dir) else b"")
                 for i, p in enumerate(parts))


class Commit:
    def __init__(self, repo_dir, sha, data):
        self.sha = sha
        self.parent = data.get("parent")
        self.title = data.get("title", "")
        self.date = data.get("date", "1970-01-01T00:00:00.000Z")
        self.files = {}  # path -> manifest entry (+ "local": file on disk)
        for e in data["files"]:
            e = dict(e)
            e["local"] = os.path.join(repo_dir, sha, *e["path"].split("/"))
            self.files[e["path"]] = e
        self.dirs = dict(data.get("dirs", {}))  # dir path -> git tree oid
        for p in self.files:  # tolerate repo.json files written without "dirs"
            parts = p.split("/")
            for i in range(1, len(parts)):
                self.dirs.setdefault("/".join(parts[:i]), "0" * 40)
        items = [(p, False) for p in self.files] + [(d, True) for d in self.dirs]
        items.sort(key=lambda it: _path_key(*it))
        self.order = [p for p, _ in items]  # every entry, pre-order, git order
        self.keys = [_path_key(*it) for it in items]
        self._st_params = None
        self._listings = {}

    def listing(self, path, recursive):
        """Paths under folder `path` (children, or all descendants), in listing order, and
        their sort keys (for cursors)."""
        k = (path, recursive)
        if k not in self._listings:
            prefix = path + "/" if path else ""
            depth = prefix.count("/")
            sel = [i for i, p in enumerate(self.order) if p.startswith(prefix)
                   and (recursive or p.count("/") == depth)]
            self._listings[k] = ([self.order[i] for i in sel], [self.keys[i] for i in sel])
        return self._listings[k]

    def is_dir(self, path):
        return path == "" or path in self.dirs

    def gguf_info(self):
        """`gguf` model-info field of the first root-level *.gguf file, or None."""
        if not hasattr(self, "_gguf"):
            self._gguf = None
            for p in sorted(self.files):
                if "/" not in p and p.endswith(".gguf"):
                    self._gguf = gguf_summary(self.files[p]["local"])
                    break
        return self._gguf

    def safetensors_params(self):
        """{dtype: count} of the root-level *.safetensors files, read from their headers."""
        if self._st_params is None:
            counts = collections.Counter()
            for p, e in self.files.items():
                if "/" in p or not p.endswith(".safetensors"):
                    continue
                try:
                    with open(e["local"], "rb") as f:
                        (n,) = struct.unpack("<Q", f.read(8))
                        header = json.loads(f.read(n))
                    for name, t in header.items():
                        if name != "__metadata__":
                            k = 1
                            for d in t["shape"]:
                                k *= d
                            counts[t["dtype"]] += k
                except (OSError, ValueError, KeyError, struct.error):
                    pass
            self._st_params = dict(counts)
        return self._st_params


class Repo:
    def __init__(self, repo_dir, data):
        self.id = data["id"]
        self.private = bool(data.get("private"))
        self.gated = data.get("gated") or False
        self.default_branch = data.get("default_branch", "main")
        self.commits = {sha: Commit(repo_dir, sha, c) for sha, c in data["commits"].items()}
        self.commit_order = data.get("commit_order") or list(self.commits)
        self.initial_refs = (dict(data.get("branches", {})), dict(data.get("tags", {})),
                             dict(data.get("refs", {})))
        self.restore_refs()
        self._last_commit = {}
        readme = self.commits[self.branches[self.default_branch]].files.get("README.md")
        self.card = _front_matter(readme["local"]) if readme else {}

    def restore_refs(self):
        b, t, r = self.initial_refs
        self.branches, self.tags, self.refs = dict(b), dict(t), dict(r)

    def resolve(self, rev):
        """Revision (branch, tag, refs/..., HEAD, 40-hex commit) -> commit sha or None."""
        if rev == "HEAD":
            rev = self.default_branch
        for table, prefix in ((self.branches, "refs/heads/"), (self.tags, "refs/tags/")):
            name = rev[len(prefix):] if rev.startswith(prefix) else rev
            if name in table:
                return table[name]
        if rev in self.refs:
            return self.refs[rev]
        if re.fullmatch(r"[0-9a-f]{40}", rev) and rev in self.commits:
            return rev
        return None

    def last_commit(self, commit, path):
        """Newest commit reachable from `commit` that changed `path`."""
        key = (commit.sha, path)
        if key not in self._last_commit:
            def oid(c):
                if path in c.files:
                    return c.files[path]["oid"]
                return c.dirs.get(path)
            c, want = commit, oid(commit)
            while c.parent and c.parent in self.commits and oid(self.commits[c.parent]) == want:
                c = self.commits[c.parent]
            self._last_commit[key] = c
        return self._last_commit[key]


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                 11: "q", 12: "d"}


def gguf_summary(path):
    """The Hub's model-info `gguf` field, read from a GGUF header: total parameters,
    architecture, context length, BOS/EOS tokens, chat template. None if unreadable."""
    try:
        with open(path, "rb") as f:
            def rd(fmt):
                size = struct.calcsize("<" + fmt)
                return struct.unpack("<" + fmt, f.read(size))[0]

            def rstr():
                return f.read(rd("Q")).decode("utf-8", "replace")

            def value(t):
                if t == 8:
                    return rstr()
                if t == 9:  # array: long numeric ones (scores, types) are skipped
                    et, n = rd("I"), rd("Q")
                    if et in _GGUF_SCALARS and n > 16:
                        f.seek(n * struct.calcsize("<" + _GGUF_SCALARS[et]), 1)
                        return None
                    return [value(et) for _ in range(n)]
                return rd(_GGUF_SCALARS[t])

            if f.read(4) != b"GGUF" or rd("I") < 2:
                return None
            n_tensors, n_kv = rd("Q"), rd("Q")
            kv = {}
            for _ in range(n_kv):
                key = rstr()
                kv[key] = value(rd("I"))
            total = 0
            for _ in range(n_tensors):
                rstr()
                dims = [rd("Q") for _ in range(rd("I"))]
                rd("I"), rd("Q")
                n = 1
                for d in dims:
                    n *= d
                total += n
    except (OSError, struct.error, KeyError, ValueError, MemoryError):
        return None
    arch = kv.get("general.architecture")
    tokens = kv.get("tokenizer.ggml.tokens") or []

    def token(key):
        i = kv.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None
    out = {"total": total, "architecture": arch,
           "context_length": kv.get(f"{arch}.context_length"),
           "chat_template": kv.get("tokenizer.chat_template"),
           "bos_token": token("tokenizer.ggml.bos_token_id"),
           "eos_token": token("tokenizer.ggml.eos_token_id")}
    return {k: v for k, v in out.items() if v is not None}


def _front_matter(path):
    """Flat `key: value` pairs of a README's YAML front matter (enough for model info)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return {}
    if not text.startswith("---\n"):
        return {}
    card = {}
    for line in text[4:].split("\n---", 1)[0].splitlines():
        m = re.match(r"^([A-Za-z_][\w-]*):\s*(.*)$", line)
        if m and m.group(2):
            card[m.group(1)] = m.group(2).strip()
    return card


def load_repos(fixtures):
    repos = {}
    root = os.path.join(fixtures, "repos")
    for dirpath, dirnames, filenames in os.walk(root):
        if "repo.json" in filenames:
            with open(os.path.join(dirpath, "repo.json"), encoding="utf-8") as f:
                data = json.load(f)
            repos[data["id"]] = Repo(dirpath, data)
            dirnames[:] = []  # commit folders hold repo files, not more repos
    if not repos:
        raise SystemExit(f"hubsim: no repo.json under {root} (run gen_fixtures.py first)")
    return repos


# --------------------------------------------------------------------------- shared state

class Fault:
    BODY_KINDS = {"drop", "truncate", "stall", "corrupt", "ignore_range", "content_range"}
    REQUEST_KINDS = {"status", "redirect"}  # answer instead of serving the request
    # phase: where in a request a fault of each kind is looked for (see State.take_fault)
    PHASE = dict({k: "body" for k in BODY_KINDS}, **{k: "request" for k in REQUEST_KINDS},
                 tree_override="tree", header_override="headers")
    KINDS = set(PHASE)

    def __init__(self, spec, fid):
        self.id = fid
        self.spec = spec
        self.kind = spec["kind"]
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        self.match = spec.get("match", "")
        self.port = spec.get("port")  # "hub", "cdn" or None for both
        self.method = spec.get("method")
        self.remaining = int(spec.get("count", 1))  # -1 = unlimited
        self.fired = 0  # requests it applied to so far ({n} in a tree_override link)
        self.phase = self.PHASE[self.kind]
        if self.kind == "status":
            int(spec.get("status", 503))
        elif self.kind == "redirect":
            if not isinstance(spec["location"], str):
                raise ValueError("redirect needs a string location")
            int(spec.get("status", 302))
        elif self.kind == "tree_override":
            for k in ("body", "link"):
                if spec.get(k) is not None and not isinstance(spec[k], str):
                    raise ValueError(f"tree_override {k} must be a string")
            int(spec.get("status", 200)), int(spec.get("pad", 0))
        elif self.kind == "header_override":
            self.headers = _header_pairs(spec.get("headers", []))
            self.remove = {str(n).lower() for n in spec.get("remove", [])}
            if spec.get("mode", "replace") not in ("replace", "add"):
                raise ValueError("header_override mode is replace or add")
            int(spec.get("pad_headers", 0))
        elif self.kind == "content_range":
            if not isinstance(spec["value"], str):
                raise ValueError("content_range needs a string value")

    def applies(self, port, method, target):
        return (self.remaining != 0 and (self.port in (None, port))
                and (self.method in (None, method)) and self.match in target)


def _header_pairs(h):
    """{"Name": "value"} or [["Name", "value"], ...] -> [(name, value)] (values as strings)."""
    items = h.items() if isinstance(h, dict) else h
    out = []
    for name, value in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad header name {name!r}")
        out.append((name, str(value)))
    return out


class State:
    def __init__(self, repos, args):
        self.repos = repos
        self.args = args
        self.tokens = dict(TOKENS_DEFAULT)
        for t in args.token or []:
            name, _, scope = t.partition(":")
            full = scope == "full"
            self.tokens[name] = {"name": name, "private": full, "gated_approved": full}
        self.lock = threading.Lock()
        self.secret = os.urandom(32)
        self.url_seq = 0  # serial of issued CDN URLs
        self.expired_below = 0  # CDN URLs with a serial below this are expired
        self.faults = []
        self.fault_seq = 0
        self.stopping = threading.Event()
        self.hub_url = self.cdn_url = ""
        # network profile; read without the lock (each is one attribute, set atomically)
        self.latency = self.latency_ms = 0  # delay before each response (s, and as set in ms)
        self.rate = 0  # file bytes per second per connection, 0 = unlimited
        self.initial_profile = args.initial_profile
        self.set_profile(*self.initial_profile)
        self.in_flight = self.in_flight_peak = 0  # file-byte responses open now / at most
        self.reset_counters()

    def set_profile(self, latency_ms, rate):
        with self.lock:
            self.latency, self.latency_ms, self.rate = latency_ms / 1000.0, latency_ms, rate

    def profile(self):
        lat_ms, rate = self.latency_ms, self.rate
        name = next((n for n, p in PROFILES.items() if p == (lat_ms, rate)), "custom")
        return {"profile": name, "latency_ms": lat_ms, "rate": rate}

    def reset_counters(self):
        with self.lock:
            self.c = {k: 0 for k in ("api", "tree", "paths_info", "resolve", "raw", "cdn",
                                     "other", "errors", "redirects", "bytes_served",
                                     "cdn_auth_leaks", "cdn_denied", "faults_fired",
                                     "ranges_dropped")}
            self.c_status = collections.Counter()
            self.c_files = {}
            self.c_ranges = collections.deque(maxlen=RANGES_CAP)
            self.c_conn = {"hub": 0, "cdn": 0}
            self.in_flight_peak = self.in_flight  # a gauge: only its peak restarts

    def file_response(self, delta):
        """A response carrying file bytes starts (+1) or ends (-1)."""
        with self.lock:
            self.in_flight += delta
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def count(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def count_file(self, key, requests=0, nbytes=0):
        with self.lock:
            f = self.c_files.setdefault(key, {"requests": 0, "bytes": 0})
            f["requests"] += requests
            f["bytes"] += nbytes
            self.c["bytes_served"] += nbytes

    def log_range(self, **entry):
        with self.lock:
            if len(self.c_ranges) == RANGES_CAP:
                self.c["ranges_dropped"] += 1
            self.c_ranges.append(entry)

    def snapshot(self):
        with self.lock:
            out = dict(self.c)
            out["status"] = {str(k): v for k, v in sorted(self.c_status.items())}
            out["files"] = {k: dict(v) for k, v in self.c_files.items()}
            out["ranges"] = list(self.c_ranges)
            out["connections"] = dict(self.c_conn)
            out["in_flight"], out["in_flight_peak"] = self.in_flight, self.in_flight_peak
            out["faults_armed"] = len(self.faults)
            return out

    def take_fault(self, port, method, target, body_response=False, phase=None):
        """Pop the first armed fault of one phase for this request: "request" (status,
        redirect: any request), "body" (only responses that carry file bytes, so a 302 does
        not use them up), "tree" (tree listings), "headers" (any response)."""
        phase = phase or ("body" if body_response else "request")
        with self.lock:
            for f in self.faults:
                if f.phase == phase and f.applies(port, method, target):
                    f.fired += 1
                    if f.remaining > 0:
                        f.remaining -= 1
                    if f.remaining == 0:
                        self.faults.remove(f)
                    self.c["faults_fired"] += 1
                    return f
        return None

    # CDN URL signing: hmac over (sha256, expiry, serial); the serial lets cdn_expire
    # invalidate every URL issued so far without touching later ones.
    def sign(self, sha, expires, serial):
        msg = f"{sha}:{expires}:{serial}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:32]

    def cdn_location(self, entry):
        with self.lock:
            self.url_seq += 1
            serial = self.url_seq
        expires = int(time.time()) + self.args.cdn_ttl
        name = urllib.parse.quote(entry["path"].rsplit("/", 1)[-1])
        return (f"{self.cdn_url}/cdn/{entry['sha256']}/{name}?expires={expires}&n={serial}"
                f"&sig={self.sign(entry['sha256'], expires, serial)}")


# --------------------------------------------------------------------------- HTTP plumbing

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, handler, state, role):
        self.state = state
        self.role = role  # "hub" or "cdn"
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        # clients that abort (range probes, parallel downloaders) reset connections: not news
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)

    def get_request(self):
        conn = super().get_request()
        with self.state.lock:
            self.state.c_conn[self.role] += 1
        return conn


class Dropped(Exception):
    """The response was cut on purpose (fault): close the connection, no more output."""


def parse_range(header, size):
    """-> None (no usable Range: serve 200), (start, end) inclusive, or "unsatisfiable"."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # invalid or multi-range: ignoring Range is allowed (RFC 9110 14.2)
    a, b = m.group(1), m.group(2)
    if a == "":  # suffix range: the last n bytes
        n = int(b)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1)
    start = int(a)
    end = size - 1 if b == "" else min(int(b), size - 1)
    if b != "" and int(b) < start:
        return None  # invalid range spec: ignored
    if start >= size:
        return "unsatisfiable"
    return (start, end)


def _unsent(sock):
    """Bytes in the socket's send queue not yet acknowledged (Linux TIOCOUTQ), 0 if unknown."""
    try:
        import fcntl
        import termios
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]
    except (OSError, ImportError, AttributeError):
        return 0


def content_type(path):
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext == "json":
        return "application/json; charset=utf-8"
    if ext in ("txt", "md", "py", "yaml", "yml", "gitattributes"):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def header_safe(s):
    """Header values must be latin-1: escape anything else like the Hub does (URL-style)."""
    return s if s.isascii() else urllib.parse.quote(s, safe=" /:;,.'\"!?()[]{}<>=@+-_*#&")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    timeout = 120  # idle keep-alive connections are closed after this
    header_fault = tree_fault = None  # this request's header_override / tree_override fault
    pace_due = 0.0  # monotonic time this connection's rate cap lets its next file byte go

    def version_string(self):
        return "hubsim/1.0"

    def setup(self):
        super().setup()
        # headers and body leave in separate writes: without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every small keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- plumbing
    @property
    def st(self):
        return self.server.state

    def log_message(self, fmt, *args):
        if self.st.args.verbose:
            sys.stderr.write("hubsim[%s] %s - %s\n" % (self.server.role, self.address_string(),
                                                       fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def read_body(self):
        """Read the request body (always, so keep-alive stays in sync)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline(1024)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def dispatch(self, method):
        self.method = method
        try:
            try:
                self.body = self.read_body()
            except ValueError:  # unparsable Content-Length or chunk size
                self.close_connection = True
                return self.reply(400, "Bad request body")
            raw_path, _, query = self.path.partition("?")
            self.query = urllib.parse.parse_qs(query, keep_blank_values=True)
            self.raw_segments = raw_path.split("/")[1:]
            self.target = urllib.parse.unquote(self.path)  # what fault `match` is tested on
            self.header_fault = self.tree_fault = None
            if not (self.server.role == "hub" and raw_path.startswith("/_sim/")):
                self.header_fault = self.st.take_fault(self.server.role, method, self.target,
                                                       phase="headers")
            if self.server.role == "cdn":
                self.handle_cdn()
            elif raw_path.startswith("/_sim/"):
                self.handle_sim(raw_path[len("/_sim/"):])
            else:
                fault = self.st.take_fault("hub", method, self.target, body_response=False)
                if fault:
                    self.send_request_fault(fault)
                else:
                    self.handle_hub()
        except Dropped:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError, socket.timeout):
            self.close_connection = True  # client went away mid-response (normal for aborts)

    def send_head(self, status, headers, length):
        if self.st.latency and not self.path.startswith("/_sim/"):
            # time to first byte of a distant edge; SIGTERM ends the wait at once
            self.st.stopping.wait(self.st.latency)
        self.send_response(status)
        if not self.path.startswith("/_sim/"):
            # counted before anything is sent, so a client never sees a response that the
            # counters do not show yet
            with self.st.lock:
                self.st.c_status[status] += 1
                if status >= 400:
                    self.st.c["errors"] += 1
        headers = list(headers) + [("Content-Length", str(length))]
        if self.header_fault is not None:
            headers = self.override_headers(self.header_fault, headers)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def reply(self, status, body=b"", headers=(), ctype="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = body.encode()
        headers = list(headers)
        if body or ctype:
            headers.append(("Content-Type", ctype))
        self.send_head(status, headers, len(body))
        if self.method != "HEAD" and body:
            self.wfile.write(body)

    def reply_json(self, obj, status=200, headers=()):
        # control answers escape non-ASCII: they echo fault bodies, which may hold lone
        # surrogates (raw bytes, see tree_override) that UTF-8 cannot encode
        text = json.dumps(obj, ensure_ascii=self.path.startswith("/_sim/"))
        self.reply(status, text.encode(), headers,
                   "application/json; charset=utf-8")

    def hub_error(self, status, message, code=None, headers=()):
        h = [("X-Error-Message", header_safe(message))] + list(headers)
        if code:
            h.insert(0, ("X-Error-Code", code))
        self.reply_json({"error": message}, status, h)

    def base_url(self):
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.st.hub_url

    # ---- faults
    def override_headers(self, fault, headers):
        """header_override: drop `remove` names (and, in replace mode, the names it sets), add
        its headers and `pad_headers` junk ones. The body is unchanged, so framing may now be
        wrong: the connection is closed after this response."""
        spec = fault.spec
        drop = set(fault.remove)
        if spec.get("mode", "replace") == "replace":
            drop |= {n.lower() for n, _ in fault.headers}
        # the junk goes first: a client that keeps only the first N headers loses the real ones
        out = [(f"X-Pad-{i}", "x") for i in range(int(spec.get("pad_headers", 0)))]
        out += [(k, v) for k, v in headers if k.lower() not in drop]
        out += fault.headers
        out.append(("Connection", "close"))
        self.close_connection = True
        return out

    def send_request_fault(self, fault):
        if fault.kind == "redirect":
            return self.send_redirect_fault(fault)
        return self.send_status_fault(fault)

    def send_redirect_fault(self, fault):
        """A redirect to `location` ({hub}, {cdn}, {self} are replaced). On the Hub a resolve
        URL of a known repo keeps its X-Repo-Commit, so the client trusts the redirect."""
        spec = fault.spec
        here = self.st.hub_url if self.server.role == "hub" else self.st.cdn_url
        loc = (spec["location"].replace("{hub}", self.st.hub_url)
               .replace("{cdn}", self.st.cdn_url).replace("{self}", here + self.path))
        headers = [("Location", loc)] + _header_pairs(spec.get("headers", []))
        seg = [urllib.parse.unquote(s) for s in self.raw_segments]
        if self.server.role == "hub" and len(seg) >= 5 and seg[2] == "resolve":
            repo = self.st.repos.get(f"{seg[0]}/{seg[1]}")
            with self.st.lock:
                sha = repo.resolve(seg[3]) if repo else None
            if sha:
                headers.append(("X-Repo-Commit", sha))
        self.st.count("redirects")
        self.reply(int(spec.get("status", 302)), f"Found. Redirecting to {loc}", headers)

    def send_status_fault(self, fault):
        status = int(fault.spec.get("status", 503))
        headers = []
        if status == 429:  # the Hub sends Retry-After and/or the IETF RateLimit headers
            wait = int(fault.spec.get("retry_after", 1))
            which = fault.spec.get("headers", ["retry-after", "ratelimit"])
            if "retry-after" in which:
                headers.append(("Retry-After", str(wait)))
            if "ratelimit" in which:
                kind = "resolvers" if "/resolve/" in self.target else "api"
                headers.append(("RateLimit", f'"{kind}";r=0;t={wait}'))
                headers.append(("RateLimit-Policy", f'"fixed window";"{kind}";q=500;w=300'))
        msg = fault.spec.get("message") or {
            429: "You have been rate-limited; please retry later.",
            500: "Internal Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}.get(status, f"Injected error {status}")
        self.reply_json({"error": msg}, status, headers)

    def send_file_body(self, local, start, length, fault, key):
        """Send `length` bytes of `local` from `start`: sendfile() when no fault applies,
        else a copy loop that can stall, corrupt or cut the stream."""
        st = self.st
        with open(local, "rb") as f:
            if fault is None or fault.kind in ("ignore_range", "content_range"):
                self._sendfile(f, start, length, key)
                return
            spec = fault.spec
            cut = None
            if fault.kind in ("drop", "truncate"):
                cut = int(spec.get("after_bytes", length // 2 if fault.kind == "truncate" else 0))
            stall_at = int(spec.get("after_bytes", 0)) if fault.kind == "stall" else None
            flip_at = int(spec.get("at", length // 2)) if fault.kind == "corrupt" else None
            flip_n = int(spec.get("bytes", 1))
            sent = 0
            while True:
                if stall_at is not None and sent >= stall_at:
                    # the interruptible wait lets SIGTERM end a stalled response at once
                    st.stopping.wait(float(spec.get("seconds", 10)))
                    stall_at = None
                if cut is not None and sent >= cut:
                    self._cut(fault.kind == "drop")
                n = min(COPY_CHUNK, self._pace_chunk() or COPY_CHUNK, length - sent)
                for limit in (stall_at, cut):
                    if limit is not None and limit > sent:
                        n = min(n, limit - sent)
                if n <= 0:
                    return
                f.seek(start + sent)
                buf = bytearray(f.read(n))
                if flip_at is not None:  # flip bytes [flip_at, flip_at + flip_n) of the body
                    for i in range(max(flip_at, sent), min(flip_at + flip_n, sent + len(buf))):
                        buf[i - sent] ^= 0xFF
                st.count_file(key, nbytes=len(buf))  # before sending: see send_head
                t0 = self._pace()
                try:
                    self.wfile.write(buf)
                except OSError:
                    st.count_file(key, nbytes=-len(buf))
                    raise
                self._charge(t0, len(buf))
                sent += len(buf)

    def _cut(self, abortive):
        sock = self.connection
        try:
            if abortive:
                # RST. It would discard data still queued, so first let the N bytes reach the
                # peer (bounded wait on the send queue), then SO_LINGER 0 + close.
                deadline = time.monotonic() + 1.0
                while _unsent(sock) > 0 and time.monotonic() < deadline:
                    time.sleep(0.005)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:  # FIN after the bytes sent so far
                sock.shutdown(socket.SHUT_WR)
        finally:
            sock.close()
        raise Dropped()

    def _sendfile(self, f, offset, count, key):
        sock = self.connection
        timeout = sock.gettimeout()
        sent = 0
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_WRITE)
            while sent < count:
                want = min(self._pace_chunk() or SENDFILE_CHUNK, count - sent)
                t0 = self._pace()
                # counted before sending (see send_head), then corrected by what did not go out
                self.st.count_file(key, nbytes=want)
                n, blocked = 0, False
                try:
                    n = os.sendfile(sock.fileno(), f.fileno(), offset + sent, want)
                except BlockingIOError:  # socket buffer full (sockets with a timeout)
                    blocked = True
                finally:
                    if n != want:
                        self.st.count_file(key, nbytes=n - want)
                self._charge(t0, n)
                if blocked:
                    if not sel.select(timeout):
                        raise TimeoutError("client does not read")
                elif n == 0:
                    raise ConnectionResetError("file shorter than expected")
                sent += n

    # ---- rate cap: each connection (handler) has its own budget, kept across keep-alive
    # requests; bytes go out in chunks of ~PACE_SLICE worth, each when the previous one's
    # time at `rate` has passed. Idle time earns no burst, so the cap holds on any window.
    def _pace_chunk(self):
        rate = self.st.rate
        if not rate:
            return 0
        n = int(rate * PACE_SLICE) // 4096 * 4096
        return min(PACE_CHUNK_MAX, max(PACE_CHUNK_MIN, n))

    def _pace(self):
        """Wait until the budget allows more bytes; -> the time they may start."""
        now = time.monotonic()
        if self.st.rate and self.pace_due > now:
            self.st.stopping.wait(self.pace_due - now)
            return self.pace_due
        return now

    def _charge(self, t0, n):
        rate = self.st.rate
        if rate and n > 0:
            self.pace_due = t0 + n / rate

    def serve_bytes(self, entry, key, port, base_headers):
        """200/206/416 for a file's bytes, honouring Range (one range)."""
        size = entry["size"]
        fault = None
        if self.method == "GET":
            fault = self.st.take_fault(port, self.method, self.target, body_response=True)
        rng = parse_range(self.headers.get("Range"), size)
        if fault and fault.kind == "ignore_range":
            rng = None
        self.st.count_file(key, requests=1)
        headers = list(base_headers) + [("Accept-Ranges", "bytes")]
        if rng == "unsatisfiable":
            self.st.log_range(file=key, start=None, end=None, status=416, port=port,
                              range=self.headers.get("Range"))
            self.reply(416, b"", headers + [("Content-Range", f"bytes */{size}")], None)
            return
        if rng is None:
            start, end, status = 0, size - 1, 200
        else:
            start, end = rng
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        length = end - start + 1
        if fault and fault.kind == "content_range":  # a lie about which bytes these are
            headers = [h for h in headers if h[0] != "Content-Range"]
            headers.append(("Content-Range", fault.spec["value"].format(
                start=start, end=end, size=size, length=length)))
        headers.append(("Content-Type", content_type(entry["path"]) if port == "hub"
                        else "application/octet-stream"))
        if self.method == "HEAD":
            return self.send_head(status, headers, length)
        # in flight from here (the latency is part of what a client waits for) to the end
        self.st.file_response(+1)
        try:
            self.send_head(status, headers, length)
            self.st.log_range(file=key, start=start, end=end, status=status, port=port)
            if length > 0:
                self.send_file_body(entry["local"], start, length, fault, key)
        finally:
            self.st.file_response(-1)

    # ---- CDN
    def handle_cdn(self):
        st = self.st
        st.count("cdn")
        if self.headers.get("Authorization"):
            st.count("cdn_auth_leaks")  # a client forwarded the Hub token across hosts
        fault = st.take_fault("cdn", self.method, self.target, body_response=False)
        if fault:
            return self.send_request_fault(fault)
        seg = self.raw_segments
        if self.method not in ("GET", "HEAD") or len(seg) < 2 or seg[0] != "cdn":
            return self.reply(404, "Not Found")
        sha = seg[1]
        q = {k: v[0] for k, v in self.query.items()}
        try:
            expires, serial = int(q["expires"]), int(q["n"])
            good = hmac.compare_digest(q["sig"], st.sign(sha, expires, serial))
        except (KeyError, ValueError):
            good = False
        if not good or expires < time.time() or serial < st.expired_below:
            st.count("cdn_denied")
            msg = "Request has expired" if good else "Invalid signature"
            return self.reply(403, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                              f"AccessDenied</Code><Message>{msg}</Message></Error>",
                              ctype="application/xml")
        entry = st.blobs.get(sha)
        if entry is None:
            return self.reply(404, "Not Found")
        name = urllib.parse.unquote(seg[2]) if len(seg) > 2 else sha
        headers = [("ETag", f'"{sha}"'),
                   ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                   ("Cache-Control", "public, max-age=604800, immutable"),
                   ("Content-Disposition",
                    f"inline; filename*=UTF-8''{urllib.parse.quote(name)}; "
                    f"filename=\"{header_safe(name)}\";"),
                   # like CloudFront: tells the npm client it may reuse this URL directly
                   ("X-Cache", "Miss from cloudfront")]
        self.serve_bytes(entry, sha, "cdn", headers)

    # ---- control API
    def handle_sim(self, what):
        st = self.st
        try:
            body = json.loads(self.body) if self.body.strip() else {}
        except ValueError:
            return self.reply_json({"error": "body is not JSON"}, 400)
        if what == "counters" and self.method == "GET":
            return self.reply_json(st.snapshot())
        if what == "health":
            return self.reply_json({"ok": True, "hub": st.hub_url, "cdn": st.cdn_url,
                                    "pid": os.getpid(), "repos": sorted(st.repos)})
        if what == "faults" and self.method == "GET":
            with st.lock:
                return self.reply_json([dict(f.spec, id=f.id, remaining=f.remaining)
                                        for f in st.faults])
        if what == "profile" and self.method == "GET":
            return self.reply_json(st.profile())
        if self.method != "POST":
            return self.reply_json({"error": "use POST"}, 405)
        if what == "reset":
            st.reset_counters()
            with st.lock:
                st.faults.clear()
                if body.get("refs"):
                    for r in st.repos.values():
                        r.restore_refs()
            if body.get("profile"):
                st.set_profile(*st.initial_profile)
            return self.reply_json({"ok": True})
        if what == "profile":
            try:  # a named profile first, then explicit values on top of it
                lat_ms, rate = st.latency_ms, st.rate
                if "profile" in body:
                    lat_ms, rate = PROFILES[body["profile"]]
                if "latency_ms" in body:
                    lat_ms = parse_latency_ms(body["latency_ms"])
                if "rate" in body:
                    rate = parse_rate(body["rate"])
            except (KeyError, ValueError, TypeError) as e:
                return self.reply_json({"error": f"bad profile: {e}"}, 400)
            st.set_profile(lat_ms, rate)
            return self.reply_json(st.profile())
        if what == "fault":
            specs = body if isinstance(body, list) else [body]
            armed = []
            try:
                for spec in specs:
                    if spec.get("kind") == "cdn_expire":
                        with st.lock:
                            st.expired_below = st.url_seq + 1
                        armed.append({"kind": "cdn_expire", "expired_below": st.expired_below})
                        continue
                    with st.lock:
                        st.fault_seq += 1
                        f = Fault(spec, st.fault_seq)
                        st.faults.append(f)
                    armed.append(dict(spec, id=f.id))
            except (KeyError, ValueError, TypeError, AttributeError) as e:
                return self.reply_json({"error": f"bad fault: {e}"}, 400)
            return self.reply_json({"armed": armed})
        if what == "clear_faults":
            with st.lock:
                st.faults.clear()
            return self.reply_json({"ok": True})
        if what == "move_branch":
            repo = st.repos.get(body.get("repo", ""))
            if repo is None:
                return self.reply_json({"error": "no such repo"}, 404)
            with st.lock:
                sha = repo.resolve(str(body.get("to", "")))
                if sha is None:
                    return self.reply_json({"error": "no such revision"}, 404)
                branch = body.get("branch", "")
                prev = repo.branches.get(branch)
                repo.branches[branch] = sha
            return self.reply_json({"repo": repo.id, "branch": branch, "sha": sha,
                                    "previous": prev})
        return self.reply_json({"error": f"unknown control endpoint {what}"}, 404)

    # ---- Hub
    def auth(self):
        """-> (ok, user). Unknown tokens are refused outright, like the Hub does."""
        h = self.headers.get("Authorization", "")
        if not h:
            return True, None
        m = re.fullmatch(r"Bearer\s+(\S+)", h.strip())
        user = self.st.tokens.get(m.group(1)) if m else None
        if user is None:
            self.hub_error(401, BAD_CREDENTIALS)
            return False, None
        return True, user

    def get_repo(self, repo_id, user, files=False):
        """Access check with the Hub's semantics; sends the error and returns None on refusal."""
        repo = self.st.repos.get(repo_id)
        if repo is None or (repo.private and not (user and user["private"])):
            if user is None:  # the Hub does not reveal whether the repo exists
                self.hub_error(401, ANON_DENIED)
            else:
                self.hub_error(404, "Repository not found", "RepoNotFound")
            return None
        if files and repo.gated:
            if user is None:
                self.hub_error(401, f"Access to model {repo.id} is restricted. You must have "
                               "access to it and be authenticated to access it. Please log in.",
                               "GatedRepo")
                return None
            if not user["gated_approved"]:
                self.hub_error(403, f"Access to model {repo.id} is restricted and you are not "
                               "in the authorized list. Visit https://huggingface.co/"
                               f"{repo.id} to ask for access.", "GatedRepo")
                return None
        return repo

    def get_commit(self, repo, rev):
        with self.st.lock:  # branches may move concurrently (move_branch)
            sha = repo.resolve(rev)
        if sha is None:
            self.hub_error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return None
        return repo.commits[sha]

    def handle_hub(self):
        seg = [urllib.parse.unquote(s) for s in self.raw_segments]
        raw = self.raw_segments
        ok, user = self.auth()
        if not ok:
            return
        if seg[:2] == ["api", "whoami-v2"]:
            self.st.count("api")
            if user is None:
                return self.hub_error(401, ANON_DENIED)
            return self.reply_json({"type": "user", "name": user["name"], "fullname": user["name"],
                                    "auth": {"type": "access_token"}, "orgs": []})
        if len(seg) >= 4 and seg[:2] == ["api", "models"]:
            repo_id, rest, raw_rest = f"{seg[2]}/{seg[3]}", seg[4:], raw[4:]
            op = rest[0] if rest else ""
            if op in ("", "revision"):
                self.st.count("api")
                return self.api_model_info(repo_id, user, "/".join(rest[1:]) if rest else None)
            if op == "tree" and len(rest) >= 2:
                self.st.count("tree")
                self.tree_fault = self.st.take_fault("hub", self.method, self.target,
                                                     phase="tree")
                if self.tree_fault and self.tree_fault.spec.get("body") is not None:
                    return self.send_tree_override(self.tree_fault)
                return self.api_tree(repo_id, user, rest[1], "/".join(rest[2:]).strip("/"))
            if op == "paths-info" and len(rest) >= 2 and self.method == "POST":
                self.st.count("paths_info")
                return self.api_paths_info(repo_id, user, "/".join(rest[1:]))
            if op == "refs":
                self.st.count("api")
                return self.api_refs(repo_id, user)
            if op == "commits" and len(rest) >= 2:
                self.st.count("api")
                return self.api_commits(repo_id, user, "/".join(rest[1:]))
        if len(seg) == 5 and seg[0] == "v2" and seg[3] == "manifests" and self.method == "GET":
            self.st.count("api")
            return self.api_gguf_manifest(f"{seg[1]}/{seg[2]}", user, seg[4])
        if len(seg) >= 5 and seg[2] in ("resolve", "raw") and self.method in ("GET", "HEAD"):
            self.st.count(seg[2])
            rev, path = seg[3], seg[4:]
            # an unencoded refs/pr/N is still understood, like on the Hub
            if rev == "refs" and len(seg) >= 7 and seg[4] == "pr" and raw[5].isdigit():
                rev, path = f"refs/pr/{seg[5]}", seg[6:]
            return self.resolve_file(f"{seg[0]}/{seg[1]}", user, rev, "/".join(path),
                                     raw=seg[2] == "raw")
        self.st.count("other")
        self.hub_error(404, "Sorry, we can't find the page you are looking for.")

    def api_model_info(self, repo_id, user, rev):
        repo = self.get_repo(repo_id, user)
        if repo is None:
            return
        commit = self.get_commit(repo, rev or repo.default_branch)
        if commit is None:
            return
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for p in commit.order:
            e = commit.files.get(p)
            if e is None:
                continue
            s = {"rfilename": p}
            if blobs:
                s.update(blobId=e["oid"], size=e["size"])
                if e["lfs"]:
                    s["lfs"] = {"sha256": e["sha256"], "size": e["size"],
                                "pointerSize": e["pointer_size"]}
            siblings.append(s)
        org = repo_id.split("/")[0]
        card = repo.card
        tags = [t for t in (card.get("library_name"),) if t]
        if card.get("license"):
            tags.append(f"license:{card['license']}")
        first = repo.commits[repo.commit_order[0]]
        info = {
            "_id": hashlib.md5(repo.id.encode()).hexdigest()[:24],
            "id": repo.id, "modelId": repo.id, "author": org,
            "sha": commit.sha, "lastModified": commit.date, "createdAt": first.date,
            "private": repo.private, "gated": repo.gated, "disabled": False,
            "downloads": 0, "likes": 0, "tags": tags + ["region:us"],
            "library_name": card.get("library_name"), "pipeline_tag": card.get("pipeline_tag"),
            "cardData": card or None, "siblings": siblings, "spaces": [],
            "usedStorage": sum({e["sha256"]: e["size"] for c in repo.commits.values()
                                for e in c.files.values()}.values()),
        }
        params = commit.safetensors_params()
        if params:
            info["safetensors"] = {"parameters": params, "total": sum(params.values())}
        gguf = commit.gguf_info()
        if gguf:
            info["gguf"] = gguf
        info = {k: v for k, v in info.items() if v is not None}
        expand = self.query.get("expand") or self.query.get("expand[]")
        if expand:  # with expand, the Hub returns only _id, id and the asked fields
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        self.reply_json(info)

    def tree_entry(self, repo, commit, path, expand):
        e = commit.files.get(path)
        if e is None:
            out = {"type": "directory", "oid": commit.dirs[path], "size": 0, "path": path}
        else:
            out = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
            if e["lfs"]:
                out["lfs"] = {"oid": e["sha256"], "size": e["size"],
                              "pointerSize": e["pointer_size"]}
        if expand:
            lc = repo.last_commit(commit, path)
            out["lastCommit"] = {"id": lc.sha, "title": lc.title, "date": lc.date}
            if e is not None:
                out["securityFileStatus"] = {"status": "safe"}
        return out

    def api_tree(self, repo_id, user, rev, path):
        repo = self.get_repo(repo_id, user)
        if repo is None:
            return
        commit = self.get_commit(repo, rev)
        if commit is None:
            return
        if not commit.is_dir(path):
            return self.hub_error(404, f"Entry not found: {path} is not a folder on {rev}",
                                  "EntryNotFound", [("X-Repo-Commit", commit.sha)])
        q = {k: v[0] for k, v in self.query.items()}
        recursive = q.get("recursive", "false").lower() in ("1", "true")
        expand = q.get("expand", "false").lower() in ("1", "true")
        page = self.st.args.page_size
        if q.get("limit", "").isdigit() and int(q["limit"]) > 0:
            page = min(page, int(q["limit"]))
        listing, keys = commit.listing(path, recursive)
        lo = 0
        if "cursor" in q:  # the cursor names the last entry of the previous page
            try:
                cur = json.loads(base64.urlsafe_b64decode(q["cursor"] + "==="))
                lo = bisect.bisect_right(keys, _path_key(cur["file_name"], bool(cur.get("dir"))))
            except (ValueError, KeyError, TypeError, AttributeError):
                return self.hub_error(400, "Invalid cursor")
        chunk = listing[lo:lo + page]
        items = [self.tree_entry(repo, commit, p, expand) for p in chunk]
        last = chunk[-1] if chunk and lo + page < len(listing) else None
        headers = []
        if last is not None:
            cursor = base64.urlsafe_b64encode(json.dumps(
                {"file_name": last, "dir": last in commit.dirs}).encode()).decode().rstrip("=")
            params = [(k, v) for k, vs in self.query.items() if k != "cursor" for v in vs]
            params.append(("cursor", cursor))
            next_url = (self.base_url() + self.path.partition("?")[0] + "?"
                        + urllib.parse.urlencode(params))
            headers.append(("Link", f'<{next_url}>; rel="next"'))
        if self.tree_fault and self.tree_fault.spec.get("link") is not None:
            headers = self.tree_override_link(self.tree_fault)
        self.reply_json(items, headers=headers)

    def tree_override_link(self, fault):
        link = (fault.spec["link"].replace("{hub}", self.st.hub_url)
                .replace("{n}", str(fault.fired)))
        return [("Link", link)] if link else []

    def send_tree_override(self, fault):
        """tree_override with a body: that text (plus `pad` spaces) as the page, as is."""
        spec = fault.spec
        # lone surrogates U+DC80..U+DCFF become raw bytes 0x80..0xFF: invalid UTF-8 on demand
        body = spec["body"].encode("utf-8", "surrogateescape") + b" " * int(spec.get("pad", 0))
        headers = self.tree_override_link(fault) if spec.get("link") is not None else []
        self.reply(int(spec.get("status", 200)), body, headers, "application/json; charset=utf-8")

    def api_paths_info(self, repo_id, user, rev):
        repo = self.get_repo(repo_id, user)
        if repo is None:
            return
        commit = self.get_commit(repo, rev)
        if commit is None:
            return
        ctype = self.headers.get("Content-Type", "")
        try:
            if "json" in ctype:
                body = json.loads(self.body or b"{}")
                paths, expand = body.get("paths", []), body.get("expand", False)
            else:
                form = urllib.parse.parse_qs(self.body.decode(), keep_blank_values=True)
                paths = form.get("paths", [])
                expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
            if isinstance(paths, str):
                paths = [paths]
        except (ValueError, AttributeError):
            return self.hub_error(400, "Invalid body")
        out, seen = [], set()
        for p in paths:  # unknown paths are left out, like on the Hub
            p = str(p).strip("/")
            if p in seen or not p or not (p in commit.files or p in commit.dirs):
                continue
            seen.add(p)
            out.append(self.tree_entry(repo, commit, p, bool(expand)))
        self.reply_json(out)

    def api_refs(self, repo_id, user):
        repo = self.get_repo(repo_id, user)
        if repo is None:
            return
        with self.st.lock:
            branches, tags, refs = dict(repo.branches), dict(repo.tags), dict(repo.refs)
        out = {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s}
                            for b, s in sorted(branches.items())],
               "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": s}
                        for t, s in sorted(tags.items())],
               "converts": []}
        if self.query.get("include_prs", ["0"])[0] in ("1", "true"):
            out["pullRequests"] = [{"name": r[len("refs/"):], "ref": r, "targetCommit": s}
                                   for r, s in sorted(refs.items()) if r.startswith("refs/pr/")]
        self.reply_json(out)

    def api_commits(self, repo_id, user, rev):
        repo = self.get_repo(repo_id, user)
        if repo is None:
            return
        commit = self.get_commit(repo, rev)
        if commit is None:
            return
        out = []
        while commit is not None:
            out.append({"id": commit.sha, "title": commit.title, "message": "",
                        "authors": [{"user": "modelfs-test"}], "date": commit.date})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self.reply_json(out)

    def api_gguf_manifest(self, repo_id, user, tag):
        """Ollama-style manifest (llama.cpp / node-llama-cpp `hf:org/repo:QUANT`): picks the
        GGUF of main whose name contains the tag (case-insensitive); `latest` prefers Q4_K_M,
        else the first GGUF."""
        repo = self.get_repo(repo_id, user, files=True)
        if repo is None:
            return
        commit = self.get_commit(repo, repo.default_branch)
        if commit is None:
            return
        ggufs = [p for p in commit.order if p.endswith(".gguf") and p in commit.files]
        t = tag.lower()
        if t == "latest":
            pick = [p for p in ggufs if "q4_k_m" in p.lower()] or ggufs
        else:
            pick = [p for p in ggufs if t in p.lower()]
        if not pick:
            return self.reply_json({"errors": [{"code": "MANIFEST_UNKNOWN", "message":
                                    f"manifest unknown: no GGUF matching {tag!r}"}]}, 400)
        e = commit.files[pick[0]]
        gguf = {"rfilename": e["path"], "blobId": f"sha256:{e['sha256']}", "size": e["size"]}
        if e["lfs"]:
            gguf["lfs"] = {"sha256": e["sha256"], "size": e["size"],
                           "pointerSize": e["pointer_size"]}
        self.reply_json({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [{"mediaType": "application/vnd.ollama.image.model",
                        "digest": f"sha256:{e['sha256']}", "size": e["size"]}],
            "ggufFile": gguf})

    def resolve_file(self, repo_id, user, rev, path, raw=False):
        repo = self.get_repo(repo_id, user, files=True)
        if repo is None:
            return
        commit = self.get_commit(repo, rev)
        if commit is None:
            return
        e = commit.files.get(path)
        common = [("X-Repo-Commit", commit.sha), ("X-Request-Id", f"Root=1-{os.urandom(12).hex()}"),
                  ("Vary", "Origin, Accept")]
        if e is None:
            return self.hub_error(404, "Entry not found", "EntryNotFound", common)
        key = f"{repo.id}/{path}"
        if raw and e["lfs"]:  # the git content of an LFS file is its pointer
            self.st.count_file(key, requests=1)
            pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{e['sha256']}\n"
                       f"size {e['size']}\n")
            return self.reply(200, pointer, common + [("ETag", f'"{e["oid"]}"')])
        if e["lfs"]:
            self.st.count_file(key, requests=1)
            self.st.count("redirects")
            loc = self.st.cdn_location(e)
            return self.reply(302, f"Found. Redirecting to {loc}", common + [
                ("Location", loc), ("X-Linked-Etag", f'"{e["sha256"]}"'),
                ("X-Linked-Size", str(e["size"]))])
        name = path.rsplit("/", 1)[-1]
        headers = common + [
            ("ETag", f'"{e["oid"]}"'),
            ("Content-Disposition", f"inline; filename*=UTF-8''{urllib.parse.quote(name)}; "
                                    f"filename=\"{header_safe(name)}\";")]
        self.serve_bytes(e, key, "hub", headers)


# --------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description="Hugging Face Hub simulator for modelfs tests")
    ap.add_argument("--fixtures", required=True, help="folder written by gen_fixtures.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="Hub port (0: any free port)")
    ap.add_argument("--cdn-port", type=int, default=0, help="CDN port (0: any free port)")
    ap.add_argument("--cdn-host", help="host name put in CDN URLs (default: --host)")
    ap.add_argument("--cdn-ttl", type=int, default=3600, help="CDN URL lifetime, seconds")
    ap.add_argument("--ready-file", help="write {hub, cdn, pid} JSON here once listening")
    ap.add_argument("--page-size", type=int, default=50, help="tree entries per page")
    ap.add_argument("--token", action="append", metavar="NAME:full|basic",
                    help="extra accepted token (full: sees private, approved for gated)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="lan",
                    help="network profile: lan = 0 ms, no cap; wan = 30 ms, 50M; "
                         "wan-harsh = 80 ms, 20M")
    ap.add_argument("--latency-ms", type=parse_latency_ms, metavar="N",
                    help="delay before every response, ms (overrides --profile)")
    ap.add_argument("--rate", type=parse_rate, metavar="BYTES_PER_S",
                    help="file bytes per second per connection, k/M/G = 10^3/10^6/10^9, "
                         "0 = unlimited (overrides --profile)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)
    lat_ms, rate = PROFILES[args.profile]
    args.initial_profile = (lat_ms if args.latency_ms is None else args.latency_ms,
                            rate if args.rate is None else args.rate)

    state = State(load_repos(args.fixtures), args)
    # every LFS blob the CDN may serve, by sha256 (dedup across repos is natural here)
    state.blobs = {}
    for r in state.repos.values():
        for c in r.commits.values():
            for e in c.files.values():
                if e["lfs"]:
                    state.blobs.setdefault(e["sha256"], e)

    hub = Server((args.host, args.port), Handler, state, "hub")
    cdn = Server((args.host, args.cdn_port), Handler, state, "cdn")
    state.hub_url = f"http://{args.host}:{hub.server_address[1]}"
    state.cdn_url = f"http://{args.cdn_host or args.host}:{cdn.server_address[1]}"
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True) for s in (hub, cdn)]
    for t in threads:
        t.start()

    def stop(signum, frame):
        state.stopping.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.ready_file:
        tmp = f"{args.ready_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"hub": state.hub_url, "cdn": state.cdn_url, "pid": os.getpid()}, f)
        os.replace(tmp, args.ready_file)
    if args.verbose:
        sys.stderr.write(f"hubsim: hub {state.hub_url} cdn {state.cdn_url} "
                         f"({len(state.repos)} repos)\n")
    while not state.stopping.wait(1.0):
        pass
    for s in (hub, cdn):
        s.shutdown()
        s.server_close()
    if args.ready_file:
        try:
            os.unlink(args.ready_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
