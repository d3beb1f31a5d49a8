"""Hostile user files: every reader of the user's YAML (and CSV) gives one ConfigError, never a hang or traceback."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.classroom.roster import load_roster
from lab.common import yamlfile
from lab.common.errors import ConfigError
from lab.model import labfile, manifest, scenario
from lab.model.lab import EDITIONS

PROJECT = Path(__file__).resolve().parents[2]
DEEP = "x: " + "[" * 3000 + "]" * 3000 + "\n"


def error_of(call: Callable[[], Any], seconds: float = 10) -> str:
    """The ConfigError message `call` raises, within `seconds`: a FIFO must not block the reader."""
    found: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            found.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the reader blocked"
    assert found and isinstance(found[0], ConfigError), found
    return str(found[0])


# --- nesting -------------------------------------------------------------------------

@pytest.mark.parametrize("text", [DEEP, "x: " + "{a: " * 3000 + "}" * 3000 + "\n",
                                  "x: " + "[" * 100 + "]" * 100 + "\n"],
                         ids=["3000-lists", "3000-mappings", "100-lists"])
def test_deeply_nested_lab_file_is_one_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "lab.yml"
    path.write_text(text)
    message = error_of(lambda: labfile.load(path, environ={}))
    assert message.startswith(f"{path}: ") and "nested too deeply" in message


def test_deeply_nested_roster_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "net101.yml"
    path.write_text("- " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nested too deeply" in error_of(lambda: load_roster(str(path)))


def test_nesting_up_to_the_bound_is_read_and_one_more_level_refused() -> None:
    depth = yamlfile.MAX_DEPTH  # the mapping is level 0, each list one more
    data, _ = yamlfile.parse("x: " + "[" * depth + "]" * depth, "t.yml")
    assert data["x"]
    with pytest.raises(ConfigError, match=r"^t\.yml: line 1: nested too deeply"):
        yamlfile.parse("x: " + "[" * (depth + 1) + "]" * (depth + 1), "t.yml")


def laughs(levels: int = 9) -> str:
    """A "billion laughs": a few hundred bytes whose aliases stand for 9**levels values."""
    items = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    items += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("key", ["edition", "name", "timeouts"])
def test_aliases_that_expand_to_a_billion_values_are_refused(tmp_path: Path, key: str) -> None:
    """`edition: <laughs>` was a MemoryError: the error message's repr expanded every alias."""
    path = tmp_path / "lab.yml"
    path.write_text(f"{key}: {laughs()}\n")
    assert error_of(lambda: labfile.load(path, environ={})) == (
        f"{path}: line 1: more than {yamlfile.MAX_VALUES} values once its aliases are expanded")


def test_a_roster_of_laughs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "net101.yml"
    path.write_text(f"- {laughs()}\n")
    assert "values once its aliases are expanded" in error_of(lambda: load_roster(str(path)))


def test_a_value_that_holds_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_text("timeouts: &t {command: *t}\n")
    assert "an alias inside its own anchor" in error_of(lambda: labfile.load(path, environ={}))


def test_ordinary_aliases_and_merges_still_load(tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_text("machines:\n  registry: &m {ip: 192.168.50.10}\n  client:\n    <<: *m\n    ip: 192.168.50.11\n")
    lab = labfile.load(path, environ={})
    assert [m.ip for m in lab.machines] == ["192.168.50.10", "192.168.50.11"]
    data, _ = yamlfile.parse(f"a: {laughs(5)}\n", "small.yml")  # 9**5 = 59,049 values: under the bound
    assert len(data["a"]) == 5


# --- what is not a regular file, or too large ---------------------------------------

def fifo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def test_a_fifo_as_lab_file_is_refused_at_once(tmp_path: Path) -> None:
    path = fifo(tmp_path, "lab.yml")
    assert "not a regular file (a FIFO)" in error_of(lambda: labfile.load(path, environ={}))


@pytest.mark.parametrize("name", ["net101.csv", "net101.yml"])
def test_a_fifo_as_roster_is_refused_at_once(tmp_path: Path, name: str) -> None:
    path = fifo(tmp_path, name)
    assert "not a regular file (a FIFO)" in error_of(lambda: load_roster(str(path)))


def test_dev_zero_as_lab_file_is_refused_at_once() -> None:
    assert error_of(lambda: labfile.load(Path("/dev/zero"), environ={})) == (
        "/dev/zero: cannot read the lab file: not a regular file (a device)")


def test_a_folder_as_lab_file_is_refused(tmp_path: Path) -> None:
    assert "not a regular file (a folder)" in error_of(lambda: labfile.load(tmp_path, environ={}))


@pytest.mark.parametrize("name", ["lab.yml", "net101.csv"])
def test_a_file_over_one_mib_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("# padding\n" * (yamlfile.MAX_BYTES // 10 + 1))
    call = (lambda: labfile.load(path, environ={})) if name == "lab.yml" else (lambda: load_roster(str(path)))
    assert error_of(call).startswith(f"{path}: larger than 1 MiB")


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_bytes(b"#" * (yamlfile.MAX_BYTES - 1) + b"\n")
    assert yamlfile.read_yaml(path, "file") is None


# --- duplicate keys: an error in every file, not only lab.yml ------------------------

def test_a_key_given_twice_in_a_scenario_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("id: mine\nsteps: []\nid: again\n")
    message = error_of(lambda: scenario.load(path, "modern"))
    assert f"{path}: id: expected each key once, got 'id' again at line 3 (first at line 1)" in message


def test_a_key_given_twice_in_a_causes_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "causes.yaml"
    path.write_text("- id: x\n  match: [a]\n  cause: c\n  fix: f\n  fix: g\n")
    assert "'fix' again at line 5" in error_of(lambda: yamlfile.read_yaml(path, "causes file"))


def test_the_shipped_scenario_and_its_causes_still_load() -> None:
    """They are read strictly now: a key given twice in them would stop every lab."""
    path = PROJECT / "scenarios" / "tutorial.yaml"
    for edition in EDITIONS:
        assert scenario.load(path, edition).steps
    assert manifest.load(path).causes
    assert yamlfile.read_yaml(PROJECT / "scenarios" / "tutorial" / "causes.yaml", "causes file")


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_bytes(b"id: x\ntitle: caf\xe9\n")
    assert error_of(lambda: scenario.load(path, "modern")) == (
        f"{path}: line 2: expected UTF-8 text, got the byte 0xe9; save the file as UTF-8")
