"""Security through real mounts: the token stays secret, never reaches the CDN, TLS is always
verified, the cache is private, and the control socket decides from SO_PEERCRED only."""

import errno
import json
import os
import pwd
import select
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

from mfs import BIN, FULL_TOKEN, ORG, Mount, MountTest, is_mounted, run_cli, sha256_file

MIB = 1 << 20
USER = "mfs-sec-user"


def ensure_user():
    """Same as test_cli.py's Permissions: a system user without a home, created if missing and
    left in place (nothing else to restore)."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        USER], check=True)


def as_user(cmd, input_text=None, timeout=60):
    return subprocess.run(["runuser", "-u", USER, "--", *cmd], capture_output=True, text=True,
                          input=input_text, timeout=timeout)


def all_xattrs(root):
    """{path: {name: value}} for every file and folder under root (getfattr -d -m -)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for p in [dirpath] + [os.path.join(dirpath, f) for f in files]:
            vals = {}
            for name in os.listxattr(p):
                try:
                    vals[name] = os.getxattr(p, name)
                except OSError as e:
                    vals[name] = f"errno {e.errno}".encode()
            out[p] = vals
    return out


def grep_tree(root, needles, skip_ids=()):
    """Files under root whose bytes contain any of needles. skip_ids: content ids whose chunk
    files are left out (upstream files that contain the needle themselves)."""
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        if any(i in dirpath for i in skip_ids):
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                continue
            try:
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            hits += [(p, n) for n in needles if n.encode() in data]
    return hits


