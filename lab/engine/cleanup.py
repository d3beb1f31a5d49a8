"""What a student's work and reglab leave on the machines, and taking it away again.

`reset` brings the machines back to the state after provisioning (faster
than down and up). On machines reglab made, everything a student's work can
leave goes. Machines given over SSH may hold work that is not the lab's, so
there only what the lab makes goes: containers of the lab's images, the
scenario's folder (its `workdir`), and what the scenario's `reset:` names
(its Compose project, the tags its steps make, its /etc/hosts line, its CA,
its login: lab/model/manifest.py). With `remove` (what `reglab down` does on
given machines) it takes away, besides, what provisioning put there.

The session (lab.engine.session) decides when; this module only says what.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import TYPE_CHECKING

from lab.common.parallel import on_each
from lab.engine.context import IDENTITY_FILE
from lab.machines.provision import RESTART_DROPIN

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lab.engine.context import Context
    from lab.machines.remote import Machine

# Machines reglab made: where a student's work lives, all of it.
MADE_COMMANDS = (
    "docker ps -aq | xargs -r docker rm -f -v >/dev/null",
    "docker network prune -f >/dev/null",
    # Untag by name (an ID may carry a kept tag too), then drop what is left untagged.
    "docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep -v '<none>' | grep -vxF -e {keep} "
    "| xargs -r docker rmi >/dev/null",
    "docker image prune -f >/dev/null",
    "docker volume prune -f >/dev/null",
    "rm -rf {workdir} /root/.docker",
)

# Machines given over SSH: containers of the lab's images (and of images built on them), then
# what the scenario's steps make (its `reset.given`).
GIVEN_COMMANDS = (
    "{{ for image in {images}; do docker ps -aq --filter ancestor=$image; done; }} 2>/dev/null "
    "| sort -u | xargs -r docker rm -f -v >/dev/null",
)
GIVEN_AFTER = ("rm -rf {workdir}",)

# Last on every machine, after the scenario's `reset.all` (which may change the trusted CAs).
RESTART = ("systemctl restart docker",)

# What provisioning put on a given machine besides the tutorial's work. Packages stay:
# another user of the machine may need them, and they were installed from its own sources.
REMOVE_COMMANDS = (
    "docker rmi {images} >/dev/null 2>&1; true",
    f"rm -f {RESTART_DROPIN}; rmdir --ignore-fail-on-non-empty {posixpath.dirname(RESTART_DROPIN)} 2>/dev/null; "
    "systemctl daemon-reload",
    f"rm -rf {posixpath.dirname(IDENTITY_FILE)}",
)


def commands(ctx: Context, name: str, makes_machines: bool, remove: bool = False) -> list[str]:
    """The commands that reset (or, with `remove`, take the lab off) one machine."""
    family = ctx.family(name)
    images = ctx.images.all()
    declared = ctx.lab.manifest
    values = {
        "keep": " -e ".join(shlex.quote(i) for i in images),
        "images": " ".join(shlex.quote(i) for i in images),
        "domain": ctx.lab.domain.replace(".", r"\."),
        "domain_name": shlex.quote(ctx.lab.domain),
        "anchor_dir": family.ca_anchor_dir,
        "ca_update": family.ca_update,
        "workdir": shlex.quote(declared.workdir),
        "project": shlex.quote(posixpath.basename(declared.workdir)),  # Compose names it after its folder
    }
    reset = declared.reset
    if makes_machines:
        chosen = [*MADE_COMMANDS, *reset["made"], *reset["all"], *RESTART]
    else:
        chosen = [*GIVEN_COMMANDS, *reset["given"], *GIVEN_AFTER, *reset["all"], *RESTART]
    if remove:
        chosen += REMOVE_COMMANDS
    return [command.format(**values) for command in chosen]


def clean(ctx: Context, names: Sequence[str], makes_machines: bool, remove: bool = False) -> None:
    """Every machine at once: back to the state after provisioning, or, with `remove`, the lab taken off."""

    def one(machine: Machine) -> None:
        for command in commands(ctx, machine.name, makes_machines, remove):
            machine.sudo(command)

    on_each([ctx.machine(name) for name in names], one)


def removed(ctx: Context, names: Sequence[str]) -> list[str]:
    """What `clean(..., remove=True)` took off given machines, in words."""
    return [f"from {', '.join(names)}: the lab's containers, images, {ctx.lab.manifest.workdir}, "
            f"its /etc/hosts line, trusted CA and login, and reglab's Docker drop-in and identity "
            f"(packages provisioning installed stay)"]
