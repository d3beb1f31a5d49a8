"""The as-written edition on today's tools: the steps that must fail do, with the right cause."""

import pytest

from lab.report import load_result
from lab.results import Status

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
