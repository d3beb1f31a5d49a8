"""Step kinds as typed parts: the keys each action and check accepts, declared once.

A kind is one `Kind`: its keys (each with a value type and whether it is
required) and the rules that tie keys together. The scenario loader validates
every item against its kind, so a misspelt key is an error when the scenario
loads, not a check that passes on anything.

Actions and checks are both declared here, as data; the engine runs them
(`lab.engine.steps.Engine._do_<kind>` and `lab.engine.checks.RUNNERS`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lab.common.errors import Invalid
from lab.model.lab import EDITIONS

# A rule sees a whole item and names the key it faults ("" for the item) and why.
Rule = Callable[[Mapping[str, Any]], tuple[str, str] | None]

_TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
MAX_WAIT = 24 * 3600  # the longest wait a lab file or scenario may set, in seconds: a day
_MODE = re.compile(r"^0?[0-7]{3,4}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _got(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number"}
    if value is None:
        return "got nothing"
    return f"got {names.get(type(value), type(value).__name__)} {value!r}"


# --- value types: each says what is wrong with a value, or None -------------------------


class ValueType(Protocol):
    def problem(self, value: Any) -> str | None: ...


@dataclass(frozen=True)
class Text:
    """A string; empty only when `empty` (an expected empty output or body)."""

    empty: bool = False

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected a string, {_got(value)}"
        if not self.empty and not value.strip():
            return "expected a non-empty string"
        return None


@dataclass(frozen=True)
class Texts:
    """A non-empty string, or a non-empty list of them (every one must hold)."""

    def problem(self, value: Any) -> str | None:
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v for v in values):
            return f"expected a non-empty string or a non-empty list of them, {_got(value)}"
        return None


@dataclass(frozen=True)
class Flag:
    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else f"expected true or false, {_got(value)}"


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        if value in self.values and isinstance(value, str):
            return None
        return f"expected one of {', '.join(self.values)}, {_got(value)}"


@dataclass(frozen=True)
class Choices:
    """One of `values`, or a list of them (`only: [as-written, fixed]`)."""

    values: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(v, str) and v in self.values for v in items) and len(set(items)) == len(items):
            return None
        return f"expected one of {', '.join(self.values)}, or a list of them, {_got(value)}"


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    what: str = "an integer"

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            return f"expected {self.what} {self.low}-{self.high}, {_got(value)}"
        return None


@dataclass(frozen=True)
class Exit:
    """An exit code, or "nonzero" for any failure."""

    def problem(self, value: Any) -> str | None:
        if value == "nonzero" or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255):
            return None
        return f'expected an exit code 0-255 or "nonzero", {_got(value)}'


@dataclass(frozen=True)
class Seconds:
    def problem(self, value: Any) -> str | None:
        # `not value > 0` refuses NaN too (`.nan` in YAML), which `value <= 0` lets through
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            return f"expected a positive number of seconds, {_got(value)}"
        if value > MAX_WAIT:  # .inf too
            return f"expected at most {MAX_WAIT} seconds (a day), {_got(value)}"
        return None


@dataclass(frozen=True)
class Mode:
    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and _MODE.match(value):
            return None
        return f"expected a quoted octal mode like '0600', {_got(value)}"


def regex_problem(pattern: str) -> str | None:
    """Whether a scenario regex compiles; its `{{ ... }}` parts are only known at run time."""
    try:
        re.compile(_TEMPLATE_PART.sub("x", pattern))
    except re.error as exc:
        return f"regex /{pattern}/ does not compile: {exc}"
    return None


@dataclass(frozen=True)
class Regex:
    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return f"expected a regex as a string, {_got(value)}"
        return regex_problem(value)


@dataclass(frozen=True)
class Strings:
    """A non-empty mapping of names to strings (HTTP headers)."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict) or not value:
            return f"expected a non-empty mapping of names to strings, {_got(value)}"
        for name, text in value.items():
            if not isinstance(name, str) or not isinstance(text, str):
                return f"{name}: expected a string (quote it), {_got(text)}"
        return None


