"""`reglab init`: a commented lab.yml to start from, and with `--class`, a class's base lab file and a roster.

The files are data written as they are here, never filled in with what the
user typed: each one loads as it stands and gives the built-in defaults (the
tests load each with its own loader), and its comments are the reference of
its keys and their allowed values.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.common.errors import LabError
from lab.common.files import atomic_write

LAB_FILE = "lab.yml"
CLASS_BASE_FILE = "class-lab.yml"
ROSTER_SUFFIXES = (".csv", ".yml", ".yaml")

LAB_YML = """\
# A reglab lab: two machines (registry, client) and the private Docker registry
# tutorial's steps. As written here it runs with reglab's defaults; every key is
# optional, and a key left out takes the value shown. Layers apply in one order:
# these values, then the environment (REGLAB_*), then the command line.
# `reglab run` boots, provisions, solves and checks every step; `reglab steps`
# lists them. README.md, section "lab.yml", is the reference.

# Names the lab's containers and its state folder (.lab/NAME beside this file):
# a lower-case letter, then at most 30 lower-case letters, digits or '-'.
name: reglab

# Who boots the machines:
#   docker      containers of reglab's machine image, on this host's Docker
#   virtualbox  VMs through Vagrant and VirtualBox
#   libvirt     VMs through Vagrant and libvirt (KVM)
#   incus       unprivileged Incus system containers (root in a machine is not root here)
#   auto        VirtualBox or libvirt where this host can run them, else docker
#   ssh         machines made elsewhere, reached over SSH (see `machines` below)
# (environment: REGLAB_PROVIDER; command line: --provider)
provider: docker

# modern: the flow that works today | as-written: the 2016 tutorial's own commands
# (environment: REGLAB_EDITION; command line: --edition)
edition: modern

# The box family the VM providers boot: debian | rhel (the tutorial's yum world).
os: debian

# The Debian release the machines run and the lab's images are built from:
# debian12 (bookworm: Docker 20.10, Compose v1, nginx 1.22) | debian13 (trixie:
# Docker 26.1, Compose v2, nginx 1.26). (environment: REGLAB_PLATFORM)
platform: debian13

# The scenario to run: its steps file, or a folder holding scenario.yaml, relative
# to this file. Left out: the tutorial shipped with reglab. The scenario declares
# the machines, ports and images below; another one may name others.
# scenario: my-scenario/scenario.yaml

# The registry's DNS name (the scenario's default).
# domain: myregistrydomain.com

# The machines, by the scenario's names. Private IPv4 addresses on one /24, not
# its .0, .1 (the host's gateway) or .255, not link-local (169.254.0.0/16) nor
# Docker's bridge (172.17.0.0/16). Change them if this /24 is taken on the host.
# With `provider: ssh`, each machine is one you made, and says where reglab logs in:
#   registry: {ip: 10.20.0.5, user: teacher, identity_file: keys/lab}
#   (ip: where the other machine reaches it; host: where reglab does, default ip;
#   port: default 22; user: an account with passwordless sudo; identity_file: an
#   unencrypted private key, mode 0600, relative to this file; left out: the keys
#   of ssh-agent and ~/.ssh)
machines:
  registry:
    ip: 192.168.33.10
  client:
    ip: 192.168.33.11

# The ports, by the scenario's names: each a port of its own, none of them 22.
# ports:
#   registry: 5000   # the plain registry, on 127.0.0.1 only once behind nginx
#   proxy: 5043      # nginx before it moves to 443
#   https: 443       # fixed: the tutorial's steps use 443

# The registry's users. A password left out is generated once into
# .lab/NAME/secrets.yml (mode 0600). A given one: 8 or more characters, at most
# 255 bytes, no ':' nor control characters, in quotes when YAML would read it
# as a number or a date.
users:
  - name: student
    # password: "choose-a-long-one"

images:
  # Where the machines' images come from:
  #   auto     preload where Docker Hub answers this host, else build
  #   pull     each machine pulls from Docker Hub
  #   preload  pulled once on this host, loaded into every machine
  #   build    built on this host from Debian packages (no Docker Hub at all)
  # (environment: REGLAB_IMAGES; command line: --images)
  source: auto
  # The images, by the scenario's names (used by pull and preload):
  # registry: registry:2
  # proxy: nginx:1.27
  # base: debian:bookworm

# The boxes VirtualBox and libvirt boot: `build` (Debian only: made here from
# Debian packages by `reglab box build`), {name, version} from the HCP Vagrant
# catalogue (which shuts down on 2026-12-31), or {name, url} of a box file.
# boxes:
#   debian: build
#   rhel: {name: generic/rocky9, version: "4.3.12"}

# Seconds, whole and above 0.
timeouts:
  command: 300   # any one remote command, upload or connection
  boot: 300      # `vagrant up`, and SSH to answer