class Token(MountTest):
    def ids_containing(self, text):
        """Content ids of fixture files whose own bytes contain text (the fixture READMEs of
        the private and gated repos describe the test tokens)."""
        out = set()
        for repo_id, r in self.m["repos"].items():
            name = repo_id.split("/", 1)[1]
            for commit, c in r["commits"].items():
                for f in c["files"]:
                    with open(self.local(name, f["path"], commit), "rb") as fh:
                        if text.encode() in fh.read():
                            out.update({f["sha256"], f["git_sha1"], f["oid"]})
        return out

    def exercise(self, m):
        """Everything that could carry a token: listings, gated and private bytes (Hub and CDN),
        xattrs, and the CLI through the control socket. Returns the CLI outputs."""
        for name in ("gated-model", "private-model"):
            for f in self.repo(name)["commits"][self.repo(name)["branches"]["main"]]["files"]:
                self.assertEqual(sha256_file(m.path(ORG, name, f["path"])), f["sha256"], f["path"])
        outputs = []
        for args in (["stats", "--json"], ["info", f"{ORG}/gated-model"],
                     ["info", f"{ORG}/private-model", "--json"], ["ls", "--json"],
                     ["ls", f"{ORG}/gated-model", "--json"], ["verify", "--json"]):
            r = run_cli([*args, "--mount", m.mnt])
            self.assertEqual(r.returncode, 0, (args, r.stderr))
            outputs.append(" ".join(args) + "\n" + r.stdout + r.stderr)
        return outputs

    def test_token_never_in_log_stats_info_xattrs_cache_or_cmdline(self):
        secret_file = os.path.join(tempfile.mkdtemp(prefix="mfs-tok-"), "token")
        self.addCleanup(shutil.rmtree, os.path.dirname(secret_file), True)
        with open(secret_file, "w") as fh:
            fh.write(FULL_TOKEN + "\n")
        checked = []
        for how in ("HF_TOKEN", "--token-file"):
            if how == "HF_TOKEN":
                m = self.mount(token=FULL_TOKEN, log_level="trace")
            else:
                m = self.mount(token=None, log_level="trace", args=("--token-file", secret_file))
            outputs = self.exercise(m)
            for text in outputs:
                self.assertNotIn(FULL_TOKEN, text)
            xattrs = all_xattrs(m.mnt)
            self.assertGreater(len(xattrs), 10)
            for p, vals in xattrs.items():
                for name, v in vals.items():
                    self.assertNotIn(FULL_TOKEN.encode(), v, (p, name))
            with open(f"/proc/{m.proc.pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            self.assertNotIn(FULL_TOKEN.encode(), cmdline)
            log = m.log_text()
            self.assertIn("token from", log)
            self.assertNotIn(FULL_TOKEN, log, f"{how}: the token is in the log")
            self.assertNotIn(FULL_TOKEN[3:], log)
            skip = self.ids_containing(FULL_TOKEN)
            hits = grep_tree(m.cache, [FULL_TOKEN], skip)
            self.assertEqual(hits, [], f"{how}: the token is in the cache dir")
            m.unmount()
            hits = grep_tree(m.cache, [FULL_TOKEN], skip)  # after the index is checkpointed too
            self.assertEqual(hits, [])
            checked.append(f"{how}: {len(log.splitlines())} log lines (trace), {len(xattrs)} paths' "
                           f"xattrs, {sum(len(o) for o in outputs)} bytes of CLI output, cache dir")
        print("\n  token absent from: " + "; ".join(checked))

    def test_a_rejected_token_is_not_echoed_in_the_log(self):
        bad = "hf_wrong_secret_4f9a1c"
        m = self.mount(token=bad, log_level="trace")
        gated = self.repo("gated-model")
        lfs = [f for f in gated["commits"][gated["branches"]["main"]]["files"] if f["lfs"]][0]
        with self.assertRaises(OSError):
            with open(m.path(ORG, "gated-model", lfs["path"]), "rb") as fh:
                fh.read(10)
        with self.assertRaises(OSError):
            os.listdir(m.path(ORG, "private-model"))
        log = m.log_text()
        self.assertIn("401", log + str(self.hub.counters()["status"]))
        self.assertNotIn(bad, log)
        self.assertNotIn(bad[3:], log)
        self.assertEqual(self.hub.counters().get("cdn_auth_leaks", 0), 0)

    def test_other_users_cannot_read_the_token_from_the_mount_process(self):
        ensure_user()
        m = self.mount(token=FULL_TOKEN)
        r = as_user(["cat", f"/proc/{m.proc.pid}/environ"])
        self.assertNotEqual(r.returncode, 0, "another user read the mount's environment")
        self.assertNotIn(FULL_TOKEN, r.stdout)
        r = as_user(["cat", f"/proc/{m.proc.pid}/cmdline"])
        self.assertEqual(r.returncode, 0)
        self.assertNotIn(FULL_TOKEN, r.stdout)

    def test_token_never_sent_to_the_cdn(self):
        m = self.mount(token=FULL_TOKEN)
        n = 0
        for name in ("gated-model", "private-model", "tiny-safetensors"):
            r = self.repo(name)
            for f in r["commits"][r["branches"]["main"]]["files"]:
                if f["lfs"]:
                    self.assertEqual(sha256_file(m.path(ORG, name, f["path"])), f["sha256"])
                    n += 1
        # An expired CDN URL: modelfs resolves again (with the token, on the Hub) and goes on.
        self.hub.fault(kind="cdn_expire")
        big = m.path(ORG, "edge-cases", "large.bin")
        with open(big, "rb") as fh:
            fh.read(4096)
        c = self.hub.counters()
        print(f"\n  {n} LFS files of gated/private repos: {c.get('cdn', 0)} CDN requests, "
              f"{c.get('resolve', 0)} resolve requests, cdn_auth_leaks {c.get('cdn_auth_leaks', 0)}")
        self.assertGreater(c.get("cdn", 0), n - 1)
        self.assertEqual(c.get("cdn_auth_leaks", 0), 0)


# ---------------------------------------------------------------------------------------------

class TlsProxy:
    """TLS on 127.0.0.1 with a self-signed certificate, forwarding plain bytes to the hub
    simulator: a client that skipped verification would get real Hub answers through it."""

    def __init__(self, target_url, certfile, keyfile):
        u = urllib.parse.urlparse(target_url)
        self.target = (u.hostname, u.port)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.handshakes_ok = 0
        self.handshake_errors = []
        self.forwarded = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        conn.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_errors.append(str(e))
            conn.close()
            return
        self.handshakes_ok += 1
        up = socket.create_connection(self.target, timeout=10)
        try:
            while True:
                r, _, _ = select.select([tls, up], [], [], 10)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is tls else tls).sendall(data)
                    self.forwarded += len(data)
        except OSError:
            pass
        finally:
            up.close()
            tls.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class Tls(MountTest):
    def test_no_option_turns_tls_verification_off(self):
        texts = []
        for args in (["--help"], ["mount", "--help"], ["prefetch", "--help"], ["info", "--help"]):
            r = run_cli(args)
            self.assertEqual(r.returncode, 0, r.stderr)
            texts.append(r.stdout)
        text = "\n".join(texts).lower()
        self.assertIn("--endpoint", text)
        for word in ("insecure", "no-verify", "noverify", "verify-ssl", "ssl-verify", "skip-verify",
                     "tls-verify", "verify_ssl", "ssl_verify", "--no-tls", "disable-ssl"):
            self.assertNotIn(word, text)
        # Nor through -o or the config file: unknown keys are refused.
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
            fh.write("insecure = true\n")
        self.addCleanup(os.unlink, fh.name)
        d = tempfile.mkdtemp(prefix="mfs-mp-")
        self.addCleanup(shutil.rmtree, d, True)
        r = run_cli(["mount", d, "--config", fh.name, "--cache-dir", os.path.join(d, "c")], timeout=20)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("unknown key", r.stderr)
        self.assertFalse(is_mounted(d))

    def test_self_signed_https_endpoint_is_refused(self):
        d = tempfile.mkdtemp(prefix="mfs-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        proxy = TlsProxy(self.hub.url, cert, key)
        self.addCleanup(proxy.close)
        url = f"https://127.0.0.1:{proxy.port}"
        # Control: a client that trusts this certificate gets real answers through the proxy.
        ctx = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"{url}/api/models/{ORG}/edge-cases", context=ctx, timeout=10) as r:
            self.assertEqual(json.loads(r.read())["id"], f"{ORG}/edge-cases")
        ok_before = proxy.handshakes_ok
        forwarded_before = proxy.forwarded
        api_before = self.hub.counters().get("api", 0)
        # The Mount helper passes --endpoint from its hub argument: give it the https URL.
        m = Mount(type("Endpoint", (), {"url": url})(), args=("--read-timeout", "6", "--retries", "2"),
                  token=FULL_TOKEN)
        self._mounts.append(m)
        t0 = time.time()
        errs = []
        for p in (m.path(ORG, "edge-cases"), m.path(ORG, "edge-cases", "small.txt"),
                  m.path(ORG, "gated-model", "config.json")):
            try:
                with open(p, "rb") as fh:
                    fh.read()
                errs.append(None)
            except OSError as e:
                errs.append(e.errno)
        elapsed = time.time() - t0
        log = m.log_text()
        self.assertTrue(all(e is not None for e in errs), f"reads through an untrusted TLS endpoint: {errs}")
        self.assertEqual(self.hub.counters().get("api", 0), api_before,
                         "no request reached the Hub through the untrusted endpoint")
        self.assertEqual(proxy.handshakes_ok, ok_before, "no TLS session was completed")
        self.assertGreater(proxy.accepted, 1, "modelfs did try to connect")
        self.assertRegex(log.lower(), r"certificate|ssl|tls")
        line = [l for l in log.splitlines() if "certificate" in l.lower() or "ssl" in l.lower()][:1]
        print(f"\n  self-signed https endpoint: errnos {errs} in {elapsed:.1f} s, "
              f"{proxy.accepted} connections, {len(proxy.handshake_errors)} failed handshakes, "
              f"0 completed; log: {line[0].strip()[:160] if line else '-'}")
        self.assertLess(elapsed, 40)
        self.assertIsNone(m.proc.poll(), "the mount stays up")
        self.assertEqual(proxy.forwarded, forwarded_before, "not a byte went through")


