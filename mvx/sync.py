"""The leader/follower synchronisation logic as a sans-IO state machine (in the spirit of h11).

No processes, sockets or ptrace here: the monitors feed canonical calls in and act on the
decisions that come out, so every rule (what is compared, what is replayed, what is a divergence)
is testable with plain data.

The leader turns each synced call it executed into a `Record` (a wire-safe dict). The follower
checks its own call against the next record and gets a `Decision`: inject the leader's result,
skip the call with the leader's return value, run it locally, or a `Divergence`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from mvx.canonical import Call, IoVec
from mvx.policy import Policy
from mvx.render import render
from mvx.structs import SockAddr, TimeValue
from mvx.syscalls import UNKNOWN, Addr, Fd, FlagSet, spec_of


class Action(enum.Enum):
    INJECT = "inject"  # do not execute: answer with the leader's result and out-data
    SKIP = "skip"  # do not execute: answer with the leader's return value (checked output)
    RUN = "run"  # execute locally (arguments were equal)
    EXIT = "exit"  # the program ends here; statuses are compared at exit


# policy class -> what a follower does with a matching call
FOLLOWER_ACTION = {
    "replicated": Action.INJECT,
    "retval_only": Action.INJECT,
    "checked_output": Action.SKIP,
    "local": Action.RUN,
    "fd_creating": Action.RUN,
    "sensitive": Action.RUN,
    "exit": Action.EXIT,
}
# classes whose return values must agree after both variants ran the call (fd numbers, bytes
# read from each variant's own copy of a file); calls returning an fd are always compared
COMPARE_RET = {"fd_creating", "local"}
# local calls whose results legitimately differ between ISAs (F_GETFL flag bits differ)
RET_NOT_COMPARED = {"fcntl", "close", "epoll_ctl", "setsockopt", "mprotect"}
# classes the leader holds until every follower has checked them (--lockstep sensitive)
LOCKSTEP_SENSITIVE = {"checked_output", "sensitive", "exit"}
# open flags that make an open sensitive (it can change the file system)
WRITE_OPEN_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}

# What is compared of some calls, when not every argument: (argument names compared) or
# {argument name: struct fields never compared}. Program-chosen cookies (epoll data: lighttpd keeps
# pointers there) and sizes that follow the ISA's word size are not evidence of an attack.
COMPARED_ONLY = {"mprotect": ("prot",)}
FIELDS_NOT_COMPARED = {"epoll_ctl": {"event": ("data",)}}
# Arguments a command does not read, whatever garbage the caller's register holds:
# {call: (command argument, unused argument, commands)}
UNUSED_FOR = {"fcntl": ("cmd", "arg", frozenset({"F_GETFL", "F_GETFD", "F_GETOWN", "F_GETSIG", "F_GETLEASE",
                                                  "F_GETPIPE_SZ", "F_GET_SEALS"}))}
# Arguments that are one machine word of the variant's ISA when the source says sizeof(long) or
# sizeof(void *): compared as "one word", and replayed at the follower's own width. glibc's malloc
# draws its tcache key this way (getrandom(&key, sizeof key, GRND_NONBLOCK)): 8 bytes on x86_64,
# 4 on i386.
WORD_SIZED = {"getrandom": "buflen"}


def neutral(value: Any) -> Any:
    """A wire-safe, ISA-neutral form of a decoded argument; None for what is never compared
    (addresses differ between ISAs and between runs)."""
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value
    if isinstance(value, Addr) or value is UNKNOWN:
        return None
    if isinstance(value, FlagSet):
        return {"flags": sorted(value.names), "rest": value.rest}
    if isinstance(value, IoVec):
        return value.data
    if isinstance(value, TimeValue):
        return [value.sec, value.nsec]
    if isinstance(value, SockAddr):
        return {"family": value.family, "fields": [[k, neutral(v)] for k, v in value.fields]}
    if isinstance(value, (frozenset, set)):
        return sorted(neutral(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [neutral(v) for v in value]
    if isinstance(value, dict):
        return {str(k): neutral(v) for k, v in value.items()}
    return repr(value)


def word_sized(call: Call) -> bool:
    """Whether the call's WORD_SIZED argument is one machine word of the variant's ISA."""
    name = WORD_SIZED.get(call.name)
    if name is None:
        return False
    return call.args[call.spec.arg_names.index(name)] == _word_size(call.arch)


def _word_size(arch_name: str) -> int:
    from mvx.arch import get

    return get(arch_name).word_size


def _stat_view(call: Call, args: list) -> list:
    """statx asking for the basic stats is fstatat in another dress (glibc on i386 implements
    fstat/fstatat64 with statx); AT_NO_AUTOMOUNT is what every stat does anyway."""
    def flags(value):
        if isinstance(value, dict) and "flags" in value:
            return {**value, "flags": [f for f in value["flags"] if f != "AT_NO_AUTOMOUNT"]}
        return value

    if call.name == "statx":
        mask = call.args[3]
        if isinstance(mask, FlagSet) and mask.names == {"STATX_BASIC_STATS"} and not mask.rest:
            return ["fstatat", [args[0], args[1], None, flags(args[2])]]
        return [call.name, args]
    return ["fstatat", [args[0], args[1], args[2], flags(args[3])]]


def _clock_view(call: Call, args: list) -> list:
    """A read of a clock (mvx.outputs.CLOCK_READS): gettimeofday reads CLOCK_REALTIME, time the
    coarse real-time clock (the kernel's time() is its seconds; glibc's i386 time() asks for it)."""
    clock = {"clock_gettime": args[0], "gettimeofday": "CLOCK_REALTIME", "time": "CLOCK_REALTIME_COARSE"}
    return ["clock_gettime", [clock[call.name]]]


# calls compared in one shape whatever the variant's libc made of them
VIEW_AS = {"statx": _stat_view, "fstatat": _stat_view,
           "clock_gettime": _clock_view, "gettimeofday": _clock_view, "time": _clock_view}


def view(call: Call) -> list:
    """What is compared of a call: its canonical name and its neutral arguments."""
    v = _plain_view(call)
    alias = VIEW_AS.get(call.name)
    return alias(call, v[1]) if alias else v


def _plain_view(call: Call) -> list:
    names = call.spec.arg_names
    only = COMPARED_ONLY.get(call.name)
    drop = FIELDS_NOT_COMPARED.get(call.name, {})
    word = WORD_SIZED.get(call.name)
    unused = UNUSED_FOR.get(call.name)
    if unused and str(call.args[names.index(unused[0])]) not in unused[2]:
        unused = None
    args = []
    for name, a in zip(names, call.args):
        if (only is not None and name not in only) or (unused and name == unused[1]):
            args.append(None)
        elif name == word:
            args.append([a, _word_size(call.arch)])  # compared by _same_words
        elif name in drop and isinstance(a, dict):
            args.append(neutral({k: v for k, v in a.items() if k not in drop[name]}))
        else:
            args.append(neutral(a))
    return [call.name, args]


@dataclass
class Divergence(Exception):
    """The variants parted ways. `kind`: syscall, arguments, exit, signal, fd, timeout."""

    kind: str
    seq: int
    leader: str
    follower: str
    detail: str = ""

    def __str__(self) -> str:
        return f"divergence ({self.kind}) at synced call #{self.seq}: {self.detail}"

    def report(self) -> str:
        """The readable block for stderr."""
        lines = [f"mvx: DIVERGENCE ({self.kind}) at synced call #{self.seq}",
                 f"  leader:   {self.leader}", f"  follower: {self.follower}"]
        if self.detail:
            lines.append(f"  {self.detail}")
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"event": "divergence", "kind": self.kind, "seq": self.seq, "leader": self.leader,
                "follower": self.follower, "detail": self.detail}


@dataclass
class Decision:
    action: Action
    record: dict
    outputs: dict = field(default_factory=dict)


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if type(a) is not type(b):
        return f"{path or 'value'}: {a!r} != {b!r}"
    if isinstance(a, bytes):
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return (f"{path or 'bytes'} differ at byte {n} (lengths {len(a)} and {len(b)})\n"
                + _marked(a, b, n))
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path or 'list'}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    return f"{path or 'value'}: {a!r} != {b!r}"


def _escaped(data: bytes) -> str:
    return "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else
                   {10: "\\n", 13: "\\r", 9: "\\t", 34: '\\"', 92: "\\\\"}.get(c, f"\\x{c:02x}") for c in data)


def _marked(a: bytes, b: bytes, n: int, context: int = 24) -> str:
    """Both sides' bytes around offset `n`, with a caret under the first difference."""
    lo = max(0, n - context)
    head = "..." if lo else ""
    la = head + _escaped(a[lo:n + context]) + ("..." if len(a) > n + context else "")
    lb = head + _escaped(b[lo:n + context]) + ("..." if len(b) > n + context else "")
    caret = " " * (len(head) + len(_escaped(b[lo:n])))
    return f'    leader:   "{la}"\n    follower: "{lb}"\n               {caret}^'


