"""packaging/bash-completion/modelfs in a real bash: the script is sourced, COMP_WORDS and
COMP_CWORD are set as bash sets them, the function it registered for `modelfs` is called, and
COMPREPLY is checked: subcommands, each command's options (the same as its --help), option
values, and repo names from a cache filled by `modelfs prefetch` from the hub simulator,
directly and through a running mount; and a mount that never answers does not hang it."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import helpdoc
from mfs import BIN, FULL_TOKEN, ORG, HubSim, Mount

# Calls the function `complete -p modelfs` names, as bash does on TAB, and prints COMPREPLY.
DRIVER = r"""
source "$1" || exit 3
shift
fn=$(complete -p modelfs 2>/dev/null | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
[ -n "$fn" ] || { echo "no completion function registered for modelfs" >&2; exit 3; }
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$fn" modelfs "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
[ ${#COMPREPLY[@]} -eq 0 ] || printf '%s\n' "${COMPREPLY[@]}"
"""

CACHED = [f"{ORG}/edge-cases", f"{ORG}/tiny-safetensors", f"{ORG}/versioned"]
REPO_COMMANDS = ["prefetch", "pin", "unpin", "ls", "info", "rm", "verify"]


class Completion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mfs-completion-")
        # Nothing of the machine's: no config, no /run/modelfs, no ~/.cache/modelfs.
        cls.env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("HF_", "MODELFS_CACHE_DIR"))}
        cls.env.update(HOME=os.path.join(cls.tmp, "home"),
                       MODELFS_CONFIG=os.path.join(cls.tmp, "no-modelfs.conf"),
                       MODELFS_RUN_DIR=os.path.join(cls.tmp, "run"))
        os.makedirs(cls.env["HOME"])
        cls.work = os.path.join(cls.tmp, "work")  # the shell's current directory
        os.makedirs(os.path.join(cls.work, "models-dir"))
        open(os.path.join(cls.work, "models.conf"), "w").close()
        cls.hub = HubSim()
        cls.cache = os.path.join(cls.tmp, "cache")
        for args in (["edge-cases", "small.txt"], ["tiny-safetensors"], ["versioned"]):
            r = cls.modelfs("prefetch", f"{ORG}/{args[0]}", *args[1:], "--cache-dir", cls.cache,
                            "--endpoint", cls.hub.url)
            if r.returncode != 0:
                raise RuntimeError(f"prefetch {args}: {r.stderr}")

    @classmethod
    def tearDownClass(cls):
        cls.hub.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def modelfs(cls, *args):
        return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120,
                              env={**cls.env, "HF_TOKEN": FULL_TOKEN})

    def complete(self, *words, env=None, timeout=20):
        """COMPREPLY for the command line BIN WORDS..., the last word being the one completed."""
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "bash",
                            helpdoc.COMPLETION, BIN, *words], capture_output=True, text=True,
                           timeout=timeout, cwd=self.work, env={**self.env, **(env or {})})
        self.assertEqual((r.returncode, r.stderr), (0, ""), words)
        return r.stdout.splitlines()

    def script_list(self, function, cmd):
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", 'source "$1" && "$2" "$3"',
                            "bash", helpdoc.COMPLETION, function, cmd], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return set(r.stdout.split())

    # ---- subcommands and options --------------------------------------------------------

    def test_subcommands(self):
        commands = helpdoc.help_commands(helpdoc.help_text())
        self.assertEqual(self.complete(""), commands)
        self.assertEqual(self.complete("p"), ["prefetch", "pin"])
        self.assertEqual(self.complete("um"), ["umount"])
        self.assertEqual(self.complete("x"), [])
        self.assertEqual(sorted(self.complete("-")),
                         sorted(helpdoc.help_options(helpdoc.help_text())))

    def test_options_of_every_command_are_those_of_its_help(self):
        for cmd in helpdoc.help_commands(helpdoc.help_text()):
            with self.subTest(cmd=cmd):
                in_help = helpdoc.help_options(helpdoc.help_text(cmd))
                self.assertEqual(sorted(self.complete(cmd, "-")), sorted(in_help))
                # Which of them take a value: the script's own lists, as --help says.
                self.assertEqual(self.script_list("_modelfs_value_opts", cmd),
                                 {o for o, value in in_help.items() if value})
                self.assertEqual(self.script_list("_modelfs_flag_opts", cmd),
                                 {o for o, value in in_help.items() if not value})
        self.assertEqual(self.complete("gc", "--t"), ["--token-file", "--to"])
        self.assertEqual(self.complete("rm", "--f"), ["--force"])
        # Options after other options and arguments too.
        self.assertIn("--jobs", self.complete("prefetch", f"{ORG}/x", "*.gguf", "--j"))

    def test_option_values(self):
        levels = self.complete("mount", "--log-level", "")
        self.assertEqual(levels, ["trace", "debug", "info", "warn", "error", "off"])
        help_line = [l for l in helpdoc.help_text("mount").splitlines() if "--log-level" in l][0]
        for level in levels:
            self.assertIn(level, help_line)
        self.assertEqual(self.complete("mount", "--log-level", "d"), ["debug"])
        # --opt=value: bash gives the words --opt, = and the value.
        self.assertEqual(self.complete("mount", "--log-level", "=", "w"), ["warn"])
        self.assertEqual(self.complete("mount", "--log-level", "="), levels)
        self.assertEqual(self.complete("mount", "--model-prefetch", ""), ["on", "off"])
        self.assertEqual(self.complete("ls", "--cache-dir", "mo"), ["models-dir"])
        self.assertEqual(sorted(self.complete("mount", "--config", "mo")),
                         ["models-dir", "models.conf"])
        self.assertEqual(self.complete("mount", "--cache-size", ""), [])
        # The mount point of mount is a directory; the second positional is nothing.
        self.assertEqual(self.complete("mount", "mo"), ["models-dir"])
        self.assertEqual(self.complete("mount", "-f", "--cache-dir", "c", "mo"), ["models-dir"])
        self.assertEqual(self.complete("mount", "models-dir", "mo"), [])

    # ---- repo names ---------------------------------------------------------------------

    def test_repo_names_from_the_cache(self):
        env = {"MODELFS_CACHE_DIR": self.cache}
        for cmd in REPO_COMMANDS:
            with self.subTest(cmd=cmd):
                self.assertEqual(self.complete(cmd, "", env=env), CACHED)
        self.assertEqual(self.complete("pin", f"{ORG}/t", env=env), [f"{ORG}/tiny-safetensors"])
        self.assertEqual(self.complete("info", "other/", env=env), [])
        # Only the first positional is a repo; stats and gc take none.
        self.assertEqual(self.complete("prefetch", f"{ORG}/versioned", "", env=env), [])
        self.assertEqual(self.complete("stats", "", env=env), [])
        self.assertEqual(self.complete("gc", "", env=env), [])
        # An option's value is not a positional; a flag takes none.
        self.assertEqual(self.complete("info", "--endpoint", "x", "", env=env), CACHED)
        self.assertEqual(self.complete("info", "--json", f"{ORG}/versioned", "", env=env), [])
        self.assertEqual(self.complete("rm", "--force", "", env=env), CACHED)
        # The cache named on the command line, in both spellings.
        self.assertEqual(self.complete("verify", "--cache-dir", self.cache, ""), CACHED)
        self.assertEqual(self.complete("ls", "--cache-dir", "=", self.cache, ""), CACHED)
        # The names are `modelfs ls`'s.
        r = self.modelfs("ls", "--cache-dir", self.cache)
        for name in CACHED:
            self.assertIn(name, r.stdout)

    def test_no_cache_gives_no_names_and_makes_no_cache(self):
        home_cache = os.path.join(self.env["HOME"], ".cache", "modelfs")
        self.assertEqual(self.complete("info", ""), [])
        missing = os.path.join(self.tmp, "missing-cache")
        self.assertEqual(self.complete("info", "--cache-dir", missing, ""), [])
        self.assertFalse(os.path.exists(home_cache))
        self.assertFalse(os.path.exists(missing))

    def test_repo_names_through_a_running_mount(self):
        m = Mount(self.hub, cache_dir=os.path.join(self.tmp, "mount-cache"), token=FULL_TOKEN)
        try:
            r = self.modelfs("prefetch", f"{ORG}/edge-cases", "small.txt", "--mount", m.mnt)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.complete("unpin", "--mount", m.mnt, ""), [f"{ORG}/edge-cases"])
            self.assertEqual(self.complete("info", "", env={"MODELFS_CACHE_DIR": m.cache}),
                             [f"{ORG}/edge-cases"])
            self.assertIn(m.mnt, self.complete("umount", ""))
            self.assertIn(m.mnt, self.complete("umount", m.mnt[:-2]))
        finally:
            m.close()

    def test_a_mount_that_does_not_answer_does_not_hang_it(self):
        # A control socket that takes the connection and never says a word.
        run_dir = self.env["MODELFS_RUN_DIR"]
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, "control.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(16)
        try:
            # Unbounded, `modelfs ls` waits for the answer for ever.
            with self.assertRaises(subprocess.TimeoutExpired):
                subprocess.run([BIN, "ls", "--json", "--socket", path], capture_output=True,
                               timeout=4, env=self.env)
            t0 = time.monotonic()
            self.assertEqual(self.complete("info", "--socket", path, ""), [])
            # With no flags modelfs finds it as the machine's mount, and is stopped as well.
            self.assertEqual(self.complete("ls", ""), [])
            elapsed = time.monotonic() - t0
            self.assertLess(elapsed, 10, "two completions against a silent mount")
            self.assertGreater(elapsed, 3, "both completions waited for the silent socket")
        finally:
            srv.close()
            os.unlink(path)


if __name__ == "__main__":
    unittest.main()
