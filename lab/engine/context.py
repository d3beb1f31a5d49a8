"""What one run knows: the lab, its machines, the resolved images, and values captured by checks.

`Context` is what checks (lab.engine.checks) and the engine (lab.engine.steps)
both use; it renders a scenario's templates for a machine and reads and
writes files on it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from lab.common.errors import LabError, LabFailure
from lab.machines.images import LabImages
from lab.machines.osfamily import Family, family_for
from lab.machines.remote import Machine
from lab.model.credentials import Redactor
from lab.model.lab import Lab, User
from lab.tutorial.text import Command

# Made once on each machine at first contact: tells one machine from another made anew under its name.
IDENTITY_FILE = "/var/lib/reglab/machine-id"
_IDENTIFY = (
    f"test -s {IDENTITY_FILE} || {{ mkdir -p /var/lib/reglab && "
    f"od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' > {IDENTITY_FILE}; }}; "
    f"cat /etc/os-release; echo; echo reglab-identity=$(cat {IDENTITY_FILE})"
)



class StepFailed(LabFailure):
    def __init__(self, expected: str, seen: str) -> None:
        super().__init__(f"expected {expected}; saw {seen}")
        self.expected = expected
        self.seen = seen


def template_variables(lab: Lab, images: LabImages, family: Family, user: Any, captured: Any) -> dict[str, Any]:
    """The names a scenario's strings and the config templates may use."""
    return {
        "domain": lab.domain,
        "ip": {m.name: m.ip for m in lab.machines},
        "ports": lab.ports,
        "images": images,
        "user": user,
        "users": lab.users,
        "workdir": lab.manifest.workdir,
        "compose": family.compose,
        "ca_anchor": family.ca_path("devdockerCA.crt"),
        "edition": lab.edition,
        "captured": captured,
        # What reglab's own solve puts on the containers it starts: `reset` on given machines removes those.
        "label": f"org.reglab.lab={lab.name}",
    }


