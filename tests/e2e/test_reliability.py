"""Reliability through real mounts: kill -9 under load, a full disk, chunk files and the SQLite
index damaged behind the mount's back, control commands racing readers, a branch that moves
under a reader.

Invariants (from the issue), each checked with bytes and counts, not argued:
- every byte a reader gets equals the upstream file at the revision it opened, or the read
  fails with an error;
- after any crash a restart brings the mount back with a consistent index (rows == files on
  disk), at worst some cached data is fetched again; the cache never exceeds its limit by
  more than the data in flight;
- no failure blocks unrelated readers, every wait is bounded, the mount process stays up.

Readers run as child processes (this file with --reader), so that an mmap'ed page of a mount
that is killed (SIGBUS) or a read stuck in a dead mount can never take the test runner down.
"""

import errno
import glob
import hashlib
import json
import mmap
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from mfs import (ORG, MountTest, chunk_usage, drop_page_cache, kill9, mount_stats, run_cli,
                 sha256_file)

MIB = 1 << 20
HEADER = 4096          # chunk file header (index/chunk_file.h)
FETCH_UNIT = 8 * MIB   # largest single range fetch (fs/options.h fetch_unit)


# ---------------------------------------------------------------------------------------------
# Reader child: python3 test_reliability.py --reader '<json spec>'
# Prints one line per operation: "v <bytes>" verified, "e <errno>" failed, "BAD ..." wrong bytes.
# Exits at the deadline, or when the mount is gone (ENOTCONN / ENOENT of the mount).

def _reader_main(spec):
    rng = random.Random(spec["seed"])
    files = spec["files"]  # [mount path, local path, size]
    deadline = time.time() + spec["duration"]
    mode = spec["mode"]
    out = sys.stdout
    fatal = (errno.ENOTCONN, errno.ENOENT, errno.EBADF, errno.ENODEV)

    def report(line):
        out.write(line + "\n")
        out.flush()

    local_fds = {}
    local_sha = {}

    def want(local, off, n):
        fd = local_fds.get(local)
        if fd is None:
            fd = local_fds[local] = os.open(local, os.O_RDONLY)
        return os.pread(fd, n, off)

    def check(got, exp, what):
        # A read cut short (the mount died mid-request) is an error, not wrong bytes, as long
        # as every byte it did return is right.
        if got == exp:
            report(f"v {len(got)}")
        elif len(got) < len(exp) and got == exp[:len(got)]:
            report(f"s {len(got)}")
        else:
            report(f"BAD {what} got {len(got)} bytes")

    while time.time() < deadline:
        mpath, local, size = files[rng.randrange(len(files))]
        try:
            if rng.random() < spec.get("drop", 0):
                drop_page_cache(mpath)  # so that the read reaches modelfs, not the page cache
            if mode == "whole":
                h = hashlib.sha256()
                n = 0
                with open(mpath, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        h.update(b)
                        n += len(b)
                if local not in local_sha:
                    local_sha[local] = sha256_file(local)
                if h.hexdigest() != local_sha[local] or n != size:
                    report(f"BAD whole {mpath} got {n} bytes sha {h.hexdigest()}")
                else:
                    report(f"v {n}")
            elif mode == "seq":
                fd = os.open(mpath, os.O_RDONLY)
                try:
                    off = rng.randrange(0, max(1, size - 1)) & ~4095
                    end = min(size, off + rng.choice([2, 8, 24]) * MIB)
                    while off < end and time.time() < deadline:
                        n = min(256 * 1024, end - off)
                        got = os.pread(fd, n, off)
                        check(got, want(local, off, n), f"seq {mpath} off {off} len {n}")
                        if len(got) < n:
                            break
                        off += n
                finally:
                    os.close(fd)
            elif mode == "pread":
                fd = os.open(mpath, os.O_RDONLY)
                try:
                    for _ in range(16):
                        off = rng.randrange(size) if size else 0
                        n = rng.choice([1, 4096, 65536, MIB, 3 * MIB])
                        got = os.pread(fd, n, off)
                        check(got, want(local, off, n), f"pread {mpath} off {off} len {n}")
                finally:
                    os.close(fd)
            elif mode == "mmap":
                if size == 0:
                    continue
                with open(mpath, "rb") as f:
                    with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED) as mm:
                        for _ in range(8):
                            off = rng.randrange(size)
                            n = min(rng.choice([4096, 65536, MIB]), size - off)
                            got = mm[off:off + n]
                            if got != want(local, off, n):
                                report(f"BAD mmap {mpath} off {off} len {n}")
                            else:
                                report(f"v {n}")
        except OSError as e:
            report(f"e {e.errno}")
            if e.errno in fatal:
                return
            time.sleep(0.05)


