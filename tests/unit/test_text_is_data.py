"""The tutorial's text is data, never code: nothing in it reaches jinja2, with no machine.

A line of the text that holds template syntax (`{% endraw %}{{ ... }}{% raw %}`) must
neither run Python on the host (`reglab show`, the engine's rendering) nor put a
password on a command line. A cited block whose text is no longer the one reviewed
stops the load; once reviewed (its digest updated), its text runs byte for byte.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.config import load as load_lab
from lab.credentials import Redactor
from lab.engine import Context, render_value
from lab.errors import LabError
from lab.images import LabImages

PASSWORD = "Sup3r-s3cret-pw"


# --- defence in depth: the lab's own templates render in a sandbox ------------------------------


def test_the_engines_templates_cannot_reach_python(tmp_path: Path) -> None:
    (tmp_path / "lab.yml").write_text(f"users: [{{name: student, password: {PASSWORD}}}]\n")
    lab = load_lab(tmp_path / "lab.yml", environ={}, overrides={})
    ctx = Context(lab, lambda name: None, LabImages(registry="r", proxy="p", base="b"), Redactor())
    marker = tmp_path / "MARKER"
    with pytest.raises(LabError, match=re.escape("cannot be rendered")):
        render_value(ctx.jinja, f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}", {})
    assert not marker.exists()
