"""Results of a run, shared by the engine that produces them and the reports.

Results are stored as JSON so a report can be re-rendered without rerunning
the lab; to_dict/from_dict are the only serialization format.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lab.diagnosis import Cause, cause_by_id


class Status(enum.StrEnum):
    """Outcome of one step; the values are what reports print."""

    PASS = "pass"
    FAIL = "fail"
    NOT_RUN = "not run"


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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepResult:
        """Rebuild a step from to_dict output, failing on unknown statuses or causes."""
        diagnosis = d.get("diagnosis")
        return cls(
            step_id=d["step_id"],
            title=d["title"],
            status=Status(d["status"]),
            duration=float(d.get("duration", 0.0)),
            expected=d.get("expected", ""),
            seen=d.get("seen", ""),
            diagnosis=cause_by_id(diagnosis) if diagnosis is not None else None,
            logs=list(d.get("logs", [])),
            before=Status(d["before"]) if d.get("before") else None,
        )


@dataclass
class RunResult:
    """One run of an edition: every step's result plus the setup phase timings."""

    edition: str
    started: datetime
    steps: list[StepResult]
    phases: dict[str, float] = field(default_factory=dict)
    finished: datetime | None = None

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
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "phases": dict(self.phases),
            "steps": [step.to_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Rebuild a run from to_dict output."""
        finished = d.get("finished")
        return cls(
            edition=d["edition"],
            started=datetime.fromisoformat(d["started"]),
            steps=[StepResult.from_dict(step) for step in d["steps"]],
            phases={name: float(secs) for name, secs in d.get("phases", {}).items()},
            finished=datetime.fromisoformat(finished) if finished else None,
        )
