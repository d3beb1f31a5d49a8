"""`reglab run --platform A,B`: a child process per platform lab, at most `jobs` at once.

Each platform lab is independent (its own lab file, /24, names and state:
lab.engine.matrix), so the platforms run at the same time; the editions of
one platform run one after another in its child, on the same machines.

Why child processes and not threads: a lab's Ctrl-C path (Vagrant asked to
stop, host commands' process groups ended, the state file told where it
stopped) works in a process's main thread only. A child is `python -m
lab.cli.matrixrun SPEC`, in a session of its own so the terminal's Ctrl-C
reaches only the parent, which passes it on as SIGTERM (which reglab takes
as a Ctrl-C, even where the parent was started with SIGINT ignored) and
waits for each child at most STOP_WAIT seconds before SIGKILL. A child's
progress lines come out prefixed with its platform, and everything it printed
is in `.lab/NAME/platforms/PLATFORM/run.log`; the summaries come at the
end in the platforms' order. One platform's failure never stops another.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from lab.cli.guard import Interrupted, guarded, note_interrupted, signals_as_interrupt
from lab.cli.output import print_summary
from lab.common.errors import ExitStatus
from lab.common.progress import Progress
from lab.engine import matrix
from lab.engine.session import Session
from lab.model.lab import Lab

# A child's exit code when a failure (not a failed step) stopped its runs before every edition was judged:
# the matrix then exits 1, as `reglab` does on a failure, and writes no maintainer's report from stale runs.
STOPPED = 3
PLATFORM_TIMEOUT = 2 * 3600  # seconds for one platform's editions: a bound of last resort (each command has its own)
STOP_WAIT = 30  # seconds a stopped child gets to end as an interrupted reglab does, before SIGKILL
KILL_WAIT = 10  # seconds to wait for a child after SIGKILL, and for its output after it ended
# What one platform lab (two machines, their Docker daemons, image builds) needs free to run beside another,
# by provider, in MiB: docker and incus measured (README); the VMs' from the Vagrantfile's memory, plus room.
LAB_MEMORY_MIB = {"docker": 1536, "incus": 1536, "libvirt": 3072, "virtualbox": 5120}


# --- how many at once ------------------------------------------------------------------------------


def host_cpus() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_mib(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable, in MiB; None where the host does not say."""
    with contextlib.suppress(OSError, ValueError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return None


def default_jobs(platforms: int, provider: str, cpus: int, memory_mib: int | None) -> tuple[int, str]:
    """How many platform labs at once, and why: every platform, but at most one per CPU and one per
    LAB_MEMORY_MIB of available memory; so one at a time on a one-CPU host. Pure."""
    jobs, why = platforms, [f"{platforms} platforms"]
    if cpus < jobs:
        jobs, why = cpus, [f"{cpus} CPU{'s' if cpus != 1 else ''}"]
    need = LAB_MEMORY_MIB.get(provider, max(LAB_MEMORY_MIB.values()))
    if memory_mib is not None and memory_mib // need < jobs:
        jobs, why = memory_mib // need, [f"{memory_mib} MiB available, {need} MiB a lab"]
    return max(1, jobs), why[0]


# --- one platform's editions, in the child -------------------------------------------------------


def platform_runs(lab_file: Path, platform: str, editions: Sequence[str], overrides: dict[str, str | None],
                  keep_going: bool, quiet: bool, out: TextIO, err: TextIO) -> bool:
    """Every edition on one platform lab, one after another on its machines: True if every run passed.

    The as-written edition runs with --keep-going, so every step of it is judged on every platform.
    """
    progress = Progress(err, quiet=quiet)
    passed = True
    for edition in editions:
        progress.say(f"{platform}: the {edition} edition ({lab_file})")
        # A Progress of its own per run: its phases (boot, provision, ...) are that run's, not summed.
        session = Session.from_file(lab_file, {**overrides, "platform": platform, "edition": edition},
                                    Progress(err, quiet=quiet))
        try:
            session.start()
            if session.state.data.get("steps"):
                session.reset()
            result = session.run(keep_going=edition != "modern" or keep_going)
        except KeyboardInterrupt:
            raise Interrupted(note_interrupted(session, "run")) from None
        finally:
            session.lock.release()
        print(f"{edition} on {platform}: ", end="", file=out)
        print_summary(result, out, session.lab.state_dir / "reports")
        out.flush()
        passed &= result.passed
    return passed


def child_argv(lab_file: Path, platform: str, editions: Sequence[str], overrides: dict[str, str | None],
               keep_going: bool, quiet: bool) -> list[str]:
    spec = {"lab_file": str(lab_file), "platform": platform, "editions": list(editions),
            "overrides": overrides, "keep_going": keep_going, "quiet": quiet}
    return [sys.executable, "-m", "lab.cli.matrixrun", json.dumps(spec)]


def child_main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`python -m lab.cli.matrixrun SPEC`: one platform's editions; exit 0 (all passed), 1 (a run failed),
    STOPPED (a failure stopped the runs), 2 (bad input) or 130 (interrupted)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        spec = json.loads(args[0]) if len(args) == 1 else None
        assert isinstance(spec, dict)
        lab_file, platform = Path(spec["lab_file"]), str(spec["platform"])
        editions, overrides = [str(e) for e in spec["editions"]], dict(spec["overrides"])
        keep_going, quiet = bool(spec["keep_going"]), bool(spec["quiet"])
    except (ValueError, KeyError, TypeError, AssertionError):
        print("reglab: error: python -m lab.cli.matrixrun takes one JSON spec, as `reglab run --platform` "
              "writes it", file=err)
        return ExitStatus.USAGE
    finished: list[bool] = []

    def work() -> int:
        passed = platform_runs(lab_file, platform, editions, overrides, keep_going, quiet, out, err)
        finished.append(True)
        return ExitStatus.OK if passed else ExitStatus.FAILED

    with signals_as_interrupt():
        code = guarded(work, err)
    return STOPPED if code == ExitStatus.FAILED and not finished else code


# --- the parent: children, at most `jobs` at once ---------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One platform lab's runs: the child's command and where what it prints goes."""

    platform: str
    lab_file: Path
    argv: list[str]
    log: Path


@dataclass
class Outcome:
    platform: str
    code: int | None  # the child's exit code (negative: killed by that signal); None: never started
    out: str = ""  # what it printed on stdout: its runs' summaries
    seconds: float = 0.0
    log: Path | None = None
    said: str = ""  # its last line on stderr: a failure's one line
    timed_out: float | None = None  # the bound it was stopped at, if it ran past it

    @property
    def completed(self) -> bool:
        """Every edition judged (passed or not): its runs can go into the maintainer's report."""
        return self.code in (ExitStatus.OK, ExitStatus.FAILED) and self.timed_out is None

    def why(self) -> str:
        if self.code is None:
            return "not started"
        if self.timed_out is not None:
            return f"stopped after {self.timed_out:.0f}s"
        if self.code < 0:
            return f"killed by {signal.Signals(-self.code).name}"
        return {ExitStatus.INTERRUPTED: "interrupted", ExitStatus.USAGE: "bad input",
                STOPPED: "stopped by a failure"}.get(self.code, f"exit {self.code}")


Start = Callable[[Part], "subprocess.Popen[str]"]


def spawn(part: Part) -> subprocess.Popen[str]:
    """The child, in a session of its own, reglab's package first on its import path."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the `lab` package
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.Popen(part.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=env, start_new_session=True)


@dataclass
class _Child:
    part: Part
    proc: subprocess.Popen[str]
    log: IO[str]
    started: float
    out: list[str] = field(default_factory=list)
    said: str = ""
    stop_at: float | None = None  # when it gets SIGKILL, once it was asked to stop
    killed_at: float | None = None
    timed_out: float | None = None
    exited_at: float | None = None
    ends: int = 0  # its streams that reached their end


def _open_log(path: Path) -> IO[str]:
    """The platform's run log, new each run; 0600 as the lab's own logs (what the runs printed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", errors="replace")


def _signal(child: _Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


class Runner:
    """Runs the parts, `jobs` at once, reporting on `progress`; the main thread does all printing."""

    def __init__(self, parts: Sequence[Part], jobs: int, progress: Progress, start: Start = spawn,
                 timeout: float = PLATFORM_TIMEOUT, stop_wait: float = STOP_WAIT, kill_wait: float = KILL_WAIT,
                 tick: float = 0.5) -> None:
        self.parts, self.jobs, self.progress, self.start = list(parts), max(1, jobs), progress, start
        self.timeout, self.stop_wait, self.kill_wait, self.tick = timeout, stop_wait, kill_wait, tick
        self.events: queue.Queue[tuple[str, str, object]] = queue.Queue()
        self.running: dict[str, _Child] = {}
        self.outcomes: dict[str, Outcome] = {}

    def run(self) -> list[Outcome]:
        """Every part's outcome, in the parts' order; a Ctrl-C stops every child, then goes on."""
        waiting = list(self.parts)
        try:
            while waiting or self.running:
                while waiting and len(self.running) < self.jobs:
                    self._launch(waiting.pop(0))
                self._step()
        except KeyboardInterrupt:
            self._stop_all()
            raise
        finally:
            for child in self.running.values():  # only after a bug or a third Ctrl-C: never leave one behind
                _signal(child, signal.SIGKILL)
        return [self.outcomes[p.platform] for p in self.parts]

    # -- children ---------------------------------------------------------------------------
    def _launch(self, part: Part) -> None:
        log = _open_log(part.log)
        try:
            proc = self.start(part)
        except OSError as exc:
            log.close()
            self.outcomes[part.platform] = Outcome(part.platform, STOPPED, log=part.log,
                                                   said=f"could not start: {exc.strerror or exc}")
            self.progress.say(f"{part.platform}: could not start ({exc.strerror or exc})")
            return
        child = _Child(part, proc, log, time.monotonic())
        self.running[part.platform] = child
        self.progress.say(f"{part.platform}: started (everything it prints: {part.log})")
        for stream, kind in ((proc.stdout, "out"), (proc.stderr, "err")):
            threading.Thread(target=self._read, args=(part.platform, kind, stream), daemon=True,
                             name=f"matrix-{part.platform}-{kind}").start()

    def _read(self, platform: str, kind: str, stream: IO[str] | None) -> None:
        """A child's stream, line by line, onto the queue; ("eof", ...) at its end."""
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                for line in stream:
                    self.events.put((kind, platform, line))
        self.events.put(("eof", platform, kind))

    def _step(self) -> None:
        """Handle what came (or the time passing): print lines, collect ended children, enforce bounds."""
        with contextlib.suppress(queue.Empty):
            kind, platform, value = self.events.get(timeout=self.tick)
            child = self.running.get(platform)
            if child is not None:
                self._take(child, kind, value)
        now = time.monotonic()
        for child in list(self.running.values()):
            if child.proc.poll() is not None:
                child.exited_at = child.exited_at or now
                # Its last lines first; within a bound, as a grandchild may hold its pipes open.
                if child.ends >= 2 or now > child.exited_at + self.kill_wait:
                    self._ended(child, now)
            elif child.killed_at is not None:
                if now > child.killed_at + self.kill_wait:  # not even SIGKILL ended it: say so and go on
                    self._ended(child, now)
            elif child.stop_at is not None:
                if now > child.stop_at:
                    _signal(child, signal.SIGKILL)
                    child.killed_at = now
            elif now > child.started + self.timeout:
                child.timed_out = self.timeout
                self.progress.say(f"{child.part.platform}: still running after {self.timeout:.0f}s: stopping it")
                self._ask_to_stop(child, now)

    def _take(self, child: _Child, kind: str, value: object) -> None:
        """One line of a child's: stderr (progress, errors) shown with its platform; stdout kept for the end."""
        if kind == "eof":
            child.ends += 1
        elif kind == "err":
            line = str(value).rstrip("\n")
            child.log.write(line + "\n")
            child.said = line or child.said
            self.progress.stream.write(f"{child.part.platform}: {line}\n")
            self.progress.stream.flush()
        else:
            child.out.append(str(value))
            child.log.write(str(value))

    def _ask_to_stop(self, child: _Child, now: float) -> None:
        _signal(child, signal.SIGTERM)  # reglab takes it as a Ctrl-C, SIGINT ignored or not
        if child.stop_at is None:
            child.stop_at = now + self.stop_wait

    def _ended(self, child: _Child, now: float) -> None:
        platform = child.part.platform
        del self.running[platform]
        code = child.proc.poll()
        with contextlib.suppress(OSError):
            child.log.close()
        outcome = Outcome(platform, code if code is not None else -signal.SIGKILL, "".join(child.out),
                          round(now - child.started, 1), child.part.log, child.said, child.timed_out)
        self.outcomes[platform] = outcome
        verdict = ("done" if outcome.code == ExitStatus.OK else "done, a run failed" if outcome.completed
                   else outcome.why())
        self.progress.say(f"{platform}: {verdict} in {outcome.seconds:.1f}s ({len(self.outcomes)}/{len(self.parts)})")

    def _stop_all(self) -> None:
        """After a Ctrl-C: every child asked to stop, waited for within its bound; a second Ctrl-C asks
        again (a child then kills what it waits on), a third kills them."""
        for part in self.parts:
            if part.platform not in self.running and part.platform not in self.outcomes:
                self.outcomes[part.platform] = Outcome(part.platform, None, log=part.log)
        interrupts = 1
        now = time.monotonic()
        for child in self.running.values():
            self._ask_to_stop(child, now)
        while self.running:
            try:
                self._step()
            except KeyboardInterrupt:
                interrupts += 1
                now = time.monotonic()
                for child in self.running.values():
                    if interrupts >= 3:
                        _signal(child, signal.SIGKILL)
                        child.killed_at = child.killed_at or now
                    else:
                        _signal(child, signal.SIGTERM)
                        child.stop_at = min(child.stop_at or now, now + self.kill_wait)


# --- the command ------------------------------------------------------------------------------------------


def matrix_run(lab_: Lab, platforms: list[str], editions: list[str], jobs: int | None,
               overrides: dict[str, str | None], keep_going: bool, quiet: bool, out: TextIO, err: TextIO,
               start: Start = spawn) -> tuple[ExitStatus, list[Outcome]]:
    """Each platform's editions in a child, `jobs` at once (None: default_jobs); the summaries in the
    platforms' order. Exit 0 only if every run on every platform passed, as one after another."""
    progress = Progress(err, quiet=quiet)
    files = {platform: matrix.write_lab_file(lab_, platform) for platform in platforms}  # bad input: before any
    if jobs is None:
        jobs, why = default_jobs(len(platforms), lab_.provider or "", host_cpus(), available_mib())
        progress.say(f"{', '.join(platforms)}: {jobs} at once ({why}; --jobs N to choose)")
    else:
        progress.say(f"{', '.join(platforms)}: {jobs} at once (--jobs)")
    parts = [Part(platform, files[platform],
                  child_argv(files[platform], platform, editions, overrides, keep_going, quiet),
                  files[platform].parent / "run.log") for platform in platforms]
    runner = Runner(parts, jobs, progress, start)
    try:
        outcomes = runner.run()
    except KeyboardInterrupt:
        for outcome in runner.outcomes.values():
            if outcome.code is not None:
                print(f"{outcome.platform}: its machines: `reglab --lab {files[outcome.platform]} status` shows "
                      f"them, `... down` removes them", file=err)
        raise Interrupted(f"the platform labs' runs ({', '.join(platforms)})") from None
    for outcome in outcomes:
        print(outcome.out, end="" if outcome.out.endswith("\n") or not outcome.out else "\n", file=out)
        if not outcome.completed:
            print(f"{outcome.platform}: not every edition judged ({outcome.why()}"
                  + (f": {outcome.said}" if outcome.said else "") + f"); its log: {outcome.log}", file=out)
    if any(o.code == ExitStatus.USAGE for o in outcomes):
        return ExitStatus.USAGE, outcomes
    if not all(o.completed for o in outcomes):
        return ExitStatus.FAILED, outcomes
    return (ExitStatus.OK if all(o.code == ExitStatus.OK for o in outcomes) else ExitStatus.FAILED), outcomes


if __name__ == "__main__":  # a platform's child: `python -m lab.cli.matrixrun SPEC`
    raise SystemExit(child_main())

