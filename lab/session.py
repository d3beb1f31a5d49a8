"""One lab in use: what the CLI commands and the pytest plugin both drive.

It ties the parts together in the order the lab needs them: images on the
host, machines booted (in parallel with the image builds they do not need),
provisioning on both machines at once, then the scenario's steps.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from lab import boxes, config, report, scenario
from lab.config import Lab
from lab.credentials import Redactor, resolve_passwords
from lab.engine import Context, Engine
from lab.errors import LabError
from lab.files import private_dir
from lab.images import Builder, LabImages
from lab.machines import Lifecycle
from lab.parallel import on_each
from lab.progress import Progress
from lab.provision import Provisioned, provision
from lab.results import RunResult
from lab.state import LabLock, State


class Session:
    """One lab in use; with `lock`, this process alone changes it until it ends."""

    def __init__(self, lab: Lab, progress: Progress | None = None, scenario_path: Path | None = None,
                 lock: bool = True) -> None:
        self.progress = progress or Progress()
        private_dir(lab.state_dir)
        self.lock = LabLock(lab.state_dir)
        if lock:
            # Before the secrets: two processes must not each generate a password.
            self.lock.acquire(lab.timeouts.command, self.progress.say)
        self.lab = resolve_passwords(lab)
        self.redactor = Redactor.for_users(self.lab.users)
        for key in sorted((self.lab.state_dir / "pki").glob("*.key")):
            # The lab's own keys, so no fragment of them reaches a log (a check may print one).
            with contextlib.suppress(OSError):
                self.redactor.add_private_key(key.read_bytes())
        self.lifecycle = Lifecycle(self.lab, self.redactor)
        self.builder = Builder(self.lab, self.lifecycle.host)
        self.state = State(self.lab.state_dir / "state.json")
        if self.state.warning:
            self.progress.say(self.state.warning)
        self.scenario = scenario.load(scenario_path or scenario.default_path(), self.lab.edition)
        self._ctx: Context | None = None

    @classmethod
    def from_file(cls, path: Path, overrides: dict[str, str | None] | None = None,
                  progress: Progress | None = None, lock: bool = True) -> Session:
        return cls(config.load(path, overrides=overrides), progress, lock=lock)

    def verify_machines(self) -> None:
        """Ask each machine who it is (both at once); forget results of machines made anew."""
        ctx = self.context()
        names = self.lifecycle.names
        identities = on_each([ctx.machine(n) for n in names], lambda machine: ctx.identify(machine.name))
        found = dict(zip(names, identities, strict=True))
        for name, identity in found.items():
            self._identify(name, identity)

    def _identify(self, name: str, identity: str) -> None:
        involved = [s.id for s in self.scenario.steps if name in s.machines()]
        message = self.state.identify(name, identity, involved)
        if message:
            self.progress.say(message)

    # -- machines --------------------------------------------------------------
    def up(self, names: list[str] | None = None) -> None:
        """Boot the machines; build the lab's images meanwhile, since booting does not need them."""
        if self.lab.provider == "docker":
            with self.progress.phase("node image", "machine image (reglab/node)"):
                self.builder.node()
        elif self.lab.boxes[self.lab.os].build:
            with self.progress.phase("box", f"Debian box for {self.lab.provider} (reglab box build)"):
                built = boxes.build_box(self.lab, self.lab.provider, self.progress.say)
                boxes.add_box(built, self.progress.say, [self.lab.provider])
            self.lifecycle.vagrant.env["REGLAB_BOX_VERSION"] = built.version
        errors: list[BaseException] = []

        def build_images() -> None:
            try:
                self.prepare_images()
            except BaseException as exc:  # re-raised in the main thread below
                errors.append(exc)

        self.remove_orphans()
        builder = threading.Thread(target=build_images, name="images")
        builder.start()
        try:
            with self.progress.phase("boot", f"boot {', '.join(names or self.lifecycle.names)} ({self.lab.provider})"):
                self.lifecycle.up(names or [])
        except KeyboardInterrupt:
            self.lifecycle.host.abandon()  # ends the image builds now, so the join below is short
            raise
        finally:
            builder.join()
        if errors:
            raise errors[0]

    def remove_orphans(self) -> None:
        """Containers of this lab that Vagrant no longer knows (its data was lost, or another
        checkout made them) would block `vagrant up` by their names: remove them first."""
        if self.lab.provider != "docker" or any(s.state != "not_created" for s in self.lifecycle.status()):
            return
        removed = self.lifecycle.remove_docker_leftovers()
        if removed:
            self.progress.say(f"removed what an earlier lab of this name left: {', '.join(removed)}")

    def prepare_images(self) -> tuple[LabImages, Path | None]:
        source = self.builder.source()
        with self.progress.phase("images", f"lab images ({source})"):
            images = self.builder.lab_images()
            bundle = self.builder.bundle(images) if source in ("build", "preload") else None
        self.state.images = images
        self.state.data["bundle"] = str(bundle) if bundle else None
        self.state.save()
        return images, bundle

    def provision(self) -> list[Provisioned]:
        images = self.state.images
        bundle = self.state.data.get("bundle")
        if images is None or (self.builder.source() != "pull" and not (bundle and Path(bundle).exists())):
            images, bundle_path = self.prepare_images()
            bundle = str(bundle_path) if bundle_path else None
        machines = [self.context().machine(name) for name in self.lifecycle.names]
        self.verify_machines()
        with self.progress.phase("provision", "provision (both machines at once)"):
            # The families were read with the machines' identities just above: not read again.
            ctx = self.context()
            done = provision(machines, images, Path(bundle) if bundle else None, self.progress,
                             lambda machine: ctx.family(machine.name))
        self.state.data["provisioned"] = True
        self.state.save()
        return done

    def down(self) -> list[str]:
        with self.progress.phase("down", "destroy machines"):
            removed = self.lifecycle.down()
        self.state.path.unlink(missing_ok=True)
        return removed

    # -- steps -----------------------------------------------------------------
    def context(self) -> Context:
        if self._ctx is None:
            images = self.state.images or LabImages(
                self.lab.images.registry, self.lab.images.proxy, self.lab.images.base
            )
            self._ctx = Context(self.lab, self.lifecycle.connect, images, self.redactor)
        return self._ctx

    def engine(self) -> Engine:
        return Engine(self.scenario, self.context(), self.state, self.progress)

    def require_running(self) -> None:
        """Both machines up, and the state about these very machines (solve, check, provision, reset)."""
        missing = self.refresh_state()
        if missing:
            raise LabError(f"machine {missing[0]} is not running; start the lab with `reglab up` "
                           f"(and `reglab provision`) first")

    def refresh_state(self) -> list[str]:
        """Forget results of machines that no longer exist or were made anew; return those not running."""
        states = {s.name: s.state for s in self.lifecycle.status()}
        for name in self.lifecycle.names:
            if states.get(name) == "not_created":
                self._identify(name, "")
        missing = [n for n in self.lifecycle.names if states.get(n) != "running"]
        if not missing:
            self.verify_machines()
        return missing

    def step_ids(self, step: str | None) -> list[str]:
        ids = [s.id for s in self.scenario.steps]
        if step is not None and step not in ids:
            raise LabError(f"no step {step!r} in {self.scenario.path.name}; steps: {', '.join(ids)}")
        return ids

    def run(self) -> RunResult:
        """up, provision, solve and check every step: the whole lab."""
        self.up()
        self.provision()
        result = self.engine().run(self.scenario.steps, solve=True, phases=self.progress.phases)
        self.write_report(result)
        return result

    def write_report(self, result: RunResult) -> dict[str, Path]:
        result.phases = dict(self.progress.phases)
        return report.write_reports(result, self.lab.state_dir / "reports", self.redactor)
