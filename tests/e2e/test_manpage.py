"""packaging/modelfs.1 says what the program does: it renders without warnings, and its commands,
options, exit codes, environment, mount keys and version are those of `modelfs --help`,
`modelfs CMD --help` and the sources. Any difference fails here, in either direction."""

import glob
import os
import re
import subprocess
import tempfile
import unittest

import helpdoc
from mfs import BIN, SOURCE

CACHE_OPTIONS = "CACHE COMMAND OPTIONS"
MOUNT_KEYS = "MOUNT OPTIONS AND THE CONFIG FILE"
HELP = {"-h", "--help"}  # every command has them; the man page says so once, under OPTIONS


class ManPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.th, cls.sections, cls.commands = helpdoc.man_page()
        cls.top_help = helpdoc.help_text()
        cls.help_commands = helpdoc.help_commands(cls.top_help)

    def documented_options(self, cmd):
        """{option: takes_value} the man page gives command CMD: its own section, plus the
        cache command options when the section refers to them."""
        section = self.commands[cmd]
        opts = dict(section.options())
        if CACHE_OPTIONS in section.text():
            common = self.sections[CACHE_OPTIONS].options()
            self.assertFalse(set(opts) & set(common),
                             f"{cmd}: options listed twice, in its section and in {CACHE_OPTIONS}")
            opts.update(common)
        return opts

    def test_renders_without_warnings(self):
        r = subprocess.run(["groff", "-man", "-ww", "-z", helpdoc.MAN_PAGE], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = subprocess.run(["man", "--warnings", "-l", "-P", "cat", helpdoc.MAN_PAGE],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "MANWIDTH": "80"})
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS",
                        "ENVIRONMENT", "FILES", "EXAMPLES"):
            self.assertIn("\n" + heading + "\n", r.stdout)

    def test_every_command_has_a_section_and_every_section_a_command(self):
        self.assertGreaterEqual(len(self.help_commands), 11, self.top_help)
        self.assertEqual(list(self.commands), self.help_commands)

    def test_options_of_every_command_match_its_help(self):
        for cmd in self.help_commands:
            with self.subTest(cmd=cmd):
                in_help = helpdoc.help_options(helpdoc.help_text(cmd))
                self.assertTrue(HELP <= set(in_help), in_help)
                for name in HELP:
                    del in_help[name]
                in_man = self.documented_options(cmd)
                self.assertEqual(sorted(set(in_help) - set(in_man)), [],
                                 f"in `modelfs {cmd} --help`, not in its man page section")
                self.assertEqual(sorted(set(in_man) - set(in_help)), [],
                                 f"in the man page for {cmd}, not in `modelfs {cmd} --help`")
                wrong = {o for o in in_help if in_help[o] != in_man[o]}
                self.assertEqual(sorted(wrong), [],
                                 "a value in one of --help and the man page, not in the other")

    def test_top_level_options_match(self):
        self.assertEqual(self.sections["OPTIONS"].options(),
                         helpdoc.help_options(self.top_help))

    def test_exit_codes_match(self):
        in_help = helpdoc.help_exit_codes(self.top_help)
        self.assertIn(130, in_help)
        tags = self.sections["EXIT STATUS"].tags()
        self.assertEqual(sorted(int(t) for t in tags), sorted(in_help))
        # Each code's text starts with the word --help gives it.
        text = self.sections["EXIT STATUS"].text()
        for code, word in in_help.items():
            self.assertRegex(text, rf"(^|\s){code} {word}\b", f"exit code {code}")

    def test_environment_is_what_the_code_reads(self):
        read = set()
        for module in ("cli", "fs", "fetch", "index"):
            paths = glob.glob(os.path.join(SOURCE, module, "**", "*.cc"), recursive=True)
            paths += glob.glob(os.path.join(SOURCE, module, "**", "*.h"), recursive=True)
            for path in paths:
                with open(path, errors="replace") as f:
                    read |= set(re.findall(r'\b(?:getenv|Env)\("([A-Z][A-Z0-9_]*)"\)', f.read()))
        self.assertIn("HF_TOKEN", read)
        self.assertEqual(sorted(self.sections["ENVIRONMENT"].tags()), sorted(read))

    def test_version_matches(self):
        r = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=10)
        self.assertEqual(self.th[3], r.stdout.strip(), ".TH says another version")

    def test_files_and_examples(self):
        files = self.sections["FILES"].tags()
        for f in ("/etc/modelfs/modelfs.conf", "/run/modelfs/control.sock", "~/.cache/modelfs/"):
            self.assertIn(f, files)
        examples = self.sections["EXAMPLES"].text()
        self.assertIn("/mnt/models/org/name@v1.0/", examples)
        # Every `modelfs CMD` in the examples is a command.
        for cmd in re.findall(r"\bmodelfs ([a-z]+)\b", examples):
            self.assertIn(cmd, self.help_commands, cmd)

    def test_mount_keys_are_the_keys_modelfs_accepts(self):
        keys = [re.match(r"([a-z_]+)=", t).group(1) for t in self.sections[MOUNT_KEYS].tags()]
        # The keys the code accepts (cli/config.cc IsMountKey).
        with open(os.path.join(SOURCE, "cli", "config.cc")) as f:
            code = f.read()
        body = code[code.index("bool IsMountKey"):]
        accepted = re.findall(r'"([a-z_]+)"', body[:body.index("};")])
        self.assertGreater(len(accepted), 10)
        self.assertEqual(sorted(keys), sorted(accepted))
        # And modelfs takes each documented key in a config file ("As --flag": a mount flag).
        mount_opts = helpdoc.help_options(helpdoc.help_text("mount"))
        text = self.sections[MOUNT_KEYS].text()
        for flag in re.findall(r"\bAs (--[a-z-]+)", text):
            self.assertIn(flag, mount_opts)
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, "modelfs.conf")

            def mount_with(line):
                with open(conf, "w") as f:
                    f.write(line + "\n")
                return subprocess.run([BIN, "mount", os.path.join(tmp, "missing"), "--config",
                                       conf], capture_output=True, text=True, timeout=10)

            r = mount_with("no_such_key = 1")
            self.assertIn("unknown key 'no_such_key'", r.stderr)  # the check below can fail
            for tag in self.sections[MOUNT_KEYS].tags():
                key, _, kind = tag.partition("=")
                value = {"BOOL": "true", "S": "1", "N": "1"}.get(kind, "on")
                r = mount_with(f"{key} = {value}")
                self.assertEqual(r.returncode, 2, (key, r.stderr))
                self.assertIn("is not a directory", r.stderr, key)  # the config was taken


if __name__ == "__main__":
    unittest.main()