def _argument_difference(names, theirs: list, mine: list) -> str:
    """The first differing argument, by name (leader's value first)."""
    for i, (a, b) in enumerate(zip(theirs, mine)):
        if a != b:
            name = names[i] if i < len(names) else f"#{i}"
            return "argument " + _first_difference(a, b, name)
    return _first_difference(theirs, mine)


class LeaderSync:
    """Numbers the leader's synced calls and turns each into a record."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.seq = 0

    def class_of(self, call: Call, fd_kind: str | None = None) -> str:
        return self.policy.class_of(call.name, fd_kind) or "local"

    def needs_lockstep(self, call: Call, lockstep: str, cls: str | None = None) -> bool:
        """Must the leader wait for every follower's check before executing this call?"""
        if lockstep == "all":
            return True
        if lockstep == "none":
            return False
        flags = call.args[2] if call.name == "openat" else None
        if isinstance(flags, FlagSet) and flags.names & WRITE_OPEN_FLAGS:
            return True
        return (cls or self.class_of(call)) in LOCKSTEP_SENSITIVE

    def check_request(self, call: Call) -> dict:
        """Sent before a lockstepped call executes: the followers check it, then the leader runs."""
        return {"t": "check", "seq": self.seq + 1, "view": view(call), "line": render(call)}

    def record(self, call: Call, ret: int | None, outputs: dict | None = None, cls: str | None = None) -> dict:
        """After the leader executed `call` (returning `ret`, None when the monitor let it run
        without learning its result, with replicated `outputs`)."""
        self.seq += 1
        return {"t": "call", "seq": self.seq, "cls": cls or self.class_of(call), "view": view(call), "ret": ret,
                "outputs": outputs or {}, "line": render(call, ret)}

    def exit_record(self, status: int | None, signal: int | None) -> dict:
        return {"t": "end", "seq": self.seq + 1, "status": status, "signal": signal}


