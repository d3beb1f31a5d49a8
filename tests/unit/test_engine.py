"""Unit tests for lab.engine: what `reglab solve STEP` runs, and the state file it reads.

`steps_to_solve` needs only the scenario and the state, so the Engine is built
without a Context (no machines).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.common.progress import Progress
from lab.engine.state import State
from lab.engine.steps import Engine
from lab.machines.images import LabImages
from lab.model import scenario
from lab.model.results import Status, StepResult

SHIPPED = scenario.load(scenario.default_path(), "modern")
IDS = [s.id for s in SHIPPED.steps]


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / ".lab" / "reglab" / "state.json")


def engine(state: State) -> Engine:
    return Engine(SHIPPED, ctx=None, state=state, progress=Progress(quiet=True))  # type: ignore[arg-type]


def mark(state: State, status: Status, *step_ids: str) -> None:
    for step_id in step_ids:
        state.record(StepResult(step_id, step_id, status, duration=1.0))


def solving(state: State, target: str) -> list[str]:
    return [s.id for s in engine(state).steps_to_solve(target)]


# --- steps_to_solve ---------------------------------------------------------------


def test_nothing_done_solves_every_earlier_step_first(state: State) -> None:
    assert solving(state, "tls") == ["local-registry", "hosts", "compose-registry", "nginx-proxy", "basic-auth", "tls"]


def test_the_first_step_needs_nothing_before_it(state: State) -> None:
    assert solving(state, "local-registry") == ["local-registry"]


def test_earlier_steps_passed_solve_only_the_target(state: State) -> None:
    mark(state, Status.PASS, *IDS[: IDS.index("tls")])
    assert solving(state, "tls") == ["tls"]


def test_earlier_failed_or_not_run_steps_are_solved_again_with_the_done_steps_after_them(state: State) -> None:
    """compose-registry rewrites the Compose file without nginx, so nginx-proxy, though done, runs again."""
    mark(state, Status.PASS, "local-registry", "hosts", "nginx-proxy")
    mark(state, Status.FAIL, "compose-registry")
    assert solving(state, "basic-auth") == ["compose-registry", "nginx-proxy", "basic-auth"]


def test_later_passed_steps_follow_the_target(state: State) -> None:
    """Solving a step rewrites files later steps changed, so the later done steps run again after it."""
    mark(state, Status.PASS, *IDS)
    assert solving(state, "basic-auth") == ["basic-auth", *IDS[IDS.index("basic-auth") + 1 :]]


def test_later_steps_not_passed_are_left_alone(state: State) -> None:
    mark(state, Status.PASS, *IDS[:7])  # up to port-443
    mark(state, Status.FAIL, "client-trust")
    assert solving(state, "nginx-proxy") == ["nginx-proxy", "basic-auth", "tls", "port-443"]


def test_target_is_solved_even_when_it_passed(state: State) -> None:
    mark(state, Status.PASS, "local-registry", "hosts")
    assert solving(state, "hosts") == ["hosts"]


def test_unknown_target(state: State) -> None:
    with pytest.raises(ValueError):
        engine(state).steps_to_solve("nosuch")


# --- State -------------------------------------------------------------------------


def test_new_state_has_no_results(state: State) -> None:
    assert not state.path.exists()
    assert state.step_status("tls") == Status.NOT_RUN.value == "not run"
    assert state.images is None


def test_a_check_only_runs_results_are_written_once_at_its_end_also_on_an_error(state: State, monkeypatch) -> None:
    writes: list[str] = []
    monkeypatch.setattr("lab.engine.state.atomic_write", lambda path, text, mode: writes.append(text))
    with state.saved_once():
        mark(state, Status.PASS, "hosts", "tls")
        with state.saved_once():  # nested: still the outer's end
            mark(state, Status.FAIL, "client-push")
        assert writes == []
    assert len(writes) == 1 and json.loads(writes[0])["steps"]["client-push"]["status"] == "fail"
    with state.saved_once():
        pass
    assert len(writes) == 1  # nothing changed, nothing written
    with pytest.raises(RuntimeError), state.saved_once():
        mark(state, Status.PASS, "client-push")
        raise RuntimeError("a check broke")
    assert len(writes) == 2 and json.loads(writes[1])["steps"]["client-push"]["status"] == "pass"


def test_state_round_trips(state: State) -> None:
    mark(state, Status.PASS, "hosts")
    mark(state, Status.FAIL, "tls")
    state.images = LabImages(registry="reglab/docker-registry:2.8.2-debian12", proxy="reglab/nginx:1.22.1-debian12",
                             base="debian:bookworm")
    state.data["provisioned"] = True
    state.save()

    again = State(state.path)
    assert again.data == state.data
    assert again.step_status("hosts") == "pass"
    assert again.step_status("tls") == "fail"
    assert again.step_status("client-push") == "not run"
    assert again.images == state.images
    recorded = json.loads(state.path.read_text())["steps"]["tls"]
    assert recorded["duration"] == 1.0
    assert recorded["at"].endswith("+00:00")


def test_state_save_leaves_no_temporary_file(state: State) -> None:
    mark(state, Status.PASS, "hosts")
    assert sorted(p.name for p in state.path.parent.iterdir()) == ["state.json"]


def test_record_overwrites_the_previous_result(state: State) -> None:
    mark(state, Status.FAIL, "hosts")
    mark(state, Status.PASS, "hosts")
    assert State(state.path).step_status("hosts") == "pass"


@pytest.mark.parametrize("text", ["{not json", "", '{"steps": {', "{}", "[]", "null", '{"steps": []}', "\udcff"])
def test_invalid_state_is_set_aside_with_a_warning(tmp_path: Path, text: str) -> None:
    """Item 9: a corrupt state file used to stop every command, `reglab down` included."""
    path = tmp_path / "state.json"
    path.write_text(text, errors="surrogateescape")
    state = State(path)
    assert state.step_status("hosts") == "not run"
    assert state.warning and "set aside as state.json.corrupt" in state.warning
    assert (tmp_path / "state.json.corrupt").exists() and not path.exists()
    state.save()
    assert State(path).warning is None


def test_state_file_is_owner_only(state: State) -> None:
    mark(state, Status.PASS, "hosts")
    assert state.path.stat().st_mode & 0o777 == 0o600


def test_a_machine_made_anew_takes_the_step_results_with_it(state: State) -> None:
    """Item 8: results describe the machines they were taken on."""
    assert state.identify("client", "id-1", ["hosts"]) is None
    mark(state, Status.PASS, "hosts")
    mark(state, Status.PASS, "tls")
    assert state.identify("client", "id-1", ["hosts"]) is None
    assert state.step_status("hosts") == "pass"
    message = state.identify("client", "id-2", ["hosts", "client-login"])
    assert message and "client" in message and "hosts" in message
    assert state.step_status("hosts") == "not run"
    assert state.step_status("tls") == "pass"  # a registry-only step: its machine is the same
    assert State(state.path).data["machines"]["client"] == "id-2"


def test_two_processes_saving_at_once_never_corrupt_the_state(state: State) -> None:
    """Item 9: a shared `.tmp` name let two writers rename each other's half-written files."""
    import threading

    others = [State(state.path) for _ in range(4)]
    errors: list[BaseException] = []

    def hammer(s: State, n: int) -> None:
        try:
            for i in range(50):
                s.data["steps"][f"s{n}-{i}"] = {"status": "pass"}
                s.save()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(s, n)) for n, s in enumerate(others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert State(state.path).warning is None
    assert not [p for p in state.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_lab_lock_makes_a_second_process_wait_and_then_fail(tmp_path: Path) -> None:
    import subprocess
    import sys

    from lab.common.errors import LabFailure
    from lab.engine.state import LabLock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT, 0o600); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'reglab pid 1 (solve --all)'); print('locked', flush=True); "
         "time.sleep(30)", str(tmp_path / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        said: list[str] = []
        with pytest.raises(LabFailure, match=r"in use by reglab pid 1 \(solve --all\)"):
            LabLock(tmp_path).acquire(0.5, said.append)
        assert said == ["waiting for reglab pid 1 (solve --all), which is using this lab"]
    finally:
        holder.kill()
        holder.wait()
    lock = LabLock(tmp_path)
    lock.acquire(1, lambda _: None)
    lock.release()


def test_the_lab_lock_is_reentrant_within_a_thread(tmp_path: Path) -> None:
    """The e2e tests run the CLI in-process on their session's lab: it must not wait for itself."""
    from lab.engine.state import LabLock

    first = LabLock(tmp_path)
    first.acquire(1, lambda _: None)
    second = LabLock(tmp_path)
    second.acquire(0.1, lambda message: pytest.fail(message))
    second.release()
    first.release()


def test_the_lab_lock_is_not_shared_across_threads(tmp_path: Path) -> None:
    """Issue 19: two checks of one lab, each in a thread of a class's check, overlapped."""
    import threading

    from lab.common.errors import LabFailure
    from lab.engine.state import LabLock

    first = LabLock(tmp_path)
    first.acquire(1, lambda _: None)
    seen: list[object] = []

    def other_thread() -> None:
        try:
            LabLock(tmp_path).acquire(0.5, lambda _: None)
            seen.append("acquired")
        except LabFailure as exc:
            seen.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert len(seen) == 1 and isinstance(seen[0], LabFailure) and "in use by reglab pid" in str(seen[0])
    first.release()
    later = LabLock(tmp_path)
    waiter = threading.Thread(target=lambda: (later.acquire(5, lambda _: None), later.release()))
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive()


def test_a_broken_template_is_a_lab_error_not_a_traceback() -> None:
    import jinja2

    from lab.common.errors import LabError
    from lab.engine.context import render_template, render_value
    from lab.model import manifest
    from lab.model.lab import default_scenario

    templates = manifest.load(default_scenario()).templates
    jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), undefined=jinja2.StrictUndefined)
    with pytest.raises(LabError, match="which is not in"):
        render_template(jinja, "nosuch.j2", {})
    with pytest.raises(LabError, match="cannot be rendered"):
        render_value(jinja, "{{ domain | nosuchfilter }}", {"domain": "x"})


