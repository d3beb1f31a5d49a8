"""Issue 20: `reglab run --platform A,B` runs its platform labs at once (lab.cli.matrixrun), no machines.

Each platform's child is a real process here, a short Python script standing in for a lab's runs (what a
child prints and how it exits), so what is tested is the scheduling: how many at once, one platform's
failure beside another's runs, the order of the summaries, Ctrl-C and the bounds.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.cli import matrixrun
from lab.cli.main import main
from lab.cli.matrixrun import STOPPED, Outcome, Part, Runner, default_jobs, spawn
from lab.common.errors import ExitStatus, LabFailure
from lab.common.progress import Progress
from lab.model.labfile import load


def script(body: str) -> list[str]:
    """A child standing in for a platform's runs: `body`, with os, sys, time, signal and Path at hand."""
    return [sys.executable, "-c", "import os, sys, time, signal\nfrom pathlib import Path\n" + textwrap.dedent(body)]


def part(tmp_path: Path, platform: str, body: str) -> Part:
    return Part(platform, tmp_path / platform / "lab.yml", script(body), tmp_path / platform / "run.log")


def summary(edition: str, platform: str, failed: int = 0) -> str:
    """What a child prints on stdout for one run, as platform_runs does."""
    return f"print('{edition} on {platform}: \\n{edition}: {11 - failed} passed, {failed} failed, 0 not run')\n"


def test_the_platforms_run_at_once_and_their_summaries_come_in_the_platforms_order(tmp_path: Path) -> None:
    """Each child waits (at most 20 s) until the other has started: both finish only if they ran at once.
    debian13 ends first; its summary still comes second, after debian12's."""
    here = tmp_path.as_posix()
    rendezvous = textwrap.dedent("""
        Path('{here}/{me}.started').touch()
        deadline = time.monotonic() + 20
        while not Path('{here}/{other}.started').exists():
            assert time.monotonic() < deadline, 'the other platform never started: not at once'
            time.sleep(0.05)
    """)
    parts = [
        part(tmp_path, "debian12", rendezvous.format(here=here, me="a", other="b")
             + "time.sleep(0.5)\nprint('[   1.0s] boot ...', file=sys.stderr)\n" + summary("modern", "debian12")),
        part(tmp_path, "debian13", rendezvous.format(here=here, me="b", other="a") + summary("modern", "debian13")),
    ]
    err = io.StringIO()
    started = time.monotonic()
    outcomes = Runner(parts, 2, Progress(err)).run()
    assert time.monotonic() - started < 15
    assert [o.platform for o in outcomes] == ["debian12", "debian13"]
    assert [o.code for o in outcomes] == [0, 0], err.getvalue()
    assert outcomes[0].out.startswith("modern on debian12: \nmodern: 11 passed")
    # Progress lines say which platform they are from; each platform's log has all it printed.
    assert "debian12: [   1.0s] boot ..." in err.getvalue()
    assert "modern on debian12" in (tmp_path / "debian12" / "run.log").read_text()
    assert "[   1.0s] boot ..." in (tmp_path / "debian12" / "run.log").read_text()
    assert oct((tmp_path / "debian12" / "run.log").stat().st_mode & 0o777) == "0o600"
    assert err.getvalue().index("debian13: done") < err.getvalue().index("debian12: done")


def test_jobs_1_runs_the_platforms_one_after_another(tmp_path: Path) -> None:
    body = """
        Path('{here}/{me}.span').write_text(str(time.time()))
        time.sleep(0.3)
        Path('{here}/{me}.span').write_text(Path('{here}/{me}.span').read_text() + ' ' + str(time.time()))
    """
    parts = [part(tmp_path, p, body.format(here=tmp_path.as_posix(), me=p)) for p in ("debian12", "debian13")]
    outcomes = Runner(parts, 1, Progress(io.StringIO())).run()
    assert [o.code for o in outcomes] == [0, 0]
    (a0, a1), (b0, b1) = ([float(x) for x in (tmp_path / f"{p}.span").read_text().split()]
                          for p in ("debian12", "debian13"))
    assert a1 <= b0, "debian13 started before debian12 had ended"


def test_a_failure_on_one_platform_does_not_stop_the_other(tmp_path: Path) -> None:
    """debian12's child stops at once on a failure (its one line on stderr); debian13 goes on and passes."""
    lab = write_lab(tmp_path)
    bodies = {
        "debian12": "print('reglab: failed: boom', file=sys.stderr)\nsys.exit(3)\n",
        "debian13": "time.sleep(1)\n" + summary("modern", "debian13") + summary("fixed", "debian13"),
    }
    out, err = io.StringIO(), io.StringIO()
    status, outcomes = matrixrun.matrix_run(
        lab, ["debian12", "debian13"], ["modern", "fixed"], None, {}, False, False, out, err,
        start=lambda p: spawn(dataclasses.replace(p, argv=script(bodies[p.platform]))))
    assert status == ExitStatus.FAILED
    assert [(o.platform, o.code, o.completed) for o in outcomes] == [("debian12", STOPPED, False),
                                                                     ("debian13", 0, True)]
    text = out.getvalue()
    assert "debian12: not every edition judged (stopped by a failure: reglab: failed: boom); its log: " in text
    assert "modern on debian13: \nmodern: 11 passed" in text and "fixed on debian13" in text
    assert "debian12: reglab: failed: boom" in err.getvalue()


