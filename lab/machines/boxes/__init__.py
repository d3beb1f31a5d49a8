"""Vagrant boxes made here from Debian packages: `reglab box build`.

No Vagrant Cloud and no cloud image: the root file system comes from the
Debian mirror the host already uses (`lab.machines.hostapt`), through its apt proxy,
and everything else is assembled on the host. One recipe gives two boxes,
for libvirt and for VirtualBox, each carrying `reglab.json` (what was built,
from which package versions, from which mirror, when, and the recipe hash).

- `rootfs`: the root file system from Debian packages, with mmdebstrap;
- `disk`: the raw disk: partition table, ext4, EXTLINUX;
- `boxfile`: a .box per provider from that disk, and the catalogue naming them;
- `build`: `reglab box build`, each layer from the cache while its recipe is unchanged;
- `store`: the boxes in Vagrant and libvirt's pool: added, listed, older ones removed;
- `cache`: where boxes are made and kept.

The parts that only compute text (configuration files, OVF, metadata,
version, cache keys) are pure functions; the parts that run host tools need
root (loop devices, mount) and always give back their loop devices, mounts
and temporary folders.
"""

from lab.machines.boxes.boxfile import PROVIDERS
from lab.machines.boxes.build import BOX_NAME, BoxResult, build_box, check_os, providers_for
from lab.machines.boxes.rootfs import SUITE, VAGRANT_PUB
from lab.machines.boxes.store import add_box

__all__ = ["BOX_NAME", "PROVIDERS", "SUITE", "VAGRANT_PUB", "BoxResult", "add_box", "build_box", "check_os",
           "providers_for"]