class _Ctx:
    """Just enough of a Context for Engine.act: rendering is identity, machines are names."""

    def __init__(self, lab_dir: Path) -> None:
        from types import SimpleNamespace

        self.captured: dict[str, str] = {}
        self.lab = SimpleNamespace(state_dir=lab_dir / ".lab" / "reglab")

    def machine(self, name: str) -> str:
        return name

    def render(self, value, machine):  # noqa: ANN001, ANN201
        return value


def test_values_captured_by_an_inline_check_during_solve_are_kept(state: State, tmp_path: Path, monkeypatch) -> None:
    """Item 15: `check:` and `wait:` actions captured values, and the engine dropped them."""
    from lab.engine import checks
    from lab.engine.checks import Outcome

    monkeypatch.setattr(checks, "run", lambda item, machine, ctx: Outcome(True, "x", "y", {"pushed": "sha256:1"}))
    ctx = _Ctx(tmp_path)
    run = Engine(SHIPPED, ctx=ctx, state=state, progress=Progress(quiet=True))  # type: ignore[arg-type]
    run.act({"check": {"command": "true"}}, "client")
    assert ctx.captured == {"pushed": "sha256:1"}
    ctx.captured.clear()
    run.act({"wait": {"command": "true"}}, "client")
    assert ctx.captured == {"pushed": "sha256:1"}