@pytest.mark.parametrize(("codes", "expected"), [
    ((0, 0), ExitStatus.OK),
    ((0, 1), ExitStatus.FAILED),  # a run failed (as-written does, on both platforms): 1, as one after another
    ((1, 1), ExitStatus.FAILED),
    ((STOPPED, 0), ExitStatus.FAILED),
    ((2, 0), ExitStatus.USAGE),
])
def test_the_exit_code_is_the_sequential_one(tmp_path: Path, codes: tuple[int, int], expected: ExitStatus) -> None:
    lab = write_lab(tmp_path)
    bodies = dict(zip(("debian12", "debian13"), (f"sys.exit({code})" for code in codes), strict=True))
    status, _ = matrixrun.matrix_run(
        lab, ["debian12", "debian13"], ["modern"], 2, {}, False, True, io.StringIO(), io.StringIO(),
        start=lambda p: spawn(dataclasses.replace(p, argv=script(bodies[p.platform]))))
    assert status == expected


class InterruptOn(io.StringIO):
    """A stream that raises KeyboardInterrupt (as a Ctrl-C would, in the main thread) at the first line
    holding `text`: unit tests run with SIGINT ignored, and the parent's Ctrl-C comes as one anyway."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.fired = text, False

    def write(self, s: str) -> int:
        written = super().write(s)
        if not self.fired and self.text in s:
            self.fired = True
            raise KeyboardInterrupt
        return written


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too (its parent, this test, has not reaped it yet).
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


def test_ctrl_c_stops_every_child_within_seconds_and_starts_no_other(tmp_path: Path) -> None:
    """Two children running (a third waits for a slot): a Ctrl-C asks both to stop (SIGTERM, which a
    child takes as its own Ctrl-C: it cleans up, then exits 130), waits for them, never starts the third."""
    here = tmp_path.as_posix()
    body = """
        def stop(signum, frame):
            Path('{here}/{me}.cleaned').touch()
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        Path('{here}/{me}.pid').write_text(str(os.getpid()))
        print('{me} ready', file=sys.stderr, flush=True)
        time.sleep(60)
    """
    parts = [part(tmp_path, name, body.format(here=here, me=name)) for name in ("a", "b", "c")]
    stream = InterruptOn("b ready")
    runner = Runner(parts, 2, Progress(stream), stop_wait=10)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert time.monotonic() - started < 10
    for name in ("a", "b"):
        assert (tmp_path / f"{name}.cleaned").exists(), stream.getvalue()
        assert gone(int((tmp_path / f"{name}.pid").read_text()))
        assert runner.outcomes[name].code == ExitStatus.INTERRUPTED
    assert not (tmp_path / "c.pid").exists() and runner.outcomes["c"].code is None
    assert runner.running == {}


def test_a_child_that_does_not_stop_is_killed_after_its_bound(tmp_path: Path) -> None:
    body = """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path('{here}/pid').write_text(str(os.getpid()))
        print('ready', file=sys.stderr, flush=True)
        time.sleep(60)
    """
    runner = Runner([part(tmp_path, "a", body.format(here=tmp_path.as_posix()))], 1, Progress(InterruptOn("ready")),
                    stop_wait=1, kill_wait=5)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert time.monotonic() - started < 8
    assert runner.outcomes["a"].code == -9 and runner.outcomes["a"].why() == "killed by SIGKILL"
    assert gone(int((tmp_path / "pid").read_text()))


def test_a_platform_past_its_bound_is_stopped_and_the_others_finish(tmp_path: Path) -> None:
    slow = "signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))\ntime.sleep(60)\n"
    parts = [part(tmp_path, "a", slow), part(tmp_path, "b", summary("modern", "b"))]
    err = io.StringIO()
    outcomes = Runner(parts, 2, Progress(err), timeout=1, stop_wait=5).run()
    assert outcomes[0].timed_out and not outcomes[0].completed and outcomes[0].why() == "stopped after 1s"
    assert outcomes[1].completed and "a: still running after 1s: stopping it" in err.getvalue()


def test_a_child_that_cannot_start_is_its_platforms_failure(tmp_path: Path) -> None:
    parts = [Part("a", tmp_path / "a.yml", ["/nonexistent/python"], tmp_path / "a" / "run.log"),
             part(tmp_path, "b", "pass")]
    outcomes = Runner(parts, 2, Progress(io.StringIO())).run()
    assert outcomes[0].code == STOPPED and "could not start" in outcomes[0].said
    assert outcomes[1].code == 0


# --- the child --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raised", "passed", "expected"), [
    (None, True, ExitStatus.OK),
    (None, False, ExitStatus.FAILED),  # every edition judged, one failed
    (LabFailure("vagrant up failed"), True, STOPPED),  # not every edition judged
    (KeyboardInterrupt(), True, ExitStatus.INTERRUPTED),
])
def test_the_childs_exit_says_whether_every_edition_was_judged(monkeypatch: pytest.MonkeyPatch, raised,  # noqa: ANN001
                                                               passed: bool, expected: int) -> None:
    seen = {}

    def fake_runs(lab_file, platform, editions, overrides, keep_going, quiet, out, err) -> bool:  # noqa: ANN001
        seen.update(lab_file=lab_file, platform=platform, editions=editions, overrides=overrides)
        if raised is not None:
            raise raised
        return passed

    monkeypatch.setattr(matrixrun, "platform_runs", fake_runs)
    argv = matrixrun.child_argv(Path("/x/lab.yml"), "debian13", ["modern", "as-written"], {"images.source": "build"},
                                False, True)
    assert argv[:3] == [sys.executable, "-m", "lab.cli.matrixrun"]
    err = io.StringIO()
    assert matrixrun.child_main(argv[3:], io.StringIO(), err) == expected
    assert seen == {"lab_file": Path("/x/lab.yml"), "platform": "debian13", "editions": ["modern", "as-written"],
                    "overrides": {"images.source": "build"}}


def test_the_child_refuses_anything_but_its_spec() -> None:
    err = io.StringIO()
    assert matrixrun.child_main(["not json"], io.StringIO(), err) == ExitStatus.USAGE
    assert err.getvalue().count("\n") == 1 and "one JSON spec" in err.getvalue()


def test_the_child_module_runs_as_a_program(tmp_path: Path) -> None:
    """`python -m lab.cli.matrixrun` from anywhere (spawn puts reglab's package on its path)."""
    outcome = Runner([Part("a", tmp_path / "lab.yml", [sys.executable, "-m", "lab.cli.matrixrun", "{}"],
                           tmp_path / "run.log")], 1, Progress(io.StringIO())).run()[0]
    assert outcome.code == ExitStatus.USAGE and "one JSON spec" in outcome.said


# --- how many at once -------------------------------------------------------------------------------


def test_by_default_every_platform_at_once_within_the_hosts_cpus_and_memory() -> None:
    assert default_jobs(2, "docker", 2, 20000) == (2, "2 platforms")
    assert default_jobs(2, "docker", 1, 20000) == (1, "1 CPU")  # a one-CPU host: one after another
    assert default_jobs(2, "docker", 8, 2000) == (1, "2000 MiB available, 1536 MiB a lab")
    assert default_jobs(2, "libvirt", 8, 5000)[0] == 1  # VMs need more
    assert default_jobs(2, "docker", 8, 100)[0] == 1  # never 0
    assert default_jobs(2, "docker", 8, None)[0] == 2  # no /proc/meminfo: the CPUs decide


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal: 24683000 kB\nMemAvailable:   2097152 kB\n")
    assert matrixrun.available_mib(tmp_path / "meminfo") == 2048
    assert matrixrun.available_mib(tmp_path / "missing") is None


@pytest.mark.parametrize(("args", "said"), [
    (["run", "--jobs", "2"], "--jobs: only with several platforms"),
    (["--platform", "debian12,debian13", "run", "--jobs", "0"], "expected a number of platform labs from 1 to 2"),
])
def test_jobs_is_checked(tmp_path: Path, args: list[str], said: str) -> None:
    write_lab(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--lab", str(tmp_path / "lab.yml"), *args], out, err) == ExitStatus.USAGE
    assert said in err.getvalue(), err.getvalue()


def test_the_outcome_says_why_a_platform_was_not_judged() -> None:
    assert Outcome("a", None).why() == "not started"
    assert Outcome("a", ExitStatus.INTERRUPTED).why() == "interrupted"
    assert Outcome("a", -15).why() == "killed by SIGTERM"
    assert Outcome("a", 1).completed and not Outcome("a", STOPPED).completed


def write_lab(tmp_path: Path):  # noqa: ANN201 - a Lab
    (tmp_path / "lab.yml").write_text("name: m\nprovider: docker\nmachines:\n  registry: {ip: 10.88.200.10}\n"
                                      "  client: {ip: 10.88.200.11}\n")
    return load(tmp_path / "lab.yml", environ={})
