"""The tutorial, fixed, as files for the maintainer: `tutorial.fixed.md` and `tutorial.patch`.

The fixed text is the tutorial's own text with the scenario's `fixes:` applied
(lab/tutorial/fixes.py), each change followed by a note whose words are the
diagnosis table's causes; the patch is a unified diff of it against the text.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from lab.common.files import atomic_write
from lab.model.diagnosis import cause_by_id
from lab.tutorial.fixes import Fix, fixed_text

FIXED_NAME = "tutorial.fixed.md"
PATCH_NAME = "tutorial.patch"


def note(fix: Fix) -> str:
    """Why a change was made, from the diagnosis: one line, quoted under the block."""
    why = " ".join(cause_by_id(cause).cause for cause in fix.causes)
    return f"**Changed by reglab for today's tools** ({', '.join(fix.causes)}, {fix.where()}): {why}"


def render_fixed(text: str, fixes: Sequence[Fix]) -> str:
    return fixed_text(text, fixes, {fix: note(fix) for fix in fixes})


def render_patch(text: str, fixed: str, name: str = "tutorial.md") -> str:
    return "".join(difflib.unified_diff(text.splitlines(keepends=True), fixed.splitlines(keepends=True),
                                        fromfile=f"a/{name}", tofile=f"b/{name}"))


def write_fixed_tutorial(source: Path, fixes: Sequence[Fix], directory: Path) -> dict[str, Path]:
    """Both files beside the reports, each written atomically; their paths by kind (fixed, patch)."""
    text = source.read_text(encoding="utf-8")
    fixed = render_fixed(text, fixes)
    return {
        "fixed": atomic_write(directory / FIXED_NAME, fixed),
        "patch": atomic_write(directory / PATCH_NAME, render_patch(text, fixed, source.name)),
    }
