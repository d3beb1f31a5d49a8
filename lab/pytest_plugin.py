"""pytest support: one lab per test session, scenario files collected as tests.

`scenarios/conftest.py` collects each `scenarios/*.yaml` into one item per
step, in order; a failed step skips the ones after it. The e2e tests share
the same lab through the `lab_session` fixture. The machines are destroyed
at the end unless `--keep` (or REGLAB_KEEP=1) is given. A report of the run
goes to `.lab/NAME/reports/` like `reglab run`'s.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lab.common.errors import LabError, LabFailure
from lab.common.progress import Progress
from lab.engine.session import Session, load_lab
from lab.engine.steps import Engine
from lab.model.diagnosis import format_diagnosis
from lab.model.results import RunResult, Status, StepResult
from lab.model.scenario import Scenario, Step
from lab.model.scenario import load as load_scenario


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reglab")
    group.addoption("--lab", default=os.environ.get("REGLAB_LAB", "lab.yml"), help="the lab file")
    group.addoption("--edition", default=None, help="modern or as-written (default: the lab file's)")
    group.addoption("--keep", action="store_true", default=os.environ.get("REGLAB_KEEP") == "1",
                    help="keep the machines running after the tests (REGLAB_KEEP=1)")


class _TerminalStream:
    """Progress lines to pytest's terminal, which its output capture does not swallow."""

    def __init__(self, pytest_config: pytest.Config) -> None:
        self.reporter = pytest_config.pluginmanager.get_plugin("terminalreporter")

    def write(self, text: str) -> None:
        if self.reporter is not None and text.strip():
            self.reporter.write_line(text.rstrip("\n"))

    def flush(self) -> None:
        pass


class LabRun:
    """The lab of one pytest session, booted and provisioned on first use."""

    def __init__(self, pytest_config: pytest.Config) -> None:
        self.config = pytest_config
        self.lab_path = Path(pytest_config.getoption("--lab")).resolve()
        self.edition = pytest_config.getoption("--edition")
        self._session: Session | None = None
        self.error: str | None = None
        self.results: dict[str, list[StepResult]] = {}
        self.started = datetime.now(UTC)

    def session(self) -> Session:
        if self.error:
            pytest.fail(f"the lab could not start: {self.error}", pytrace=False)
        if self._session is None:
            try:
                lab = load_lab(self.lab_path, overrides={"edition": self.edition})
                # NOTE: no lab lock for the test session: its tests start reglab on this lab themselves.
                session = Session(lab, Progress(_TerminalStream(self.config)), lock=False)
            except (LabError, LabFailure) as exc:
                self.error = str(exc)
                pytest.fail(f"the lab could not start: {exc}", pytrace=False)
            # From here on there may be machines: finish() destroys them whatever happens.
            self._session = session
            try:
                session.start()
            except (LabError, LabFailure) as exc:
                self.error = str(exc)
                pytest.fail(f"the lab could not start: {exc}", pytrace=False)
        return self._session

    @property
    def started_lab(self) -> bool:
        return self._session is not None

    def finish(self) -> None:
        if self._session is None:
            return
        if self.error:
            self.results.clear()
        for edition, steps in self.results.items():
            result = RunResult(edition, self.started, steps, dict(self._session.progress.phases),
                               datetime.now(UTC), self._session.lab.platform)
            self._session.write_report(result)
        if self.config.getoption("--keep"):
            print("\nreglab: machines kept (--keep); `reglab down` removes them")
        else:
            try:
                self._session.down()
            except (LabError, LabFailure) as exc:
                print(f"\nreglab: could not destroy the machines ({exc}); `reglab down` removes them")


_RUN_KEY = pytest.StashKey[LabRun]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RUN_KEY] = LabRun(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN_KEY, None)
    if run is not None:
        run.finish()


def lab_run(config: pytest.Config) -> LabRun:
    return config.stash[_RUN_KEY]


@pytest.fixture(scope="session")
def lab_session(request: pytest.FixtureRequest) -> Session:
    """The booted, provisioned lab shared by every e2e test and scenario step."""
    return lab_run(request.config).session()


class StepFailure(Exception):
    def __init__(self, result: StepResult) -> None:
        super().__init__(result.step_id)
        self.result = result


class ScenarioFile(pytest.File):
    """A scenario YAML file: one item per step, in the file's order."""

    def collect(self):  # noqa: ANN201 - pytest's collector protocol
        edition = self.config.getoption("--edition") or load_lab(Path(self.config.getoption("--lab"))).edition
        scenario = load_scenario(self.path, edition)
        self.scenario = scenario
        self.failed: str | None = None
        for step in scenario.steps:
            item = StepItem.from_parent(self, name=step.id, step=step, scenario=scenario)
            item.add_marker(pytest.mark.e2e)
            yield item


class StepItem(pytest.Item):
    def __init__(self, *, step: Step, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.scenario = scenario

    def runtest(self) -> None:
        parent: ScenarioFile = self.parent  # type: ignore[assignment]
        if parent.failed:
            pytest.skip(f"step {parent.failed} failed before it")
        run = lab_run(self.config)
        session = run.session()
        engine = Engine(self.scenario, session.context(), session.state, session.progress)
        # Each step's check runs before its solve and must fail there: a check that
        # passes on a lab where the step was not done would grade anything as done.
        result = engine.run_step(self.step, solve=True, prove=True)
        run.results.setdefault(session.lab.edition, []).append(result)
        if result.status is not Status.PASS:
            parent.failed = self.step.id
            raise StepFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:  # noqa: ANN001
        if isinstance(excinfo.value, StepFailure):
            r = excinfo.value.result
            lines = [f"step {r.step_id} ({r.title}) failed", f"expected: {r.expected}", f"seen:     {r.seen}"]
            if r.before is not None:
                lines.append(f"check before solving: {r.before.value}")
            if r.diagnosis:
                lines.append(format_diagnosis(r.diagnosis))
            if r.logs:
                lines.append(f"logs: {', '.join(r.logs)}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.scenario.id}::{self.step.id} ({self.step.section})"
