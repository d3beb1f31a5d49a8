"""Issue 20 on real machines: the platform matrix as ONE command, on the docker provider.

`reglab run --platform debian12,debian13` (lab reglab-matrix, 10.85.0.0/24, its folder a temporary one)
makes a lab per platform (reglab-matrix-debian12 on 10.85.1.0/24, reglab-matrix-debian13 on 10.85.2.0/24)
and runs every edition on each: modern, as written (with --keep-going: every step judged) and fixed (the
corrected text's own commands and files). The module runs it once and checks what it wrote: the
maintainer's matrix, each platform's verdicts and causes (matched on the real output), Debian 13's own
tools, and that a wrong block in the fixed text fails the fixed edition at its step. Each platform lab
is destroyed at the end.
"""

from __future__ import annotations

import io
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.cli.main import main
from lab.model import diagnosis, scenario
from lab.model.results import RunResult, Status
from lab.reports.files import load_result
from lab.tutorial.text import TUTORIAL

pytestmark = pytest.mark.e2e

NAME = "reglab-matrix"
MACHINES = {"registry": "10.85.0.10", "client": "10.85.0.11"}
PLATFORMS = ("debian12", "debian13")


def reglab(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main([*args], stdout=out, stderr=err)
    return status, out.getvalue() + err.getvalue()


class Matrix:
    def __init__(self, folder: Path) -> None:
        self.file = folder / "lab.yml"
        self.file.write_text(yaml.safe_dump({
            "name": NAME, "provider": "docker",
            "machines": {name: {"ip": ip} for name, ip in MACHINES.items()},
        }))
        self.reports = folder / ".lab" / NAME / "reports"
        self.status, self.out, self.seconds = 0, "", 0.0

    def platform_file(self, platform: str) -> Path:
        return self.file.parent / ".lab" / NAME / "platforms" / platform / "lab.yml"

    def result(self, edition: str, platform: str) -> RunResult:
        lab = f"{NAME}-{platform}"
        return load_result(self.platform_file(platform).parent / ".lab" / lab / "reports" / f"{edition}.json")

    def on(self, platform: str, *args: str) -> tuple[int, str]:
        """reglab on one platform's lab (its own file, written by the matrix run)."""
        return reglab("--lab", str(self.platform_file(platform)), "-q", *args)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    lab = Matrix(tmp_path_factory.mktemp("matrix"))
    try:
        started = time.monotonic()
        # --platform on the command line wins over REGLAB_PLATFORM, which tox sets for the session's lab.
        lab.status, lab.out = reglab("--lab", str(lab.file), "--platform", ",".join(PLATFORMS), "-q", "run")
        lab.seconds = time.monotonic() - started
        print(f"\nthe matrix, one command, {lab.seconds / 60:.1f} min:\n{lab.out}")
        if (lab.reports / "maintainer.md").is_file():  # the table, in the test's log
            print((lab.reports / "maintainer.md").read_text().split("## Causes and fixes")[0])
        yield lab
    finally:
        for platform in PLATFORMS:
            if lab.platform_file(platform).exists():
                lab.on(platform, "down")


def ssh(lab: Matrix, platform: str, capfd: pytest.CaptureFixture[str], machine: str,
        command: str) -> tuple[int, str]:
    """A command on a platform lab's machine as root; its output (reglab ssh prints it as it comes)."""
    capfd.readouterr()
    status, said = lab.on(platform, "ssh", machine, "--", "sudo sh -c " + shlex.quote(command))
    return status, capfd.readouterr().out + said


def test_one_command_runs_every_edition_on_both_platforms(matrix: Matrix) -> None:
    assert matrix.status == 1, matrix.out  # the as-written edition fails steps on both platforms
    for platform in PLATFORMS:
        for edition in ("modern", "fixed"):
            result = matrix.result(edition, platform)
            assert result.platform == platform
            assert result.counts[Status.PASS] == 11, (edition, platform, result.to_dict())
        assert f"modern on {platform}: \nmodern: 11 passed, 0 failed, 0 not run" in matrix.out, matrix.out
    maintainer = (matrix.reports / "maintainer.md").read_text()
    header = next(line for line in maintainer.splitlines() if line.startswith("| step |"))
    assert header == ("| step | modern on debian12 | modern on debian13 | as-written on debian12 | "
                      "as-written on debian13 | fixed on debian12 | fixed on debian13 |"), header
    assert "## Changed between platforms" in maintainer
    assert "- compose-registry (as-written): debian12 pass; debian13 FAIL" in maintainer, maintainer
    assert "Changed by reglab for today's tools" in (matrix.reports / "tutorial.fixed.md").read_text()
    assert "+docker pull [YOUR-DOMAIN]/test-image\n" in (matrix.reports / "tutorial.patch").read_text()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_as_written_has_every_step_judged_and_every_failure_diagnosed(matrix: Matrix, platform: str) -> None:
    report = matrix.result("as-written", platform)
    steps = {s.step_id: s for s in report.steps}
    assert len(steps) == 11 and not [s for s in report.steps if s.status is Status.NOT_RUN], report.to_dict()
    failed = [s for s in report.steps if s.status is Status.FAIL]
    print(f"\n{platform} as-written: " + "; ".join(
        f"{s.step_id} {s.status.value}" + (f" ({', '.join(c.id for c in s.causes)})" if s.causes else "")
        for s in report.steps))
    undiagnosed = [(s.step_id, s.seen[-300:]) for s in failed if s.diagnosis is None]
    assert undiagnosed == [], undiagnosed
    # Each platform's own first failure, matched on the real output.
    if platform == "debian12":  # Docker 20.10 refuses a Common-Name-only certificate; Compose v1 runs format 1
        assert steps["compose-registry"].status is Status.PASS
        assert steps["client-login"].diagnosis.id == "legacy-cn", steps["client-login"]
        assert "legacy Common Name field" in steps["client-login"].seen
    else:  # Compose v2 refuses the tutorial's file format 1
        assert steps["compose-registry"].diagnosis.id == "compose-v1-file", steps["compose-registry"]
        assert "Additional property registry is not allowed" in steps["compose-registry"].seen
    assert {c.id for c in steps["server-pull"].causes} >= {"no-basic-auth"}, steps["server-pull"]


def test_debian13_machines_run_debian13s_tools(matrix: Matrix, capfd: pytest.CaptureFixture[str]) -> None:
    status, seen = ssh(matrix, "debian13", capfd, "registry",
                       "docker-compose version; readlink -f /usr/bin/docker-compose; "
                       "docker version -f '{{.Server.Version}}'; docker images")
    assert status == 0, seen
    assert "Docker Compose version 2.26" in seen and "/usr/libexec/docker/cli-plugins/docker-compose" in seen
    assert "26.1.5" in seen
    for repository, tag in (("reglab/nginx", "1.26.3-debian13"), ("reglab/docker-registry", "2.8.3-debian13"),
                            ("reglab/busybox", "1.37.0-debian13")):
        assert repository in seen and tag in seen, seen


def test_the_fixed_edition_wrote_the_fixed_texts_files(matrix: Matrix, capfd: pytest.CaptureFixture[str]) -> None:
    """The last edition the matrix ran on Debian 13 is `fixed`: its files on the machine are the fixed text's
    blocks (no `restart:`, no `ssl_protocols`: those are the modern templates'), not a template's."""
    status, seen = ssh(matrix, "debian13", capfd, "registry",
                       "cat /root/docker-registry/docker-compose.yml /root/docker-registry/nginx/registry.conf")
    assert status == 0, seen
    assert "depends_on:" in seen and "- 443:443" in seen and "restart:" not in seen, seen
    assert "listen 443 ssl;" in seen and "ssl on;" not in seen and "ssl_protocols" not in seen, seen
    log = "\n".join(p.read_text() for p in (matrix.platform_file("debian13").parent / ".lab"
                                             / f"{NAME}-debian13" / "logs").glob("*.log"))
    assert "subjectAltName=DNS:myregistrydomain.com" in log and "docker pull myregistrydomain.com/test-image" in log


def test_the_ipv6_cause_of_docker_26_is_diagnosed_on_its_real_output(matrix: Matrix,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """Without provisioning's DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE, Docker 26 in a machine refuses containers."""
    dropin = "/etc/systemd/system/docker.service.d/reglab-restarts.conf"
    off = (f"cp {dropin} /root/dropin.bak && sed -i '/DOCKER_ALLOW_IPV6/d' {dropin} && systemctl daemon-reload "
           "&& systemctl restart docker && docker run --rm reglab/busybox:1.37.0-debian13 true 2>&1; true")
    try:
        status, seen = ssh(matrix, "debian13", capfd, "client", off)
        assert status == 0, seen
        found = diagnosis.diagnose(seen)
        assert found is not None and found.id == "docker-ipv6-control", seen
    finally:
        ssh(matrix, "debian13", capfd, "client", f"cp /root/dropin.bak {dropin} && systemctl daemon-reload && "
                                                 "systemctl restart docker")
    status, seen = ssh(matrix, "debian13", capfd, "client", "docker run --rm reglab/busybox:1.37.0-debian13 echo ok")
    assert status == 0 and "ok" in seen, seen


def test_a_wrong_block_in_the_fixed_text_fails_the_fixed_edition_at_its_step(matrix: Matrix,
                                                                            tmp_path: Path) -> None:
    """The fixed edition writes what the fixed text says: a fix of block 12 (the Compose file) with its
    `volumes:` one level too far out makes compose-registry fail on Debian 13, where the right one passed."""
    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(scenario.default_path().parent / "tutorial", folder / "tutorial")
    shutil.copy(TUTORIAL, folder / "tutorial.md")
    data = yaml.safe_load(scenario.default_path().read_text())
    (fix,) = [fix for fix in data["fixes"] if fix["block"] == 12]
    wrong = fix["text"].replace("    volumes:\n      - ./data:/data", "  volumes:\n    - ./data:/data")
    assert wrong != fix["text"]
    fix["text"] = wrong
    (folder / "tutorial.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert matrix.on("debian13", "reset")[0] == 0
    status, out = matrix.on("debian13", "--scenario", str(folder / "tutorial.yaml"), "--edition", "fixed",
                            "solve", "compose-registry")
    assert status == 1, out
    assert "compose-registry" in out and "volumes" in out, out
