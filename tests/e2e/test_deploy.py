"""Deploying on a shared machine with the files in packaging/: the systemd unit, the fstab line
through the mount helper, and the default config, against the hub simulator.

The unit. When systemd is not PID 1 (containers, CI VMs) the unit cannot be started by
systemd, so this test runs it as systemd would: it parses packaging/modelfs.service and runs
its ExecStartPre/ExecStart/ExecStartPost/ExecReload/ExecStopPost lines with systemd's rules
(prefixes "+" and "-", ${VAR}/$VAR/$$ expansion, Environment=), the main process as User=/
Group= with their groups, CapabilityBoundingSet=, UMask= and LimitNOFILE=, output to a
"journal" file named by JOURNAL_STREAM, stop as KillMode=mixed + KillSignal= +
TimeoutStopSec=, then ExecStopPost=. Installed paths map to the tree (/usr/bin/modelfs is the
build's binary, /usr/libexec/modelfs/... is packaging/...), RuntimeDirectory= is made under the
test's temp dir instead of /run, and a drop-in sets MODELFS_MOUNTPOINT and MODELFS_CONFIG to
temp paths. Directives only systemd can apply (DevicePolicy=, DeviceAllow=, ordering) are
checked offline by packaging/test-install.sh with systemd-analyze verify. A directive the
emulation does not know fails the test, so the unit and this file cannot drift apart.

The fstab line goes through the real mount(8): the helper is installed as
/sbin/mount.fuse.modelfs for the test (and removed after), and `mount -T FSTAB MOUNTPOINT`
reads a temp fstab holding the issue's line.

The machine is set up like a Debian server with the package (and put back afterwards): the
users modelfs, mfs-user1 and mfs-user2 are created if missing, /etc/fuse.conf gets
user_allow_other, and /dev/fuse is made 0666 if it is not (udev does that on a normal system).
Needs root.
"""

import ctypes
import os
import pwd
import grp
import json
import re
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest
import uuid

from mfs import BASIC_TOKEN, BIN, FULL_TOKEN, ORG, SOURCE, HubSim, is_mounted, manifest

PKG = os.path.join(SOURCE, "packaging")
UNIT_FILE = os.path.join(PKG, "modelfs.service")
MOUNT_HELPER = os.path.join(PKG, "mount.fuse.modelfs")
SERVICE_HELPER = os.path.join(PKG, "modelfs-service-helper")
DEFAULT_CONF = os.path.join(PKG, "modelfs.conf")
# Where build-deb.sh installs each file of the tree.
INSTALLED = {"/usr/bin/modelfs": BIN,
             "/usr/libexec/modelfs/modelfs-service-helper": SERVICE_HELPER}
SERVICE_USER = "modelfs"
USERS = ("mfs-user1", "mfs-user2")
MODEL = ("tiny-llama-GGUF", "model.gguf")

# Contract keys of modelfs.conf, with the defaults the config file must state.
CONF_DEFAULTS = {"cache_dir": "/var/cache/modelfs", "cache_size": "100G",
                 "endpoint": "https://huggingface.co", "token_file": "/etc/modelfs/token",
                 "admin_group": "modelfs", "allow_other": "true", "log_level": "info",
                 "control_socket": "/run/modelfs/control.sock", "metrics": None, "allow": None,
                 "deny": None, "refuse_gated": "false", "revision_ttl": None,
                 "read_timeout": None}


def log(msg):
    print("  [deploy] " + msg, flush=True)


def mount_help():
    return subprocess.run([BIN, "mount", "--help"], capture_output=True, text=True,
                          timeout=10).stdout




