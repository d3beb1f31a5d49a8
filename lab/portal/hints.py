"""Hints that escalate with a student's failed checks of a step, from reglab's own diagnosis.

After the first failed check: the cause (a known cause of the scenario, else
what the check expected and saw). After the second: the fix. After the third:
the commands `reglab show STEP` prints for this student's lab. A student who
needs the commands has them, but only after trying three times.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.classroom.dashboard import cause_or_check
from lab.model.results import Status, StepResult

LEVELS = ("cause", "fix", "commands")


@dataclass(frozen=True)
class Hint:
    level: int  # 1, 2, 3
    kind: str  # LEVELS[level - 1]
    text: str


def hints(result: StepResult | None, fails: int, commands: str) -> list[Hint]:
    """The hints earned by `fails` failed checks of a step whose last result is `result`."""
    if result is None or result.status is Status.PASS or fails <= 0:
        return []
    cause = cause_or_check(result) or f"the check expected {result.expected or 'something else'}"
    fixes = " / ".join(c.fix for c in result.causes)
    fix = fixes or (f"make it so that {result.expected}; compare what you typed with the step's instructions"
                    if result.expected else "compare what you typed with the step's instructions")
    texts = (cause, fix, commands or "(the commands could not be read from your lab just now)")
    return [Hint(level, LEVELS[level - 1], texts[level - 1]) for level in range(1, min(fails, 3) + 1)]
