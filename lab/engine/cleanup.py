"""What a student's work and reglab leave on the machines, and taking it away again.

`reset` brings the machines back to the state after provisioning (faster
than down and up). On machines reglab made, everything a student's work can
leave goes. Machines given over SSH are the school's, so there only what
carries the lab's mark goes (GIVEN_COMMANDS says which), the scenario's folder
(its `workdir`), and what the scenario's `reset:` names (the tags its steps
make, its /etc/hosts line, its CA, its login: lab/model/manifest.py). With
`remove` (what `reglab down` does on given machines) it takes away, besides,
what provisioning and the class put there: the tags it loaded, its drop-in and
identity, the student's account.

The session (lab.engine.session) decides when; this module only says what.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import TYPE_CHECKING

from lab.common.parallel import on_each
from lab.engine.context import IDENTITY_FILE
from lab.machines.images import RECIPE_LABEL
from lab.machines.provision import LOADED_RECORD, RESTART_DROPIN

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

# Machines given over SSH: only containers reglab can tell are the lab's, never by a public image
# or a common name: those carrying the lab's label (what reglab's own solve starts), those of a
# Compose project whose folder is the lab's workdir (Compose labels each container with it), and
# those of an image reglab built for the lab from Debian packages (its recipe label, which every
# container and image made from it inherits: what a student typing the tutorial starts). Networks
# go only if a container of the lab's Compose project was on them and they carry its project label.
LAB_LABEL = "org.reglab.lab"
_BUILT_HERE = (f"docker image inspect -f '{{{{{{{{index .Config.Labels \"{RECIPE_LABEL}\"}}}}}}}}' \"$image\" "
               "2>/dev/null | grep -q '^[0-9a-f]'")
GIVEN_COMMANDS = (
    "compose=$(docker ps -aq --filter label=com.docker.compose.project.working_dir={workdir}); "
    "nets=$(for c in $compose; do docker inspect -f "
    "'{{{{range $k, $v := .NetworkSettings.Networks}}}}{{{{$k}}}} {{{{end}}}}' \"$c\"; done | tr ' ' '\\n' | sort -u); "
    "{{ docker ps -aq --filter label=" + LAB_LABEL + "={lab}; echo \"$compose\"; "
    "for image in {images}; do " + _BUILT_HERE + " && docker ps -aq --filter ancestor=\"$image\"; done; }} "
    "| grep . | sort -u | xargs -r docker rm -f -v >/dev/null; "
    "for n in $nets; do docker network inspect -f '{{{{index .Labels \"com.docker.compose.project\"}}}}' \"$n\" "
    "2>/dev/null | grep -qx {project} && docker network rm \"$n\" >/dev/null; done; true",
)
GIVEN_AFTER = ("rm -rf {workdir}",)

# Last on machines reglab made, after the scenario's `reset.all` (which may change the trusted CAs).
# A given machine's dockerd (the school's, with its containers that may have no restart policy)
# restarts only if the lab changed Docker's own configuration (what is under /etc/docker), compared
# before and after. The lab's CA leaving the system's trust store is not a reason: dockerd keeps it
# in memory until its next restart, and that CA signs for nothing but the lab's domain and /24.
RESTART = ("systemctl restart docker",)
DOCKER_INPUTS = "find /etc/docker -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum"

# What provisioning put on a given machine besides the tutorial's work. Packages stay:
# another user of the machine may need them, and they were installed from its own sources. Only the
# tags reglab's loads added are untagged (lab.machines.provision records them), and only the account
# reglab made for this lab's student (its comment says so), with its sudoers file.
REMOVE_COMMANDS = (
    f"test -f {LOADED_RECORD} && sort -u {LOADED_RECORD} | xargs -r docker rmi >/dev/null 2>&1; true",
    f"rm -f {RESTART_DROPIN}; rmdir --ignore-fail-on-non-empty {posixpath.dirname(RESTART_DROPIN)} 2>/dev/null; "
    "systemctl daemon-reload",
    f"rm -rf {posixpath.dirname(IDENTITY_FILE)}",
    "if getent passwd {lab} | cut -d: -f5 | grep -qxF {account_mark}; then pkill -KILL -u {lab}; sleep 1; "
    "rm -f /etc/sudoers.d/reglab-{lab}; userdel -r {lab} 2>/dev/null || userdel {lab}; fi; true",
)


def account_mark(lab: str) -> str:
    """The comment (GECOS) of the account reglab makes for a lab's student on a given machine: what
    tells it from an account of the school's of the same name. Pure."""
    return f"reglab lab {lab}"


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
        "lab": shlex.quote(ctx.lab.name),
        "account_mark": shlex.quote(account_mark(ctx.lab.name)),
    }
    reset = declared.reset
    if makes_machines:
        chosen = [*MADE_COMMANDS, *reset["made"], *reset["all"], *RESTART]
    else:  # the restart, if any, is clean()'s: only when dockerd's inputs changed
        chosen = [*GIVEN_COMMANDS, *reset["given"], *GIVEN_AFTER, *reset["all"]]
    if remove:
        chosen += REMOVE_COMMANDS
    return [command.format(**values) for command in chosen]


def clean(ctx: Context, names: Sequence[str], makes_machines: bool, remove: bool = False) -> None:
    """Every machine at once: back to the state after provisioning, or, with `remove`, the lab taken off."""

    def one(machine: Machine) -> None:
        before = None if makes_machines else machine.sudo(DOCKER_INPUTS).stdout
        for command in commands(ctx, machine.name, makes_machines, remove):
            machine.sudo(command)
        if before is not None and machine.sudo(DOCKER_INPUTS).stdout != before:
            machine.sudo(RESTART[0])  # the lab changed Docker's configuration: dockerd must read it again

    on_each([ctx.machine(name) for name in names], one)


def removed(ctx: Context, names: Sequence[str]) -> list[str]:
    """What `clean(..., remove=True)` took off given machines, in words."""
    return [f"from {', '.join(names)}: the lab's containers, the image tags reglab loaded, "
            f"{ctx.lab.manifest.workdir}, its /etc/hosts line, trusted CA and login, the student's account "
            f"if reglab made one, and reglab's Docker drop-in and identity (packages provisioning installed stay; "
            f"so does everything else)"]
