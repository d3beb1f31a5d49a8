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
written without a `base64` process; the answers are printed by one `cat`;
a check's curl requests share one curl process (`_curls`), each answering
exactly as alone.

Pure: building the script and parsing its output need no machine
(tests/unit/test_batch.py runs the script with a local bash).
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
import urllib.parse
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
  _frame "$i" "$rc" "$t" "$e"
}
_frame() {
  {
    printf '%s %s %s %s %s ' TAG "$1" "$2" "$3" "$4"
    if [ -s "$_d/$1.o" ]; then base64 -w0 <"$_d/$1.o"; fi
    printf ' '
    if [ -s "$_d/$1.e" ]; then base64 -w0 <"$_d/$1.e"; fi
    printf '\n'
  } >"$_d/$1.f"
}
_gc() {
  local rc s e t=0 line pre rest i buf="" b=$1 m=$2 ids=$3 g="$_d/curls"
  shift 3
  _now; s=$_t
  timeout -k KILL "$b" "$@" </dev/null >"$g" 2>&1
  rc=$?
  _now; e=$((_t - s))
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      *"TAG-c "*)
        pre=${line%%TAG-c *}
        rest=${line#"$pre"TAG-c }
        i=${rest%% *}
        printf '%s' "$buf$pre" >"$_d/$i.e"
        buf=""
        _frame "$i" "${rest#* }" 0 "$e" ;;
      *) buf+=$line$'\n' ;;
    esac
  done <"$g"
  if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ "$e" -ge "$m" ]; then t=1; fi
  for i in ${ids//,/ }; do
    if [ ! -f "$_d/$i.f" ] && [ "$t" = 1 ]; then : >"$_d/$i.e"; _frame "$i" "$rc" 1 "$e"; fi
  done
}
_here() {
  [ "$1" = localhost ] || [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || [ -n "${_hosts[$1]}" ]
}
_hosts_read() {
  local a n x
  declare -gA _hosts=()
  while read -r a n; do
    [[ -z $a || $a == \#* ]] && continue
    for x in $n; do [[ $x == \#* ]] && break; _hosts[$x]=1; done
  done </etc/hosts
}
_n=0
_go() {
  _r "$@" &
  _n=$((_n + 1))
  if [ "$_n" -ge PARALLEL ]; then wait -n; _n=$((_n - 1)); fi
}
_goc() {
  _gc "$@" &
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
    for index, item in enumerate(items):
        if item.timeout <= 0:
            raise ValueError(f"item {index}: a time bound must be positive, got {item.timeout}")
    requests = {index: words for index, item in enumerate(items) if (words := curl_words(item)) is not None}
    if len(requests) < 2:
        requests = {}
    started_curls = False
    for index in start_order(items):
        item = items[index]
        if index in requests:
            if not started_curls:
                lines += _curls(items, requests, tag)
                started_curls = True
            continue
        lines.append(_go_line(index, item))
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


# curl's options a check's `http` item uses (lab.engine.checks.http_request): with values, and without.
_CURL_VALUED = frozenset({"--max-time", "-A", "-H", "--cacert", "-K"})
_CURL_FLAGS = frozenset({"-sS", "-i", "-I"})


def curl_words(item: Item) -> list[str] | None:
    """The words of a curl request that can share one curl process with others (`_curls`): plain words,
    `-sS`, options from the short list above, one URL last, and stdin only as curl's config (`-K -`)."""
    words = argv(item.command)
    if not words or words[0] != "curl" or "-sS" not in words or "://" not in words[-1]:
        return None
    position = 1
    while position < len(words) - 1:
        word = words[position]
        if word in _CURL_FLAGS:
            position += 1
        elif word in _CURL_VALUED and position + 1 < len(words) - 1:
            if word == "-K" and words[position + 1] != "-":
                return None
            position += 2
        else:
            return None
    if words[-1].startswith("-") or ("-K" in words) != (item.stdin is not None):
        return None
    return words


def _curls(items: Sequence[Item], requests: dict[int, list[str]], tag: str) -> list[str]:
    """Script lines that run several curl requests as one curl process (`curl -Z`, in parallel, each
    request its own `--next` section) instead of one process each, which a machine pays mostly for
    starting curl and for reading the system's CA bundle, once a request.

    Each request answers exactly as alone: its output goes to its own file (`-o`), its exit status comes
    from `-w %{exitcode}`, and what curl says of it on stderr (`curl: (7) Failed to connect...`) is
    what curl printed just before that line (`--stderr -`: in the order curl writes them). Its
    credentials (`-K -`) are a file in the batch's own folder (root's, mode 0700), written by bash's
    printf. The process is bound by the longest of their bounds; each request by its own --max-time.

    NOTE: only a request whose host needs no DNS joins (an IPv4 address, localhost, a name in the
    machine's /etc/hosts, as the script finds it when it runs); any other runs alone, as ever. A name
    the DNS does not answer (the tutorial's domain before the `hosts` step) took curl 5 s to give up
    on alone (exit 6), but its --max-time of 10 s in one shared curl (exit 28, "unreachable").
    """
    lines = ["_hosts_read", "_cc=(curl -Z --no-progress-meter --stderr -)", "_ci="]
    for index, words in requests.items():
        stdin = items[index].stdin
        host = urllib.parse.urlsplit(words[-1]).hostname or "localhost"  # file://: no host, no DNS
        section = [shlex.quote(word) for word in words[1:-1]]
        section = [f'"$_d/{index}.k"' if word == "-" and section[n - 1] == "-K" else word
                   for n, word in enumerate(section)]
        section += ["-o", f'"$_d/{index}.o"', "-w", shlex.quote(f"{tag}-c {index} %{{exitcode}}\\n"),
                    shlex.quote(words[-1])]
        lines.append(f"if _here {shlex.quote(host)}; then")
        if stdin is not None:
            lines.append(f"  printf {_escaped(stdin)} >\"$_d/{index}.k\"")
        lines.append('  if [ -n "$_ci" ]; then _cc+=(--next); fi')
        lines.append(f"  _cc+=({' '.join(section)}); _ci+=,{index}")
        lines.append(f"else\n  {_go_line(index, items[index])}\nfi")
    bound = max(items[index].timeout for index in requests)
    start = f'_goc {_seconds(bound)} {int(bound * 1_000_000)} "${{_ci#,}}" "${{_cc[@]}}"'
    lines.append(f'if [ -n "$_ci" ]; then {start}; fi')
    return lines


def _go_line(index: int, item: Item) -> str:
    """The script line that starts one item alone: `_go INDEX BOUND MICROS STDIN c|x COMMAND`."""
    stdin = "-" if item.stdin is None else "'=" + _escaped(item.stdin)[1:]
    words = argv(item.command)
    how = f"c {shlex.quote(item.command)}" if words is None else f"x {item.command}"
    return f"_go {index} {_seconds(item.timeout)} {int(item.timeout * 1_000_000)} {stdin} {how}"


def _escaped(data: bytes) -> str:
    """Bytes as a printf format of `\\xHH` escapes, single-quoted: any byte, and no secret in clear."""
    return "'" + "".join(f"\\x{byte:02x}" for byte in data) + "'"


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