@dataclass(frozen=True)
class Captures:
    """A non-empty mapping of names to the regex whose first group (or whole match) is kept."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict) or not value:
            return f"expected a mapping of names to regexes, {_got(value)}"
        for name, pattern in value.items():
            if not isinstance(name, str) or not _NAME.match(name):
                return f"{name!r}: expected a name of letters, digits and _ (it is used as captured.NAME)"
            if not isinstance(pattern, str) or not pattern:
                return f"{name}: expected a regex as a string, {_got(pattern)}"
            if found := regex_problem(pattern):
                return f"{name}: {found}"
        return None


@dataclass(frozen=True)
class Names:
    """A mapping of template variable names to values (a file template's `vars`)."""

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected a mapping of names to values, {_got(value)}"
        for name in value:
            if not isinstance(name, str) or not _NAME.match(name):
                return f"{name!r}: expected a name of letters, digits and _ (a template variable)"
        return None


_TEXT_REF = re.compile(r"^\d+(?::\d+(?:-\d+)?)?$")


@dataclass(frozen=True)
class TextRefs:
    """Lines of the tutorial's text: a block number, "BLOCK:LINE", "BLOCK:FIRST-LAST", or a list of them.

    Only the shape is checked here; the loader checks them against the text (`lab.tutorial.commands`).
    """

    def problem(self, value: Any) -> str | None:
        refs = value if isinstance(value, list) else [value]
        for ref in refs:
            if isinstance(ref, int) and not isinstance(ref, bool) and ref >= 1:
                continue
            if isinstance(ref, str) and _TEXT_REF.match(ref):
                continue
            return (f'expected a block number, "BLOCK:LINE", "BLOCK:FIRST-LAST" or a non-empty list of them, '
                    f"{_got(ref if isinstance(value, list) else value)}")
        return None if refs else "expected a non-empty list of block references, got an empty list"


@dataclass(frozen=True)
class BlockEdits:
    """The text's own edits of a file: a non-empty list of `{replace: BLOCK, with: BLOCK}`.

    Only the shape is checked here; the loader applies them to the text (`lab.tutorial.commands`).
    """

    def problem(self, value: Any) -> str | None:
        shape = "expected a non-empty list of {replace: BLOCK, with: BLOCK} mappings"
        if not isinstance(value, list) or not value:
            return f"{shape}, {_got(value)}"
        for edit in value:
            if not isinstance(edit, dict) or set(edit) != {"replace", "with"} or not all(
                    isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in edit.values()):
                return f"{shape}, {_got(edit)}"
        return None


@dataclass(frozen=True)
class Nested:
    """Checks inside an item: one (`wait`, `check`) or a non-empty list (`any`).

    Only the shape is checked here; the loader validates each check by its kind.
    """

    many: bool

    def problem(self, value: Any) -> str | None:
        if self.many and (not isinstance(value, list) or not value):
            return f"expected a non-empty list of checks, {_got(value)}"
        if not self.many and not isinstance(value, dict):
            return f"expected a check (a mapping), {_got(value)}"
        return None


# --- kinds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    type: ValueType
    required: bool = False


# Allowed on every item: the edition it belongs to, and what it proves in a sentence.
SHARED = {"only": Key(Choices(EDITIONS)), "why": Key(Text())}

# What output or content is expected to be; shared by `run`, `command` and `file`.
TEXT_KEYS = {
    "equals": Key(Text(empty=True)),
    "contains": Key(Texts()),
    "not_contains": Key(Texts()),
    "regex": Key(Regex()),
}


@dataclass(frozen=True)
class Kind:
    """One action or check kind: the keys it accepts and the rules between them."""

    name: str
    role: str  # "action" or "check"
    keys: Mapping[str, Key]
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        own = self.keys.get(self.name)
        if own is None or not own.required:
            raise TypeError(f"kind {self.name}: its own key {self.name!r} must be declared, required")

    def called(self) -> str:
        """How messages name the kind: "an http check", "a run action"."""
        return f"{'an' if self.name[0] in 'aeiouh' else 'a'} {self.name} {self.role}"

    def accepts(self) -> dict[str, Key]:
        return {**self.keys, **SHARED}

    def validate(self, item: Mapping[str, Any], where: str) -> None:
        """Raise `Invalid` for the first unknown, missing or ill-typed key, or a broken rule."""
        accepts = self.accepts()
        for key in item:
            if key not in accepts:
                close = difflib.get_close_matches(str(key), list(accepts), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise Invalid(f"{where}.{key}", f"unknown key for {self.called()}{hint}; "
                                                f"expected {', '.join(accepts)}")
        for key, spec in accepts.items():
            if key not in item:
                if spec.required:
                    raise Invalid(f"{where}.{key}", f"missing; {self.called()} needs it")
                continue
            if problem := spec.type.problem(item[key]):
                raise Invalid(f"{where}.{key}", problem)
        for rule in self.rules:
            if broken := rule(item):
                key, problem = broken
                raise Invalid(f"{where}.{key}" if key else where, problem)

    def nested(self) -> dict[str, bool]:
        """The keys holding checks, each with whether it holds a list of them."""
        return {key: spec.type.many for key, spec in self.keys.items() if isinstance(spec.type, Nested)}


def one_of(*keys: str) -> Rule:
    def rule(item: Mapping[str, Any]) -> tuple[str, str] | None:
        given = [k for k in keys if k in item]
        if len(given) != 1:
            return "", f"expected exactly one of {', '.join(keys)}" + (f", got {', '.join(given)}" if given else "")
        return None

    return rule


def needs(key: str, other: str) -> Rule:
    def rule(item: Mapping[str, Any]) -> tuple[str, str] | None:
        if key in item and other not in item:
            return key, f"only applies with {other}"
        return None

    return rule


# --- the actions (run by lab.engine) -----------------------------------------------------

ACTIONS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("run", "action", {
            "run": Key(Text(), required=True),
            "stdin": Key(Text()),
            "exit": Key(Exit()),
            **TEXT_KEYS,
            "timeout": Key(Seconds()),
        }),
        # The as-written edition's commands, taken from the tutorial's text (lab.tutorial.commands).
        Kind("from_text", "action", {
            "from_text": Key(TextRefs(), required=True),
            "stdin": Key(Text()),
            "exit": Key(Exit()),
            **TEXT_KEYS,
            "timeout": Key(Seconds()),
        }),
        Kind("file", "action", {
            "file": Key(Text(), required=True),
            "template": Key(Text()),
            "content": Key(Text(empty=True)),
            # The text's own block as the file (lab.tutorial.commands.TutorialText.file): data, never a template.
            "from_block": Key(Int(1, 10_000, "a block number")),
            "edits": Key(BlockEdits()),
            "vars": Key(Names()),
            "mode": Key(Mode()),
        }, rules=(one_of("template", "content", "from_block"), needs("vars", "template"),
                  needs("edits", "from_block"))),
        Kind("htpasswd", "action", {"htpasswd": Key(Text(), required=True)}),
        Kind("pki", "action", {"pki": Key(Text(), required=True)}),
        Kind("ca_trust", "action", {"ca_trust": Key(Text(), required=True), "name": Key(Text())}),
        Kind("copy", "action", {
            "copy": Key(Text(), required=True),
            "to": Key(Text(), required=True),
            "mode": Key(Mode()),
        }),
        Kind("wait", "action", {"wait": Key(Nested(many=False), required=True), "timeout": Key(Seconds())}),
        Kind("check", "action", {"check": Key(Nested(many=False), required=True)}),
    )
}


