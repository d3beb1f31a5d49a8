"""Issue 10 item 5 on real machines: a second tutorial, run by the same `lab/` on the docker provider.

The scenario is the one the unit tests load (tests/unit/test_second_scenario.py): two machines,
`web` and `db`, a page written from its own template, served by nginx built from its own recipe
(a copy of the tutorial's, so the build is the tutorial's image, found by its recipe hash), and
read from `db` by the name it declares. It runs beside the session's lab, as a lab of its own:
its own name, its own subnet (192.168.78.0/24) and its own folder (tmp_path) for state and Vagrant.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
NAME = "reglab-second"
MACHINES = {"web": "192.168.78.10", "db": "192.168.78.11"}


def second_scenario() -> ModuleType:
    """The unit tests' module, for its scenario: one scenario, not a second copy to drift."""
    path = PROJECT / "tests" / "unit" / "test_second_scenario.py"
    spec = importlib.util.spec_from_file_location("second_scenario", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def options(scenario: Path) -> tuple[str, ...]:
    """Its scenario, and the docker provider whatever the session's REGLAB_PROVIDER names."""
    return ("--scenario", str(scenario), "--provider", "docker")


def containers() -> list[str]:
    done = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.reglab.lab={NAME}"],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


@pytest.fixture
def second_lab(tmp_path: Path, lab_cli):
    """The second scenario's folder and a lab file for it; its machines destroyed afterwards whatever happens."""
    scenario = second_scenario().write_second(tmp_path / "second")
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text(yaml.safe_dump({
        "name": NAME,
        "machines": {name: {"ip": ip} for name, ip in MACHINES.items()},
    }))
    try:
        yield lab_file, scenario
    finally:
        lab_cli(lab_file, *options(scenario), "down")


def test_a_second_tutorial_runs_on_the_docker_provider_with_no_change_to_lab(second_lab, capfd, lab_cli) -> None:
    lab_file, scenario = second_lab
    status, out, err = lab_cli(lab_file, *options(scenario), "run")
    assert status == 0, out + err

    status, out, err = lab_cli(lab_file, *options(scenario), "steps")
    assert status == 0, err
    assert {line.split()[0]: line.split()[1] for line in out.splitlines()} == {
        "page": "pass", "hosts": "pass", "serve": "pass"}

    capfd.readouterr()
    status, out, err = lab_cli(lab_file, *options(scenario), "ssh", "db", "--", "curl", "-fsS", "http://shop.example:8080/")
    assert status == 0, err
    shown = capfd.readouterr().out  # `reglab ssh MACHINE -- CMD` prints the command's own output as it comes
    assert "served by shop.example, db at 192.168.78.11:5432, on 8080" in shown

    status, out, err = lab_cli(lab_file, *options(scenario), "status")
    assert status == 0, err
    assert all(f"{name}" in out and ip in out for name, ip in MACHINES.items()), out

    # Its reset takes what its steps made, by its own reset commands: every check fails again.
    status, out, err = lab_cli(lab_file, *options(scenario), "reset")
    assert status == 0, out + err
    for step in ("page", "hosts", "serve"):
        status, out, err = lab_cli(lab_file, *options(scenario), "check", step)
        assert status == 1, f"{step} still passes after reset: {out}{err}"

    status, out, err = lab_cli(lab_file, *options(scenario), "down")
    assert status == 0, out + err
    assert containers() == []
