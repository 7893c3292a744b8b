"""End to end through a real FUSE mount against the hub simulator: bytes, laziness, sharing,
persistence, offline, eviction and revisions."""

import concurrent.futures
import errno
import hashlib
import mmap
import os
import random
import sqlite3
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from mfs import (FIXTURES, FULL_TOKEN, ORG, MountTest, Mount, drop_page_cache, mount_stats, run_cli,
                 sha256_file)

MIB = 1 << 20


class Namespace(MountTest):
    def test_ls_shows_real_sizes_and_fetches_no_file_bytes(self):
        m = self.mount()
        for name in ("edge-cases", "many-files", "tiny-safetensors", "versioned"):
            repo = self.repo(name)
            files = repo["commits"][repo["branches"]["main"]]["files"]
            for f in files:
                st = os.stat(m.path(ORG, name, f["path"]))
                self.assertEqual(st.st_size, f["size"], f["path"])
                self.assertEqual(st.st_mode & 0o777, 0o444)
            listed = subprocess.run(["ls", "-lR", m.path(ORG, name)], capture_output=True,
                                    check=True, text=True).stdout
            self.assertIn(os.path.basename(files[-1]["path"]), listed)
        self.assertEqual(self.hub.file_bytes(), 0, "listing must not download file bytes")
        c = self.hub.counters()
        self.assertEqual(c.get("cdn", 0), 0)
        self.assertEqual(c.get("resolve", 0), 0)

    def test_listing_memory_goes_when_the_kernel_forgets(self):
        m = self.mount()
        p = m.path(ORG, "many-files")
        subprocess.run(["ls", "-lR", p], check=True, capture_output=True)
        repo = self.repo("many-files")
        names = len(repo["commits"][repo["branches"]["main"]]["files"])
        listed = mount_stats(m)["inodes"]
        self.assertGreaterEqual(listed, names, "every file listed with -l was looked up")
        # Dentries and inodes leave the kernel's caches: it sends forget for each.
        deadline = time.monotonic() + 20
        while True:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2")
            st = mount_stats(m)
            left = st["inodes"]
            if (left <= 5 and st["trees_in_memory"] == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertLessEqual(left, 5, f"{listed} inodes before drop_caches, {left} after")
        self.assertEqual(st["trees_in_memory"], 0, "no inode of the repo is left: nor its tree")
        # Names come back with the numbers they had.
        small = m.path(ORG, "edge-cases", "small.txt")
        ino = os.stat(small).st_ino
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
        self.assertEqual(os.stat(small).st_ino, ino)
        # ls -l asks every file for its SELinux label and ACL unless told they are unsupported.
        for name in ("security.selinux", "system.posix_acl_access"):
            with self.assertRaises(OSError, msg=name) as cm:
                os.getxattr(small, name)
            self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP, name)
        with self.assertRaises(OSError) as cm:
            os.getxattr(small, "user.nope")
        self.assertEqual(cm.exception.errno, errno.ENODATA)

    def test_layout_modes_and_stable_inodes(self):
        m = self.mount()
        d = m.path(ORG, "edge-cases")
        st = os.stat(d)
        self.assertEqual(st.st_mode & 0o777, 0o555)
        nested = os.path.join(d, "nested", "deep", "a", "b", "c.txt")
        ino = os.stat(nested).st_ino
        self.assertEqual(os.stat(nested).st_ino, ino)
        self.assertGreater(os.stat(nested).st_mtime, 1e9)
        self.assertIn(ORG, os.listdir(m.path()))
        self.assertIn("edge-cases", os.listdir(m.path(ORG)))
        self.assertIn("naïve café ✓.txt", os.listdir(os.path.join(d, "dir with spaces")))
        with self.assertRaises(OSError) as cm:
            open(os.path.join(d, "small.txt"), "w")
        self.assertIn(cm.exception.errno, (errno.EROFS, errno.EACCES))

    def test_mount_root_is_the_org_namespace(self):
        m = self.mount()
        st = os.stat(m.mnt)
        self.assertEqual((st.st_ino, st.st_mode & 0o777), (1, 0o555))
        self.assertEqual(os.listdir(m.mnt), [".hub"], "a fresh cache knows no org")
        want = sha256_file(self.local("tiny-safetensors", "model.safetensors"))
        self.assertEqual(sha256_file(os.path.join(m.mnt, ORG, "tiny-safetensors", "model.safetensors")),
                         want)
        self.assertEqual(os.listdir(m.mnt), [".hub", ORG])
        self.assertEqual(os.listdir(os.path.join(m.mnt, ORG)), ["tiny-safetensors"])
        # The old MOUNT/models/ prefix is gone: "models" is an org like any other, with none of
        # the fixture repos in it.
        old = os.path.join(m.mnt, "models")
        self.assertTrue(os.path.isdir(old))
        self.assertEqual(os.listdir(old), [])
        for p in (os.path.join(old, ORG), os.path.join(old, ORG, "tiny-safetensors", "model.safetensors")):
            with self.assertRaises(FileNotFoundError, msg=p):
                os.stat(p)
        # Names with a dot are never orgs (MOUNT/.hub is the Hugging Face cache view); they never
        # reach the Hub.
        api = self.hub.counters()["api"]
        self.assertTrue(os.path.isdir(os.path.join(m.mnt, ".hub")))
        for name in (".git", ".Trash", ".Trash-0", ".xdg-volume-info", "autorun.inf"):
            for p in (os.path.join(m.mnt, name), os.path.join(m.mnt, name, "tiny-safetensors")):
                with self.assertRaises(FileNotFoundError, msg=p):
                    os.stat(p)
        self.assertEqual(self.hub.counters()["api"], api)
        self.assertEqual(os.listdir(m.mnt), [".hub", ORG])
        # The root still names the control socket (the CLI's --mount), and only the root does.
        self.assertIn("user.modelfs.control_socket", os.listxattr(m.mnt))
        sock = os.getxattr(m.mnt, "user.modelfs.control_socket").decode()
        self.assertEqual(os.path.realpath(sock), os.path.realpath(os.path.join(m.cache, "control.sock")))
        self.assertNotIn("user.modelfs.control_socket", os.listxattr(m.path(ORG)))
        with self.assertRaises(OSError) as cm:
            os.getxattr(m.path(ORG), "user.modelfs.control_socket")
        self.assertEqual(cm.exception.errno, errno.ENODATA)

    def test_many_files_tree_listing_uses_pagination(self):
        m = self.mount()
        repo = self.repo("many-files")
        files = repo["commits"][repo["branches"]["main"]]["files"]
        found = []
        for root, _dirs, names in os.walk(m.path(ORG, "many-files")):
            for n in names:
                found.append(os.path.relpath(os.path.join(root, n), m.path(ORG, "many-files")))
        self.assertEqual(sorted(found), sorted(f["path"] for f in files))
        commit = repo["commits"][repo["branches"]["main"]]
        pages = -(-(len(commit["files"]) + len(commit["dirs"])) // self.page_size)
        c = self.hub.counters()
        self.assertGreater(pages, 1)
        self.assertEqual(c["tree"], pages, "each page of the listing is fetched exactly once")
        self.assertEqual(c["api"], 1, "one metadata call for the repo")

    def test_missing_repo_and_file_are_enoent_and_cached_negatively(self):
        m = self.mount()
        for p in (m.path(ORG, "no-such-repo"), m.path(ORG, "edge-cases", "no-such-file"),
                  m.path(ORG, "edge-cases@no-such-branch"), m.path(ORG, ".git"),
                  m.path(ORG, "edge-cases@"), m.path(ORG, "edge-cases@@"),
                  m.path(ORG, "edge-cases@..%2Fx"), m.path("autorun.inf"), m.path(".git"),
                  m.path(ORG, "autorun.inf")):
            with self.assertRaises(FileNotFoundError, msg=p):
                os.stat(p)
        before = self.hub.counters()["api"]
        for _ in range(5):
            with self.assertRaises(FileNotFoundError):
                os.stat(m.path(ORG, "no-such-repo"))
            with self.assertRaises(FileNotFoundError):
                os.stat(m.path(ORG, ".git"))
        self.assertEqual(self.hub.counters()["api"], before, "misses must be cached")

    def test_private_and_gated_need_the_right_token(self):
        anon = self.mount(token=None)
        with self.assertRaises(FileNotFoundError):  # the Hub hides private repos from anonymous
            os.stat(anon.path(ORG, "private-model"))
        gated = self.repo("gated-model")
        lfs = [f for f in gated["commits"][gated["branches"]["main"]]["files"] if f["lfs"]][0]
        with self.assertRaises(PermissionError):
            with open(anon.path(ORG, "gated-model", lfs["path"]), "rb") as f:
                f.read(10)
        self.assertIn("gated", anon.log_text().lower())
        basic = self.mount(token="hf_modelfs_basic")
        with self.assertRaises(PermissionError):
            with open(basic.path(ORG, "gated-model", lfs["path"]), "rb") as f:
                f.read(10)
        full = self.mount(token="hf_modelfs_full")
        self.assertEqual(sha256_file(full.path(ORG, "gated-model", lfs["path"])), lfs["sha256"])
        priv = self.repo("private-model")
        for f in priv["commits"][priv["branches"]["main"]]["files"]:
            self.assertEqual(sha256_file(full.path(ORG, "private-model", f["path"])), f["sha256"])


class Bytes(MountTest):
    def test_every_fixture_file_is_byte_identical_with_cat(self):
        m = self.mount()
        n = 0
        for repo_id, repo in self.m["repos"].items():
            name = repo_id.split("/", 1)[1]
            files = repo["commits"][repo["branches"]["main"]]["files"]
            for f in files:
                out = subprocess.run(["cat", m.path(ORG, name, f["path"])], capture_output=True,
                                     check=True).stdout
                self.assertEqual(hashlib.sha256(out).hexdigest(), f["sha256"], f["path"])
                n += 1
        self.assertGreater(n, 400)

    def test_random_pread_from_8_threads(self):
        m = self.mount()
        local = self.local("edge-cases", "large.bin")
        size = os.path.getsize(local)
        rng = random.Random(7)
        jobs = [(rng.randrange(size), rng.choice([1, 4096, 65536, 1 << 20, 3 * MIB]))
                for _ in range(400)]
        fd_local = os.open(local, os.O_RDONLY)
        fd = os.open(m.path(ORG, "edge-cases", "large.bin"), os.O_RDONLY)

        def check(job):
            off, n = job
            got = os.pread(fd, n, off)
            want = os.pread(fd_local, n, off)
            return got == want

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(check, jobs))
        os.close(fd)
        os.close(fd_local)
        self.assertEqual(results.count(False), 0)

    def test_mmap_whole_file(self):
        m = self.mount()
        for name, path in (("edge-cases", "exact-4MiB-plus-1.bin"), ("tiny-safetensors", "model.safetensors")):
            with open(m.path(ORG, name, path), "rb") as f:
                with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED) as mm:
                    got = hashlib.sha256(mm).hexdigest()
            self.assertEqual(got, sha256_file(self.local(name, path)))

    def test_chunk_boundaries_and_empty_file(self):
        m = self.mount()
        self.assertEqual(open(m.path(ORG, "edge-cases", "empty.txt"), "rb").read(), b"")
        for path in ("exact-4MiB.bin", "exact-4MiB-plus-1.bin"):
            want = open(self.local("edge-cases", path), "rb").read()
            fd = os.open(m.path(ORG, "edge-cases", path), os.O_RDONLY)
            for off in (0, MIB - 1, MIB, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 5 * MIB):
                self.assertEqual(os.pread(fd, 3, off), want[off:off + 3], (path, off))
            os.close(fd)


