"""The fixed edition writes the Compose file and nginx's configuration from the fixed text's own blocks.

`file: PATH` with `from_block: N` (and the text's `edits`: "delete these lines and add these") is
the text as data: its placeholders substituted, nothing in it a template. What the fixed edition
writes is what tutorial.fixed.md says, so a wrong fixed block is a wrong file (and, on a machine, a
failed step: tests/e2e/test_platforms.py), and an edit whose lines are not there stops the load.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from lab.common.errors import ConfigError
from lab.common.progress import Progress
from lab.engine import teaching
from lab.engine.context import Context, render_value
from lab.engine.state import State
from lab.engine.steps import Engine
from lab.machines.images import LabImages
from lab.machines.osfamily import DEBIAN
from lab.model import scenario
from lab.model.credentials import Redactor
from lab.model.labfile import load as load_lab
from lab.tutorial.fixes import fixed_text
from lab.tutorial.text import TUTORIAL, code_blocks, replace_lines, substitute

SHIPPED = scenario.default_path()

# --- replace_lines: "delete the following lines and add these" ------------------------------------


def test_the_old_lines_are_found_indented_and_across_blank_lines() -> None:
    lines = ["server {", "  listen 443;", "", "  # SSL", "  # ssl on;", "  other;", "}"]
    assert replace_lines(lines, ["listen 443;", "# SSL", "# ssl on;"], ["listen 443 ssl;", "# SSL"]) == [
        "server {", "  listen 443 ssl;", "  # SSL", "  other;", "}"]


def test_the_new_lines_keep_their_own_indentation_relative_to_the_old() -> None:
    lines = ["services:", "  nginx:", "    ports:", "      - 5043:443"]
    assert replace_lines(lines, ["    - 5043:443"], ["    - 443:443"]) == [
        "services:", "  nginx:", "    ports:", "      - 443:443"]


@pytest.mark.parametrize("old", [["listen 80;"], ["# SSL", "listen 443;"], [""]])
def test_old_lines_that_are_not_there_are_none(old: list[str]) -> None:
    assert replace_lines(["listen 443;", "# SSL"], old, ["x"]) is None


# --- the shipped scenario: the fixed edition's files are the fixed text's blocks ------------------


def engine(tmp_path: Path, path: Path = SHIPPED, edition: str = "fixed") -> tuple[Engine, dict[str, bytes]]:
    """An engine of `edition` whose machine records the files uploaded to it."""
    written: dict[str, bytes] = {}
    machine = SimpleNamespace(name="registry", upload=lambda data, dest, mode="0600": written.__setitem__(dest, data))
    (tmp_path / "lab.yml").write_text("users: [{name: student, password: Sup3r-s3cret-pw}]\n")
    lab = load_lab(tmp_path / "lab.yml", environ={}, overrides={"edition": edition})
    images = LabImages(registry="reg-image", proxy="proxy-image", base="base-image")
    ctx = Context(lab, lambda name: machine, images, Redactor())
    ctx.family = lambda name: DEBIAN  # no machine to ask
    loaded = scenario.load(path, edition)
    return Engine(loaded, ctx, State(tmp_path / "state.json"), Progress(quiet=True)), written


def write_files(tmp_path: Path, step_id: str, path: Path = SHIPPED) -> dict[str, str]:
    """The files `step_id`'s solve writes on the registry machine, as the engine uploads them."""
    eng, written = engine(tmp_path, path)
    for action in eng.scenario.step(step_id).solve["registry"]:
        if "file" in action:
            eng.act(action, "registry")
    return {Path(dest).name: data.decode() for dest, data in written.items()}


def fixed_blocks() -> dict[int, str]:
    loaded = scenario.load(SHIPPED, "fixed")
    return {block.number: block.text for block in code_blocks(fixed_text(TUTORIAL.read_text(), loaded.fixes, {}))}


VALUES = {"{{ images.registry }}": "reg-image", "{{ images.proxy }}": "proxy-image", "{{ domain }}":
          "myregistrydomain.com", "{{ ports.registry }}:5000": "5000:5000", "{{ ports.proxy }}:443": "5043:443",
          "{{ ports.https }}:443": "443:443"}


def as_the_lab(text: str) -> str:
    """A fixed block with the lab's values in place of its placeholders (the scenario's table)."""
    table = yaml.safe_load(SHIPPED.read_text())["placeholders"]
    values = {name: value for name, value in table.items() if isinstance(value, str)}
    return substitute(text, values).render(lambda template: VALUES.get(template, template))


def test_compose_registry_writes_the_fixed_text_block_12(tmp_path: Path) -> None:
    files = write_files(tmp_path, "compose-registry")
    assert files == {"docker-compose.yml": as_the_lab(fixed_blocks()[12]) + "\n"}
    assert yaml.safe_load(files["docker-compose.yml"])["services"]["registry"]["image"] == "reg-image"


def test_nginx_proxy_writes_blocks_19_and_17_as_the_fixed_text_has_them(tmp_path: Path) -> None:
    files = write_files(tmp_path, "nginx-proxy")
    assert files["docker-compose.yml"] == as_the_lab(fixed_blocks()[17]) + "\n"
    assert files["registry.conf"] == as_the_lab(fixed_blocks()[19]) + "\n"
    services = yaml.safe_load(files["docker-compose.yml"])["services"]
    assert services["nginx"]["image"] == "proxy-image" and "links" not in services["nginx"]


def test_tls_writes_nginx_as_the_fixed_text_edits_it(tmp_path: Path) -> None:
    conf = write_files(tmp_path, "tls")["registry.conf"]
    lines = [line.strip() for line in conf.splitlines()]
    assert "listen 443 ssl;" in lines and "ssl on;" not in lines and "listen 443;" not in lines
    assert "server_name myregistrydomain.com;" in lines
    assert 'auth_basic "registry.localhost";' in lines  # basic-auth's edit (block 26 -> 27) holds at tls
    assert "ssl_certificate /etc/nginx/conf.d/domain.crt;" in lines
    assert conf.count("{") == conf.count("}") and lines.count("server {") == 1