# ---------------------------------------------------------------------------------------------

class CachePermissions(MountTest):
    def assert_private(self, cache, where):
        st = os.stat(cache)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, f"{where}: cache dir mode")
        bad = []
        n = 0
        for dirpath, dirs, files in os.walk(cache):
            for p in [os.path.join(dirpath, x) for x in dirs + files]:
                s = os.lstat(p)
                n += 1
                mode = stat.S_IMODE(s.st_mode)
                if stat.S_ISSOCK(s.st_mode):
                    continue  # 0666 by design; reachable only through the 0700 cache dir
                if mode & 0o022:
                    bad.append((p, oct(mode)))
        self.assertEqual(bad, [], f"{where}: group/other-writable entries")
        return n

    def test_cache_dir_index_and_chunks_are_private(self):
        ensure_user()
        base = tempfile.mkdtemp(prefix="mfs-perm-")
        os.chmod(base, 0o755)
        self.addCleanup(shutil.rmtree, base, True)
        results = []
        # A new cache dir; one that already exists wide open; a background mount under umask 000
        # (its log goes into the cache dir).
        for case in ("new", "existing-0777", "background-umask-000"):
            cache = os.path.join(base, case)
            if case == "existing-0777":
                os.mkdir(cache)
                os.chmod(cache, 0o777)
            if case == "background-umask-000":
                mnt = tempfile.mkdtemp(prefix="mfs-bg-")
                self.addCleanup(shutil.rmtree, mnt, True)
                e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
                e["HF_TOKEN"] = FULL_TOKEN
                r = subprocess.run(
                    ["sh", "-c", 'umask 000; exec "$@"', "sh", BIN, "mount", mnt, "--cache-dir", cache,
                     "--endpoint", self.hub.url, "--log-level", "debug"],
                    capture_output=True, text=True, timeout=30, env=e)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(os.path.join(cache, "dirty")) as fh:
                    pid = int(fh.read())
                try:
                    self.assertEqual(sha256_file(os.path.join(mnt, ORG, "tiny-safetensors",
                                                              "model.safetensors")),
                                     self.repo("tiny-safetensors")["commits"][
                                         self.repo("tiny-safetensors")["branches"]["main"]]["files"][
                                         [f["path"] for f in self.repo("tiny-safetensors")["commits"][
                                             self.repo("tiny-safetensors")["branches"]["main"]]["files"]
                                          ].index("model.safetensors")]["sha256"])
                    self.assertTrue(os.path.exists(os.path.join(cache, "modelfs.log")))
                    n = self.assert_private(cache, case)
                    log_mode = oct(stat.S_IMODE(os.stat(os.path.join(cache, "modelfs.log")).st_mode))
                    self.assertEqual(grep_tree(cache, [FULL_TOKEN]), [])
                finally:
                    subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=20)
                    deadline = time.time() + 20
                    while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
                        time.sleep(0.05)
                results.append(f"{case}: {n} entries private, log {log_mode}")
            else:
                m = self.mount(cache_dir=cache)
                sha256_file(m.path(ORG, "edge-cases", "exact-4MiB-plus-1.bin"))
                n = self.assert_private(cache, case)
                results.append(f"{case}: {n} entries private")
            # Behaviour, not only modes: another user can neither list, read nor write it.
            for cmd in (["ls", cache], ["cat", os.path.join(cache, "index.sqlite")],
                        ["touch", os.path.join(cache, "chunks", "x")]):
                r = as_user(cmd)
                self.assertNotEqual(r.returncode, 0, (case, cmd))
                self.assertIn("denied", r.stderr.lower(), (case, cmd))
        print("\n  " + "; ".join(results))