def test_step_logs_are_the_labs_own_paths_not_relative_ones(state: State, tmp_path: Path) -> None:
    """Item 15: `.lab/logs/...` printed relative to the current folder pointed nowhere elsewhere."""
    run = Engine(SHIPPED, ctx=_Ctx(tmp_path), state=state, progress=Progress(quiet=True))  # type: ignore[arg-type]
    logs = run._logs(SHIPPED.step("hosts"))
    assert logs == [str(tmp_path / ".lab" / "reglab" / "logs" / "registry.log"), str(tmp_path / ".lab" / "reglab" / "logs" / "client.log")]  # noqa: E501


def test_an_unknown_os_is_the_same_usage_error_on_the_engines_path(tmp_path: Path) -> None:
    """The engine reads os-release with the identity, before provisioning does: exit 2 there too."""
    from types import SimpleNamespace

    from lab.common.errors import ExitStatus
    from lab.engine.context import Context
    from lab.machines.osfamily import UnsupportedOS
    from lab.model.credentials import Redactor
    from lab.model.labfile import load

    alpine = 'ID=alpine\nPRETTY_NAME="Alpine Linux v3.19"\n\nreglab-identity=abc\n'
    machine = SimpleNamespace(name="client", sudo=lambda command, **_: SimpleNamespace(stdout=alpine))
    (tmp_path / "lab.yml").write_text("")
    images = LabImages(registry="r", proxy="p", base="b")
    ctx = Context(load(tmp_path / "lab.yml", environ={}), lambda name: machine, images, Redactor())
    with pytest.raises(UnsupportedOS) as info:
        ctx.identify("client")
    assert str(info.value).startswith("client: unsupported OS 'Alpine Linux v3.19'")
    assert info.value.exit_status is ExitStatus.USAGE


