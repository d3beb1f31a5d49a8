"""A second tutorial served by the same `lab/`: the proof that the tutorial's facts live beside its steps.

The scenario written here has two machines named otherwise (`web`, `db`), ports and an image of
its own, its own template, workdir, reset and failure cause. It loads with a lab file, validates
and renders through the engine's own functions; nothing in lab/ names any of it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import jinja2
import pytest

from lab.cli.main import main
from lab.common.errors import ConfigError
from lab.engine import cleanup
from lab.engine.context import Context, render_template, render_value, template_variables
from lab.machines.images import Builder, LabImages
from lab.machines.osfamily import DEBIAN
from lab.model import labfile, manifest, scenario
from lab.model.credentials import Redactor
from lab.model.diagnosis import diagnose

LAB_DIR = Path(__file__).resolve().parents[2] / "lab"

SCENARIO = """\
id: second
title: A web machine that serves a page naming its database machine

lab:
  machines:
    web: {ip: 192.168.78.10}
    db: {ip: 192.168.78.11}
  domain: shop.example
  ports:
    http: 8080
    db: {default: 5432, fixed: "the page names the database port 5432"}
  images:
    server:
      default: "nginx:1.27"
      recipe: images/server.Dockerfile
      name: reglab/second-server
  templates: templates
  workdir: /root/second-lab
  reset:
    all:
      - sed '/[[:space:]]{domain}$/d' /etc/hosts > /tmp/hosts.second && cat /tmp/hosts.second > /etc/hosts
    made:
      - rm -f /root/second-made
    given:
      - docker rm -f second-web >/dev/null 2>&1; true
  causes: causes.yaml

steps:
  - id: page
    title: Write the page on web
    section: The page
    solve:
      web:
        - run: mkdir -p {{ workdir }}/www
        - file: "{{ workdir }}/www/index.html"
          template: index.html.j2
        - file: "{{ workdir }}/site.conf"
          template: site.conf.j2
    check:
      web:
        - command: cat {{ workdir }}/www/index.html
          contains: "db at {{ ip.db }}:{{ ports.db }}"

  - id: hosts
    title: Name the web machine shop.example on both machines
    section: Names
    solve:
      web: &hosts
        - run: grep -q '[[:space:]]{{ domain }}$' /etc/hosts || echo '{{ ip.web }} {{ domain }}' >> /etc/hosts
      db: *hosts
    check:
      db:
        - command: getent hosts {{ domain }}
          regex: '^{{ ip.web | regex_escape }}\\s'

  - id: serve
    title: Serve the page on port http, read it from db
    section: Serving
    solve:
      web:
        - run: >-
            docker rm -f second-web >/dev/null 2>&1;
            docker run -d --name second-web -p {{ ports.http }}:80 -v {{ workdir }}/www:/www:ro
            -v {{ workdir }}/site.conf:/etc/nginx/conf.d/site.conf:ro {{ images.server }}
        - wait:
            command: curl -fsS http://127.0.0.1:{{ ports.http }}/
          timeout: 30
    check:
      db:
        - command: curl -fsS http://{{ domain }}:{{ ports.http }}/
          contains: "served by {{ domain }}"
