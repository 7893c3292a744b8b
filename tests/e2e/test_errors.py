"""Failure behaviour through a real mount: corrupt cache data, upstream faults, stalls."""

import errno
import glob
import hashlib
import os
import time
import unittest

from mfs import ORG, MountTest, drop_page_cache, mount_stats, run_cli, sha256_file

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

    def test_429_retry_after_and_ratelimit_are_waited_out(self):
        m = self.mount()
        for which, path in ((["retry-after"], "exact-4MiB.bin"), (["ratelimit"], "exact-4MiB-plus-1.bin")):
            self.hub.reset()
            f = self.lfs_file("edge-cases", path)
            self.hub.fault(kind="status", status=429, retry_after=1, headers=which, count=1,
                           match="/resolve/")
            t0 = time.time()
            self.assertEqual(sha256_file(m.path(ORG, "edge-cases", path)), f["sha256"], which)
            elapsed = time.time() - t0
            c = self.hub.counters()
            self.assertEqual(c["status"].get("429", 0), 1, which)
            self.assertEqual(c["faults_armed"], 0)
            print(f"\n  429 with {which[0]}: waited, then right bytes in {elapsed:.1f} s")
            self.assertGreaterEqual(elapsed, 0.9, f"{which}: the 1 s wait must be honoured")
            self.assertLess(elapsed, 10)

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


class Integrity(MountTest):
    """The upstream sends wrong bytes (a flipped byte, same length): the sha256 catches it."""

    def lfs_file(self, repo, path):
        r = self.repo(repo)
        return [f for f in r["commits"][r["branches"]["main"]]["files"] if f["path"] == path][0]

    def read_all(self, path):
        """Reads the whole file like cat; returns (bytes, errno or None)."""
        out = bytearray()
        try:
            with open(path, "rb", buffering=0) as fh:
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        return bytes(out), None
                    out += b
        except OSError as e:
            return bytes(out), e.errno

    def test_lazy_mode_fails_the_end_of_a_corrupt_file_and_recovers(self):
        m = self.mount()
        f = self.lfs_file("edge-cases", "exact-4MiB-plus-1.bin")
        p = m.path(ORG, "edge-cases", f["path"])
        self.hub.fault(kind="corrupt", at=1000, count=1, match="/cdn/")
        data, err = self.read_all(p)
        self.assertEqual(err, errno.EIO, "a whole-file read of wrong bytes must fail")
        self.assertLess(len(data), f["size"], "the read of the file's end must not succeed")
        self.assertIn("sha256 mismatch", m.log_text())
        self.assertEqual(self.hub.counters()["faults_armed"], 0)
        # The bad data is gone from the cache and from the kernel's page cache: the next read
        # fetches the file again and every byte is right.
        before = self.hub.file_bytes(f["sha256"])
        data, err = self.read_all(p)
        self.assertIsNone(err)
        self.assertEqual(hashlib.sha256(data).hexdigest(), f["sha256"])
        refetched = self.hub.file_bytes(f["sha256"]) - before
        print(f"\n  corrupt upstream: EIO at the end; then {refetched} bytes fetched again")
        self.assertGreater(refetched, 0)
        st = mount_stats(m)
        self.assertEqual(st["reads"]["sha256_mismatches"], 1, st["reads"])

    def test_strict_mode_never_serves_a_wrong_byte(self):
        m = self.mount(args=("--strict-verify",))
        f = self.lfs_file("edge-cases", "exact-4MiB-plus-1.bin")
        p = m.path(ORG, "edge-cases", f["path"])
        # Every answer is wrong: not one byte is served, however the kernel splits the reads.
        self.hub.fault(kind="corrupt", at=1000, count=1000, match="/cdn/")
        for off in (0, 2 * MIB, f["size"] - 1):
            fd = os.open(p, os.O_RDONLY)
            try:
                with self.assertRaises(OSError) as cm:
                    os.pread(fd, 4096, off)
                self.assertEqual(cm.exception.errno, errno.EIO)
            finally:
                os.close(fd)
        self.assertGreaterEqual(self.hub.counters()["faults_fired"], 2)
        self.assertIn("sha256 mismatch", m.log_text())
        # One bad answer, then good ones: the retry serves the right bytes.
        self.hub.reset()
        self.hub.fault(kind="corrupt", at=1000, count=1, match="/cdn/")
        before = self.hub.file_bytes(f["sha256"])
        data, err = self.read_all(p)
        self.assertIsNone(err)
        self.assertEqual(hashlib.sha256(data).hexdigest(), f["sha256"])
        self.assertGreaterEqual(self.hub.file_bytes(f["sha256"]) - before, 2 * f["size"])
        # Verified once, it is served from the cache with no new check or fetch, after a
        # remount too (the mark is in the index).
        cache = m.cache
        m.unmount()
        m2 = self.mount(cache_dir=cache, args=("--strict-verify",))
        before = self.hub.file_bytes(f["sha256"])
        with open(m2.path(ORG, "edge-cases", f["path"]), "rb") as fh:
            self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), f["sha256"])
        self.assertEqual(self.hub.file_bytes(f["sha256"]) - before, 0)

    def test_prefetch_reports_a_corrupt_file(self):
        m = self.mount()
        f = self.lfs_file("edge-cases", "exact-4MiB.bin")
        self.hub.fault(kind="corrupt", at=1000, count=1, match="/cdn/")
        r = run_cli(["prefetch", f"{ORG}/edge-cases", "--include", f["path"], "--mount", m.mnt])
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("sha256", r.stderr)
        r = run_cli(["prefetch", f"{ORG}/edge-cases", "--include", f["path"], "--mount", m.mnt])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(m.path(ORG, "edge-cases", f["path"]), "rb") as fh:
            self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), f["sha256"])


if __name__ == "__main__":
    unittest.main()
