"""The class roster: who gets a lab, read from a CSV file, a YAML file or a plain count.

A student's id names their lab (`CLASS-ID`), its folder and their registry
user, and is the first label of their registry's domain, so it is held to
the narrowest of those rules: 1 to 16 lower-case letters, digits or '-',
starting and ending with a letter or digit (a DNS label may not end with '-').

NOTE: every bad input is one ConfigError naming the file and the line (or,
for a count, the value), never a traceback: an instructor's spreadsheet export
is the most likely input and the least likely to be tidy.
"""

from __future__ import annotations

import csv
import io
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.common.errors import ConfigError
from lab.common.fields import value_kind
from lab.common.yamlfile import parse, read_text
from lab.model.labcheck import identity_file

MAX_STUDENTS = 250  # one /24 each from the class pool, and about as many labs as one host could ever boot
STUDENT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?")
_ID_RULE = ("expected 1 to 16 lower-case letters, digits or '-', starting and ending with a letter or digit "
            "(it names the student's lab and registry user, and begins their registry's domain)")
_COUNT = re.compile(r"[+-]?[0-9]+")
_CSV_SUFFIXES = (".csv",)
_YAML_SUFFIXES = (".yml", ".yaml")
_KNOWN_COLUMNS = ("id", "name", "machines")  # every other column (email included) is kept in `extra`


