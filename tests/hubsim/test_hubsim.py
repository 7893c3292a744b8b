#!/usr/bin/env python3
"""Smoke test of the hub simulator's own behaviours (stdlib unittest).

    python3 tests/hubsim/test_hubsim.py [-v]

Uses the fixtures in $HUBSIM_FIXTURES when set (made by gen_fixtures.py), else generates
them into a temporary folder. Starts hubsim.py on free loopback ports, talks raw HTTP to it
(http.client: no redirect following, exact headers), and stops it with SIGTERM.
Closes with "N passed, M failed".
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "fixtures", "gen_fixtures.py")
SIM = os.path.join(HERE, "hubsim.py")
FULL, BASIC = "hf_modelfs_full", "hf_modelfs_basic"
PAGE = 4
T = 15  # seconds: bound on every network operation

ORG = "modelfs-test"
EDGE, VERS, PRIV, GATED = (f"{ORG}/{n}" for n in ("edge-cases", "versioned", "private-model",
                                                  "gated-model"))


class Sim:
    tmp = proc = None
    fixtures = hub = cdn = manifest = None


def write_tiny_gguf(path):
    """A minimal valid GGUF v3: 6 KVs, one 4x3 F32 tensor (12 parameters)."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    kv = [s("general.architecture") + struct.pack("<I", 8) + s("llama"),
          s("llama.context_length") + struct.pack("<II", 4, 128),
          s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("<unk>") + s("<s>") + s("</s>"),
          s("tokenizer.ggml.bos_token_id") + struct.pack("<II", 4, 1),
          s("tokenizer.ggml.eos_token_id") + struct.pack("<II", 4, 2),
          s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 20) + bytes(80)]
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv)) + b"".join(kv)
    head += s("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 3) + struct.pack("<IQ", 0, 0)
    head += bytes(-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head + struct.pack("<12f", *range(12)))


def setUpModule():
    Sim.tmp = tempfile.mkdtemp(prefix="hubsim-test-")
    Sim.fixtures = os.environ.get("HUBSIM_FIXTURES")
    if not Sim.fixtures:
        Sim.fixtures = os.path.join(Sim.tmp, "fixtures")
        gguf = os.path.join(Sim.tmp, "tiny.gguf")
        write_tiny_gguf(gguf)
        subprocess.run([sys.executable, GEN, "--out", Sim.fixtures, "--gguf", gguf], check=True,
                       timeout=120, stdout=subprocess.DEVNULL)
    with open(os.path.join(Sim.fixtures, "manifest.json")) as f:
        Sim.manifest = json.load(f)
    Sim.proc, ready = start_sim("ready.json", "--page-size", str(PAGE))
    Sim.hub, Sim.cdn = ready["hub"], ready["cdn"]


def start_sim(ready_name, *args):
    """Start hubsim.py on free ports; -> (process, its ready-file JSON)."""
    ready = os.path.join(Sim.tmp, ready_name)
    proc = subprocess.Popen([sys.executable, SIM, "--fixtures", Sim.fixtures, "--port", "0",
                             "--cdn-port", "0", "--ready-file", ready, *args])
    deadline = time.time() + T
    while not os.path.exists(ready):
        if time.time() > deadline or proc.poll() is not None:
            stop_sim(proc)
            raise RuntimeError("hubsim did not start")
        time.sleep(0.05)
    with open(ready) as f:
        info = json.load(f)
    assert info["pid"] == proc.pid
    return proc, info


def stop_sim(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=T)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=T)


def tearDownModule():
    stop_sim(Sim.proc)
    shutil.rmtree(Sim.tmp, ignore_errors=True)


class Resp:
    def __init__(self, status, headers, body, error=None):
        self.status, self.headers, self.body, self.error = status, headers, body, error

    def h(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


def request(url, method="GET", headers=None, body=None, conn=None):
    """One request; returns Resp. A body cut short is returned with .error set."""
    u = urllib.parse.urlsplit(url)
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=T)
    target = u.path + ("?" + u.query if u.query else "")
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, target, body=body, headers=hdrs)
        r = conn.getresponse()
        headers = {k.lower(): v for k, v in r.getheaders()}
        try:
            data, err = r.read(), None
        except (http.client.IncompleteRead, ConnectionError) as e:
            data, err = getattr(e, "partial", b""), e
        return Resp(r.status, headers, data, err)
    finally:
        if own:
            conn.close()


def raw_head(url, *extra):
    """Status line and header lines of a GET, read off a raw socket (no size limits)."""
    u = urllib.parse.urlsplit(url)
    req = f"GET {u.path}{'?' + u.query if u.query else ''} HTTP/1.1\r\nHost: x\r\n"
    req += "".join(h + "\r\n" for h in extra) + "\r\n"
    head = b""
    with socket.create_connection((u.hostname, u.port), timeout=T) as s:
        s.sendall(req.encode())
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            head += chunk
    return head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")


def hub(path, **kw):
    return request(Sim.hub + path, **kw)


def sim(path, body=None):
    r = hub("/_sim/" + path, method="POST" if body is not None else "GET", body=body)
    assert r.status == 200, (path, r.status, r.body)
    return r.json()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def repo(rid):
    return Sim.manifest["repos"][rid]


def rev_sha(rid, rev):
    r = repo(rid)
    return r["branches"].get(rev) or r["tags"].get(rev) or r["refs"].get(rev) or rev


