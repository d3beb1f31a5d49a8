"""Results of a run, shared by the engine that produces them, the reports, and a class's gradebook and
dashboard (a StepResult per student and step: `StudentResult`).

A run's results are stored as JSON so a report can be re-rendered without rerunning
the lab; to_dict/from_dict are the only serialization format. from_dict reads
a file a person may have edited or a crash may have cut: anything it cannot
use is a ValueError naming the key, never a KeyError or TypeError.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lab.model.diagnosis import Cause, cause_by_id

_REQUIRED: Any = object()


def _get(d: dict[str, Any], key: str, kinds: type | tuple[type, ...], what: str, where: str,
         default: Any = _REQUIRED) -> Any:
    """d[key], checked to be `what` (JSON has no bools here); the error names the key path."""
    if key not in d:
        if default is _REQUIRED:
            raise ValueError(f"{where}{key}: missing")
        return default
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{where}{key}: expected {what}, found {value!r:.60}")
    return value


def _mapping(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}expected a JSON object, found {type(d).__name__}")
    return d


def _time(d: dict[str, Any], key: str, where: str) -> datetime:
    text = _get(d, key, str, "a string", where)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{where}{key}: not an ISO date and time: {text!r:.60}") from None


DEPENDS = "depends on a failed step"  # said beside a failure that may come from an earlier one

class Status(enum.StrEnum):
    """Outcome of one step; the values are what reports print (a class's files have words of their own)."""

    PASS = "pass"
    FAIL = "fail"
    NOT_RUN = "not run"  # not checked (yet)
    UNREACHABLE = "unreachable"  # its lab did not answer, so it could not be checked (a class's check)


def _cause(d: dict[str, Any], key: str, where: str) -> Cause | None:
    """A stored cause id (or null) back to its Cause; an unknown id names the key."""
    cause_id = _get(d, key, (str, type(None)), "a cause id or null", where, None)
    try:
        return cause_by_id(cause_id) if cause_id is not None else None
    except ValueError as error:
        raise ValueError(f"{where}{key}: {error}") from None


@dataclass
class Look:
    """One more look at a failed step: the actions that get past one of its causes (`look_past:`)
    were applied, then the step was solved and checked again as written, to find what that cause hid.
    """

    past: str  # the id of the cause those actions got past
    status: Status = Status.NOT_RUN  # the step again; NOT_RUN when the actions themselves failed
    expected: str = ""
    seen: str = ""
    diagnosis: Cause | None = None
    error: str = ""  # why the actions failed, "" when they worked

    def to_dict(self) -> dict[str, Any]:
        return {
            "past": self.past,
            "status": self.status.value,
            "expected": self.expected,
            "seen": self.seen,
            "diagnosis": self.diagnosis.id if self.diagnosis else None,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Look:
        d = _mapping(d, where.rstrip("."))
        past = _get(d, "past", str, "a cause id", where)
        try:
            cause_by_id(past)
        except ValueError as error:
            raise ValueError(f"{where}past: {error}") from None
        return cls(
            past=past,
            status=_status(d, "status", where, Status.NOT_RUN.value),
            expected=_get(d, "expected", str, "a string", where, ""),
            seen=_get(d, "seen", str, "a string", where, ""),
            diagnosis=_cause(d, "diagnosis", where),
            error=_get(d, "error", str, "a string", where, ""),
        )


def _status(d: dict[str, Any], key: str, where: str, default: Any = _REQUIRED) -> Status:
    status = _get(d, key, str, "a string", where, default)
    if status not in {s.value for s in Status}:
        known = ", ".join(s.value for s in Status)
        raise ValueError(f"{where}{key}: unknown status {status!r} (known: {known})")
    return Status(status)


@dataclass
class StepResult:
    """What one step's check expected and saw, and why it failed if known."""

    step_id: str
    title: str
    status: Status
    duration: float = 0.0
    expected: str = ""
    seen: str = ""
    diagnosis: Cause | None = None
    logs: list[str] = field(default_factory=list)
    before: Status | None = None  # the check's result before solving, when the run proves its checks
    # With --keep-going: this step failed and the modern edition's solution of it was applied after
    # (bridge_error says why that bridge failed, "" if it worked); bridge_failed names an earlier step
    # whose bridge failed, so this step was judged on a lab not where the tutorial expects it.
    bridged: bool = False
    bridge_error: str = ""
    bridge_failed: str = ""
    # With --keep-going, the looks past each known cause in turn (`look_past:` in the scenario), in order.
    looks: list[Look] = field(default_factory=list)
    # Why, in words, when no known cause says it: why its lab did not answer (UNREACHABLE), or a cause
    # read back from a gradebook that this process does not know. "" otherwise.
    reason: str = ""
    # In a check-only run, which grades every step on its own: the first earlier step that failed,
    # when this one failed too (its failure may come from that one's). "" otherwise.
    depends_on: str = ""

    @property
    def causes(self) -> list[Cause]:
        """Every known cause found, in order: the failure's own (`diagnosis`), then what each look found."""
        found = [self.diagnosis, *(look.diagnosis for look in self.looks)]
        return list(dict.fromkeys(cause for cause in found if cause is not None))

    @property
    def cause_line(self) -> str:
        """Every known cause as `id: cause`, in order; else the reason; "" when neither is known.
        A failure that may come from an earlier failed step says so first."""
        line = "; ".join(f"{cause.id}: {cause.cause}" for cause in self.causes) or self.reason
        if not self.depends_on or line.startswith(DEPENDS):
            return line
        return "; ".join(part for part in (f"{DEPENDS} ({self.depends_on})", line) if part)

    def redacted(self, redact: Callable[[str], str]) -> StepResult:
        """A copy with every string passed through `redact`, but the causes (the scenario's own words)."""
        return dataclasses.replace(
            self,
            step_id=redact(self.step_id),
            title=redact(self.title),
            expected=redact(self.expected),
            seen=redact(self.seen),
            logs=[redact(log) for log in self.logs],
            bridge_error=redact(self.bridge_error),
            looks=[dataclasses.replace(look, expected=redact(look.expected), seen=redact(look.seen),
                                       error=redact(look.error)) for look in self.looks],
            reason=redact(self.reason),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict; the diagnosis is stored by its id."""
        return {
            "step_id": self.step_id,
            "title": self.title,
            "status": self.status.value,
            "duration": self.duration,
            "expected": self.expected,
            "seen": self.seen,
            "diagnosis": self.diagnosis.id if self.diagnosis else None,
            "logs": list(self.logs),
            "before": self.before.value if self.before else None,
            "bridged": self.bridged,
            "bridge_error": self.bridge_error,
            "bridge_failed": self.bridge_failed,
            "looks": [look.to_dict() for look in self.looks],
            "reason": self.reason,
            "depends_on": self.depends_on,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> StepResult:
        """Rebuild a step from to_dict output, failing on unknown statuses or causes."""
        d = _mapping(d, where.rstrip("."))
        status = _status(d, "status", where)
        cause = _cause(d, "diagnosis", where)
        before = _get(d, "before", (str, type(None)), "a status or null", where, None)
        if before is not None and before not in {s.value for s in Status}:
            raise ValueError(f"{where}before: unknown status {before!r}")
        bridged = d.get("bridged", False)
        if not isinstance(bridged, bool):
            raise ValueError(f"{where}bridged: expected true or false, found {bridged!r:.60}")
        logs = _get(d, "logs", list, "a list", where, [])
        if not all(isinstance(log, str) for log in logs):
            raise ValueError(f"{where}logs: expected a list of strings")
        looks = _get(d, "looks", list, "a list", where, [])  # absent in reports written before looks existed
        return cls(
            step_id=_get(d, "step_id", str, "a string", where),
            title=_get(d, "title", str, "a string", where),
            status=status,
            duration=float(_get(d, "duration", (int, float), "a number", where, 0.0)),
            expected=_get(d, "expected", str, "a string", where, ""),
            seen=_get(d, "seen", str, "a string", where, ""),
            diagnosis=cause,
            logs=list(logs),
            before=Status(before) if before is not None else None,
            bridged=bridged,
            bridge_error=_get(d, "bridge_error", str, "a string", where, ""),
            bridge_failed=_get(d, "bridge_failed", str, "a string", where, ""),
            looks=[Look.from_dict(look, f"{where}looks[{i}].") for i, look in enumerate(looks)],
            reason=_get(d, "reason", str, "a string", where, ""),
            depends_on=_get(d, "depends_on", str, "a string", where, ""),
        )


@dataclass(frozen=True)
class StudentResult:
    """One student's result of one step in a class, and when it was checked: a row of the gradebook,
    a cell of the dashboard."""

    student: str
    result: StepResult
    checked_at: str = ""  # ISO-8601 UTC, "" when never checked


@dataclass
class RunResult:
    """One run of an edition: every step's result plus the setup phase timings."""

    edition: str
    started: datetime
    steps: list[StepResult]
    phases: dict[str, float] = field(default_factory=dict)
    finished: datetime | None = None
    platform: str = ""  # the machines' platform (debian13); "" in a run written before platforms were kept

    @property
    def passed(self) -> bool:
        """True if all steps passed; an empty run proves nothing, so it fails."""
        return bool(self.steps) and all(s.status is Status.PASS for s in self.steps)

    @property
    def counts(self) -> dict[Status, int]:
        """Steps per status, every status present so reports can print zeros."""
        counts = dict.fromkeys(Status, 0)
        for step in self.steps:
            counts[step.status] += 1
        return counts

    @property
    def total_time(self) -> float:
        """Wall-clock seconds if finished, else the sum of phase and step times."""
        if self.finished is not None:
            return (self.finished - self.started).total_seconds()
        return sum(self.phases.values()) + sum(s.duration for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict that from_dict turns back into an equal RunResult."""
        return {
            "edition": self.edition,
            "platform": self.platform,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "phases": dict(self.phases),
            "steps": [step.to_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Rebuild a run from to_dict output."""
        d = _mapping(d, "")
        phases = _get(d, "phases", dict, "an object", "", {})
        for name, secs in phases.items():
            if not isinstance(secs, int | float) or isinstance(secs, bool):
                raise ValueError(f"phases.{name}: expected a number of seconds, found {secs!r:.60}")
        return cls(
            edition=_get(d, "edition", str, "a string", ""),
            started=_time(d, "started", ""),
            steps=[
                StepResult.from_dict(step, f"steps[{index}].")
                for index, step in enumerate(_get(d, "steps", list, "a list", ""))
            ],
            phases={name: float(secs) for name, secs in phases.items()},
            finished=_time(d, "finished", "") if d.get("finished") is not None else None,
            platform=_get(d, "platform", str, "a string", "", ""),
        )