def read_conf(path):
    """key -> value of the `key = value` lines (a # starts a comment, as modelfs reads it)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "=" not in line:
                continue
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def write_conf(path, overrides):
    """packaging/modelfs.conf with some keys set otherwise, as an admin would edit it."""
    lines, seen = [], set()
    with open(DEFAULT_CONF) as f:
        for line in f.read().splitlines():
            k = line.partition("=")[0].strip()
            if "=" in line and not line.lstrip().startswith("#") and k in overrides:
                line = f"{k} = {overrides[k]}"
                seen.add(k)
            lines.append(line)
    lines += [f"{k} = {v}" for k, v in overrides.items() if k not in seen]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def users_run(user, argv):
    """argv as USER (uid, gid and groups), like a login of that user would be."""
    return ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}",
            "--init-groups", "--", *argv]


def mount_entry(mnt):
    mnt = os.path.realpath(mnt)
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[1] == mnt:
                return parts
    return None


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def parse_seconds(v):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|ms)?", v.strip())
    if not m:
        raise AssertionError(f"cannot read the time span '{v}'")
    n = int(m.group(1))
    return {"min": n * 60, "ms": n / 1000}.get(m.group(2), n)


class Unit:
    """A unit file read with systemd's syntax (sections, continuation lines, list resets)."""

    # What the emulation applies, what only systemd can apply, and what would break FUSE.
    EMULATED = {"Type", "User", "Group", "Environment", "ExecStartPre", "ExecStart",
                "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost", "KillMode",
                "KillSignal", "TimeoutStartSec", "TimeoutStopSec", "Restart", "RestartSec",
                "RuntimeDirectory", "RuntimeDirectoryMode", "UMask", "LimitNOFILE",
                "CapabilityBoundingSet", "AmbientCapabilities", "SyslogIdentifier"}
    SYSTEMD_ONLY = {"DevicePolicy", "DeviceAllow"}
    UNIT_KEYS = {"Description", "Documentation", "Wants", "After", "Before", "Requires",
                 "StartLimitIntervalSec", "StartLimitBurst"}
    # Each gives the service its own mount namespace (the FUSE mount would be invisible to
    # everyone else) or sets no_new_privs (the setuid fusermount3 could not mount).
    BREAKS_FUSE = {"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                   "PrivateDevices", "PrivateMounts", "PrivateUsers", "PrivateNetwork",
                   "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem",
                   "BindPaths", "BindReadOnlyPaths", "MountFlags", "SystemCallFilter",
                   "SystemCallArchitectures", "RestrictAddressFamilies", "RestrictNamespaces",
                   "LockPersonality", "MemoryDenyWriteExecute", "RestrictRealtime",
                   "RestrictSUIDSGID", "ProtectKernelTunables", "ProtectKernelModules",
                   "ProtectKernelLogs", "ProtectClock", "ProtectControlGroups",
                   "ProtectHostname", "ProtectProc", "DynamicUser"}

    def __init__(self, path):
        self.sections = {}
        cur, buf = None, ""
        with open(path) as f:
            for raw in f.read().splitlines():
                line = raw.strip()
                if not buf and (not line or line[0] in "#;"):
                    continue
                if line.endswith("\\"):
                    buf += line[:-1] + " "
                    continue
                line, buf = buf + line, ""
                if line.startswith("[") and line.endswith("]"):
                    cur = self.sections.setdefault(line[1:-1], [])
                    continue
                if cur is None or "=" not in line:
                    raise AssertionError(f"{path}: cannot parse '{raw}'")
                k, _, v = line.partition("=")
                cur.append((k.strip(), v.strip()))

    def values(self, key, section="Service"):
        out = []
        for k, v in self.sections.get(section, []):
            if k == key:
                out = [] if v == "" else out + [v]  # an empty assignment resets a list
        return out

    def get(self, key, default=None, section="Service"):
        v = self.values(key, section)
        return v[-1] if v else default

    def check_known(self):
        for k, _ in self.sections.get("Service", []):
            if k in self.BREAKS_FUSE:
                raise AssertionError(f"{k}= in the unit breaks FUSE mounts (see the unit's comments)")
            if k not in self.EMULATED | self.SYSTEMD_ONLY:
                raise AssertionError(f"[Service] {k}= is not known to this test's emulation; teach it")
        for k, _ in self.sections.get("Unit", []):
            if k not in self.UNIT_KEYS:
                raise AssertionError(f"[Unit] {k}= is not known to this test's emulation; teach it")


