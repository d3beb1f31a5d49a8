"""A check's commands sent to each machine together: one round trip per machine, both machines at once.

The check runners (lab.engine.checks) ask a machine one command at a time,
and some ask their second command from the first one's answer (a tls check
reads the CA file, then the served chain). Rather than teach each runner to
batch, the engine runs a step's checks in speculative rounds against
`Speculator`'s stand-ins for the machines:

- a command whose answer is known gets it (from the real batch that ran it),
  through the same `Machine.settle` a live command goes through (warn,
  errors); a timed-out one raises what a live timeout raises;
- any other command is noted as pending and gets a placeholder (exit 0, no
  output) so the round can go on to the next items and learn their commands.

After a round, each machine runs all its pending commands in one batch
(`Machine.batch`), both machines at once, and the next round starts from the
same state (captured values put back). A round that meets no pending command
saw nothing but real answers; then the checks run for real, item by item
exactly as before, on answers that are all known: the same verdicts, the same
expected and seen, the same redaction. Rounds are bounded; a command still
unknown then runs alone, live. A round stops at the first failure that
rests on real answers only, as the real run does.

NOTE: this needs what checks promise anyway: a check's command only observes.
A round may ask an item's command before the items ahead of it have answered,
or when one of them is about to fail, so a command that changed the machine
could change what an earlier item sees. (The tutorial's `docker run` of the
pulled image says `--pull=never` for that reason: an absent image was pulled.)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import invoke

from lab.common.errors import RemoteError
from lab.common.parallel import on_each
from lab.engine.context import Context
from lab.machines.batch import Item
from lab.machines.remote import Command, Machine, shell_text

# Most steps need one batch per machine, a check that reads before it asks (tls, docker_login, a
# value captured on one machine and compared on the other) two; every step of the tutorial at once
# two where the steps passed last time, up to six where nothing is known of them (lab.engine.steps).
MAX_ROUNDS = 8

Key = tuple[str, str, str | None, float]  # machine, command, stdin, time bound


def batchable(machine: Any) -> bool:
    """A machine that runs batches (lab.machines.remote.Machine, or a test's fake of one); anything
    else is asked one command at a time, as ever."""
    return all(callable(getattr(type(machine), name, None)) for name in ("batch", "settle", "sudo_command"))


class Speculator:
    """The answers of one check (or of every step's, for `check --all`), fetched a batch per machine per round."""

    def __init__(self, ctx: Context, rounds: int | None = None) -> None:
        self.ctx = ctx
        self.rounds = rounds or MAX_ROUNDS
        self.known: dict[Key, invoke.Result | RemoteError] = {}
        self.pending: dict[str, dict[Key, Item]] = {}
        self.machines: dict[str, Machine] = {}
        self.guessing = False  # a placeholder was handed out this round: what follows may rest on it
        self.foreseeing = True  # whether `foresee` asks: for steps likely to pass (lab.engine.steps)
        self.speculating = False
        self.batches = 0  # how many batches ran, for tests and logs
        self.live = 0  # commands that ran alone (unknown after the last round, or not batchable)
        self._stand_ins: dict[str, StandIn] = {}

    # -- what the checks see ---------------------------------------------------------
    def stand_in(self, machine: Any) -> Any:
        if not batchable(machine):
            return machine
        stand_in = self._stand_ins.get(machine.name)
        if stand_in is None or stand_in.machine is not machine:
            stand_in = self._stand_ins[machine.name] = StandIn(self, machine)
            self.machines[machine.name] = machine
        return stand_in

    def sudo(self, machine: Machine, command: str, warn: bool, stdin: str | None,
             timeout: float | None) -> invoke.Result:
        bound = machine.default_timeout if timeout is None else timeout
        key: Key = (machine.name, command, stdin, bound)
        shown = machine.redactor.redact(machine.sudo_command(command))
        answer = self.known.get(key)
        if answer is not None:
            if isinstance(answer, RemoteError):
                raise RemoteError(str(answer)) from None
            return machine.settle(shown, answer, warn)
        if self.speculating:
            encoded = None if stdin is None else stdin.encode(machine.encoding)
            self.pending.setdefault(machine.name, {})[key] = Item(command, encoded, bound)
            self.guessing = True
            return invoke.Result(stdout="", stderr="", exited=0, command=command)
        self.live += 1
        return machine.sudo(command, warn=warn, in_stream=io.StringIO(stdin) if stdin is not None else False,
                            timeout=timeout)

    def foresee(self, machine: Machine, command: str, stdin: str | None, timeout: float | None) -> None:
        """A command a check will likely ask once an answer it waits for is in (a guess: the answer it
        waits for is a placeholder meanwhile): asked in this round's batch too, its answer kept for
        when the check does ask it. Outside a speculative round, nothing: the check asks as ever."""
        bound = machine.default_timeout if timeout is None else timeout
        key: Key = (machine.name, command, stdin, bound)
        if self.speculating and self.foreseeing and key not in self.known:
            encoded = None if stdin is None else stdin.encode(machine.encoding)
            self.pending.setdefault(machine.name, {})[key] = Item(command, encoded, bound)

    # -- rounds ----------------------------------------------------------------------------
    def prefetch(self, explore: Callable[[int], bool]) -> None:
        """Run `explore(round)` (the items of the checks to come, past failures) in rounds until it
        asks nothing new and says it looked at everything it may need (True: it left some for a
        later round); each round's pending commands are fetched in one batch per machine."""
        for round_ in range(self.rounds):
            self.pending = {}
            self.guessing = False
            self.speculating = True
            more = False
            try:
                with self.ctx.kept(), self.serving():
                    more = explore(round_)
            except Exception:  # noqa: BLE001, S110 - only a prefetch: the real run meets the same error and says it
                pass
            finally:
                self.speculating = False
            if self.pending:
                if not self.fetch():
                    return
            elif not more:
                return

    def fetch(self) -> int:
        """The pending commands, one batch per machine, machines at once; how many answers came back."""
        pending, self.pending = self.pending, {}
        machines = [self.machines[name] for name in pending]

        def one(machine: Machine) -> int:
            entries = list(pending[machine.name].items())
            answers = machine.batch([item for _, item in entries])
            learned = [(key, answer) for (key, _), answer in zip(entries, answers, strict=True) if answer is not None]
            self.known.update(learned)
            return len(learned)

        self.batches += len(machines)
        return sum(on_each(machines, one))

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """The context's machines are this speculator's stand-ins meanwhile."""
        with self.ctx.machines_as(self.stand_in):
            yield


class StandIn:
    """A machine as the check runners see it during a batched check: `sudo` answers from the batches."""

    def __init__(self, speculator: Speculator, machine: Machine) -> None:
        self.speculator = speculator
        self.machine = machine
        self.name = machine.name

    def sudo(self, command: Command, warn: bool = False, in_stream: Any = None, timeout: float | None = None,
             **other: Any) -> invoke.Result:
        command = shell_text(command)  # a list of arguments as the shell reads it: one key, one batch item
        if other:  # not a check's kind of command: as it always ran
            self.speculator.live += 1
            return self.machine.sudo(command, warn=warn, in_stream=in_stream, timeout=timeout, **other)
        stdin = None if in_stream in (None, False) else in_stream.read()
        return self.speculator.sudo(self.machine, command, warn, stdin, timeout)

    def foresee(self, command: Command, stdin: str | None = None, timeout: float | None = None) -> None:
        """Ask `command` in this round's batch if the round is speculative (`Speculator.foresee`)."""
        self.speculator.foresee(self.machine, shell_text(command), stdin, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.machine, name)
