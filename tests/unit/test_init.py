"""`reglab init`: files that load as they are, with the defaults; never over a file that is there."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
from pathlib import Path

import pytest
import yaml

from lab.classroom.labs import student_lab
from lab.classroom.roster import load_roster
from lab.cli import scaffold
from lab.cli.main import main
from lab.model import labfile
from lab.model.lab import EDITIONS, IMAGE_SOURCES, OS_FAMILIES, PROVIDERS, STARTS, Lab


@pytest.fixture(autouse=True)
def no_reglab_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("REGLAB_PROVIDER", "REGLAB_EDITION", "REGLAB_IMAGES", "REGLAB_LAB", "REGLAB_MIRROR", "REGLAB_START"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))


def reglab(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def same_but_source(a: Lab, b: Lab) -> bool:
    return dataclasses.replace(a, source=b.source) == b


def test_init_writes_a_lab_file_that_loads_with_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = reglab("init")
    assert (code, err) == (0, "")
    assert out.startswith("wrote lab.yml\n") and "`reglab run`" in out
    written = tmp_path / "lab.yml"
    assert written.read_text() == scaffold.LAB_YML  # data, written as it is
    (tmp_path / "empty.yml").write_text("")
    defaults = labfile.load(tmp_path / "empty.yml", environ={})
    lab = labfile.load(written, environ={})
    assert same_but_source(lab, defaults)
    assert (lab.name, lab.provider, lab.edition, lab.os, lab.images.source, lab.start) == (
        "reglab", "docker", "modern", "debian", "auto", "warm")
    assert [(m.name, m.ip) for m in lab.machines] == [("registry", "192.168.33.10"), ("client", "192.168.33.11")]
    assert [u.name for u in lab.users] == ["student"] and lab.users[0].password is None


def test_the_lab_file_explains_every_key() -> None:
    for key in (*labfile.DEFAULTS, "domain", "machines", "ports", "identity_file"):
        assert f"{key}:" in scaffold.LAB_YML, key
    for choice in (*PROVIDERS, "auto", *EDITIONS, *IMAGE_SOURCES, *STARTS,
                   *OS_FAMILIES):
        assert choice in scaffold.LAB_YML, choice


@pytest.mark.parametrize("roster", ["net101.csv", "net101.yml", "net101.yaml"])
def test_init_class_writes_a_base_and_a_roster_that_load(tmp_path: Path, roster: str) -> None:
    folder = tmp_path / "course"
    code, out, err = reglab("init", str(folder), "--class", roster)
    assert (code, err) == (0, "")
    assert f"class up {folder / roster}" in out
    base_file = folder / scaffold.CLASS_BASE_FILE
    assert sorted(p.name for p in folder.iterdir()) == sorted(["lab.yml", scaffold.CLASS_BASE_FILE, roster])
    labfile.load(folder / "lab.yml", environ={})
    base_lab = labfile.load(base_file, environ={})
    assert base_lab.provider == "docker" and base_lab.name == "class-base"
    students = load_roster(str(folder / roster))
    assert [(s.id, s.name, s.email) for s in students] == [("ada", "Ada Lovelace", "ada@example.org"),
                                                          ("bob", "Bob Example", "bob@example.org")]
    base = labfile.read_lab_file(base_file)
    subnet = ipaddress.IPv4Network("10.77.3.0/24")
    lab_path = tmp_path / "ada.yml"
    lab_path.write_text(yaml.safe_dump(student_lab(base, "net101", students[0], subnet, source=str(base_file))))
    ada = labfile.load(lab_path, environ={})
    assert (ada.name, ada.domain, ada.machine("registry").ip) == ("net101-ada", "ada.myregistrydomain.com",
                                                                  "10.77.3.10")
    assert [u.name for u in ada.users] == ["ada"]


def test_init_refuses_to_overwrite_and_force_overwrites(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yml"
    lab.write_text("name: mine\n")
    code, out, err = reglab("init", str(tmp_path), "--class", "net101.csv")
    assert code == 2 and out == ""
    assert err == f"reglab: error: {lab} already exists: nothing written; --force overwrites it\n"
    assert lab.read_text() == "name: mine\n"
    assert not (tmp_path / "net101.csv").exists()  # nothing written at all
    code, _, err = reglab("init", str(tmp_path), "--force")
    assert (code, err) == (0, "")
    assert lab.read_text() == scaffold.LAB_YML


def test_init_refuses_a_link_where_lab_yml_goes(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("kept\n")
    (tmp_path / "lab.yml").symlink_to(tmp_path / "elsewhere")
    code, _, err = reglab("init", str(tmp_path))
    assert code == 2 and "already exists" in err
    assert (tmp_path / "elsewhere").read_text() == "kept\n"


@pytest.mark.parametrize(("roster", "words"), [
    ("rosters/net101.csv", "expected a roster file name like net101.csv"),
    ("net101.txt", "ending in .csv, .yml or .yaml"),
    ("lab.yml", "the name of a lab file init writes"),
    ("class-lab.yml", "the name of a lab file init writes"),
])
def test_init_class_needs_a_roster_file_name(tmp_path: Path, roster: str, words: str) -> None:
    code, out, err = reglab("init", str(tmp_path), "--class", roster)
    assert code == 2 and out == "" and words in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_init_into_a_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    code, _, err = reglab("init", str(tmp_path / "afile"))
    assert code == 2
    assert err == f"reglab: error: {tmp_path / 'afile'}: not a folder; init writes lab.yml into a folder\n"


def test_no_lab_file_says_to_run_reglab_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = reglab("steps")
    assert code == 2 and out == ""
    assert err == "reglab: error: lab.yml: no such file; `reglab init` writes a commented lab.yml to start from\n"
    assert reglab("init")[0] == 0
    code, out, _ = reglab("steps")
    assert code == 0 and "local-registry" in out


def test_a_lab_file_elsewhere_names_its_folder(tmp_path: Path) -> None:
    code, _, err = reglab("--lab", str(tmp_path / "course" / "lab.yml"), "status")
    assert code == 2 and f"`reglab init {tmp_path / 'course'}` writes a commented lab.yml" in err
