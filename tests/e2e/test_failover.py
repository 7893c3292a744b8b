"""An ordered list of endpoints through a real mount: a first endpoint that refuses or never
answers is passed over within seconds, reads finish with exact bytes from the next one, the
first is used again once it answers, and `stats` says which endpoint served what.

(The site cache killed under readers, with nginx, is in test_fleet.)
"""

import os
import shutil
import socket
import tempfile
import threading
import time
import types
import unittest

from mfs import ORG, MountTest, free_port, mount_stats, run_cli, sha256_file


class Forwarder:
    """A TCP front on 127.0.0.1:port: "forward" relays to the target, "blackhole" accepts and
    never answers. stop() closes the listener and every connection."""

    def __init__(self, port, target=None, mode="forward"):
        self.port, self.target, self.mode = port, target, mode
        self.connections = 0
        self._socks = []
        self._lock = threading.Lock()
        self._ls = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._ls.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self._ls.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.connections += 1
                self._socks.append(c)
            if self.mode == "forward":
                u = socket.create_connection(self.target)
                with self._lock:
                    self._socks.append(u)
                for a, b in ((c, u), (u, c)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stop = True
        self._thread.join()
        self._ls.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


class Failover(MountTest):
    REPO = "edge-cases"
    ARGS = ["--model-prefetch", "off"]  # only the bytes read are fetched: counts are exact

    def file(self, path):
        r = self.repo(self.REPO)
        return next(f for f in r["commits"][r["branches"]["main"]]["files"] if f["path"] == path)

    def read_sha(self, m, f):
        return sha256_file(m.path(ORG, self.REPO, f["path"]))

    def endpoints(self, m):
        return mount_stats(m)["upstream"]["endpoints"]

    def test_a_refused_first_endpoint_from_the_config_file_is_passed_over(self):
        dead = f"http://127.0.0.1:{free_port()}"
        conf = os.path.join(self.tmpdir(), "modelfs.conf")
        with open(conf, "w") as f:
            f.write(f"# a site cache that is down, then the Hub\nendpoint = {dead}, {self.hub.url}\n")
        m = self.mount(args=["--config", conf, *self.ARGS], endpoint_flag=False)
        big = self.file("large.bin")
        t0 = time.monotonic()
        self.assertEqual(self.read_sha(m, big), big["sha256"])
        took = time.monotonic() - t0
        eps = self.endpoints(m)
        self.assertEqual([e["url"] for e in eps], [dead, self.hub.url])
        self.assertEqual(eps[0]["bytes"], 0)
        self.assertGreaterEqual(eps[0]["errors"], 1)
        self.assertEqual(eps[0]["state"], "down")
        self.assertEqual(eps[1]["bytes"], big["size"], "every byte from the second endpoint")
        self.assertEqual(self.hub.file_bytes(big["sha256"]), big["size"])
        self.assertLess(took, 15, "no backoff paid on a refused endpoint")
        text = run_cli(["stats", "--mount", m.mnt]).stdout
        self.assertRegex(text, rf"endpoint   {dead}: down for \d+ s, \d+ requests, 0 B, [1-9]\d* errors")
        self.assertIn(f"endpoint   {self.hub.url}: up,", text)

    def test_a_first_endpoint_that_never_answers_is_left_within_seconds(self):
        port = free_port()
        hole = Forwarder(port, mode="blackhole")
        self.addCleanup(hole.stop)
        site = types.SimpleNamespace(url=f"http://127.0.0.1:{port},{self.hub.url}")
        m = self.mount(hub=site, args=self.ARGS)
        f = self.file("exact-4MiB.bin")
        t0 = time.monotonic()
        self.assertEqual(self.read_sha(m, f), f["sha256"])
        took = time.monotonic() - t0
        self.assertGreaterEqual(hole.connections, 1)
        # Alone, the stall timeout (20 s) and its retries would apply; with somewhere else to
        # go, a silent endpoint is left after 5 s.
        self.assertLess(took, 15)
        st = mount_stats(m)["upstream"]
        self.assertGreaterEqual(st["failovers"], 1)
        self.assertEqual(st["endpoints"][1]["bytes"], f["size"])
        self.assertEqual(st["errors"], 0, "no call failed")

    def test_the_first_endpoint_is_used_again_once_it_answers(self):
        port = free_port()
        site = types.SimpleNamespace(url=f"http://127.0.0.1:{port},{self.hub.url}")
        m = self.mount(hub=site, args=self.ARGS)
        a, b = self.file("exact-4MiB.bin"), self.file("exact-4MiB-plus-1.bin")
        self.assertEqual(self.read_sha(m, a), a["sha256"])
        self.assertEqual(self.endpoints(m)[0]["state"], "down")
        hub_port = int(self.hub.url.rsplit(":", 1)[1])
        fwd = Forwarder(port, ("127.0.0.1", hub_port))
        self.addCleanup(fwd.stop)
        deadline = time.monotonic() + 40
        while self.endpoints(m)[0]["state"] == "down":
            self.assertLess(time.monotonic(), deadline, "the hold never ended")
            time.sleep(0.3)
        self.assertEqual(self.read_sha(m, b), b["sha256"])
        eps = self.endpoints(m)
        self.assertGreaterEqual(fwd.connections, 1)
        self.assertEqual(eps[0]["state"], "up")
        self.assertEqual(eps[0]["bytes"], b["size"], "the second file came through the first")
        self.assertEqual(eps[1]["bytes"], a["size"])

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="mfs-failover-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        return d


if __name__ == "__main__":
    unittest.main()