# ---------------------------------------------------------------------------------------------

RAW_CLIENT = r"""
import json, socket, sys
path = sys.argv[1]
out = []
for line in sys.stdin.read().split("\n\x00\n"):
    if not line:
        continue
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    try:
        s.connect(path)
        s.sendall(line.encode() if line.endswith("\n") else (line + "\n").encode())
        buf = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            buf += b
        last = [l for l in buf.decode(errors="replace").splitlines() if l.strip()][-1:]
        out.append(json.loads(last[0]) if last else {"closed": True})
    except OSError as e:
        out.append({"oserror": e.errno})
    finally:
        s.close()
print(json.dumps(out))
"""


class ControlSocket(MountTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ensure_user()

    def raw(self, sock, requests, user=None):
        payload = "\n\x00\n".join(r if isinstance(r, str) else json.dumps(r) for r in requests)
        cmd = ["python3", "-c", RAW_CLIENT, sock]
        if user:
            r = as_user(cmd, input_text=payload, timeout=120)
        else:
            r = subprocess.run(cmd, input=payload, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def state(self, m):
        s = json.loads(run_cli(["stats", "--json", "--mount", m.mnt]).stdout)["cache"]
        pinned = os.getxattr(m.path(ORG, "edge-cases", "exact-4MiB.bin"), "user.modelfs.pinned")
        return (s["used_bytes"], s["pinned_bytes"], pinned)

    def test_non_admin_cannot_gc_pin_unpin_rm_verify_even_with_forged_fields(self):
        sock_dir = tempfile.mkdtemp(prefix="mfs-sock-")
        os.chmod(sock_dir, 0o755)
        self.addCleanup(shutil.rmtree, sock_dir, True)
        sock = os.path.join(sock_dir, "control.sock")
        m = self.mount(args=("--allow-other", "--control-socket", sock))
        os.chmod(m.root, 0o755)
        base = ["--socket", sock]
        r = run_cli(["pin", f"{ORG}/edge-cases", "exact-4MiB.bin", *base])
        self.assertEqual(r.returncode, 0, r.stderr)
        sha256_file(m.path(ORG, "tiny-safetensors", "model.safetensors"))
        before = self.state(m)
        self.assertGreater(before[0], 4 * MIB)
        # The CLI as the other user: allowed to look, refused to change.
        r = run_cli(["stats", "--json", *base], user=USER)
        self.assertEqual(r.returncode, 0, r.stderr)
        for args in (["gc", "--to", "0"], ["pin", f"{ORG}/edge-cases", "small.txt"],
                     ["unpin", f"{ORG}/edge-cases"], ["rm", "--all", "--force"],
                     ["rm", f"{ORG}/tiny-safetensors"], ["verify"]):
            r = run_cli([*args, *base], user=USER)
            self.assertEqual(r.returncode, 4, (args, r.stdout, r.stderr))
        # Hand-written requests with every field a naive server might trust.
        forged = [
            {"op": "gc", "args": {"to": 0}, "uid": 0},
            {"op": "gc", "args": {"to": 0, "uid": 0, "admin": True}, "admin": True},
            {"op": "unpin", "args": {"repo": f"{ORG}/edge-cases"}, "caller": {"uid": 0, "admin": True}},
            {"op": "rm", "args": {"all": True, "force": True}, "uid": 0, "gid": 0, "user": "root"},
            {"op": "pin", "args": {"repo": f"{ORG}/edge-cases", "patterns": ["small.txt"]}, "uid": 0},
            {"op": "verify", "args": {}, "credentials": {"uid": 0}},
            {"op": "GC", "args": {"to": 0}}, {"op": " gc", "args": {"to": 0}},
        ]
        replies = self.raw(sock, forged, user=USER)
        for req, rep in zip(forged, replies):
            self.assertFalse(rep.get("ok", False), (req, rep))
            if req["op"] in ("gc", "unpin", "rm", "pin", "verify"):
                self.assertEqual(rep.get("code"), "no access", (req, rep))
        self.assertEqual(self.state(m), before, "nothing changed in the cache")
        # Hostile input: junk, no newline, deep nesting, oversize: answered or closed, mount up.
        hostile = ["not json", "[" * 60000, '{"op": "gc", "args": ' + "[" * 30000, "x" * 200000,
                   json.dumps({"op": "gc", "args": {"to": -1}}), json.dumps({"op": 7}),
                   json.dumps({"op": ["stats"]}), json.dumps({"op": "info", "args": {"repo": 5}}),
                   json.dumps({"op": "ls", "args": {"repo": {"a": 1}}}),
                   json.dumps({"op": "rm", "args": {"all": "yes", "force": 1}}),
                   json.dumps({"op": "prefetch", "args": {"repo": f"{ORG}/no-such-repo", "jobs": -3,
                                                          "patterns": [1, None]}}),
                   json.dumps({"op": "rm", "args": {"repo": "../../etc"}})]
        hreplies = self.raw(sock, hostile, user=USER)
        self.assertIsNone(m.proc.poll(), "the mount survived hostile requests")
        self.assertEqual(len(hreplies), len(hostile))
        for req, rep in zip(hostile, hreplies):
            # An answer (refusal, or a harmless ls/stats) or a reset for the oversize line.
            self.assertTrue("done" in rep or rep.get("oserror") == errno.ECONNRESET, (req[:80], rep))
            if rep.get("ok"):
                self.assertIn('"ls"', req, "only the read-only ls may succeed")
        self.assertEqual(self.state(m), before)
        # Control: the same raw protocol works for root, so the refusals above were decisions.
        ok = self.raw(sock, [{"op": "gc", "args": {"to": 0}}])
        self.assertTrue(ok[0]["ok"], ok)
        after = self.state(m)
        self.assertLess(after[0], before[0], "root's gc freed unpinned data")
        self.assertEqual(after[2], b"1", "the pin survived")
        codes = sorted({r.get("code", r.get("oserror", "closed")) for r in hreplies}, key=str)
        print(f"\n  control socket: {len(forged)} forged requests from uid "
              f"{pwd.getpwnam(USER).pw_uid} refused ('no access'), {len(hostile)} hostile ones "
              f"-> {codes}; root's gc freed {(before[0] - after[0]) / MIB:.1f} MiB")

    def test_default_socket_is_unreachable_for_other_users(self):
        m = self.mount()
        os.chmod(m.root, 0o755)
        sock = os.path.join(m.cache, "control.sock")
        self.assertTrue(stat.S_ISSOCK(os.stat(sock).st_mode))
        rep = self.raw(sock, [{"op": "stats"}], user=USER)
        self.assertEqual(rep[0].get("oserror"), errno.EACCES, rep)
        r = run_cli(["gc", "--to", "0", "--socket", sock], user=USER)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    unittest.main()
