"""The tutorial's own text: its code blocks, and whether the scenario still matches them.

`scenarios/tutorial.md` is a copy of the tutorial the lab is built from. Each
step of the scenario cites the code blocks it covers (`tutorial:`), and the
scenario's `left_out:` lists the shell blocks no step covers, with a reason.
A citation is a block's number, its first line (for the reader) and the start
of the sha256 of its text (for the machine): when the tutorial changes a
command, `drift` names every step whose blocks changed, moved or went away,
and every new shell block nobody covers.

Parsing is a pure function from text to `Block`s; nothing here reads a file
or knows about machines.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

TUTORIAL = Path(__file__).resolve().parent.parent / "scenarios" / "tutorial.md"
DIGEST_LENGTH = 16
# NOTE: the classification looks at the first word of each line, nothing more.
# A block is "shell" when any of its lines starts (after an optional `$ ` prompt
# and `sudo `) with one of these commands, or when its fence names a shell
# language. Everything else (YAML, nginx configuration, directory trees, sample
# output) is "other". What this cannot decide, the scenario decides: a shell
# block must be cited by a step or listed in `left_out` with a reason.
COMMANDS = frozenset({
    "apt", "apt-get", "cat", "cd", "chmod", "cp", "curl", "dnf", "docker", "docker-compose", "echo", "exit",
    "htpasswd", "ls", "mkdir", "mv", "nano", "openssl", "pip", "pip3", "rm", "service", "systemctl", "tee",
    "touch", "update-ca-trust", "vagrant", "vi", "vim", "wget", "yum",
})
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "zsh"})
_FENCE = re.compile(r"^\s{0,3}```\s*([\w+-]*)")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")


@dataclass(frozen=True)
class Block:
    number: int  # 1-based, in the order of the file
    line: int  # 1-based line of the block's first content line
    section: str  # the nearest heading above it, without #'s
    text: str  # content lines, each without trailing spaces, joined with "\n"
    kind: str  # "shell" or "other"

    @property
    def first(self) -> str:
        """The first non-blank line: what a reader recognises the block by."""
        return next((line for line in self.text.splitlines() if line.strip()), "")

    @property
    def digest(self) -> str:
        return digest(self.text)


@dataclass(frozen=True)
class Cite:
    """A code block as the scenario cites it: number, first line, digest; `why` for `left_out`."""

    block: int
    first: str
    sha256: str
    why: str = ""


def digest(text: str) -> str:
    """The first DIGEST_LENGTH hex digits of the sha256 of a block's text: enough to see a change."""
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def block_id(block: Block) -> str:
    """Short and stable while the block is unchanged: a changed block gets another id."""
    return f"{block.number}-{block.digest}"


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order.

    A fence is a line starting with ``` (trailing spaces allowed, an optional
    language after it); the block ends at the next fence line. A block left
    open runs to the end of the text.
    """
    blocks: list[Block] = []
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            heading = _HEADING.match(lines[i])
            if heading:
                section = heading.group(1).strip().strip("#").strip()
            i += 1
            continue
        language = fence.group(1).lower()
        start = i + 1
        end = start
        while end < len(lines) and not _FENCE.match(lines[end]):
            end += 1
        content = [line.rstrip() for line in lines[start:end]]
        body = "\n".join(content)
        blocks.append(Block(number=len(blocks) + 1, line=start + 1, section=section, text=body,
                            kind=classify(body, language)))
        i = end + 1
    return blocks


def classify(text: str, language: str = "") -> str:
    """ "shell" for commands a user types, else "other" (see COMMANDS)."""
    if language:
        return "shell" if language in SHELL_LANGUAGES else "other"
    for line in text.splitlines():
        words = line.strip().split()
        if words[:1] == ["$"]:
            return "shell"
        if words[:1] == ["sudo"]:
            words = words[1:]
        if words and words[0].rstrip(";") in COMMANDS:
            return "shell"
    return "other"


class _CitingStep(Protocol):
    id: str
    tutorial: tuple[Cite, ...]


class Replacement(Protocol):
    """A fix of the text (lab.tutorial.fixes.Fix), as drift sees it: which lines it replaced, what they were."""

    block: int
    first: int
    last: int
    was: str
    step: str

    def where(self) -> str: ...


class Citations(Protocol):
    """What drift needs of a scenario (lab.model.scenario.Scenario): which blocks each step cites, and the
    lines its fixed text replaces."""

    steps: tuple[_CitingStep, ...]
    left_out: tuple[Cite, ...]
    fixes: tuple[Replacement, ...]


def stale_fix(fix: Replacement, blocks: list[Block]) -> str:
    """Why a fix no longer fits the text ("" when it does): its lines are not what it replaced."""
    if fix.block > len(blocks):
        return f"the tutorial has {len(blocks)} code blocks"
    lines = blocks[fix.block - 1].text.splitlines()
    if fix.last > len(lines):
        return f"block {fix.block} has lines 1-{len(lines)}"
    now = "\n".join(lines[fix.first - 1:fix.last])
    if now != fix.was:
        return f"the text now reads {now!r} where the fix replaced {fix.was!r}"
    return ""


def fix_drift(fixes: tuple[Replacement, ...], blocks: list[Block]) -> list[str]:
    """Each fix that no longer fits the text, named with its step: the fixed text would be wrong."""
    problems = []
    for fix in fixes:
        reason = stale_fix(fix, blocks)
        if reason:
            problems.append(f"step {fix.step!r}: the fix of {fix.where()} is stale: {reason}; read the block "
                            "again and update its entry in `fixes:`")
    return problems


def drift(scenario: Citations, text: str) -> list[str]:
    """Where the scenario and the tutorial text disagree, one message each; empty when they agree."""
    blocks = code_blocks(text)
    by_digest: dict[str, list[Block]] = {}
    for block in blocks:
        by_digest.setdefault(block.digest, []).append(block)
    problems: list[str] = []
    covered: set[int] = set()
    # A cited number counts as covered even when its text changed: that is
    # already one problem, named after the step; a second would only repeat it.
    for step in scenario.steps:
        for cite in step.tutorial:
            problems.append(_compare(cite, blocks, by_digest, f"step {step.id!r}"))
            covered.add(cite.block)
    left_out: set[int] = set()
    for cite in scenario.left_out:
        problems.append(_compare(cite, blocks, by_digest, "left_out"))
        left_out.add(cite.block)
    problems = [problem for problem in problems if problem]
    for number in sorted(covered & left_out):
        problems.append(f"block {number} is cited by a step and also listed in left_out")
    for block in blocks:
        if block.kind == "shell" and block.number not in covered | left_out:
            problems.append(f"block {block.number} (line {block.line}, {block.section!r}: {block.first!r}) "
                            f"is a shell block that no step cites and left_out does not list")
    return problems + fix_drift(getattr(scenario, "fixes", ()), blocks)


def _compare(cite: Cite, blocks: list[Block], by_digest: dict[str, list[Block]], who: str) -> str:
    where = f"{who} cites block {cite.block}"
    elsewhere = [str(b.number) for b in by_digest.get(cite.sha256, []) if b.number != cite.block]
    seen = f"; a block with its text is now number {', '.join(elsewhere)}" if elsewhere else ""
    if not 1 <= cite.block <= len(blocks):
        return f"{where} ({cite.first!r}), but the tutorial has {len(blocks)} code blocks{seen}"
    block = blocks[cite.block - 1]
    if block.digest == cite.sha256:
        if block.first == cite.first:
            return ""
        return f"{where} ({cite.first!r}), but its first line is {block.first!r}: copy the first line exactly"
    return (f"{where}: the block changed at line {block.line}: was {cite.first!r}, now {block.first!r} "
            f"(sha256 {cite.sha256} -> {block.digest}){seen}")


# --- the text's commands as the lab runs them: placeholders, and commands that wait for input ----

# A placeholder is replaced only as a whole token: where it starts (ends) with one of these
# characters, the character before (after) it must not be one too. So `USERNAME` stays in
# `MYUSERNAMES`, `ubuntu` in `ubuntu-dev`, `registry:2` in `registry:2.8`; `[YOUR-DOMAIN]`
# and `~/docker-registry` (edges that are not token characters) are replaced wherever they stand.
TOKEN_CHARACTERS = "A-Za-z0-9_.-"
_TOKEN_EDGE = re.compile(f"[{TOKEN_CHARACTERS}]")


def _placeholder_pattern(names: list[str]) -> re.Pattern[str]:
    """One regex for all placeholders, longest first: `[YOUR-DOMAIN]` wins over `YOUR-DOMAIN`."""
    alternatives = []
    for name in sorted(names, key=lambda n: (-len(n), n)):
        before = f"(?<![{TOKEN_CHARACTERS}])" if _TOKEN_EDGE.match(name[0]) else ""
        after = f"(?![{TOKEN_CHARACTERS}])" if _TOKEN_EDGE.match(name[-1]) else ""
        alternatives.append(f"{before}{re.escape(name)}{after}")
    return re.compile("|".join(alternatives))


def placeholders_in(text: str, names: list[str]) -> list[str]:
    """The placeholders found in `text`, in order, each where it stands as a whole token."""
    if not names:
        return []
    return [found.group(0) for found in _placeholder_pattern(names).finditer(text)]


class Piece(NamedTuple):
    """A run of a command: literal text, or a value (a template of the scenario's)."""

    text: str
    value: bool = False


@dataclass(frozen=True)
class Command:
    """A command in the text's words with the lab's values in place of its placeholders.

    The text and the values stay apart: a literal piece is the text itself, byte for
    byte, and never goes through jinja2, so `{{`, `{%` or `{#` in the tutorial is
    data, whatever it says; only a value piece (a placeholder's template, from the
    scenario) is rendered, by whoever runs or shows the command.
    """

    pieces: tuple[Piece, ...] = ()

    def render(self, value: Callable[[str], str]) -> str:
        """The command with each value rendered by `value`, the literal text as it is."""
        return "".join(value(piece.text) if piece.value else piece.text for piece in self.pieces)

    @classmethod
    def joined(cls, commands: Iterable[Command], separator: str) -> Command:
        pieces: list[Piece] = []
        for i, command in enumerate(commands):
            if i:
                pieces.append(Piece(separator))
            pieces += command.pieces
        return cls(tuple(pieces))


def substitute(text: str, values: dict[str, str]) -> Command:
    """`text` with each placeholder replaced by its value (a template, rendered later), every other
    character kept literally: literal pieces and value pieces, never one template.

    One pass, left to right, longest placeholder first: a value is never searched
    again, so a value that contains a placeholder's text stays as it is. A command
    like `docker ps --format '{{.Names}}'` runs as written: the text is not a template.
    """
    pieces: list[Piece] = []
    end = 0
    if values:
        for found in _placeholder_pattern(list(values)).finditer(text):
            if found.start() > end:
                pieces.append(Piece(text[end:found.start()]))
            pieces.append(Piece(values[found.group(0)], value=True))
            end = found.end()
    if end < len(text):
        pieces.append(Piece(text[end:]))
    return Command(tuple(pieces))


def waits_for_input(line: str) -> str:
    """Why a command line of the text waits for a person at a terminal, or "" when it does not.

    NOTE: like `classify`, this reads words, not shell syntax: an option is a word
    starting with `-`, wherever it stands. It knows the commands of this kind of
    tutorial: editors, `docker run/exec -t -i`, `docker login` without a password
    option, `openssl req` without `-subj`, `htpasswd` without `-b` or `-i`, and
    `docker-compose rm` without `-f`.
    """
    words = line.split()
    if words[:1] == ["$"]:
        words = words[1:]
    if words[:1] == ["sudo"]:
        words = words[1:]
    if not words:
        return ""
    options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    short = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    command, rest = words[0], words[1:2]
    if command in {"vi", "vim", "nano"}:
        return "it opens an editor"
    if command == "docker" and rest in (["run"], ["exec"]):
        if ("t" in short or "--tty" in options) and ("i" in short or "--interactive" in options):
            return "`-t -i` opens a terminal in the container, and the lines after it are typed there"
        return ""
    if command == "docker" and rest == ["login"]:
        if "p" in short or options & {"--password", "--password-stdin"}:
            return ""
        return "it asks for Username: and Password: at the terminal"
    if command == "openssl" and rest == ["req"]:
        if "-subj" in words or "-batch" in words:
            return ""
        return "it asks for the certificate's subject (country, state, ..., Common Name) at the terminal"
    if command == "htpasswd":
        return "" if "b" in short or "i" in short else "it asks for the password twice at the terminal"
    if (command == "docker-compose" and rest == ["rm"]) or words[:3] == ["docker", "compose", "rm"]:
        return "" if "f" in short or "--force" in options else "it asks to confirm the removal"
    return ""


# --- files the text writes: a block, then lines of it replaced as the text says ----------------


def replace_lines(lines: list[str], old: list[str], new: list[str]) -> list[str] | None:
    """`lines` with the run of `old` in it replaced by `new`, or None when `old` is not there.

    The tutorial says "delete the following lines and add these": `old` is found by its non-blank
    lines, compared without their indentation (the text quotes them flush left, the file has
    them indented), with blank lines of the file between them allowed. `new` is indented as the
    file's first matched line is, relative to `old`'s first line.
    """
    wanted = [line.strip() for line in old if line.strip()]
    if not wanted:
        return None
    for start, line in enumerate(lines):
        if line.strip() != wanted[0]:
            continue
        index, matched = start, 0
        while index < len(lines) and matched < len(wanted):
            if lines[index].strip() == wanted[matched]:
                matched += 1
            elif lines[index].strip():
                break
            index += 1
        if matched < len(wanted):
            continue
        first_old = next(line for line in old if line.strip())
        shift = _indent(line) - _indent(first_old)
        pad = " " * max(shift, 0)
        indented = [pad + item if item.strip() else item for item in new]
        return lines[:start] + indented + lines[index:]
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
