"""Download jobs through a real mount: `prefetch --detach` hands the work to the mount, `jobs`
lists, pauses, resumes, cancels and waits; jobs survive kill -9 and a restart, pause stops
upstream traffic, max_jobs holds, and a job belongs to its user.

The simulator paces each connection at 20 MB/s and jobs use one range at a time, so a job on
the 160 MiB file lasts seconds: long enough to act on it midway. Assertions are on the
simulator's byte counters, the job states and sha256 of what the mount serves.
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import unittest

from mfs import ORG, HubSim, Mount, MountTest, kill9, run_cli, sha256_file

USER = "mfs-jobs-user"
MIB = 1 << 20
CHUNK = MIB  # the cache's chunk size


class Jobs(MountTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hub.close()
        cls.hub = HubSim(page_size=cls.page_size, extra=["--rate", str(20_000_000)])

    def file(self, path, repo="edge-cases"):
        r = self.repo(repo)
        return next(f for f in r["commits"][r["branches"]["main"]]["files"] if f["path"] == path)

    def cli(self, m, *args, user=None, sock=None):
        where = ["--socket", sock] if sock else ["--mount", m.mnt]
        return run_cli([*args, *where], user=user)

    def jobs(self, m, **kw):
        r = self.cli(m, "jobs", "--json", **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return {j["id"]: j for j in json.loads(r.stdout)}

    def start(self, m, *args, **kw):
        r = self.cli(m, "prefetch", f"{ORG}/edge-cases", *args, "--detach", **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("modelfs jobs wait", r.stderr)
        return int(r.stdout.strip())

    def until(self, what, cond, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}")
            time.sleep(0.1)

    def served(self, f):
        return self.hub.file_bytes(f["sha256"])

    def test_a_detached_job_survives_kill9_and_a_restart_and_finishes_exact(self):
        cache = tempfile.mkdtemp(prefix="mfs-jobs-cache-")
        self.addCleanup(shutil.rmtree, cache, True)
        big = self.file("large.bin")
        m = self.mount(cache_dir=cache)
        job = self.start(m, "large.bin", "--jobs", "1")
        self.until("20 MiB fetched", lambda: self.jobs(m)[job]["bytes_done"] >= 20 * MIB)
        self.assertEqual(self.jobs(m)[job]["state"], "running")
        kill9(m)
        before = self.served(big)
        self.assertLess(before, big["size"], "killed midway")
        m2 = self.mount(cache_dir=cache)
        j = self.jobs(m2)[job]
        self.assertIn(j["state"], ("pending", "running", "completed"))
        r = self.cli(m2, "jobs", "wait", str(job))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"job {job} completed", r.stderr)
        self.assertEqual(self.jobs(m2)[job]["state"], "completed")
        served = self.served(big)
        self.assertEqual(sha256_file(m2.path(ORG, "edge-cases", "large.bin")), big["sha256"])
        self.assertEqual(self.served(big), served, "the mount serves it from the cache")
        # What was fetched before the kill was kept: at most the ranges in flight then (one
        # 8 MiB fetch unit) came twice.
        self.assertLessEqual(served, big["size"] + 8 * MIB)

    def test_pause_stops_upstream_traffic_and_resume_fetches_no_byte_twice(self):
        big = self.file("large.bin")
        m = self.mount()
        job = self.start(m, "large.bin", "--jobs", "1")
        self.until("16 MiB fetched", lambda: self.served(big) >= 16 * MIB)
        r = self.cli(m, "jobs", "pause", str(job))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), f"job {job}: paused")
        time.sleep(1)
        at_pause = self.served(big)
        time.sleep(2)
        self.assertEqual(self.served(big), at_pause, "no upstream byte a second after pause")
        self.assertLess(at_pause, big["size"])
        j = self.jobs(m)[job]
        self.assertEqual(j["state"], "paused")
        self.assertEqual(j["rate_bytes"], 0)
        r = self.cli(m, "jobs", "resume", str(job))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli(m, "jobs", "wait", str(job))
        self.assertEqual(r.returncode, 0, r.stderr)
        # Only the chunk cut short by the pause (it is never stored half) comes again.
        self.assertLessEqual(self.served(big), big["size"] + CHUNK)
        self.assertEqual(sha256_file(m.path(ORG, "edge-cases", "large.bin")), big["sha256"])

    def test_max_jobs_holds_and_pending_jobs_run_in_order(self):
        big, small = self.file("large.bin"), self.file("exact-4MiB.bin")
        other = self.file("exact-4MiB-plus-1.bin")
        m = self.mount(args=["--max-jobs", "1"])
        first = self.start(m, "large.bin", "--jobs", "1")
        second = self.start(m, "exact-4MiB.bin")
        third = self.start(m, "exact-4MiB-plus-1.bin")
        self.until("the first running", lambda: self.jobs(m)[first]["state"] == "running")
        seen_running = set()
        while True:
            js = self.jobs(m)
            running = [i for i, j in js.items() if j["state"] == "running"]
            self.assertLessEqual(len(running), 1, js)
            seen_running.update(running)
            if all(js[i]["state"] == "completed" for i in (first, second, third)):
                break
            if js[first]["state"] == "running":
                self.assertEqual(js[second]["state"], "pending")
                self.assertEqual(self.served(small), 0, "a pending job fetches nothing")
            time.sleep(0.1)
        js = self.jobs(m)
        self.assertLessEqual(js[first]["finished_at"], js[second]["finished_at"])
        self.assertLessEqual(js[second]["finished_at"], js[third]["finished_at"])
        for f in (big, small, other):
            self.assertEqual(self.served(f), f["size"])
        text = self.cli(m, "jobs").stdout
        self.assertRegex(text, rf"(?m)^{first}\s+completed\s+100% ")

    def test_a_job_belongs_to_its_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (a second user)")
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", USER], check=True)
        uid = pwd.getpwnam(USER).pw_uid
        sock_dir = tempfile.mkdtemp(prefix="mfs-sock-")
        os.chmod(sock_dir, 0o755)
        self.addCleanup(shutil.rmtree, sock_dir, True)
        sock = os.path.join(sock_dir, "control.sock")
        m = self.mount(args=["--allow-other", "--control-socket", sock])
        root_job = self.start(m, "large.bin", "--jobs", "1", sock=sock)
        r = self.cli(m, "jobs", "cancel", str(root_job), user=USER, sock=sock)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("only its owner or an admin", r.stderr)
        self.assertEqual(self.jobs(m, sock=sock)[root_job]["state"], "running")
        r = self.cli(m, "pin", f"{ORG}/edge-cases", "small.txt", "--detach", user=USER, sock=sock)
        self.assertEqual(r.returncode, 4, r.stderr)
        mine = self.start(m, "exact-4MiB.bin", user=USER, sock=sock)
        js = self.jobs(m, user=USER, sock=sock)
        self.assertEqual(js[mine]["uid"], uid)
        self.assertEqual(js[root_job]["uid"], 0)
        r = self.cli(m, "jobs", "cancel", str(mine), user=USER, sock=sock)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli(m, "jobs", "cancel", str(root_job), sock=sock)  # an admin may
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli(m, "jobs", "wait", str(root_job), sock=sock)
        self.assertEqual(r.returncode, 130, r.stderr)
        self.assertIn("cancelled", r.stderr)

    def test_a_failed_job_says_why_and_what_to_do_and_no_mount_no_job(self):
        m = self.mount()
        r = self.cli(m, "prefetch", f"{ORG}/no-such-repo", "--detach")
        self.assertEqual(r.returncode, 0, r.stderr)
        job = int(r.stdout)
        r = self.cli(m, "jobs", "wait", str(job))
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(f"job {job} failed", r.stderr)
        self.assertIn("what to do: check the repo name", r.stderr)
        text = self.cli(m, "jobs").stdout
        self.assertRegex(text, rf"(?m)^{job}\s+failed\s")
        self.assertIn("what to do:", text)
        r = self.cli(m, "jobs", "pause", "12345")
        self.assertEqual(r.returncode, 3, r.stderr)
        # Without a mount there is nothing to hand a job to.
        cache = tempfile.mkdtemp(prefix="mfs-jobs-nomount-")
        self.addCleanup(shutil.rmtree, cache, True)
        r = run_cli(["prefetch", f"{ORG}/edge-cases", "--detach", "--cache-dir", cache,
                     "--endpoint", self.hub.url])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("download jobs run in a mount", r.stderr)


if __name__ == "__main__":
    unittest.main()