def split_command(value, env):
    """An Exec line as systemd reads it: (prefixes, argv)."""
    prefixes = ""
    while value and value[0] in "-@:+!":
        prefixes += value[0]
        value = value[1:]
    if "@" in prefixes or ":" in prefixes or "!" in prefixes:
        raise AssertionError(f"prefixes {prefixes} are not emulated")
    words, i = [], 0
    while i < len(value):
        while i < len(value) and value[i].isspace():
            i += 1
        if i >= len(value):
            break
        word, quoted = "", False
        while i < len(value) and not value[i].isspace():
            c = value[i]
            if c in "\"'":
                end = value.index(c, i + 1)
                word += value[i + 1:end].replace("\\" + c, c)
                quoted, i = True, end + 1
            elif c == "\\" and i + 1 < len(value):
                word, i = word + value[i + 1], i + 2
            else:
                word, i = word + c, i + 1
        words.append((word, quoted))
    argv = []
    for word, quoted in words:
        if "%" in word.replace("%%", ""):
            raise AssertionError(f"specifier in '{word}' is not emulated")
        word = word.replace("%%", "%")
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m and not quoted:  # $VAR as a word: split at whitespace, zero or more words
            argv += env.get(m.group(1), "").split()
            continue
        word = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda x: env.get(x.group(1), ""), word)
        argv.append(word.replace("$$", "$"))
    return prefixes, argv


class EmulatedService:
    """Runs a unit as systemd would (see the module docstring for what is and is not emulated)."""

    def __init__(self, unit, dropin_env, runtime_root, journal_path):
        self.unit = unit
        unit.check_known()
        if unit.get("Type", "simple") != "simple":
            raise AssertionError("only Type=simple is emulated")
        self.user = unit.get("User")
        self.group = unit.get("Group", self.user)
        pw = pwd.getpwnam(self.user)
        self.uid, self.gid = pw.pw_uid, grp.getgrnam(self.group).gr_gid
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": pw.pw_dir, "USER": self.user, "LOGNAME": self.user,
                    "SHELL": pw.pw_shell, "INVOCATION_ID": uuid.uuid4().hex}
        for assignment in unit.values("Environment"):
            for item in shlex.split(assignment):
                k, _, v = item.partition("=")
                self.env[k] = v
        self.env.update(dropin_env)  # a drop-in's Environment= comes after the unit's
        self.runtime_dirs = [os.path.join(runtime_root, d) for d in unit.values("RuntimeDirectory")
                             for d in d.split()]
        if self.runtime_dirs:
            self.env["RUNTIME_DIRECTORY"] = ":".join(self.runtime_dirs)
        self.journal_path = journal_path
        self.journal = open(journal_path, "ab")
        st = os.fstat(self.journal.fileno())
        self.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        self.main = None
        caps = unit.get("CapabilityBoundingSet", "")
        if caps.startswith("~"):
            raise AssertionError("inverted CapabilityBoundingSet= is not emulated")
        self.bounding = "-all" + "".join(",+" + c.lower().removeprefix("cap_") for c in caps.split())
        if unit.get("AmbientCapabilities"):
            raise AssertionError("AmbientCapabilities= is not emulated")
        self.umask = int(unit.get("UMask", "0022"), 8)
        self.nofile = int(unit.get("LimitNOFILE", "0")) or None
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if self.nofile and hard != resource.RLIM_INFINITY and self.nofile > hard:
            # systemd (PID 1) may raise it; this process may lack CAP_SYS_RESOURCE.
            log(f"LimitNOFILE={self.nofile} is above this process's hard limit {hard}; using {hard}")
            self.nofile = hard
        self.start_timeout = parse_seconds(unit.get("TimeoutStartSec", "90"))
        self.stop_timeout = parse_seconds(unit.get("TimeoutStopSec", "90"))

    def _preexec(self):
        os.umask(self.umask)
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _argv(self, line, extra_env=None):
        env = dict(self.env, **(extra_env or {}))
        prefixes, argv = split_command(line, env)
        argv[0] = INSTALLED.get(argv[0], argv[0])
        if not os.access(argv[0], os.X_OK):
            raise AssertionError(f"{argv[0]} is not executable")
        if "+" not in prefixes:  # privileges of User=/Group=, capabilities bounded
            argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                    f"--bounding-set={self.bounding}", "--inh-caps=-all", "--", *argv]
        return prefixes, argv, env

    def _control(self, key, timeout, extra_env=None):
        for line in self.unit.values(key):
            prefixes, argv, env = self._argv(line, extra_env)
            log(f"{key}: {shlex.join(argv)}")
            self.journal.flush()
            try:
                r = subprocess.run(argv, stdout=self.journal, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=self._preexec, timeout=timeout)
                rc = r.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if rc != 0 and "-" not in prefixes:
                return f"{key} failed ({rc}): {line}"
        return None

    def start(self):
        for d in self.runtime_dirs:
            os.makedirs(d, exist_ok=True)
            os.chown(d, self.uid, self.gid)
            os.chmod(d, int(self.unit.get("RuntimeDirectoryMode", "0755"), 8))
        err = self._control("ExecStartPre", self.start_timeout)
        if err:
            self._control("ExecStopPost", self.stop_timeout)
            raise AssertionError(err + "\n" + self.journal_text())
        _, argv, env = self._argv(self.unit.get("ExecStart"))
        log(f"ExecStart: {shlex.join(argv)}")
        self.main = subprocess.Popen(argv, stdout=self.journal, stderr=subprocess.STDOUT,
                                     env=env, preexec_fn=self._preexec, start_new_session=True)
        err = self._control("ExecStartPost", self.start_timeout, {"MAINPID": str(self.main.pid)})
        if err:
            main_status = self.main.poll()
            self.stop()
            raise AssertionError(f"{err}\nmain process status: {main_status}\n" + self.journal_text())

    def reload(self):
        err = self._control("ExecReload", self.start_timeout, {"MAINPID": str(self.main.pid)})
        if err:
            raise AssertionError(err)

    def stop(self):
        """Returns (main's exit status, seconds it took to exit after the signal)."""
        t0 = time.time()
        if self.main and self.main.poll() is None:
            err = self._control("ExecStop", self.stop_timeout, {"MAINPID": str(self.main.pid)})
            if err:
                log(err)
            if self.unit.get("KillMode", "control-group") not in ("mixed", "control-group"):
                raise AssertionError("only KillMode=mixed and control-group are emulated")
            sig = getattr(signal, self.unit.get("KillSignal", "SIGTERM"))
            log(f"stop: {sig.name} to the main process {self.main.pid}")
            self.main.send_signal(sig)
            try:
                self.main.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log("stop: TimeoutStopSec passed, SIGKILL")
                self.main.kill()
                self.main.wait(10)
        seconds = time.time() - t0
        self._control("ExecStopPost", self.stop_timeout)
        for d in self.runtime_dirs:
            shutil.rmtree(d, ignore_errors=True)
        return (self.main.returncode if self.main else None), seconds

    def crash(self):
        """SIGKILL to the main process, then what systemd does next: ExecStopPost."""
        self.main.kill()
        self.main.wait(10)
        self._control("ExecStopPost", self.stop_timeout)
        for d in self.runtime_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def restart_after_crash(self):
        """Restart= after a death by SIGKILL; returns whether the unit asks for it."""
        if self.unit.get("Restart", "no") not in ("on-failure", "on-abnormal", "always"):
            return False
        time.sleep(min(parse_seconds(self.unit.get("RestartSec", "0")), 0.5))  # shortened
        self.start()
        return True

    def journal_text(self):
        self.journal.flush()
        with open(self.journal_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self):
        if self.main and self.main.poll() is None:
            self.main.kill()
            self.main.wait(10)
        self.journal.close()


class Deploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            msg = "needs root (useradd, mount(8), a system user's mount)"
            print("SKIP test_deploy: " + msg)
            raise unittest.SkipTest(msg)
        cls.m = manifest()
        cls.undo = []
        try:
            cls._set_up_machine()
            cls.hub = HubSim()
            cls.undo.append(cls.hub.close)
        except BaseException:
            cls.tearDownClass()
            raise
        with open("/proc/1/comm") as f:
            pid1 = f.read().strip()
        log(f"PID 1 is {pid1!r}: " + ("systemd is running, but the unit is emulated anyway so "
            "the test does not touch the machine's units" if pid1 == "systemd" else
            "no systemd, so the unit is run as systemd would run it (see the docstring)"))
        if "--config" not in mount_help():
            raise AssertionError("modelfs mount has no --config: the unit needs it")

    @classmethod
    def _set_up_machine(cls):
        # Becomes the parent of the fstab mount's daemon (forked by mount(8)'s helper), so
        # its exit status can be read.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        cls.created_users = []
        for name, system in ((SERVICE_USER, True), *((u, False) for u in USERS)):
            try:
                pwd.getpwnam(name)
            except KeyError:
                cmd = ["useradd", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
                cmd += ["--system", "--home-dir", "/nonexistent"] if system else []
                subprocess.run([*cmd, name], check=True, timeout=30)
                cls.created_users.append(name)
                log(f"created user {name}")
        cls.undo.append(cls._delete_users)
        with open("/etc/fuse.conf", "rb") as f:
            fuse_conf = f.read()
        if not re.search(rb"^\s*user_allow_other\s*$", fuse_conf, re.M):
            with open("/etc/fuse.conf", "ab") as f:
                f.write(b"\nuser_allow_other\n")
            log("added user_allow_other to /etc/fuse.conf (the package's postinst does)")
            def restore_fuse_conf():
                with open("/etc/fuse.conf", "wb") as f:
                    f.write(fuse_conf)
            cls.undo.append(restore_fuse_conf)
        mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
        if mode & 0o006 != 0o006:
            os.chmod("/dev/fuse", 0o666)
            log(f"/dev/fuse was {mode:o} (no udev here); made it 0666 as udev does")
            cls.undo.append(lambda: os.chmod("/dev/fuse", mode))
        # mount(8) runs /sbin/mount.fuse.<subtype>; on Debian 12 /sbin is /usr/sbin.
        cls.helper_path = os.path.join(os.path.realpath("/sbin"), "mount.fuse.modelfs")
        backup = None
        if os.path.lexists(cls.helper_path):
            backup = cls.helper_path + ".mfs-test-backup"
            os.rename(cls.helper_path, backup)
        shutil.copy(MOUNT_HELPER, cls.helper_path)
        os.chmod(cls.helper_path, 0o755)

        def restore_helper():
            os.unlink(cls.helper_path)
            if backup:
                os.rename(backup, cls.helper_path)
        cls.undo.append(restore_helper)
        log(f"installed {cls.helper_path} from packaging/")

    @classmethod
    def _delete_users(cls):
        for name in reversed(cls.created_users):
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True, timeout=10)
            subprocess.run(["userdel", name], capture_output=True, timeout=30)

    @classmethod
    def tearDownClass(cls):
        for fn in reversed(cls.undo):
            try:
                fn()
            except Exception as e:  # keep undoing the rest
                log(f"cleanup step failed: {e}")

    def setUp(self):
        self.hub.reset()
        self.root = tempfile.mkdtemp(prefix="mfs-deploy-")
        os.chmod(self.root, 0o755)  # the service user and the test users walk through it
        self.addCleanup(shutil.rmtree, self.root, True)
        self.mnt = os.path.join(self.root, "mnt")
        self.cache = os.path.join(self.root, "cache")
        self.sock = os.path.join(self.root, "run", "modelfs", "control.sock")
        self.token = os.path.join(self.root, "token")
        with open(self.token, "w") as f:
            f.write(FULL_TOKEN + "\n")
        os.chmod(self.token, 0o644)  # as an admin might leave it; the service fixes it
        self.addCleanup(self._unmount_leftovers)

    def _unmount_leftovers(self):
        if mount_entry(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], capture_output=True, timeout=20)

    # Helpers

    def model(self, name=MODEL[0], path=MODEL[1]):
        r = self.m["repos"][f"{ORG}/{name}"]
        f = [f for f in r["commits"][r["branches"]["main"]]["files"] if f["path"] == path][0]
        return os.path.join(self.mnt, ORG, name, path), f

    def service(self, conf_overrides=None):
        conf = os.path.join(self.root, "modelfs.conf")
        write_conf(conf, {"cache_dir": self.cache, "cache_size": "2G", "endpoint": self.hub.url,
                          "token_file": self.token, "control_socket": self.sock,
                          **(conf_overrides or {})})
        unit = Unit(UNIT_FILE)
        runtime_dirs = unit.values("RuntimeDirectory")
        svc = EmulatedService(
            unit, {"MODELFS_MOUNTPOINT": self.mnt, "MODELFS_CONFIG": conf},
            os.path.join(self.root, "run"), os.path.join(self.root, "journal.log"))
        self.assertEqual(runtime_dirs, ["modelfs"])
        self.addCleanup(svc.close)
        return svc

    def assert_mount_is_shared(self, mnt):
        entry = mount_entry(mnt)
        self.assertIsNotNone(entry, f"{mnt} is not mounted")
        self.assertEqual(entry[2], "fuse.modelfs")
        opts = entry[3].split(",")
        self.assertIn("allow_other", opts)
        self.assertIn("default_permissions", opts)
        self.assertIn(f"user_id={pwd.getpwnam(SERVICE_USER).pw_uid}", opts,
                      "the mount must be owned by the service user")

    def assert_private_state(self):
        uid = pwd.getpwnam(SERVICE_USER).pw_uid
        st = os.stat(self.cache)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (uid, 0o700), "cache dir")
        st = os.stat(self.token)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (uid, 0o600), "token file")
        for path in (self.token, os.path.join(self.cache, "index.sqlite")):
            r = subprocess.run(users_run(USERS[0], ["cat", path]), capture_output=True, timeout=10)
            self.assertNotEqual(r.returncode, 0, f"{USERS[0]} could read {path}")

    def assert_two_users_read_once(self):
        path, f = self.model()
        self.hub.reset()
        procs = [subprocess.Popen(users_run(u, ["sha256sum", path]), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for u in USERS]
        for u, p in zip(USERS, procs):
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, f"{u}: {err}")
            self.assertEqual(out.split()[0], f["sha256"], u)
        self.assertEqual(self.hub.file_bytes(f["sha256"]), f["size"],
                         "the Hub must serve the file once for both users")
        r = subprocess.run(users_run(USERS[1], ["stat", "-c", "%a %U", path]), capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.stdout.split()[0], "444")
        log(f"{USERS[0]} and {USERS[1]} read {f['path']} ({f['size']} bytes) at the same time; "
            f"the Hub served {self.hub.file_bytes(f['sha256'])} bytes of it")

    def cli(self, user, *args):
        argv = [BIN, *args, "--socket", self.sock]
        r = subprocess.run(users_run(user, argv) if user else argv, capture_output=True,
                           text=True, timeout=60)
        return r

    def assert_admin_rules(self):
        u = USERS[0]
        for args in (("gc", "--to", "0"), ("pin", f"{ORG}/edge-cases", "README.md")):
            r = self.cli(u, *args)
            self.assertEqual(r.returncode, 4, (u, args, r.stdout, r.stderr))
        r = self.cli(u, "stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        for args in (("pin", f"{ORG}/edge-cases", "README.md"), ("gc", "--to", "0")):
            r = self.cli(None, *args)
            self.assertEqual(r.returncode, 0, (args, r.stdout, r.stderr))
        log(f"{u}: gc and pin exit 4, stats 0; root: pin and gc exit 0")

    def assert_found_without_flags(self, config, how):
        """A user's `modelfs stats` with no flags reaches the machine's mount. The machine's
        config and run dir are the test's (MODELFS_CONFIG, MODELFS_RUN_DIR), not /etc and /run."""
        env = ["env", f"MODELFS_CONFIG={config}", f"MODELFS_RUN_DIR={os.path.dirname(self.sock)}",
               f"HOME={self.root}/nohome"]
        r = subprocess.run(users_run(USERS[0], [*env, BIN, "stats", "--json"]),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["cache"]["dir"], self.cache, "the machine's cache")
        self.assertIn(f"modelfs: using the mount at {self.sock} ({how})", r.stderr)
        log(f"{USERS[0]}: modelfs stats -> {r.stderr.strip()}")

    def hold_open(self, user, path):
        p = subprocess.Popen(users_run(user, ["bash", "-c", 'exec 3<"$1"; read -r -n 1 -u 3 x; '
                                              'echo open; sleep 60', "_", path]),
                             stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (p.kill(), p.wait(10), p.stdout.close()))
        self.assertEqual(p.stdout.readline().strip(), "open")
        return p

    # Tests

    def test_default_config_states_the_contract_defaults(self):
        conf = read_conf(DEFAULT_CONF)
        with open(DEFAULT_CONF) as f:
            text = f.read()
        for k, v in CONF_DEFAULTS.items():
            if v is None:
                self.assertRegex(text, rf"(?m)^#?{k} =", f"{k} is not documented")
            else:
                self.assertEqual(conf.get(k), v, k)
        self.assertIn("every local user", text.replace("\n#", ""))

    def test_unit_mounts_for_every_user_and_stops_cleanly(self):
        svc = self.service()
        t0 = time.time()
        svc.start()
        log(f"started in {time.time() - t0:.1f}s")
        self.assert_mount_is_shared(self.mnt)
        st = proc_status(svc.main.pid)
        uid = pwd.getpwnam(SERVICE_USER).pw_uid
        self.assertEqual(st["Uid"].split()[0], str(uid), "the cache runs as the service user")
        self.assertEqual(int(st["CapBnd"], 16), 1 << 21, "bounding set: CAP_SYS_ADMIN only")
        self.assertEqual(int(st["CapEff"], 16), 0)
        self.assert_private_state()
        self.assert_two_users_read_once()
        # Policy as the config says: what the token reads, every local user reads.
        priv = os.path.join(self.mnt, ORG, "private-model", "config.json")
        r = subprocess.run(users_run(USERS[0], ["cat", priv]), capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_admin_rules()
        conf = os.path.join(self.root, "modelfs.conf")
        self.assert_found_without_flags(conf, f"control_socket in {conf}")
        # Under systemd (JOURNAL_STREAM) modelfs logs "<N>message": journald adds the time.
        lines = [l for l in svc.journal_text().splitlines() if l.strip()]
        main_lines = [l for l in lines if "modelfs-service-helper" not in l]
        self.assertTrue(main_lines and all(re.match(r"<[0-7]>[^\[]", l) for l in main_lines),
                        "log lines must start with <N>:\n" + "\n".join(lines[:10]))
        holder = self.hold_open(USERS[1], self.model()[0])
        rc, seconds = svc.stop()
        log(f"stopped in {seconds:.1f}s with {USERS[1]} holding a file open: exit {rc}")
        self.assertEqual(rc, 0, svc.journal_text())
        self.assertFalse(is_mounted(self.mnt))
        self.assertLess(seconds, 10)
        holder.kill()

    def test_unit_restarts_after_a_crash_without_a_dead_mount(self):
        svc = self.service()
        svc.start()
        path, f = self.model("edge-cases", "README.md")
        with open(path, "rb") as fh:
            fh.read()
        old = svc.main.pid
        svc.crash()
        self.assertFalse(is_mounted(self.mnt), "ExecStopPost must remove the dead mount")
        self.assertTrue(svc.restart_after_crash(), "Restart= must restart after a crash")
        self.assertNotEqual(svc.main.pid, old)
        self.assert_mount_is_shared(self.mnt)
        r = subprocess.run(users_run(USERS[0], ["cat", path]), capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        log("SIGKILL to the main process: ExecStopPost removed the dead mount, the restart mounted again")
        rc, _ = svc.stop()
        self.assertEqual(rc, 0)
        self.assertFalse(is_mounted(self.mnt))

    def test_unit_reload_rereads_log_level_and_token(self):
        with open(self.token, "w") as f:
            f.write(BASIC_TOKEN + "\n")
        svc = self.service({"log_level": "warn"})
        svc.start()
        # A gated repo: the basic token is not approved for it (EACCES, never cached as missing).
        gated = os.path.join(self.mnt, ORG, "gated-model", "config.json")
        r = subprocess.run(users_run(USERS[0], ["cat", gated]), capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, "the basic token must not read a gated repo")
        self.assertEqual(self.cli(None, "stats").returncode, 0)
        self.assertNotIn("asks stats", svc.journal_text(), "log_level = warn hides info lines")
        conf = os.path.join(self.root, "modelfs.conf")
        write_conf(conf, {**read_conf(conf), "log_level": "info"})
        with open(self.token, "w") as f:
            f.write(FULL_TOKEN + "\n")
        before = len(svc.journal_text())
        pid = svc.main.pid
        svc.reload()
        deadline = time.time() + 10
        while time.time() < deadline:
            r = subprocess.run(users_run(USERS[0], ["cat", gated]), capture_output=True, timeout=30)
            if r.returncode == 0:
                break
            time.sleep(0.5)
        self.assertEqual(r.returncode, 0, "after reload the new token must be used:\n" +
                         r.stderr.decode() + svc.journal_text()[before:])
        self.assertEqual(self.cli(None, "stats").returncode, 0)
        after = svc.journal_text()[before:]
        self.assertRegex(after, r"(?m)^<6>reloaded: log level info")
        self.assertRegex(after, r"(?m)^<6>control: uid 0 asks stats", "info lines after the reload")
        self.assertEqual(svc.main.pid, pid)
        self.assertTrue(is_mounted(self.mnt))
        log("reload: log_level warn -> info and the new token took effect, same process, still mounted")
        rc, _ = svc.stop()
        self.assertEqual(rc, 0)

    def fstab_options(self):
        config = os.path.join(self.root, "modelfs.conf")
        write_conf(config, {"endpoint": self.hub.url, "token_file": self.token})
        return (f"allow_other,cache_dir={self.cache},cache_size=500G,_netdev,endpoint={self.hub.url},"
                f"token_file={self.token},control_socket={self.sock},config={config}")

    def mount_env(self):
        return dict(os.environ, MODELFS_BIN=BIN, MODELFS_SERVICE_HELPER=SERVICE_HELPER)

    def daemon_log(self):
        try:
            with open(os.path.join(self.cache, "modelfs.log")) as f:
                return f.read()
        except OSError:
            return ""

    def daemon_of(self, mnt):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 2 and argv[1] == b"mount" and argv[2] == mnt.encode() \
                    and os.path.basename(argv[0]) == b"modelfs":
                return int(pid)
        return None

    def wait_exit(self, pid, timeout=20):
        """Exit status of the daemon (reparented to this process, a child subreaper)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        raise AssertionError(f"pid {pid} did not exit in {timeout}s")

    def test_fstab_line_mounts_through_the_helper(self):
        os.mkdir(self.mnt)
        fstab = os.path.join(self.root, "fstab")
        line = f"modelfs  {self.mnt}  fuse.modelfs  {self.fstab_options()}  0 0\n"
        with open(fstab, "w") as f:
            f.write("# a test fstab\n" + line)
        log("fstab: " + line.strip())
        r = subprocess.run(["mount", "-T", fstab, self.mnt], capture_output=True, text=True,
                           env=self.mount_env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon_log())
        self.assert_mount_is_shared(self.mnt)
        pid = self.daemon_of(self.mnt)
        self.assertIsNotNone(pid)
        self.assertEqual(proc_status(pid)["Uid"].split()[0], str(pwd.getpwnam(SERVICE_USER).pw_uid))
        self.assert_private_state()
        self.assert_two_users_read_once()
        self.assert_admin_rules()
        self.assert_found_without_flags("/nonexistent/modelfs.conf", "the machine's mount")
        # A job still reading a model keeps the mount: umount refuses, as for any filesystem.
        holder = self.hold_open(USERS[0], self.model()[0])
        r = subprocess.run(["umount", self.mnt], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, "umount must refuse while a file is open")
        self.assertTrue(is_mounted(self.mnt))
        holder.kill()
        holder.wait(10)
        r = subprocess.run(["umount", self.mnt], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.wait_exit(pid), 0)
        self.assertFalse(is_mounted(self.mnt))
        log("umount: unmounted, the daemon exited 0")

    def test_mount_t_with_options_and_setuid_root(self):
        os.mkdir(self.mnt)
        opts = self.fstab_options().replace(f"cache_dir={self.cache}", f"cache_dir={self.cache},setuid=root")
        r = subprocess.run(["mount", "-t", "fuse.modelfs", "modelfs", self.mnt, "-o", opts],
                           capture_output=True, text=True, env=self.mount_env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        entry = mount_entry(self.mnt)
        self.assertIn("user_id=0", entry[3].split(","))
        self.assertIn("allow_other", entry[3].split(","))
        pid = self.daemon_of(self.mnt)
        path, f = self.model("edge-cases", "README.md")
        r = subprocess.run(users_run(USERS[1], ["cat", path]), capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), f["size"])
        r = subprocess.run(["umount", self.mnt], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.wait_exit(pid), 0)
        # Bad options fail the mount with mount(8)'s failure code and a clear message.
        r = subprocess.run(["mount", "-t", "fuse.modelfs", "modelfs", self.mnt, "-o", "cache_size"],
                           capture_output=True, text=True, env=self.mount_env(), timeout=30)
        self.assertEqual(r.returncode, 32)
        self.assertIn("cache_size needs a value", r.stderr)
        self.assertFalse(is_mounted(self.mnt))


if __name__ == "__main__":
    unittest.main()