# --- keep going: a failed step is bridged with its modern solution -------------------------------

LEGACY_CN = ('Error response from daemon: Get "https://myregistrydomain.com/v2/": '
             "x509: certificate relies on legacy Common Name field, use SANs instead")
THREE_STEPS = """
id: three
title: Three steps, the middle one broken as written
steps:
  - id: first
    title: First
    section: one
    solve: {registry: [{run: make first}]}
    check: {registry: [{command: has first}]}
  - id: middle
    title: Middle
    section: two
    solve:
      registry:
        - {run: make middle-as-written, only: as-written}
        - {run: make middle, only: modern}
        - {run: "note {{ edition }}"}
    check: {registry: [{command: has middle}]}
  - id: last
    title: Last, which builds on the middle step
    section: three
    solve: {registry: [{run: make last}]}
    check: {registry: [{command: has middle}, {command: has last}]}
"""


class _Lab:
    """A machine whose shell knows `make X` (fails for X in `broken`), `has X` and `note X`; it logs each."""

    def __init__(self, broken: set[str]) -> None:
        from types import SimpleNamespace

        self.name = "registry"
        self.broken = broken
        self.made: set[str] = set()
        self.commands: list[str] = []
        self._result = lambda code, out: SimpleNamespace(ok=code == 0, exited=code, stdout=out, stderr="")

    def sudo(self, command: str, **_: object):  # noqa: ANN201
        if "reglab-identity=" in command:  # the engine's first contact: who and what the machine is
            return self._result(0, 'ID=debian\nPRETTY_NAME="Debian 12"\n\nreglab-identity=fake\n')
        self.commands.append(command)
        verb, _, name = command.partition(" ")
        if verb == "make":
            if name in self.broken:
                return self._result(1, LEGACY_CN)
            self.made.add(name)
        elif verb == "has" and name not in self.made:
            return self._result(1, f"no {name}")
        return self._result(0, "")


def _three_steps(tmp_path: Path, state: State, broken: set[str]) -> tuple[Engine, _Lab]:
    """An as-written engine over THREE_STEPS on one fake machine, rendering for real."""
    from lab.engine.context import Context
    from lab.model.credentials import Redactor
    from lab.model.labfile import load

    path = tmp_path / "three.yaml"
    path.write_text(THREE_STEPS)
    (tmp_path / "lab.yml").write_text("")
    lab = load(tmp_path / "lab.yml", environ={}, overrides={"edition": "as-written"})
    machine = _Lab(broken)
    ctx = Context(lab, lambda name: machine, LabImages(registry="r", proxy="p", base="b"), Redactor())
    run = Engine(scenario.load(path, "as-written"), ctx, state, Progress(quiet=True))
    return run, machine


def test_keep_going_bridges_a_failed_step_with_its_modern_solution_and_judges_the_next(
        tmp_path: Path, state: State) -> None:
    """Issue 11: an as-written run stopped at client-login, leaving the last steps "not run"."""
    run, machine = _three_steps(tmp_path, state, broken={"middle-as-written"})
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    first, middle, last = result.steps
    assert [s.status for s in result.steps] == [Status.PASS, Status.FAIL, Status.PASS]
    assert middle.diagnosis is not None and middle.diagnosis.id == "legacy-cn"
    assert (middle.bridged, middle.bridge_error) == (True, "")
    assert not first.bridged and not last.bridged and last.bridge_failed == ""
    assert machine.commands == [
        "make first", "has first",
        "make middle-as-written",  # the as-written solve, which fails
        "make middle", "note modern", "has middle",  # the bridge: the modern solve and check, rendered as modern
        "make last", "has middle", "has last",  # the last step, judged in the run's edition
    ]
    assert result.edition == "as-written"
    assert run.ctx.edition == "as-written"  # the bridge's modern rendering ended with it
    assert state.step_status("last") == Status.PASS.value