def fentry(rid, path, rev="main"):
    r = repo(rid)
    sha = rev_sha(rid, rev)
    return next(f for f in r["commits"][sha]["files"] if f["path"] == path)


def local(rid, path, rev="main"):
    sha = rev_sha(rid, rev)
    with open(os.path.join(Sim.fixtures, "repos", rid, sha, path), "rb") as f:
        return f.read()


def tree_all(rid, rev="main", query="recursive=true"):
    """Every entry of a tree listing, following Link pages."""
    url, out = f"{Sim.hub}/api/models/{rid}/tree/{rev}?{query}", []
    while url:
        r = request(url)
        assert r.status == 200, (url, r.status, r.body)
        out += r.json()
        link = r.h("Link")
        url = link[1:link.index(">")] if link else None
    return {e["path"]: e for e in out}


def q(path):
    return urllib.parse.quote(path)


class HubsimTest(unittest.TestCase):
    def setUp(self):
        sim("reset", {"refs": True})

    # ---- metadata
    def test_model_info(self):
        r = hub(f"/api/models/{VERS}")
        self.assertEqual(r.status, 200)
        info = r.json()
        main = repo(VERS)["branches"]["main"]
        self.assertEqual((info["id"], info["sha"], info["private"], info["gated"]),
                         (VERS, main, False, False))
        self.assertEqual([s["rfilename"] for s in info["siblings"]],
                         [f["path"] for f in repo(VERS)["commits"][main]["files"]])
        self.assertEqual(info["lastModified"], repo(VERS)["commits"][main]["date"])
        for rev, want in [("v1.0", repo(VERS)["tags"]["v1.0"]), ("HEAD", main),
                          ("refs%2Fpr%2F1", repo(VERS)["refs"]["refs/pr/1"]),
                          ("feature%2Fx", repo(VERS)["branches"]["feature/x"]), (main, main)]:
            self.assertEqual(hub(f"/api/models/{VERS}/revision/{rev}").json()["sha"], want, rev)
        blobs = {s["rfilename"]: s for s in hub(f"/api/models/{VERS}?blobs=true").json()["siblings"]}
        w = fentry(VERS, "weights.bin")
        self.assertEqual(blobs["weights.bin"]["lfs"], {"sha256": w["sha256"], "size": w["size"],
                                                       "pointerSize": w["pointer_size"]})
        self.assertEqual(blobs["weights.bin"]["blobId"], w["oid"])
        only = hub(f"/api/models/{VERS}?expand=sha&expand=private").json()
        self.assertEqual(set(only), {"_id", "id", "sha", "private"})
        st = hub(f"/api/models/{ORG}/tiny-safetensors").json()
        self.assertEqual(st["safetensors"]["total"],
                         repo(f"{ORG}/tiny-safetensors")["expect"]["parameters"])

    def test_tree_pagination(self):
        commit = repo(EDGE)["commits"][repo(EDGE)["branches"]["main"]]
        want = sorted([f["path"] for f in commit["files"]] + list(commit["dirs"]))
        url, got, pages = f"{Sim.hub}/api/models/{EDGE}/tree/main?recursive=true", [], 0
        while url:
            r = request(url)
            self.assertEqual(r.status, 200)
            items = r.json()
            self.assertLessEqual(len(items), PAGE)
            got += [e["path"] for e in items]
            pages += 1
            link = r.h("Link")
            url = link[1:link.index(">")] if link else None
            if url:
                self.assertTrue(url.startswith(Sim.hub) and "cursor=" in url, link)
                self.assertTrue(link.endswith('; rel="next"'))
        self.assertEqual(sorted(got), want)
        self.assertEqual(len(got), len(set(got)))
        self.assertEqual(pages, -(-len(want) // PAGE))
        # limit lowers the page size; a non-recursive listing shows one level
        self.assertEqual(len(hub(f"/api/models/{EDGE}/tree/main?recursive=true&limit=2").json()), 2)
        top = hub(f"/api/models/{EDGE}/tree/main/nested/deep?recursive=false").json()
        self.assertEqual([(e["type"], e["path"]) for e in top], [("directory", "nested/deep/a")])
        # entry shapes
        entries = tree_all(EDGE, query="recursive=false")
        big = fentry(EDGE, "large.bin")
        self.assertEqual(entries["large.bin"], {
            "type": "file", "oid": big["oid"], "size": big["size"], "path": "large.bin",
            "lfs": {"oid": big["sha256"], "size": big["size"], "pointerSize": big["pointer_size"]}})
        self.assertEqual(entries["nested"]["type"], "directory")
        self.assertEqual(entries["nested"]["oid"], commit["dirs"]["nested"])
        self.assertNotIn("lfs", entries["small.txt"])
        r = hub(f"/api/models/{EDGE}/tree/main/no-such-dir")
        self.assertEqual((r.status, r.h("X-Error-Code")), (404, "EntryNotFound"))

    def test_tree_expand_last_commit(self):
        v = repo(VERS)
        items = tree_all(VERS, query="expand=true")
        self.assertEqual(items["README.md"]["lastCommit"]["id"], v["commit_order"][0])
        self.assertEqual(items["weights.bin"]["lastCommit"]["id"], v["branches"]["main"])
        self.assertEqual(items["added-later.txt"]["lastCommit"]["id"], v["commit_order"][1])
        self.assertIn("securityFileStatus", items["weights.bin"])

    def test_paths_info(self):
        w = fentry(VERS, "weights.bin")
        r = hub(f"/api/models/{VERS}/paths-info/main", method="POST",
                body={"paths": ["weights.bin", "nope", "config.json"], "expand": True})
        got = r.json()
        self.assertEqual([e["path"] for e in got], ["weights.bin", "config.json"])
        self.assertEqual(got[0]["lfs"]["oid"], w["sha256"])
        self.assertIn("lastCommit", got[0])
        form = urllib.parse.urlencode([("paths", "README.md"), ("paths", "config.json")])
        r = hub(f"/api/models/{VERS}/paths-info/v1.0", method="POST", body=form.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual([e["path"] for e in r.json()], ["README.md", "config.json"])
        self.assertEqual(r.json()[1]["oid"], fentry(VERS, "config.json", "v1.0")["oid"])
        self.assertEqual(sim("counters")["paths_info"], 2)

    # ---- bytes
    def test_resolve_plain_and_ranges(self):
        e = fentry(EDGE, "exact-4MiB-plus-1.bin")
        path = f"/{EDGE}/resolve/main/small.txt"
        r = hub(path + "?download=true")
        small = fentry(EDGE, "small.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, local(EDGE, "small.txt"))
        self.assertEqual(r.h("ETag"), f'"{small["oid"]}"')
        self.assertEqual(r.h("X-Repo-Commit"), repo(EDGE)["branches"]["main"])
        self.assertEqual(r.h("Accept-Ranges"), "bytes")
        self.assertEqual(int(r.h("Content-Length")), small["size"])
        data = local(EDGE, "small.txt")
        n = len(data)
        for rng, (a, b) in [("bytes=0-4", (0, 4)), ("bytes=3-", (3, n - 1)),
                            ("bytes=-5", (n - 5, n - 1)), ("bytes=2-1000", (2, n - 1)),
                            ("bytes=0-0", (0, 0))]:
            r = hub(path, headers={"Range": rng})
            self.assertEqual(r.status, 206, rng)
            self.assertEqual(r.h("Content-Range"), f"bytes {a}-{b}/{n}", rng)
            self.assertEqual(r.body, data[a:b + 1], rng)
        for rng in ("bytes=19-", f"bytes={n + 10}-{n + 20}", "bytes=-0"):
            r = hub(path, headers={"Range": rng})
            self.assertEqual((r.status, r.h("Content-Range"), r.body), (416, f"bytes */{n}", b""))
        r = hub(path, headers={"Range": "bytes=0-1,4-5"})  # multi-range: ignored, 200
        self.assertEqual((r.status, r.body), (200, data))
        r = hub(path, method="HEAD")
        self.assertEqual((r.status, r.body, int(r.h("Content-Length"))), (200, b"", n))
        r = hub(f"/{EDGE}/resolve/main/empty.txt", headers={"Range": "bytes=0-0"})
        self.assertEqual((r.status, r.h("Content-Range")), (416, "bytes */0"))
        r = hub(f"/{EDGE}/resolve/main/empty.txt")
        self.assertEqual((r.status, r.body, r.h("Content-Length")), (200, b"", "0"))
        # unicode + spaces, percent-encoded keeping "/"
        p = "dir with spaces/naïve café ✓.txt"
        r = hub(f"/{EDGE}/resolve/main/{q(p)}")
        self.assertEqual((r.status, r.body), (200, local(EDGE, p)))
        self.assertTrue(e["lfs"])

    def test_redirect_and_cdn(self):
        e = fentry(EDGE, "exact-4MiB-plus-1.bin")
        for method in ("HEAD", "GET"):
            r = hub(f"/{EDGE}/resolve/main/exact-4MiB-plus-1.bin", method=method,
                    headers={"Range": "bytes=0-0"})
            self.assertEqual(r.status, 302)
            self.assertEqual(r.h("X-Linked-Etag"), f'"{e["sha256"]}"')
            self.assertEqual(r.h("X-Linked-Size"), str(e["size"]))
            self.assertEqual(r.h("X-Repo-Commit"), repo(EDGE)["branches"]["main"])
            loc = r.h("Location")
            self.assertTrue(loc.startswith(Sim.cdn + "/"), loc)
            self.assertIn("expires=", loc)
            self.assertIn("sig=", loc)
            if method == "GET":
                self.assertEqual(r.body, f"Found. Redirecting to {loc}".encode())
        data = local(EDGE, "exact-4MiB-plus-1.bin")
        n = len(data)
        r = request(loc)
        self.assertEqual((r.status, r.h("ETag"), r.h("Accept-Ranges")), (200, f'"{e["sha256"]}"', "bytes"))
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), e["sha256"])
        for rng, (a, b) in [("bytes=4194300-4194310", (4194300, 4194304)),
                            ("bytes=100-", (100, n - 1)), ("bytes=-3", (n - 3, n - 1))]:
            r = request(loc, headers={"Range": rng})
            self.assertEqual((r.status, r.h("Content-Range")), (206, f"bytes {a}-{b}/{n}"))
            self.assertEqual(r.body, data[a:b + 1])
        r = request(loc, headers={"Range": f"bytes={n}-"})
        self.assertEqual((r.status, r.h("Content-Range")), (416, f"bytes */{n}"))
        # tampered signature, then expiry of every URL issued so far
        bad = loc.replace("sig=", "sig=0")
        self.assertEqual(request(bad).status, 403)
        sim("fault", {"kind": "cdn_expire"})
        self.assertEqual(request(loc).status, 403)
        fresh = hub(f"/{EDGE}/resolve/main/exact-4MiB-plus-1.bin").h("Location")
        self.assertEqual(request(fresh, headers={"Range": "bytes=0-9"}).body, data[:10])
        c = sim("counters")
        self.assertEqual(c["cdn_denied"], 2)
        self.assertEqual(c["cdn_auth_leaks"], 0)
        request(fresh, headers=auth(FULL))  # a client that forwards the token to the CDN
        self.assertEqual(sim("counters")["cdn_auth_leaks"], 1)

    # ---- errors
    def test_errors(self):
        def err(path, token=None):
            r = hub(path, headers=auth(token) if token else {})
            body = json.loads(r.body) if r.status >= 400 else {}
            return r.status, r.h("X-Error-Code"), r.h("X-Error-Message"), body.get("error")
        anon = (401, None, "Invalid username or password.", "Invalid username or password.")
        self.assertEqual(err(f"/api/models/{PRIV}"), anon)
        self.assertEqual(err(f"/api/models/{ORG}/nope"), anon)
        self.assertEqual(err(f"/{PRIV}/resolve/main/config.json"), anon)
        self.assertEqual(err(f"/api/models/{PRIV}/tree/main"), anon)
        self.assertEqual(err(f"/api/models/{PRIV}", BASIC)[:2], (404, "RepoNotFound"))
        self.assertEqual(err(f"/api/models/{ORG}/nope", FULL)[:2], (404, "RepoNotFound"))
        self.assertEqual(err(f"/api/models/{PRIV}", FULL)[0], 200)
        self.assertEqual(err(f"/{PRIV}/resolve/main/pytorch_model.bin", FULL)[0], 302)
        self.assertEqual(err(f"/{GATED}/resolve/main/config.json")[:2], (401, "GatedRepo"))
        self.assertEqual(err(f"/{GATED}/resolve/main/config.json", BASIC)[:2], (403, "GatedRepo"))
        self.assertEqual(err(f"/{GATED}/resolve/main/config.json", FULL)[0], 200)
        self.assertEqual(err(f"/api/models/{GATED}")[0], 200)  # metadata is public
        self.assertEqual(err(f"/api/models/{EDGE}", "hf_bogus")[:3],
                         (401, None, "Invalid credentials in Authorization header"))
        self.assertEqual(err(f"/api/models/{VERS}/revision/nope")[:2], (404, "RevisionNotFound"))
        self.assertEqual(err(f"/{VERS}/resolve/nope/config.json")[:2], (404, "RevisionNotFound"))
        r = hub(f"/{VERS}/resolve/main/missing.txt")
        self.assertEqual((r.status, r.h("X-Error-Code")), (404, "EntryNotFound"))
        self.assertEqual(r.h("X-Repo-Commit"), repo(VERS)["branches"]["main"])
        self.assertEqual(r.h("Content-Type"), "application/json; charset=utf-8")
        c = sim("counters")
        self.assertEqual(c["errors"], 12)

    # ---- faults
    def test_fault_status(self):
        path = f"/{EDGE}/resolve/main/small.txt"
        sim("fault", {"kind": "status", "status": 503, "count": 2, "match": "small.txt"})
        self.assertEqual(hub(f"/{EDGE}/resolve/main/README.md").status, 200)  # no match
        self.assertEqual([hub(path).status for _ in range(3)], [503, 503, 200])
        sim("fault", {"kind": "status", "status": 429, "retry_after": 7, "match": "/tree/"})
        r = hub(f"/api/models/{EDGE}/tree/main")
        self.assertEqual((r.status, r.h("Retry-After")), (429, "7"))
        self.assertEqual(r.h("RateLimit"), '"api";r=0;t=7')
        self.assertIn("RateLimit-Policy".lower(), r.headers)
        sim("fault", {"kind": "status", "status": 429, "retry_after": 3, "headers": ["ratelimit"]})
        r = hub(f"/{EDGE}/resolve/main/small.txt")
        self.assertEqual((r.status, r.h("Retry-After"), r.h("RateLimit")),
                         (429, None, '"resolvers";r=0;t=3'))
        # CDN requests get status faults too
        loc = hub(f"/{EDGE}/resolve/main/exact-4MiB.bin").h("Location")
        sim("fault", {"kind": "status", "status": 500, "port": "cdn"})
        self.assertEqual(request(loc).status, 500)
        self.assertEqual(request(loc, headers={"Range": "bytes=0-0"}).status, 206)
        self.assertEqual(sim("counters")["faults_fired"], 5)

    def test_fault_body(self):
        e = fentry(EDGE, "exact-4MiB.bin")
        data = local(EDGE, "exact-4MiB.bin")
        loc = hub(f"/{EDGE}/resolve/main/exact-4MiB.bin").h("Location")
        # drop: headers + N bytes, then the connection is reset
        sim("fault", {"kind": "drop", "after_bytes": 1000, "match": e["sha256"]})
        r = request(loc)
        self.assertEqual(r.h("Content-Length"), str(e["size"]))
        self.assertIsNotNone(r.error)
        self.assertLessEqual(len(r.body), 1000)
        # truncate: clean close after N bytes, Content-Length still the full size
        sim("fault", {"kind": "truncate", "after_bytes": 5000, "match": "exact-4MiB.bin"})
        r = request(loc)
        self.assertEqual((r.status, r.h("Content-Length")), (200, str(e["size"])))
        self.assertEqual(r.body, data[:5000])
        # corrupt: one byte flipped at `at`
        sim("fault", {"kind": "corrupt", "at": 10, "match": "exact-4MiB.bin"})
        r = request(loc, headers={"Range": "bytes=0-99"})
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body[10], data[10] ^ 0xFF)
        self.assertEqual(r.body[:10] + r.body[11:], data[:10] + data[11:100])
        # ignore_range: 200 with the whole body
        sim("fault", {"kind": "ignore_range", "match": "small.txt"})
        r = hub(f"/{EDGE}/resolve/main/small.txt", headers={"Range": "bytes=0-1"})
        self.assertEqual((r.status, r.body, r.h("Content-Range")),
                         (200, local(EDGE, "small.txt"), None))
        # stall: a pause after N bytes, then the rest
        sim("fault", {"kind": "stall", "seconds": 1.0, "after_bytes": 10, "match": "small.txt"})
        t0 = time.time()
        r = hub(f"/{EDGE}/resolve/main/small.txt")
        self.assertGreaterEqual(time.time() - t0, 0.9)
        self.assertEqual(r.body, local(EDGE, "small.txt"))
        # a body fault is not used up by a redirect (no file bytes in a 302)
        sim("fault", {"kind": "truncate", "after_bytes": 3, "match": "exact-4MiB.bin"})
        fresh = hub(f"/{EDGE}/resolve/main/exact-4MiB.bin").h("Location")
        self.assertEqual(len(request(fresh).body), 3)
        self.assertEqual(sim("faults"), [])
        self.assertEqual(request(loc, headers={"Range": "bytes=0-9"}).body, data[:10])

    # ---- hostile-input faults
    def test_fault_tree_override(self):
        url = f"/api/models/{EDGE}/tree/main?recursive=true"
        body = '[{"type":"file","oid":"' + "a" * 40 + '","size":1,"path":"../x"}'
        sim("fault", {"kind": "tree_override", "body": body, "match": "/tree/"})
        r = hub(url)  # the text as given, not re-encoded (even invalid JSON), no Link
        self.assertEqual((r.status, r.body, r.h("Link")), (200, body.encode(), None))
        # link only: the real page with that Link ({hub} expanded); "" removes the Link
        loop = '<{hub}' + url + '&cursor=Zm9v>; rel="next"'
        sim("fault", [{"kind": "tree_override", "link": loop, "match": "/tree/"},
                      {"kind": "tree_override", "link": "", "match": "/tree/"}])
        r = hub(url)
        self.assertEqual(len(r.json()), PAGE)
        self.assertEqual(r.h("Link"), loop.replace("{hub}", Sim.hub))
        r = hub(url)
        self.assertEqual((len(r.json()), r.h("Link")), (PAGE, None))
        # status and pad (trailing spaces keep the JSON valid); other endpoints untouched
        sim("fault", {"kind": "tree_override", "body": "[]", "pad": 1000, "status": 500,
                      "count": -1, "match": "/tree/"})
        r = hub(url)
        self.assertEqual((r.status, len(r.body), r.json()), (500, 1002, []))
        self.assertEqual(hub(f"/api/models/{EDGE}").status, 200)
        self.assertEqual(sim("counters")["faults_fired"], 4)
        bad = hub("/_sim/fault", method="POST", body={"kind": "tree_override", "body": 5})
        self.assertEqual(bad.status, 400)

    def test_fault_header_override(self):
        e = fentry(EDGE, "exact-4MiB.bin")
        path = f"/{EDGE}/resolve/main/exact-4MiB.bin"
        # replace (default): the named headers are swapped, others stay; the connection closes
        sim("fault", {"kind": "header_override", "headers": {"X-Linked-Size": "12"},
                      "match": "exact-4MiB.bin", "port": "hub"})
        r = hub(path)
        self.assertEqual((r.status, r.h("X-Linked-Size"), r.h("Connection")), (302, "12", "close"))
        self.assertEqual(r.h("X-Linked-Etag"), f'"{e["sha256"]}"')
        # add: a second, conflicting value of the same header; remove drops one
        loc = hub(path).h("Location")
        sim("fault", {"kind": "header_override", "mode": "add", "port": "cdn",
                      "headers": [["Content-Length", "7"]], "remove": ["ETag"]})
        lines = raw_head(loc, "Range: bytes=0-9")
        self.assertEqual(sorted(l for l in lines if l.lower().startswith("content-length")),
                         ["Content-Length: 10", "Content-Length: 7"])
        self.assertFalse(any(l.lower().startswith("etag") for l in lines))
        # pad_headers and a huge value (raw socket: http.client refuses both)
        sim("fault", {"kind": "header_override", "pad_headers": 500,
                      "headers": {"X-Big": "y" * 1000000}, "match": "small.txt"})
        lines = raw_head(Sim.hub + f"/{EDGE}/resolve/main/small.txt")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK")
        self.assertIn("X-Big: " + "y" * 1000000, lines)
        self.assertEqual(sum(l.startswith("X-Pad-") for l in lines), 500)
        self.assertEqual(sim("faults"), [])

    def test_fault_redirect(self):
        path = f"/{EDGE}/resolve/main/exact-4MiB.bin"
        sim("fault", {"kind": "redirect", "location": "file:///etc/passwd", "match": "exact-4MiB"})
        r = hub(path)
        self.assertEqual((r.status, r.h("Location")), (302, "file:///etc/passwd"))
        self.assertEqual(r.h("X-Repo-Commit"), repo(EDGE)["branches"]["main"])
        # {self} makes a loop; CDN requests can be redirected too; status is settable
        loc = hub(path).h("Location")
        sim("fault", {"kind": "redirect", "location": "{self}", "port": "cdn", "status": 307})
        r = request(loc)
        self.assertEqual((r.status, r.h("Location")), (307, loc))
        self.assertIsNone(r.h("X-Repo-Commit"))
        sim("fault", {"kind": "redirect", "location": "{cdn}/x", "match": "small.txt"})
        self.assertEqual(hub(f"/{EDGE}/resolve/main/small.txt").h("Location"), Sim.cdn + "/x")
        c = sim("counters")
        self.assertEqual((c["faults_fired"], c["faults_armed"]), (3, 0))
        self.assertEqual(hub("/_sim/fault", method="POST", body={"kind": "redirect"}).status, 400)

    def test_fault_content_range(self):
        data = local(EDGE, "exact-4MiB.bin")
        loc = hub(f"/{EDGE}/resolve/main/exact-4MiB.bin").h("Location")
        sim("fault", {"kind": "content_range", "value": "bytes {start}-{end}/281474976710656",
                      "match": "exact-4MiB.bin"})
        r = request(loc, headers={"Range": "bytes=100-199"})
        self.assertEqual((r.status, r.h("Content-Range"), r.body),
                         (206, "bytes 100-199/281474976710656", data[100:200]))
        sim("fault", {"kind": "content_range", "value": "bytes 0-99/{size}", "match": "small.txt"})
        r = hub(f"/{EDGE}/resolve/main/small.txt", headers={"Range": "bytes=5-9"})
        self.assertEqual((r.status, r.h("Content-Range"), r.body),
                         (206, f"bytes 0-99/{len(local(EDGE, 'small.txt'))}",
                          local(EDGE, "small.txt")[5:10]))
        self.assertEqual(request(loc, headers={"Range": "bytes=0-0"}).h("Content-Range"),
                         f"bytes 0-0/{len(data)}")

    # ---- counters, connections, keep-alive
    def test_counters_and_keepalive(self):
        base = sim("counters")["connections"]["hub"]
        u = urllib.parse.urlsplit(Sim.hub)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=T)
        try:
            for _ in range(3):
                self.assertEqual(request(Sim.hub + f"/api/models/{EDGE}", conn=conn).status, 200)
            request(Sim.hub + f"/api/models/{EDGE}/tree/main", conn=conn)
            r = request(Sim.hub + f"/{EDGE}/resolve/main/small.txt", conn=conn,
                        headers={"Range": "bytes=2-5"})
            self.assertEqual(r.status, 206)
            request(Sim.hub + f"/api/models/{EDGE}/paths-info/main", method="POST",
                    body={"paths": ["small.txt"]}, conn=conn)
            r = request(Sim.hub + f"/{EDGE}/resolve/main/nope", conn=conn)
            self.assertEqual(r.status, 404)
            loc = request(Sim.hub + f"/{EDGE}/resolve/main/exact-4MiB.bin", conn=conn).h("Location")
        finally:
            conn.close()
        request(loc, headers={"Range": "bytes=10-19"})
        c = sim("counters")
        self.assertEqual(c["connections"]["hub"] - base, 2)  # the keep-alive one + sim()
        self.assertEqual((c["api"], c["tree"], c["resolve"], c["paths_info"], c["cdn"]),
                         (3, 1, 3, 1, 1))
        self.assertEqual(c["errors"], 1)
        self.assertEqual(c["bytes_served"], 4 + 10)
        sha = fentry(EDGE, "exact-4MiB.bin")["sha256"]
        self.assertEqual(c["files"][f"{EDGE}/small.txt"], {"requests": 1, "bytes": 4})
        self.assertEqual(c["files"][sha], {"requests": 1, "bytes": 10})
        self.assertEqual(c["files"][f"{EDGE}/exact-4MiB.bin"]["requests"], 1)
        self.assertIn({"file": sha, "start": 10, "end": 19, "status": 206, "port": "cdn"},
                      c["ranges"])
        self.assertEqual(c["status"].get("206"), 2)
        sim("reset", {})
        c = sim("counters")
        self.assertEqual((c["api"], c["bytes_served"], c["files"], c["ranges"]), (0, 0, {}, []))

    # ---- refs
    def test_move_branch(self):
        v = repo(VERS)
        self.assertEqual(hub(f"/api/models/{VERS}/revision/movable").json()["sha"],
                         v["branches"]["movable"])
        out = sim("move_branch", {"repo": VERS, "branch": "movable", "to": "main"})
        self.assertEqual((out["sha"], out["previous"]), (v["branches"]["main"], v["branches"]["movable"]))
        self.assertEqual(hub(f"/api/models/{VERS}/revision/movable").json()["sha"],
                         v["branches"]["main"])
        r = hub(f"/{VERS}/resolve/movable/config.json")
        self.assertEqual((r.h("X-Repo-Commit"), r.body),
                         (v["branches"]["main"], local(VERS, "config.json", "main")))
        c2 = v["commit_order"][1]
        sim("move_branch", {"repo": VERS, "branch": "movable", "to": c2})
        self.assertEqual(hub(f"/{VERS}/resolve/movable/added-later.txt").status, 200)
        self.assertEqual(hub(f"/{VERS}/resolve/movable/removed-later.txt").status, 200)
        self.assertEqual(hub("/_sim/move_branch", method="POST",
                             body={"repo": VERS, "branch": "movable", "to": "nope"}).status, 404)
        sim("reset", {"refs": True})
        self.assertEqual(hub(f"/api/models/{VERS}/revision/movable").json()["sha"],
                         v["branches"]["movable"])

    def test_revisions_in_resolve(self):
        v = repo(VERS)
        for rev, sha in [("feature%2Fx", v["branches"]["feature/x"]), ("v1.0", v["tags"]["v1.0"]),
                         ("refs%2Fpr%2F1", v["refs"]["refs/pr/1"]), ("refs/pr/1", v["refs"]["refs/pr/1"]),
                         (v["commit_order"][0], v["commit_order"][0])]:
            r = hub(f"/{VERS}/resolve/{rev}/config.json")
            self.assertEqual((r.status, r.h("X-Repo-Commit")), (200, sha), rev)
            self.assertEqual(r.body, local(VERS, "config.json", sha), rev)
        r = hub(f"/{VERS}/resolve/main/removed-later.txt")
        self.assertEqual(r.h("X-Error-Code"), "EntryNotFound")
        self.assertEqual(hub(f"/{VERS}/resolve/dev/dev-only.txt").status, 200)
        # raw/ serves the git content: the pointer for an LFS file
        r = hub(f"/{VERS}/raw/main/weights.bin")
        self.assertTrue(r.body.startswith(b"version https://git-lfs.github.com/spec/v1\n"))
        self.assertEqual(len(r.body), fentry(VERS, "weights.bin")["pointer_size"])


