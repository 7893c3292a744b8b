"""What `modelfs --help` and `modelfs CMD --help` say, and what packaging/modelfs.1 says, as
data: for the tests that keep the man page and the bash completion in step with the program."""

import os
import re
import subprocess

from mfs import BIN, SOURCE

MAN_PAGE = os.path.join(SOURCE, "packaging", "modelfs.1")
COMPLETION = os.path.join(SOURCE, "packaging", "bash-completion", "modelfs")

# "  --cache-dir TEXT   ...", "  -f,--foreground   ...", "  --cache-size TEXT=50G ...",
# "  --jobs UINT:INT in [1 - 64]=8": the names, then a type when the option takes a value.
_HELP_OPTION = re.compile(r"^\s+(-{1,2}[A-Za-z][\w-]*(?:,-{1,2}[A-Za-z][\w-]*)*)"
                          r"( [A-Z][A-Z:]*)?(?=[\s=]|$)")


def help_text(*args):
    r = subprocess.run([BIN, *args, "--help"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"modelfs {' '.join(args)} --help exited {r.returncode}: {r.stderr}")
    return r.stdout


def help_options(text):
    """{option: takes_value} of one --help text (every option group)."""
    out = {}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Options:")
    for line in lines[start:]:
        m = _HELP_OPTION.match(line)
        if m:
            for name in m.group(1).split(","):
                out[name] = m.group(2) is not None
    return out


def help_commands(text):
    """The subcommands `modelfs --help` lists, in order."""
    lines = text.splitlines()
    start = lines.index("Subcommands:")
    return [m.group(1) for line in lines[start + 1:] if (m := re.match(r"^  ([a-z]+)\s", line))]


def help_exit_codes(text):
    """{code: word} from the "Exit codes: 0 ok, 1 error, ..." lines of `modelfs --help`."""
    tail = " ".join(text[text.index("Exit codes:") + len("Exit codes:"):].split())
    return {int(code): word.strip() for code, word in
            re.findall(r"(\d+) ([a-z ]+?)[,.]", tail[:tail.index(".") + 1])}


# ---- the man page -------------------------------------------------------------------------

_ESCAPES = [(r"\-", "-"), (r"\&", ""), (r"\(aq", "'"), (r"\~", " "), (r"\e", "\\"),
            (r"\fB", ""), (r"\fI", ""), (r"\fR", ""), (r"\fP", "")]


def roff_args(rest):
    """The arguments of a macro line: split at spaces, "..." quotes one ("" is a quote)."""
    args, cur, quoted, i = [], None, False, 0
    while i < len(rest):
        c = rest[i]
        if quoted:
            if c == '"' and rest[i + 1:i + 2] == '"':
                cur += '"'
                i += 1
            elif c == '"':
                quoted = False
            else:
                cur += c
        elif c == " ":
            if cur is not None:
                args.append(cur)
            cur = None
        elif c == '"' and cur is None:
            cur, quoted = "", True
        else:
            cur = (cur or "") + c
        i += 1
    if cur is not None:
        args.append(cur)
    return args


def roff_text(line):
    """One line of roff as the words it prints: font macros and escapes removed; other
    requests and macros (.TP, .PP, .nf, ...) print nothing."""
    if line.startswith("."):
        macro, _, rest = line[1:].partition(" ")
        if macro in ("B", "I", "SH", "SS"):
            line = " ".join(roff_args(rest))
        elif macro in ("BR", "RB", "BI", "IB", "IR", "RI"):
            line = "".join(roff_args(rest))  # alternating fonts, no space between
        else:
            return ""
    for esc, plain in _ESCAPES:
        line = line.replace(esc, plain)
    return line


class ManSection:
    def __init__(self, title):
        self.title = title
        self.lines = []

    def tags(self):
        """The printed text of every .TP tag (the line after .TP), in order."""
        return [roff_text(self.lines[i + 1]) for i, line in enumerate(self.lines[:-1])
                if line == ".TP"]

    def text(self):
        return " ".join(t for t in (roff_text(line) for line in self.lines) if t)

    def options(self):
        """{option: takes_value} of the tags: a tag with a word that is not an option (DIR,
        SIZE, on|off) documents an option that takes a value."""
        out = {}
        for tag in self.tags():
            words = tag.replace(",", " , ").split()
            names = [w for w in words if re.fullmatch(r"-{1,2}[A-Za-z][\w-]*", w)]
            others = [w for w in words if w not in names and w != ","]
            for name in names:
                out[name] = bool(others)
        return out


def man_page(path=MAN_PAGE):
    """(TH words, {SH title: ManSection}, {command: ManSection} of the .SS under COMMANDS)."""
    with open(path) as f:
        lines = f.read().splitlines()
    th, sections, commands = None, {}, {}
    current = None
    in_commands = False
    for line in lines:
        if line.startswith('.\\"'):
            continue
        if line.startswith(".TH "):
            th = roff_args(line[4:])
        elif line.startswith(".SH "):
            current = ManSection(roff_text(line))
            sections[current.title] = current
            in_commands = current.title == "COMMANDS"
        elif line.startswith(".SS ") and in_commands:
            title = roff_text(line)
            words = title.split()
            if len(words) < 2 or words[0] != "modelfs":
                raise AssertionError(f"command section '{title}' is not titled 'modelfs CMD ...'")
            current = ManSection(title)
            commands[words[1]] = current
        elif current is not None:
            current.lines.append(line)
    return th, sections, commands
