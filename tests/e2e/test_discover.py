"""How the CLI finds the mount with no flags: the socket named in the machine's config, then
the machine's run dir, then the user's own cache (directly when no mount runs); a root
--allow-other mount puts its socket where other users reach it; --cache-dir finds a mount whose
socket is elsewhere; and every command names the mount or cache it used.

The machine's paths are overridden for the test (MODELFS_CONFIG for /etc/modelfs/modelfs.conf,
MODELFS_RUN_DIR for /run/modelfs): nothing is written to the real /etc or /run. Commands run
as a second Unix user with a home of their own. Needs root (useradd, runuser). The service
and fstab paths are covered in test_deploy.py (Deploy.assert_found_without_flags).
"""

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import unittest

from mfs import BIN, FULL_TOKEN, ORG, MountTest

USER = "mfs-disc-user"
NOWHERE = "/nonexistent/modelfs"


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        USER], check=True)


class Discover(MountTest):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (a second user)")
        super().setUpClass()
        ensure_user()

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mfs-discover-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.run_dir = os.path.join(self.tmp, "run", "modelfs")  # made by the mount
        self.home = os.path.join(self.tmp, "home")
        os.mkdir(self.home)
        pw = pwd.getpwnam(USER)
        os.chown(self.home, pw.pw_uid, pw.pw_gid)

    def cli(self, args, user=USER, config=NOWHERE, run_dir=None, home=None):
        """`modelfs ARGS` with no flags of discovery unless given, as USER by default."""
        env = {"HOME": home or (self.home if user else self.tmp), "MODELFS_CONFIG": config,
               "MODELFS_RUN_DIR": run_dir or self.run_dir, "PATH": os.environ["PATH"]}
        cmd = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], BIN, *args]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print(f"\n  $ {'(' + user + ') ' if user else ''}modelfs {' '.join(args)}  -> exit "
              f"{r.returncode}\n  " + r.stderr.strip().replace("\n", "\n  "))
        return r

    def shared_mount(self):
        m = self.mount(args=("--allow-other",), env={"MODELFS_RUN_DIR": self.run_dir})
        os.chmod(m.root, 0o755)
        return m

    def write_conf(self, **keys):
        path = os.path.join(self.tmp, "modelfs.conf")
        with open(path, "w") as f:
            f.write("# as /etc/modelfs/modelfs.conf\n")
            f.writelines(f"{k} = {v}\n" for k, v in keys.items())
        os.chmod(path, 0o644)
        return path

    def test_root_allow_other_mount_is_found_by_another_user_without_flags(self):
        m = self.shared_mount()
        sock = os.path.join(self.run_dir, "control.sock")
        self.assertTrue(stat.S_ISSOCK(os.stat(sock).st_mode))
        self.assertEqual(stat.S_IMODE(os.stat(self.run_dir).st_mode), 0o755)
        self.assertEqual(stat.S_IMODE(os.stat(m.cache).st_mode), 0o700, "the cache stays private")
        self.assertEqual(os.getxattr(m.mnt, "user.modelfs.control_socket").decode(), sock)
        self.assertEqual(os.readlink(os.path.join(m.cache, "control.sock")), sock)
        r = self.cli(["stats", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], m.cache, "pure JSON, the mount's")
        self.assertIn(f"modelfs: using the mount at {sock} (the machine's mount)", r.stderr)
        # A prefetch goes through the mount (its Hub), not to the user's own cache.
        r = self.cli(["prefetch", f"{ORG}/edge-cases", "small.txt"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"using the mount at {sock}", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.home, ".cache")), "no cache of its own")
        r = self.cli(["ls", "--json", "--mount", m.mnt], user=None)
        self.assertEqual([x["repo"] for x in json.loads(r.stdout)["repos"]], [f"{ORG}/edge-cases"])
        # SO_PEERCRED still decides: the other user may not change the cache.
        for args in (["gc", "--to", "0"], ["pin", f"{ORG}/edge-cases", "small.txt"],
                     ["rm", "--all"]):
            r = self.cli(args)
            self.assertEqual(r.returncode, 4, (args, r.stderr))
        r = self.cli(["gc", "--to", "0"], user=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        # --mount names the same socket; --cache-dir finds it through the link in the cache.
        r = self.cli(["ls", "--mount", m.mnt])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"using the mount at {sock} (--mount {m.mnt})", r.stderr)
        r = self.cli(["stats", "--json", "--cache-dir", m.cache], user=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"using the mount at {m.cache}/control.sock (the mount of cache {m.cache})",
                      r.stderr)
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], m.cache)
        m.unmount()
        self.assertFalse(os.path.lexists(os.path.join(m.cache, "control.sock")), "link removed")
        self.assertFalse(os.path.exists(sock))

    def test_a_second_shared_mount_leaves_the_run_dir_socket_to_the_first(self):
        first = self.shared_mount()
        second = self.shared_mount()
        sock = os.path.join(self.run_dir, "control.sock")
        own = os.path.join(second.cache, "control.sock")
        self.assertEqual(os.getxattr(first.mnt, "user.modelfs.control_socket").decode(), sock)
        self.assertEqual(os.getxattr(second.mnt, "user.modelfs.control_socket").decode(), own)
        # Searchable, not listable, so other users reach the socket and nothing else.
        self.assertEqual(stat.S_IMODE(os.stat(second.cache).st_mode), 0o711)
        r = self.cli(["stats", "--json"])
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], first.cache, r.stderr)
        r = self.cli(["stats", "--json", "--mount", second.mnt])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], second.cache)
        r = subprocess.run(["runuser", "-u", USER, "--", "ls", second.cache], capture_output=True)
        self.assertNotEqual(r.returncode, 0, "the other user cannot list the cache")

    def test_config_names_the_socket_or_the_mountpoint(self):
        sock_dir = os.path.join(self.tmp, "sock")
        os.mkdir(sock_dir)
        os.chmod(sock_dir, 0o755)
        sock = os.path.join(sock_dir, "control.sock")
        m = self.mount(args=("--allow-other", "--control-socket", sock))
        os.chmod(m.root, 0o755)
        conf = self.write_conf(control_socket=sock)
        r = self.cli(["stats", "--json"], config=conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], m.cache)
        self.assertIn(f"using the mount at {sock} (control_socket in {conf})", r.stderr)
        conf = self.write_conf(mountpoint=m.mnt)
        r = self.cli(["stats", "--json"], config=conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"using the mount at {sock} (mountpoint {m.mnt} in {conf})", r.stderr)
        # The owner's --cache-dir finds the mount whose socket is elsewhere.
        r = self.cli(["stats", "--json", "--cache-dir", m.cache], user=None)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"(the mount of cache {m.cache})", r.stderr)
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], m.cache)

    def test_no_mount_running_says_so_and_what_to_run(self):
        conf = self.write_conf(control_socket=os.path.join(self.tmp, "gone", "control.sock"))
        env_args = ["--endpoint", self.hub.url, "--offline"]
        r = self.cli(["stats", "--json", *env_args], config=conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        own = os.path.join(self.home, ".cache", "modelfs")
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], own, "the user's own cache")
        self.assertIn(f"no modelfs mount is running: nothing answers at {self.tmp}/gone/control.sock"
                      f" (control_socket in {conf}); start it with `systemctl start modelfs`",
                      r.stderr)
        self.assertIn(f"Using the cache {own} directly", r.stderr)
        r = self.cli(["ls", *env_args])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"no modelfs mount is running; using the cache {own} directly", r.stderr)
        self.assertIn("modelfs mount MOUNTPOINT", r.stderr)
        # An explicit --mount that is no mount, or whose socket is private, is an error.
        r = self.cli(["stats", "--mount", self.tmp])
        self.assertEqual(r.returncode, 3)
        self.assertIn(f"{self.tmp} is not a running modelfs mount", r.stderr)
        private = self.mount()
        os.chmod(private.root, 0o755)
        r = self.cli(["stats", "--mount", private.mnt])
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(f"you cannot use the mount at {private.mnt}", r.stderr)
        self.assertIn("--allow-other", r.stderr)


if __name__ == "__main__":
    unittest.main()
