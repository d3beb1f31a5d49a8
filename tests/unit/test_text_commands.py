"""The as-written edition's commands, taken from the tutorial's text (`from_text`), with no machine.

Placeholders are replaced exactly and predictably, a bad reference or a password
on a command line stops the load, the engine runs the very command the text
writes, and `reglab show` prints the line as written next to what is typed.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest
import yaml

from lab.common.errors import ConfigError
from lab.common.progress import Progress
from lab.engine import teaching
from lab.engine.context import Context
from lab.engine.state import State
from lab.engine.steps import Engine
from lab.machines.images import LabImages
from lab.model import scenario
from lab.model.credentials import Redactor
from lab.model.labfile import load as load_lab
from lab.tutorial.text import TUTORIAL, Command, code_blocks, digest, placeholders_in, substitute, waits_for_input

PASSWORD = "Sup3r-s3cret-pw"
VALUES = {
    "[YOUR-DOMAIN]": "{{ domain }}",
    "YOUR-DOMAIN": "{{ domain }}",
    "<YOURUSERNAME>": "{{ user }}",
    "USERNAME": "{{ user }}",
    "ubuntu": "{{ base }}",
    "registry:2": "{{ registry }}",
    "~/docker-registry": "{{ workdir }}",
}
NAMES = {"domain": "reg.example", "user": "student", "base": "busybox", "registry": "reg-image", "workdir": "/w"}


def rendered(text: str, values: dict[str, str] = VALUES) -> str:
    jinja = jinja2.Environment()
    return substitute(text, values).render(lambda value: jinja.from_string(value).render(NAMES))


def plain(command: Command) -> str:
    """The command with its values' templates in place, unrendered: what it is made of."""
    return command.render(lambda value: value)


# --- substitution -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("docker tag test-image [YOUR-DOMAIN]/test-image", "docker tag test-image reg.example/test-image"),
    ("docker login https://YOUR-DOMAIN", "docker login https://reg.example"),
    ("curl https://<YOURUSERNAME>:x@YOUR-DOMAIN/v2/", "curl https://student:x@reg.example/v2/"),
    ("curl http://USERNAME:x@localhost/", "curl http://student:x@localhost/"),
    ("htpasswd -c registry.password USERNAME", "htpasswd -c registry.password student"),
    ("cd ~/docker-registry/nginx", "cd /w/nginx"),
    ("docker run -d --name registry registry:2", "docker run -d --name registry reg-image"),
    ("docker pull ubuntu && docker tag ubuntu x", "docker pull busybox && docker tag busybox x"),
], ids=["brackets", "url", "angle-brackets", "user-before-colon", "last-word", "path", "image-tag", "twice"])
def test_placeholders_are_replaced_by_the_labs_values(text: str, expected: str) -> None:
    assert rendered(text) == expected


@pytest.mark.parametrize("text", [
    "echo MYUSERNAMES", "docker pull ubuntu-dev", "docker pull myubuntu:16",
    "docker run registry:2.8", "docker run myregistry:2", "echo YOUR-DOMAINS", "vim docker-compose.yml",
    "echo USERNAME_2", "echo ubuntu.iso",
], ids=["inside-a-word", "name-with-hyphen", "prefix", "longer-tag", "longer-name", "plural", "no-placeholder",
        "underscore", "dot"])
def test_a_placeholder_inside_a_longer_word_is_left_alone(text: str) -> None:
    assert rendered(text) == text


def test_the_longest_placeholder_wins_whatever_the_table_order() -> None:
    """`[YOUR-DOMAIN]` before `YOUR-DOMAIN`: no stray brackets around the lab's domain."""
    values = {"YOUR-DOMAIN": "D", "[YOUR-DOMAIN]": "B", "USERNAME": "U", "<YOURUSERNAME>": "A"}
    assert plain(substitute("[YOUR-DOMAIN] YOUR-DOMAIN <YOURUSERNAME> USERNAME", values)) == "B D A U"
    assert placeholders_in("x [YOUR-DOMAIN]/y <YOURUSERNAME>", list(values)) == ["[YOUR-DOMAIN]", "<YOURUSERNAME>"]


