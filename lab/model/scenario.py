"""Scenarios as data: `scenarios/*.yaml` loaded into steps, per edition.

A step has an id, a title, the tutorial section it covers, a `solve` (actions
per machine) and a `check` (observations per machine). Any action or check
may carry `only: EDITION`: that is how an edition differs from another, in
one place, without a second copy of the scenario.

Every item is validated against its kind (`lab.model.kinds` for the actions,
`lab.engine.checks` for the checks) and every string compiled as a jinja2 template
when the scenario loads, in both editions: a misspelt key or a broken
template is a ConfigError naming the file, the step and the item, not a check
that passes on anything or a traceback halfway through a run.

A step may cite the tutorial's code blocks it covers (`tutorial:`), and the
scenario lists the shell blocks no step covers (`left_out:`, each with a
reason); `lab.tutorial.text.drift` compares both with the tutorial's text.
A `from_text` action runs commands of a block the step cites, taken from that
text (`text:`, with `placeholders:` and `equivalents:`; `lab.tutorial.commands`):
it is expanded here, so a bad reference stops the load too, and so does a
block whose text no longer has the digest the step cites: what runs is what
was reviewed. `drift` remains the full report, of every block.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.common.errors import ConfigError, Invalid
from lab.common.templates import check_syntax
from lab.common.yamlfile import read_yaml
from lab.model import manifest as manifests
from lab.model.diagnosis import Cause
from lab.model.kinds import ACTIONS, CHECKS, Kind
from lab.model.lab import EDITIONS, default_scenario
from lab.model.manifest import Manifest
from lab.tutorial import commands
from lab.tutorial.fixes import Fix
from lab.tutorial.text import DIGEST_LENGTH, Cite

ACTION_KINDS = tuple(ACTIONS)
CHECK_KINDS = tuple(CHECKS)
STEP_KEYS = ("id", "title", "section", "why", "passes_before", "bridge_from", "look_past", "tutorial", "solve",
             "check")
CITE_KEYS = ("block", "first", "sha256", "why")
_DIGEST = re.compile(rf"[0-9a-f]{{{DIGEST_LENGTH}}}")
# Parses only: the engine's own environment (filters, StrictUndefined) renders at run time.


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    section: str
    solve: dict[str, list[dict[str, Any]]] = field(hash=False)
    check: dict[str, list[dict[str, Any]]] = field(hash=False)
    why: str = ""
    # Why the step's check cannot fail before the step is solved (the engine then
    # does not expect it to); empty when it must fail first.
    passes_before: str = ""
    # The tutorial's code blocks this step covers (scenarios/tutorial.md).
    tutorial: tuple[Cite, ...] = ()
    # An earlier step where this step's as-written failure starts: a keep-going run bridges
    # it by solving the modern edition from that step through this one. Empty: this step only.
    bridge_from: str = ""
    # Per known cause id (lab/model/diagnosis.py), the actions per machine that get past just that cause,
    # so a keep-going run can solve the step as written again and find the next cause it hid.
    look_past: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict, hash=False)

    def machines(self) -> list[str]:
        return list(dict.fromkeys([*self.solve, *self.check]))


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    path: Path
    steps: tuple[Step, ...]
    # The tutorial's shell blocks no step covers, each with its reason.
    left_out: tuple[Cite, ...] = ()
    # What the scenario declares of its lab (its `lab:` section, or the lab's for a file without one).
    manifest: Manifest | None = field(default=None, hash=False, compare=False)
    # The lines its fixed text replaces (`fixes:`, lab/tutorial/fixes.py), and that text's file.
    fixes: tuple[Fix, ...] = ()
    text: Path | None = None

    @property
    def causes(self) -> tuple[Cause, ...]:
        """The known causes a failure of this scenario is diagnosed with: its own, then the harness's."""
        return (self.manifest or manifests.load(default_scenario())).table

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        return [s.id for s in self.steps].index(step_id)


