"""The one reader of the user's files: lab files, rosters, scenarios, causes, stored secrets.

A user's file may be anything: a FIFO that never ends, /dev/zero, a folder,
a huge export, Latin-1 text, YAML nested thousands deep or whose aliases
expand to a billion values, a key given twice.
Each is one ConfigError naming the file (and the line or key path where
there is one), never a hang, a MemoryError or a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from lab.common.errors import ConfigError

MAX_BYTES = 1024 * 1024  # far above any lab file, scenario or roster; far below what would hurt
MAX_DEPTH = 64  # the shipped scenario nests 9 deep; PyYAML itself overflows the stack near 500
MAX_VALUES = 100_000  # values once aliases are expanded; the shipped scenario has 1,606

# libyaml's parser where PyYAML was built with it: the scenario (1,606 values) parses in 0.02 s of CPU
# instead of 0.06 s, which every `reglab check` pays. Both refuse control characters and bound nesting.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class MissingFileError(ConfigError):
    """The file is not there: a caller may say how to make one."""


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping, which PyYAML would silently collapse to the last."""

    def __init__(self, key: Any, key_path: str, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", again)
        self.key = key
        self.key_path = key_path
        self.first_line = first.line + 1
        self.line = again.line + 1


class ShapeError(yaml.YAMLError):
    """A document whose shape would stall or overflow whatever reads it next: too deep, too big once its
    aliases are expanded (a "billion laughs"), or holding itself."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = mark.line + 1


class StrictLoader(_SAFE_LOADER):  # type: ignore[misc,valid-type]
    """SafeLoader that refuses a mapping key given twice, naming its key path and lines, and a shape
    nothing downstream should meet (ShapeError).

    NOTE: keys brought in by a merge (`<<: *anchor`) may be overridden; that is
    what a merge is for. Only keys written twice in the same mapping are refused.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        if self._refuse_duplicates(node, "", {}, 0) > MAX_VALUES:
            raise ShapeError(f"more than {MAX_VALUES} values once its aliases are expanded", node.start_mark)
        return super().construct_document(node)

    def _refuse_duplicates(self, node: yaml.Node, path: str, sizes: dict[int, int | None], depth: int) -> int:
        """Check `node`; return how many values it stands for, aliases expanded (each node is walked once)."""
        if id(node) in sizes:  # an alias of a node walked already, or being walked: one inside its own anchor
            size = sizes[id(node)]
            if size is None:
                raise ShapeError("an alias inside its own anchor (a value that holds itself)", node.start_mark)
            return size
        sizes[id(node)] = None
        if depth > MAX_DEPTH:
            raise ShapeError(f"nested too deeply (more than {MAX_DEPTH} levels)", node.start_mark)
        size = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Mark] = {}
            for key_node, value_node in node.value:
                here = path
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = self.construct_object(key_node)
                    here = f"{path}.{key}" if path else str(key)
                    if key in first:
                        raise DuplicateKeyError(key, here, first[key], key_node.start_mark)
                    first[key] = key_node.start_mark
                size += 1 + self._refuse_duplicates(value_node, here, sizes, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                size += self._refuse_duplicates(item, f"{path}[{i}]", sizes, depth + 1)
        sizes[id(node)] = size = min(size, MAX_VALUES + 1)  # the count stays small, however aliases multiply
        return size


def read_bytes(path: Path | str, what: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is one ConfigError.

    Opened without blocking (a FIFO would wait for a writer forever) and then
    checked on the open file itself, so what is read is what was checked.
    """
    source = str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(Path(path).expanduser(), flags)
    except FileNotFoundError:
        raise MissingFileError(source, "", f"no such {what}") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the {what}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(source, "", f"cannot read the {what}: not a regular file ({_kind(info.st_mode)})")
        too_large = ConfigError(source, "", f"larger than {_size(limit)}: too large for a {what}")
        if info.st_size > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, limit + 1 - size):  # the file may have grown since fstat
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise too_large
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def decode_utf8(data: bytes, source: str) -> str:
    """The text of a file that must be UTF-8; anything else is one ConfigError naming the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            source, f"line {line}", f"expected UTF-8 text, got the byte 0x{data[exc.start]:02x}; save the file as UTF-8"
        ) from None


def read_text(path: Path | str, what: str) -> str:
    """A user's text file (a CSV roster too): regular, at most MAX_BYTES, UTF-8, without a byte order mark."""
    return decode_utf8(read_bytes(path, what), str(path)).removeprefix("\ufeff")


def parse(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """One YAML document's data and its node (for line numbers), safely; None, None when empty."""
    loader = None
    try:
        loader = StrictLoader(text)  # its reader refuses control characters already
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except DuplicateKeyError as exc:
        raise ConfigError(
            source,
            exc.key_path,
            f"expected each key once, got {exc.key!r} again at line {exc.line} (first at line {exc.first_line}); "
            "YAML would keep only the last, so remove one",
        ) from None
    except ShapeError as exc:
        raise ConfigError(source, f"line {exc.line}", exc.problem) from None
    except RecursionError:  # PyYAML's composer recursed first: no line to name
        raise ConfigError(source, "", f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "maximum nesting depth" in problem:  # libyaml's own bound, met before ours
            raise ConfigError(source, where, f"nested too deeply (more than {MAX_DEPTH} levels)") from None
        raise ConfigError(source, where, f"invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path | str, what: str) -> Any:
    """The data of a user's YAML file (`what` names it in messages: "lab file", "roster"...)."""
    return parse(read_text(path, what), str(path))[0]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "something else"


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
