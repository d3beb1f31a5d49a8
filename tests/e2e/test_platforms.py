"""Issue 20 on real machines: the tutorial on Debian 13 (trixie) machines of the docker provider.

One lab of its own (name reglab-trixie, 192.168.79.0/24, its folder a temporary one), booted once for
the module and destroyed after it: the modern edition passes every step; the as-written edition, with
--keep-going, has every step judged and every failure diagnosed; the fixed edition (the corrected
text's own commands) passes every step; and the causes new on Debian 13 are matched on the real output.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.cli.main import main
from lab.model import diagnosis
from lab.model.results import Status
from lab.reports.files import load_result

pytestmark = pytest.mark.e2e

NAME = "reglab-trixie"
MACHINES = {"registry": "192.168.79.10", "client": "192.168.79.11"}


class Lab:
    def __init__(self, folder: Path) -> None:
        self.file = folder / "lab.yml"
        self.file.write_text(yaml.safe_dump({
            "name": NAME, "platform": "debian13", "provider": "docker",
            "machines": {name: {"ip": ip} for name, ip in MACHINES.items()},
        }))
        self.reports = folder / ".lab" / NAME / "reports"

    def __call__(self, *args: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        # --platform: the command line wins over REGLAB_PLATFORM, which tox sets for the session's lab.
        status = main(["--lab", str(self.file), "--platform", "debian13", "-q", *args], stdout=out, stderr=err)
        return status, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def trixie(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("trixie"))
    try:
        yield lab
    finally:
        lab("down")


def ssh(lab: Lab, capfd: pytest.CaptureFixture[str], machine: str, command: str) -> tuple[int, str]:
    """A command on a machine as root; its output (reglab ssh prints it as it comes)."""
    capfd.readouterr()
    status, said = lab("ssh", machine, "--", "sudo sh -c " + shlex.quote(command))  # one remote command line
    return status, capfd.readouterr().out + said


def test_modern_passes_every_step_on_debian13(trixie: Lab, capfd: pytest.CaptureFixture[str]) -> None:
    status, out = trixie("run")
    assert status == 0, out
    assert "11 passed, 0 failed, 0 not run" in out
    print(f"\ndebian13 modern, boot to server pull: {out.strip().splitlines()[-2]}")  # the summary, with phases
    report = load_result(trixie.reports / "modern.json")
    assert report.platform == "debian13"
    # Debian 13's own tools: Compose v2 behind the `docker-compose` command, Docker 26, the images' tags.
    status, seen = ssh(trixie, capfd, "registry", "docker-compose version; readlink -f /usr/bin/docker-compose; "
                                                  "docker version -f '{{.Server.Version}}'; docker images")
    assert status == 0, seen
    assert "Docker Compose version 2.26" in seen and "/usr/libexec/docker/cli-plugins/docker-compose" in seen
    assert "26.1.5" in seen
    for repository, tag in (("reglab/nginx", "1.26.3-debian13"), ("reglab/docker-registry", "2.8.3-debian13"),
                            ("reglab/busybox", "1.37.0-debian13")):
        assert repository in seen and tag in seen, seen


def test_the_ipv6_cause_of_docker_26_is_diagnosed_on_its_real_output(trixie: Lab,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """Without provisioning's DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE, Docker 26 in a machine refuses containers."""
    dropin = "/etc/systemd/system/docker.service.d/reglab-restarts.conf"
    off = (f"cp {dropin} /root/dropin.bak && sed -i '/DOCKER_ALLOW_IPV6/d' {dropin} && systemctl daemon-reload "
           "&& systemctl restart docker && docker run --rm reglab/busybox:1.37.0-debian13 true 2>&1; true")
    try:
        status, seen = ssh(trixie, capfd, "client", off)
        assert status == 0, seen
        found = diagnosis.diagnose(seen)
        assert found is not None and found.id == "docker-ipv6-control", seen
    finally:
        ssh(trixie, capfd, "client", f"cp /root/dropin.bak {dropin} && systemctl daemon-reload && "
                                     "systemctl restart docker")
    status, seen = ssh(trixie, capfd, "client", "docker run --rm reglab/busybox:1.37.0-debian13 echo ok")
    assert status == 0 and "ok" in seen, seen


def test_as_written_on_debian13_judges_every_step_and_diagnoses_every_failure(trixie: Lab) -> None:
    assert trixie("reset")[0] == 0
    status, out = trixie("--edition", "as-written", "run", "--keep-going")
    assert status == 1, out
    report = load_result(trixie.reports / "as-written.json")
    steps = {s.step_id: s for s in report.steps}
    assert len(steps) == 11 and not [s for s in report.steps if s.status is Status.NOT_RUN], report.to_dict()
    failed = [s for s in report.steps if s.status is Status.FAIL]
    assert failed, report.to_dict()
    print("\ndebian13 as-written: " + "; ".join(
        f"{s.step_id} {s.status.value}" + (f" ({', '.join(c.id for c in s.causes)})" if s.causes else "")
        for s in report.steps))
    undiagnosed = [(s.step_id, s.seen[-300:]) for s in failed if s.diagnosis is None]
    assert undiagnosed == [], undiagnosed
    # What Debian 13 changes: Compose v2 refuses the tutorial's file format 1.
    assert steps["compose-registry"].status is Status.FAIL
    assert steps["compose-registry"].diagnosis.id == "compose-v1-file", steps["compose-registry"]
    assert "Additional property registry is not allowed" in steps["compose-registry"].seen


def test_fixed_passes_every_step_on_debian13_from_the_fixed_text(trixie: Lab) -> None:
    assert trixie("reset")[0] == 0
    status, out = trixie("--edition", "fixed", "run")
    assert status == 0, out
    assert "11 passed, 0 failed, 0 not run" in out
    print(f"\ndebian13 fixed: {out.strip().splitlines()[-2]}")
    status, out = trixie("report")
    assert status == 0, out
    fixed = (trixie.reports / "tutorial.fixed.md").read_text()
    patch = (trixie.reports / "tutorial.patch").read_text()
    assert "Changed by reglab for today's tools" in fixed
    assert "+docker pull [YOUR-DOMAIN]/test-image\n" in patch
    # The commands the fixed edition ran for the fixed lines are the fixed text's own.
    from lab.model import scenario
    from lab.model.lab import default_scenario

    for fix in scenario.load(default_scenario(), "fixed").fixes:
        assert fix.text in fixed
    log = "\n".join(p.read_text() for p in (trixie.reports.parent / "logs").glob("*.log"))
    assert 'subjectAltName=DNS:myregistrydomain.com' in log and "docker pull myregistrydomain.com/test-image" in log
    maintainer = (trixie.reports / "maintainer.md").read_text()
    assert "fixed on debian13" in maintainer and "as-written on debian13" in maintainer
