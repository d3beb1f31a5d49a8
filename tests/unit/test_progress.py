"""Progress: the phase times a run reports, and the lines a person follows."""

import io

import pytest

from lab.common.progress import Progress


def test_a_phase_is_timed_and_printed_even_when_it_fails() -> None:
    out = io.StringIO()
    progress = Progress(out)
    with progress.phase("boot", "boot registry, client"):
        pass
    with pytest.raises(ZeroDivisionError), progress.phase("provision"):
        1 / 0  # noqa: B018
    assert set(progress.phases) == {"boot", "provision"}
    assert all(isinstance(v, float) and v >= 0 for v in progress.phases.values())
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("boot registry, client ...")
    assert "boot registry, client done in" in lines[1]
    assert "provision FAILED in" in lines[3]


def test_a_phase_run_twice_adds_up_and_quiet_prints_nothing() -> None:
    out = io.StringIO()
    progress = Progress(out, quiet=True)
    for _ in range(2):
        with progress.phase("steps"):
            pass
    assert list(progress.phases) == ["steps"]
    assert out.getvalue() == ""


def test_progress_knows_the_running_phases_and_the_one_interrupted() -> None:
    """What an interrupted run records in its state file, and says, comes from here."""
    out = io.StringIO()
    progress = Progress(out)
    seen: list[list[str]] = []
    with pytest.raises(KeyboardInterrupt), progress.phase("boot"), progress.phase("node image"):
        seen.append(progress.running)
        raise KeyboardInterrupt
    assert seen == [["boot", "node image"]]
    assert progress.interrupted == "node image"  # the innermost: where it really was
    assert progress.running == []
    assert "node image interrupted in" in out.getvalue()


def test_a_failure_is_not_an_interruption() -> None:
    progress = Progress(io.StringIO())
    with pytest.raises(RuntimeError), progress.phase("provision"):
        raise RuntimeError("apt failed")
    assert progress.interrupted is None
    assert progress.running == []
