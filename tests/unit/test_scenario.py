"""Unit tests for lab.scenario, the shipped scenarios/tutorial.yaml and the templates it writes.

Every string of the shipped scenario is rendered the way the engine renders it
(jinja2, StrictUndefined), so a typo in a template fails here, not on a machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment

from lab.common.errors import ConfigError
from lab.machines.images import LabImages
from lab.machines.osfamily import DEBIAN
from lab.model import manifest
from lab.model.kinds import Key, Kind, Text
from lab.model.lab import EDITIONS, Ports, User, default_scenario
from lab.model.scenario import ACTION_KINDS, CHECK_KINDS, Scenario, default_path, kind_of, load
from lab.tutorial.text import Command

# The tutorial's templates and workdir: what its scenario declares (lab/model/manifest.py).
TUTORIAL = manifest.load(default_scenario())
TEMPLATES = TUTORIAL.templates
WORKDIR = TUTORIAL.workdir

STEP_IDS = [
    "local-registry",
    "hosts",
    "compose-registry",
    "nginx-proxy",
    "basic-auth",
    "tls",
    "port-443",
    "client-trust",
    "client-login",
    "client-push",
    "server-pull",
]
OTHER = {"modern": "as-written", "as-written": "modern"}


@pytest.fixture(scope="module", params=EDITIONS)
def edition(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def shipped() -> dict[str, Scenario]:
    return {e: load(default_path(), e) for e in EDITIONS}


def jinja() -> jinja2.Environment:
    """As engine.Context builds it."""
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    env.filters["regex_escape"] = re.escape
    return env


def variables(edition: str) -> dict[str, Any]:
    """What engine.Context.variables gives on a Debian machine, built by hand."""
    user = User(name="student", password="s3cret-Passw0rd")
    return {
        "domain": "myregistrydomain.com",
        "ip": {"registry": "192.168.33.10", "client": "192.168.33.11"},
        "ports": Ports(registry=5000, proxy=5043, https=443),
        "images": LabImages(registry="registry:2", proxy="nginx:1.27", base="debian:bookworm"),
        "user": user,
        "users": (user,),
        "workdir": WORKDIR,
        "compose": DEBIAN.compose,
        "ca_anchor": DEBIAN.ca_path("devdockerCA.crt"),
        "edition": edition,
        "captured": {"pushed": "sha256:" + "0" * 64},
        "label": "org.reglab.lab=reglab",
    }


def render(env: jinja2.Environment, value: Any, names: dict[str, Any]) -> Any:
    """Engine.Context.render: every string in nested lists and mappings; of the text's commands, the values."""
    if isinstance(value, Command):
        return value.render(lambda template: render(env, template, names))
    if isinstance(value, str):
        return env.from_string(value).render(names)
    if isinstance(value, list):
        return [render(env, v, names) for v in value]
    if isinstance(value, dict):
        return {k: render(env, v, names) for k, v in value.items()}
    return value


def items(scenario: Scenario) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for step in scenario.steps:
        for part in ("solve", "check"):
            for machine, listed in getattr(step, part).items():
                for item in listed:
                    yield step.id, part, machine, item


def raw_items() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    data = yaml.safe_load(default_path().read_text())
    for step in data["steps"]:
        for part in ("solve", "check"):
            for machine, listed in (step.get(part) or {}).items():
                for item in listed:
                    yield step["id"], part, machine, item


# --- the shipped scenario -------------------------------------------------------


def test_shipped_scenario_has_the_tutorials_steps_in_order(shipped: dict[str, Scenario], edition: str) -> None:
    scenario = shipped[edition]
    assert scenario.id == "tutorial"
    assert scenario.path == default_path()
    assert [s.id for s in scenario.steps] == STEP_IDS
    assert all(s.title and s.section for s in scenario.steps)
    assert scenario.index("tls") == 5
    assert scenario.step("tls").id == "tls"
    with pytest.raises(KeyError):
        scenario.step("nosuch")


def test_shipped_tutorial_loads_under_the_strict_schema(edition: str) -> None:
    """Every key the tutorial uses is one its kind declares, in both editions."""
    scenario = load(default_path(), edition)
    assert [s.id for s in scenario.steps] == STEP_IDS


def test_every_item_has_one_kind_and_no_only_key(shipped: dict[str, Scenario], edition: str) -> None:
    for step_id, part, machine, item in items(shipped[edition]):
        kinds = ACTION_KINDS if part == "solve" else CHECK_KINDS
        assert len([k for k in kinds if k in item]) == 1, (step_id, part, machine, item)
        assert "only" not in item, (step_id, item)


def test_step_machines_are_roles(shipped: dict[str, Scenario]) -> None:
    step = shipped["modern"].step("hosts")
    assert step.machines() == ["registry", "client"]
    assert shipped["modern"].step("client-login").machines() == ["client"]


