"""Unit tests for how a scenario's strings render: compiled once, plain text as it is, as jinja renders it."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment

from lab.engine import context
from lab.engine.context import StepFailed, render_value
from lab.model import scenario

VARIABLES = {"domain": "myregistrydomain.com", "ip": {"registry": "192.168.33.10", "client": "192.168.33.11"},
             "ports": {"registry": 5000, "proxy": 5043, "https": 443}, "user": {"name": "student", "password": "pw"},
             "workdir": "/root/docker-registry", "compose": "docker compose", "ca_anchor": "/x/devdockerCA.crt",
             "edition": "modern", "captured": {"pushed": "sha256:" + "ab" * 32}, "images": {"base": "b"}}


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    return []


def lab_jinja() -> jinja2.Environment:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_escape"] = __import__("re").escape
    return env


SHIPPED = sorted(set(strings(yaml.safe_load(scenario.default_path().read_text())["steps"])))


def test_every_string_of_the_shipped_scenario_renders_as_jinja_renders_it() -> None:
    env = lab_jinja()
    for text in SHIPPED:
        try:
            expected = env.from_string(text).render(VARIABLES)
        except jinja2.UndefinedError:
            with pytest.raises(StepFailed):
                render_value(env, text, VARIABLES)
            continue
        assert render_value(env, text, VARIABLES) == expected, text


@pytest.mark.parametrize("text", ["plain", "ends with a newline\n", "a\r\nb", "{{ domain }}", "{% if 1 %}x{% endif %}",
                                  "{# note #}y", "brace { alone", "}", ""])
def test_plain_text_is_as_jinja_renders_it_in_any_environment(text: str) -> None:
    for env in (lab_jinja(), jinja2.Environment(), jinja2.Environment(keep_trailing_newline=True),
                jinja2.Environment(variable_start_string="<<", variable_end_string=">>")):
        assert render_value(env, text, {"domain": "d"}) == env.from_string(text).render({"domain": "d"})


def test_a_string_is_compiled_once_per_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = lab_jinja()
    compiled = []
    real = env.from_string
    monkeypatch.setattr(env, "from_string", lambda text: compiled.append(text) or real(text))
    for _ in range(3):
        assert render_value(env, "{{ domain }}:443 once", VARIABLES) == "myregistrydomain.com:443 once"
        assert render_value(env, "never compiled", VARIABLES) == "never compiled"
    assert compiled == ["{{ domain }}:443 once"]
    other = lab_jinja()
    assert context._compiled(other, "{{ domain }}:443 once") is not context._compiled(env, "{{ domain }}:443 once")