class WanTest(unittest.TestCase):
    """WAN profile: delay before responses, per-connection rate cap on file bytes. Timing is
    asserted loosely (a shared 2-core machine): lower bounds are what sleeping guarantees,
    upper bounds leave 2x or more of slack."""
    MB = 1000 * 1000

    def setUp(self):
        sim("reset", {"refs": True, "profile": True})
        self.addCleanup(sim, "reset", {"profile": True})
        self.loc = hub(f"/{EDGE}/resolve/main/large.bin").h("Location")

    def big(self, start, n):
        """Bytes [start, start + n) of large.bin (160 MiB: not read whole)."""
        with open(os.path.join(Sim.fixtures, "repos", EDGE, rev_sha(EDGE, "main"),
                               "large.bin"), "rb") as f:
            f.seek(start)
            return f.read(n)

    def timed(self, url, **kw):
        t0 = time.monotonic()
        r = request(url, **kw)
        return r, time.monotonic() - t0

    def test_profile_control(self):
        self.assertEqual(sim("profile"), {"profile": "lan", "latency_ms": 0, "rate": 0})
        self.assertEqual(sim("profile", {"profile": "wan"}),
                         {"profile": "wan", "latency_ms": 30, "rate": 50000000})
        self.assertEqual(sim("profile", {"rate": "20M"}),  # on top of the current values
                         {"profile": "custom", "latency_ms": 30, "rate": 20000000})
        self.assertEqual(sim("profile", {"profile": "wan-harsh", "latency_ms": 5}),
                         {"profile": "custom", "latency_ms": 5, "rate": 20000000})
        self.assertEqual(sim("profile", {"latency_ms": 80})["profile"], "wan-harsh")
        for bad in ({"profile": "moon"}, {"rate": -1}, {"rate": "fast"}, {"latency_ms": "x"}):
            self.assertEqual(hub("/_sim/profile", method="POST", body=bad).status, 400, bad)
        sim("reset", {})  # counters only: the profile stays
        self.assertEqual(sim("profile")["profile"], "wan-harsh")
        sim("reset", {"profile": True})  # back to the command line's
        self.assertEqual(sim("profile")["profile"], "lan")
        # command line: the profile, then explicit flags over it
        proc, info = start_sim("ready-wan.json", "--profile", "wan-harsh", "--rate", "5M")
        try:
            r = request(info["hub"] + "/_sim/profile")
            self.assertEqual(r.json(), {"profile": "custom", "latency_ms": 80, "rate": 5000000})
        finally:
            stop_sim(proc)

    def test_latency(self):
        lat = 0.1
        sim("profile", {"latency_ms": lat * 1000})
        u = urllib.parse.urlsplit(Sim.hub)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=T)
        try:  # every response of a keep-alive connection waits, not only the first
            t0 = time.monotonic()
            for _ in range(2):
                self.assertEqual(request(Sim.hub + f"/api/models/{EDGE}", conn=conn).status, 200)
            self.assertGreaterEqual(time.monotonic() - t0, 2 * 0.8 * lat)
        finally:
            conn.close()
        for url, kw, status in [(Sim.hub + f"/{EDGE}/resolve/main/large.bin", {}, 302),
                                (Sim.hub + f"/{EDGE}/resolve/main/nope", {}, 404),
                                (Sim.hub + f"/{EDGE}/resolve/main/small.txt", {}, 200),
                                (self.loc, {"headers": {"Range": "bytes=0-9"}}, 206),
                                (self.loc, {"method": "HEAD"}, 200)]:
            r, dt = self.timed(url, **kw)
            self.assertEqual(r.status, status, url)
            self.assertGreaterEqual(dt, 0.8 * lat, url)
        # the control API is never delayed; LAN adds nothing (best of 3: a loaded machine)
        self.assertLess(min(self.timed(Sim.hub + "/_sim/health")[1] for _ in range(3)), lat / 2)
        sim("profile", {"profile": "lan"})
        self.assertLess(min(self.timed(Sim.hub + f"/api/models/{EDGE}")[1] for _ in range(3)),
                        lat / 2)

    def test_rate_cap_one_connection(self):
        sim("profile", {"latency_ms": 0, "rate": 20 * self.MB})
        n = 20 * self.MB
        u = urllib.parse.urlsplit(self.loc)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=T)
        try:
            t0 = time.monotonic()
            conn.request("GET", self.loc[len(Sim.cdn):], headers={"Range": f"bytes=0-{n - 1}"})
            r = conn.getresponse()
            body = bytearray()
            half = None
            while len(body) < n:
                chunk = r.read1(1 << 20)
                self.assertTrue(chunk, "body cut short")
                body += chunk
                if half is None and len(body) >= n // 2:
                    half = time.monotonic() - t0
            total = time.monotonic() - t0
        finally:
            conn.close()
        self.assertEqual(bytes(body), self.big(0, n))
        self.assertTrue(0.8 <= total <= 2.5, total)
        # smooth: the first half arrives about half way, not all at once at either end
        self.assertTrue(0.25 <= half / total <= 0.8, (half, total))
        self.assertEqual(sim("counters")["bytes_served"], n)

    def test_parallel_connections_and_in_flight(self):
        sim("profile", {"latency_ms": 0, "rate": 20 * self.MB})
        n, k = 10 * self.MB, 4  # 0.5 s each: ~0.5 s together, 2 s if serialised
        out = [None] * k

        def get(i):
            a = i * n
            out[i] = request(self.loc, headers={"Range": f"bytes={a}-{a + n - 1}"})
        threads = [threading.Thread(target=get, args=(i,)) for i in range(k)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(T)
        total = time.monotonic() - t0
        for i, r in enumerate(out):
            self.assertEqual((r.status, r.body), (206, self.big(i * n, n)))
        self.assertTrue(0.4 <= total <= 1.4, total)
        c = sim("counters")
        self.assertEqual((c["in_flight"], c["in_flight_peak"]), (0, k))
        sim("reset", {})
        self.assertEqual(sim("counters")["in_flight_peak"], 0)

    def test_faults_and_in_flight_gauge(self):
        sim("profile", {"profile": "wan"})
        data = local(EDGE, "exact-4MiB.bin")
        loc = hub(f"/{EDGE}/resolve/main/exact-4MiB.bin").h("Location")
        # a stalled response is in flight (both counters), and still completes
        sim("fault", {"kind": "stall", "seconds": 0.8, "after_bytes": 100, "match": "4MiB.bin"})
        got = []
        t = threading.Thread(target=lambda: got.append(request(loc)))
        t.start()
        deadline = time.monotonic() + T
        while sim("counters")["in_flight"] != 1:
            self.assertLess(time.monotonic(), deadline, "the stalled response never showed")
            time.sleep(0.02)
        sim("reset", {})  # the peak restarts from what is open now
        self.assertEqual(sim("counters")["in_flight_peak"], 1)
        t.join(T)
        self.assertEqual(got[0].body, data)
        c = sim("counters")
        self.assertEqual((c["in_flight"], c["in_flight_peak"]), (0, 1))
        # drop, status and truncate behave as in LAN mode
        sim("fault", {"kind": "drop", "after_bytes": 1000, "match": "4MiB.bin"})
        r = request(loc)
        self.assertIsNotNone(r.error)
        self.assertLessEqual(len(r.body), 1000)
        sim("fault", {"kind": "status", "status": 503, "port": "cdn"})
        self.assertEqual(request(loc).status, 503)
        sim("fault", {"kind": "truncate", "after_bytes": 5000, "match": "4MiB.bin"})
        self.assertEqual(request(loc).body, data[:5000])
        self.assertEqual(sim("counters")["in_flight"], 0)


class GgufTest(unittest.TestCase):
    GGUF = f"{ORG}/tiny-llama-GGUF"

    def setUp(self):
        if self.GGUF not in Sim.manifest["repos"]:
            self.skipTest("fixtures made without --gguf")

    def test_gguf_info_and_manifest(self):
        e = fentry(self.GGUF, "model.gguf")
        copy = fentry(f"{ORG}/tiny-llama-GGUF-copy", "model.gguf")
        self.assertEqual((e["sha256"], e["lfs"]), (copy["sha256"], True))
        info = hub(f"/api/models/{self.GGUF}").json()
        self.assertEqual(info["gguf"]["architecture"], "llama")
        if not os.environ.get("HUBSIM_FIXTURES"):  # our own tiny GGUF: exact values
            self.assertEqual(info["gguf"], {"total": 12, "architecture": "llama",
                                            "context_length": 128, "bos_token": "<s>",
                                            "eos_token": "</s>"})
        m = hub(f"/v2/{self.GGUF}/manifests/latest", headers={"User-Agent": "llama-cpp"}).json()
        self.assertEqual((m["ggufFile"]["rfilename"], m["ggufFile"]["size"]), ("model.gguf", e["size"]))
        self.assertEqual(hub(f"/v2/{self.GGUF}/manifests/Q8_0").status, 400)
        r = hub(f"/{self.GGUF}/resolve/main/model.gguf?download=true")
        self.assertEqual((r.status, r.h("X-Linked-Size")), (302, str(e["size"])))
        body = request(r.h("Location")).body
        self.assertEqual(hashlib.sha256(body).hexdigest(), e["sha256"])


def main():
    result = unittest.main(exit=False, verbosity=2 if "-v" in sys.argv else 1).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed")
    return 1 if failed or not result.wasSuccessful() else 0


if __name__ == "__main__":
    sys.exit(main())