def test_only_items_appear_in_their_edition_alone(shipped: dict[str, Scenario]) -> None:
    """Every `only: E` (or `only: [E, F]`) item is kept, without `only`, in its editions and dropped from the
    others. A from_text item is compared by its refs: the fixed edition runs the fixed lines for them."""
    count = 0
    for step_id, part, machine, item in raw_items():
        if "only" not in item:
            continue
        count += 1
        stripped = {k: v for k, v in item.items() if k != "only"}
        editions = item["only"] if isinstance(item["only"], list) else [item["only"]]
        for edition in EDITIONS:
            found = [_as_in_file(i) for i in getattr(shipped[edition].step(step_id), part)[machine]]
            assert (stripped in found) == (edition in editions), (step_id, edition, item)
    assert count > 10


def _as_in_file(item: dict[str, Any]) -> dict[str, Any]:
    """A loaded item as the scenario file writes it: a from_text action without what its load added, a file
    from the text with its block and edits."""
    if "from_block" in item:
        source = item["from_block"]
        edits = {"edits": [{"replace": old, "with": new} for old, new in source.edits]} if source.edits else {}
        return {**item, "from_block": source.block, **edits}
    if "from_text" not in item:
        return item
    raw = {k: v for k, v in item.items() if k not in ("command", "stdin", "from_text")}
    refs = item["from_text"].refs
    return {**raw, "from_text": refs[0] if len(refs) == 1 else list(refs)}


def _kinds(scenario: Scenario, step_id: str, machine: str = "registry") -> list[str]:
    return [kind_of(a, ACTION_KINDS) for a in scenario.step(step_id).solve[machine]]


def _runs(scenario: Scenario, step_id: str, machine: str = "registry") -> str:
    """The commands of a step's run and from_text actions (those as loaded: taken from the text)."""
    actions = scenario.step(step_id).solve[machine]
    return "\n".join(a["run"] if "run" in a else a["command"].render(lambda value: value)
                     for a in actions if "run" in a or "from_text" in a)


def test_tls_step_differs_by_edition(shipped: dict[str, Scenario]) -> None:
    assert "pki" in _kinds(shipped["modern"], "tls")
    assert "pki" not in _kinds(shipped["as-written"], "tls")
    assert "openssl genrsa" in _runs(shipped["as-written"], "tls")
    assert "openssl" not in _runs(shipped["modern"], "tls")


def test_server_pull_differs_by_edition(shipped: dict[str, Scenario]) -> None:
    modern, as_written = _runs(shipped["modern"], "server-pull"), _runs(shipped["as-written"], "server-pull")
    assert "docker pull {{ domain }}/test-images" in as_written  # the tutorial's typo, kept
    assert "test-images" not in modern
    assert "docker pull {{ domain }}/test-image\n" in modern + "\n"
    assert "docker login" in modern
    assert "docker login" not in as_written


def test_as_written_server_pull_does_what_the_tutorial_says_and_nothing_more(shipped: dict[str, Scenario]) -> None:
    """Issue 11: the tutorial pulls and runs test-images with no login on the server; the solve must too,
    so a run shows those breakages (it ran test-image, the name the client pushed)."""
    assert _runs(shipped["as-written"], "server-pull").splitlines() == [
        "docker pull {{ domain }}/test-images",
        "docker run --rm {{ domain }}/test-images ls",
    ]
    assert _runs(shipped["modern"], "server-pull").splitlines() == [
        "docker login {{ domain }} -u {{ user.name }} --password-stdin",
        "docker pull {{ domain }}/test-image",
        "docker run --rm {{ domain }}/test-image ls",
    ]


def test_client_trust_names_differ_by_edition(shipped: dict[str, Scenario]) -> None:
    def names(edition: str) -> list[str]:
        return [a["name"] for a in shipped[edition].step("client-trust").solve["client"] if "ca_trust" in a]

    assert names("modern") == ["devdockerCA.crt"]
    assert names("as-written") == ["debdockerCA.crt"]


def test_every_string_renders(shipped: dict[str, Scenario], edition: str) -> None:
    """StrictUndefined turns a misspelt variable into an error, as the engine would at run time."""
    env, names = jinja(), variables(edition)
    for step_id, part, machine, item in items(shipped[edition]):
        try:
            rendered = render(env, item, names)
        except jinja2.TemplateError as exc:
            pytest.fail(f"{step_id} {part} {machine}: {item}: {exc}")
        if "from_text" in item:  # each command as `show` renders it, from the text
            rendered = {**rendered, "from_text": [render(env, p.command, names) for p in item["from_text"].parts]}
        if "from_block" in item:  # the file as the engine writes it, from the text
            rendered = {**rendered, "from_block": render(env, item["from_block"].content, names)}
        assert "{{" not in str(rendered) and "{%" not in str(rendered), (step_id, rendered)


