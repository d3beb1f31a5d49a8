"""The report files of an edition's run: all four written at once, and the JSON read back.

`write_reports` writes EDITION.md, .xml, .html and .json; `load_result` reads
the JSON so `reglab report` can render the others again without a rerun.

NOTE: the engine redacts what it stores in a result; `write_reports` takes the
session's Redactor as well and redacts every string once more before writing,
so a secret that slipped past the engine still never reaches a report file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lab.common.errors import LabError
from lab.common.files import atomic_write
from lab.model.results import RunResult
from lab.reports.html import render_html
from lab.reports.junit import render_junit
from lab.reports.markdown import render_markdown

if TYPE_CHECKING:
    from lab.model.credentials import Redactor


_EDITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def render_json(result: RunResult) -> str:
    """Render a run as the JSON that load_result reads back."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def redact_result(result: RunResult, redactor: Redactor) -> RunResult:
    """A copy of `result` with every string redacted but the edition (a checked file name)."""
    r = redactor.redact
    steps = [step.redacted(r) for step in result.steps]
    phases = {r(name): secs for name, secs in result.phases.items()}
    return dataclasses.replace(result, steps=steps, phases=phases)


def write_reports(result: RunResult, directory: Path, redactor: Redactor | None = None) -> dict[str, Path]:
    """Write <edition>.md, .xml, .html and .json, each atomically; return their paths by kind.

    With a `redactor`, every string of the result is redacted before rendering
    (so HTML or XML escaping cannot hide a secret from it) and the rendered
    Markdown, XML and HTML once more (the diagnosis texts they add).
    """
    if not _EDITION_NAME.fullmatch(result.edition):
        raise ValueError(f"edition name not usable as a file name: {result.edition!r}")
    if redactor is not None:
        result = redact_result(result, redactor)
    renderers = {
        "md": render_markdown,
        "xml": render_junit,
        "html": render_html,
        "json": render_json,
    }
    paths: dict[str, Path] = {}
    for kind, render in renderers.items():
        text = render(result)
        if redactor is not None and kind != "json":  # JSON: its strings are the result's, redacted above
            text = redactor.redact(text)
        paths[kind] = atomic_write(directory / f"{result.edition}.{kind}", text)
    return paths


def load_result(path: Path) -> RunResult:
    """Read a run written by write_reports, so reports can be re-rendered.

    A file cut short, edited or from another version is a LabError naming it:
    `reglab run` writes it again.
    """
    again = "rerun `reglab run` to write it again (or remove it)"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise LabError(f"{path}: cannot be read ({error.strerror}); {again}") from None
    except UnicodeDecodeError:
        raise LabError(f"{path}: not UTF-8 text, so not a report reglab wrote; {again}") from None
    try:
        result = RunResult.from_dict(json.loads(text))
    except json.JSONDecodeError as error:
        raise LabError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); {again}"
        ) from None
    except ValueError as error:
        raise LabError(f"{path}: {error}; {again}") from None
    if not _EDITION_NAME.fullmatch(result.edition):
        raise LabError(f"{path}: edition: {result.edition!r} is not an edition name; {again}")
    return result


def load_results(directory: Path) -> list[RunResult]:
    """The last run of each edition in a reports folder, modern first."""
    results = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        result = load_result(path)
        if result.edition == path.stem:  # EDITION.json is what reglab writes; a copy beside it is not a run
            results.append(result)
    order = {"modern": 0, "as-written": 1}
    return sorted(results, key=lambda r: order.get(r.edition, 9))