def test_without_keep_going_the_steps_after_a_failure_are_not_run(tmp_path: Path, state: State) -> None:
    run, machine = _three_steps(tmp_path, state, broken={"middle-as-written"})
    result = run.run(run.scenario.steps, solve=True, phases={})
    assert [s.status for s in result.steps] == [Status.PASS, Status.FAIL, Status.NOT_RUN]
    assert not any(s.bridged or s.bridge_failed for s in result.steps)
    assert machine.commands == ["make first", "has first", "make middle-as-written"]


def test_a_check_only_run_grades_every_step_on_its_own(tmp_path: Path, state: State) -> None:
    """Issue 19: a student who did the later steps but not the first gets credit for them; a step
    that fails after a failed one says it depends on a failed step. A solving run still stops."""
    run, machine = _three_steps(tmp_path, state, broken=set())
    machine.made = {"middle", "last"}  # done by hand: every step but the first
    result = run.run(run.scenario.steps, solve=False, phases={})
    assert [s.status for s in result.steps] == [Status.FAIL, Status.PASS, Status.PASS]
    assert [s.depends_on for s in result.steps] == ["", "", ""]  # a pass depends on nothing
    assert machine.commands == ["has first", "has middle", "has middle", "has last"]

    machine.made = {"last"}  # the first two not done: the last fails at the middle's file
    result = run.run(run.scenario.steps, solve=False, phases={})
    assert [s.status for s in result.steps] == [Status.FAIL, Status.FAIL, Status.FAIL]
    assert [s.depends_on for s in result.steps] == ["", "first", "first"]
    assert result.steps[2].cause_line.startswith("depends on a failed step (first)")
    assert [state.step_status(s) for s in ("first", "middle", "last")] == ["fail"] * 3


def test_a_failed_bridge_is_recorded_and_the_run_still_goes_on(tmp_path: Path, state: State) -> None:
    """The step after a failed bridge is judged anyway, and says which bridge left the lab wrong."""
    run, machine = _three_steps(tmp_path, state, broken={"middle-as-written", "middle"})
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    _, middle, last = result.steps
    assert middle.bridged
    assert "legacy Common Name" in middle.bridge_error
    assert last.status is Status.FAIL
    assert last.bridge_failed == "middle"
    assert last.bridged and "has middle" in last.bridge_error  # its own bridge cannot repair the middle either
    assert machine.commands == [
        "make first", "has first",
        "make middle-as-written", "make middle",  # the step, then its bridge, both fail
        "make last", "has middle",  # judged anyway
        "make last", "has middle",  # and bridged
    ]


def test_keep_going_needs_solving(tmp_path: Path, state: State) -> None:
    """A check-only run never changes a machine, so it cannot bridge."""
    run, _ = _three_steps(tmp_path, state, broken=set())
    with pytest.raises(ValueError, match="check-only"):
        run.run(run.scenario.steps, solve=False, phases={}, keep_going=True)


def test_a_bridge_from_an_earlier_step_solves_the_modern_steps_from_there(tmp_path: Path, state: State) -> None:
    """client-login fails as written because of the certificate `tls` made: bridging the login alone
    hit the same certificate, so the bridge starts where the failure starts (`bridge_from`)."""
    run, machine = _three_steps(tmp_path, state, broken={"middle-as-written"})
    text = THREE_STEPS.replace("  - id: middle\n", "  - id: middle\n    bridge_from: first\n")
    (tmp_path / "three.yaml").write_text(text)
    run.scenario = scenario.load(tmp_path / "three.yaml", "as-written")
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    assert [s.status for s in result.steps] == [Status.PASS, Status.FAIL, Status.PASS]
    assert machine.commands == [
        "make first", "has first",
        "make middle-as-written",
        "make first", "has first", "make middle", "note modern", "has middle",  # modern, from `first`
        "make last", "has middle", "has last",
    ]


