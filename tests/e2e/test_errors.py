"""Failure behaviour through a real mount: corrupt cache data, upstream faults, stalls."""

import errno
import glob
import os
import time
import unittest

from mfs import ORG, MountTest, drop_page_cache, sha256_file

MIB = 1 << 20


def chunk_files(cache, content_id):
    return sorted(p for p in glob.glob(os.path.join(cache, "chunks", "**", "*"), recursive=True)
                  if content_id in p and os.path.isfile(p) and not p.endswith(".tmp"))


class Errors(MountTest):
    def lfs_file(self, repo, path):
        r = self.repo(repo)
        return [f for f in r["commits"][r["branches"]["main"]]["files"] if f["path"] == path][0]

    def test_corrupted_chunk_is_detected_and_refetched(self):
        m = self.mount()
        f = self.lfs_file("edge-cases", "exact-4MiB-plus-1.bin")
        p = m.path(ORG, "edge-cases", f["path"])
        self.assertEqual(sha256_file(p), f["sha256"])
        files = chunk_files(m.cache, f["sha256"])
        self.assertGreaterEqual(len(files), 2, files)
        with open(files[1], "r+b") as cf:
            cf.seek(os.path.getsize(files[1]) - 100)
            b = cf.read(1)
            cf.seek(-1, os.SEEK_CUR)
            cf.write(bytes([b[0] ^ 0xFF]))
        before = self.hub.file_bytes(f["sha256"])
        drop_page_cache(p)
        self.assertEqual(sha256_file(p), f["sha256"])
        refetched = self.hub.file_bytes(f["sha256"]) - before
        self.assertGreater(refetched, 0)
        self.assertLessEqual(refetched, 2 * MIB)
        self.assertIn("checksum", m.log_text())

    def test_5xx_burst_and_dropped_connection_recover(self):
        m = self.mount()
        f = self.lfs_file("tiny-safetensors", "model.safetensors")
        self.hub.fault(kind="status", status=503, count=3, match="/cdn/")
        self.hub.fault(kind="drop", after_bytes=100000, count=2, match="/cdn/")
        self.assertEqual(sha256_file(m.path(ORG, "tiny-safetensors", f["path"])), f["sha256"])
        c = self.hub.counters()
        self.assertGreaterEqual(c["status"].get("503", 0), 3)
        self.assertEqual(c["faults_armed"], 0, "every fault must have fired")

    def test_truncated_body_and_ignored_range_are_handled(self):
        m = self.mount()
        f = self.lfs_file("edge-cases", "exact-4MiB.bin")
        self.hub.fault(kind="truncate", after_bytes=5000, count=1, match="/cdn/")
        self.hub.fault(kind="ignore_range", count=1, match="/cdn/")
        self.assertEqual(sha256_file(m.path(ORG, "edge-cases", f["path"])), f["sha256"])

    def test_stall_gives_eio_in_bounded_time_and_other_reads_go_on(self):
        m = self.mount(args=("--read-timeout", "4", "--stall-timeout", "1", "--retries", "2"))
        self.hub.fault(kind="stall", seconds=60, after_bytes=0, count=10, match="large.bin")
        stalled = m.path(ORG, "edge-cases", "large.bin")
        other = self.lfs_file("edge-cases", "exact-4MiB.bin")
        t0 = time.time()
        import threading
        err = []

        def read_stalled():
            try:
                with open(stalled, "rb") as fh:
                    fh.read(4096)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=read_stalled)
        t.start()
        time.sleep(0.3)
        # An unrelated file reads fine while the other download stalls.
        self.assertEqual(sha256_file(m.path(ORG, "edge-cases", other["path"])), other["sha256"])
        t.join(30)
        self.assertFalse(t.is_alive(), "a stalled read must end")
        elapsed = time.time() - t0
        self.assertTrue(err and err[0].errno == errno.EIO, err)
        print(f"\n  stalled read failed with EIO after {elapsed:.1f} s (read-timeout 4 s)")
        self.assertLess(elapsed, 10)

    def test_cdn_url_expiry_is_resolved_again(self):
        m = self.mount()
        f = self.lfs_file("edge-cases", "large.bin")
        fd = os.open(m.path(ORG, "edge-cases", "large.bin"), os.O_RDONLY)
        try:
            os.pread(fd, 4096, 0)
            self.hub.fault(kind="cdn_expire")
            want = open(self.local("edge-cases", "large.bin"), "rb")
            want.seek(120 * MIB)
            self.assertEqual(os.pread(fd, 4096, 120 * MIB), want.read(4096))
        finally:
            os.close(fd)
        self.assertGreaterEqual(self.hub.counters().get("cdn_denied", 0), 1)
        self.assertEqual(self.hub.counters().get("cdn_auth_leaks", 0), 0)
        _ = f


if __name__ == "__main__":
    unittest.main()
