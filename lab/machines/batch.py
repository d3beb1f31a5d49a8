r"""Several root commands in one remote session: the script that runs them, and what it prints back.

A check asks a machine ten small questions; one SSH session each costs more
than the questions (opening a channel, starting sudo, invoke's polling). A
batch sends them together: one `sudo -n -H bash -s` reads a script on its
stdin that runs each command as `Machine.sudo` would (`bash -c COMMAND` as
root), each with its own stdin, its own time bound and its output captured,
PARALLEL of them at once, and prints one framed line per command.

Nothing secret reaches a command line: a command's stdin (curl's `-K -`
credentials) is in the script as `\xHH` escapes, written by bash's builtin
`printf` into a pipe, so `ps` shows only `bash -s`, `timeout ...` and the
command itself, as it would without a batch.

What the batch adds to each command is kept small, since a class's machines pay
for it on every check: a command that is plain words (`curl -sS -i URL`, no
quoting bash would read otherwise, `$`, pipes or redirections; see `argv`) runs
under `timeout` as those words, without a `bash -c` of its own; stdin is
written without a `base64` process; the answers are printed by one `cat`.

Pure: building the script and parsing its output need no machine
(tests/unit/test_batch.py runs the script with a local bash).
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

# How the batch starts on the machine: root, root's HOME, a bash reading the script on stdin.
COMMAND = "sudo -n -H bash -s"

# Past its bound a command gets SIGTERM, and SIGKILL this many seconds later (`timeout -k`).
KILL_GRACE = 5

# Commands of one batch running at once. A check only observes (lab/engine/batching.py), so the order
# they run in does not change what they see; the slowest (a `docker run`) no longer waits for the rest.
PARALLEL = 8

# Exit statuses of `timeout` when it ended the command: TERM (124) or, past the grace, KILL (128 + 9).
_TIMEOUT_EXITS = (124, 137)

_PRELUDE = r"""set +e
exec 2>&1
_d=$(mktemp -d) || exit 97
trap 'rm -rf "$_d"' EXIT
_now() { _t=${EPOCHREALTIME/[.,]/}; [ -n "$_t" ] || _t=$(date +%s%6N); }
_r() {
  local rc t=0 s e i=$1 b=$2 m=$3 in=$4 o="$_d/$1.o" x="$_d/$1.e"
  shift 4
  if [ "$1" = c ]; then
    set -- bash -c "$2"
  else
    shift
    hash "$1" 2>/dev/null || set -- bash -c "${*@Q}"
  fi
  _now; s=$_t
  if [ "$in" = - ]; then
    timeout -k KILL "$b" "$@" </dev/null >"$o" 2>"$x"
  else
    timeout -k KILL "$b" "$@" < <(printf "${in#=}") >"$o" 2>"$x"
  fi
  rc=$?
  _now; e=$((_t - s))
  if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ "$e" -ge "$m" ]; then t=1; fi
  {
    printf '%s %s %s %s %s ' TAG "$i" "$rc" "$t" "$e"
    if [ -s "$o" ]; then base64 -w0 <"$o"; fi
    printf ' '
    if [ -s "$x" ]; then base64 -w0 <"$x"; fi
    printf '\n'
  } >"$_d/$i.f"
}
_n=0
_go() {
  _r "$@" &
  _n=$((_n + 1))
  if [ "$_n" -ge PARALLEL ]; then wait -n; _n=$((_n - 1)); fi
}
_out() {
  local f=() i
  for ((i = 0; i < $1; i++)); do [ -f "$_d/$i.f" ] && f+=("$_d/$i.f"); done
  if [ ${#f[@]} -gt 0 ]; then cat "${f[@]}"; fi
}
"""


@dataclass(frozen=True)
class Item:
    """One command of a batch: run as root by `bash -c`, with `stdin` (None: none) within `timeout` seconds."""

    command: str
    stdin: bytes | None
    timeout: float


@dataclass(frozen=True)
class Reply:
    """What one command did: its exit status, its output, whether its time bound ended it, how long it took."""

    exited: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


def build_script(items: Sequence[Item], tag: str) -> str:
    """The bash script that runs `items` (PARALLEL at once) and prints one line per item, in their order,
    starting with `tag`.

    Each line: tag, index, exit status, 1 if the time bound ended the command
    (else 0), microseconds taken, stdout and stderr in base64. A command that
    exits 124 on its own before its bound is not a timeout.
    """
    if not tag.replace("-", "").isalnum():
        raise ValueError(f"tag {tag!r}: letters, digits and dashes only")
    prelude = _PRELUDE.replace("KILL", str(KILL_GRACE)).replace("TAG", tag).replace("PARALLEL", str(PARALLEL))
    lines = [prelude]
    for index in start_order(items):
        item = items[index]
        if item.timeout <= 0:
            raise ValueError(f"item {index}: a time bound must be positive, got {item.timeout}")
        stdin = "-" if item.stdin is None else "'=" + "".join(f"\\x{byte:02x}" for byte in item.stdin) + "'"
        words = argv(item.command)
        how = f"c {shlex.quote(item.command)}" if words is None else f"x {item.command}"
        micros = int(item.timeout * 1_000_000)
        lines.append(f"_go {index} {_seconds(item.timeout)} {micros} {stdin} {how}")
    lines.append("wait")
    lines.append(f"_out {len(items)}")
    return "\n".join(lines) + "\n"


# Names bash runs itself (builtins, keywords), which `timeout` could not run as a program, or would run
# as another program than bash does (`test`, `echo`, `[`): such a command keeps its `bash -c`.
_SHELL_WORDS = frozenset("""
! [[ ]] { } alias bg bind break builtin caller case cd command compgen complete compopt continue coproc declare
dirs disown do done echo elif else enable esac eval exec exit export false fc fg fi for function getopts hash help
history if in jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return select set
shift shopt source suspend test then time times trap true type typeset ulimit umask unalias unset until wait while
""".split()) | {".", ":", "["}

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def argv(command: str) -> list[str] | None:
    """The words of `command` when bash would run it as exactly those words: one program, plain words or
    single-quoted ones (as `shlex.quote` writes them), nothing bash expands, redirects or joins; else None.

    Such a command runs under `timeout` directly: bash's `bash -c` would only have looked up and exec'd
    the same program with the same arguments. Anything else (`~`, `$`, `*`, pipes, `;`, an assignment,
    a builtin) keeps its own `bash -c`.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or shlex.join(words) != command:
        return None
    first = words[0]
    if first in _SHELL_WORDS or not _SAFE_NAME.fullmatch(first):
        return None
    return words


def start_order(items: Sequence[Item]) -> list[int]:
    """The order items start in: Docker's commands first (a `docker run` starts a container, the slowest
    item of a check by far), so that the rest run beside them instead of before them. Their answers
    keep the items' own order; a check's commands only observe, so when each starts changes nothing."""
    weight = {"docker run": 0, "docker": 1}

    def rank(index: int) -> int:
        words = items[index].command.split()
        return weight.get(" ".join(words[:2]), weight.get(words[0] if words else "", 2))
    return sorted(range(len(items)), key=rank)


def _seconds(value: float) -> str:
    """A bound as `timeout` reads it: 300, 0.5 (never 3e-05)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}".rstrip("0")


def parse_output(text: str, tag: str, count: int) -> dict[int, Reply]:
    """The replies a batch's output holds, by item index; lines that are not the batch's frames are ignored.

    An item missing from the result did not finish (the batch was cut short).
    """
    replies: dict[int, Reply] = {}
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 7 or parts[0] != tag:
            continue
        try:
            index, exited, ended, micros = int(parts[1]), int(parts[2]), parts[3], int(parts[4])
            stdout = base64.b64decode(parts[5], validate=True)
            stderr = base64.b64decode(parts[6], validate=True)
        except (ValueError, binascii.Error):
            continue
        if not 0 <= index < count or ended not in ("0", "1") or index in replies:
            continue
        timed_out = ended == "1" and exited in _TIMEOUT_EXITS
        replies[index] = Reply(exited, stdout, stderr, timed_out, micros / 1_000_000)
    return replies