def load(path: Path, edition: str, declared: Manifest | None = None) -> Scenario:
    """Load a scenario file and keep what applies to `edition`.

    A file with its own `lab:` section declares its machines, causes, ...; one without borrows
    `declared` (the lab's), else the shipped tutorial's.
    """
    try:
        stat = Path(path).stat()
    except OSError:  # read_yaml names what is wrong
        return parse(read_yaml(path, "scenario file"), path, edition, declared)
    return _load(Path(path), stat.st_mtime_ns, stat.st_size, edition, declared)


@functools.lru_cache(maxsize=16)
def _load(path: Path, _mtime: int, _size: int, edition: str, declared: Manifest | None) -> Scenario:
    """Read and validated once per version of the file: a class's check opens a session per lab, and
    the dashboard does again at every refresh (parsing the tutorial's took about 0.1 s of CPU each).

    NOTE: a Scenario is read-only data (frozen; nothing changes its steps' items), so the
    labs' sessions, each in its own thread, share one.
    """
    return parse(read_yaml(path, "scenario file"), path, edition, declared)


def parse(data: Any, path: Path, edition: str, declared: Manifest | None = None) -> Scenario:
    source = str(path)
    if edition not in EDITIONS:
        raise ConfigError(source, "edition", f"expected one of {', '.join(EDITIONS)}, got {edition!r}")
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ConfigError(source, "steps", "expected a mapping with a list of steps")
    if "lab" in data:
        declared = manifests.parse(data["lab"], path.resolve())
    declared = declared or manifests.load(default_scenario())
    steps = []
    seen: set[str] = set()
    try:
        text = commands.load(data, path)
        if text is not None and edition == "fixed":
            text = replace(text, use_fixes=True)  # from_text runs the fixed text's lines
        for i, raw in enumerate(data["steps"]):
            earlier = tuple(cite for step in steps for cite in step.tutorial)
            steps.append(_step(raw, f"steps[{i}]", seen, edition, text, declared, earlier))
        left_out = _cites(data.get("left_out", []), "left_out", need_why=True)
        _check_fixes(text.fixes if text else (), steps, declared)
    except Invalid as exc:
        raise ConfigError(source, exc.path, exc.problem) from None
    return Scenario(id=str(data.get("id", path.stem)), title=str(data.get("title", path.stem)), path=path,
                    steps=tuple(steps), left_out=left_out, manifest=declared,
                    fixes=text.fixes if text else (), text=text.path if text else None)


def _check_fixes(fixes: tuple[Fix, ...], steps: list[Step], declared: Manifest) -> None:
    """Each fix belongs to a step that cites its block, and names causes the diagnosis table knows."""
    known = {cause.id for cause in declared.table}
    by_id = {step.id: step for step in steps}
    for i, fix in enumerate(fixes):
        step = by_id.get(fix.step)
        if step is None:
            raise Invalid(f"fixes[{i}].step", f"no step {fix.step!r}")
        if fix.block not in {cite.block for cite in step.tutorial}:
            raise Invalid(f"fixes[{i}].block", f"step {fix.step!r} does not cite block {fix.block} in `tutorial:`")
        unknown = [cause for cause in fix.causes if cause not in known]
        if unknown:
            raise Invalid(f"fixes[{i}].causes", f"{unknown[0]!r} is not a cause the diagnosis table knows")


