"""One lab per student: the lab file of each student's lab, made from the class's base lab file.

Students type the tutorial's steps by hand next to each other, so each lab
differs from its neighbours in every value the steps write down, and a
neighbour's answers, copied, fail the checks of one's own lab:

- the subnet: each lab has a /24 of its own, registry at .10 and client at .11,
  so the `/etc/hosts` line (`IP DOMAIN`) names this student's registry IP;
- the domain: `STUDENT.BASE-DOMAIN` (s07.myregistrydomain.com), so the
  certificate's name, the `/etc/hosts` line, `docker login DOMAIN` and the
  image tags `DOMAIN/...` are this student's; a neighbour's certificate fails
  TLS verification against this lab's domain, their image tags point at
  their registry;
- the registry user: the student's id, with a password reglab generates once
  per lab into that lab's own secrets (none is written here), so a
  neighbour's htpasswd file or `docker login` fails here.

What stays the same is what the tutorial's own text fixes and no student
writes differently: the ports (443 is in the steps' URLs), the images, the
provider, the timeouts, the edition.

NOTE: the values stay readable and predictable (s07.myregistrydomain.com, not
a random token): a student must type them, and an instructor must read them
on a screen. Copying is made useless, not impossible: a student who replaces
a neighbour's values with their own has understood which values are theirs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Any

from lab.classroom.roster import STUDENT_ID, Student
from lab.common.errors import ConfigError
from lab.model.labfile import DEFAULTS

CLASS_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")  # the lab file's `name` rule (lab.config)
REGISTRY_HOST = 10  # the machines' host numbers on each lab's /24, as in the single lab (192.168.33.10, .11)
CLIENT_HOST = 11
_DOMAIN_MAX = 253


def check_class_name(name: str) -> str:
    """A class name that can prefix its labs' names: 1 to 12 lower-case letters or digits, a letter first."""
    if not isinstance(name, str) or not CLASS_NAME.fullmatch(name):
        raise ConfigError("class name", "", f"expected 1 to 12 lower-case letters or digits, starting with a "
                          f"letter (it begins every lab's name, e.g. 'net101'), got {name!r}")
    return name


def lab_name(class_name: str, student: Student) -> str:
    """The name of a student's lab: CLASS-STUDENT, within the lab file's name rule."""
    check_class_name(class_name)
    if not STUDENT_ID.fullmatch(student.id):
        raise ConfigError(f"student {student.id!r}", "id", "not a usable student id: expected 1 to 16 lower-case "
                          "letters, digits or '-', starting and ending with a letter or digit")
    name = f"{class_name}-{student.id}"
    if not LAB_NAME.fullmatch(name):
        raise ConfigError(f"student {student.id!r}", "id", f"the lab name {name!r} would not fit the lab name rule "
                          "(a lower-case letter, then at most 30 lower-case letters, digits or '-')")
    return name


def student_lab(
    base: Mapping[str, Any], class_name: str, student: Student, subnet: IPv4Network | None, *,
    source: str = "lab.yml",
) -> dict[str, Any]:
    """The lab-file mapping of `student`'s lab: the base's, with this student's name, network, domain and user.

    `base` is the class's lab file as read (a plain mapping; it is not changed);
    `source` names it in errors. Every key the base has and this does not set
    is kept as it is (provider, images, timeouts...).
    """
    name = lab_name(class_name, student)
    if student.machines is None and (subnet is None or subnet.prefixlen != 24):
        raise ValueError(f"each lab reglab boots takes a /24, got {subnet}")
    provider = base.get("provider", DEFAULTS["provider"])
    if provider == "ssh" and student.machines is None:
        raise ConfigError(source, "provider", "a class boots a lab per student, but `provider: ssh` names machines "
                          "reglab does not boot; choose docker, virtualbox, libvirt or auto")
    base_domain = base.get("domain")
    if base_domain is None:  # the scenario's own registry name
        from pathlib import Path

        from lab.model import labfile

        manifest = labfile.scenario_manifest(base, Path(source).parent, {}, source)
        base_domain = labfile.defaults_for(manifest)["domain"]
    if not isinstance(base_domain, str) or not base_domain:
        raise ConfigError(source, "domain", f"expected a DNS name like myregistrydomain.com, got {base_domain!r}")
    domain = f"{student.id}.{base_domain}"
    if len(domain) > _DOMAIN_MAX:
        raise ConfigError(source, "domain", f"too long to prefix with a student id: {student.id}.{base_domain} "
                          f"would have {len(domain)} characters, a DNS name at most {_DOMAIN_MAX}")
    lab = copy.deepcopy(dict(base))
    if student.machines is not None:  # given over SSH by the school's own infrastructure
        machines = {role: dict(spec) for role, spec in student.machines.items()}
        lab["provider"] = "ssh"
    else:
        machines = {
            "registry": {"ip": str(subnet.network_address + REGISTRY_HOST)},
            "client": {"ip": str(subnet.network_address + CLIENT_HOST)},
        }
    lab.update(
        name=name,
        domain=domain,
        machines=machines,
        users=[{"name": student.id}],  # no password: generated into this lab's own secrets
    )
    return lab