class FollowerSync:
    """Checks the follower's calls against the leader's records, in order."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.seq = 0

    def check(self, call: Call, request: dict) -> None:
        """A lockstep check: raise Divergence if the follower's call differs."""
        self._compare(call, request)

    def on_call(self, call: Call, record: dict, cls: str | None = None) -> Decision:
        """The follower's `call` (of class `cls` here) against the leader's next record."""
        if record.get("t") == "end":
            raise Divergence("syscall", record.get("seq", self.seq + 1), _ending(record.get("status"),
                             record.get("signal")), render(call),
                             "the follower made a synced call the leader never made")
        self._compare(call, record, cls)
        self.seq = record["seq"]
        action = FOLLOWER_ACTION.get(record.get("cls"), Action.RUN)
        return Decision(action, record, record.get("outputs") or {})

    def compares_ret(self, call: Call, record: dict) -> bool:
        """Must this locally run call return what the leader's returned?"""
        if record.get("ret") is None:
            return False
        if isinstance(call.spec.ret, Fd):
            return True
        return record.get("cls") in COMPARE_RET and call.name not in RET_NOT_COMPARED

    def after_local(self, call: Call, ret: int, record: dict) -> None:
        """After a locally run call: fds must get the same numbers, reads of files the same counts."""
        if self.compares_ret(call, record) and ret != record.get("ret"):
            kind = "fd" if isinstance(call.spec.ret, Fd) else "result"
            raise Divergence(kind, record["seq"], record.get("line", "?"), render(call, ret),
                             f"return values differ: leader {record.get('ret')}, follower {ret}")

    def on_end(self, status: int | None, signal: int | None, record: dict) -> None:
        """The follower's program ended: the leader's must have ended the same way, at the same point."""
        if record.get("t") != "end":
            raise Divergence("exit", record.get("seq", self.seq + 1), record.get("line", "?"),
                             _ending(status, signal), "the follower ended before the leader's next synced call")
        if signal is not None and signal != record.get("signal"):
            raise Divergence("signal", record["seq"], _ending(record.get("status"), record.get("signal")),
                             _ending(status, signal), "the follower was killed by a signal")
        if (status, signal) != (record.get("status"), record.get("signal")):
            raise Divergence("exit", record["seq"], _ending(record.get("status"), record.get("signal")),
                             _ending(status, signal), "exit statuses differ")

    def _compare(self, call: Call, record: dict, cls: str | None = None) -> None:
        mine = view(call)
        theirs = record.get("view")
        if call.name in WORD_SIZED and theirs and theirs[0] == mine[0]:
            mine, theirs = _same_words(call, mine, theirs)
        if record.get("cls") == "retval_only" and theirs:  # the seed compares no arguments here
            mine, theirs = mine[:1], theirs[:1]
        if mine == theirs:
            if cls is not None and record.get("cls") not in (None, cls):
                raise Divergence("arguments", record.get("seq", self.seq + 1), record.get("line", "?"),
                                 render(call), f"the call is {record.get('cls')} on the leader, {cls} here "
                                 "(its fd is another kind of file)")
            return
        if not theirs or mine[0] != theirs[0]:
            kind, detail = "syscall", f"the leader made {theirs[0] if theirs else '?'}, the follower {mine[0]}"
        else:
            kind = "exit" if call.name in ("exit_group", "exit") else "arguments"
            detail = _argument_difference(spec_of(mine[0]).arg_names, theirs[1], mine[1])
        raise Divergence(kind, record.get("seq", self.seq + 1), record.get("line", "?"), render(call), detail)


def _same_words(call: Call, mine: list, theirs: list) -> tuple[list, list]:
    """WORD_SIZED arguments as [value, word size]: equal when the values are, or when each is
    one word of its own ISA."""
    i = call.spec.arg_names.index(WORD_SIZED[call.name])
    m, t = mine[1][i], theirs[1][i]
    if isinstance(m, list) and isinstance(t, list) and len(m) == len(t) == 2:
        same = m[0] == m[1] and t[0] == t[1]
        mine = [mine[0], [*mine[1][:i], "(one word)" if same else m[0], *mine[1][i + 1:]]]
        theirs = [theirs[0], [*theirs[1][:i], "(one word)" if same else t[0], *theirs[1][i + 1:]]]
    return mine, theirs


def _ending(status: int | None, signal: int | None) -> str:
    if signal is not None:
        return f"+++ killed by signal {signal} +++"
    return f"+++ exited with {status} +++"