class Laziness(MountTest):
    def test_read_1mib_at_100mib_fetches_a_few_chunks(self):
        m = self.mount()
        f = [x for x in self.repo("edge-cases")["commits"][self.repo("edge-cases")["branches"]["main"]]["files"]
             if x["path"] == "large.bin"][0]
        fd = os.open(m.path(ORG, "edge-cases", "large.bin"), os.O_RDONLY)
        got = os.pread(fd, MIB, 100 * MIB)
        os.close(fd)
        with open(self.local("edge-cases", "large.bin"), "rb") as lf:
            lf.seek(100 * MIB)
            self.assertEqual(got, lf.read(MIB))
        fetched = self.hub.file_bytes(f["sha256"])
        print(f"\n  1 MiB read at 100 MiB of a {f['size'] >> 20} MiB file fetched {fetched / MIB:.1f} MiB")
        self.assertGreaterEqual(fetched, MIB)
        self.assertLessEqual(fetched, 8 * MIB)

    def test_reading_twice_fetches_once(self):
        m = self.mount()
        path = m.path(ORG, "tiny-safetensors", "model.safetensors")
        a = sha256_file(path)
        first = self.hub.file_bytes()
        drop_page_cache(path)
        b = sha256_file(path)
        self.assertEqual(a, b)
        self.assertEqual(self.hub.file_bytes(), first)
        self.assertEqual(first, os.path.getsize(self.local("tiny-safetensors", "model.safetensors")))

    def test_four_processes_one_file_fetch_once(self):
        m = self.mount()
        f = [x for x in self.repo("edge-cases")["commits"][self.repo("edge-cases")["branches"]["main"]]["files"]
             if x["path"] == "large.bin"][0]
        path = m.path(ORG, "edge-cases", "large.bin")
        procs = [subprocess.Popen(["sha256sum", path], stdout=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outs = [p.communicate(timeout=300)[0].split()[0] for p in procs]
        self.assertEqual(set(outs), {f["sha256"]})
        fetched = self.hub.file_bytes(f["sha256"])
        print(f"\n  4 readers of {f['size'] >> 20} MiB: upstream served {fetched / f['size']:.3f}x the file")
        self.assertEqual(fetched, f["size"])


class Persistence(MountTest):
    def test_remount_reads_from_cache_and_offline_still_works(self):
        m = self.mount()
        path_rel = (ORG, "tiny-safetensors", "model.safetensors")
        want = sha256_file(self.local("tiny-safetensors", "model.safetensors"))
        self.assertEqual(sha256_file(m.path(*path_rel)), want)
        cache = m.cache
        m.unmount()
        self.hub.reset()
        m2 = self.mount(cache_dir=cache)
        self.assertEqual(sha256_file(m2.path(*path_rel)), want)
        self.assertEqual(self.hub.file_bytes(), 0, "a remount must read from the cache")
        m2.unmount()
        m3 = self.mount(cache_dir=cache, args=("--offline",))
        self.assertIn("model.safetensors", os.listdir(m3.path(ORG, "tiny-safetensors")))
        self.assertEqual(sha256_file(m3.path(*path_rel)), want)
        t0 = time.time()
        with self.assertRaises(OSError) as cm:
            with open(m3.path(ORG, "tiny-safetensors", "tokenizer.json"), "rb") as f:
                f.read()
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertLess(time.time() - t0, 2.0)
        m3.unmount()
        m4 = self.mount(cache_dir=cache, env={"HF_HUB_OFFLINE": "1"})
        self.assertEqual(sha256_file(m4.path(*path_rel)), want)
        self.assertEqual(self.hub.file_bytes(), 0)
        self.assertEqual(self.hub.counters().get("api", 0), 0, "offline must not call the Hub")


    def test_cache_filled_without_a_mount_serves_the_mount_offline(self):
        # The cache is keyed by org/name, commit, path in the repo and content id, never by a
        # path in the mount, so a cache filled before the root became the org namespace (here
        # by a prefetch that never saw a mount) serves MOUNT/<org>/<name>/ as it is.
        work = tempfile.mkdtemp(prefix="mfs-oldcache-")
        self.addCleanup(shutil.rmtree, work, True)
        cache = os.path.join(work, "cache")
        r = run_cli(["prefetch", f"{ORG}/tiny-safetensors", "--cache-dir", cache, "--endpoint",
                     self.hub.url], env={"HF_TOKEN": FULL_TOKEN})
        self.assertEqual(r.returncode, 0, r.stderr)
        db = sqlite3.connect(os.path.join(cache, "index.sqlite"))
        try:
            repos = [row[0] for row in db.execute("SELECT id FROM repos")]
            refs = [row[0] for row in db.execute("SELECT repo_id FROM refs")]
            paths = sorted(row[0] for row in db.execute("SELECT path FROM tree_files WHERE is_dir = 0"))
        finally:
            db.close()
        repo = self.repo("tiny-safetensors")
        files = repo["commits"][repo["branches"]["main"]]["files"]
        self.assertEqual((repos, set(refs)), ([f"{ORG}/tiny-safetensors"], {f"{ORG}/tiny-safetensors"}))
        self.assertEqual(paths, sorted(f["path"] for f in files))
        self.hub.reset()
        m = self.mount(cache_dir=cache, args=("--offline",))
        self.assertEqual(os.listdir(m.mnt), [".hub", ORG])
        self.assertEqual(os.listdir(m.path(ORG)), ["tiny-safetensors"])
        for f in files:
            self.assertEqual(sha256_file(m.path(ORG, "tiny-safetensors", f["path"])), f["sha256"],
                             f["path"])
        c = self.hub.counters()
        self.assertEqual((self.hub.file_bytes(), c.get("api", 0), c.get("tree", 0)), (0, 0, 0))


class HubDown(MountTest):
    def test_simulator_stopped_cached_reads_work_uncached_fail_fast(self):
        from mfs import HubSim
        hub = HubSim()
        try:
            m = Mount(hub, args=("--revision-ttl", "1", "--read-timeout", "5"), token="hf_modelfs_full")
            self._mounts.append(m)
            p = m.path(ORG, "versioned", "weights.bin")
            want = sha256_file(p)
            hub.stop()
            time.sleep(1.5)  # past the revision TTL: the branch must be re-checked and fail
            drop_page_cache(p)
            self.assertEqual(sha256_file(m.path(ORG, "versioned", "weights.bin")), want)
            self.assertIn("README.md", os.listdir(m.path(ORG, "versioned")))
            t0 = time.time()
            with self.assertRaises(OSError) as cm:
                with open(m.path(ORG, "versioned", "config.json"), "rb") as f:
                    f.read()
            self.assertEqual(cm.exception.errno, errno.EIO)
            self.assertLess(time.time() - t0, 6.0)
        finally:
            hub.close()


class Eviction(MountTest):
    def test_cache_stays_under_limit_and_bytes_stay_right(self):
        limit = 24 * MIB
        m = self.mount(cache_size=str(limit))
        chunks = os.path.join(m.cache, "chunks")
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                total = 0
                for root, _d, names in os.walk(chunks):
                    for n in names:
                        try:
                            total += os.path.getsize(os.path.join(root, n))
                        except OSError:
                            pass
                peak[0] = max(peak[0], total)
                time.sleep(0.02)

        t = threading.Thread(target=sample)
        t.start()
        try:
            for path in ("large.bin", "exact-4MiB.bin", "exact-4MiB-plus-1.bin"):
                self.assertEqual(sha256_file(m.path(ORG, "edge-cases", path)),
                                 sha256_file(self.local("edge-cases", path)), path)
        finally:
            stop.set()
            t.join()
        # Chunk files carry a 4 KiB header each; allow for that and the data in flight.
        print(f"\n  cache limit {limit / MIB:.0f} MiB, peak on disk {peak[0] / MIB:.1f} MiB "
              f"after reading {168} MiB")
        self.assertLessEqual(peak[0], limit + 64 * 4096 + 8 * MIB)
        self.assertGreater(peak[0], 0)


class Revisions(MountTest):
    def test_tags_commits_and_branches_with_slashes(self):
        m = self.mount()
        repo = self.repo("versioned")
        for rev, sha in list(repo["branches"].items()) + list(repo["tags"].items()):
            enc = rev.replace("/", "%2F")
            for f in repo["commits"][sha]["files"]:
                got = sha256_file(m.path(ORG, f"versioned@{enc}", f["path"]))
                self.assertEqual(got, f["sha256"], (rev, f["path"]))
            got = sha256_file(m.path(ORG, f"versioned@{sha}", "config.json"))
            self.assertEqual(got, [f for f in repo["commits"][sha]["files"] if f["path"] == "config.json"][0]["sha256"])
        self.assertEqual(os.getxattr(m.path(ORG, "versioned@v1.0", "config.json"), "user.modelfs.commit").decode(),
                         repo["tags"]["v1.0"])

    def test_open_file_keeps_its_content_when_the_branch_moves(self):
        m = self.mount(args=("--revision-ttl", "1"))
        repo = self.repo("versioned")
        old, new = repo["branches"]["movable"], repo["branches"]["main"]
        old_w = [f for f in repo["commits"][old]["files"] if f["path"] == "weights.bin"][0]
        new_w = [f for f in repo["commits"][new]["files"] if f["path"] == "weights.bin"][0]
        self.assertNotEqual(old_w["sha256"], new_w["sha256"])
        p = m.path(ORG, "versioned@movable", "weights.bin")
        f = open(p, "rb")
        try:
            h = hashlib.sha256(f.read(1000))
            self.hub.move_branch(f"{ORG}/versioned", "movable", new)
            time.sleep(1.5)
            self.assertEqual(sha256_file(p), new_w["sha256"], "after the TTL the path shows the new commit")
            h.update(f.read())
            self.assertEqual(h.hexdigest(), old_w["sha256"], "an open file keeps its content")
        finally:
            f.close()
            self.hub.move_branch(f"{ORG}/versioned", "movable", old)


if __name__ == "__main__":
    unittest.main()