class ReaderProc:
    def __init__(self, mode, files, seed, duration, drop=0.5):
        spec = {"mode": mode, "files": files, "seed": seed, "duration": duration, "drop": drop}
        self.mode = mode
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reader",
                                      json.dumps(spec)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)

    def finish(self, timeout=60):
        """-> (verified bytes, errors {errno: n}, bad lines, returncode)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"a {self.mode} reader did not end within {timeout} s: "
                                 "a read hung")
        verified, errors, bad = 0, {}, []
        for line in out.splitlines():
            if line.startswith("v "):
                verified += int(line[2:])
            elif line.startswith("s "):
                verified += int(line[2:])
                errors["short"] = errors.get("short", 0) + 1
            elif line.startswith("e "):
                errors[errno.errorcode.get(int(line[2:]), line[2:])] = \
                    errors.get(errno.errorcode.get(int(line[2:]), line[2:]), 0) + 1
            elif line.startswith("BAD"):
                bad.append(line)
        if self.proc.returncode not in (0, -7) and not bad:  # -7: SIGBUS of mmap on a dead mount
            bad.append(f"reader {self.mode} exited {self.proc.returncode}: {err[-2000:]}")
        return verified, errors, bad, self.proc.returncode


class Base(MountTest):
    def files_of(self, name, commit=None):
        r = self.repo(name)
        return r["commits"][commit or r["branches"]["main"]]["files"]

    def lfs(self, name, path):
        return [f for f in self.files_of(name) if f["path"] == path][0]

    def readers(self, m, plan, rng, duration):
        out = [ReaderProc(mode, self.reader_files(m, specs), rng.randrange(1 << 30), duration)
               for mode, specs in plan]
        for r in out:
            self.addCleanup(r.kill)
        return out

    def reader_files(self, m, specs):
        """[(repo, path)] -> [[mount path, local path, size]]"""
        out = []
        for name, path in specs:
            f = self.lfs(name, path)
            out.append([m.path(ORG, name, path), self.local(name, path), f["size"]])
        return out

    def check_index_matches_disk(self, m, limit, where):
        """The index (stats and the SQLite rows) agrees with the chunk files on disk, and both
        stay under the limit. Call while nothing reads (no chunk in flight)."""
        disk = chunk_usage(m.cache)
        st = mount_stats(m)["cache"]
        db = sqlite3.connect(f"file:{os.path.join(m.cache, 'index.sqlite')}?mode=ro", uri=True,
                             timeout=10)
        try:
            rows, row_bytes = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM chunks").fetchone()
        finally:
            db.close()
        self.assertEqual(disk["tmp"], 0, f"{where}: temp chunk files left behind")
        self.assertEqual(st["used_bytes"], disk["payload"], f"{where}: stats vs files {st} {disk}")
        self.assertEqual(st["chunks"], disk["files"], f"{where}: stats vs files {st} {disk}")
        self.assertEqual((rows, row_bytes), (disk["files"], disk["payload"]),
                         f"{where}: SQLite rows vs files")
        self.assertLessEqual(st["used_bytes"], limit, f"{where}: over the limit")
        self.assertLessEqual(st["used_bytes"], st["limit_bytes"])
        return st, disk


# ---------------------------------------------------------------------------------------------

class CrashLoop(Base):
    def test_kill9_under_concurrent_reads_then_restart_is_consistent(self):
        iterations = int(os.environ.get("MODELFS_CRASH_ITERATIONS", "12"))
        seed = int(os.environ.get("MODELFS_CRASH_SEED", str(int(time.time()) % 100000)))
        print(f"\n  crash loop: seed {seed} (MODELFS_CRASH_SEED), {iterations} iterations "
              f"(MODELFS_CRASH_ITERATIONS)")
        rng = random.Random(seed)
        limit = 64 * MIB
        t_start = time.time()
        m = self.mount(cache_size=str(limit))
        cache = m.cache

        # Peak of the chunk directory on disk over the whole loop.
        peak = {"disk": 0, "payload": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                u = chunk_usage(cache)
                peak["disk"] = max(peak["disk"], u["disk"])
                peak["payload"] = max(peak["payload"], u["payload"] + u["tmp"] * MIB)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.addCleanup(stop.set)

        big = [("edge-cases", "large.bin")]
        mixed = [("edge-cases", "exact-4MiB-plus-1.bin"), ("edge-cases", "exact-4MiB.bin"),
                 ("tiny-safetensors", "model.safetensors"), ("versioned", "weights.bin")]
        small = [("edge-cases", "small.txt"), ("edge-cases", "nested/deep/a/b/c.txt"),
                 ("tiny-safetensors", "tokenizer.json"), ("tiny-safetensors", "config.json"),
                 ("versioned", "config.json"), ("many-files", self.files_of("many-files")[3]["path"]),
                 ("edge-cases", "empty.txt")] + mixed
        tracked = big + mixed
        verified = 0
        errors = {}
        lost = 0
        tmp_removed = 0
        adopted = 0
        kill_after = []
        startup_kills = 0
        for it in range(iterations):
            plan = [("seq", big), ("seq", big), ("pread", big + mixed), ("mmap", mixed),
                    ("whole", small)]
            readers = self.readers(m, plan, rng, 30)
            delay = rng.uniform(0.1, 2.5)
            kill_after.append(delay)
            time.sleep(delay)
            before = {p: int(os.getxattr(m.path(ORG, n, p), "user.modelfs.cached_bytes"))
                      for n, p in tracked}
            kill9(m)
            for r in readers:
                v, e, bad, _rc = r.finish(timeout=30)
                self.assertEqual(bad, [], f"iteration {it} (seed {seed}): wrong bytes")
                verified += v
                for k, n in e.items():
                    errors[k] = errors.get(k, 0) + n
            # Sometimes a second crash during the restart itself (opening the index, reconciling
            # the chunk files, mounting).
            if rng.random() < 0.25:
                early = self.mount(cache_dir=cache, cache_size=str(limit), wait=False)
                time.sleep(rng.uniform(0, 0.2))
                kill9(early)
                startup_kills += 1
            # Restart on the same cache directory.
            m = self.mount(cache_dir=cache, cache_size=str(limit))
            log = m.log_text()
            self.assertIn("unclean shutdown", log, f"iteration {it}: restart did not notice")
            for line in log.splitlines():
                if "reconciled after unclean exit" in line:
                    words = line.split("unclean exit: ")[1].split()
                    adopted += int(words[0])
                    tmp_removed += int(line.split(" temp files removed")[0].split()[-1])
            self.check_index_matches_disk(m, limit, f"iteration {it} (seed {seed})")
            after = {p: int(os.getxattr(m.path(ORG, n, p), "user.modelfs.cached_bytes"))
                     for n, p in tracked}
            lost += sum(max(0, before[p] - after[p]) for p in before)
            # A sample read through the new mount: two files whole, four ranges of large.bin.
            for name, path in rng.sample(small, 2):
                f = self.lfs(name, path)
                self.assertEqual(sha256_file(m.path(ORG, name, path)), f["sha256"], path)
                verified += f["size"]
            size = self.lfs("edge-cases", "large.bin")["size"]
            with open(self.local("edge-cases", "large.bin"), "rb") as lf, \
                    open(m.path(ORG, "edge-cases", "large.bin"), "rb") as mf:
                for _ in range(4):
                    off = rng.randrange(size)
                    self.assertEqual(os.pread(mf.fileno(), MIB, off), os.pread(lf.fileno(), MIB, off),
                                     f"iteration {it}: large.bin at {off}")
                    verified += min(MIB, size - off)
        # The end: every file of three repos, whole, through the last mount.
        n_files = 0
        for name in ("edge-cases", "tiny-safetensors", "versioned"):
            for f in self.files_of(name):
                self.assertEqual(sha256_file(m.path(ORG, name, f["path"])), f["sha256"], f["path"])
                verified += f["size"]
                n_files += 1
        self.assertIsNone(m.proc.poll(), "the mount process stays up")
        time.sleep(0.5)  # readahead of the last reads lands
        # Every chunk left in the cache passes its checksums (and complete files their sha256).
        r = run_cli(["verify", "--json", "--mount", m.mnt], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        v = json.loads(r.stdout.splitlines()[-1])
        self.assertEqual(v["corrupt_files"], 0, v)
        stop.set()
        sampler.join(10)
        # A clean restart finds nothing to recover and the same consistent index.
        m.unmount()
        m = self.mount(cache_dir=cache, cache_size=str(limit))
        self.assertNotIn("unclean shutdown", m.log_text())
        st, disk = self.check_index_matches_disk(m, limit, "after the loop")
        elapsed = time.time() - t_start
        upstream = self.hub.file_bytes()
        print(f"  crash loop: {iterations} kills under load + {startup_kills} during a restart in "
              f"{elapsed:.1f} s, kill after {min(kill_after):.2f}-{max(kill_after):.2f} s of reading")
        print(f"  crash loop: {verified / MIB:.1f} MiB verified byte for byte, 0 wrong; "
              f"read errors (errno: count) {errors}; final check {n_files} files")
        print(f"  crash loop: upstream served {upstream / MIB:.1f} MiB; cached bytes lost to "
              f"crashes (refetched if read again) {lost / MIB:.1f} MiB; recovery adopted "
              f"{adopted} chunk files, removed {tmp_removed} half-written temp files")
        print(f"  crash loop: limit {limit / MIB:.0f} MiB, chunk dir peak {peak['disk'] / MIB:.1f} MiB "
              f"on disk, {st['used_bytes'] / MIB:.1f} MiB in {disk['files']} chunks at the end, "
              f"verify: {v['checked_files']} files, {v['verified_bytes'] / MIB:.1f} MiB, 0 corrupt")
        self.assertGreater(verified, iterations * MIB, "the readers really read")
        self.assertLessEqual(peak["payload"], limit + FETCH_UNIT)
        self.assertLessEqual(peak["disk"], limit + FETCH_UNIT + (limit // MIB + 16) * HEADER)


# ---------------------------------------------------------------------------------------------

class DiskFull(Base):
    def small_fs(self, size_mib):
        d = tempfile.mkdtemp(prefix="mfs-smallfs-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", d],
                       check=True, timeout=20)

        def cleanup():
            subprocess.run(["umount", "-l", d], capture_output=True, timeout=20)
            shutil.rmtree(d, ignore_errors=True)

        self.addCleanup(cleanup)
        return d

    def timed_read(self, path, timeout):
        """Reads a whole file in a thread; -> (sha256 or None, errno or None, seconds)."""
        res = {}

        def go():
            t0 = time.time()
            try:
                res["sha"] = sha256_file(path)
            except OSError as e:
                res["errno"] = e.errno
            res["t"] = time.time() - t0

        t = threading.Thread(target=go, daemon=True)
        t.start()
        t.join(timeout)
        self.assertFalse(t.is_alive(), f"reading {path} hung for more than {timeout} s")
        return res.get("sha"), res.get("errno"), res["t"]

    def test_cache_on_a_full_disk_evicts_or_fails_with_eio_and_stays_healthy(self):
        fsdir = self.small_fs(24)
        # The limit (200M) is far above the disk (24M): only the disk can stop the cache.
        m = self.mount(cache_dir=os.path.join(fsdir, "cache"), cache_size="200M",
                       args=("--read-timeout", "20"))
        outcomes = []
        for name, path in (("edge-cases", "large.bin"), ("edge-cases", "exact-4MiB.bin"),
                           ("tiny-safetensors", "model.safetensors"), ("edge-cases", "large.bin")):
            f = self.lfs(name, path)
            drop_page_cache(m.path(ORG, name, path))
            sha, err, t = self.timed_read(m.path(ORG, name, path), 60)
            if sha is not None:
                self.assertEqual(sha, f["sha256"], f"{path}: wrong bytes on a full disk")
                outcomes.append((path, "ok", round(t, 1)))
            else:
                self.assertEqual(err, errno.EIO, path)
                outcomes.append((path, "EIO", round(t, 1)))
        self.assertIsNone(m.proc.poll(), "the mount process stays up")
        self.assertEqual(read_bytes(m.path(ORG, "edge-cases", "small.txt")),
                         read_bytes(self.local("edge-cases", "small.txt")))
        vfs = os.statvfs(fsdir)
        usage = chunk_usage(m.cache)
        print(f"\n  full disk (24 MiB tmpfs, 200M limit): {outcomes}; chunk dir "
              f"{usage['disk'] / MIB:.1f} MiB, {vfs.f_bavail * vfs.f_frsize / MIB:.1f} MiB free")
        self.assertIn("disk full", m.log_text(), "the store noticed ENOSPC")
        st = mount_stats(m)["cache"]
        self.assertLessEqual(st["used_bytes"], 24 * MIB)

    def test_pinned_data_filling_the_disk_gives_bytes_or_eio_never_a_hang(self):
        fsdir = self.small_fs(20)
        m = self.mount(cache_dir=os.path.join(fsdir, "cache"), cache_size="200M",
                       args=("--read-timeout", "10", "--stall-timeout", "5"))
        pinned = ["exact-4MiB.bin", "exact-4MiB-plus-1.bin"]
        r = run_cli(["pin", f"{ORG}/edge-cases", *pinned, "--mount", m.mnt])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_cli(["pin", f"{ORG}/tiny-safetensors", "model.safetensors", "--mount", m.mnt])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_cli(["pin", f"{ORG}/versioned", "weights.bin", "--mount", m.mnt])
        pinned_ok = r.returncode == 0
        # Fill what is left with a plain file so that only pinned data and the filler remain.
        filler = os.path.join(fsdir, "filler")
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * MIB)
                    fh.flush()
            except OSError:
                pass
        self.addCleanup(lambda: os.path.exists(filler) and os.unlink(filler))
        vfs = os.statvfs(fsdir)
        outcomes = []
        large = self.lfs("edge-cases", "large.bin")
        large_before = self.hub.file_bytes(large["sha256"])
        for name, path in (("edge-cases", "large.bin"), ("versioned@v1.0", "weights.bin"),
                           ("many-files", self.files_of("many-files")[0]["path"])):
            repo = name.split("@")[0]
            rev = name.split("@")[1] if "@" in name else None
            r_ = self.repo(repo)
            files = r_["commits"][r_["tags"][rev] if rev else r_["branches"]["main"]]["files"]
            f = [x for x in files if x["path"] == path][0]
            sha, err, t = self.timed_read(m.path(ORG, name, path), 40)
            if sha is not None:
                self.assertEqual(sha, f["sha256"], f"{path}: wrong bytes with pinned data on a full disk")
                outcomes.append((path.split("/")[-1], "ok", round(t, 1)))
            else:
                self.assertEqual(err, errno.EIO, path)
                self.assertLess(t, 10 + 5, "an EIO comes within the read timeout")
                outcomes.append((path.split("/")[-1], "EIO", round(t, 1)))
        self.assertIsNone(m.proc.poll(), "the mount process stays up")
        # The pinned files are still served from the cache, bytes right.
        before = self.hub.file_bytes()
        for p in pinned:
            drop_page_cache(m.path(ORG, "edge-cases", p))
            self.assertEqual(sha256_file(m.path(ORG, "edge-cases", p)), self.lfs("edge-cases", p)["sha256"])
        self.assertEqual(self.hub.file_bytes(), before, "pinned data stayed in the cache")
        os.unlink(filler)
        self.assertEqual(read_bytes(m.path(ORG, "edge-cases", "small.txt")),
                         read_bytes(self.local("edge-cases", "small.txt")))
        st = mount_stats(m)["cache"]
        print(f"\n  pinned {st['pinned_bytes'] / MIB:.1f} MiB (4th pin {'ok' if pinned_ok else 'refused'}) "
              f"on a 20 MiB tmpfs filled to {vfs.f_bavail * vfs.f_frsize / MIB:.1f} MiB free: {outcomes}; "
              f"large.bin read once with nothing storable cost "
              f"{(self.hub.file_bytes(large['sha256']) - large_before) / large['size']:.2f}x its size upstream")
        self.assertGreater(st["pinned_bytes"], 9 * MIB)

    def test_reading_with_no_room_to_cache_fetches_each_byte_about_once(self):
        """A disk with no room at all: every chunk fails to store. Reads still get the right
        bytes (from the fetch itself), and readahead must not turn one sequential read into
        several downloads of the same data."""
        fsdir = self.small_fs(8)
        m = self.mount(cache_dir=os.path.join(fsdir, "cache"), cache_size="200M",
                       args=("--read-timeout", "20"))
        self.assertEqual(read_bytes(m.path(ORG, "edge-cases", "small.txt")),
                         read_bytes(self.local("edge-cases", "small.txt")))
        filler = os.path.join(fsdir, "filler")
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        large = self.lfs("edge-cases", "large.bin")
        sha, err, t = self.timed_read(m.path(ORG, "edge-cases", "large.bin"), 120)
        self.assertEqual(sha, large["sha256"], err)
        ratio = self.hub.file_bytes(large["sha256"]) / large["size"]
        print(f"\n  no room to cache: large.bin ({large['size'] / MIB:.0f} MiB) read once in {t:.1f} s, "
              f"upstream served {ratio:.2f}x its size")
        self.assertIsNone(m.proc.poll())
        self.assertLessEqual(ratio, 1.5, "readahead data that could not be stored was thrown away "
                                         "and fetched again by the reader")


# ---------------------------------------------------------------------------------------------

def read_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


def chunk_files(cache, content_id):
    return sorted((p for p in glob.glob(os.path.join(cache, "chunks", "**", "*"), recursive=True)
                   if content_id in p and os.path.isfile(p) and ".tmp" not in p),
                  key=lambda p: int(os.path.basename(p)))


class DamagedChunks(Base):
    """test_errors covers one flipped byte; here: files deleted, truncated, wholly garbage,
    swapped, while mounted and while not."""

    FILE = ("edge-cases", "exact-4MiB-plus-1.bin")  # 5 chunks: 4 x 1 MiB + 1 byte

    def damage(self, files, how):
        if how == "delete":
            os.unlink(files[1])
        elif how == "delete-all":
            for p in files:
                os.unlink(p)
        elif how == "truncate-data":
            os.truncate(files[1], HEADER + 1000)
        elif how == "truncate-header":
            os.truncate(files[1], 100)
        elif how == "truncate-zero":
            os.truncate(files[1], 0)
        elif how == "garbage":
            size = os.path.getsize(files[1])
            with open(files[1], "r+b") as fh:
                fh.write(random.Random(1).randbytes(size))
        elif how == "swapped":  # a valid chunk file of another index
            shutil.copyfile(files[0], files[1])
        else:
            raise ValueError(how)

    def check_refetch(self, m, f, how, mounted):
        p = m.path(ORG, self.FILE[0], f["path"])
        before = self.hub.file_bytes(f["sha256"])
        if mounted:
            drop_page_cache(p)
        self.assertEqual(sha256_file(p), f["sha256"], how)
        refetched = self.hub.file_bytes(f["sha256"]) - before
        want_max = f["size"] if how == "delete-all" else 2 * MIB
        # A mount may keep a chunk file open (fd cache): a file unlinked under it still holds
        # the right bytes and may be served from the open descriptor without a refetch.
        if not (mounted and how.startswith("delete")):
            self.assertGreater(refetched, 0, f"{how}: the damaged chunk is fetched again")
        self.assertLessEqual(refetched, want_max, f"{how}: only the damaged data is fetched again")
        return refetched

    def test_chunk_files_deleted_truncated_or_garbage_while_mounted(self):
        m = self.mount()
        f = self.lfs(*self.FILE)
        p = m.path(ORG, self.FILE[0], f["path"])
        results = []
        for how in ("delete", "truncate-data", "truncate-header", "truncate-zero", "garbage",
                    "swapped", "delete-all"):
            # A fresh copy of the file's chunks for each case.
            r = run_cli(["rm", f"{ORG}/{self.FILE[0]}", f["path"], "--mount", m.mnt])
            self.assertIn(r.returncode, (0, 3), r.stderr)
            drop_page_cache(p)
            self.assertEqual(sha256_file(p), f["sha256"])
            files = chunk_files(m.cache, f["sha256"])
            self.assertEqual(len(files), 5, (how, files))
            self.damage(files, how)
            results.append((how, self.check_refetch(m, f, how, True) // 1024))
        self.assertIsNone(m.proc.poll())
        st = mount_stats(m)["cache"]
        print(f"\n  damaged while mounted -> KiB refetched: {results}; corrupt chunks counted "
              f"{st['corrupt_chunks']}")
        self.assertGreaterEqual(st["corrupt_chunks"], 5)
        # Whatever the mount still believed about the deleted files, a restart and one read
        # put the index and the disk in agreement again, with the right bytes.
        cache = m.cache
        m.unmount()
        m = self.mount(cache_dir=cache)
        self.assertEqual(sha256_file(m.path(ORG, self.FILE[0], f["path"])), f["sha256"])
        time.sleep(0.3)
        self.check_index_matches_disk(m, 2 << 30, "after damage while mounted and a restart")

    def test_chunk_files_damaged_while_unmounted(self):
        f = self.lfs(*self.FILE)
        m = self.mount()
        cache = m.cache
        self.assertEqual(sha256_file(m.path(ORG, self.FILE[0], f["path"])), f["sha256"])
        results = []
        for how in ("delete", "truncate-data", "truncate-header", "garbage", "swapped", "delete-all"):
            m.unmount()
            files = chunk_files(cache, f["sha256"])
            self.assertEqual(len(files), 5, (how, files))
            self.damage(files, how)
            m = self.mount(cache_dir=cache)
            results.append((how, self.check_refetch(m, f, how, False) // 1024))
            time.sleep(0.3)
            self.check_index_matches_disk(m, 2 << 30, f"after {how} while unmounted")
        print(f"\n  damaged while unmounted -> KiB refetched: {results}")


# ---------------------------------------------------------------------------------------------

class DamagedIndex(Base):
    def fill(self, m):
        for name, path in (("edge-cases", "exact-4MiB.bin"), ("tiny-safetensors", "model.safetensors")):
            self.assertEqual(sha256_file(m.path(ORG, name, path)), self.lfs(name, path)["sha256"])
        time.sleep(0.2)

    def test_index_deleted_truncated_or_garbage_while_unmounted(self):
        results = []
        for how in ("delete", "truncate-zero", "truncate-half", "garbage", "delete-after-crash"):
            m = self.mount()
            cache = m.cache
            self.fill(m)
            db = os.path.join(cache, "index.sqlite")
            if how == "delete-after-crash":
                kill9(m)  # leaves index.sqlite-wal behind
            else:
                m.unmount()
            size = os.path.getsize(db)
            if how.startswith("delete"):
                os.unlink(db)
            elif how == "truncate-zero":
                os.truncate(db, 0)
            elif how == "truncate-half":
                os.truncate(db, size // 2)
            elif how == "garbage":
                with open(db, "r+b") as fh:
                    fh.write(random.Random(2).randbytes(size))
            on_disk = chunk_usage(cache)
            self.hub.reset()
            m2 = self.mount(cache_dir=cache)
            log = m2.log_text()
            said = [l for l in log.splitlines() if "index" in l.lower() and
                    ("corrupt" in l.lower() or "missing" in l.lower() or "rebuil" in l.lower() or
                     "unclean" in l.lower() or "adopt" in l.lower())]
            self.assertTrue(said, f"{how}: the log says the index was rebuilt:\n{log}")
            for name, path in (("edge-cases", "exact-4MiB.bin"), ("tiny-safetensors", "model.safetensors")):
                self.assertEqual(sha256_file(m2.path(ORG, name, path)), self.lfs(name, path)["sha256"])
            time.sleep(0.3)
            st, disk = self.check_index_matches_disk(m2, 2 << 30, f"index {how}")
            refetched = self.hub.file_bytes()
            results.append((how, f"{on_disk['payload'] // MIB} MiB chunks on disk",
                            f"refetched {refetched // 1024} KiB"))
            m2.unmount()
        print("\n  damaged index -> " + "; ".join(", ".join(r) for r in results))

    def test_index_deleted_under_a_running_mount(self):
        m = self.mount()
        self.fill(m)
        for suffix in ("", "-wal", "-shm"):
            p = os.path.join(m.cache, "index.sqlite" + suffix)
            if os.path.exists(p):
                os.unlink(p)
        # Keeps serving: cached and new data, writes to the (now unlinked) index included.
        for name in ("edge-cases", "versioned"):
            for f in self.files_of(name):
                if f["path"] == "large.bin":
                    continue
                p = m.path(ORG, name, f["path"])
                drop_page_cache(p)
                self.assertEqual(sha256_file(p), f["sha256"], f["path"])
        r = run_cli(["gc", "--to", "0", "--mount", m.mnt])
        self.assertEqual(r.returncode, 0, r.stderr)
        # New chunks whose rows only reach the unlinked index.
        for name, path in (("tiny-safetensors", "model.safetensors"), ("edge-cases", "exact-4MiB.bin")):
            p = m.path(ORG, name, path)
            drop_page_cache(p)
            self.assertEqual(sha256_file(p), self.lfs(name, path)["sha256"])
        self.assertIsNone(m.proc.poll(), "the mount process stays up")
        cache = m.cache
        m.unmount()
        on_disk = chunk_usage(cache)
        self.assertGreater(on_disk["payload"], 4 * MIB)
        self.hub.reset()
        m2 = self.mount(cache_dir=cache)
        self.assertIn("index", m2.log_text())
        time.sleep(0.3)
        self.check_index_matches_disk(m2, 2 << 30, "index deleted while mounted, then restart")
        for name, path in (("tiny-safetensors", "model.safetensors"), ("edge-cases", "exact-4MiB.bin")):
            self.assertEqual(sha256_file(m2.path(ORG, name, path)), self.lfs(name, path)["sha256"])
        print(f"\n  index deleted under a running mount: kept serving; after restart "
              f"{on_disk['payload'] / MIB:.1f} MiB of chunks adopted, refetched "
              f"{self.hub.file_bytes() / 1024:.0f} KiB")
        self.assertEqual(self.hub.file_bytes(), 0, "adopted chunks are served without refetching")


# ---------------------------------------------------------------------------------------------

class ControlRaces(Base):
    def test_readers_with_gc_pin_unpin_rm_prefetch_racing(self):
        limit = 48 * MIB
        m = self.mount(cache_size=str(limit))
        duration = 14
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        big = [("edge-cases", "large.bin")]
        mixed = [("edge-cases", "exact-4MiB-plus-1.bin"), ("edge-cases", "exact-4MiB.bin"),
                 ("tiny-safetensors", "model.safetensors"), ("versioned", "weights.bin"),
                 ("tiny-safetensors", "tokenizer.json")]
        plan = [("seq", big), ("pread", big + mixed), ("mmap", mixed), ("mmap", mixed),
                ("whole", mixed), ("whole", mixed)]
        readers = self.readers(m, plan, rng, duration)
        commands = [
            ["gc", "--to", "0"], ["gc"],
            ["pin", f"{ORG}/edge-cases", "exact-4MiB.bin"],
            ["unpin", f"{ORG}/edge-cases", "exact-4MiB.bin"],
            ["pin", f"{ORG}/tiny-safetensors", "model.safetensors"],
            ["unpin", f"{ORG}/tiny-safetensors"],
            ["rm", f"{ORG}/tiny-safetensors", "--force"], ["rm", f"{ORG}/edge-cases", "exact-4MiB-plus-1.bin"],
            ["rm", "--all", "--force"],
            ["prefetch", f"{ORG}/versioned", "weights.bin"], ["prefetch", f"{ORG}/tiny-safetensors"],
            ["prefetch", f"{ORG}/edge-cases", "exact-4MiB.bin"],
        ]
        ran = {}
        deadline = time.time() + duration - 1
        while time.time() < deadline:
            cmd = rng.choice(commands)
            t0 = time.time()
            r = run_cli([*cmd, "--mount", m.mnt], timeout=60)
            self.assertLess(time.time() - t0, 60)
            key = cmd[0]
            ok, bad = ran.get(key, (0, 0))
            # rm of pinned data without --force exits 4, rm of a repo not yet looked up 3;
            # everything else must succeed.
            if r.returncode == 0:
                ran[key] = (ok + 1, bad)
            else:
                self.assertIn(r.returncode, (3, 4) if key == "rm" else (), (cmd, r.returncode, r.stderr))
                ran[key] = (ok, bad + 1)
        total, errs, bads = 0, {}, []
        for r in readers:
            v, e, bad, rc = r.finish(timeout=90)
            total += v
            bads += bad
            for k, n in e.items():
                errs[k] = errs.get(k, 0) + n
        self.assertEqual(bads, [], f"wrong bytes (seed {seed})")
        self.assertIsNone(m.proc.poll(), "the mount process stays up")
        time.sleep(0.5)
        st, disk = self.check_index_matches_disk(m, limit, "after the races")
        r = mount_stats(m)
        print(f"\n  control races (seed {seed}): commands (ok, refused) {ran}; readers verified "
              f"{total / MIB:.1f} MiB ({r['reads']['bytes_served'] / MIB:.1f} MiB through modelfs, "
              f"{r['reads']['bytes_fetched'] / MIB:.1f} MiB fetched), read errors {errs}; "
              f"{r['reads']['errors']} read errors in stats, "
              f"{st['used_bytes'] / MIB:.1f} MiB cached of {limit / MIB:.0f} MiB")
        self.assertGreater(total, 10 * MIB)
        self.assertGreater(r["reads"]["bytes_served"], 50 * MIB, "the reads reached modelfs")
        self.assertGreater(sum(ok for ok, _ in ran.values()), 5)
        self.assertEqual(errs, {}, "no read failed: rm/gc only make a read fetch again")


# ---------------------------------------------------------------------------------------------

class BranchMove(Base):
    def test_slow_reader_across_a_move_gets_only_old_bytes_new_open_gets_only_new(self):
        m = self.mount(args=("--revision-ttl", "1"))
        repo = self.repo("versioned")
        old, new = repo["branches"]["movable"], repo["branches"]["main"]
        old_w = [f for f in repo["commits"][old]["files"] if f["path"] == "weights.bin"][0]
        new_w = [f for f in repo["commits"][new]["files"] if f["path"] == "weights.bin"][0]
        self.assertNotEqual(old_w["sha256"], new_w["sha256"])
        self.addCleanup(self.hub._call, "reset", {"refs": True})
        p = m.path(ORG, "versioned@movable", "weights.bin")
        size = old_w["size"]
        piece = 64 * 1024
        # Strided order (one piece per MiB, then the next) so most pieces are fetched upstream
        # one by one, many after the move.
        order = sorted(range(0, size, piece), key=lambda o: ((o % MIB), o))
        got = {}
        seen_hashes = []
        stop = threading.Event()

        def reopen_loop():
            while not stop.is_set():
                try:
                    with open(p, "rb") as fh:
                        seen_hashes.append(hashlib.sha256(fh.read()).hexdigest())
                except OSError as e:
                    seen_hashes.append(f"errno {e.errno}")
                time.sleep(0.2)

        fd = os.open(p, os.O_RDONLY)
        try:
            for o in order[:len(order) // 4]:
                got[o] = os.pread(fd, piece, o)
                time.sleep(0.01)
            self.hub.move_branch(f"{ORG}/versioned", "movable", new)
            self.hub.fault(kind="cdn_expire")  # later pieces must go through resolve again
            before = self.hub.file_bytes(old_w["sha256"])
            # Readahead fetched the whole (3 MiB) file already: drop it from the cache and the
            # page cache, so that the rest of the slow read must come from upstream, after the
            # move, for the commit the file was opened at.
            r = run_cli(["rm", "--all", "--force", "--mount", m.mnt])
            self.assertEqual(r.returncode, 0, r.stderr)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            t = threading.Thread(target=reopen_loop, daemon=True)
            t.start()
            for o in order[len(order) // 4:]:
                got[o] = os.pread(fd, piece, o)
                time.sleep(0.02)
            after_move = self.hub.file_bytes(old_w["sha256"]) - before
            time.sleep(1.5)  # past the revision TTL
            with open(p, "rb") as fresh:
                fresh_hash = hashlib.sha256(fresh.read()).hexdigest()
            stop.set()
            t.join(20)
            drop_page_cache(p)
            got_again = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        whole = b"".join(got[o] for o in sorted(got))
        self.assertEqual(hashlib.sha256(whole).hexdigest(), old_w["sha256"],
                         "the slow reader got only old-version bytes")
        self.assertEqual(hashlib.sha256(got_again).hexdigest(), old_w["sha256"])
        self.assertEqual(fresh_hash, new_w["sha256"], "a new open after the TTL gets the new version")
        allowed = {old_w["sha256"], new_w["sha256"]}
        mixed = [h for h in seen_hashes if h not in allowed]
        print(f"\n  branch move: slow reader {len(order)} pieces, {after_move / 1024:.0f} KiB of the old "
              f"version fetched after the move; {len(seen_hashes)} reopens saw "
              f"{sum(h == old_w['sha256'] for h in seen_hashes)} old, "
              f"{sum(h == new_w['sha256'] for h in seen_hashes)} new, {len(mixed)} other")
        self.assertEqual(mixed, [], "every whole read is one version, never a mix or an error")
        self.assertGreater(after_move, 0, "the old version was still fetched after the move")
        self.assertIn(new_w["sha256"], seen_hashes)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--reader":
        _reader_main(json.loads(sys.argv[2]))
        sys.exit(0)
    unittest.main()
