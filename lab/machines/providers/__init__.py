"""Where the lab's machines come from, behind one small interface.

A provider checks that the host can run it, gets the machines up, says how
they are, gives each one's SSH connection, and takes them away again. Above
it (session, engine, checks, teaching, reports) nothing knows which provider
is in use: they ask for a machine by name and get a fabric Connection.

- `vagrant`: machines Vagrant boots (docker, libvirt, VirtualBox); reglab made
  them, so `down` destroys them, and they can boot warm.
- `incus`: unprivileged Incus system containers reglab made, on a bridge of
  the lab's own; `down` removes them, and they boot warm from published images.
- `ssh`: machines made elsewhere (a school's cloud, lab PCs), reached over
  SSH; `down` removes only what reglab put on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.machines.providers.base import Provider, Say
    from lab.model.credentials import Redactor
    from lab.model.lab import Lab


def for_lab(lab: Lab, redactor: Redactor, say: Say = print) -> Provider:
    """The provider the lab file names."""
    if lab.provider == "ssh":
        from lab.machines.providers.ssh import SSHProvider

        return SSHProvider(lab, redactor, say)
    if lab.provider == "incus":
        from lab.machines.providers.incus import IncusProvider

        return IncusProvider(lab, redactor, say)
    from lab.machines.providers.vagrant import VagrantProvider

    return VagrantProvider(lab, redactor, say)