@dataclass(frozen=True)
class Student:
    """One student: `id` as checked and lower-cased, `name` as given ("" when none), other columns in `extra`."""

    id: str
    name: str = ""
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Machines made elsewhere for this student (a YAML roster's `machines:`), reached over SSH:
    # role -> {ip, host, port, user, identity_file}, identity files made absolute. None: reglab boots them.
    machines: Mapping[str, Mapping[str, Any]] | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        # A read-only copy: a Student is a value, shared by threads booting labs in parallel.
        object.__setattr__(self, "extra", types.MappingProxyType(dict(self.extra)))

    @property
    def email(self) -> str:
        return self.extra.get("email", "")


def load_roster(text_or_path: str) -> list[Student]:
    """The students of a class, in the order given.

    `text_or_path` is a number of students ("12": s01..s12) or the path of a
    .csv file (a header row with `id`, and optionally `name`, `email` and any
    other columns) or a .yml/.yaml file (a list of ids, or of mappings with
    `id` and optionally `name`). A count wins over a file that happens to be
    named like one.
    """
    value = text_or_path.strip()
    if _COUNT.fullmatch(value):
        return _counted(value)
    source = text_or_path
    suffix = Path(value).suffix.lower()
    if suffix not in (*_CSV_SUFFIXES, *_YAML_SUFFIXES):
        raise ConfigError(source, "", "expected a number of students, or a roster file ending in .csv, .yml or .yaml")
    text = read_text(value, "roster")
    entries = _from_csv(text, source) if suffix in _CSV_SUFFIXES else _from_yaml(text, source)
    return _checked(entries, source)


def _counted(value: str) -> list[Student]:
    count = int(value)
    if not 1 <= count <= MAX_STUDENTS:
        raise ConfigError("roster", "", f"expected a number of students from 1 to {MAX_STUDENTS}, got {value}")
    width = max(2, len(str(count)))
    return [Student(id=f"s{n:0{width}d}") for n in range(1, count + 1)]


# An entry before its checks: where it was (e.g. "line 4"), the id as given, the name, the other columns,
# and the machines given for it (YAML only; None: reglab boots them).
_Entry = tuple[str, Any, str, dict[str, str], dict[str, dict[str, Any]] | None]


def _from_csv(text: str, source: str) -> list[_Entry]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote is an error
    try:
        header = next(reader, None)
        if header is None:
            raise ConfigError(source, "", "empty file: expected a header row naming an `id` column, then one "
                              "student per row")
        columns = [cell.strip().lower() for cell in header]
        seen: set[str] = set()
        for number, column in enumerate(columns, 1):
            if column and column in seen:
                raise ConfigError(source, "line 1", f"column {column!r} is named twice (columns "
                                  f"{columns.index(column) + 1} and {number}); rename one")
            seen.add(column)
        if "id" not in seen:
            raise ConfigError(source, "line 1", f"expected a header row with an `id` column (and optionally name, "
                              f"email...), got {', '.join(repr(c) for c in header) or 'nothing'}")
        entries = []
        for row in reader:
            where = f"line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue  # blank lines, or a spreadsheet's rows of empty cells
            if len(row) > len(columns):
                raise ConfigError(source, where, f"{len(row)} cells, but the header names {len(columns)} columns")
            cells: dict[str, str] = {}
            for number, (column, cell) in enumerate(zip(columns, row, strict=False), 1):
                if not column:
                    if cell.strip():
                        raise ConfigError(source, where, f"column {number} holds {cell.strip()!r} but has no name "
                                          "in the header row; name it or empty it")
                    continue
                cells[column] = cell.strip()
            student_id = cells.pop("id", "")
            name = cells.pop("name", "")
            entries.append((where, student_id, name, cells, None))
    except csv.Error as exc:
        raise ConfigError(source, f"line {reader.line_num}", f"not valid CSV: {exc}") from None
    return entries


def _from_yaml(text: str, source: str) -> list[_Entry]:
    data, node = parse(text, source)
    if data is None:
        return []
    if not isinstance(data, list) or node is None:
        raise ConfigError(source, "", "expected a list of student ids, or of mappings with `id` and optionally "
                          f"`name`, got {type(data).__name__}")
    entries = []
    for item_node, item in zip(node.value, data, strict=True):
        where = f"line {item_node.start_mark.line + 1}"
        if not isinstance(item, dict):
            entries.append((where, item, "", {}, None))
            continue
        if "id" not in item:
            raise ConfigError(source, where, "missing key `id` (the student's id), got keys "
                              f"{', '.join(map(str, item))}")
        extra: dict[str, str] = {}
        for key, value in item.items():
            if key in _KNOWN_COLUMNS:
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
                raise ConfigError(source, f"{where}: {key}", f"expected a text value, got {value_kind(value)}")
            extra[str(key).strip().lower()] = "" if value is None else str(value).strip()
        name = item.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(source, f"{where}: name", f"expected the student's name as text, got {value_kind(name)}")
        machines = item.get("machines")
        given = None if machines is None else _given_machines(machines, source, where)
        entries.append((where, item["id"], name.strip(), extra, given))
    return entries


def _checked(entries: list[_Entry], source: str) -> list[Student]:
    """Students from entries: ids valid and lower-cased, each once, 1 to MAX_STUDENTS of them."""
    if not entries:
        raise ConfigError(source, "", "no students: expected at least one")
    if len(entries) > MAX_STUDENTS:
        raise ConfigError(source, "", f"{len(entries)} students, expected at most {MAX_STUDENTS}")
    first: dict[str, str] = {}
    students = []
    for where, given, name, extra, machines in entries:
        if not isinstance(given, str):
            raise ConfigError(source, f"{where}: id", f"expected the id as text, got {value_kind(given)} {given!r}; "
                              "put it in quotes")
        student_id = given.strip().lower()
        if not student_id:
            raise ConfigError(source, f"{where}: id", "missing: every student needs an id")
        if not STUDENT_ID.fullmatch(student_id):
            raise ConfigError(source, f"{where}: id", f"{given.strip()!r} is not a usable student id: {_ID_RULE}")
        if student_id in first:
            raise ConfigError(source, f"{where}: id", f"{student_id!r} is already the id of the student at "
                              f"{first[student_id]}; ids must be unique (they name the labs)")
        first[student_id] = where
        students.append(Student(id=student_id, name=name, extra=extra, machines=machines))
    return students


_MACHINE_KEYS = ("ip", "host", "port", "user", "identity_file", "host_key")


def _given_machines(value: Any, source: str, where: str) -> dict[str, dict[str, Any]]:
    """`machines:` of a roster entry: role -> where reglab reaches it; checked in full when the lab loads.

    Identity files are taken relative to the roster, as the lab file's are to it, and checked now (a
    key paramiko cannot read would only show at login, as machines that do not answer).
    """
    if not isinstance(value, dict) or not value:
        raise ConfigError(source, f"{where}: machines", f"expected a mapping of machine names to "
                          f"{{ip, user, identity_file, host, port, host_key}}, got {value_kind(value)}")
    folder = Path(source).expanduser().resolve().parent
    machines = {}
    for role, spec in value.items():
        if not isinstance(spec, dict):
            raise ConfigError(source, f"{where}: machines.{role}", f"expected a mapping, got {value_kind(spec)}")
        unknown = [k for k in spec if k not in _MACHINE_KEYS]
        if unknown:
            raise ConfigError(source, f"{where}: machines.{role}.{unknown[0]}",
                              f"unknown key; expected {', '.join(_MACHINE_KEYS)}")
        spec = dict(spec)
        if spec.get("identity_file") is not None:
            identity_file(spec["identity_file"], source, f"{where}: machines.{role}.identity_file", folder)
            spec["identity_file"] = str(folder / Path(spec["identity_file"]).expanduser())
        machines[str(role)] = spec
    return machines
