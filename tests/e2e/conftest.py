"""End-to-end tests: real Vagrant, real Docker daemons, the real registry and nginx.

They share the lab booted by the reglab pytest plugin (`lab_session`); run
them with `tox -e e2e`, never with the unit tests.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.cli.main import main
from lab.model.results import Status

pytestmark = pytest.mark.e2e


@dataclass
class CliResult:
    status: int
    out: str
    err: str


@pytest.fixture
def reglab(lab_session, capfd) -> Callable[..., CliResult]:
    """Run the `reglab` CLI in-process against the session's lab file."""

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        status = main(["--lab", str(lab_session.lab.source), "-q", *args], stdout=out, stderr=err)
        captured = capfd.readouterr()
        return CliResult(status, out.getvalue() + captured.out, err.getvalue() + captured.err)

    return run


@pytest.fixture
def lab_cli() -> Callable[..., tuple[int, str, str]]:
    """Run the `reglab` CLI in-process against a lab file of the test's own (not the session's):
    (exit status, stdout, stderr). Global options (--provider, --scenario) go before the command."""

    def run(lab_file, *args: str) -> tuple[int, str, str]:  # noqa: ANN001
        out, err = io.StringIO(), io.StringIO()
        status = main(["--lab", str(lab_file), "-q", *args], stdout=out, stderr=err)
        return status, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="session")
def solved(lab_session):
    """The lab after every step of the scenario (solved here if this session has not)."""
    engine = lab_session.engine()
    pending = [s for s in lab_session.scenario.steps if lab_session.state.step_status(s.id) != Status.PASS.value]
    result = engine.run(pending, solve=True, phases={})
    failed = [s for s in result.steps if s.status is not Status.PASS]
    assert not failed, f"{failed[0].step_id}: expected {failed[0].expected}; saw {failed[0].seen}"
    return lab_session


# The order the e2e files run in, after the scenario's own steps (scenarios/): the ones that
# share the session's lab first, the class's (labs of their own) next, and last the ones that
# take the session's machines away. A file not listed here fails the collection.
ORDER = (
    "test_machines.py",
    "test_flow.py",
    "test_teaching.py",
    "test_editions.py",
    "test_hardening.py",
    "test_warm_and_fresh_starts.py",
    "test_incus.py",  # a second lab of its own beside the session's; the session's stays up
    "test_class_incus.py",  # a class of four on Incus, beside the session's lab
    "test_class_incus_cluster.py",  # a class of four on a two-member Incus cluster the test makes (10.76/16)
    "test_lab_instances.py",
    "test_ssh_provider.py",
    "test_second_tutorial.py",
    "test_platforms.py",  # the platform matrix: a lab of its own per platform
    "test_class.py",
    "test_dashboard_browser.py",
    "test_portal.py",  # its own class, pool and laptop namespace
    "test_machines_change.py",  # takes machines away
    "test_down.py",  # last: nothing of the lab is left
)


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    unlisted = sorted({item.path.name for item in items if item.path.parent == here} - set(ORDER))
    if unlisted:
        raise pytest.UsageError(f"tests/e2e/conftest.py: ORDER does not list {', '.join(unlisted)}")

    def rank(item: pytest.Item) -> int:
        return ORDER.index(item.path.name) + 1 if item.path.parent == here else 0  # scenarios/ first

    items.sort(key=rank)  # stable: tests keep their order within a file
    for item in items:
        if item.path.parent == here:
            item.add_marker(pytest.mark.e2e)