@pytest.mark.parametrize("target", ["last", "nosuch", "middle"], ids=["later", "unknown", "itself"])
def test_bridge_from_must_name_an_earlier_step(tmp_path: Path, target: str) -> None:
    from lab.common.errors import ConfigError

    path = tmp_path / "three.yaml"
    path.write_text(THREE_STEPS.replace("  - id: middle\n", f"  - id: middle\n    bridge_from: {target}\n"))
    with pytest.raises(ConfigError, match=r"steps\[1\] \(middle\)\.bridge_from: expected the id of an earlier step"):
        scenario.load(path, "as-written")


# --- keep going: every cause of a failed step, not only the first (`look_past`) ---------------------

NO_AUTH = ('Error response from daemon: Head "https://myregistrydomain.com/v2/test-images/manifests/latest": '
           "no basic auth credentials")
NOT_PUSHED = ("Error response from daemon: manifest for myregistrydomain.com/test-images:latest not found: "
              "manifest unknown: manifest unknown")
PULL_STEPS = """
id: pull
title: A pull that fails as written for two reasons, one hiding the other
steps:
  - id: push
    title: Push
    section: one
    solve: {registry: [{run: make pushed}]}
    check: {registry: [{command: has pushed}]}
  - id: pull
    title: Pull
    section: two
    look_past:
      no-basic-auth:
        registry:
          - {run: "login {{ edition }}"}
    solve:
      registry:
        - {run: login modern, only: modern}
        - {run: pull test-image, only: modern}
        - {run: pull test-images, only: as-written}
    check: {registry: [{command: has test-image}]}
"""


class _Registry(_Lab):
    """Also `login X` (fails for X in `broken`) and `pull NAME`: no login, no basic auth; a name never
    pushed (only test-image is), manifest unknown. The errors are the texts Docker prints."""

    def __init__(self, broken: set[str]) -> None:
        super().__init__(broken)
        self.logged_in = False

    def sudo(self, command: str, **kwargs: object):  # noqa: ANN201
        verb, _, name = command.partition(" ")
        if verb == "login":
            self.commands.append(command)
            self.logged_in = name not in self.broken
            return self._result(0 if self.logged_in else 1, "" if self.logged_in else NO_AUTH)
        if verb == "pull":
            self.commands.append(command)
            if not self.logged_in:
                return self._result(1, NO_AUTH)
            if name != "test-image":
                return self._result(1, NOT_PUSHED)
            self.made.add(name)
            return self._result(0, "")
        return super().sudo(command, **kwargs)


def _pull_steps(tmp_path: Path, state: State, broken: set[str] = frozenset(), edition: str = "as-written",
                text: str = PULL_STEPS) -> tuple[Engine, _Registry]:
    from lab.engine.context import Context
    from lab.model.credentials import Redactor
    from lab.model.labfile import load

    path = tmp_path / "pull.yaml"
    path.write_text(text)
    (tmp_path / "lab.yml").write_text("")
    lab = load(tmp_path / "lab.yml", environ={}, overrides={"edition": edition})
    machine = _Registry(set(broken))
    ctx = Context(lab, lambda name: machine, LabImages(registry="r", proxy="p", base="b"), Redactor())
    return Engine(scenario.load(path, edition), ctx, state, Progress(quiet=True)), machine


def test_keep_going_looks_past_the_first_cause_and_records_both_in_order(tmp_path: Path, state: State) -> None:
    """Issue 11: server-pull as written stopped at `no basic auth credentials`; the name never pushed
    behind it went unreported."""
    run, machine = _pull_steps(tmp_path, state)
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    pull = result.steps[1]
    assert pull.status is Status.FAIL
    assert pull.diagnosis is not None and pull.diagnosis.id == "no-basic-auth"  # the first, where it always was
    assert [c.id for c in pull.causes] == ["no-basic-auth", "name-not-pushed"]
    (look,) = pull.looks
    assert (look.past, look.status, look.error) == ("no-basic-auth", Status.FAIL, "")
    assert "test-images" in look.seen and look.diagnosis is not None and look.diagnosis.id == "name-not-pushed"
    assert (pull.bridged, pull.bridge_error) == (True, "")
    assert machine.commands == [
        "make pushed", "has pushed",
        "pull test-images",  # as written: no login
        "login modern", "pull test-images",  # past no-basic-auth (rendered as modern): the name, never pushed
        "login modern", "pull test-image", "has test-image",  # the bridge
    ]


