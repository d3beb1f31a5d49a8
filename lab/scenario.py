"""Scenarios as data: `scenarios/*.yaml` loaded into steps, per edition.

A step has an id, a title, the tutorial section it covers, a `solve` (actions
per machine) and a `check` (observations per machine). Any action or check
may carry `only: EDITION`: that is how an edition differs from another, in
one place, without a second copy of the scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.config import EDITIONS, ROLES
from lab.errors import ConfigError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
ACTION_KINDS = ("run", "file", "htpasswd", "pki", "ca_trust", "copy", "wait", "check")
CHECK_KINDS = ("command", "http", "tls", "file", "docker_login", "any")


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    section: str
    solve: dict[str, list[dict[str, Any]]] = field(hash=False)
    check: dict[str, list[dict[str, Any]]] = field(hash=False)
    why: str = ""

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
        kept = []
        for j, item in enumerate(items):
            item_where = f"{here}[{j}]"
            if not isinstance(item, dict):
                raise ConfigError(source, item_where, "expected a mapping")
            only = item.get("only")
            if only is not None and only not in EDITIONS:
                raise ConfigError(source, f"{item_where}.only", f"expected one of {', '.join(EDITIONS)}")
            present = [k for k in kinds if k in item]
            if len(present) != 1:
                raise ConfigError(source, item_where, f"expected exactly one of {', '.join(kinds)}")
            if only is None or only == edition:
                kept.append({k: v for k, v in item.items() if k != "only"})
        result[machine] = kept
    return result


def kind_of(item: dict[str, Any], kinds: tuple[str, ...] = ACTION_KINDS + CHECK_KINDS) -> str:
    return next(k for k in kinds if k in item)


def default_path() -> Path:
    return SCENARIOS / "tutorial.yaml"