def test_where_two_placeholders_start_at_one_place_the_longer_wins() -> None:
    """Leftmost first, then longest: `registry:2` is the image, not `registry` followed by `:2`."""
    values = {"registry": "NAME", "registry:2": "IMAGE", "~/d": "HOME", "~/d/nginx": "NGINX"}
    assert plain(substitute("--name registry registry:2", values)) == "--name NAME IMAGE"
    assert plain(substitute("cd ~/d/nginx; cd ~/d/data", values)) == "cd NGINX; cd HOME/data"


def test_a_value_is_never_searched_again() -> None:
    assert plain(substitute("USERNAME", {"USERNAME": "YOUR-DOMAIN", "YOUR-DOMAIN": "x"})) == "YOUR-DOMAIN"


def test_braces_in_the_text_run_as_written() -> None:
    """Only the values are templates: the text's own `{{.Names}}` is never read as one."""
    text = "docker ps --format '{{.Names}}' --filter name=USERNAME"
    assert rendered(text) == "docker ps --format '{{.Names}}' --filter name=student"


# --- commands that wait for a person ------------------------------------------------------


@pytest.mark.parametrize("line", [
    "vim docker-compose.yml", "sudo nano x", "docker run -t -i ubuntu /bin/bash", "docker run -it ubuntu sh",
    "docker exec --interactive --tty x sh", "docker login https://YOUR-DOMAIN",
    "openssl req -new -key domain.key -out x.csr", "htpasswd -c registry.password USERNAME", "docker-compose rm",
])
def test_commands_that_wait_for_input(line: str) -> None:
    assert waits_for_input(line)


@pytest.mark.parametrize("line", [
    "docker run -d -p 5000:5000 --name registry registry:2", "docker run --rm x ls",
    "docker login x -u u --password-stdin", "openssl req -new -key k -out c -subj '/CN=x'",
    "openssl genrsa -out devdockerCA.key 2048", "htpasswd -c -i registry.password u", "docker-compose rm -f",
    "touch initcron", "",
])
def test_commands_that_do_not(line: str) -> None:
    assert waits_for_input(line) == ""


# --- loading: the text, the placeholders, the equivalents, the action -----------------------

MINI_TEXT = """# Mini

```
docker run -d --name registry registry:2
```

```
nginx:
  image: nginx
```

```
cd ~/docker-registry
docker login https://YOUR-DOMAIN
```

```
Username: USERNAME
Password: PASSWORD
```

```
curl http://USERNAME:PASSWORD@YOUR-DOMAIN/v2/
```

```
docker run -t -i ubuntu /bin/bash
touch initcron
exit
docker commit $(docker ps -lq) test-image
```
"""
BLOCKS = ["docker run -d --name registry registry:2", "nginx:\n  image: nginx",
          "cd ~/docker-registry\ndocker login https://YOUR-DOMAIN", "Username: USERNAME\nPassword: PASSWORD",
          "curl http://USERNAME:PASSWORD@YOUR-DOMAIN/v2/",
          "docker run -t -i ubuntu /bin/bash\ntouch initcron\nexit\ndocker commit $(docker ps -lq) test-image"]
LOGIN = {"block": 3, "lines": 2, "prompts": 4, "run": "docker login https://YOUR-DOMAIN -u USERNAME --password-stdin",
         "stdin": "PASSWORD", "why": "it asks for a user name and password"}
SHELL = {"block": 6, "lines": "1-3", "run": "docker run ubuntu touch initcron", "why": "no terminal here"}


