"""The tutorial's text is data, never code: nothing in it reaches jinja2, with no machine.

A line of the text that holds template syntax (`{% endraw %}{{ ... }}{% raw %}`) must
neither run Python on the host (`reglab show`, the engine's rendering) nor put a
password on a command line. A cited block whose text is no longer the one reviewed
stops the load; once reviewed (its digest updated), its text runs byte for byte. And
whatever puts a password on a command line, the engine refuses to run it and `reglab
show` to print it.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab.cli.main import main
from lab.common.errors import ConfigError, LabError
from lab.common.progress import Progress
from lab.engine.context import Context, render_value
from lab.engine.state import State
from lab.engine.steps import Engine
from lab.machines.images import LabImages
from lab.model import scenario
from lab.model.credentials import Redactor
from lab.model.labfile import load as load_lab
from lab.tutorial.text import TUTORIAL, code_blocks, digest

PASSWORD = "Sup3r-s3cret-pw"
BLOCK_1 = "docker run -d -p 5000:5000 --name registry registry:2"


def hostile(marker: Path) -> str:
    return f"{{% endraw %}}{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}{{% raw %}}"


def tutorial_copy(tmp_path: Path, added: str, reviewed: bool) -> Path:
    """The shipped scenario beside a copy of the tutorial whose block 1 (local-registry's
    `from_text: 1`) has the line `added` after its command; with `reviewed`, the scenario's
    citation of block 1 carries the new text's digest. Returns the scenario's path."""
    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(scenario.default_path().parent / "tutorial", folder / "tutorial")  # its templates, images
    text = TUTORIAL.read_text()
    assert text.count(f"\n{BLOCK_1}\n") == 1
    (folder / "tutorial.md").write_text(text.replace(f"\n{BLOCK_1}\n", f"\n{BLOCK_1}\n{added}\n"))
    source = scenario.default_path().read_text()
    old = digest(BLOCK_1)
    assert source.count(f"sha256: {old}") == 1
    if reviewed:
        source = source.replace(f"sha256: {old}", f"sha256: {digest(BLOCK_1 + chr(10) + added)}")
    (folder / "tutorial.yaml").write_text(source)
    assert code_blocks((folder / "tutorial.md").read_text())[0].text == f"{BLOCK_1}\n{added}"
    return folder / "tutorial.yaml"


def show(tmp_path: Path, path: Path, step_id: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """`reglab --scenario PATH --edition as-written show STEP`, in-process."""
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    for name in ("REGLAB_PROVIDER", "REGLAB_EDITION", "REGLAB_IMAGES", "REGLAB_LAB", "REGLAB_SCENARIO"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["--lab", str(tmp_path / "lab.yml"), "--scenario", str(path), "--edition", "as-written", "-q",
                 "show", step_id], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


class _Machine:
    """Records each command and what it read on stdin; every command succeeds."""

    name = "registry"

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def sudo(self, command: str, in_stream: Any = False, **_: object) -> SimpleNamespace:
        if "reglab-identity=" in command:
            return SimpleNamespace(ok=True, exited=0, stderr="",
                                   stdout='ID=debian\nPRETTY_NAME="Debian 12"\n\nreglab-identity=fake\n')
        self.commands.append((command, in_stream.read() if in_stream else ""))
        return SimpleNamespace(ok=True, exited=0, stdout="", stderr="")


def engine_for(tmp_path: Path, path: Path) -> tuple[Engine, _Machine]:
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    lab = load_lab(tmp_path / "lab.yml", environ={}, overrides={"edition": "as-written"})
    machine = _Machine()
    images = LabImages(registry="reg-image", proxy="proxy-image", base="base-image")
    ctx = Context(lab, lambda name: machine, images, Redactor())
    loaded = scenario.load(path, "as-written")
    return Engine(loaded, ctx, State(tmp_path / "state.json"), Progress(quiet=True)), machine


def run_block_1(tmp_path: Path, path: Path) -> _Machine:
    """local-registry's `from_text: 1`, run on a machine that records it."""
    engine, machine = engine_for(tmp_path, path)
    engine.act(block_1_action(engine), "registry")
    return machine


