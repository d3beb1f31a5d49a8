"""The tutorial, fixed: lines of its text replaced by what works on today's tools.

A scenario's `fixes:` says, per change, which lines of which block it
replaces (`block`, `lines`), what they were when the fix was written (`was`,
so a later change to the tutorial makes the fix stale, and drift says so
with the step's name), the new lines in the text's own words, placeholders
and all (`text`), the step whose citation of the block it belongs to
(`step`), and the causes it cures (`causes`, ids of the diagnosis table: the
note beside the change is theirs). A fixed line that waits for a person gets
`run` (and `stdin`) like an equivalent.

`fixed_text` writes the fixed Markdown (the text is data: lines are swapped,
nothing is evaluated); the `fixed` edition's `from_text` runs these lines
(lab.tutorial.commands), so what is published is what ran.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.common.errors import Invalid
from lab.tutorial.text import _FENCE, Block, code_blocks, fix_drift, stale_fix

FIX_KEYS = ("block", "lines", "was", "text", "step", "causes", "run", "stdin", "why")
_LINES = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class Fix:
    block: int
    first: int
    last: int
    was: str  # the lines it replaces, as the text wrote them
    text: str  # the lines instead, in the text's words
    step: str
    causes: tuple[str, ...]
    run: str | None = None  # what the lab types instead of `text`, where `text` waits for a person
    stdin: str | None = None
    why: str = ""

    def where(self) -> str:
        lines = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        return f"block {self.block}, {lines}"


def parse_fixes(raw: Any, blocks: Sequence[Block]) -> tuple[Fix, ...]:
    """The scenario's `fixes:` list, each checked against the text's blocks (Invalid naming the entry)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Invalid("fixes", "expected a list of {block, lines, was, text, step, causes} mappings")
    fixes: list[Fix] = []
    for i, item in enumerate(raw):
        where = f"fixes[{i}]"
        if not isinstance(item, dict):
            raise Invalid(where, "expected a mapping with block, lines, was, text, step and causes")
        unknown = [key for key in item if key not in FIX_KEYS]
        if unknown:
            raise Invalid(f"{where}.{unknown[0]}", f"unknown key; expected {', '.join(FIX_KEYS)}")
        number = item.get("block")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(blocks):
            raise Invalid(f"{where}.block", f"expected a block number 1-{len(blocks)}, got {number!r}")
        lines = item.get("lines")
        found = _LINES.match(str(lines)) if isinstance(lines, int | str) and not isinstance(lines, bool) else None
        if found is None:
            raise Invalid(f"{where}.lines", f'expected a line number or "FIRST-LAST", got {lines!r}')
        first, last = int(found.group(1)), int(found.group(2) or found.group(1))
        for key in ("was", "text", "step"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise Invalid(f"{where}.{key}", "missing; a fix needs the lines it replaces (was), the lines "
                                                "instead (text) and the step whose block it fixes (step)")
        causes = item.get("causes")
        if not isinstance(causes, list) or not causes or not all(isinstance(c, str) and c for c in causes):
            raise Invalid(f"{where}.causes", "expected a list of the cause ids it cures (the diagnosis table's)")
        for key in ("run", "stdin", "why"):
            if key in item and (not isinstance(item[key], str) or not item[key].strip()):
                raise Invalid(f"{where}.{key}", "expected a string")
        if ("run" in item) != ("why" in item) or ("stdin" in item and "run" not in item):
            raise Invalid(f"{where}.run", "`run` (with `why`, and `stdin` if it reads one) go together")
        fix = Fix(number, first, last, item["was"].rstrip("\n"), item["text"].rstrip("\n"), item["step"],
                  tuple(causes), item.get("run"), item.get("stdin"), item.get("why", ""))
        for other in fixes:
            if other.block == fix.block and other.first <= fix.last and fix.first <= other.last:
                raise Invalid(f"{where}.lines", f"overlaps the fix of {other.where()}")
        fixes.append(fix)
    return tuple(fixes)


def drift(fixes: Sequence[Fix], text: str) -> list[str]:
    """Each fix that no longer fits the tutorial's text, named with its step (lab.tutorial.text.fix_drift)."""
    return fix_drift(tuple(fixes), code_blocks(text))


def fixed_text(text: str, fixes: Sequence[Fix], notes: Mapping[Fix, str]) -> str:
    """The tutorial's text with every fix's lines replaced, and its note (a quoted line) after the block.

    Raises ValueError when a fix is stale: a fixed text is never written from a text that moved.
    """
    blocks = code_blocks(text)
    for fix in fixes:
        reason = stale_fix(fix, blocks)
        if reason:
            raise ValueError(f"step {fix.step!r}: the fix of {fix.where()} is stale: {reason}")
    lines = text.splitlines()
    ending = "\n" if text.endswith("\n") else ""
    # Bottom to top, so the line numbers above a change stay true.
    for block in sorted({fix.block for fix in fixes}, reverse=True):
        start = blocks[block - 1].line - 1  # index of the block's first content line
        close = start
        while close < len(lines) and not _FENCE.match(lines[close]):
            close += 1
        mine = sorted((fix for fix in fixes if fix.block == block), key=lambda fix: fix.first)
        note_lines = [f"> {notes[fix]}" for fix in mine if notes.get(fix)]
        if note_lines:
            lines[close + 1:close + 1] = ["", *note_lines, ""]
        for fix in reversed(mine):
            lines[start + fix.first - 1:start + fix.last] = fix.text.splitlines()
    return "\n".join(lines) + ending
