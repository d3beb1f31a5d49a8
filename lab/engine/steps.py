"""The scenario engine: solve and check steps on the lab's machines.

`Engine` walks a scenario's steps with a `Context` (lab.engine.context). The
state file `.lab/NAME/state.json` is rewritten after every change, so `reglab
steps` shows progress and `reglab solve` skips what is already done.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from lab.common import clip
from lab.common.errors import LabError, RemoteError
from lab.common.parallel import on_each
from lab.common.polling import poll
from lab.common.progress import Progress
from lab.engine import checks
from lab.engine.batching import Speculator, batchable
from lab.engine.context import Context, StepFailed, carries_secret, render_template
from lab.engine.state import State
from lab.machines.remote import Machine
from lab.model import scenario
from lab.model.diagnosis import diagnose
from lab.model.results import Look, RunResult, Status, StepResult
from lab.model.scenario import ACTION_KINDS, Scenario, Step, kind_of
from lab.pki.make import ensure_pki

WAIT_TIMEOUT = 90

# A failed step is bridged with this edition's solution of it (the flow that works today).
BRIDGE_EDITION = "modern"


class Engine:
    def __init__(self, scenario: Scenario, ctx: Context, state: State, progress: Progress) -> None:
        self.scenario = scenario
        self.ctx = ctx
        self.state = state
        self.progress = progress
        self._bridge_scenario: Scenario | None = None
        self._speculator: Speculator | None = None  # while checks are batched (`batched`)

    # -- actions ---------------------------------------------------------------
    def act(self, raw: dict[str, Any], machine_name: str) -> None:
        kind = kind_of(raw, ACTION_KINDS)
        machine = self.ctx.machine(machine_name)
        if kind == "wait":
            self.wait(raw["wait"], machine_name, raw.get("timeout", WAIT_TIMEOUT))
            return
        if kind == "check":
            outcome = checks.run(self.ctx.render(raw["check"], machine_name), machine, self.ctx)
            if not outcome.ok:
                raise StepFailed(outcome.expected, outcome.seen)
            self.ctx.captured.update(outcome.captured)
            return
        item = self.ctx.render(raw, machine_name)
        getattr(self, f"_do_{kind}")(item, machine)

    def _do_run(self, item: dict[str, Any], machine: Machine) -> None:
        stdin = item.get("stdin")
        if stdin is not None:
            self.ctx.redactor.add(stdin.strip())
        outcome = checks.run_command(
            {**item, "command": item["run"]}, machine, self.ctx
        )
        if not outcome.ok:
            raise StepFailed(outcome.expected, outcome.seen)

    def _do_from_text(self, item: dict[str, Any], machine: Machine) -> None:
        """The tutorial's own command(s), placeholders substituted when the scenario loaded.

        The load refuses a password placeholder on a command line by name; here the command
        as rendered must hold no password either (the lab's users', the secret placeholders'
        values), whatever put it there.
        """
        text = item["from_text"]
        secrets = [user.password for user in self.ctx.lab.users if user.password]
        for template in text.secrets:
            try:
                secrets.append(self.ctx.render(template, machine.name))
            except StepFailed:  # a value not captured yet: then nothing put it on this command line either
                continue
        if carries_secret(item["command"], secrets):
            where = next((part.where() for part in text.parts
                          if carries_secret(self.ctx.render(part.command, machine.name), secrets)), "its parts joined")
            raise LabError(f"from_text {', '.join(map(str, text.refs))}: the tutorial's {where} would put a "
                           "password on a command line; refused: a password reaches a command on stdin only")
        run = {key: value for key, value in item.items() if key not in ("from_text", "command")}
        self._do_run({**run, "run": item["command"]}, machine)

    def _do_file(self, item: dict[str, Any], machine: Machine) -> None:
        variables = self.ctx.variables(machine.name) | (item.get("vars") or {})
        if "template" in item:
            text = render_template(self.ctx.jinja, item["template"], variables)
        elif "from_block" in item:  # the tutorial's own block: only its placeholders' values render
            text = self.ctx.render(item["from_block"].content, machine.name)
        else:
            text = str(item["content"])
        self.ctx.upload(machine, text.encode(), item["file"], str(item.get("mode", "0644")))

    def _do_htpasswd(self, item: dict[str, Any], machine: Machine) -> None:
        """The tutorial's `htpasswd -c` for the first user, then one line per user."""
        path = shlex.quote(item["htpasswd"])
        for i, user in enumerate(self.ctx.lab.users):
            create = "-c " if i == 0 else ""
            machine.sudo(f"htpasswd {create}-i {path} {shlex.quote(user.name)}",
                         in_stream=self.ctx.stdin(user.password or ""))

    def _do_pki(self, item: dict[str, Any], machine: Machine) -> None:
        """The CA and server certificate, made with `cryptography` on the host.

        NOTE: the CA's private key stays on the host: both machines trust the
        CA system-wide, and nothing on them needs to sign.
        """
        # The certificate names the domain and the IP of the machine that serves it: this one.
        server_ip = self.ctx.lab.machine(machine.name).ip
        files = ensure_pki(self.ctx.lab.state_dir / "pki", self.ctx.lab.domain, [server_ip])
        self.ctx.redactor.add_private_key(files.key.read_bytes())
        self.ctx.redactor.add_private_key(files.ca_key.read_bytes())
        folder = item["pki"]
        for path in files.machine_files:
            mode = "0600" if path == files.key else "0644"
            self.ctx.upload(machine, path.read_bytes(), f"{folder}/{path.name}", mode)

    def _do_ca_trust(self, item: dict[str, Any], machine: Machine) -> None:
        family = self.ctx.family(machine.name)
        machine.sudo(family.trust_ca(item["ca_trust"], item.get("name", "devdockerCA.crt")))

    def _do_copy(self, item: dict[str, Any], machine: Machine) -> None:
        data = self.ctx.read_file(item["copy"], machine.name)
        self.ctx.upload(machine, data.encode(), item["to"], str(item.get("mode", "0644")))

    def wait(self, raw: dict[str, Any], machine_name: str, timeout: float) -> None:
        """Poll a check until it passes, within a bound (never a fixed sleep)."""
        machine = self.ctx.machine(machine_name)
        tried: list[checks.Outcome] = []

        def attempt() -> bool:
            tried.append(checks.run(self.ctx.render(raw, machine_name), machine, self.ctx))
            return tried[-1].ok

        if not poll(attempt, timeout):
            raise StepFailed(f"within {timeout:.0f}s: {tried[-1].expected}", tried[-1].seen)
        self.ctx.captured.update(tried[-1].captured)

    # -- steps -----------------------------------------------------------------
    def solve(self, step: Step) -> None:
        machines = list(step.solve)
        if len(machines) > 1 and all(not any("copy" in a for a in step.solve[m]) for m in machines):
            on_each([self.ctx.machine(m) for m in machines], lambda machine: self._solve_on(step, machine.name))
        else:
            for name in machines:
                self._solve_on(step, name)

    def _solve_on(self, step: Step, machine_name: str) -> None:
        for action in step.solve[machine_name]:
            self.act(action, machine_name)

    def check(self, step: Step) -> None:
        with self.batched([step]):
            for machine_name, items in step.check.items():
                machine = self.ctx.machine(machine_name)
                for raw in items:
                    outcome = checks.run(self.ctx.render(raw, machine_name), machine, self.ctx)
                    if not outcome.ok:
                        raise StepFailed(outcome.expected, f"on {machine_name}: {outcome.seen}")
                    self.ctx.captured.update(outcome.captured)

    @contextlib.contextmanager
    def batched(self, steps: Sequence[Step]) -> Iterator[None]:
        """The checks of `steps`, run meanwhile, get their machines' answers from one batch per machine
        per round (lab.engine.batching), fetched here first; inside an outer `batched`, from the outer's.

        NOTE: a check-only run batches every step's checks at once; a run that solves batches each
        check on its own, after its step's solve.
        """
        machines = {name for step in steps for name in step.check}
        if self._speculator is not None or not all(batchable(self.ctx.machine(n)) for n in machines):
            yield
            return
        speculator = self._speculator = Speculator(self.ctx)
        passed = {s.id for s in steps if self.state.step_status(s.id) == Status.PASS.value}
        try:
            speculator.prefetch(lambda round_: self._explore(steps, passed, 2 ** round_))
            with speculator.serving():
                yield
        finally:
            self._speculator = None

    def _explore(self, steps: Sequence[Step], passed: set[str], window: int) -> bool:
        """The check items of `steps` in order, on past a failure while answers are guessed, so that
        a speculative round learns every command the real run may ask; a step's items end where the
        real run's would, at a failure that rests on real answers only, and the next step follows
        (a check-only run grades every step). True if it left steps for a later round.

        Steps that passed when last checked (`passed`) are looked at whole: most likely they pass
        again, and the real run needs all of their commands. Of the others only `window` (doubled
        each round): after `reglab reset` every step fails at its first item, and looking further
        would ask some 40 commands for the one the real run needs (a class's machines pay for
        each). A step done since still takes a round or two more, not one per step.
        """
        speculator = self._speculator
        assert speculator is not None
        for step in steps:
            if step.id not in passed:
                if window <= 0:
                    return True
                window -= 1
            # What a check asks once an answer is in is foreseen only where the step passed last time: a
            # step likely to fail stops at its first failure, and foreseen commands would be asked for
            # nothing (a handshake or a probe to a name the DNS does not answer can take seconds).
            speculator.foreseeing = step.id in passed
            self._explore_step(step)
        return False

    def _explore_step(self, step: Step) -> None:
        """One step's check items as `_explore` looks at them, to its first failure on real answers."""
        speculator = self._speculator
        assert speculator is not None
        for machine_name, items in step.check.items():
            machine = self.ctx.machine(machine_name)
            for raw in items:
                try:
                    outcome = checks.run(self._render_guessing(raw, machine_name), machine, self.ctx)
                except Exception:  # noqa: BLE001 - a placeholder's answer may break a runner; the real run will tell
                    outcome = None
                if outcome is not None and outcome.ok:
                    self.ctx.captured.update(outcome.captured)
                elif not speculator.guessing:
                    return

    def _render_guessing(self, raw: dict[str, Any], machine_name: str) -> dict[str, Any]:
        """An item rendered for a speculative round. A value an earlier item captures from a placeholder
        answer is not there yet: rendered with a stand-in for it, so that the item's command is asked in
        this round (server-pull's `docker image inspect` does not depend on the digest it compares). A
        command that does hold the value is asked again, with the real one, in a later round; the real
        run renders with the captured values only."""
        try:
            return self.ctx.render(raw, machine_name)
        except StepFailed:
            assert self._speculator is not None
            if not self._speculator.guessing:
                raise
            with self.ctx.captured_or_placeholders():
                return self.ctx.render(raw, machine_name)

    def outcome(self, step: Step, solve: bool) -> tuple[Status, str, str]:
        """Solve (when asked) and check one step: its status, what was expected and what was seen."""
        try:
            if solve:
                self.solve(step)
            self.check(step)
        except StepFailed as exc:
            return Status.FAIL, exc.expected, exc.seen
        except RemoteError as exc:
            return Status.FAIL, f"every command of step {step.id} to succeed", str(exc)
        return Status.PASS, "", ""

    def run_step(self, step: Step, solve: bool, prove: bool = False) -> StepResult:
        """One step; with `prove`, its check runs first and must fail, or the check proves nothing.

        NOTE: `passes_before` in the scenario names the steps whose check cannot
        fail beforehand, and why; their check-before is recorded, not judged.
        """
        started = time.monotonic()
        result = StepResult(step.id, step.title, Status.PASS, logs=self._logs(step))
        if prove:
            self.progress.say(f"{step.id}: check before solving (it must fail)")
            result.before = self.outcome(step, solve=False)[0]
        verb = "solve + check" if solve else "check"
        self.progress.say(f"{step.id}: {verb} ({step.title})")
        result.status, result.expected, result.seen = self.outcome(step, solve)
        if prove and result.before is Status.PASS and not step.passes_before and result.status is Status.PASS:
            result.status = Status.FAIL
            result.expected = "its check to fail before the step is solved (a check that passes anyway proves nothing)"
            result.seen = "the check passed before the step was solved"
        result.seen = self.ctx.redactor.redact(result.seen)
        result.expected = self.ctx.redactor.redact(result.expected)
        result.duration = round(time.monotonic() - started, 1)
        if result.status is Status.FAIL:
            result.diagnosis = diagnose(result.seen, self.scenario.causes)
        # Stored (state, reports, gradebook) clipped by characters too: a line can be any length.
        result.seen, result.expected = clip.chars(result.seen), clip.chars(result.expected)
        self.state.record(result)
        before = f" (before solving: {result.before.value})" if result.before else ""
        self.progress.say(f"{step.id}: {result.status.value.upper()} in {result.duration:.1f}s{before}")
        return result

    def _logs(self, step: Step) -> list[str]:
        return [str(self.ctx.lab.state_dir / "logs" / f"{m}.log") for m in step.machines()]

    def run(self, steps: Sequence[Step], solve: bool, phases: dict[str, float],
            keep_going: bool = False) -> RunResult:
        """Steps in order. A run that solves stops at a failure (the rest are not run: they build on
        it); a check-only run grades every step on its own, and a step that fails after an earlier
        one failed says it depends on a failed step (`depends_on`): it may fail only for that.

        With `keep_going`, a failed step is looked at past each known cause
        (`look_past`), then bridged (`bridge`), and the next steps are judged as
        usual: every step gets a verdict, with every cause found.
        """
        if keep_going and not solve:
            raise ValueError("keep_going bridges by solving; a check-only run never changes a machine")
        run = RunResult(edition=self.ctx.lab.edition, started=datetime.now(UTC), steps=[], phases=phases,
                        platform=self.ctx.lab.platform)
        # A check-only run changes nothing between its steps: their checks are batched together,
        # and their results written to the state file once.
        with (contextlib.nullcontext() if solve else self.batched(steps),
              contextlib.nullcontext() if solve else self.state.saved_once()):
            self._run_steps(run, steps, solve, keep_going)
        run.finished = datetime.now(UTC)
        return run

    def _run_steps(self, run: RunResult, steps: Sequence[Step], solve: bool, keep_going: bool) -> None:
        failed = False
        first_failed = ""  # a check-only run's first failed step, which later failures may come from
        broken_bridge = ""  # the first step whose bridge failed: later steps are judged on a lab it left wrong
        for step in steps:
            if failed and solve and not keep_going:
                run.steps.append(StepResult(step.id, step.title, Status.NOT_RUN))
                continue
            result = self.run_step(step, solve)
            result.bridge_failed = broken_bridge
            run.steps.append(result)
            failed = result.status is Status.FAIL
            if failed and not solve:
                result.depends_on = first_failed
                first_failed = first_failed or step.id
            if failed and keep_going:
                self.look_past(step, result)
                result.bridged = True
                result.bridge_error = self.bridge(step)
                broken_bridge = broken_bridge or (step.id if result.bridge_error else "")

    def look_past(self, step: Step, result: StepResult) -> None:
        """Find the causes a failed step's first cause hides: get past each known one and look again.

        While the last failure has a known cause with an entry in the step's
        `look_past:`, its actions (modern ones, rendered as modern) remove just
        that cause, and the step is solved and checked again as written; each
        look is recorded in `result.looks`, so the report names every cause in
        order (as written, server-pull has no login on the registry machine, and
        past that it pulls `test-images`, a name never pushed). Each entry is
        applied at most once, so this ends. Actions that fail end it too; the
        bridge that follows puts the lab right either way. The modern edition
        has nothing to look past: its failures are the lab's, not the tutorial's.
        """
        if self.ctx.lab.edition == BRIDGE_EDITION:
            return
        redact = self.ctx.redactor.redact
        cause = result.diagnosis
        while cause is not None and cause.id in step.look_past and cause.id not in {k.past for k in result.looks}:
            look = Look(past=cause.id)
            result.looks.append(look)
            self.progress.say(f"{step.id}: past {cause.id}: its look_past actions, then the step as written again")
            try:
                with self.ctx.rendering_as(BRIDGE_EDITION):
                    for machine_name, actions in step.look_past[cause.id].items():
                        for action in actions:
                            self.act(action, machine_name)
            except StepFailed as exc:
                look.error = redact(f"expected {exc.expected}; saw {exc.seen}")
            except RemoteError as exc:
                look.error = redact(str(exc))
            if look.error:
                self.progress.say(f"{step.id}: getting past {cause.id} FAILED: {look.error}")
                return
            look.status, expected, seen = self.outcome(step, solve=True)
            look.expected, look.seen = redact(expected), redact(seen)
            cause = look.diagnosis = diagnose(look.seen, self.scenario.causes) if look.status is Status.FAIL else None
            found = cause.id if cause else ("nothing: it passes" if look.status is Status.PASS else "an unknown cause")
            self.progress.say(f"{step.id}: past {look.past}, found {found}")

    def bridge(self, step: Step) -> str:
        """Apply the modern edition's solution of a failed step, then its modern check; "" if all passed.

        With `bridge_from:` (the earlier step where this failure starts, such as
        the certificate made in `tls` that `client-login` trips on), every
        modern step from there through this one is solved and checked. The lab
        is then where the tutorial expects it after this step, so the next
        steps are judged on their own merits, not on this step's failure.

        NOTE: the modern steps are loaded from the scenario file, so the bridge is
        the modern edition's solve exactly; templates render as modern too.
        """
        modern = self._modern()
        ids = [s.id for s in modern.steps]
        missing = [i for i in (step.id, step.bridge_from) if i and i not in ids]
        if missing:
            return f"the {BRIDGE_EDITION} edition has no step {missing[0]!r} to bridge with"
        last = ids.index(step.id)
        first = ids.index(step.bridge_from) if step.bridge_from else last
        steps = modern.steps[first:last + 1]
        names = ", ".join(s.id for s in steps)
        self.progress.say(f"{step.id}: bridge: {BRIDGE_EDITION} solve + check of {names}, "
                          "so the next steps can be judged")
        with self.ctx.rendering_as(BRIDGE_EDITION):
            for bridge_step in steps:
                status, expected, seen = self.outcome(bridge_step, solve=True)
                if status is not Status.PASS:
                    error = self.ctx.redactor.redact(f"{bridge_step.id}: expected {expected}; saw {seen}")
                    self.progress.say(f"{step.id}: bridge FAILED: {error}")
                    return error
        self.progress.say(f"{step.id}: bridge applied")
        return ""

    def _modern(self) -> Scenario:
        if self._bridge_scenario is None:
            same = self.ctx.lab.edition == BRIDGE_EDITION
            self._bridge_scenario = self.scenario if same else scenario.load(self.scenario.path, BRIDGE_EDITION)
        return self._bridge_scenario

    def steps_to_solve(self, target: str) -> list[Step]:
        """What `reglab solve STEP` does: every step from the first one not done up to STEP, then
        again the later steps already done.

        NOTE: a step re-solved rewrites its files as they stand at that step, so
        every done step after it is applied again, up to STEP and beyond.
        """
        index = self.scenario.index(target)
        passed = {s.id for s in self.scenario.steps if self.state.step_status(s.id) == Status.PASS.value}
        first = next((i for i, s in enumerate(self.scenario.steps[:index]) if s.id not in passed), index)
        after = [s for s in self.scenario.steps[index + 1:] if s.id in passed]
        return [*self.scenario.steps[first:index + 1], *after]
