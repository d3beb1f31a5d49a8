"""What `reset` and `down` take from machines given over SSH, run against a fake Docker.

The shell commands lab.engine.cleanup makes (and the scenario's `reset.given`) run here in bash
with `docker` a small stand-in on PATH that keeps containers, images and networks in a JSON file:
what is removed is what real Docker would be asked to remove. A school's own containers
(`registry` from a public `registry:2`, one with no restart policy) must stay; the lab's go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.engine import cleanup
from lab.engine.cleanup import DOCKER_INPUTS, GIVEN_COMMANDS
from lab.model import manifest
from lab.model.lab import default_scenario

FAKE_DOCKER = r'''
import json, re, sys
state_path = sys.argv[1]
args = sys.argv[2:]
state = json.load(open(state_path))
state.setdefault("calls", []).append(args)

def labels_of(container):
    labels = dict(state["images"].get(container["image"], {}).get("labels", {}))
    labels.update(container.get("labels", {}))
    return labels

def image_id(ref):
    return state["images"].get(ref, {}).get("id")

def render(template, labels, extra=None):
    out = re.sub(r'\{\{index \.(?:Config\.)?Labels "([^"]+)"\}\}', lambda m: labels.get(m.group(1), ""), template)
    for key, value in (extra or {}).items():
        out = out.replace(key, value)
    return out

def option(name):
    values, rest, i = [], [], 0
    while i < len(args):
        if args[i] == name:
            values.append(args[i + 1]); i += 2
        else:
            rest.append(args[i]); i += 1
    return values, rest

out = ""
code = 0
if args[:2] == ["ps", "-aq"]:
    filters, _ = option("--filter")
    for c in state["containers"]:
        ok = True
        names = [f[5:] for f in filters if f.startswith("name=")]
        if names and not any(re.search(n, "/" + c["name"]) for n in names):
            ok = False
        for f in filters:
            if f.startswith("label="):
                key, _, value = f[6:].partition("=")
                labels = labels_of(c)
                ok = ok and key in labels and (not _ or labels[key] == value)
            if f.startswith("ancestor="):
                ok = ok and image_id(f[9:]) is not None and state["images"][c["image"]]["id"] == image_id(f[9:])
        if ok:
            out += c["id"] + "\n"
elif args[0] == "inspect":
    c = next(c for c in state["containers"] if c["id"] == args[-1])
    out = "".join(n + " " for n in c.get("networks", []))
elif args[:2] == ["image", "inspect"]:
    ref = args[-1]
    if ref not in state["images"]:
        code = 1
    else:
        out = render(args[args.index("-f") + 1], state["images"][ref].get("labels", {}),
                     {"{{.Id}}": state["images"][ref]["id"]}) + "\n"
elif args[:2] == ["network", "inspect"]:
    out = render(args[args.index("-f") + 1], state["networks"].get(args[-1], {})) + "\n"
elif args[:2] == ["network", "rm"]:
    state["networks"].pop(args[2], None)
elif args[:2] == ["image", "ls"]:
    out = "".join(ref + "\n" for ref in state["images"])
elif args[0] == "rm":
    ids = [a for a in args[1:] if not a.startswith("-")]
    state["containers"] = [c for c in state["containers"] if c["id"] not in ids]
elif args[0] == "rmi":
    for ref in args[1:]:
        state["images"].pop(ref, None)
json.dump(state, open(state_path, "w"))
sys.stdout.write(out)
sys.exit(code)
'''

LAB_IMAGES = ["reglab/docker-registry:2.8.2-debian12", "reglab/nginx:1.22.1-debian12", "reglab/busybox:1.35.0-debian12"]
RECIPE = {"org.reglab.recipe": "0123456789abcdef"}


def school_machine() -> dict:
    """A given machine after a lab's run, and the school's own work beside it."""
    images = {ref: {"id": f"sha256:lab{i}", "labels": RECIPE} for i, ref in enumerate(LAB_IMAGES)}
    images.update({
        "registry:2": {"id": "sha256:school-registry", "labels": {}},  # the school's, from Docker Hub
        "nginx:1.27": {"id": "sha256:school-nginx", "labels": {}},
        "test-image:latest": {"id": "sha256:school-test", "labels": {}},  # the school's own image of that name
        "test-image:lab": {"id": "sha256:committed", "labels": {**RECIPE, "org.reglab.lab": "givenlab"}},
        "myregistrydomain.com/test-image:latest": {"id": "sha256:committed", "labels": {}},
    })
    compose = {"com.docker.compose.project": "docker-registry",
               "com.docker.compose.project.working_dir": "/root/docker-registry"}
    school_compose = {"com.docker.compose.project": "docker-registry",
                      "com.docker.compose.project.working_dir": "/srv/docker-registry"}
    containers = [
        {"id": "lab-solved", "name": "registry", "image": LAB_IMAGES[0], "labels": {"org.reglab.lab": "givenlab"}},
        {"id": "lab-typed", "name": "initcron-src", "image": LAB_IMAGES[2]},  # a student's, by hand
        {"id": "lab-compose", "name": "docker-registry_nginx_1", "image": LAB_IMAGES[1], "labels": compose,
         "networks": ["docker-registry_default"]},
        {"id": "school-registry", "name": "registry", "image": "registry:2"},
        {"id": "school-norestart", "name": "web", "image": "nginx:1.27"},
        {"id": "school-compose", "name": "docker-registry_registry_1", "image": "registry:2",
         "labels": school_compose, "networks": ["srv_default"]},
        {"id": "other-lab", "name": "registry2", "image": "registry:2", "labels": {"org.reglab.lab": "otherlab"}},
    ]
    networks = {"docker-registry_default": {"com.docker.compose.project": "docker-registry"},
                "srv_default": {"com.docker.compose.project": "docker-registry"}}
    return {"containers": containers, "images": images, "networks": networks}


def context() -> SimpleNamespace:
    family = SimpleNamespace(ca_anchor_dir="/usr/local/share/ca-certificates", ca_update="update-ca-certificates")
    return SimpleNamespace(family=lambda name: family, images=SimpleNamespace(all=lambda: list(LAB_IMAGES)),
                           lab=SimpleNamespace(domain="myregistrydomain.com", name="givenlab",
                                               manifest=manifest.load(default_scenario())))


@pytest.fixture
def fake_docker(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "fake_docker.py").write_text(FAKE_DOCKER)
    state = tmp_path / "state.json"
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'fake_docker.py'} {state} \"$@\"\n")
    docker.chmod(0o755)
    state.write_text(json.dumps(school_machine()))

    def run(commands: list[str]) -> dict:
        for command in commands:
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
            assert done.returncode == 0, (command, done.stderr)
        return json.loads(state.read_text())

    return run


def docker_part() -> list[str]:
    """The reset commands that only talk to Docker (the rest touch /etc and the workdir)."""
    commands = cleanup.commands(context(), "registry", makes_machines=False)
    given = len(GIVEN_COMMANDS) + len(context().lab.manifest.reset["given"])
    return commands[:given]


def test_reset_on_a_given_machine_removes_the_labs_containers_and_none_of_the_schools(fake_docker) -> None:
    after = fake_docker(docker_part())
    left = sorted(c["id"] for c in after["containers"])
    assert left == ["other-lab", "school-compose", "school-norestart", "school-registry"], left
    assert "srv_default" in after["networks"]  # the school's project of the same name keeps its network
    assert "docker-registry_default" not in after["networks"]


def test_reset_on_a_given_machine_untags_only_the_tags_the_labs_steps_made(fake_docker) -> None:
    after = fake_docker(docker_part())
    assert "test-image:latest" in after["images"]  # the school's own image of that name
    assert "test-image:lab" not in after["images"]  # committed from the lab's container
    assert "myregistrydomain.com/test-image:latest" not in after["images"]  # pushed to the lab's registry
    assert {"registry:2", "nginx:1.27", *LAB_IMAGES} <= set(after["images"])  # reset never untags images


def test_a_reset_never_restarts_dockerd_by_itself_on_a_given_machine() -> None:
    """The school's containers without a restart policy would stay down; clean() restarts only when
    Docker's own configuration changed."""
    assert not any("restart docker" in c for c in cleanup.commands(context(), "registry", makes_machines=False))
    assert any("restart docker" in c for c in cleanup.commands(context(), "registry", makes_machines=True))