def _step(raw: Any, where: str, seen: set[str], edition: str, text: commands.TutorialText | None,
          declared: Manifest, earlier: tuple[Cite, ...] = ()) -> Step:
    if not isinstance(raw, dict):
        raise Invalid(where, "expected a mapping")
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise Invalid(f"{where}.id", "expected a non-empty string")
    if raw["id"] in seen:
        raise Invalid(f"{where}.id", f"step {raw['id']!r} is defined twice")
    seen.add(raw["id"])
    where = f"{where} ({raw['id']})"
    unknown = [key for key in raw if key not in STEP_KEYS]
    if unknown:
        raise Invalid(f"{where}.{unknown[0]}", f"unknown key; expected {', '.join(STEP_KEYS)}")
    for key in ("title", "section"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise Invalid(f"{where}.{key}", "expected a non-empty string")
    if "bridge_from" in raw and raw["bridge_from"] not in seen - {raw["id"]}:
        raise Invalid(f"{where}.bridge_from", f"expected the id of an earlier step, got {raw['bridge_from']!r}")
    for key in ("why", "passes_before"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise Invalid(f"{where}.{key}", "expected a non-empty string (the reason)")
    tutorial = _cites(raw.get("tutorial", []), f"{where}.tutorial", need_why=False)
    look_past = _look_past(raw.get("look_past", {}), f"{where}.look_past", declared)
    parts = {}
    for part, table in (("solve", ACTIONS), ("check", CHECKS)):
        value = raw.get(part) or {}
        _validate_part(value, f"{where}.{part}", table, declared.roles)
        _compile_strings(value, f"{where}.{part}")
        if part == "solve":
            value = {machine: [_from_text(item, f"{where}.solve.{machine}[{j}]", text, tutorial, earlier)
                               for j, item in enumerate(items)] for machine, items in value.items()}
        parts[part] = {machine: _for_edition(items, f"{where}.{part}.{machine}", edition, table)
                       for machine, items in value.items()}
    return Step(id=raw["id"], title=raw["title"], section=raw["section"], why=raw.get("why", ""),
                passes_before=raw.get("passes_before", ""), tutorial=tutorial, solve=parts["solve"],
                check=parts["check"], bridge_from=raw.get("bridge_from", ""), look_past=look_past)


def _look_past(value: Any, where: str, declared: Manifest) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """`look_past:`: a known cause id to the actions, per machine, that get past just that cause.

    NOTE: the actions are the modern edition's own and apply only in an as-written keep-going run,
    so they take no `only:`.
    """
    if not isinstance(value, dict):
        raise Invalid(where, "expected a mapping of a cause id (lab/model/diagnosis.py or the scenario's causes) "
                             "to actions per machine")
    cause_ids = [cause.id for cause in declared.table]
    kept = {}
    for cause_id, actions in value.items():
        here = f"{where}.{cause_id}"
        if cause_id not in cause_ids:
            raise Invalid(here, f"unknown cause id; expected one of {', '.join(cause_ids)}")
        if not isinstance(actions, dict) or not actions:
            raise Invalid(here, "expected a mapping of machine name to a list of actions")
        _validate_part(actions, here, ACTIONS, declared.roles)
        _compile_strings(actions, here)
        for machine, items in actions.items():
            for j, item in enumerate(items):
                if "only" in item:
                    raise Invalid(f"{here}.{machine}[{j}].only", "look_past actions are modern ones, applied only "
                                                                  "in an as-written run; they take no `only`")
        kept[cause_id] = {machine: [dict(item) for item in items] for machine, items in actions.items()}
    return kept


def _from_text(item: dict[str, Any], where: str, text: commands.TutorialText | None,
               cited: tuple[Cite, ...], earlier: tuple[Cite, ...]) -> dict[str, Any]:
    """A `from_text` action with its command taken from the text, a `file` with `from_block` with its
    content taken from it (blocks this step or an earlier one cites); any other item as it is."""
    key = "from_text" if "from_text" in item else "from_block" if "file" in item and "from_block" in item else ""
    if not key:
        return item
    if text is None:
        raise Invalid(f"{where}.{key}", "needs the tutorial's text: set `text:` at the top of the scenario")
    if key == "from_block":
        return text.file(item, where, earlier + cited)
    return text.expand(item, where, cited)


def _cites(value: Any, where: str, need_why: bool) -> tuple[Cite, ...]:
    """Citations of the tutorial's code blocks: `{block, first, sha256}`, and `why` (required in left_out)."""
    if not isinstance(value, list):
        raise Invalid(where, "expected a list of {block, first, sha256} mappings")
    cites = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise Invalid(here, "expected a mapping with block, first and sha256")
        unknown = [key for key in item if key not in CITE_KEYS]
        if unknown:
            raise Invalid(f"{here}.{unknown[0]}", f"unknown key; expected {', '.join(CITE_KEYS)}")
        block = item.get("block")
        if not isinstance(block, int) or isinstance(block, bool) or block < 1:
            raise Invalid(f"{here}.block", "expected the block's number (1 or more)")
        if not isinstance(item.get("first"), str) or not item["first"].strip():
            raise Invalid(f"{here}.first", "expected the block's first line, as a non-empty string")
        sha256 = item.get("sha256")
        if isinstance(sha256, int) and not isinstance(sha256, bool):
            # A digest of decimal digits only (about 1 in 2000), written unquoted, reads as a YAML int: it is
            # still that digest when its digits are all there (str() gives them back, then the pattern decides).
            sha256 = str(sha256)
        if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
            raise Invalid(f"{here}.sha256", f"expected the first {DIGEST_LENGTH} hex digits of the sha256 "
                                            "of the block's text")
        why = item.get("why", "")
        if (need_why or "why" in item) and (not isinstance(why, str) or not why.strip()):
            raise Invalid(f"{here}.why", "expected a non-empty string (the reason)")
        cites.append(Cite(block=block, first=item["first"], sha256=sha256, why=why))
    return tuple(cites)


def _validate_part(value: Any, where: str, table: Mapping[str, Kind], roles: tuple[str, ...]) -> None:
    """Every item of a `solve` or `check`, whatever its edition."""
    if not isinstance(value, dict):
        raise Invalid(where, "expected a mapping of machine name to a list")
    for machine, items in value.items():
        here = f"{where}.{machine}"
        if machine not in roles:
            raise Invalid(here, f"unknown machine; expected one of {', '.join(roles)}")
        if not isinstance(items, list):
            raise Invalid(here, "expected a list")
        for j, item in enumerate(items):
            _validate(item, f"{here}[{j}]", table)


def _validate(item: Any, where: str, table: Mapping[str, Kind]) -> None:
    """One item against its kind, then the checks nested in it against theirs."""
    if not isinstance(item, dict):
        raise Invalid(where, "expected a mapping")
    present = [name for name in table if name in item]
    if len(present) != 1:
        raise Invalid(where, f"expected exactly one of {', '.join(table)}"
                             + (f", got {', '.join(present)}" if present else ""))
    kind = table[present[0]]
    kind.validate(item, where)
    for key, many in kind.nested().items():
        if key not in item:
            continue
        if many:
            for i, inner in enumerate(item[key]):
                _validate(inner, f"{where}.{key}[{i}]", CHECKS)
        else:
            _validate(item[key], f"{where}.{key}", CHECKS)
            if "only" in item[key]:
                raise Invalid(f"{where}.{key}.only", "goes on the action, not on the check inside it")


def _compile_strings(value: Any, where: str) -> None:
    """Every string the engine renders must parse as a jinja2 template."""
    if isinstance(value, str):
        check_syntax(value, where)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            _compile_strings(inner, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, inner in value.items():
            _compile_strings(inner, f"{where}.{key}")


def _for_edition(items: list[dict[str, Any]], where: str, edition: str, table: Mapping[str, Kind]) -> list:
    """The validated items that apply to `edition`, without their `only`."""
    kept = []
    for j, item in enumerate(items):
        only = item.get("only", edition)
        if edition not in (only if isinstance(only, list) else [only]):
            continue
        item = {key: value for key, value in item.items() if key != "only"}
        kind = table[next(name for name in table if name in item)]
        for key, many in kind.nested().items():
            if many and key in item:
                item[key] = _for_edition(item[key], f"{where}[{j}].{key}", edition, CHECKS)
                if not item[key]:
                    raise Invalid(f"{where}[{j}].{key}", f"no alternative applies to the {edition} edition")
        kept.append(item)
    return kept


def kind_of(item: dict[str, Any], kinds: tuple[str, ...] = ACTION_KINDS + CHECK_KINDS) -> str:
    return next(k for k in kinds if k in item)


def default_path() -> Path:
    return default_scenario()
