"""Teaching mode: a step's instructions in the lab's own words (`reglab show`).

The reset to the state after provisioning is lab.cleanup's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab.common.errors import LabError, RemoteError
from lab.engine.context import carries_secret, render_template, render_value, template_variables
from lab.machines.osfamily import DEBIAN, FAMILIES, Family
from lab.model.scenario import ACTION_KINDS, CHECK_KINDS, kind_of

if TYPE_CHECKING:
    from lab.engine.session import Session

def instructions(session: Session, step_id: str) -> str:
    """The commands to type for a step, per machine, for the edition in use."""
    lab = session.lab
    step = session.scenario.step(step_id)
    ctx = session.context()
    family = _family(session, next(iter(step.solve), lab.machines[0].name))
    variables = template_variables(lab, ctx.images, family, _Shown(lab.users[0].name), _Placeholders())
    jinja = ctx.jinja
    lines = [f"# {step.id}: {step.title}", f"# tutorial section: {step.section} ({lab.edition} edition)", ""]
    for machine, actions in step.solve.items():
        lines.append(f"## on {machine} (reglab ssh {machine}, then sudo -i)")
        for action in actions:
            lines += _describe(action, jinja, variables, family)
        lines.append("")
    lines.append("## then `reglab check " + step.id + "` checks:")
    for machine, items in step.check.items():
        for item in items:
            kind = kind_of(item, CHECK_KINDS)
            what = item.get("why") or f"{kind} {item[kind]}"
            lines.append(f"- on {machine}: {render_value(jinja, str(what), variables)}")
    return "\n".join(lines)


def tutorial_text(session: Session, step_id: str) -> str:
    """The tutorial's own text of a step (the code blocks it cites), with this lab's values in place of the
    text's placeholders. The text is data: only the scenario's values are rendered, never the text, and a
    secret placeholder stays a word the student knows (their password is in their bundle)."""
    from lab.common.yamlfile import read_yaml
    from lab.tutorial import commands
    from lab.tutorial.text import substitute

    step = session.scenario.step(step_id)
    lab = session.lab
    text = commands.load(read_yaml(session.scenario.path, "scenario file"), session.scenario.path)
    if text is None or not step.tutorial:
        return step.why or step.title
    ctx = session.context()
    family = _family(session, next(iter(step.solve), lab.machines[0].name))
    variables = template_variables(lab, ctx.images, family, _Shown(lab.users[0].name), _Placeholders())
    values = {name: ("YOUR-REGISTRY-PASSWORD" if name in text.secrets else template)
              for name, template in text.values.items()}
    # The text writes the scenario's own domain where this lab (a class's) may have another: it is a value too.
    if lab.manifest.domain != lab.domain:
        values.setdefault(lab.manifest.domain, "{{ domain }}")
    by_number = {block.number: block for block in text.blocks}
    parts = []
    for cite in step.tutorial:
        block = by_number.get(cite.block)
        if block is None:
            continue
        shown = substitute(block.text, values).render(lambda template: str(render_value(ctx.jinja, template,
                                                                                         variables)))
        parts.append(f"# {block.section}\n{shown}" + (f"\n# ({cite.why})" if cite.why else ""))
    return "\n\n".join(parts) or step.title


def _describe(action: dict[str, Any], jinja, variables: dict[str, Any], family) -> list[str]:  # noqa: ANN001
    kind = kind_of(action, ACTION_KINDS)

    def render(text: Any) -> str:
        return render_value(jinja, str(text), variables)

    if kind == "run":
        command = render(action["run"])
        if "stdin" in action:
            return [f"{command}    # {_STDIN}"]
        return [command]
    if kind == "from_text":  # the text's commands: never str()'d, so only their values render
        return _from_text(action, lambda command: render_value(jinja, command, variables),
                          [user.password for user in variables["users"] if user.password])
    if kind == "file":
        if "template" in action:
            values = {k: render(v) if isinstance(v, str) else v for k, v in action.get("vars", {}).items()}
            body = render_template(jinja, action["template"], variables | values)
        elif "from_block" in action:  # the text's own block: only its values render
            source = action["from_block"]
            body = render_value(jinja, source.content, variables)
            return [f"# tutorial {source.where()}:", f"cat > {render(action['file'])} <<'EOF'", body.rstrip(), "EOF"]
        else:
            body = render(action.get("content", ""))
        return [f"cat > {render(action['file'])} <<'EOF'", body.rstrip(), "EOF"]
    if kind == "htpasswd":
        path = render(action["htpasswd"])
        return [f"htpasswd {'-c ' if i == 0 else ''}{path} {u.name}" for i, u in enumerate(variables["users"])]
    if kind == "pki":
        return [f"# copy the CA and server certificate that reglab made (in .lab/NAME/pki/) into "
                f"{render(action['pki'])}:",
                "#   devdockerCA.crt devdockerCA.key domain.crt domain.key (keys mode 0600)"]
    if kind == "ca_trust":
        return [family.trust_ca(render(action["ca_trust"]), action.get("name", "devdockerCA.crt"))]
    if kind == "copy":
        machine, _, path = render(action["copy"]).partition(":")
        return [f"# copy {path} from the {machine} machine to {render(action['to'])}"]
    if kind == "wait":
        return [f"# wait until {render(_summary(action['wait']))}"]
    return [f"# check: {render(_summary(action['check']))}"]


_STDIN = "type the password when asked, or pipe it on stdin"


def _from_text(action: dict[str, Any], render, passwords: list[str]) -> list[str]:  # noqa: ANN001
    """Each command as the tutorial writes it (block, line), then as typed here; an interactive
    one says what it is typed as, and why. Passwords stay placeholders: a secret never
    reaches a part's command, and stdin is not shown."""
    lines: list[str] = []
    parts = action["from_text"].parts
    # stdin comes from an equivalent (the part that reads it) or from the action (its last command).
    by_equivalent = any(p.instead is not None and p.instead.stdin is not None for p in parts)
    for i, part in enumerate(parts):
        written = part.written.splitlines()
        lines.append(f"# tutorial {part.where()}: {written[0]}")
        lines += [f"#   {line}" for line in written[1:]]
        if by_equivalent:
            reads_stdin = part.instead is not None and part.instead.stdin is not None
        else:
            reads_stdin = "stdin" in action and i == len(parts) - 1
        if part.instead is not None:
            if part.prompts:
                answers = " / ".join(line for line in part.prompts.splitlines() if line.strip())
                lines.append(f"#   and its prompts (block {part.instead.prompts}): {answers}")
            lines.append(f"# typed here as ({part.instead.why}):")
        command = render(part.command)
        if carries_secret(command, passwords):
            raise LabError(f"the tutorial's {part.where()} would show a password on a command line; refused")
        lines.append(f"{command}    # {_STDIN}" if reads_stdin else command)
    return lines


def _summary(item: dict[str, Any]) -> str:
    kind = kind_of(item, CHECK_KINDS)
    extra = ", ".join(f"{k}={v}" for k, v in item.items() if k != kind)
    return f"{kind} {item[kind]}" + (f" ({extra})" if extra else "")


class _Shown:
    """The user in printed instructions: the name, and a placeholder for the password."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.password = "PASSWORD"


class _Placeholders(dict):
    def __getattr__(self, name: str) -> str:
        return name.upper()


def _family(session: Session, machine: str) -> Family:
    """The OS family the commands are for: known for machines reglab boots, asked of a given one."""
    lab = session.lab
    if session.provider.makes_machines:
        return DEBIAN if lab.provider == "docker" else FAMILIES[lab.os]
    try:
        return session.context().family(machine)
    except RemoteError:  # not reachable now: the lab file's `os`
        return FAMILIES[lab.os]