# The Debian mirror (or apt proxy) images and boxes are built from, an http:// or
# https:// URL. Left out: this host's own apt sources. (environment: REGLAB_MIRROR)
# mirror: http://apt-proxy.example:3142/debian

# warm: once a machine has been provisioned, what it became is saved and later
# machines boot from it while its key (base image, provisioning plan, package
# index) still matches | fresh: always provision from nothing.
# (environment: REGLAB_START; command line: --fresh)
start: warm

# provider: incus only: the Incus remote (a school's cluster) the machines run on,
# by its name in `incus remote list`. Left out: this host's own Incus.
# incus:
#   remote: school
"""

CLASS_LAB_YML = """\
# A class's base lab file: `reglab --lab class-lab.yml class up ROSTER` makes a lab
# per student of ROSTER from it. Each student's lab is this file with their own
# name (CLASS-ID), machines (a /24 of their own from --pool, registry at .10 and
# client at .11), domain (ID.DOMAIN) and registry user (ID, with a password
# generated for that lab alone), so a neighbour's answers fail one's checks.
# Everything else here is every student's. README.md, section "A class".

# This file's own lab, were it run alone (`reglab --lab class-lab.yml up`); the
# students' labs are named CLASS-ID. Not `reglab`, so it never shares the state
# folder of a lab.yml beside it.
name: class-base

# incus | docker | virtualbox | libvirt | auto (VirtualBox or libvirt where usable, else
# docker). A class on docker makes every student root on this host: `class up` refuses it
# unless told --students-are-root-on-this-host; incus does not. Not ssh: a class boots
# its labs; a student whose machines are given over SSH says so in the roster (its
# `machines:`). (environment: REGLAB_PROVIDER)
provider: docker

# modern | as-written (environment: REGLAB_EDITION)
edition: modern

# debian | rhel: the box family the VM providers boot.
os: debian

# The domain each student's is made from: ID.DOMAIN (the scenario's default).
# domain: myregistrydomain.com

# No machines and no users here: each student's lab gets its own.

images:
  # auto | pull | preload | build: as in lab.yml (environment: REGLAB_IMAGES)
  source: auto

# Seconds, whole and above 0.
timeouts:
  command: 300
  boot: 300

# warm | fresh: labs boot from a saved provisioned machine, or provision from nothing.
start: warm
"""

ROSTER_CSV = """\
id,name,email
ada,Ada Lovelace,ada@example.org
bob,Bob Example,bob@example.org
"""

ROSTER_YAML = """\
# The class's students, one entry each: `reglab --lab class-lab.yml class up ROSTER`.
# id: 1 to 16 lower-case letters, digits or '-', starting and ending with a letter
# or digit; it names the student's lab and registry user, and begins their domain.
# name and any other keys (email...) are kept for the gradebook.
- id: ada
  name: Ada Lovelace
  email: ada@example.org
- id: bob
  name: Bob Example
  email: bob@example.org
# A student whose machines the school gives, reached over SSH instead of booted
# here (identity files relative to this file, unencrypted, mode 0600):
# - id: cy
#   machines:
#     registry: {ip: 10.20.0.5, user: teacher, identity_file: keys/cy}
#     client: {ip: 10.20.0.6, user: teacher, identity_file: keys/cy}
"""


def files_for(roster: str | None) -> dict[str, str]:
    """The files `reglab init` writes, by name: lab.yml, and with a roster name its class's two."""
    files = {LAB_FILE: LAB_YML}
    if roster is None:
        return files
    suffix = Path(roster).suffix.lower()
    if os.sep in roster or (os.altsep and os.altsep in roster) or roster.startswith("."):
        raise LabError(f"--class: expected a roster file name like net101.csv, written beside lab.yml, got {roster!r}")
    if suffix not in ROSTER_SUFFIXES:
        raise LabError(f"--class: expected a roster file name ending in .csv, .yml or .yaml, got {roster!r}")
    if roster in files or roster == CLASS_BASE_FILE:
        raise LabError(f"--class: {roster!r} is the name of a lab file init writes; name the roster otherwise")
    files[CLASS_BASE_FILE] = CLASS_LAB_YML
    files[roster] = ROSTER_CSV if suffix == ".csv" else ROSTER_YAML
    return files


def write(folder: Path, roster: str | None = None, force: bool = False) -> list[Path]:
    """Write the starting files into `folder` (made if missing); an existing one only with `force`."""
    files = files_for(roster)
    if folder.exists() and not folder.is_dir():
        raise LabError(f"{folder}: not a folder; init writes lab.yml into a folder")
    paths = {name: folder / name for name in files}
    there = [name for name, path in paths.items() if os.path.lexists(path)]
    if there and not force:
        raise LabError(f"{', '.join(str(paths[n]) for n in there)} already {'exists' if len(there) == 1 else 'exist'}"
                       f": nothing written; --force overwrites {'it' if len(there) == 1 else 'them'}")
    for name, text in files.items():
        atomic_write(paths[name], text)
    return list(paths.values())
