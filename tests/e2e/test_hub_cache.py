"""MOUNT/.hub, the Hugging Face cache layout, read by the Hub's own JS client (@huggingface/hub).

The client is pointed at a closed port: whatever it returns came from the layout alone. The
simulator's counters show that the bytes behind the view are the ones the main namespace cached.
"""

import json
import os
import subprocess
import unittest

from mfs import ORG, SOURCE, MountTest

SCRIPT = os.path.join(SOURCE, "tests", "e2e", "hub_cache.mjs")
REPO = "tiny-safetensors"


def hub_client(*args):
    r = subprocess.run(["node", SCRIPT, *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"hub_cache.mjs {args[0]} failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


class HubCacheView(MountTest):
    def setUp(self):
        super().setUp()
        self.mnt = self.mount()
        self.cache = self.mnt.path(".hub")
        self.commit = self.repo(REPO)["branches"]["main"]
        self.folder = os.path.join(self.cache, f"models--{ORG}--{REPO}")
        files = self.repo(REPO)["commits"][self.commit]["files"]
        self.files = {f["path"]: f for f in files}

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_download_to_cache_dir_returns_the_snapshot_without_downloading(self):
        # The main namespace caches the bytes; the view serves the same content, stored once.
        for p in ("config.json", "model.safetensors"):
            self.assertEqual(self.read(self.mnt.path(ORG, REPO, p)), self.read(self.local(REPO, p)))
        self.hub.reset()
        for p in ("config.json", "model.safetensors"):
            got = hub_client("download", self.cache, f"{ORG}/{REPO}", self.commit, p)["path"]
            self.assertEqual(got, os.path.join(self.folder, "snapshots", self.commit, p))
            self.assertEqual(self.read(got), self.read(self.local(REPO, p)), p)
        self.assertEqual(self.hub.file_bytes(), 0, "the view's bytes are the cached ones")

    def test_refs_and_snapshots_follow_the_layout_huggingface_hub_reads(self):
        self.assertEqual(os.listdir(self.cache), [], "no repo known yet")
        self.assertTrue(os.path.isdir(self.folder), "any models--org--name is looked up")
        self.assertEqual(sorted(os.listdir(self.cache)), [f"models--{ORG}--{REPO}"])
        self.assertEqual(sorted(os.listdir(self.folder)), ["refs", "snapshots"])
        # Offline, huggingface_hub reads refs/<branch> as is (no strip), then the snapshot path.
        self.assertEqual(self.read(os.path.join(self.folder, "refs", "main")),
                         self.commit.encode())
        self.assertEqual(os.listdir(os.path.join(self.folder, "snapshots")), [self.commit])
        snap = os.path.join(self.folder, "snapshots", self.commit)
        self.assertEqual(sorted(os.listdir(snap)),
                         sorted({p.split("/")[0] for p in self.files}))
        self.assertFalse(os.path.exists(os.path.join(self.cache, f"models--{ORG}--nope")))
        self.assertFalse(os.path.exists(os.path.join(self.folder, "snapshots", "main")))
        with self.assertRaises(OSError):
            os.mkdir(os.path.join(self.folder, ".locks"))
        with self.assertRaises(OSError):
            open(os.path.join(self.folder, "refs", "main"), "w").close()

    def test_scan_cache_dir_lists_the_repo_with_its_size(self):
        os.stat(self.folder)  # makes the repo known, as a first lookup by a client would
        scan = hub_client("scan", self.cache)
        self.assertEqual(scan["warnings"], [])
        self.assertEqual(len(scan["repos"]), 1, scan)
        r = scan["repos"][0]
        self.assertEqual((r["name"], r["type"]), (f"{ORG}/{REPO}", "model"))
        # scanCacheDir counts the files at the top of a snapshot (it does not descend).
        top = [f for p, f in self.files.items() if "/" not in p]
        self.assertEqual(r["files"], len(top))
        self.assertEqual(r["size"], sum(f["size"] for f in top))
        self.assertEqual(r["revisions"], [{"commit": self.commit, "refs": ["main"],
                                           "size": r["size"], "files": len(top)}])
        self.assertEqual(self.hub.file_bytes(), 0, "a scan reads no file bytes")


if __name__ == "__main__":
    unittest.main()
