"""Scenarios as data: `scenarios/*.yaml` loaded into steps, per edition.

A step has an id, a title, the tutorial section it covers, a `solve` (actions
per machine) and a `check` (observations per machine). Any action or check
may carry `only: EDITION`: that is how an edition differs from another, in
one place, without a second copy of the scenario.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.config import EDITIONS, ROLES
from lab.errors import ConfigError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
ACTION_KINDS = ("run", "file", "htpasswd", "pki", "ca_trust", "copy", "wait", "check")
_MODE = re.compile(r"^0?[0-7]{3,4}$")
CHECK_KINDS = ("command", "http", "tls", "file", "docker_login", "any")


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    section: str
    solve: dict[str, list[dict[str, Any]]] = field(hash=False)
    check: dict[str, list[dict[str, Any]]] = field(hash=False)
    why: str = ""
    passes_before: str = ""  # why this step's check cannot fail before it is solved

    def machines(self) -> list[str]:
        return list(dict.fromkeys([*self.solve, *self.check]))


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    path: Path
    steps: tuple[Step, ...]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        return [s.id for s in self.steps].index(step_id)


def load(path: Path, edition: str) -> Scenario:
    """Load a scenario file and keep what applies to `edition`."""
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(source, "", "no such scenario file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(source, f"line {mark.line + 1}" if mark else "", f"invalid YAML: {exc}") from None
    return parse(data, path, edition)


def parse(data: Any, path: Path, edition: str) -> Scenario:
    source = str(path)
    if edition not in EDITIONS:
        raise ConfigError(source, "edition", f"expected one of {', '.join(EDITIONS)}, got {edition!r}")
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ConfigError(source, "steps", "expected a mapping with a list of steps")
    steps = []
    seen: set[str] = set()
    for i, raw in enumerate(data["steps"]):
        where = f"steps[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(source, where, "expected a mapping")
        for key in ("id", "title", "section"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ConfigError(source, f"{where}.{key}", "expected a non-empty string")
        if raw["id"] in seen:
            raise ConfigError(source, f"{where}.id", f"step {raw['id']!r} is defined twice")
        seen.add(raw["id"])
        unknown = set(raw) - {"id", "title", "section", "solve", "check", "why"}
        if unknown:
            raise ConfigError(source, f"{where}.{sorted(unknown)[0]}", "unknown key")
        steps.append(
            Step(
                id=raw["id"],
                title=raw["title"],
                section=raw["section"],
                why=raw.get("why", ""),
                solve=_per_machine(raw.get("solve") or {}, f"{where}.solve", source, edition, ACTION_KINDS),
                check=_per_machine(raw.get("check") or {}, f"{where}.check", source, edition, CHECK_KINDS),
            )
        )
    return Scenario(id=str(data.get("id", path.stem)), title=str(data.get("title", path.stem)), path=path,
                    steps=tuple(steps))


def _per_machine(value: Any, where: str, source: str, edition: str, kinds: tuple[str, ...]) -> dict[str, list]:
    if not isinstance(value, dict):
        raise ConfigError(source, where, "expected a mapping of machine name to a list")
    result: dict[str, list] = {}
    for machine, items in value.items():
        here = f"{where}.{machine}"
        if machine not in ROLES:
            raise ConfigError(source, here, f"unknown machine; expected one of {', '.join(ROLES)}")
        if not isinstance(items, list):
            raise ConfigError(source, here, "expected a list")
        kept = [_item(item, f"{here}[{j}]", source, edition, kinds) for j, item in enumerate(items)]
        result[machine] = [item for item in kept if item is not None]
    return result


def _item(item: Any, where: str, source: str, edition: str, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """Validate one action or check (and the checks nested in it); None when its edition is another."""
    if not isinstance(item, dict):
        raise ConfigError(source, where, "expected a mapping")
    only = item.get("only")
    if only is not None and only not in EDITIONS:
        raise ConfigError(source, f"{where}.only", f"expected one of {', '.join(EDITIONS)}")
    present = [k for k in kinds if k in item]
    if len(present) != 1:
        raise ConfigError(source, where, f"expected exactly one of {', '.join(kinds)}")
    mode = item.get("mode")
    if mode is not None and not (isinstance(mode, str) and _MODE.match(mode)):
        raise ConfigError(source, f"{where}.mode", f"expected a quoted octal mode like '0600', got {mode!r}")
    if only is not None and only != edition:
        return None
    kept = {k: v for k, v in item.items() if k != "only"}
    kind = present[0]
    if kind in ("wait", "check") and kinds is ACTION_KINDS:
        kept[kind] = _item(item[kind], f"{where}.{kind}", source, edition, CHECK_KINDS)
        if kept[kind] is None:
            raise ConfigError(source, f"{where}.{kind}.only", "goes on the action, not on the check inside it")
    if kind == "any":
        if not isinstance(item["any"], list) or not item["any"]:
            raise ConfigError(source, f"{where}.any", "expected a non-empty list of checks")
        alternatives = [_item(a, f"{where}.any[{i}]", source, edition, CHECK_KINDS) for i, a in enumerate(item["any"])]
        kept["any"] = [a for a in alternatives if a is not None]
    return kept


def kind_of(item: dict[str, Any], kinds: tuple[str, ...] = ACTION_KINDS + CHECK_KINDS) -> str:
    return next(k for k in kinds if k in item)


def default_path() -> Path:
    return SCENARIOS / "tutorial.yaml"
