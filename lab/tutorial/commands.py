"""Commands the lab takes from the tutorial's text: the `from_text` action.

A scenario that runs the tutorial's own commands names its copy of the text
(`text: tutorial.md`, beside the scenario file) and two tables:

- `placeholders:` each placeholder as the text writes it (`YOUR-DOMAIN`,
  `[YOUR-DOMAIN]`, `USERNAME`, `ubuntu`, `~/docker-registry`, ...) and the
  lab's value, a template (`"{{ domain }}"`). A password is
  `{secret: "{{ user.password }}"}`: it reaches a command on stdin only, and a
  command line that would carry it is refused when the scenario loads (by the
  placeholder's name) and when the engine runs it (by the password itself).
  Substitution is `lab.tutorial.text.substitute`: one pass, longest first,
  whole tokens. The text itself is never a template: only the values are
  rendered, and the text between them is kept byte for byte.
- `equivalents:` lines of the text the lab types differently, each with why.
  A command that waits for a person (`docker run -t -i ... /bin/bash` and the
  lines typed in it, `docker login` and its prompts, `openssl req` and its
  questions) gets the command the lab runs instead, written in the text's own
  words (placeholders and all), with `stdin` when it reads one. A line that
  waits for input (`lab.tutorial.text.waits_for_input`) and has no equivalent
  is a load error.

`from_text: REFS` (a block `37`, a line `"61:1"`, lines `"61:2-3"`, or a list
of them, run in order and joined with `&&` so a `cd` holds for what follows)
becomes, when the scenario loads, the command the engine runs (`command`,
and `stdin` from an equivalent: `lab.tutorial.text.Command`s, the text's
pieces and the values' templates kept apart) and the parts it came from
(`FromText`), which `reglab show` prints as written. Each block must be a
shell block the step cites in `tutorial:`, and its text must still have the
digest cited there: a block changed since it was reviewed is a load error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.common.errors import Invalid
from lab.common.templates import check_syntax
from lab.tutorial.fixes import Fix, parse_fixes
from lab.tutorial.text import (
    Block,
    Cite,
    Command,
    code_blocks,
    placeholders_in,
    replace_lines,
    substitute,
    waits_for_input,
)

EQUIVALENT_KEYS = ("block", "lines", "run", "stdin", "prompts", "why")
REF = re.compile(r"^(\d+)(?::(\d+)(?:-(\d+))?)?$")
_LINES = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class Equivalent:
    """Lines of one block the lab types differently: the command it runs instead, and why."""

    block: int
    first: int
    last: int
    run: str  # in the text's words, placeholders and all
    why: str
    stdin: str | None = None  # in the text's words too
    prompts: int = 0  # the block holding the prompts it answers (0: none)


@dataclass(frozen=True)
class Part:
    """Lines of one block that the lab runs as one command."""

    block: int
    first: int
    last: int
    written: str  # the lines as the text writes them
    command: Command  # what the lab runs: the text with the placeholders' values (templates) in place
    instead: Equivalent | None = None
    prompts: str = ""  # the text of the prompts block, as written

    def where(self) -> str:
        lines = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        return f"block {self.block}, {lines}"


@dataclass(frozen=True)
class FromText:
    """What a `from_text` action runs, part by part (the engine runs them joined with `&&`)."""

    refs: tuple[int | str, ...]  # as the scenario writes them
    parts: tuple[Part, ...]
    # The templates of the secret placeholders: what they render to must never be on the command line.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextFile:
    """What a `file` action with `from_block` writes: a block of the text, then the text's own edits of it
    ("delete these lines and add these"), placeholders substituted, never rendered as a template."""

    block: int
    edits: tuple[tuple[int, int], ...]  # (block whose lines go, block whose lines come), in order
    content: Command

    def where(self) -> str:
        edits = "".join(f", block {old} replaced by block {new}" for old, new in self.edits)
        return f"block {self.block}{edits}"


@dataclass(frozen=True)
class TutorialText:
    """The tutorial's text as a scenario uses it: its blocks, placeholders and equivalents."""

    path: Path
    blocks: tuple[Block, ...]
    values: dict[str, str] = field(default_factory=dict)  # placeholder -> template, secrets included
    secrets: frozenset[str] = frozenset()
    equivalents: tuple[Equivalent, ...] = ()
    fixes: tuple[Fix, ...] = ()  # lines the fixed text replaces (lab.tutorial.fixes)
    use_fixes: bool = False  # the `fixed` edition: from_text runs the fixed lines where there are some

    def block(self, number: Any, where: str) -> Block:
        """Block `number`, which must exist and be a shell block."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise Invalid(where, f"expected a block number (1 or more), got {number!r}")
        if number > len(self.blocks):
            raise Invalid(where, f"block {number}: {self.path.name} has {len(self.blocks)} code blocks")
        block = self.blocks[number - 1]
        if block.kind != "shell":
            raise Invalid(where, f"block {number} ({block.first!r}) is not a shell block: nothing in it runs")
        return block

    def command(self, text: str, where: str, what: str) -> Command:
        """`text` with placeholders substituted; refused when it would carry a password."""
        secret = [name for name in placeholders_in(text, list(self.values)) if name in self.secrets]
        if secret:
            raise Invalid(where, f"{what} would put the password placeholder {secret[0]!r} on a command line; "
                                 "a password reaches a command on stdin only (give it an equivalent "
                                 "in `equivalents:` that reads it on stdin)")
        return substitute(text, self.values)

    def expand(self, item: dict[str, Any], where: str, cited: tuple[Cite, ...]) -> dict[str, Any]:
        """A `from_text` action as the engine runs it: `command`, `stdin`, and its parts.

        Each block it runs is one the step cites (`cited`), with the text the citation's digest
        names: what runs is what was reviewed.
        """
        refs = item["from_text"] if isinstance(item["from_text"], list) else [item["from_text"]]
        parts: list[Part] = []
        for i, ref in enumerate(refs):
            here = f"{where}.from_text" + (f"[{i}]" if isinstance(item["from_text"], list) else "")
            number, first, last = parse_ref(ref, here)
            block = self.block(number, here)
            cites = [cite for cite in cited if cite.block == number]
            if not cites:
                raise Invalid(here, f"block {number} ({block.first!r}) is not one this step cites in `tutorial:`")
            stale = next((cite for cite in cites if cite.sha256 != block.digest), None)
            if stale is not None:
                now = f", and its first line is now {block.first!r}" if block.first != stale.first else ""
                raise Invalid(here, f"block {number} ({stale.first!r}) changed since this step cited it: "
                                    f"sha256 {stale.sha256} cited, {block.digest} now{now}; what runs must be "
                                    "what was reviewed: read the block, then update its citation in `tutorial:`")
            first, last = _in_block(block, first, last, here)
            parts += self._parts(block, first, last, here)
        stdins = [p for p in parts if p.instead is not None and p.instead.stdin is not None]
        if len(stdins) > 1:
            raise Invalid(f"{where}.from_text", f"{stdins[0].where()} and {stdins[1].where()} both read stdin; "
                                                "run them as two actions")
        expanded = {key: value for key, value in item.items() if key != "from_text"}
        if stdins:
            if "stdin" in item:
                raise Invalid(f"{where}.stdin", f"the equivalent of {stdins[0].where()} already gives stdin")
            expanded["stdin"] = substitute(stdins[0].instead.stdin or "", self.values)
        expanded["command"] = Command.joined((part.command for part in parts), " && ")
        secrets = tuple(dict.fromkeys(self.values[name] for name in sorted(self.secrets)))
        expanded["from_text"] = FromText(tuple(refs), tuple(parts), secrets)
        return expanded

    def block_lines(self, number: int) -> list[str]:
        """Block `number`'s lines as this edition's text has them: the fixed text's, where a fix applies."""
        lines = self.blocks[number - 1].text.splitlines()
        if self.use_fixes:
            for fix in sorted((f for f in self.fixes if f.block == number), key=lambda f: f.first, reverse=True):
                lines[fix.first - 1:fix.last] = fix.text.splitlines()
        return lines

    def file(self, item: dict[str, Any], where: str, cited: tuple[Cite, ...]) -> dict[str, Any]:
        """A `file` action whose content comes from the text: block `from_block`, then each of `edits`
        (`{replace: OLD, with: NEW}`: OLD's lines in the file give way to NEW's), in the fixed text's
        words for the `fixed` edition.

        Each block is one that this step or an earlier one cites, with the text cited there: a file
        is written as it stands at this step. The edits are applied here, when the scenario loads,
        so an edit whose lines are not in the file is a load error naming the step.
        """
        number = item["from_block"]
        edits = tuple((edit["replace"], edit["with"]) for edit in item.get("edits", []))
        for i, block in enumerate([number, *(n for edit in edits for n in edit)]):
            here = f"{where}.from_block" if i == 0 else f"{where}.edits[{(i - 1) // 2}]"
            self._cited(block, here, cited)
        lines = self.block_lines(number)
        for i, (old, new) in enumerate(edits):
            edited = replace_lines(lines, self.block_lines(old), self.block_lines(new))
            if edited is None:
                text = "the fixed text's" if self.use_fixes else "the text's"
                raise Invalid(f"{where}.edits[{i}]", f"the lines of block {old} ({self.blocks[old - 1].first!r}) "
                                                     f"are not in the file as it stands ({text} block {number} "
                                                     "and the edits before this one)")
            lines = edited
        content = "\n".join(lines) + "\n"
        expanded = {key: value for key, value in item.items() if key not in ("from_block", "edits")}
        expanded["from_block"] = TextFile(number, edits, self.command(content, f"{where}.from_block", "the file"))
        return expanded

    def _cited(self, number: Any, where: str, cited: tuple[Cite, ...]) -> None:
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(self.blocks):
            raise Invalid(where, f"expected a block number 1-{len(self.blocks)}, got {number!r}")
        block = self.blocks[number - 1]
        cites = [cite for cite in cited if cite.block == number]
        if not cites:
            raise Invalid(where, f"block {number} ({block.first!r}) is not one this step or an earlier one "
                                 "cites in `tutorial:`")
        if all(cite.sha256 != block.digest for cite in cites):
            raise Invalid(where, f"block {number} ({cites[0].first!r}) changed since it was cited: sha256 "
                                 f"{cites[0].sha256} cited, {block.digest} now; what is written must be what was "
                                 "reviewed: read the block, then update its citation in `tutorial:`")

    def _parts(self, block: Block, first: int, last: int, where: str) -> list[Part]:
        lines = block.text.splitlines()
        parts: list[Part] = []
        number = first
        while number <= last:
            line = lines[number - 1]
            fix = next((f for f in self.fixes if f.block == block.number and f.first <= number <= f.last),
                       None) if self.use_fixes else None
            if fix is not None:
                if fix.first != number or fix.last > last:
                    raise Invalid(where, f"{fix.where()} are replaced as one in the fixed text (fixes); "
                                         f"select all of them")
                parts += self._fixed_parts(fix, where)
                number = fix.last + 1
                continue
            equivalent = next((e for e in self.equivalents
                               if e.block == block.number and e.first <= number <= e.last), None)
            if equivalent is not None:
                if equivalent.first != number or equivalent.last > last:
                    raise Invalid(where, f"block {block.number}, lines {equivalent.first}-{equivalent.last} are "
                                         f"typed as one command (equivalents); select all of them")
                command = self.command(equivalent.run, where, f"the equivalent of block {block.number}")
                prompts = self.blocks[equivalent.prompts - 1].text if equivalent.prompts else ""
                written = "\n".join(lines[equivalent.first - 1:equivalent.last])
                parts.append(Part(block.number, equivalent.first, equivalent.last, written, command,
                                  equivalent, prompts))
                number = equivalent.last + 1
                continue
            if line.strip():
                if reason := waits_for_input(line):
                    raise Invalid(where, f"block {block.number}, line {number} ({line!r}) waits for input: "
                                         f"{reason}; give it a non-interactive equivalent in `equivalents:`")
                command = self.command(line, where, f"block {block.number}, line {number}")
                parts.append(Part(block.number, number, number, line, command))
            number += 1
        return parts


    def _fixed_parts(self, fix: Fix, where: str) -> list[Part]:
        """The fixed text's lines for `fix`, as the lab runs them: its `run` (an equivalent), else each line."""
        if fix.run is not None:
            command = self.command(fix.run, where, f"the fixed form of {fix.where()}")
            instead = Equivalent(fix.block, fix.first, fix.last, fix.run, fix.why, fix.stdin)
            return [Part(fix.block, fix.first, fix.last, fix.text, command, instead)]
        what = f"the fixed form of {fix.where()}"
        return [Part(fix.block, fix.first, fix.last, line, self.command(line, where, what))
                for line in fix.text.splitlines() if line.strip()]

    def check_fixes(self) -> None:
        """Each fix of a shell block runs as the lab would run it: no password on a command line, nothing
        waiting for a person without a `run`."""
        for i, fix in enumerate(self.fixes):
            where = f"fixes[{i}]"
            if self.blocks[fix.block - 1].kind != "shell":
                if fix.run is not None:
                    raise Invalid(f"{where}.run", f"block {fix.block} is not a shell block: nothing in it runs")
                continue
            if fix.run is not None:
                if reason := waits_for_input(fix.run):
                    raise Invalid(f"{where}.run", f"still waits for input: {reason}")
                self.command(fix.run, f"{where}.run", "the fix")
                continue
            for line in fix.text.splitlines():
                if line.strip() and (reason := waits_for_input(line)):
                    raise Invalid(f"{where}.text", f"{line!r} waits for input: {reason}; give the fix a `run` "
                                                   "(and `stdin`) the lab types instead")
                self.command(line, f"{where}.text", "the fix")