def test_each_look_past_entry_is_applied_at_most_once(tmp_path: Path, state: State) -> None:
    """Actions that do not remove their cause find the same cause again: no second try, no loop."""
    run, machine = _pull_steps(tmp_path, state, text=PULL_STEPS.replace('"login {{ edition }}"', "note nothing"))
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    pull = result.steps[1]
    assert [(k.past, k.diagnosis.id if k.diagnosis else None) for k in pull.looks] == [
        ("no-basic-auth", "no-basic-auth")]
    assert [c.id for c in pull.causes] == ["no-basic-auth"]
    assert machine.commands.count("note nothing") == 1
    assert pull.bridged and not pull.bridge_error


def test_look_past_actions_that_fail_are_recorded_and_the_step_is_bridged_as_before(
        tmp_path: Path, state: State) -> None:
    run, machine = _pull_steps(tmp_path, state, broken={"as-written"},
                               text=PULL_STEPS.replace('"login {{ edition }}"', "login as-written"))
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    pull = result.steps[1]
    (look,) = pull.looks
    assert look.status is Status.NOT_RUN and look.diagnosis is None
    assert "no basic auth credentials" in look.error
    assert [c.id for c in pull.causes] == ["no-basic-auth"]
    assert (pull.bridged, pull.bridge_error) == (True, "")
    assert machine.commands[2:] == [
        "pull test-images",
        "login as-written",  # the look_past action fails: the step is not solved again
        "login modern", "pull test-image", "has test-image",  # bridged as before
    ]


def test_the_modern_edition_does_not_look_past(tmp_path: Path, state: State) -> None:
    """A modern failure is the lab's own, not the tutorial's: it is reported as it is."""
    run, machine = _pull_steps(tmp_path, state, broken={"modern"}, edition="modern")
    result = run.run(run.scenario.steps, solve=True, phases={}, keep_going=True)
    pull = result.steps[1]
    assert pull.status is Status.FAIL and pull.diagnosis is not None and pull.diagnosis.id == "no-basic-auth"
    assert pull.looks == []
    assert machine.commands[2:] == ["login modern", "login modern"]  # the step, then its bridge


def test_without_keep_going_nothing_is_looked_past(tmp_path: Path, state: State) -> None:
    run, machine = _pull_steps(tmp_path, state)
    pull = run.run(run.scenario.steps, solve=True, phases={}).steps[1]
    assert pull.looks == [] and not pull.bridged
    assert machine.commands == ["make pushed", "has pushed", "pull test-images"]


@pytest.mark.parametrize(("value", "key_path", "words"), [
    ("{no-such-cause: {registry: [{run: x}]}}", "look_past.no-such-cause", "unknown cause id"),
    ("{no-basic-auth: {registry: [{rnu: x}]}}", "look_past.no-basic-auth.registry[0]", "expected exactly one of"),
    ("{no-basic-auth: {registry: [{run: x, only: modern}]}}", "look_past.no-basic-auth.registry[0].only",
     "take no `only`"),
    ("{no-basic-auth: {}}", "look_past.no-basic-auth", "mapping of machine name"),
    ("[no-basic-auth]", "look_past", "mapping of a cause id"),
], ids=["unknown-cause", "unknown-kind", "only", "empty", "list"])
def test_a_bad_look_past_is_a_config_error_naming_the_key(tmp_path: Path, value: str, key_path: str,
                                                          words: str) -> None:
    from lab.common.errors import ConfigError

    path = tmp_path / "pull.yaml"
    text = PULL_STEPS.replace("    look_past:\n      no-basic-auth:\n        registry:\n"
                              '          - {run: "login {{ edition }}"}\n', f"    look_past: {value}\n")
    assert text != PULL_STEPS
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        scenario.load(path, "as-written")
    assert f"steps[1] (pull).{key_path}" in str(info.value) and words in str(info.value)


def test_the_shipped_server_pull_looks_past_the_missing_login_with_a_login() -> None:
    step = scenario.load(scenario.default_path(), "as-written").step("server-pull")
    (action,) = step.look_past["no-basic-auth"]["registry"]
    assert action["run"].startswith("docker login {{ domain }} -u {{ user.name }} --password-stdin")
    assert action["stdin"] == "{{ user.password }}"  # on stdin, never on the command line
