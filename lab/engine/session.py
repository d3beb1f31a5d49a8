"""One lab in use: what the CLI commands and the pytest plugin both drive.

It ties the parts together in the order the lab needs them: images on the
host, machines booted (in parallel with the image builds they do not need),
provisioning on both machines at once, then the scenario's steps.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path

from lab.common.errors import LabError, RemoteError
from lab.common.files import private_dir
from lab.common.parallel import on_each
from lab.common.progress import Progress
from lab.engine import cleanup
from lab.engine.context import Context
from lab.engine.matrix import matrix_results
from lab.engine.state import LabLock, State
from lab.engine.steps import Engine
from lab.machines import digests
from lab.machines.hostsetup import usable_provider
from lab.machines.images import Builder, LabImages
from lab.machines.osfamily import DEBIAN
from lab.machines.providers import for_lab
from lab.machines.providers.base import Provider
from lab.machines.provision import Provisioned, package_versions, plan, provision
from lab.machines.remote import Machine
from lab.machines.warm import DockerWarm, LibvirtWarm, WarmKey, warm_key
from lab.model import labfile, scenario
from lab.model.credentials import Redactor, resolve_passwords
from lab.model.lab import Lab
from lab.model.results import RunResult
from lab.reports.files import write_reports
from lab.reports.maintainer import check_tutorial_text, write_maintainer_report


def load_lab(path: Path, overrides: Mapping[str, str | None] | None = None) -> Lab:
    """The lab file as reglab's commands read it: `provider: auto` is what this host can run."""
    return labfile.load(path, overrides=overrides, auto_provider=usable_provider)


