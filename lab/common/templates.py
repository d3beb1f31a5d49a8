"""Whether a scenario's string parses as a jinja2 template: checked when the scenario loads.

The one syntax check the scenario's strings and the tutorial's placeholder
values share; rendering is the engine's (lab.engine.context), in a sandbox.
"""

from __future__ import annotations

import jinja2

from lab.common.errors import Invalid

_PARSER = jinja2.Environment()  # parses only; never renders


def check_syntax(value: str, where: str) -> None:
    """Raise Invalid naming `where` when `value` is not a template jinja2 can parse."""
    try:
        _PARSER.parse(value)
    except jinja2.TemplateSyntaxError as exc:
        raise Invalid(where, f"template syntax error: {(exc.message or '').rstrip('.')} in {value!r}") from None