def mini(tmp_path: Path, solve: list[dict[str, Any]], cites: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
         equivalents: list[dict[str, Any]] | None = None, **top: Any) -> Path:
    """A scenario of one step `a` on the registry, beside MINI_TEXT; returns the scenario's path."""
    (tmp_path / "mini.md").write_text(MINI_TEXT)
    data = {
        "text": "mini.md",
        "placeholders": {"YOUR-DOMAIN": "{{ domain }}", "USERNAME": "{{ user.name }}", "ubuntu": "{{ images.base }}",
                         "~/docker-registry": "{{ workdir }}", "registry:2": "{{ images.registry }}",
                         "PASSWORD": {"secret": "{{ user.password }}"}},
        "equivalents": [LOGIN, SHELL] if equivalents is None else equivalents,
        **top,
        "steps": [{"id": "a", "title": "T", "section": "S",
                   "tutorial": [{"block": n, "first": BLOCKS[n - 1].splitlines()[0], "sha256": digest(BLOCKS[n - 1])}
                                for n in cites],
                   "solve": {"registry": solve}}],
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        scenario.load(path, "as-written")
    return str(info.value)


def test_the_mini_text_has_the_blocks_the_tests_cite(tmp_path: Path) -> None:
    from lab.tutorial.text import code_blocks

    assert [b.text for b in code_blocks(MINI_TEXT)] == BLOCKS


def test_from_text_loads_the_texts_commands_joined_in_order(tmp_path: Path) -> None:
    loaded = scenario.load(mini(tmp_path, [{"from_text": [1, 6], "contains": "x"}]), "as-written")
    item = loaded.steps[0].solve["registry"][0]
    assert plain(item["command"]) == ("docker run -d --name registry {{ images.registry }} && "
                               "docker run {{ images.base }} touch initcron && "
                               "docker commit $(docker ps -lq) test-image")
    assert item["contains"] == "x"
    assert [p.where() for p in item["from_text"].parts] == ["block 1, line 1", "block 6, lines 1-3", "block 6, line 4"]
    assert item["from_text"].parts[1].instead.why == "no terminal here"


def test_an_equivalent_brings_its_stdin_in_the_labs_words(tmp_path: Path) -> None:
    item = scenario.load(mini(tmp_path, [{"from_text": 3}]), "as-written").steps[0].solve["registry"][0]
    assert plain(item["command"]) == ("cd {{ workdir }} && "
                               "docker login https://{{ domain }} -u {{ user.name }} --password-stdin")
    assert plain(item["stdin"]) == "{{ user.password }}"
    assert item["from_text"].parts[1].prompts == BLOCKS[3]


LOAD_ERRORS = [
    pytest.param([{"from_text": 9}], {}, "steps[0] (a).solve.registry[0].from_text",
                 "block 9: mini.md has 6 code blocks", id="missing-block"),
    pytest.param([{"from_text": 1}], {"cites": (3,)}, "steps[0] (a).solve.registry[0].from_text",
                 "block 1 ('docker run -d --name registry registry:2') is not one this step cites", id="uncited"),
    pytest.param([{"from_text": 2}], {}, "steps[0] (a).solve.registry[0].from_text",
                 "block 2 ('nginx:') is not a shell block", id="not-shell"),
    pytest.param([{"from_text": 5}], {}, "steps[0] (a).solve.registry[0].from_text",
                 "block 5, line 1 would put the password placeholder 'PASSWORD' on a command line", id="password"),
    pytest.param([{"from_text": 6}], {"equivalents": [LOGIN]}, "steps[0] (a).solve.registry[0].from_text",
                 "block 6, line 1 ('docker run -t -i ubuntu /bin/bash') waits for input: `-t -i` opens a terminal",
                 id="interactive-without-equivalent"),
    pytest.param([{"from_text": "6:1"}], {}, "steps[0] (a).solve.registry[0].from_text",
                 "block 6, lines 1-3 are typed as one command (equivalents); select all of them", id="half-equivalent"),
    pytest.param([{"from_text": "6:2-9"}], {}, "steps[0] (a).solve.registry[0].from_text",
                 "block 6 has lines 1-4, not 2-9", id="lines-past-the-end"),
    pytest.param([{"from_text": [1, "nine"]}], {}, "steps[0] (a).solve.registry[0].from_text",
                 'expected a block number, "BLOCK:LINE"', id="bad-reference"),
    pytest.param([{"from_text": 3, "stdin": "x"}], {}, "steps[0] (a).solve.registry[0].stdin",
                 "the equivalent of block 3, line 2 already gives stdin", id="two-stdins"),
    pytest.param([{"from_text": 1}], {"equivalents": [{**SHELL, "run": ""}]}, "equivalents[0].run",
                 "missing; an equivalent needs the command the lab runs instead", id="equivalent-without-command"),
    pytest.param([{"from_text": 1}], {"equivalents": [{**SHELL, "run": "docker run -it ubuntu sh"}]},
                 "equivalents[0].run", "still waits for input", id="equivalent-still-interactive"),
    pytest.param([{"from_text": 1}], {"equivalents": [{**LOGIN, "run": "docker login x -u u -p PASSWORD"}]},
                 "equivalents[0].run", "the equivalent would put the password placeholder 'PASSWORD' on a command",
                 id="password-in-an-equivalent"),
    pytest.param([{"from_text": 1}], {"equivalents": [{**SHELL, "why": " "}]}, "equivalents[0].why", "missing",
                 id="equivalent-without-why"),
    pytest.param([{"from_text": 1}], {"equivalents": [SHELL, {**SHELL, "lines": 3}]}, "equivalents[1].lines",
                 "overlaps another equivalent of block 6 (lines 1-3)", id="overlap"),
    pytest.param([{"from_text": 1}], {"equivalents": [{**SHELL, "block": 2}]}, "equivalents[0].block",
                 "is not a shell block", id="equivalent-of-a-non-shell-block"),
    pytest.param([{"from_text": 1}], {"placeholders": {"PW": "{{ user.password }}"}}, "placeholders.PW",
                 "a password is {secret: TEMPLATE}", id="password-not-secret"),
    pytest.param([{"from_text": 1}],
                 {"placeholders": {"PW": {"secret": "{{ captured.pw }}"}, "TOKEN": "{{ captured.pw }}"}},
                 "placeholders.TOKEN", "has the value of the secret 'PW'", id="secret-value-not-secret"),
]


@pytest.mark.parametrize(("solve", "options", "key_path", "words"), LOAD_ERRORS)
def test_a_bad_reference_stops_the_load_naming_file_step_and_item(
        tmp_path: Path, solve: list[dict[str, Any]], options: dict[str, Any], key_path: str, words: str) -> None:
    path = mini(tmp_path, solve, **options)
    message = load_error(path)
    assert message.startswith(f"{path}: {key_path}: "), message
    assert words in message, message


def test_from_text_without_the_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    step = {"id": "a", "title": "T", "section": "S", "solve": {"registry": [{"from_text": 1}]}}
    path.write_text(yaml.safe_dump({"steps": [step]}))
    assert load_error(path).startswith(f"{path}: steps[0] (a).solve.registry[0].from_text: needs the tutorial's text")


def test_a_missing_text_file_is_refused(tmp_path: Path) -> None:
    path = mini(tmp_path, [{"from_text": 1}], text="nosuch.md")
    assert load_error(path).startswith(f"{path}: text: cannot read {tmp_path / 'nosuch.md'}")


def test_both_editions_validate_from_text(tmp_path: Path) -> None:
    """A modern run must not hide an as-written item's bad reference until someone runs that edition."""
    path = mini(tmp_path, [{"from_text": 9, "only": "as-written"}])
    with pytest.raises(ConfigError, match="block 9"):
        scenario.load(path, "modern")


# --- the engine runs the command the text writes ---------------------------------------------


class _Machine:
    """Records each command and what it read on stdin; every command succeeds."""

    name = "client"

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def sudo(self, command: str, in_stream: Any = False, **_: object) -> SimpleNamespace:
        if "reglab-identity=" in command:
            return SimpleNamespace(ok=True, exited=0, stderr="",
                                   stdout='ID=debian\nPRETTY_NAME="Debian 12"\n\nreglab-identity=fake\n')
        self.commands.append((command, in_stream.read() if in_stream else ""))
        return SimpleNamespace(ok=True, exited=0, stdout="Login Succeeded\n", stderr="")


def as_written_engine(tmp_path: Path, scenario_path: Path) -> tuple[Engine, _Machine]:
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    lab = load_lab(tmp_path / "lab.yml", environ={}, overrides={"edition": "as-written"})
    machine = _Machine()
    images = LabImages(registry="reg-image", proxy="proxy-image", base="base-image")
    ctx = Context(lab, lambda name: machine, images, Redactor())
    loaded = scenario.load(scenario_path, "as-written")
    return Engine(loaded, ctx, State(tmp_path / "state.json"), Progress(quiet=True)), machine


def from_text_actions(engine: Engine, step_id: str, machine: str) -> list[dict[str, Any]]:
    return [a for a in engine.scenario.step(step_id).solve[machine] if "from_text" in a]


def test_the_engine_runs_the_login_from_the_text_with_the_password_on_stdin(tmp_path: Path) -> None:
    engine, machine = as_written_engine(tmp_path, scenario.default_path())
    (login,) = from_text_actions(engine, "client-login", "client")
    engine.act(login, "client")
    assert machine.commands == [("docker login https://myregistrydomain.com -u student --password-stdin",
                                 f"{PASSWORD}\n")]


def test_the_engine_runs_the_tls_commands_from_the_text(tmp_path: Path) -> None:
    engine, machine = as_written_engine(tmp_path, scenario.default_path())
    (openssl,) = from_text_actions(engine, "tls", "registry")
    engine.act(openssl, "registry")
    ((command, stdin),) = machine.commands
    assert command.split(" && ") == [
        "cd /root/docker-registry/nginx",
        "openssl genrsa -out devdockerCA.key 2048",
        "openssl req -x509 -new -nodes -key devdockerCA.key -days 10000 -out devdockerCA.crt "
        "-subj '/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd'",
        "openssl genrsa -out domain.key 2048",
        "openssl req -new -key domain.key -out dev-docker-registry.com.csr "
        "-subj '/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd/CN=myregistrydomain.com'",
        "openssl x509 -req -in dev-docker-registry.com.csr -CA devdockerCA.crt -CAkey devdockerCA.key "
        "-CAcreateserial -out domain.crt -days 10000",
    ]
    assert stdin == ""


def test_the_as_written_push_and_pull_come_from_the_text_with_the_labs_images(tmp_path: Path) -> None:
    engine, machine = as_written_engine(tmp_path, scenario.default_path())
    for action in from_text_actions(engine, "client-push", "client"):
        engine.act({**action, "regex": ".*"}, "client")
    for action in from_text_actions(engine, "server-pull", "registry"):
        engine.act({k: v for k, v in action.items() if k != "contains"}, "registry")
    assert [command for command, _ in machine.commands] == [
        "docker run base-image touch initcron && docker commit $(docker ps -lq) test-image",
        "docker tag test-image myregistrydomain.com/test-image && docker push myregistrydomain.com/test-image",
        "docker pull myregistrydomain.com/test-images",
        "docker run --rm myregistrydomain.com/test-images ls",
    ]


def test_a_changed_command_in_the_text_changes_the_command_run(tmp_path: Path) -> None:
    """The proof that the command comes from the text and not from a second copy of it (once
    the change is reviewed: the step's citation carries the changed block's digest)."""
    shutil.copytree(scenario.default_path().parent / "tutorial", tmp_path / "tutorial")  # its templates, images
    text = TUTORIAL.read_text()
    assert text.count("openssl genrsa -out devdockerCA.key 2048") == 1
    changed = text.replace("openssl genrsa -out devdockerCA.key 2048", "openssl genrsa -out devdockerCA.key 4096")
    (tmp_path / "tutorial.md").write_text(changed)
    (before,) = [b for b in code_blocks(text) if "openssl genrsa -out devdockerCA.key 2048" in b.text]
    source = scenario.default_path().read_text()
    assert source.count(f"sha256: {before.digest}") == 1
    after = code_blocks(changed)[before.number - 1]
    (tmp_path / "tutorial.yaml").write_text(source.replace(f"sha256: {before.digest}", f"sha256: {after.digest}"))
    engine, machine = as_written_engine(tmp_path, tmp_path / "tutorial.yaml")
    (openssl,) = from_text_actions(engine, "tls", "registry")
    engine.act(openssl, "registry")
    assert "openssl genrsa -out devdockerCA.key 4096 && " in machine.commands[0][0]
    assert "2048 && openssl req -x509" not in machine.commands[0][0]


def test_the_shipped_as_written_edition_takes_its_commands_from_the_text() -> None:
    """Every step that runs a tutorial command in the as-written edition does so with from_text."""
    loaded = scenario.load(scenario.default_path(), "as-written")
    steps = {s.id for s in loaded.steps for actions in s.solve.values() for a in actions if "from_text" in a}
    assert steps == {"local-registry", "nginx-proxy", "tls", "client-login", "client-push", "server-pull"}
    modern = scenario.load(scenario.default_path(), "modern")
    assert not [a for s in modern.steps for actions in s.solve.values() for a in actions if "from_text" in a]


# --- reglab show ------------------------------------------------------------------------------


def show(tmp_path: Path, step_id: str) -> str:
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    lab = load_lab(tmp_path / "lab.yml", environ={}, overrides={"edition": "as-written"})
    images = LabImages(registry="reg-image", proxy="proxy-image", base="base-image")
    ctx = Context(lab, lambda name: None, images, Redactor())
    session = SimpleNamespace(lab=lab, scenario=scenario.load(scenario.default_path(), "as-written"),
                              context=lambda: ctx, provider=SimpleNamespace(makes_machines=True))
    return teaching.instructions(session, step_id)  # type: ignore[arg-type]


def test_show_prints_the_tutorials_line_and_what_it_is_typed_as(tmp_path: Path) -> None:
    out = show(tmp_path, "client-login").splitlines()
    start = out.index("# tutorial block 53, line 1: docker login https://YOUR-DOMAIN")
    assert out[start + 1] == "#   and its prompts (block 54): Username: USERNAME / Password: PASSWORD"
    assert out[start + 2].startswith("# typed here as (docker login asks for Username: and Password:")
    assert out[start + 3] == ("docker login https://myregistrydomain.com -u student --password-stdin"
                              "    # type the password when asked, or pipe it on stdin")
    assert PASSWORD not in "\n".join(out)


def test_show_prints_each_line_of_a_block_with_its_number(tmp_path: Path) -> None:
    out = show(tmp_path, "client-push")
    assert ("# tutorial block 56, lines 1-3: docker run -t -i ubuntu /bin/bash\n#   touch initcron\n#   exit\n"
            "# typed here as (`-t -i ... /bin/bash` opens a shell") in out
    assert "\ndocker run base-image touch initcron\n" in out
    assert ("# tutorial block 56, line 4: docker commit $(docker ps -lq) test-image\n"
            "docker commit $(docker ps -lq) test-image\n") in out
    assert "# tutorial block 59, line 2: docker push [YOUR-DOMAIN]/test-image\n" in out


def test_show_of_a_command_that_needs_no_equivalent_has_no_typed_here_line(tmp_path: Path) -> None:
    out = show(tmp_path, "local-registry")
    assert ("# tutorial block 1, line 1: docker run -d -p 5000:5000 --name registry registry:2\n"
            "docker run -d -p 5000:5000 --name registry reg-image\n") in out
    assert out.count("typed here as") == 1  # block 2: the lab does not pull ubuntu


def test_show_writes_the_output_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reglab --edition as-written show tls` in-process: the openssl lines, as written and as typed."""
    from lab.cli.main import main

    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    for name in ("REGLAB_PROVIDER", "REGLAB_EDITION", "REGLAB_IMAGES", "REGLAB_LAB"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["--lab", str(tmp_path / "lab.yml"), "--edition", "as-written", "show", "tls"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "# tutorial block 40, line 1: openssl req -new -key domain.key -out dev-docker-registry.com.csr\n" in text
    assert "# typed here as (openssl req asks for the subject;" in text
    assert "/CN=myregistrydomain.com'\n" in text
