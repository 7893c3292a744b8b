"""packaging/site-cache/: nginx as a caching proxy of the Hub for a fleet, against the simulator.

Each file's bytes leave the (simulated) CDN once however many callers read it, and never reach a
caller the Hub has not just authorised. Assertions are on bytes and the simulator's counters,
never on timings.
"""

import hashlib
import json
import os
import threading
import time
import types
import unittest
import urllib.error
import urllib.request

from mfs import (BASIC_TOKEN, FIXTURES, FULL_TOKEN, ORG, HubSim, Mount, SiteCacheNginx,
                 manifest, sha256_file, site_cache_missing)

OTHER_TOKEN = "hf_sitecache_other"  # a valid full token no test has used before
WRONG_TOKEN = "hf_not_a_token_at_all"
BRANCH_TTL = 2  # seconds


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class SiteCache(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = site_cache_missing()
        if why:
            print("SKIP test_site_cache: " + why)  # shown by ctest --output-on-failure -V
            raise unittest.SkipTest(why)
        cls.m = manifest()
        cls.hub = HubSim(extra=["--token", f"{OTHER_TOKEN}:full"])
        try:
            cls.site = SiteCacheNginx(cls.hub.url, max_size="2g", branch_ttl=f"{BRANCH_TTL}s")
        except BaseException:
            cls.hub.close()
            raise
        cls.dir, cls.url = cls.site.dir, cls.site.url

    @classmethod
    def tearDownClass(cls):
        cls.site.close(keep=bool(os.environ.get("MODELFS_KEEP_SITE_CACHE")))
        cls.hub.close()

    def setUp(self):
        self.hub.reset()

    # ---- helpers
    def entry(self, repo, path, commit=None):
        r = self.m["repos"][f"{ORG}/{repo}"]
        commit = commit or r["branches"][r["default_branch"]]
        e = next(f for f in r["commits"][commit]["files"] if f["path"] == path)
        return dict(e, local=os.path.join(FIXTURES, "repos", ORG, repo, commit, path),
                    commit=commit)

    def request(self, path, token=None, rng=None, method="GET", blob=True):
        """-> (status, headers, body) through the site cache. Redirects are not followed, but
        for the site cache's own 302 of a file's GET to /_sc_blob/... (blob=False: returned)."""
        status, headers, body = self._request(path, token, rng, method)
        loc = headers.get("Location", "") if headers else ""
        if blob and status == 302 and loc.startswith("/_sc_blob/"):
            return self._request(loc, token, rng, method)
        return status, headers, body

    def _request(self, path, token, rng, method):
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if rng:
            headers["Range"] = f"bytes={rng[0]}-{rng[1]}"
        req = urllib.request.Request(self.url + path, headers=headers, method=method)
        try:
            with OPENER.open(req, timeout=120) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def resolve(self, repo, path, rev="main"):
        return f"/{ORG}/{repo}/resolve/{rev}/{path}"

    def log(self):
        return self.site.log()

    def cdn(self, sha):
        f = self.hub.counters()["files"].get(sha, {})
        return f.get("requests", 0), f.get("bytes", 0)

    # ---- tests
    def test_1_a_large_file_leaves_the_cdn_once(self):
        big = max((f for r in self.m["repos"].values() if not r["private"] and not r["gated"]
                   for f in r["commits"][r["branches"][r["default_branch"]]]["files"]),
                  key=lambda f: f["size"])
        repo = next(n.split("/", 1)[1] for n, r in self.m["repos"].items()
                    if big in r["commits"][r["branches"][r["default_branch"]]]["files"])
        e = self.entry(repo, big["path"])
        url = self.resolve(repo, e["path"])
        status, headers, body = self.request(url, token=FULL_TOKEN)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), e["size"])
        self.assertEqual(hashlib.sha256(body).hexdigest(), e["sha256"])
        self.assertEqual(headers.get("X-Repo-Commit"), e["commit"])
        self.assertEqual(self.cdn(e["sha256"])[1], e["size"], "1.00x the file from the CDN")
        del body
        mib = 1 << 20
        size = e["size"]
        with open(e["local"], "rb") as f:
            for a, b in [(0, 0), (8 * mib - 10, 8 * mib + 10), (12345, 30 * mib),
                         (size - 100, size - 1), (size - 5, size + 1000)]:
                status, headers, body = self.request(url, token=FULL_TOKEN, rng=(a, b))
                f.seek(a)
                want = f.read(min(b, size - 1) - a + 1)
                self.assertEqual(status, 206, (a, b))
                self.assertEqual(body, want, (a, b))
                self.assertEqual(headers["Content-Range"], f"bytes {a}-{min(b, size - 1)}/{size}")
        # a second client (another token, also allowed) reads it all again
        status, _, body = self.request(url, token=OTHER_TOKEN)
        self.assertEqual(status, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), e["sha256"])
        c = self.hub.counters()
        self.assertEqual(self.cdn(e["sha256"])[1], e["size"], "still 1.00x: the rest were hits")
        self.assertEqual(c["cdn_auth_leaks"], 0, "no Authorization toward the CDN")
        lines = [ln for ln in self.log().splitlines()
                 if f"/_sc_blob/{ORG}/{repo}/resolve/main/{e['path']}" in ln]
        self.assertTrue(any("cache=MISS" in ln for ln in lines), lines)
        self.assertGreaterEqual(sum("cache=HIT" in ln for ln in lines), 6, lines)

    def test_1b_a_client_that_keeps_the_redirect_costs_the_hub_no_resolve_per_range(self):
        e = self.entry("edge-cases", "large.bin")
        url = self.resolve("edge-cases", e["path"], rev=e["commit"])
        status, headers, _ = self.request(url, token=FULL_TOKEN, rng=(0, 0), blob=False)
        self.assertEqual(status, 302)
        blob = headers["Location"]
        self.assertEqual(blob, "/_sc_blob" + url)
        self.assertEqual(headers["X-Repo-Commit"], e["commit"])
        self.assertEqual(headers["X-Linked-Etag"].strip('"'), e["sha256"])
        before = self.hub.counters()["resolve"]
        mib = 1 << 20
        with open(e["local"], "rb") as f:
            for i in range(20):  # 20 ranges at the kept URL
                a = i * 7 * mib
                status, headers, body = self.request(blob, token=FULL_TOKEN, rng=(a, a + mib - 1))
                f.seek(a)
                self.assertEqual((status, body), (206, f.read(mib)), i)
                self.assertEqual(headers["X-Repo-Commit"], e["commit"])
        self.assertLessEqual(self.hub.counters()["resolve"] - before, 1,
                             "the authorisation check, remembered for a minute")
        # The kept URL is no way around the Hub's check: no token, no bytes.
        status, _, body = self.request("/_sc_blob" + self.resolve("gated-model",
                                                                  "model.safetensors"))
        self.assertIn(status, (401, 403))
        self.assertNotIn(b"\x00" * 8, body[:64])
        # Nor a way to read what is not a file of an LFS repo through the blob cache.
        status, _, _ = self.request("/_sc_blob/api/models/" + ORG + "/edge-cases",
                                    token=FULL_TOKEN)
        self.assertNotEqual(status, 206)

    def test_2_simultaneous_cold_reads_collapse_to_one_upstream_read(self):
        e = self.entry("tiny-llama-GGUF", "model.gguf")
        url = self.resolve("tiny-llama-GGUF", "model.gguf")
        results = [None] * 4
        gate = threading.Barrier(4)

        def read(i):
            gate.wait()
            results[i] = self.request(url, token=FULL_TOKEN)

        threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for status, _, body in results:
            self.assertEqual(status, 200)
            self.assertEqual(hashlib.sha256(body).hexdigest(), e["sha256"])
        self.assertEqual(self.cdn(e["sha256"])[1], e["size"], "1.00x: the cache lock held")
        # the same bytes in another repo are the same cache entries (keyed by content)
        status, _, body = self.request(self.resolve("tiny-llama-GGUF-copy", "model.gguf"))
        self.assertEqual(status, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), e["sha256"])
        self.assertEqual(self.cdn(e["sha256"])[1], e["size"])

    def test_3_cached_bytes_of_gated_and_private_repos_only_for_allowed_callers(self):
        cases = [("gated-model", "model.safetensors", [(None, 401), (BASIC_TOKEN, 403),
                                                       (WRONG_TOKEN, 401)]),
                 ("private-model", "pytorch_model.bin", [(None, 401), (BASIC_TOKEN, 404),
                                                         (WRONG_TOKEN, 401)]),
                 ("private-model", "config.json", [(None, 401), (BASIC_TOKEN, 404),
                                                   (WRONG_TOKEN, 401)])]
        for repo, path, refused in cases:
            e = self.entry(repo, path)
            with open(e["local"], "rb") as f:
                want = f.read()
            # by commit too: a small file by commit is cached by the site cache
            for rev in ("main", e["commit"]):
                url = self.resolve(repo, path, rev)
                status, _, body = self.request(url, token=FULL_TOKEN)
                self.assertEqual((status, body), (200, want), (repo, path, rev))
                status, _, body = self.request(url, token=FULL_TOKEN, rng=(1, 10))
                self.assertEqual((status, body), (206, want[1:11]), (repo, path, rev))
            before = self.hub.counters()
            for rev in ("main", e["commit"]):
                url = self.resolve(repo, path, rev)
                for token, code in refused:
                    for rng in (None, (0, 99)):
                        status, headers, body = self.request(url, token=token, rng=rng)
                        self.assertEqual(status, code, (repo, path, rev, token, rng))
                        self.assertNotIn(want[:64], body)
                        self.assertLess(len(body), 400)
            after = self.hub.counters()
            self.assertEqual(after["cdn"], before["cdn"], "no CDN request for a refused caller")
            self.assertEqual(after["bytes_served"], before["bytes_served"])
        # the Hub's own answer reaches the refused caller (huggingface_hub reads the code)
        _, headers, _ = self.request(self.resolve("gated-model", "model.safetensors"))
        self.assertEqual(headers.get("X-Error-Code"), "GatedRepo")
        # metadata of a private repo, cached for the full token, is not shown to others
        c = self.entry("private-model", "config.json")["commit"]
        api = f"/api/models/{ORG}/private-model/revision/{c}"
        status, _, body = self.request(api, token=FULL_TOKEN)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["sha"], c)
        self.assertEqual(self.request(api, token=FULL_TOKEN)[0], 200)
        for token, code in ((None, 401), (BASIC_TOKEN, 404), (WRONG_TOKEN, 401)):
            status, _, body = self.request(api, token=token)
            self.assertEqual(status, code, token)
            self.assertNotIn(b"pytorch_model.bin", body)

    def test_3b_no_bytes_when_the_hub_does_not_answer(self):
        e = self.entry("tiny-safetensors", "model.safetensors")
        url = self.resolve("tiny-safetensors", "model.safetensors")
        self.assertEqual(self.request(url, token=FULL_TOKEN)[0], 200)  # in the cache now
        cdn = self.cdn(e["sha256"])
        self.hub.fault(kind="status", status=503, port="hub", match="/resolve/", count=-1)
        for token in (FULL_TOKEN, OTHER_TOKEN, None):  # the first one's check is still cached
            status, _, body = self.request(url, token=token)
            self.assertEqual(status, 503, token)
            self.assertNotIn(b"F16", body)
            self.assertLess(len(body), 400)
        self.assertEqual(self.cdn(e["sha256"]), cdn)

    def test_4_api_by_commit_is_cached_by_branch_for_seconds(self):
        r = self.m["repos"][f"{ORG}/versioned"]
        commit = r["branches"]["main"]
        by_commit = f"/api/models/{ORG}/versioned/revision/{commit}"
        by_branch = f"/api/models/{ORG}/versioned/revision/movable"
        tree = f"/api/models/{ORG}/versioned/tree/{commit}?recursive=true"
        for u in (by_commit, by_branch, tree):
            self.assertEqual(self.request(u)[0], 200, u)
        api, trees = self.hub.counters()["api"], self.hub.counters()["tree"]
        status, _, body = self.request(by_commit)
        self.assertEqual((status, json.loads(body)["sha"]), (200, commit))
        self.assertEqual(self.request(tree)[0], 200)
        self.assertEqual(self.hub.counters()["api"], api, "by commit: from the cache")
        self.assertEqual(self.hub.counters()["tree"], trees)
        # the branch moves; after its short lifetime the site cache asks again
        moved = self.hub.move_branch(f"{ORG}/versioned", "movable", "dev")
        time.sleep(BRANCH_TTL + 1.5)
        status, _, body = self.request(by_branch)
        self.assertEqual((status, json.loads(body)["sha"]), (200, moved["sha"]))
        self.assertEqual(self.hub.counters()["api"], api + 1, "the branch was asked again")
        status, _, body = self.request(by_commit)
        self.assertEqual(json.loads(body)["sha"], commit)
        self.assertEqual(self.hub.counters()["api"], api + 1)
        self.hub.move_branch(f"{ORG}/versioned", "movable", moved["previous"])

    def test_5_no_token_in_the_log_or_the_cache(self):
        for token in (FULL_TOKEN, BASIC_TOKEN, WRONG_TOKEN, OTHER_TOKEN):
            self.request(self.resolve("gated-model", "config.json"), token=token)
            self.request(f"/api/models/{ORG}/private-model", token=token)
            self.request("/api/whoami-v2", token=token)
        for root, _, names in os.walk(self.dir):
            for n in names:
                p = os.path.join(root, n)
                if not os.path.isfile(p) or n.endswith(".sock"):
                    continue
                with open(p, "rb") as f:
                    data = f.read()
                for token in (FULL_TOKEN, BASIC_TOKEN, WRONG_TOKEN, OTHER_TOKEN):
                    self.assertNotIn(token.encode(), data, p)
        self.assertIn("cache=", self.log())

    def test_6_xet_headers_do_not_reach_clients(self):
        xet = {"X-Xet-Hash": "ab" * 32, "X-Xet-Refresh-Route": "/api/models/x/xet-read-token/m",
               "X-Xet-Cas-Url": "https://cas.invalid", "X-Xet-Access-Token": "secret",
               "X-Xet-Token-Expiration": "1"}
        for port in ("hub", "cdn"):
            self.hub.fault(kind="header_override", port=port, mode="add", headers=xet, count=-1)
        # the simulator sends them now
        with urllib.request.urlopen(self.hub.url + self.resolve("edge-cases", "small.txt")) as r:
            self.assertEqual(r.headers.get("X-Xet-Hash"), xet["X-Xet-Hash"])
        for method, url, code in (("GET", self.resolve("edge-cases", "small.txt"), 200),
                                  ("HEAD", self.resolve("edge-cases", "large.bin"), 302),
                                  ("GET", self.resolve("versioned", "weights.bin"), 200),
                                  ("GET", f"/api/models/{ORG}/edge-cases", 200)):
            status, headers, _ = self.request(url, method=method)
            self.assertEqual(status, code, url)
            self.assertEqual([h for h in headers if h.lower().startswith("x-xet-")], [], url)

    def test_7_head_gives_the_hub_metadata_and_points_back_at_the_site_cache(self):
        e = self.entry("edge-cases", "large.bin")
        url = self.resolve("edge-cases", "large.bin")
        status, headers, _ = self.request(url, token=FULL_TOKEN, method="HEAD")
        self.assertEqual(status, 302)
        self.assertEqual(headers["Location"], self.url + url)
        self.assertEqual(headers["X-Linked-Etag"], f'"{e["sha256"]}"')
        self.assertEqual(headers["X-Linked-Size"], str(e["size"]))
        self.assertEqual(headers["X-Repo-Commit"], e["commit"])
        self.assertEqual(self.hub.counters()["cdn"], 0)

    def test_8_other_redirects_pass_unchanged(self):
        # a renamed repo: the Hub answers a relative 307
        loc = f"/{ORG}/edge-cases/resolve/main/small.txt"
        self.hub.fault(kind="redirect", port="hub", match="old-name", status=307, location=loc,
                       count=-1)
        status, headers, _ = self.request(f"/{ORG}/old-name/resolve/main/small.txt")
        self.assertEqual(status, 307)
        self.assertEqual(headers["Location"], loc)
        # a missing file: the Hub's 404 with its code
        status, headers, _ = self.request(self.resolve("edge-cases", "no-such-file"))
        self.assertEqual(status, 404)
        self.assertEqual(headers.get("X-Error-Code"), "EntryNotFound")

    def test_9_modelfs_mounts_read_through_the_site_cache(self):
        # Two nodes, each its own mount and cache, with the site cache as their endpoint.
        site = types.SimpleNamespace(url=self.url)
        a = Mount(site, token=FULL_TOKEN)
        self.addCleanup(a.close)
        b = Mount(site)  # no token
        self.addCleanup(b.close)
        e = self.entry("tiny-onnx-embedder", "onnx/model.onnx_data")
        for m in (a, b):
            self.assertEqual(sha256_file(m.path(ORG, "tiny-onnx-embedder", e["path"])),
                             e["sha256"])
        self.assertEqual(self.cdn(e["sha256"])[1], e["size"], "1.00x for two nodes")
        # The gated file: the node with the token reads it (and puts it in the site cache);
        # the node without one is refused although the bytes are cached.
        g = self.entry("gated-model", "model.safetensors")
        self.assertEqual(sha256_file(a.path(ORG, "gated-model", g["path"])), g["sha256"])
        before = self.cdn(g["sha256"])
        with self.assertRaises(PermissionError):
            with open(b.path(ORG, "gated-model", g["path"]), "rb") as f:
                f.read(1)
        self.assertEqual(self.cdn(g["sha256"]), before, "no bytes for the refused node")


if __name__ == "__main__":
    unittest.main()