def block_1_action(engine: Engine) -> dict[str, Any]:
    (action,) = [a for a in engine.scenario.step("local-registry").solve["registry"]
                 if getattr(a.get("from_text"), "refs", None) == (1,)]
    return action


# --- a block changed behind the reviewer's back: refused when the scenario loads ---------------


def test_template_syntax_added_to_a_cited_block_stops_show_and_runs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "MARKER"
    path = tutorial_copy(tmp_path, hostile(marker), reviewed=False)
    code, out, err = show(tmp_path, path, "local-registry", monkeypatch)
    assert not marker.exists(), "the tutorial's text ran Python on the host"
    assert code == 2, (out, err)
    assert "steps[0] (local-registry).solve.registry[" in err and "block 1" in err, err
    assert digest(BLOCK_1) in err, err


def test_a_stale_cited_block_stops_the_load_naming_step_and_block(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tutorial_copy(tmp_path, hostile(marker), reviewed=False)
    with pytest.raises(ConfigError) as info:
        scenario.load(path, "as-written")
    message = str(info.value)
    assert "steps[0] (local-registry)" in message and "block 1" in message, message
    assert "changed" in message, message
    assert not marker.exists()


def test_a_stale_block_only_cited_is_drift_not_a_load_error(tmp_path: Path) -> None:
    """Only what a from_text action runs must match at load; the rest is `drift`'s report."""
    from lab.tutorial.text import drift

    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(scenario.default_path().parent / "tutorial", folder / "tutorial")
    shutil.copy(scenario.default_path(), folder / "tutorial.yaml")
    text = TUTORIAL.read_text().replace("curl http://localhost:5043/v2/", "curl http://localhost:5044/v2/", 1)
    (folder / "tutorial.md").write_text(text)
    loaded = scenario.load(folder / "tutorial.yaml", "as-written")  # block 22: cited by nginx-proxy, not run
    [problem] = drift(loaded, text)
    assert "step 'nginx-proxy' cites block 22" in problem


# --- reviewed: the text runs and prints byte for byte, and never reaches jinja2 ------------------


def test_reviewed_template_syntax_is_shown_as_written_and_runs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "MARKER"
    line = hostile(marker)
    path = tutorial_copy(tmp_path, line, reviewed=True)
    code, out, err = show(tmp_path, path, "local-registry", monkeypatch)
    assert not marker.exists(), "the tutorial's text ran Python on the host"
    assert code == 0, err
    assert f"# tutorial block 1, line 2: {line}\n{line}\n" in out
    machine = run_block_1(tmp_path, path)
    assert not marker.exists(), "the tutorial's text ran Python on the host"
    assert machine.commands == [(f"docker run -d -p 5000:5000 --name registry reg-image && {line}", "")]


@pytest.mark.parametrize("line", [
    "echo '{{ x }}' '{% raw %}' [YOUR-DOMAIN] '{#' '{% endraw %}' '#}' '{%' '%}' '}}'",
    "docker ps --format '{{.Names}}' --filter name=USERNAME",
    "echo '{% raw %}{{ domain }}{% endraw %}' {{ domain }} {{",
], ids=["every-delimiter", "format", "raw-around-a-name"])
def test_braces_in_the_text_come_out_verbatim(tmp_path: Path, line: str) -> None:
    path = tutorial_copy(tmp_path, line, reviewed=True)
    ((command, _),) = run_block_1(tmp_path, path).commands
    expected = line.replace("[YOUR-DOMAIN]", "myregistrydomain.com").replace("USERNAME", "student")
    assert command == f"docker run -d -p 5000:5000 --name registry reg-image && {expected}"


# --- a password never reaches a command line -----------------------------------------------------


SMUGGLE = "docker login -u USERNAME -p {% endraw %}{{ user.password }}{% raw %} [YOUR-DOMAIN]"


def test_a_password_smuggled_past_the_placeholder_check_is_refused_at_load(tmp_path: Path) -> None:
    path = tutorial_copy(tmp_path, SMUGGLE, reviewed=False)
    with pytest.raises(ConfigError, match=r"steps\[0\] \(local-registry\).*block 1"):
        scenario.load(path, "as-written")


def test_a_reviewed_smuggle_runs_its_text_literally_without_the_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tutorial_copy(tmp_path, SMUGGLE, reviewed=True)
    machine = run_block_1(tmp_path, path)
    ((command, _),) = machine.commands
    assert PASSWORD not in command
    assert command.endswith("docker login -u student -p {% endraw %}{{ user.password }}{% raw %} "
                            "myregistrydomain.com")
    code, out, err = show(tmp_path, path, "local-registry", monkeypatch)
    assert code == 0, err
    assert PASSWORD not in out
    assert "-p {% endraw %}{{ user.password }}{% raw %} myregistrydomain.com\n" in out


def test_a_command_line_that_would_carry_a_password_is_refused_when_it_runs(tmp_path: Path) -> None:
    """The placeholder check is by name; this one holds on the final command, whatever gave it the password."""
    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(scenario.default_path().parent / "tutorial", folder / "tutorial")
    shutil.copy(TUTORIAL, folder / "tutorial.md")
    source = scenario.default_path().read_text()
    # A non-secret placeholder whose value turns out to be a password (here: a captured value).
    source = source.replace('  "registry:2": "{{ images.registry }}"', '  "registry:2": "{{ captured.image }}"', 1)
    assert '"{{ captured.image }}"' in source
    (folder / "tutorial.yaml").write_text(source)
    engine, machine = engine_for(tmp_path, folder / "tutorial.yaml")
    engine.ctx.captured["image"] = PASSWORD
    with pytest.raises(LabError) as info:
        engine.act(block_1_action(engine), "registry")
    assert machine.commands == []
    assert PASSWORD not in str(info.value)
    assert "block 1" in str(info.value) and "password" in str(info.value)


def test_a_secret_not_known_yet_does_not_stop_a_command_without_it(tmp_path: Path) -> None:
    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(scenario.default_path().parent / "tutorial", folder / "tutorial")
    shutil.copy(TUTORIAL, folder / "tutorial.md")
    source = scenario.default_path().read_text().replace('{secret: "{{ user.password }}"}',
                                                         '{secret: "{{ captured.token }}"}')
    (folder / "tutorial.yaml").write_text(source)
    machine = run_block_1(tmp_path, folder / "tutorial.yaml")
    assert machine.commands == [("docker run -d -p 5000:5000 --name registry reg-image", "")]


def test_show_refuses_to_print_a_password_on_a_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(scenario.default_path().parent / "tutorial", folder / "tutorial")
    shutil.copy(TUTORIAL, folder / "tutorial.md")
    source = scenario.default_path().read_text()
    # A value that reaches a password without naming one (the scenario is trusted; this is its slip).
    sneaky = '"{{ users | map(attribute=\'pass\' ~ \'word\') | first }}"'
    source = source.replace('  "registry:2": "{{ images.registry }}"', f'  "registry:2": {sneaky}', 1)
    assert sneaky in source
    (folder / "tutorial.yaml").write_text(source)
    code, out, err = show(tmp_path, folder / "tutorial.yaml", "local-registry", monkeypatch)
    assert code == 2, out
    assert "block 1, line 1 would show a password on a command line" in err, err
    assert PASSWORD not in out + err


# --- defence in depth: the lab's own templates render in a sandbox ------------------------------


def test_the_engines_templates_cannot_reach_python(tmp_path: Path) -> None:
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    lab = load_lab(tmp_path / "lab.yml", environ={}, overrides={})
    ctx = Context(lab, lambda name: None, LabImages(registry="r", proxy="p", base="b"), Redactor())
    marker = tmp_path / "MARKER"
    with pytest.raises(LabError, match=re.escape("cannot be rendered")):
        render_value(ctx.jinja, f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}", {})
    assert not marker.exists()
