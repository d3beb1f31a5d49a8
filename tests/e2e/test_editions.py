"""The as-written edition on today's tools: the steps that must fail do, with the right cause."""

import pytest

from lab.model.results import Status
from lab.reports.files import load_result

pytestmark = pytest.mark.e2e


def test_as_written_fails_at_docker_login_for_the_legacy_common_name(lab_session, reglab):
    assert reglab("reset").status == 0
    result = reglab("--edition", "as-written", "run")
    assert result.status == 1, result.out + result.err
    assert "x509: certificate relies on legacy Common Name field" in result.out

    report = load_result(lab_session.lab.state_dir / "reports" / "as-written.json")
    status = {s.step_id: s for s in report.steps}
    before_login = ["local-registry", "hosts", "compose-registry", "nginx-proxy", "basic-auth", "tls",
                    "port-443", "client-trust"]
    assert all(status[s].status is Status.PASS for s in before_login), report.to_dict()
    assert status["client-login"].status is Status.FAIL
    assert status["client-login"].diagnosis.id == "legacy-cn"
    assert status["client-push"].status is Status.NOT_RUN
    markdown = (lab_session.lab.state_dir / "reports" / "as-written.md").read_text()
    assert "legacy" in markdown and "client-login" in markdown


def test_modern_passes_every_step_after_a_reset(lab_session, reglab):
    assert reglab("reset").status == 0
    result = reglab("--edition", "modern", "run")
    assert result.status == 0, result.out + result.err
    assert "11 passed, 0 failed, 0 not run" in result.out


def test_as_written_keep_going_judges_every_step_and_names_each_cause(lab_session, reglab):
    """Issue 11: the as-written run stopped judging at client-login; the maintainer wants every step."""
    assert reglab("reset").status == 0
    result = reglab("--edition", "as-written", "run", "--keep-going")
    assert result.status == 1, result.out + result.err
    report = load_result(lab_session.lab.state_dir / "reports" / "as-written.json")
    status = {s.step_id: s for s in report.steps}
    assert len(status) == 11 and not [s for s in report.steps if s.status is Status.NOT_RUN], report.to_dict()
    assert status["client-login"].status is Status.FAIL and status["client-login"].diagnosis.id == "legacy-cn"
    assert status["client-login"].bridged and not status["client-login"].bridge_error
    assert status["client-push"].status is Status.PASS  # judged on its own once the login was bridged
    pull = status["server-pull"]
    assert pull.status is Status.FAIL and pull.diagnosis.id == "no-basic-auth", pull
    assert "test-images" in pull.seen  # the name the tutorial pulls (it pushed test-image)
    assert [c.id for c in pull.causes] == ["no-basic-auth", "name-not-pushed"], pull  # past the login, the name
    markdown = (lab_session.lab.state_dir / "reports" / "as-written.md").read_text()
    assert "2 bridged" in markdown
