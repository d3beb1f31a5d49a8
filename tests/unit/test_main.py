"""`python -m lab` and `python -m lab.cli`: reglab where its console script is not on PATH.

Apart from tests/unit/test_cli.py, whose guard fails any test that starts a process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["lab", "lab.cli"])
def test_python_dash_m_runs_reglab(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60,
                          cwd=PROJECT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: reglab") and "COMMAND" in done.stdout


def test_python_dash_m_exits_with_reglabs_status(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "--lab", str(tmp_path / "nowhere.yml"), "steps"],
                          capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert done.returncode == 2 and done.stderr.startswith("reglab: error: "), done.stderr


def test_a_students_command_does_not_load_the_class_code() -> None:
    """`reglab check` waits for none of the class's code (the dashboard, the gradebook, the room)."""
    import subprocess
    import sys

    code = "import sys, lab.cli.main; print(sorted(m for m in sys.modules if m.startswith('lab.classroom.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "['lab.classroom.roster']"