class Session:
    """One lab in use; with `lock`, this process alone changes it until it ends."""

    def __init__(self, lab: Lab, progress: Progress | None = None, scenario_path: Path | None = None,
                 lock: bool = True) -> None:
        self.progress = progress or Progress()
        private_dir(lab.state_dir.parent)  # .lab: every lab of this folder has its own folder in it
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
        self.provider: Provider = for_lab(self.lab, self.redactor, self.progress.say)
        self.builder = Builder(self.lab, self.provider.host)
        self.state = State(self.lab.state_dir / "state.json")
        if self.state.warning:
            self.progress.say(self.state.warning)
        self.scenario = scenario.load(scenario_path or self.lab.manifest.path, self.lab.edition, self.lab.manifest)
        self._ctx: Context | None = None
        self._provisioned = False  # by this session, since its machines booted
        self._opened: list[Machine] = []  # every machine connection this session made, for `close`
        self._opened_lock = threading.Lock()
        self._abandoned = False  # `abandon`: every connection refuses, those to come too

    @classmethod
    def from_file(cls, path: Path, overrides: dict[str, str | None] | None = None,
                  progress: Progress | None = None, lock: bool = True) -> Session:
        return cls(load_lab(path, overrides), progress, lock=lock)

    def connect(self, name: str) -> Machine:
        """A machine's connection (opened at its first command), closed by `close`."""
        machine = self.provider.connect(name)
        with self._opened_lock:
            if not any(m is machine for m in self._opened):
                self._opened.append(machine)
            abandoned = self._abandoned
        if abandoned:
            machine.abandon()
        return machine

    def abandon(self) -> None:
        """Stop this session's work on the machines now, from another thread: every connection is
        dropped and refuses further commands, those opened later too. A class's check past its
        `--timeout` ends this way rather than run on beside the next check of the lab."""
        with self._opened_lock:
            self._abandoned = True
            opened = list(self._opened)
        for machine in opened:
            with contextlib.suppress(Exception):  # dropping: nothing to do about a connection already gone
                machine.abandon()

    def close(self) -> None:
        """Close every machine connection this session opened: at the end of a command, of a class's
        check of this lab. Used again, the session connects again."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for machine in opened:
            with contextlib.suppress(Exception):  # closing: nothing to do about a connection already gone
                machine.close()

    def verify_machines(self) -> None:
        """Ask each machine who it is (both at once); forget results of machines made anew."""
        ctx = self.context()
        names = self.provider.names
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
        """Boot the machines; build the lab's images meanwhile, since booting does not need them.

        Machines booted warm (from a saved provisioned image) get the part of
        provisioning that each boot needs (the lab's images) right away.
        """
        warm: list[str] = []
        base = self.provider.prepare(self.progress.say, self.progress.phase)
        states = {s.name: s.state for s in self.provider.status()}
        removed = self.provider.leftovers(states)
        if removed:
            self.progress.say(f"removed what an earlier lab of this name left: {', '.join(removed)}")
        creating = [n for n in names or self.provider.names if states.get(n) == "not_created"]
        if creating and base is not None and self.warm_store() is not None:
            warm = self.choose_start(base, creating)
        errors: list[BaseException] = []

        def build_images() -> None:
            try:
                self.prepare_images()
            except BaseException as exc:  # re-raised in the main thread below
                errors.append(exc)

        builder = threading.Thread(target=build_images, name="images")
        builder.start()
        try:
            with self.progress.phase("boot", f"boot {', '.join(names or self.provider.names)} ({self.provider.name})"):
                self.provider.up(names or [])
        except KeyboardInterrupt:
            self.provider.host.abandon()  # ends the image builds now, so the join below is short
            raise
        finally:
            builder.join()
        if errors:
            raise errors[0]
        if warm:
            self.provision()

    def start(self) -> None:
        """Machines booted and provisioned: what `reglab run` and the test session begin with."""
        self.up()
        if not self._provisioned:
            self.provision()

    # -- warm starts -------------------------------------------------------------
    def warm_store(self) -> DockerWarm | LibvirtWarm | None:
        """Where warm machines are kept for this lab's provider (None: it has no warm starts)."""
        return self.provider.warm_store()

    def warm_key(self, base: str, archive: str | None = None) -> WarmKey:
        """The key of what provisioning makes of a machine booted from `base` (image ID or box version),
        with the package index a fresh provision would install from now (unless given)."""
        if archive is None:
            archive = self.provider.archive_now()
        return warm_key(self.provider.name, base, DEBIAN.name, plan(DEBIAN, self.lab.debian.extra_packages), archive)

    def choose_start(self, base: str, creating: list[str]) -> list[str]:
        """Boot from the warm machine when its key matches (and the lab does not ask for fresh)."""
        store = self.warm_store()
        assert store is not None
        key = self.warm_key(base)
        found = None if self.lab.start == "fresh" else store.find(key)
        if found:
            why = f"from {found}: provisioned before, same base, plan and package index"
        elif self.lab.start == "fresh":
            why = "asked for (--fresh, REGLAB_START or start: fresh)"
        elif not key.parts["archive"]:
            why = "the package index could not be read, so no warm machine is known to match"
        else:
            why = "no warm machine for this base, plan and package index yet; one is saved after provisioning"
        kind = "warm" if found else "fresh"
        if found:
            self.provider.boot_from(found)
        record = {"kind": kind, "image": found or base, "base": base, "key": key.value, "why": why}
        starts = self.state.data.setdefault("starts", {})
        for name in creating:
            starts[name] = dict(record)
        self.state.save()
        self.progress.say(f"{kind} start for {', '.join(creating)}: {why}")
        return creating if found else []

    def save_warm(self, done: list[Provisioned]) -> str | None:
        """Save what a machine provisioned from nothing became, unless its key has a warm machine already.

        Only a machine this lab booted fresh, that provisioning installed
        packages on and that no step has touched: what it is now is exactly
        what the plan makes.
        """
        store = self.warm_store()
        if store is None:
            return None
        starts = self.state.data.get("starts", {})
        for item in done:
            record = starts.get(item.machine)
            if not record or record.get("kind") != "fresh" or item.family != DEBIAN.name:
                continue
            if not any(change.startswith("installed ") for change in item.changes):
                continue
            touched = [s.id for s in self.scenario.steps
                       if item.machine in s.machines() and s.id in self.state.data.get("steps", {})]
            if touched:
                self.progress.say(f"{item.machine}: no warm machine saved: steps ran on it ({', '.join(touched)})")
                continue
            machine = self.context().machine(item.machine)
            # The package index this machine really installed from.
            key = self.warm_key(record["base"], store.archive_of(machine, self.lab.cache_dir))
            if not key.parts["archive"] or store.find(key):
                return None
            with self.progress.phase("warm save", f"save {item.machine} for warm starts ({key.value})"):
                packages = package_versions(machine, DEBIAN)
                images = self.state.images.all() if self.state.images else []
                saved = store.save(f"{self.lab.name}-{item.machine}", machine, key, packages, images)
            record["saved"] = saved
            self.state.save()
            self.progress.say(f"saved {saved}: the next machines of this plan boot provisioned")
            return saved
        return None

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
        # A bundle is handed to machines only while its digest is the one the host kept when it made it.
        kept = bool(bundle) and Path(bundle).exists() and digests.recorded(Path(bundle), digests.user_store())
        if images is None or (self.builder.source() != "pull" and not kept):
            images, bundle_path = self.prepare_images()
            bundle = str(bundle_path) if bundle_path else None
        machines = [self.context().machine(name) for name in self.provider.names]
        self.verify_machines()
        with self.progress.phase("provision", "provision (both machines at once)"):
            # The families were read with the machines' identities just above: not read again.
            ctx = self.context()
            ids = self.builder.image_ids(images) if bundle else None
            done = provision(machines, images, Path(bundle) if bundle else None, self.progress,
                             lambda machine: ctx.family(machine.name), ids)
        self.state.data["provisioned"] = True
        self.state.save()
        self._provisioned = True
        self.save_warm(done)
        return done

    def down(self) -> list[str]:
        what = "destroy machines" if self.provider.makes_machines else "remove the lab from the machines (they stay)"
        with self.progress.phase("down", what):
            removed = [] if self.provider.makes_machines else self.remove_lab()
            removed += self.provider.down()
        self.state.path.unlink(missing_ok=True)
        return removed

    def remove_lab(self) -> list[str]:
        """What reglab put on machines it did not make, taken away (they must answer)."""
        missing = self.refresh_state()
        if missing:
            raise LabError(f"machine {missing[0]} does not answer, so what the lab put there cannot be "
                           f"removed; `reglab status` says more")
        cleanup.clean(self.context(), self.provider.names, makes_machines=False, remove=True)
        return cleanup.removed(self.context(), self.provider.names)

    def reset(self) -> None:
        """Both machines back to the state after provisioning, at once; no step counts as done."""
        with self.progress.phase("reset", "reset both machines"):
            cleanup.clean(self.context(), self.provider.names, self.provider.makes_machines)
        self.state.data["steps"] = {}
        self.state.save()

    # -- steps -----------------------------------------------------------------
    def context(self) -> Context:
        if self._ctx is None:
            images = self.state.images or LabImages(**self.lab.images.refs())
            self._ctx = Context(self.lab, self.connect, images, self.redactor)
        return self._ctx

    def engine(self) -> Engine:
        return Engine(self.scenario, self.context(), self.state, self.progress)

    def require_running(self) -> None:
        """Both machines up, and the state about these very machines (solve, check, provision, reset).

        NOTE: asking the machines themselves first is what keeps a student's
        `reglab check` short: `vagrant status` alone takes 1-2 s. Only when one
        does not answer is the provider asked why (and its SSH details again).
        """
        try:
            self.verify_keeping_apart()
            return
        except RemoteError:
            self.provider.forget_connections()
            self._ctx = None
        missing = self.refresh_state()
        if missing:
            raise LabError(f"machine {missing[0]} is not running; start the lab with `reglab up` "
                           f"(and `reglab provision`) first")
        self.provider.keep_apart()

    def verify_keeping_apart(self) -> None:
        """`verify_machines`, and meanwhile the provider's `keep_apart` (host commands only): neither waits
        on the other. keep_apart's error is raised once the machines have answered; theirs comes first."""
        errors: list[BaseException] = []

        def keep_apart() -> None:
            try:
                self.provider.keep_apart()
            except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
                errors.append(exc)

        worker = threading.Thread(target=keep_apart, name="keep-apart", daemon=True)
        worker.start()
        try:
            self.verify_machines()
        finally:
            worker.join()
        if errors:
            raise errors[0]

    def refresh_state(self) -> list[str]:
        """Forget results of machines that no longer exist or were made anew; return those not running."""
        states = {s.name: s.state for s in self.provider.status()}
        for name in self.provider.names:
            if states.get(name) == "not_created":
                self._identify(name, "")
        missing = [n for n in self.provider.names if states.get(n) != "running"]
        if not missing:
            self.verify_machines()
        return missing

    def step_ids(self, step: str | None) -> list[str]:
        ids = [s.id for s in self.scenario.steps]
        if step is not None and step not in ids:
            raise LabError(f"no step {step!r} in {self.scenario.path.name}; steps: {', '.join(ids)}")
        return ids

    def run(self, keep_going: bool = False) -> RunResult:
        """up, provision, solve and check every step: the whole lab; with `keep_going`, past failed steps."""
        self.start()
        result = self.engine().run(self.scenario.steps, solve=True, phases=self.progress.phases,
                                   keep_going=keep_going)
        self.write_report(result)
        return result

    def write_report(self, result: RunResult) -> dict[str, Path]:
        """This run's reports, and the maintainer's report beside them (with the other edition's last run)."""
        result.phases = dict(self.progress.phases)
        directory = self.lab.state_dir / "reports"
        paths = write_reports(result, directory, self.redactor)
        with contextlib.suppress(LabError):  # an unreadable older report must not spoil this run's
            write_maintainer_report(matrix_results(self.lab), check_tutorial_text(self.scenario), directory,
                                    self.redactor)
        return paths