def _nested(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield item
    for key in ("any", "wait", "check"):
        value = item.get(key)
        for inner in value if isinstance(value, list) else [value] if isinstance(value, dict) else []:
            yield from _nested(inner)


def test_rendered_patterns_compile(shipped: dict[str, Scenario], edition: str) -> None:
    env, names = jinja(), variables(edition)
    for step_id, _, _, item in items(shipped[edition]):
        for inner in _nested(render(env, item, names)):
            patterns = [inner["regex"]] if "regex" in inner else []
            patterns += list((inner.get("capture") or {}).values())
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    pytest.fail(f"{step_id}: /{pattern}/: {exc}")


def test_capture_feeds_the_later_check(shipped: dict[str, Scenario], edition: str) -> None:
    """client-push captures `pushed` from `docker image inspect` output; its regex must match that output."""
    env, names = jinja(), variables(edition)
    check = shipped[edition].step("client-push").check["client"][0]
    pattern = render(env, check, names)["capture"]["pushed"]
    digest = "sha256:" + "1" * 64
    found = re.search(pattern, f'"RepoDigests": ["myregistrydomain.com/test-image@{digest}"]')
    assert found and found.group(1) == digest
    assert not re.search(pattern, f"myregistrydomainXcom/test-image@{digest}")  # the dots are escaped


def test_file_actions_render_their_templates(shipped: dict[str, Scenario], edition: str) -> None:
    """Each `file: template:` action with its (rendered) vars, as Engine._do_file does."""
    env, names = jinja(), variables(edition)
    seen = set()
    for step_id, part, machine, item in items(shipped[edition]):
        if part != "solve" or kind_of(item, ACTION_KINDS) != "file" or "template" not in item:
            continue
        rendered = render(env, item, names)
        text = env.get_template(rendered["template"]).render(names | (rendered.get("vars") or {}))
        seen.add(rendered["template"])
        if rendered["template"] == "docker-compose.yml.j2":
            assert isinstance(yaml.safe_load(text), dict), step_id
        assert "{{" not in text, (step_id, machine)
    # The fixed edition writes both files from the fixed text's blocks (test_text_files.py), never a template.
    assert seen == (set() if edition == "fixed" else {"docker-compose.yml.j2", "registry.conf.j2"})


# --- the templates ----------------------------------------------------------------


def nginx_conf(edition: str, auth: bool, tls: bool) -> str:
    return jinja().get_template("registry.conf.j2").render(variables(edition) | {"auth": auth, "tls": tls})


def compose(edition: str, nginx: bool, proxy_port: str = "5043") -> str:
    names = variables(edition) | {"nginx": nginx, "proxy_port": proxy_port}
    return jinja().get_template("docker-compose.yml.j2").render(names)


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


@pytest.mark.parametrize(("auth", "tls"), [(False, False), (True, False), (True, True)])
def test_nginx_conf_renders(edition: str, auth: bool, tls: bool) -> None:
    text = nginx_conf(edition, auth, tls)
    assert "server_name myregistrydomain.com;" in text
    assert "server registry:5000;" in text
    assert ('auth_basic "registry.localhost";' in lines(text)) is auth
    assert ("add_header 'Docker-Distribution-Api-Version' 'registry/2.0' always;" in lines(text)) is auth
    assert ("ssl_certificate /etc/nginx/conf.d/domain.crt;" in lines(text)) is tls
    assert text.count("{") == text.count("}")


def test_modern_nginx_tls_listens_with_ssl() -> None:
    text = nginx_conf("modern", auth=True, tls=True)
    assert "listen 443 ssl;" in lines(text)
    assert "ssl on;" not in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in lines(text)


def test_as_written_nginx_tls_says_ssl_on() -> None:
    text = nginx_conf("as-written", auth=True, tls=True)
    assert "ssl on;" in lines(text)
    assert "listen 443;" in lines(text)
    assert "listen 443 ssl;" not in lines(text)


@pytest.mark.parametrize("auth", [False, True])
def test_nginx_without_tls_has_ssl_commented_out(edition: str, auth: bool) -> None:
    text = nginx_conf(edition, auth=auth, tls=False)
    assert "listen 443;" in lines(text)
    assert "# ssl on;" in lines(text)
    assert "ssl on;" not in lines(text)


@pytest.mark.parametrize(("nginx", "port"), [(False, "5043"), (True, "5043"), (True, "443")])
def test_modern_compose(nginx: bool, port: str) -> None:
    text = compose("modern", nginx, port)
    assert "services:" in text.splitlines()
    assert "links:" not in text
    data = yaml.safe_load(text)
    assert list(data) == ["services"]
    registry = data["services"]["registry"]
    assert registry["image"] == "registry:2"
    assert registry["ports"] == ["127.0.0.1:5000:5000"]
    assert registry["environment"] == {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/data"}
    assert registry["volumes"] == ["./data:/data"]
    assert ("nginx" in data["services"]) is nginx
    if nginx:
        proxy = data["services"]["nginx"]
        assert proxy["image"] == "nginx:1.27"
        assert proxy["ports"] == [f"{port}:443"]
        assert proxy["depends_on"] == ["registry"]
        assert proxy["volumes"] == ["./nginx/:/etc/nginx/conf.d:ro"]


@pytest.mark.parametrize(("nginx", "port"), [(False, "5043"), (True, "5043"), (True, "443")])
def test_as_written_compose_is_format_1(nginx: bool, port: str) -> None:
    text = compose("as-written", nginx, port)
    assert "services:" not in text
    assert ("links:" in text) is nginx
    data = yaml.safe_load(text)
    assert sorted(data) == (["nginx", "registry"] if nginx else ["registry"])
    assert data["registry"]["ports"] == ["127.0.0.1:5000:5000"]
    assert data["registry"]["volumes"] == ["./data:/data"]
    if nginx:
        assert data["nginx"]["links"] == ["registry:registry"]
        assert data["nginx"]["ports"] == [f"{port}:443"]
        assert data["nginx"]["volumes"] == ["./nginx/:/etc/nginx/conf.d"]


def test_templates_need_their_variables() -> None:
    """StrictUndefined: a template rendered without its variables fails instead of writing blanks."""
    with pytest.raises(jinja2.UndefinedError):
        jinja().get_template("registry.conf.j2").render(variables("modern"))
    with pytest.raises(jinja2.UndefinedError):
        jinja().get_template("docker-compose.yml.j2").render(variables("modern"))


# --- bad scenarios ----------------------------------------------------------------

STEP = "  - id: {id}\n    title: T\n    section: S\n"

BAD = [
    pytest.param(
        "steps:\n" + STEP.format(id="a") + STEP.format(id="a"),
        "steps[1].id",
        ["'a'", "defined twice"],
        id="duplicate-id",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    solve:\n      mirror:\n        - run: 'true'\n",
        "steps[0] (a).solve.mirror",
        ["unknown machine", "registry", "client"],
        id="unknown-machine",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    solve:\n      registry:\n        - {run: 'true', file: /x}\n",
        "steps[0] (a).solve.registry[0]",
        ["exactly one of", "run", "file"],
        id="two-kinds",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    check:\n      client:\n        - {run: 'true'}\n",
        "steps[0] (a).check.client[0]",
        ["exactly one of", "command", "http"],
        id="action-in-check",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    solve:\n      registry:\n        - {run: 'true', only: latest}\n",
        "steps[0] (a).solve.registry[0].only",
        ["modern", "as-written"],
        id="unknown-only",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    sovle: {}\n",
        "steps[0] (a).sovle",
        ["unknown key"],
        id="unknown-step-key",
    ),
    pytest.param(
        "steps:\n  - id: a\n    title: T\n", "steps[0] (a).section", ["non-empty string"], id="missing-section"
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    solve:\n      registry: {run: 'true'}\n",
        "steps[0] (a).solve.registry",
        ["expected a list"],
        id="machine-not-a-list",
    ),
    pytest.param("steps: {}\n", "steps", ["list of steps"], id="steps-not-a-list"),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    check:\n      registry:\n        - {file: /x, mode: 0600}\n",
        "steps[0] (a).check.registry[0].mode",
        ["quoted octal mode", "384"],
        id="unquoted-mode",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    check:\n      registry:\n        - any: [{htp: /x}]\n",
        "steps[0] (a).check.registry[0].any[0]",
        ["exactly one of", "http"],
        id="typo-inside-any",
    ),
    pytest.param(
        "steps:\n" + STEP.format(id="a") + "    solve:\n      registry:\n        - wait: {htp: /x}\n",
        "steps[0] (a).solve.registry[0].wait",
        ["exactly one of", "http"],
        id="typo-inside-wait",
    ),
    pytest.param("steps:\n  - [a]\n  bad\n", "line", ["invalid YAML"], id="yaml-syntax"),
]


@pytest.mark.parametrize(("text", "key_path", "words"), BAD)
def test_bad_scenario_is_a_config_error(tmp_path: Path, text: str, key_path: str, words: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path, "modern")
    message = str(info.value)
    assert message.startswith(f"{path}: {key_path}"), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such scenario file"):
        load(tmp_path / "nowhere.yaml", "modern")


def test_unknown_edition_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"edition: expected one of modern, as-written, fixed, got 'latest'"):
        load(default_path(), "latest")