# --- the checks (run by lab.engine.checks) ----------------------------------------------

COMMAND = Kind("command", "check", {
    "command": Key(Text(), required=True),
    "stdin": Key(Text()),
    "exit": Key(Exit()),
    **TEXT_KEYS,
    "capture": Key(Captures()),
    "timeout": Key(Seconds()),
})


HTTP_EXPECTATIONS = ("status", "body", "body_contains", "headers")


def _http_expects_something(item: Mapping[str, Any]) -> tuple[str, str] | None:
    """Without an expectation an http check passes on any answer, so it must have one."""
    given = [key for key in HTTP_EXPECTATIONS if key in item]
    if item.get("unreachable"):
        if given:
            return given[0], "an unreachable URL gives no answer to compare; drop this key or `unreachable`"
        return None
    if not given:
        return "", (f"an http check must expect something: {', '.join(HTTP_EXPECTATIONS)} or unreachable: true "
                    "(without one it passes on any answer)")
    return None


HTTP = Kind("http", "check", {
    "http": Key(Text(), required=True),
    "status": Key(Int(100, 599, "an HTTP status")),
    "body": Key(Text(empty=True)),
    "body_contains": Key(Text()),
    "headers": Key(Strings()),
    "unreachable": Key(Flag()),
    "auth": Key(Choice(("none", "user", "wrong"))),
    "head": Key(Flag()),
    "user_agent": Key(Text()),
    "accept": Key(Text()),
    "cacert": Key(Text()),
    "timeout": Key(Seconds()),
}, rules=(_http_expects_something,))


TLS = Kind("tls", "check", {
    "tls": Key(Text(), required=True),
    "ca": Key(Text(), required=True),
    "servername": Key(Text()),
    "san": Key(Flag()),
})


FILE_TYPES = ("regular file", "directory", "symbolic link", "socket", "fifo", "character special file",
              "block special file")


def _absent_alone(item: Mapping[str, Any]) -> tuple[str, str] | None:
    if item.get("absent"):
        for key in ("type", "mode", *TEXT_KEYS):
            if key in item:
                return key, "a file expected absent has no type, mode or content to check"
    return None


FILE = Kind("file", "check", {
    "file": Key(Text(), required=True),
    "type": Key(Choice(FILE_TYPES)),
    "mode": Key(Mode()),
    "absent": Key(Flag()),
    **TEXT_KEYS,
}, rules=(_absent_alone,))


DOCKER_LOGIN = Kind("docker_login", "check", {"docker_login": Key(Text(), required=True)})


ANY = Kind("any", "check", {"any": Key(Nested(many=True), required=True)})

# Every check kind, in the order the loader lists them; lab.engine.checks runs them.
CHECKS: dict[str, Kind] = {kind.name: kind for kind in (COMMAND, HTTP, TLS, FILE, DOCKER_LOGIN, ANY)}
