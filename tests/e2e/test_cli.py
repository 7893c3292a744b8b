"""The modelfs CLI against the simulator, through a running mount and without one."""

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import unittest

from mfs import BIN, FULL_TOKEN, ORG, Mount, MountTest, sha256_file

MIB = 1 << 20


def run(args, env=None, user=None, timeout=120):
    cmd = [BIN, *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)


class CliBase(MountTest):
    def lfs(self, repo, path):
        r = self.repo(repo)
        return [f for f in r["commits"][r["branches"]["main"]]["files"] if f["path"] == path][0]

    def direct_args(self, cache):
        return ["--cache-dir", cache, "--endpoint", self.hub.url]

    def modes(self):
        """Yields (name, args prefix) for: through a running mount, and directly on a cache."""
        m = self.mount()
        yield "mount", ["--mount", m.mnt]
        m.unmount()
        direct = tempfile.mkdtemp(prefix="mfs-cli-")
        self.addCleanup(shutil.rmtree, direct, True)
        yield "direct", self.direct_args(os.path.join(direct, "cache"))


class Commands(CliBase):
    def test_every_command_with_and_without_a_mount(self):
        for mode, base in self.modes():
            with self.subTest(mode=mode):
                env = {"HF_TOKEN": FULL_TOKEN}
                r = run(["prefetch", f"{ORG}/tiny-safetensors", "--json", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                events = [json.loads(line) for line in r.stdout.splitlines()]
                self.assertEqual(events[-1]["event"], "result")
                self.assertEqual(events[-1]["files"], 7)
                self.assertEqual(events[0]["event"], "start")
                self.assertTrue(any(e["event"] == "file_done" for e in events))
                r = run(["ls", "--json", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                repos = json.loads(r.stdout)["repos"]
                self.assertEqual([x["repo"] for x in repos], [f"{ORG}/tiny-safetensors"])
                st = self.lfs("tiny-safetensors", "model.safetensors")
                r = run(["ls", f"{ORG}/tiny-safetensors", "--json", *base], env)
                files = {f["path"]: f for f in json.loads(r.stdout)["repos"][0]["files"]}
                self.assertEqual(files["model.safetensors"]["cached_bytes"], st["size"])
                r = run(["pin", f"{ORG}/edge-cases", "small.txt", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                r = run(["stats", "--json", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                s = json.loads(r.stdout)
                self.assertGreater(s["cache"]["used_bytes"], st["size"])
                self.assertGreater(s["cache"]["pinned_bytes"], 0)
                r = run(["verify", "--json", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                final = json.loads(r.stdout.splitlines()[-1])
                self.assertEqual(final["event"], "result")
                self.assertEqual(final["corrupt_files"], 0)
                self.assertGreaterEqual(final["checked_files"], 7)
                r = run(["gc", "--to", "0", "--json", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout)["used_bytes"], 19, "only the pinned small.txt stays")
                r = run(["unpin", f"{ORG}/edge-cases", "small.txt", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                r = run(["rm", "--all", "--json", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                r = run(["stats", "--json", *base], env)
                self.assertEqual(json.loads(r.stdout)["cache"]["used_bytes"], 0)
                r = run(["info", f"{ORG}/tiny-safetensors", *base], env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("llama", r.stdout)

    def test_bad_input_gives_clear_errors_and_exit_codes(self):
        m = self.mount()
        base = ["--mount", m.mnt]
        cases = [
            (["info", f"{ORG}/no-such-repo", *base], 3, "not"),
            (["prefetch", f"{ORG}/versioned@no-such-branch", *base], 3, "revision"),
            (["prefetch", "not a repo", *base], 2, "not a repo"),
            (["prefetch", f"{ORG}/edge-cases", "[abc", *base], 2, "bad pattern"),
            (["prefetch", f"{ORG}/edge-cases", "*.nothing", *base], 3, "matches"),
            (["gc", "--to", "12X", *base], 2, "not a size"),
            (["mount", m.mnt, "--cache-size", "lots"], 2, "not a size"),
            (["rm", *base], 2, "repo or --all"),
            (["frobnicate"], 2, ""),
        ]
        for args, code, text in cases:
            r = run(args, {"HF_TOKEN": FULL_TOKEN})
            self.assertEqual(r.returncode, code, (args, r.stdout, r.stderr))
            self.assertIn(text, (r.stderr + r.stdout).lower(), args)
        r = run(["gc", "--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("Example", r.stdout)

    def test_prefetch_refuses_what_cannot_fit(self):
        m = self.mount(cache_size="50M")
        r = run(["prefetch", f"{ORG}/edge-cases", "--mount", m.mnt])
        self.assertEqual(r.returncode, 6, r.stderr)
        self.assertIn("cache limit", r.stderr)
        self.assertEqual(self.hub.file_bytes(), 0)


class PinsAndEviction(CliBase):
    def test_pinned_data_survives_gc_to_zero_and_restart_and_lru_goes_first(self):
        m = self.mount(cache_size="14M")
        base = ["--mount", m.mnt]
        pinned = self.lfs("edge-cases", "exact-4MiB.bin")
        r = run(["pin", f"{ORG}/edge-cases", "exact-4MiB.bin", *base])
        self.assertEqual(r.returncode, 0, r.stderr)
        # A (older) then B (newer), then C pushes the cache over its limit: A goes first.
        a = self.lfs("tiny-safetensors", "model.safetensors")
        sha256_file(m.path(ORG, "tiny-safetensors", "model.safetensors"))
        time.sleep(1.1)
        b = self.lfs("versioned", "weights.bin")
        sha256_file(m.path(ORG, "versioned", "weights.bin"))
        time.sleep(1.1)
        sha256_file(m.path(ORG, "edge-cases", "exact-4MiB-plus-1.bin"))
        getx = lambda *p: int(os.getxattr(m.path(*p), "user.modelfs.cached_bytes"))
        self.assertLess(getx(ORG, "tiny-safetensors", "model.safetensors"), a["size"],
                        "the least recently used file is evicted first")
        self.assertEqual(getx(ORG, "versioned", "weights.bin"), b["size"])
        self.assertEqual(getx(ORG, "edge-cases", "exact-4MiB.bin"), pinned["size"])
        r = run(["gc", "--to", "0", *base])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(getx(ORG, "edge-cases", "exact-4MiB.bin"), pinned["size"])
        self.assertEqual(getx(ORG, "versioned", "weights.bin"), 0)
        cache = m.cache
        m.unmount()
        self.hub.reset()
        m2 = self.mount(cache_dir=cache, cache_size="14M")
        self.assertEqual(os.getxattr(m2.path(ORG, "edge-cases", "exact-4MiB.bin"), "user.modelfs.pinned"), b"1")
        self.assertEqual(sha256_file(m2.path(ORG, "edge-cases", "exact-4MiB.bin")), pinned["sha256"])
        self.assertEqual(self.hub.file_bytes(), 0, "pinned data survived the restart")
        r = run(["pin", f"{ORG}/edge-cases", "large.bin", "--mount", m2.mnt])
        self.assertEqual(r.returncode, 6, "pinning more than the limit is refused")
        self.assertIn("limit", r.stderr)

    def test_getfattr_shows_cache_status(self):
        m = self.mount()
        p = m.path(ORG, "edge-cases", "exact-4MiB.bin")
        f = self.lfs("edge-cases", "exact-4MiB.bin")
        os.pread(os.open(p, os.O_RDONLY), 10, 0)
        out = subprocess.run(["getfattr", "-d", p], capture_output=True, text=True, check=True).stdout
        self.assertIn(f'user.modelfs.sha256="{f["sha256"]}"', out)
        self.assertIn('user.modelfs.revision="main"', out)
        self.assertIn('user.modelfs.pinned="0"', out)
        cached = int(out.split('user.modelfs.cached_bytes="')[1].split('"')[0])
        self.assertGreaterEqual(cached, 1 * MIB)


class Info(CliBase):
    def test_info_reads_headers_with_small_ranges(self):
        m = self.mount()
        r = run(["info", f"{ORG}/tiny-llama-GGUF", "--json", "--mount", m.mnt])
        self.assertEqual(r.returncode, 0, r.stderr)
        files = {f["path"]: f for f in json.loads(r.stdout)["files"]}
        g = files["model.gguf"]["model"]
        self.assertEqual(g["architecture"], "llama")
        self.assertEqual(g["context_length"], 256)
        self.assertEqual(g["format"], "gguf")
        gguf = self.lfs("tiny-llama-GGUF", "model.gguf")
        served = self.hub.file_bytes(gguf["sha256"])
        print(f"\n  info on a {gguf['size'] / MIB:.1f} MiB GGUF read {served / 1024:.0f} KiB of it "
              f"({g['parameters']} parameters)")
        self.assertLess(served, gguf["size"] / 10)
        r = run(["info", f"{ORG}/tiny-safetensors", "--json", "--mount", m.mnt])
        s = {f["path"]: f for f in json.loads(r.stdout)["files"]}["model.safetensors"]["model"]
        expect = self.repo("tiny-safetensors")["expect"]
        self.assertEqual(s["parameters"], expect["parameters"])
        self.assertEqual(s["architecture"], expect["architecture"])
        st = self.lfs("tiny-safetensors", "model.safetensors")
        self.assertLess(self.hub.file_bytes(st["sha256"]), 128 * 1024)
        ranges = [x for x in self.hub.counters()["ranges"] if x["file"] in (gguf["sha256"], st["sha256"])]
        self.assertTrue(all(x["status"] == 206 for x in ranges))


class Permissions(CliBase):
    USER = "mfs-tester"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            pwd.getpwnam(cls.USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            cls.USER], check=True)

    def test_non_admin_can_read_stats_and_prefetch_but_not_gc_or_pin(self):
        sock_dir = tempfile.mkdtemp(prefix="mfs-sock-")
        os.chmod(sock_dir, 0o755)
        self.addCleanup(shutil.rmtree, sock_dir, True)
        sock = os.path.join(sock_dir, "control.sock")
        m = self.mount(args=("--allow-other", "--control-socket", sock))
        os.chmod(m.root, 0o755)
        base = ["--socket", sock]
        r = run(["stats", *base], user=self.USER)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["prefetch", f"{ORG}/tiny-safetensors", *base], user=self.USER)
        self.assertEqual(r.returncode, 0, r.stderr)
        for args in (["gc", "--to", "0"], ["pin", f"{ORG}/edge-cases", "small.txt"],
                     ["rm", "--all"], ["unpin", f"{ORG}/edge-cases"]):
            r = run([*args, *base], user=self.USER)
            self.assertEqual(r.returncode, 4, (args, r.stderr))
            self.assertIn("admin", r.stderr)
        # The other user reads the mount too (allow_other + 0444).
        r = subprocess.run(["runuser", "-u", self.USER, "--", "cat",
                            m.path(ORG, "edge-cases", "small.txt")], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["gc", "--to", "0", *base])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["pin", f"{ORG}/edge-cases", "small.txt", *base])
        self.assertEqual(r.returncode, 0, r.stderr)


class Interrupt(CliBase):
    def test_prefetch_progress_on_a_tty_ctrl_c_and_resume(self):
        if not shutil.which("tmux"):
            self.fail("tmux is required (packaging/install-deps.sh --test installs it)")
        m = self.mount()
        total = sum(f["size"] for f in self.repo("edge-cases")["commits"][self.repo("edge-cases")["branches"]["main"]]["files"])
        # Slow the big file down so the prefetch is surely mid-way when Ctrl-C comes.
        self.hub.fault(kind="stall", seconds=20, after_bytes=0, count=1, match="large.bin")
        session = f"mfs{os.getpid()}"
        cmd = f"{BIN} prefetch {ORG}/edge-cases --mount {m.mnt} --jobs 2; echo EXIT=$?; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "20", cmd], check=True)
        self.addCleanup(subprocess.run, ["tmux", "kill-session", "-t", session], capture_output=True)
        screen = ""
        deadline = time.time() + 30
        while time.time() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            if "%" in screen and "ETA" in screen and "MiB" in screen:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        print("\n  --- prefetch on a tty (tmux capture-pane) ---\n" + "\n".join("  | " + l for l in screen.rstrip().splitlines()))
        self.assertIn("ETA", screen)
        self.assertIn("files", screen)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        deadline = time.time() + 20
        while time.time() < deadline and "EXIT=" not in screen:
            time.sleep(0.2)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        print("\n".join("  | " + l for l in screen.rstrip().splitlines()[-3:]))
        self.assertIn("EXIT=130", screen)
        self.assertIn("interrupted", screen)
        first = self.hub.file_bytes()
        self.assertLess(first, total)
        self.assertGreater(first, 8 * MIB, "the files before large.bin were fetched")
        self.hub.reset()
        r = run(["prefetch", f"{ORG}/edge-cases", "--mount", m.mnt, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        result = json.loads(r.stdout.splitlines()[-1])
        already = result["already_cached_bytes"]
        self.assertGreater(already, 0)
        second = self.hub.file_bytes()
        print(f"  interrupted after {first / MIB:.1f} MiB; resumed with {already / MIB:.1f} MiB already cached, "
              f"fetched {second / MIB:.1f} MiB of {total / MIB:.1f} MiB")
        self.assertEqual(second, total - already, "the resumed prefetch fetches only what was missing")


if __name__ == "__main__":
    unittest.main()