def test_port_443_moves_the_fixed_compose_file_to_443(tmp_path: Path) -> None:
    files = write_files(tmp_path, "port-443")
    assert yaml.safe_load(files["docker-compose.yml"])["services"]["nginx"]["ports"] == ["443:443"]
    assert "listen 443 ssl;" in files["registry.conf"]


def test_the_other_editions_still_write_their_templates(tmp_path: Path) -> None:
    for edition in ("modern", "as-written"):
        loaded = scenario.load(SHIPPED, edition)
        files = [a for s in loaded.steps for a in s.solve.get("registry", []) if "file" in a]
        assert files and all("template" in a and "from_block" not in a for a in files), edition


def test_show_prints_the_block_a_file_comes_from(tmp_path: Path) -> None:
    eng, _ = engine(tmp_path)
    (action,) = [a for a in eng.scenario.step("port-443").solve["registry"] if "from_block" in a
                 and a["file"].endswith("docker-compose.yml")]
    lines = teaching._describe(action, eng.ctx.jinja, eng.ctx.variables("registry"), DEBIAN)
    assert lines[0] == "# tutorial block 17, block 46 replaced by block 47:"
    assert "      - 443:443" in lines[2].splitlines()


# --- a copy of the scenario with its fixes changed --------------------------------------------------


def scenario_copy(tmp_path: Path, change: Any) -> Path:
    """The shipped scenario and text in a folder of their own, its YAML data changed by `change`."""
    folder = tmp_path / "scenario"
    folder.mkdir()
    shutil.copytree(SHIPPED.parent / "tutorial", folder / "tutorial")
    shutil.copy(TUTORIAL, folder / "tutorial.md")
    data = yaml.safe_load(SHIPPED.read_text())
    change(data)
    (folder / "tutorial.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "tutorial.yaml"


def fix_of(data: dict[str, Any], block: int) -> dict[str, Any]:
    (fix,) = [fix for fix in data["fixes"] if fix["block"] == block]
    return fix


def step_of(data: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(step for step in data["steps"] if step["id"] == step_id)


WRONG_12 = fix_of(yaml.safe_load(SHIPPED.read_text()), 12)["text"].replace("    volumes:\n      - ./data:/data",
                                                                           "  volumes:\n    - ./data:/data")


def test_a_wrong_fixed_block_is_what_the_fixed_edition_writes(tmp_path: Path) -> None:
    assert WRONG_12 != fix_of(yaml.safe_load(SHIPPED.read_text()), 12)["text"]
    path = scenario_copy(tmp_path, lambda data: fix_of(data, 12).update(text=WRONG_12))
    compose = write_files(tmp_path, "compose-registry", path)["docker-compose.yml"]
    assert compose == as_the_lab(WRONG_12) + "\n"
    assert yaml.safe_load(compose)["services"]["volumes"] == ["./data:/data"]  # Compose v2 refuses it


def test_template_syntax_in_a_fixed_block_is_written_as_it_stands(tmp_path: Path) -> None:
    added = "    labels: {note: \"{{ 7 * 7 }} {% if x %}\"}"
    path = scenario_copy(tmp_path, lambda data: fix_of(data, 12).update(text=fix_of(data, 12)["text"] + "\n" + added))
    compose = write_files(tmp_path, "compose-registry", path)["docker-compose.yml"]
    assert compose.endswith(added + "\n") and "49" not in compose


def test_an_edit_whose_lines_are_not_in_the_file_stops_the_load(tmp_path: Path) -> None:
    def swap(data: dict[str, Any]) -> None:
        (action,) = [a for a in step_of(data, "basic-auth")["solve"]["registry"] if "edits" in a]
        action["edits"] = [{"replace": 27, "with": 26}]

    path = scenario_copy(tmp_path, swap)
    with pytest.raises(ConfigError) as info:
        scenario.load(path, "fixed")
    message = str(info.value)
    assert "(basic-auth).solve.registry[" in message and ".edits[0]" in message, message
    assert "block 27" in message and "not in the file" in message, message


def test_a_file_from_a_block_no_step_so_far_cites_stops_the_load(tmp_path: Path) -> None:
    def later(data: dict[str, Any]) -> None:
        (action,) = [a for a in step_of(data, "compose-registry")["solve"]["registry"] if "from_block" in a]
        action["from_block"] = 17  # nginx-proxy's, a step after this one

    path = scenario_copy(tmp_path, later)
    with pytest.raises(ConfigError, match=r"\(compose-registry\).*from_block.*block 17.*earlier one cites"):
        scenario.load(path, "fixed")


def test_a_file_from_a_block_takes_no_template(tmp_path: Path) -> None:
    def both(data: dict[str, Any]) -> None:
        (action,) = [a for a in step_of(data, "compose-registry")["solve"]["registry"] if "from_block" in a]
        action["template"] = "docker-compose.yml.j2"

    path = scenario_copy(tmp_path, both)
    with pytest.raises(ConfigError, match="exactly one of template, content, from_block"):
        scenario.load(path, "fixed")


def test_the_engine_renders_only_the_values_of_a_text_file(tmp_path: Path) -> None:
    eng, _ = engine(tmp_path)
    (action,) = [a for a in eng.scenario.step("compose-registry").solve["registry"] if "from_block" in a]
    text = render_value(eng.ctx.jinja, action["from_block"].content, eng.ctx.variables("registry"))
    assert "reg-image" in text and "{{" not in text