class Recorder:
    def __init__(self, name: str, inputs: list[str]) -> None:
        self.name, self.inputs, self.commands = name, inputs, []

    def sudo(self, command: str, **_kwargs: object) -> SimpleNamespace:
        self.commands.append(command)
        return SimpleNamespace(ok=True, stdout=self.inputs.pop(0) if command == DOCKER_INPUTS else "")


@pytest.mark.parametrize(("inputs", "restarts"), [(["a", "a"], False), (["a", "b"], True)],
                         ids=["unchanged", "config-changed"])
def test_clean_restarts_a_given_machines_dockerd_only_when_what_it_reads_changed(inputs, restarts) -> None:
    machine = Recorder("registry", list(inputs))
    ctx = context()
    ctx.machine = lambda name: machine
    cleanup.clean(ctx, ["registry"], makes_machines=False)
    assert ("systemctl restart docker" in machine.commands) is restarts
    assert machine.commands[0] == DOCKER_INPUTS and machine.commands[-1 - restarts] == DOCKER_INPUTS


def test_no_reset_command_writes_a_predictable_file_in_tmp() -> None:
    for made in (True, False):
        for command in cleanup.commands(context(), "registry", makes_machines=made, remove=True):
            assert "/tmp/" not in command, command


def test_down_removes_the_students_account_only_when_reglab_made_it() -> None:
    removed = cleanup.commands(context(), "registry", makes_machines=False, remove=True)
    account = [c for c in removed if "userdel" in c]
    assert len(account) == 1
    assert "getent passwd givenlab | cut -d: -f5 | grep -qxF 'reglab lab givenlab'" in account[0]
    assert "/etc/sudoers.d/reglab-givenlab" in account[0]
