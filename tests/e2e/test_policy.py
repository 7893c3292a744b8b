"""Shared-server controls: the access policy (allow/deny/refuse gated), the Prometheus metrics
endpoint, the config file and SIGHUP reload."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

from mfs import BIN, FULL_TOKEN, ORG, MountTest, free_port, sha256_file


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Policy(MountTest):
    def test_deny_and_allow_lists(self):
        m = self.mount(args=("--allow", f"{ORG}/*", "--deny", f"{ORG}/edge-*"))
        with self.assertRaises(PermissionError):
            os.stat(m.path(ORG, "edge-cases"))
        self.assertIn("denied by the policy", m.log_text())
        self.assertEqual(self.hub.counters()["api"], 0, "a denied repo never reaches the Hub")
        f = self.repo("tiny-safetensors")
        self.assertTrue(os.listdir(m.path(ORG, "tiny-safetensors")))
        with self.assertRaises(PermissionError):
            os.stat(m.path("other-org", "model"))
        self.assertIn("not in the policy's allow list", m.log_text())
        _ = f

    def test_refuse_gated_even_with_a_token_that_could_read_it(self):
        m = self.mount(args=("--refuse-gated",), token=FULL_TOKEN)
        with self.assertRaises(PermissionError):
            os.listdir(m.path(ORG, "gated-model"))
        self.assertIn("gated", m.log_text())
        self.assertTrue(os.listdir(m.path(ORG, "versioned")))

    def test_config_file_and_reload(self):
        conf = os.path.join(tempfile.mkdtemp(prefix="mfs-conf-"), "modelfs.conf")
        token = os.path.join(os.path.dirname(conf), "token")
        with open(token, "w") as f:
            f.write("hf_modelfs_basic\n")
        with open(conf, "w") as f:
            f.write(f"# test config\nlog_level = info\ntoken_file = {token}\ndeny = {ORG}/versioned\n")
        m = self.mount(args=("--config", conf), token=None)
        gated = self.repo("gated-model")
        lfs = [x for x in gated["commits"][gated["branches"]["main"]]["files"] if x["lfs"]][0]
        with self.assertRaises(PermissionError):
            os.stat(m.path(ORG, "versioned"))
        with self.assertRaises(PermissionError):  # the basic token is not approved for the gated repo
            open(m.path(ORG, "gated-model", lfs["path"]), "rb").read(1)
        with open(token, "w") as f:
            f.write(FULL_TOKEN + "\n")
        with open(conf, "w") as f:
            f.write(f"log_level = debug\ntoken_file = {token}\n")
        m.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "reloaded" not in m.log_text() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("reloaded", m.log_text())
        self.assertEqual(sha256_file(m.path(ORG, "gated-model", lfs["path"])), lfs["sha256"])
        self.assertTrue(os.listdir(m.path(ORG, "versioned")), "the deny rule was lifted by the reload")
        self.assertIsNone(m.proc.poll(), "SIGHUP reloads, it does not stop the mount")
        self.assertNotIn(FULL_TOKEN, m.log_text(), "the token is never logged")


class Metrics(MountTest):
    def test_metrics_agree_with_stats(self):
        port = free_port()
        m = self.mount(args=("--metrics", f"127.0.0.1:{port}"))
        sha256_file(m.path(ORG, "tiny-safetensors", "model.safetensors"))
        sha256_file(m.path(ORG, "tiny-safetensors", "model.safetensors"))
        metrics = scrape(port)
        r = subprocess.run([BIN, "stats", "--json", "--mount", m.mnt], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = json.loads(r.stdout)
        self.assertEqual(metrics["modelfs_cache_used_bytes"], s["cache"]["used_bytes"])
        self.assertEqual(metrics["modelfs_cache_limit_bytes"], s["cache"]["limit_bytes"])
        self.assertEqual(metrics["modelfs_fetched_bytes_total"], s["reads"]["bytes_fetched"])
        self.assertEqual(metrics["modelfs_served_bytes_total"], s["reads"]["bytes_served"])
        self.assertEqual(metrics["modelfs_cache_evicted_chunks_total"], s["cache"]["evicted_chunks"])
        self.assertEqual(metrics["modelfs_upstream_errors_total"], s["upstream"]["errors"])
        self.assertGreater(metrics["modelfs_fetched_bytes_total"], 0)
        self.assertAlmostEqual(metrics["modelfs_hit_ratio"], s["reads"]["hit_ratio"], places=6)
        for name in ("modelfs_inflight_chunks", "modelfs_cache_pinned_bytes", "modelfs_uptime_seconds"):
            self.assertIn(name, metrics)


if __name__ == "__main__":
    unittest.main()