def parse_ref(ref: Any, where: str) -> tuple[int, int | None, int | None]:
    """`37`, `"37"`, `"61:1"` or `"61:2-3"` as (block, first line, last line); no lines: every line."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref, None, None
    found = REF.match(ref) if isinstance(ref, str) else None
    if found is None:
        raise Invalid(where, f'expected a block number, "BLOCK:LINE" or "BLOCK:FIRST-LAST", got {ref!r}')
    block, first, last = found.groups()
    if first is None:
        return int(block), None, None
    return int(block), int(first), int(last or first)


def _in_block(block: Block, first: int | None, last: int | None, where: str) -> tuple[int, int]:
    count = len(block.text.splitlines())
    if first is None or last is None:
        return 1, count
    if not 1 <= first <= last <= count:
        raise Invalid(where, f"block {block.number} has lines 1-{count}, not {first}-{last}")
    return first, last


def load(data: dict[str, Any], path: Path) -> TutorialText | None:
    """The text a scenario names (`text:`) with its `placeholders:` and `equivalents:`; None without `text:`."""
    if "text" not in data:
        for key in ("placeholders", "equivalents", "fixes"):
            if key in data:
                raise Invalid(key, "needs `text:`, the file name of the tutorial's text beside the scenario")
        return None
    name = data["text"]
    if not isinstance(name, str) or not name.strip():
        raise Invalid("text", "expected the file name of the tutorial's text, beside the scenario")
    file = path.parent / name
    try:
        blocks = tuple(code_blocks(file.read_text()))
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid("text", f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    values, secrets = _placeholders(data.get("placeholders", {}))
    text = TutorialText(file, blocks, values, secrets)
    raw = data.get("equivalents", [])
    if not isinstance(raw, list):
        raise Invalid("equivalents", "expected a list of {block, lines, run, why} mappings")
    equivalents: list[Equivalent] = []
    for i, item in enumerate(raw):
        equivalent = _equivalent(item, f"equivalents[{i}]", text)
        for other in equivalents:
            if other.block == equivalent.block and other.first <= equivalent.last and equivalent.first <= other.last:
                raise Invalid(f"equivalents[{i}].lines", f"overlaps another equivalent of block {other.block} "
                                                        f"(lines {other.first}-{other.last})")
        equivalents.append(equivalent)
    text = replace(text, equivalents=tuple(equivalents), fixes=parse_fixes(data.get("fixes"), blocks))
    text.check_fixes()
    return text


def _placeholders(raw: Any) -> tuple[dict[str, str], frozenset[str]]:
    if not isinstance(raw, dict):
        raise Invalid("placeholders", "expected a mapping of the text's placeholders to the lab's values")
    values: dict[str, str] = {}
    secrets: set[str] = set()
    for name, value in raw.items():
        here = f"placeholders.{name}"
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise Invalid(here, "expected the placeholder as the text writes it, without spaces at its ends")
        if isinstance(value, dict):
            if set(value) != {"secret"} or not isinstance(value["secret"], str) or not value["secret"].strip():
                raise Invalid(here, "expected a template, or {secret: TEMPLATE} for a password")
            value = value["secret"]
            secrets.add(name)
        elif not isinstance(value, str) or not value.strip():
            raise Invalid(here, "expected the lab's value as a template, or {secret: TEMPLATE} for a password")
        elif "password" in value:
            raise Invalid(here, "a password is {secret: TEMPLATE}, so it never reaches a command line")
        check_syntax(value, here)
        values[name] = value
    secret_values = {values[name]: name for name in secrets}
    for name, value in values.items():
        if name not in secrets and value in secret_values:
            raise Invalid(f"placeholders.{name}", f"has the value of the secret {secret_values[value]!r}: "
                                                  "a secret's value is {secret: TEMPLATE} wherever it stands")
    return values, frozenset(secrets)


def _equivalent(raw: Any, where: str, text: TutorialText) -> Equivalent:
    if not isinstance(raw, dict):
        raise Invalid(where, "expected a mapping with block, lines, run and why")
    unknown = [key for key in raw if key not in EQUIVALENT_KEYS]
    if unknown:
        raise Invalid(f"{where}.{unknown[0]}", f"unknown key; expected {', '.join(EQUIVALENT_KEYS)}")
    block = text.block(raw.get("block"), f"{where}.block")
    first, last = _lines(raw.get("lines"), f"{where}.lines")
    first, last = _in_block(block, first, last, f"{where}.lines")
    for key in ("run", "why"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise Invalid(f"{where}.{key}", "missing; an equivalent needs the command the lab runs instead (run) "
                                            "and why (why)")
    if "stdin" in raw and not isinstance(raw["stdin"], str):
        raise Invalid(f"{where}.stdin", "expected a string, in the text's words (a password as its placeholder)")
    prompts = raw.get("prompts", 0)
    if "prompts" in raw:
        if isinstance(prompts, bool) or not isinstance(prompts, int) or not 1 <= prompts <= len(text.blocks):
            raise Invalid(f"{where}.prompts", f"expected the number of the block with the prompts "
                                              f"(1-{len(text.blocks)}), got {prompts!r}")
    command = raw["run"].strip()
    text.command(command, f"{where}.run", "the equivalent")
    if reason := waits_for_input(command):
        raise Invalid(f"{where}.run", f"still waits for input: {reason}")
    return Equivalent(block.number, first, last, command, raw["why"].strip(), raw.get("stdin"), prompts)


def _lines(value: Any, where: str) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    found = _LINES.match(value) if isinstance(value, str) else None
    if found is None:
        raise Invalid(where, f'expected a line number or "FIRST-LAST", got {value!r}')
    return int(found.group(1)), int(found.group(2) or found.group(1))
