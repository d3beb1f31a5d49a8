"""Issue 20: the `platform` key, the platform table, the matrix's labs and the matrix report (no machines)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lab.cli.main import main
from lab.common.errors import ConfigError, ExitStatus, LabError
from lab.engine import matrix
from lab.model import scenario as scenarios
from lab.model.diagnosis import cause_by_id
from lab.model.lab import default_scenario
from lab.model.labfile import load
from lab.model.platforms import DEFAULT_PLATFORM, PLATFORMS, for_suite
from lab.model.results import RunResult, Status, StepResult
from lab.reports.files import write_reports
from lab.reports.maintainer import TextCheck, changed_between_platforms, matrix_rows, render_matrix_markdown

STARTED = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
scenarios.load(default_scenario(), "modern")  # the tutorial's own causes, known by id from here on


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text(text)
    return path


def test_every_platform_is_a_debian_release_with_its_own_suite_and_tools() -> None:
    assert set(PLATFORMS) == {"debian12", "debian13"}
    assert DEFAULT_PLATFORM in PLATFORMS
    assert {p.suite for p in PLATFORMS.values()} == {"bookworm", "trixie"}
    assert PLATFORMS["debian13"].tools["docker-compose"].startswith("2.")  # Compose v2
    assert PLATFORMS["debian12"].tools["docker-compose"].startswith("1.")  # Compose v1
    assert for_suite("trixie") is PLATFORMS["debian13"] and for_suite("sid") is None
    assert "docker-cli" in PLATFORMS["debian13"].extra_packages


def test_the_platform_key_is_read_and_names_the_box_it_builds(tmp_path: Path) -> None:
    lab = load(write(tmp_path, "platform: debian13\n"), environ={})
    assert lab.platform == "debian13" and lab.debian.suite == "trixie"
    assert lab.boxes["debian"].name == "reglab/debian13"
    assert load(write(tmp_path, ""), environ={}).platform == DEFAULT_PLATFORM
    assert load(write(tmp_path, ""), environ={"REGLAB_PLATFORM": "debian13"}).platform == "debian13"


@pytest.mark.parametrize("value", ["debian14", "bookworm", "12", "[debian12]"])
def test_a_bad_platform_is_one_error_naming_the_file_and_the_key(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"platform: {value}\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: platform: expected one of debian12, debian13"), message
    assert info.value.exit_status == ExitStatus.USAGE


def test_a_bad_platform_exits_2_from_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path, "platform: debian11\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(path), "status"], stdout=out, stderr=err) == 2
    assert f"{path}: platform: expected one of debian12, debian13, got 'debian11'" in err.getvalue()
    assert "Traceback" not in err.getvalue()


@pytest.mark.parametrize(("argv", "words"), [
    (["--platform", "debian14", "run"], "--platform: expected debian12 or debian13 (several comma-separated), "
                                        "got 'debian14'"),
    (["--platform", "debian12,debian12", "run"], "names a platform twice"),
    (["--platform", "debian12,debian13", "steps"], "several platforms only for `run`"),
])
def test_bad_platform_options_exit_2(tmp_path: Path, argv: list[str], words: str) -> None:
    path = write(tmp_path, "")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(path), *argv], stdout=out, stderr=err) == 2
    assert words in err.getvalue()


def test_each_platform_lab_has_its_own_name_and_subnet(tmp_path: Path) -> None:
    lab = load(write(tmp_path, "name: demo\nscenario: null\n"), environ={})
    files = {p: matrix.write_lab_file(lab, p) for p in PLATFORMS}
    labs = {p: load(path, environ={}) for p, path in files.items()}
    assert {p: labs[p].name for p in labs} == {"debian12": "demo-debian12", "debian13": "demo-debian13"}
    assert {p: labs[p].platform for p in labs} == {"debian12": "debian12", "debian13": "debian13"}
    networks = {lab.network, *(other.network for other in labs.values())}
    assert len(networks) == 3  # the lab's own and one each: no shared Docker network
    assert labs["debian13"].machine("registry").ip == "192.168.35.10"
    assert files["debian13"].parent == lab.state_dir / "platforms" / "debian13"
    assert yaml.safe_load(files["debian13"].read_text())["name"] == "demo-debian13"
    assert files["debian13"].stat().st_mode & 0o777 == 0o600  # it may hold a user's password


def test_the_matrix_needs_machines_reglab_makes(tmp_path: Path) -> None:
    machines = "machines:\n  registry: {ip: 10.0.0.5, user: u}\n  client: {ip: 10.0.0.6, user: u}\n"
    lab = load(write(tmp_path, "provider: ssh\n" + machines), environ={})
    with pytest.raises(LabError, match="provider: ssh"):
        matrix.write_lab_file(lab, "debian13")


def step(step_id: str, status: Status, cause: str | None = None) -> StepResult:
    return StepResult(step_id, step_id, status, 1.0, expected="it works" if cause else "",
                      seen=f"saw {cause}" if cause else "", diagnosis=cause_by_id(cause) if cause else None)


def run(edition: str, platform: str, *steps: StepResult) -> RunResult:
    return RunResult(edition, STARTED, list(steps), {}, STARTED, platform)


RESULTS = [
    run("modern", "debian12", step("compose-registry", Status.PASS), step("client-login", Status.PASS)),
    run("modern", "debian13", step("compose-registry", Status.PASS), step("client-login", Status.PASS)),
    run("as-written", "debian12", step("compose-registry", Status.PASS),
        step("client-login", Status.FAIL, "legacy-cn")),
    run("as-written", "debian13", step("compose-registry", Status.FAIL, "compose-v1-file"),
        step("client-login", Status.FAIL, "legacy-cn")),
]


def test_the_matrix_is_step_by_edition_and_platform_with_every_cause() -> None:
    header, rows = matrix_rows(RESULTS)
    assert header == ["step", "modern on debian12", "modern on debian13", "as-written on debian12",
                      "as-written on debian13"]
    assert rows[0] == ["compose-registry", "pass", "pass", "pass", "FAIL (compose-v1-file)"]
    assert rows[1] == ["client-login", "pass", "pass", "FAIL (legacy-cn)", "FAIL (legacy-cn)"]


def test_the_matrix_says_which_steps_changed_verdict_between_platforms() -> None:
    assert changed_between_platforms(RESULTS) == [
        "compose-registry (as-written): debian12 pass; debian13 FAIL (compose-v1-file)"]
    assert changed_between_platforms(RESULTS[:2]) == []


def test_the_matrix_report_gives_every_fix_and_the_maintainer_report_picks_it(tmp_path: Path) -> None:
    text = render_matrix_markdown(RESULTS, TextCheck(cited=3))
    assert "## Changed between platforms" in text
    assert "### compose-registry (as-written on debian13)" in text
    assert cause_by_id("compose-v1-file").fix in text and cause_by_id("legacy-cn").fix in text
    # One lab's reports with each platform lab's beside it: the report reads them all.
    lab = load(write(tmp_path, "name: demo\n"), environ={})
    for result in RESULTS:
        name = matrix.platform_name("demo", result.platform)
        write_reports(result, lab.state_dir / "platforms" / result.platform / ".lab" / name / "reports")
    found = matrix.matrix_results(lab)
    assert sorted((r.edition, r.platform) for r in found) == sorted((r.edition, r.platform) for r in RESULTS)


def test_the_vagrantfile_defaults_to_the_same_platform_as_reglab() -> None:
    """Plain `vagrant up` boots what reglab would: its default platform is DEFAULT_PLATFORM."""
    text = (Path(__file__).resolve().parents[2] / "lab" / "machines" / "Vagrantfile").read_text()
    assert f'lab.fetch("platform", "{DEFAULT_PLATFORM}")' in text
    assert '"reglab/node:#{platform}"' in text and '"reglab/#{platform}"' in text


def test_the_shipped_lab_file_and_init_name_the_default_platform() -> None:
    from lab.cli.scaffold import LAB_YML

    shipped = (Path(__file__).resolve().parents[2] / "lab.yml").read_text()
    assert f"\nplatform: {DEFAULT_PLATFORM}\n" in shipped and f"\nplatform: {DEFAULT_PLATFORM}\n" in LAB_YML


def test_each_run_of_the_matrix_reports_its_own_phases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --platform A,B` runs six sessions, three per platform's child; each run's summary gives its own
    boot and provision times, not those of every run before it added up (seen in the matrix e2e run)."""
    from lab.cli import matrixrun

    runs: list[dict[str, float]] = []
    platforms: list[str | None] = []

    class FakeSession:
        def __init__(self, progress: object = None) -> None:
            self.progress = progress

        @classmethod
        def from_file(cls, path: Path, overrides: dict, progress: object) -> FakeSession:
            session = cls(progress=progress)
            session.edition = overrides["edition"]
            platforms.append(overrides["platform"])
            session.lab = type("L", (), {"state_dir": tmp_path})()
            session.state = type("St", (), {"data": {}})()
            session.lock = type("K", (), {"release": lambda self: None})()
            return session

        def start(self) -> None:
            self.progress.phases["boot"] = self.progress.phases.get("boot", 0.0) + 10.0

        def run(self, keep_going: bool) -> RunResult:
            runs.append(dict(self.progress.phases))
            return RunResult(self.edition, STARTED, [StepResult("s", "s", Status.PASS)], dict(self.progress.phases))

    monkeypatch.setattr(matrixrun, "Session", FakeSession)
    out = io.StringIO()
    editions = ["modern", "as-written", "fixed"]
    for platform in ("debian12", "debian13"):
        # Each run on its own platform, whatever $REGLAB_PLATFORM says (tox pins it; the e2e matrix ran
        # Debian 12 machines as "debian13" while the override was None).
        assert matrixrun.platform_runs(tmp_path / platform / "lab.yml", platform, editions, {"platform": None},
                                       False, True, out, io.StringIO())
    assert runs == [{"boot": 10.0}] * 6
    assert platforms == ["debian12"] * 3 + ["debian13"] * 3
    assert out.getvalue().count("(boot 10.0s)") == 6