def test_a_minimal_scenario_loads(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(
        "steps:\n" + STEP.format(id="a") + "    solve:\n      registry:\n"
        "        - {run: 'echo new', only: modern}\n        - {run: 'echo old', only: as-written}\n"
        "    check:\n      client:\n        - {command: 'true'}\n"
    )
    scenario = load(path, "as-written")
    assert (scenario.id, scenario.title) == ("mini", "mini")  # the file name when the file gives none
    assert scenario.steps[0].solve == {"registry": [{"run": "echo old"}]}
    assert scenario.steps[0].check == {"client": [{"command": "true"}]}
    assert scenario.steps[0].why == ""


def test_only_inside_any_keeps_the_alternatives_of_the_edition(tmp_path: Path) -> None:
    """An `only:` on an alternative of `any` applies there too, not in both editions."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "steps:\n" + STEP.format(id="a") + "    check:\n      registry:\n        - any:\n"
        "            - {http: 'http://a', status: 200, only: modern}\n"
        "            - {http: 'http://b', status: 200, only: as-written}\n"
    )
    assert load(path, "modern").steps[0].check["registry"][0]["any"] == [{"http": "http://a", "status": 200}]
    assert load(path, "as-written").steps[0].check["registry"][0]["any"] == [{"http": "http://b", "status": 200}]


# --- every kind declares its keys ---------------------------------------------------

# The smallest valid item of each kind; a new kind without one fails the first test below.
MINIMAL: dict[tuple[str, str], dict[str, Any]] = {
    ("solve", "run"): {"run": "true"},
    ("solve", "file"): {"file": "/x", "content": "a"},
    ("solve", "htpasswd"): {"htpasswd": "/x"},
    ("solve", "pki"): {"pki": "/x"},
    ("solve", "ca_trust"): {"ca_trust": "/x"},
    ("solve", "copy"): {"copy": "registry:/x", "to": "/y"},
    ("solve", "wait"): {"wait": {"http": "http://a/", "status": 200}},
    ("solve", "check"): {"check": {"command": "true"}},
    ("check", "command"): {"command": "true"},
    ("check", "http"): {"http": "http://a/", "status": 200},
    ("check", "tls"): {"tls": "a:443", "ca": "/ca.crt"},
    ("check", "file"): {"file": "/x"},
    ("check", "docker_login"): {"docker_login": "a"},
    ("check", "any"): {"any": [{"command": "true"}]},
}


def write_step(tmp_path: Path, part: str, *items: dict[str, Any], step_id: str = "a", **extra: Any) -> Path:
    """A scenario of one step whose `part` on the registry holds `items`."""
    path = tmp_path / "s.yaml"
    step = {"id": step_id, "title": "T", "section": "S", part: {"registry": list(items)}, **extra}
    path.write_text(yaml.safe_dump({"steps": [step]}, sort_keys=False))
    return path


def load_error(path: Path, edition: str = "modern") -> str:
    with pytest.raises(ConfigError) as info:
        load(path, edition)
    return str(info.value)


def test_every_kind_has_a_minimal_item() -> None:
    # from_text needs the tutorial's text and a cited block: tests/unit/test_text_commands.py.
    assert {k for p, k in MINIMAL if p == "solve"} == set(ACTION_KINDS) - {"from_text"}
    assert {k for p, k in MINIMAL if p == "check"} == set(CHECK_KINDS)


@pytest.mark.parametrize(("part", "kind"), list(MINIMAL))
def test_minimal_item_loads(tmp_path: Path, part: str, kind: str) -> None:
    item = MINIMAL[part, kind]
    scenario = load(write_step(tmp_path, part, item), "modern")
    assert getattr(scenario.steps[0], part) == {"registry": [item]}


@pytest.mark.parametrize(("part", "kind"), list(MINIMAL))
def test_unknown_key_of_every_kind_is_refused(tmp_path: Path, part: str, kind: str) -> None:
    path = write_step(tmp_path, part, {**MINIMAL[part, kind], "bogus": 1})
    message = load_error(path)
    article = "an" if kind[0] in "aeiouh" else "a"
    where = f"steps[0] (a).{part}.registry[0].bogus"
    assert message.startswith(f"{path}: {where}: unknown key for {article} {kind} "), message


@pytest.mark.parametrize(("part", "kind"), list(MINIMAL))
def test_wrong_type_of_every_kinds_own_key_is_refused(tmp_path: Path, part: str, kind: str) -> None:
    path = write_step(tmp_path, part, {**MINIMAL[part, kind], kind: 42})
    message = load_error(path)
    assert message.startswith(f"{path}: steps[0] (a).{part}.registry[0].{kind}: expected "), message
    assert "got an integer 42" in message


@pytest.mark.parametrize(("part", "kind"), list(MINIMAL))
def test_shared_keys_only_and_why_are_allowed_on_every_kind(tmp_path: Path, part: str, kind: str) -> None:
    item = {**MINIMAL[part, kind], "why": "a reason", "only": "modern"}
    assert load(write_step(tmp_path, part, item), "modern").steps[0].machines() == ["registry"]
    assert getattr(load(write_step(tmp_path, part, item), "as-written").steps[0], part) == {"registry": []}


def test_misspelt_status_is_refused_and_named(tmp_path: Path) -> None:
    """`staus: 200` would make the check expect nothing and pass on an HTTP 500."""
    path = write_step(tmp_path, "check", {"http": "http://a/", "staus": 200})
    message = load_error(path)
    assert message.startswith(f"{path}: steps[0] (a).check.registry[0].staus: unknown key for an http check")
    assert "did you mean 'status'?" in message


def test_the_path_names_the_step_id_and_the_nested_item(tmp_path: Path) -> None:
    """The message of issue 7: file, step index and id, item path down into `any`, and the key."""
    steps = [{"id": s, "title": "T", "section": "S"} for s in ("one", "two", "three")]
    steps.append({"id": "nginx-proxy", "title": "T", "section": "S", "check": {"registry": [
        {"any": [{"http": "http://a/", "status": 200}, {"http": "http://b/", "staus": 200}]},
    ]}})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"steps": steps}))
    assert load_error(path).startswith(f"{path}: steps[3] (nginx-proxy).check.registry[0].any[1].staus: ")


BAD_ITEMS = [
    # run
    pytest.param("solve", {"run": "x", "stdn": "y"}, "stdn", ["did you mean 'stdin'?"], id="run-unknown"),
    pytest.param("solve", {"run": "x", "exit": "maybe"}, "exit", ['"nonzero"', "'maybe'"], id="run-exit-enum"),
    pytest.param("solve", {"run": "x", "exit": True}, "exit", ["exit code 0-255"], id="run-exit-bool"),
    pytest.param("solve", {"run": "x", "timeout": 0}, "timeout", ["positive number"], id="run-timeout-zero"),
    pytest.param("solve", {"run": "x", "timeout": "5"}, "timeout", ["positive number"], id="run-timeout-str"),
    pytest.param("solve", {"run": "x", "timeout": float("nan")}, "timeout", ["positive number"], id="run-timeout-nan"),
    pytest.param("solve", {"run": "x", "timeout": float("inf")}, "timeout", ["at most 86400"], id="run-timeout-inf"),
    pytest.param("solve", {"run": "x", "capture": {"a": "b"}}, "capture", ["unknown key"], id="run-capture"),
    pytest.param("solve", {"run": ""}, "run", ["non-empty string"], id="run-empty"),
    # file (action)
    pytest.param("solve", {"file": "/x"}, "", ["exactly one of template, content"], id="file-no-body"),
    pytest.param("solve", {"file": "/x", "template": "t", "content": "c"}, "", ["got template, content"],
                 id="file-two-bodies"),
    pytest.param("solve", {"file": "/x", "content": "c", "vars": {"a": 1}}, "vars", ["only applies with template"],
                 id="file-vars-without-template"),
    pytest.param("solve", {"file": "/x", "template": "t", "vars": {"a-b": 1}}, "vars", ["template variable"],
                 id="file-vars-name"),
    pytest.param("solve", {"file": "/x", "content": "c", "mode": 600}, "mode", ["quoted octal"], id="file-mode-int"),
    pytest.param("solve", {"file": "/x", "content": "c", "mode": "0999"}, "mode", ["quoted octal"],
                 id="file-mode-not-octal"),
    # htpasswd, pki, ca_trust, copy
    pytest.param("solve", {"htpasswd": "/x", "user": "a"}, "user", ["unknown key"], id="htpasswd-unknown"),
    pytest.param("solve", {"pki": ""}, "pki", ["non-empty string"], id="pki-empty"),
    pytest.param("solve", {"ca_trust": "/x", "name": 5}, "name", ["expected a string"], id="ca-trust-name-type"),
    pytest.param("solve", {"copy": "registry:/x"}, "to", ["missing", "copy action needs it"], id="copy-missing-to"),
    pytest.param("solve", {"copy": "registry:/x", "to": "/y", "mode": 644}, "mode", ["quoted octal"],
                 id="copy-mode-int"),
    # wait and check (actions holding a check)
    pytest.param("solve", {"wait": {"http": "u", "status": 200}, "timout": 5}, "timout",
                 ["did you mean 'timeout'?"], id="wait-unknown"),
    pytest.param("solve", {"wait": [{"http": "u"}]}, "wait", ["expected a check (a mapping)"], id="wait-list"),
    pytest.param("solve", {"wait": {"http": "u", "staus": 200}}, "wait.staus", ["unknown key for an http"],
                 id="wait-nested-typo"),
    pytest.param("solve", {"wait": {"http": "u", "status": 200}, "timeout": -1}, "timeout", ["positive"],
                 id="wait-timeout"),
    pytest.param("solve", {"check": {"command": "x", "exti": 1}}, "check.exti", ["did you mean 'exit'?"],
                 id="check-action-nested-typo"),
    pytest.param("solve", {"check": {"command": "x", "only": "modern"}}, "check.only", ["goes on the action"],
                 id="check-action-nested-only"),
    # command
    pytest.param("check", {"command": "x", "exit": "1"}, "exit", ['"nonzero"'], id="command-exit-str"),
    pytest.param("check", {"command": "x", "regex": "[a-"}, "regex", ["does not compile"], id="command-regex"),
    pytest.param("check", {"command": "x", "capture": {"d": "(sha"}}, "capture", ["d: regex", "does not compile"],
                 id="command-capture-regex"),
    pytest.param("check", {"command": "x", "capture": {"a-b": "x"}}, "capture", ["captured.NAME"],
                 id="command-capture-name"),
    pytest.param("check", {"command": "x", "capture": "x"}, "capture", ["mapping of names to regexes"],
                 id="command-capture-type"),
    pytest.param("check", {"command": "x", "contains": []}, "contains", ["non-empty list"], id="command-contains-[]"),
    pytest.param("check", {"command": "x", "equals": 5}, "equals", ["expected a string"], id="command-equals-int"),
    # http
    pytest.param("check", {"http": "u", "status": "200"}, "status", ["HTTP status 100-599", "'200'"],
                 id="http-status-str"),
    pytest.param("check", {"http": "u", "status": 999}, "status", ["HTTP status 100-599"], id="http-status-range"),
    pytest.param("check", {"http": "u", "status": True}, "status", ["HTTP status"], id="http-status-bool"),
    pytest.param("check", {"http": "u", "auth": "admin", "status": 200}, "auth", ["none, user, wrong", "'admin'"],
                 id="http-auth-enum"),
    pytest.param("check", {"http": "u"}, "", ["must expect something", "passes on any answer"], id="http-expects-none"),
    pytest.param("check", {"http": "u", "auth": "user", "head": True}, "", ["must expect something"],
                 id="http-options-only"),
    pytest.param("check", {"http": "u", "unreachable": False}, "", ["must expect something"],
                 id="http-unreachable-false"),
    pytest.param("check", {"http": "u", "unreachable": True, "status": 200}, "status", ["no answer to compare"],
                 id="http-unreachable-and-status"),
    pytest.param("check", {"http": "u", "unreachable": "yes"}, "unreachable", ["true or false"],
                 id="http-unreachable-type"),
    pytest.param("check", {"http": "u", "headers": {"A": 2}}, "headers", ["A: expected a string"],
                 id="http-header-value"),
    pytest.param("check", {"http": "u", "headers": {}}, "headers", ["non-empty mapping"], id="http-headers-empty"),
    pytest.param("check", {"http": "u", "status": 200, "timeout": "fast"}, "timeout", ["positive"],
                 id="http-timeout"),
    # tls
    pytest.param("check", {"tls": "a:443"}, "ca", ["missing", "tls check needs it"], id="tls-missing-ca"),
    pytest.param("check", {"tls": "a:443", "ca": "/c", "san": "no"}, "san", ["true or false"], id="tls-san-type"),
    pytest.param("check", {"tls": "a:443", "ca": "/c", "sni": "a"}, "sni", ["unknown key"], id="tls-unknown"),
    # file (check)
    pytest.param("check", {"file": "/x", "type": "dir"}, "type", ["regular file, directory"], id="file-type-enum"),
    pytest.param("check", {"file": "/x", "absent": True, "mode": "0600"}, "mode", ["expected absent"],
                 id="file-absent-and-mode"),
    pytest.param("check", {"file": "/x", "content": "a"}, "content", ["unknown key for a file check"],
                 id="file-check-content"),
    # docker_login, any
    pytest.param("check", {"docker_login": "a", "user": "b"}, "user", ["unknown key"], id="docker-login-unknown"),
    pytest.param("check", {"any": []}, "any", ["non-empty list of checks"], id="any-empty"),
    pytest.param("check", {"any": {"command": "x"}}, "any", ["non-empty list of checks"], id="any-mapping"),
    pytest.param("check", {"any": [{"command": "x"}, {"http": "u", "auth": "admin"}]}, "any[1].auth", ["admin"],
                 id="any-nested-enum"),
    pytest.param("check", {"any": [{"command": "x"}, "y"]}, "any[1]", ["expected a mapping"], id="any-not-mapping"),
    # shared keys
    pytest.param("solve", {"run": "x", "why": 5}, "why", ["expected a string"], id="why-type"),
    pytest.param("check", {"command": "x", "only": "new"}, "only", ["modern, as-written"], id="only-enum"),
]


@pytest.mark.parametrize(("part", "item", "key", "words"), BAD_ITEMS)
def test_bad_item_is_a_config_error(tmp_path: Path, part: str, item: dict[str, Any], key: str,
                                    words: list[str]) -> None:
    path = write_step(tmp_path, part, item)
    message = load_error(path)
    where = f"steps[0] (a).{part}.registry[0]" + (f".{key}" if key else "")
    assert message.startswith(f"{path}: {where}: "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_an_item_of_the_other_edition_is_validated_too(tmp_path: Path) -> None:
    """A typo in an as-written item must not wait for someone to run that edition."""
    path = write_step(tmp_path, "check", {"command": "x"}, {"http": "u", "staus": 200, "only": "as-written"})
    assert "check.registry[1].staus: unknown key" in load_error(path, "modern")


def test_any_with_no_alternative_in_the_edition_is_refused(tmp_path: Path) -> None:
    """An empty `any` would fail every time with nothing to say why."""
    path = write_step(tmp_path, "check", {"any": [{"command": "x", "only": "as-written"}]})
    assert load(path, "as-written").steps[0].check["registry"][0]["any"] == [{"command": "x"}]
    assert "check.registry[0].any: no alternative applies to the modern edition" in load_error(path, "modern")


# --- templates compile at load time ---------------------------------------------------


@pytest.mark.parametrize(
    ("part", "item", "key"),
    [
        ("solve", {"run": "echo {{ domain"}, "run"),
        ("solve", {"run": "echo {% if x %}"}, "run"),
        ("check", {"any": [{"command": "x"}, {"http": "http://{{ domain }/", "status": 200}]}, "any[1].http"),
        ("check", {"http": "u", "headers": {"Docker-Content-Digest": "{{ captured.pushed"}},
         "headers.Docker-Content-Digest"),
        ("check", {"command": "x", "contains": ["ok", "{{ a b }}"]}, "contains[1]"),
        ("solve", {"wait": {"command": "{{ x }"}, "only": "as-written"}, "wait.command"),
    ],
    ids=["unclosed-print", "unclosed-block", "inside-any", "header-value", "list-entry", "other-edition-wait"],
)
def test_jinja_syntax_error_is_a_config_error(tmp_path: Path, part: str, item: dict[str, Any], key: str) -> None:
    """Found when the scenario loads, naming step and item, not as a traceback halfway through a run."""
    path = write_step(tmp_path, part, item)
    message = load_error(path)
    assert message.startswith(f"{path}: steps[0] (a).{part}.registry[0].{key}: template syntax error: "), message


def test_templated_regex_compiles_outside_its_placeholders(tmp_path: Path) -> None:
    """`{{ ... }}` is only known at run time; the rest of the pattern is checked at load."""
    good = {"command": "x", "regex": "^{{ ip.registry | regex_escape }}\\s", "capture": {"d": "{{ d }}@(sha)"}}
    assert load(write_step(tmp_path, "check", good), "modern").steps[0].check["registry"] == [good]
    bad = {"command": "x", "regex": "{{ domain }}/(unclosed"}
    assert "regex: regex /{{ domain }}/(unclosed/ does not compile" in load_error(write_step(tmp_path, "check", bad))


# --- passes_before -----------------------------------------------------------------------


def test_passes_before_is_kept_on_the_step(tmp_path: Path) -> None:
    path = write_step(tmp_path, "check", {"command": "true"}, passes_before="nothing can be undone here")
    assert load(path, "modern").steps[0].passes_before == "nothing can be undone here"
    assert load(write_step(tmp_path, "check", {"command": "true"}), "modern").steps[0].passes_before == ""


@pytest.mark.parametrize("value", ["", "  ", 1, True, ["a"]])
def test_passes_before_needs_a_reason(tmp_path: Path, value: Any) -> None:
    path = write_step(tmp_path, "check", {"command": "true"}, passes_before=value)
    assert load_error(path).startswith(f"{path}: steps[0] (a).passes_before: expected a non-empty string")


def test_cites_is_not_a_step_key(tmp_path: Path) -> None:
    path = write_step(tmp_path, "check", {"command": "true"}, cites="x")
    assert load_error(path).startswith(f"{path}: steps[0] (a).cites: unknown key")


def test_a_kind_must_declare_its_own_key_as_required() -> None:
    """The loader finds an item's kind by that key; a kind without it could never be told apart."""
    with pytest.raises(TypeError, match="its own key 'x'"):
        Kind("x", "check", {"y": Key(Text())})
    with pytest.raises(TypeError, match="its own key 'x'"):
        Kind("x", "check", {"x": Key(Text())})



def test_a_scenario_is_read_once_per_version_of_its_file(tmp_path: Path) -> None:
    """A class's check loads the scenario once for all its labs' sessions; an edited file is read again."""
    path = tmp_path / "mini.yaml"
    path.write_text("steps:\n" + STEP.format(id="a") + "    check:\n      client:\n        - {command: 'true'}\n")
    first = load(path, "modern")
    assert load(path, "modern") is first
    assert load(path, "as-written") is not first
    path.write_text("steps:\n" + STEP.format(id="second") + "    check:\n      client:\n        - {command: 'true'}\n")
    assert [s.id for s in load(path, "modern").steps] == ["second"]


def test_a_citation_digest_of_decimal_digits_only_is_that_digest_though_yaml_reads_an_int() -> None:
    """Seen in CI: a tutorial edit whose digest came out 2479593405910431, unquoted, was refused."""
    import yaml

    from lab.common.errors import Invalid
    from lab.model.scenario import _cites

    item = yaml.safe_load("- {block: 1, first: docker run, sha256: 2479593405910431}")
    assert isinstance(item[0]["sha256"], int)
    assert _cites(item, "tutorial", need_why=False)[0].sha256 == "2479593405910431"
    for wrong in ("- {block: 1, first: x, sha256: 247959340591043}", "- {block: 1, first: x, sha256: true}",
                  "- {block: 1, first: x, sha256: 02479593405910431}"):
        with pytest.raises(Invalid, match="sha256"):
            _cites(yaml.safe_load(wrong), "tutorial", need_why=False)