def render_value(jinja: jinja2.Environment, value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, Command):  # the tutorial's text: only its values are templates
        return value.render(lambda template: render_value(jinja, template, variables))
    if isinstance(value, str):
        if _plain(jinja, value):
            return value
        try:
            return _compiled(jinja, value).render(variables)
        except jinja2.UndefinedError as exc:
            seen = f"none ({exc.message}); an earlier check captures it"
            raise StepFailed(f"a value for {value!r}", seen) from None
        except jinja2.TemplateError as exc:
            raise LabError(f"the scenario's {value!r} cannot be rendered: {exc}") from None
    if isinstance(value, list):
        return [render_value(jinja, v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render_value(jinja, v, variables) for k, v in value.items()}
    return value


def _plain(jinja: jinja2.Environment, text: str) -> bool:
    """Whether `text` renders as itself: no tag can start in it, and nothing jinja rewrites (line ends)."""
    return ("{" not in text and "\r" not in text
            and (jinja.keep_trailing_newline or not text.endswith("\n"))
            and all(start.startswith("{") for start in
                    (jinja.block_start_string, jinja.variable_start_string, jinja.comment_start_string))
            and jinja.line_statement_prefix is None and jinja.line_comment_prefix is None)


@functools.lru_cache(maxsize=64)
def scenario_environment(templates: Path) -> jinja2.Environment:
    """The one environment of the scenarios whose templates are in `templates`, shared by every lab's
    context: a class's check (and each dashboard refresh) compiles a scenario's strings once, not once
    per lab (10 to 20 ms of CPU each). Nothing changes it once made.

    Sandboxed: the scenario's templates are trusted, but what they render may not be (defence in depth).
    """
    jinja = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    jinja.filters["regex_escape"] = re.escape
    return jinja


@functools.lru_cache(maxsize=4096)
def _compiled(jinja: jinja2.Environment, text: str) -> jinja2.Template:
    """A scenario string compiled once per environment: a check renders its strings again every round.

    NOTE: compiling took most of a check's own time (a step's items, rendered once per
    speculative round of lab.engine.batching and once more for real)."""
    return jinja.from_string(text)


def render_template(jinja: jinja2.Environment, name: str, variables: dict[str, Any]) -> str:
    """A config template by name; a missing or broken one is the scenario's fault (exit 2)."""
    try:
        return jinja.get_template(name).render(variables)
    except jinja2.TemplateNotFound:
        folders = ", ".join(getattr(jinja.loader, "searchpath", []))
        raise LabError(f"the scenario names template {name!r}, which is not in {folders}") from None
    except jinja2.TemplateError as exc:
        raise LabError(f"template {name!r}: {exc}") from None


# A password has 8 or more characters (lab.model.labcheck.password_problem): a shorter value (a user with
# no password yet, whose secret renders "None" or "") is no password to look for.
_SHORTEST_SECRET = 8


def carries_secret(command: str, secrets: Sequence[str]) -> bool:
    """Whether a command line holds one of `secrets`: a password reaches a command on stdin only."""
    return any(len(secret) >= _SHORTEST_SECRET and secret in command for secret in secrets)


class _Placeholders(dict):
    """Captured values, and a placeholder for any other name."""

    def __missing__(self, name: str) -> str:
        return f"reglab-not-captured-{name}"


class Context:
    """Everything a step's actions and checks may use, for one run."""

    def __init__(self, lab: Lab, connect, images: LabImages, redactor: Redactor) -> None:  # noqa: ANN001
        self.lab = lab
        self._connect = connect
        self.images = images
        self.redactor = redactor
        # The edition templates render for: the lab's, but modern while a bridge applies a modern solution.
        self.edition = lab.edition
        self.captured: dict[str, str] = {}
        self._machines: dict[str, Machine] = {}
        self._wrap: Callable[[Machine], Any] | None = None
        self._families: dict[str, Family] = {}
        self.identities: dict[str, str] = {}
        self._lock = threading.Lock()
        self.jinja = scenario_environment(Path(lab.manifest.templates))

    def machine(self, name: str) -> Machine:
        with self._lock:
            if name not in self._machines:
                self._machines[name] = self._connect(name)
            machine = self._machines[name]
        return machine if self._wrap is None else self._wrap(machine)

    @contextlib.contextmanager
    def machines_as(self, wrap: Callable[[Machine], Any]) -> Iterator[None]:
        """`machine(name)` hands out `wrap(machine)` meanwhile (lab.engine.batching's stand-ins)."""
        kept, self._wrap = self._wrap, wrap
        try:
            yield
        finally:
            self._wrap = kept

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """What running checks changes here (captured values, machines identified), put back afterwards."""
        saved = [(mapping, dict(mapping)) for mapping in (self.captured, self.identities, self._families)]
        try:
            yield
        finally:
            for mapping, content in saved:
                mapping.clear()
                mapping.update(content)

    @contextlib.contextmanager
    def captured_or_placeholders(self) -> Iterator[None]:
        """Meanwhile a value not captured renders as a placeholder (a speculative round's guess,
        lab.engine.steps), not as the failure a real run's rendering is."""
        kept = self.captured
        self.captured = _Placeholders(kept)
        try:
            yield
        finally:
            self.captured = kept

    def close(self) -> None:
        """Close every machine's connection (a command after it opens it again)."""
        with self._lock:
            machines = list(self._machines.values())
        for machine in machines:
            with contextlib.suppress(Exception):  # closing: nothing to do about a connection already gone
                machine.close()

    def family(self, name: str) -> Family:
        if name not in self._families:
            self.identify(name)
        return self._families[name]

    def identify(self, name: str) -> str:
        """The machine's OS family and identity, read in one command (a check's first contact)."""
        if name not in self.identities:
            text = self.machine(name).sudo(_IDENTIFY).stdout
            release, _, identity = text.rpartition("reglab-identity=")
            self._families[name] = family_for(name, release)
            self.identities[name] = identity.strip()
        return self.identities[name]

    def lab_user(self) -> User:
        return self.lab.users[0]

    def stdin(self, text: str) -> io.StringIO:
        """Secrets reach commands on stdin only, never on a command line."""
        if not text.endswith("\n"):
            text += "\n"
        return io.StringIO(text)

    def variables(self, machine: str) -> dict[str, Any]:
        variables = template_variables(self.lab, self.images, self.family(machine), self.lab_user(), self.captured)
        return variables | {"edition": self.edition}

    @contextlib.contextmanager
    def rendering_as(self, edition: str) -> Iterator[None]:
        """Render templates (the nginx and Compose files) as `edition` does, for a bridge."""
        kept, self.edition = self.edition, edition
        try:
            yield
        finally:
            self.edition = kept

    def render(self, value: Any, machine: str) -> Any:
        """A scenario item with every string rendered for this machine."""
        return render_value(self.jinja, value, self.variables(machine))

    def read_file(self, spec: str, default_machine: str, missing_ok: bool = False) -> str | None:
        """`machine:path` or `path` (on the default machine), read as root.

        With `missing_ok`, a file that cannot be read is None (a check grades it);
        a machine that does not answer still raises.
        """
        name, _, path = spec.partition(":") if ":" in spec and not spec.startswith("/") else ("", "", spec)
        machine = self.machine(name or default_machine)
        result = machine.sudo(f"cat {shlex.quote(path)}", warn=missing_ok)
        return result.stdout if result.ok else None

    def upload(self, machine: Machine, data: bytes, dest: str, mode: str = "0644") -> None:
        """A small file as root, with its mode from the first byte (never a 0644 key in /tmp)."""
        machine.upload(data, dest, mode)
