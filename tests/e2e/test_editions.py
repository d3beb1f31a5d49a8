"""The as-written edition on today's tools: the steps that must fail do, with the right cause.

The session lab's platform decides which (issue 20): on Debian 12 (Docker 20.10, Compose v1) the first
failure is `docker login` refusing the tutorial's Common-Name-only certificate; on Debian 13 (Compose v2)
it is the tutorial's Compose file format 1, five steps earlier. tests/e2e/test_platforms.py asserts both
platforms side by side from one matrix run.
"""

import pytest

from lab.model.results import Status
from lab.reports.files import load_result

pytestmark = pytest.mark.e2e

# Where the as-written edition first fails on each platform, the cause, and a line of the real output.
FIRST_FAILURE = {
    "debian12": ("client-login", "legacy-cn", "x509: certificate relies on legacy Common Name field"),
    "debian13": ("compose-registry", "compose-v1-file", "Additional property registry is not allowed"),
}
COMPOSE_STEPS = ["compose-registry", "nginx-proxy", "basic-auth", "tls", "port-443"]


def test_as_written_fails_at_its_platforms_first_break(lab_session, reglab):
    step_id, cause, seen = FIRST_FAILURE[lab_session.lab.platform]
    assert reglab("reset").status == 0
    result = reglab("--edition", "as-written", "run")
    assert result.status == 1, result.out + result.err
    assert seen in result.out

    report = load_result(lab_session.lab.state_dir / "reports" / "as-written.json")
    ids = [s.step_id for s in report.steps]
    status = {s.step_id: s for s in report.steps}
    before = ids[:ids.index(step_id)]
    assert all(status[s].status is Status.PASS for s in before), report.to_dict()
    assert status[step_id].status is Status.FAIL
    assert status[step_id].diagnosis.id == cause
    assert status[ids[ids.index(step_id) + 1]].status is Status.NOT_RUN
    markdown = (lab_session.lab.state_dir / "reports" / "as-written.md").read_text()
    assert cause in markdown and step_id in markdown


def test_modern_passes_every_step_after_a_reset(lab_session, reglab):
    assert reglab("reset").status == 0
    result = reglab("--edition", "modern", "run")
    assert result.status == 0, result.out + result.err
    assert "11 passed, 0 failed, 0 not run" in result.out


def test_as_written_keep_going_judges_every_step_and_names_each_cause(lab_session, reglab):
    """Issue 11: the as-written run stopped judging at its first failure; the maintainer wants every step."""
    platform = lab_session.lab.platform
    assert reglab("reset").status == 0
    result = reglab("--edition", "as-written", "run", "--keep-going")
    assert result.status == 1, result.out + result.err
    report = load_result(lab_session.lab.state_dir / "reports" / "as-written.json")
    status = {s.step_id: s for s in report.steps}
    assert len(status) == 11 and not [s for s in report.steps if s.status is Status.NOT_RUN], report.to_dict()
    login = status["client-login"]
    if platform == "debian12":
        assert all(status[s].status is Status.PASS for s in COMPOSE_STEPS), report.to_dict()
        assert login.status is Status.FAIL and login.diagnosis.id == "legacy-cn"
        assert login.bridged and not login.bridge_error
    else:  # Compose v2 refuses format 1 in every Compose step; the bridged tls leaves a SAN certificate
        for step_id in COMPOSE_STEPS:
            step = status[step_id]
            assert step.status is Status.FAIL and step.diagnosis.id == "compose-v1-file", step
            assert step.bridged and not step.bridge_error, step
        assert login.status is Status.PASS, login
    assert status["client-push"].status is Status.PASS  # judged on its own once what broke before was bridged
    pull = status["server-pull"]
    assert pull.status is Status.FAIL and pull.diagnosis.id == "no-basic-auth", pull
    assert "test-images" in pull.seen  # the name the tutorial pulls (it pushed test-image)
    assert [c.id for c in pull.causes] == ["no-basic-auth", "name-not-pushed"], pull  # past the login, the name
    markdown = (lab_session.lab.state_dir / "reports" / "as-written.md").read_text()
    assert f"{sum(1 for s in report.steps if s.bridged)} bridged" in markdown
