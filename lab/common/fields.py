"""Reading checked values out of parsed YAML: what a lab file, a scenario and a roster share.

Every bad value is one ConfigError naming the file, the key path, what was
expected and what was found, never a traceback.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from lab.common.errors import ConfigError


def value_kind(value: Any) -> str:
    """What a YAML value is, in words for an error message ("a number", "a list", "nothing")."""
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number",
             datetime.date: "a date", datetime.datetime: "a date and time"}
    return names.get(type(value), type(value).__name__)


class FieldReader:
    """The checks every reader of one file needs; its errors name that file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(self.source, path, problem)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {value_kind(value)}")
        return value

    def port(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise self.fail(path, f"expected a port number 1-65535, got {value!r}")
        return value