"""

TEMPLATE = "<p>served by {{ domain }}, db at {{ ip.db }}:{{ ports.db }}, on {{ ports.http }}</p>\n"
SITE = "server {\n    listen 80 default_server;\n    server_name {{ domain }};\n    root /www;\n}\n"
# nginx from its Debian package: the tutorial's recipe, copied (a second tutorial may well want nginx too).
RECIPE = (Path(__file__).resolve().parents[2] / "scenarios" / "tutorial" / "images" / "nginx.Dockerfile").read_text()
CAUSES = "- {id: page-missing, match: ['404 Not Found'], cause: The page is not there., fix: Write it again.}\n"


def write_second(folder: Path) -> Path:
    """The second scenario as a folder: scenario.yaml, its template, its image recipe, its causes."""
    (folder / "templates").mkdir(parents=True)
    (folder / "images").mkdir()
    (folder / "scenario.yaml").write_text(SCENARIO)
    (folder / "templates" / "index.html.j2").write_text(TEMPLATE)
    (folder / "templates" / "site.conf.j2").write_text(SITE)
    (folder / "images" / "server.Dockerfile").write_text(RECIPE)
    (folder / "causes.yaml").write_text(CAUSES)
    return folder


@pytest.fixture
def second(tmp_path: Path) -> Path:
    return write_second(tmp_path / "second")


def lab_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "lab.yml"
    path.write_text("name: second\nscenario: second\n" + text)
    return path


def test_a_lab_file_loads_a_second_scenario_with_its_own_machines_ports_and_images(tmp_path, second) -> None:
    lab = labfile.load(lab_file(tmp_path), environ={})
    assert lab.manifest.path == second / "scenario.yaml"
    assert [(m.name, m.ip) for m in lab.machines] == [("web", "192.168.78.10"), ("db", "192.168.78.11")]
    assert str(lab.network) == "192.168.78.0/24"
    assert (lab.domain, dict(lab.ports)) == ("shop.example", {"http": 8080, "db": 5432})
    assert lab.images.refs() == {"server": "nginx:1.27"}


@pytest.mark.parametrize(("text", "key_path", "words"), [
    ("machines:\n  registry: {ip: 192.168.78.10}\n  client: {ip: 192.168.78.11}\n", "machines",
     ["missing machine 'web'", "web and db"]),
    ("machines:\n  web: {ip: 192.168.78.10}\n  db: {ip: 192.168.78.11}\n  client: {ip: 192.168.78.12}\n",
     "machines.client", ["unknown machine", "web, db"]),
    ("ports:\n  proxy: 5043\n", "ports.proxy", ["unknown key", "http, db"]),
    ("ports:\n  db: 5433\n", "ports.db", ["expected 5432: the page names the database port 5432, got 5433"]),
    ("ports:\n  http: 5432\n", "ports.http", ["a port of its own", "already ports.db"]),
    ("images:\n  registry: 'registry:2'\n", "images.registry", ["unknown key", "source, server"]),
], ids=["tutorial-roles", "extra-role", "tutorial-port", "fixed-port", "same-port", "tutorial-image"])
def test_the_lab_file_is_validated_against_what_the_second_scenario_declares(
        tmp_path, second, text: str, key_path: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        labfile.load(lab_file(tmp_path, text), environ={})
    assert info.value.path == key_path
    assert all(word in info.value.problem for word in words), info.value.problem


def test_its_steps_validate_against_its_own_machines_and_causes(tmp_path, second) -> None:
    lab = labfile.load(lab_file(tmp_path), environ={})
    loaded = scenario.load(lab.manifest.path, "modern", lab.manifest)
    assert [s.id for s in loaded.steps] == ["page", "hosts", "serve"]
    assert loaded.step("hosts").machines() == ["web", "db"]
    assert diagnose("HTTP/1.1 404 Not Found", loaded.causes).id == "page-missing"
    assert diagnose("curl: (6) Could not resolve host: shop.example", loaded.causes).id == "unresolved-name"
    text = SCENARIO.replace("    check:\n      db:\n        - command: getent", "    check:\n      registry:\n"
                            "        - command: getent", 1)
    (second / "scenario.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"check\.registry: unknown machine; expected one of web, db"):
        scenario.load(second / "scenario.yaml", "modern")


def test_the_engine_renders_its_steps_and_its_own_template(tmp_path, second) -> None:
    lab = labfile.load(lab_file(tmp_path), environ={})
    ctx = Context(lab, lambda name: None, LabImages(server="reglab/second-server:1-debian13"), Redactor())
    variables = template_variables(lab, ctx.images, DEBIAN, lab.users[0], {})
    assert variables["workdir"] == "/root/second-lab"
    page = render_template(ctx.jinja, "index.html.j2", variables)
    assert page == "<p>served by shop.example, db at 192.168.78.11:5432, on 8080</p>\n"
    loaded = scenario.load(lab.manifest.path, "modern", lab.manifest)
    (run, _wait) = render_value(ctx.jinja, loaded.step("serve").solve["web"], variables)
    assert "-p 8080:80 -v /root/second-lab/www:/www:ro" in run["run"]
    assert run["run"].endswith("/etc/nginx/conf.d/site.conf:ro reglab/second-server:1-debian13")
    assert "server_name shop.example;" in render_template(ctx.jinja, "site.conf.j2", variables)
    (resolve,) = render_value(ctx.jinja, loaded.step("hosts").check["db"], variables)
    assert re.search(resolve["regex"], "192.168.78.10   shop.example")
    with pytest.raises(jinja2.TemplateNotFound):  # the tutorial's templates are not this lab's
        ctx.jinja.get_template("registry.conf.j2")


def test_a_reset_runs_its_reset_commands_and_none_of_the_tutorials(tmp_path, second) -> None:
    from types import SimpleNamespace

    lab = labfile.load(lab_file(tmp_path), environ={})
    family = SimpleNamespace(ca_anchor_dir="/usr/local/share/ca-certificates", ca_update="update-ca-certificates")
    ctx = SimpleNamespace(family=lambda name: family, images=LabImages(server="reglab/second-server:1"), lab=lab)
    for made in (True, False):
        commands = cleanup.commands(ctx, "web", made)
        text = "\n".join(commands)
        assert r"/[[:space:]]shop\.example$/d" in text
        assert "rm -rf /root/second-lab" in text
        assert ("rm -f /root/second-made" in text) is made
        assert ("docker rm -f second-web" in text) is not made
        assert not re.search(r"docker-registry|devdockerCA|test-image|myregistrydomain", text), text
        # On machines reglab made, docker restarts last; on given ones only if its inputs changed (cleanup.clean).
        assert (commands[-1] == "systemctl restart docker") is made


def test_its_image_is_built_from_its_own_recipe(tmp_path, second) -> None:
    lab = labfile.load(lab_file(tmp_path, "images: {source: build}\n"), environ={})
    built = []

    class Host:
        def run(self, command: str | list, **kwargs: object):
            from types import SimpleNamespace

            from lab.machines.remote import shell_text

            command = shell_text(command)  # `docker build` comes as a list of arguments
            built.append(command)
            out = "1\n" if "reglab-package-version" in command else "sha256:base\n"
            return SimpleNamespace(ok=True, stdout=out if "inspect" in command or "cat" in command else "")

    builder = Builder(lab, Host())
    builder.base = lambda source="auto": "reglab/debian:bookworm-debootstrap"  # no debootstrap here
    assert builder.lab_images() == LabImages(server="reglab/second-server:1-debian13")
    assert any("docker build" in c and "server.Dockerfile" in c for c in built), built


def test_the_harness_names_none_of_the_second_scenarios_facts() -> None:
    """No change to lab/ was needed: none of its files knows web, db, shop.example or the ports."""
    for path in LAB_DIR.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".j2", ".yml", ".yaml", ".Dockerfile"):
            text = path.read_text()
            assert not re.search(r"\b(shop\.example|second-lab|192\.168\.78\.)", text), path


def test_a_scenario_option_overrides_the_lab_files(tmp_path, second) -> None:
    path = tmp_path / "lab.yml"
    path.write_text("name: second\nmachines:\n  web: {ip: 192.168.78.10}\n  db: {ip: 192.168.78.11}\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["--lab", str(path), "--scenario", str(second), "-q", "show", "page"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert "## on web" in out.getvalue()
    assert "/root/second-lab/www/index.html" in out.getvalue()
    code = main(["--lab", str(path), "-q", "show", "page"], stdout=out, stderr=err)  # the tutorial: no web
    assert code == 2 and "machines: missing machine 'registry'" in err.getvalue()


@pytest.mark.parametrize(("value", "words"), [
    ("nowhere", ["scenario", "not one"]),
    ("[a, b]", ["scenario", "expected the path of a scenario file, got a list"]),
], ids=["missing", "not-a-path"])
def test_a_bad_scenario_key_is_one_config_error(tmp_path, value: str, words: list[str]) -> None:
    path = tmp_path / "lab.yml"
    path.write_text(f"scenario: {value}\n")
    with pytest.raises(ConfigError) as info:
        labfile.load(path, environ={})
    assert all(word in str(info.value) for word in words), str(info.value)


def test_a_scenario_without_a_lab_section_cannot_be_a_labs(tmp_path) -> None:
    (tmp_path / "steps.yaml").write_text("steps: []\n")
    (tmp_path / "lab.yml").write_text("scenario: steps.yaml\n")
    with pytest.raises(ConfigError, match=r"steps\.yaml: lab: expected a `lab:` section"):
        labfile.load(tmp_path / "lab.yml", environ={})


@pytest.mark.parametrize(("old", "new", "key_path"), [
    ("    db: {ip: 192.168.78.11}\n", "    db: {ip: nowhere}\n", "lab.machines.db.ip"),
    ("  workdir: /root/second-lab\n", "  workdir: /root\n", "lab.workdir"),
    ("  templates: templates\n", "  templates: nowhere\n", "lab.templates"),
    ("      recipe: images/server.Dockerfile\n", "      recipe: images/none.Dockerfile\n", "lab.images.server.recipe"),
    ("      name: reglab/second-server\n", "", "lab.images.server"),
    ("    http: 8080\n", "    http: 80800\n", "lab.ports.http"),
    ("  domain: shop.example\n", "  domian: shop.example\n", "lab.domian"),
], ids=["ip", "workdir-root", "templates", "recipe", "recipe-without-name", "port", "misspelt"])
def test_a_bad_lab_section_names_its_key(second, old: str, new: str, key_path: str) -> None:
    assert SCENARIO.count(old) == 1
    (second / "scenario.yaml").write_text(SCENARIO.replace(old, new))
    with pytest.raises(ConfigError) as info:
        manifest.load(second / "scenario.yaml")
    assert info.value.path == key_path


@pytest.mark.parametrize("workdir", [
    "/home/../etc", "/root/../etc/ssh", "/root/lab/..", "/etc/ssh", "/var/lib/docker", "/usr/local/lab",
    "/home/ada", "/root", "/", "//etc/x", "/srv", "/boot/lab", "/root//",
])
def test_a_workdir_a_reset_could_not_safely_remove_is_refused(second, workdir: str) -> None:
    """A reset runs `rm -rf WORKDIR` on every machine: `..` and system folders never load."""
    (second / "scenario.yaml").write_text(SCENARIO.replace("  workdir: /root/second-lab\n", f"  workdir: {workdir}\n"))
    with pytest.raises(ConfigError) as info:
        manifest.load(second / "scenario.yaml")
    assert info.value.path == "lab.workdir", str(info.value)
    assert str(second / "scenario.yaml") in str(info.value)


@pytest.mark.parametrize(("workdir", "normal"), [
    ("/root/second-lab/", "/root/second-lab"), ("/root/./second-lab", "/root/second-lab"),
    ("/home/ada/lab", "/home/ada/lab"), ("/opt/lab", "/opt/lab"), ("/srv/labs/a", "/srv/labs/a"),
])
def test_a_workdir_of_the_labs_own_loads_normalised(second, workdir: str, normal: str) -> None:
    (second / "scenario.yaml").write_text(SCENARIO.replace("  workdir: /root/second-lab\n", f"  workdir: {workdir}\n"))
    assert manifest.load(second / "scenario.yaml").workdir == normal
