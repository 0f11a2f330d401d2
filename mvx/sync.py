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
from mvx.syscalls import UNKNOWN, Addr, FlagSet


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
# classes whose return values must agree after both variants ran the call (fd numbers)
COMPARE_RET = {"fd_creating"}
# classes the leader holds until every follower has checked them (--lockstep sensitive)
LOCKSTEP_SENSITIVE = {"checked_output", "sensitive", "exit"}


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


def view(call: Call) -> list:
    """What is compared of a call: its canonical name and its neutral arguments."""
    return [call.name, [neutral(a) for a in call.args]]


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
        return f"{path or 'bytes'} differ at byte {n} (lengths {len(a)} and {len(b)})"
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


class LeaderSync:
    """Numbers the leader's synced calls and turns each into a record."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.seq = 0

    def class_of(self, call: Call) -> str:
        return self.policy.class_of(call.name) or "local"

    def needs_lockstep(self, call: Call, lockstep: str) -> bool:
        """Must the leader wait for every follower's check before executing this call?"""
        if lockstep == "all":
            return True
        if lockstep == "none":
            return False
        return self.class_of(call) in LOCKSTEP_SENSITIVE

    def check_request(self, call: Call) -> dict:
        """Sent before a lockstepped call executes: the followers check it, then the leader runs."""
        return {"t": "check", "seq": self.seq + 1, "view": view(call), "line": render(call)}

    def record(self, call: Call, ret: int, outputs: dict | None = None) -> dict:
        """After the leader executed `call` (returning `ret`, with replicated `outputs`)."""
        self.seq += 1
        return {"t": "call", "seq": self.seq, "cls": self.class_of(call), "view": view(call), "ret": ret,
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

    def on_call(self, call: Call, record: dict) -> Decision:
        if record.get("t") == "end":
            raise Divergence("syscall", record.get("seq", self.seq + 1), "(the leader's program ended)",
                             render(call), "the follower made a synced call the leader never made")
        self._compare(call, record)
        self.seq = record["seq"]
        action = FOLLOWER_ACTION.get(record.get("cls"), Action.RUN)
        return Decision(action, record, record.get("outputs") or {})

    def after_local(self, call: Call, ret: int, record: dict) -> None:
        """After a locally run call: fd-creating calls must return the same number."""
        if record.get("cls") in COMPARE_RET and ret != record.get("ret"):
            raise Divergence("fd", record["seq"], record.get("line", "?"), render(call, ret),
                             f"return values differ: leader {record.get('ret')}, follower {ret}")

    def on_end(self, status: int | None, signal: int | None, record: dict) -> None:
        """The follower's program ended: the leader's must have ended the same way, at the same point."""
        if record.get("t") != "end":
            raise Divergence("exit", record.get("seq", self.seq + 1), record.get("line", "?"),
                             _ending(status, signal), "the follower ended before the leader's next synced call")
        if signal is not None:
            raise Divergence("signal", record["seq"], _ending(record.get("status"), record.get("signal")),
                             _ending(status, signal), "the follower was killed by a signal")
        if (status, signal) != (record.get("status"), record.get("signal")):
            raise Divergence("exit", record["seq"], _ending(record.get("status"), record.get("signal")),
                             _ending(status, signal), "exit statuses differ")

    def _compare(self, call: Call, record: dict) -> None:
        mine = view(call)
        theirs = record.get("view")
        if mine == theirs:
            return
        kind = "syscall" if not theirs or mine[0] != theirs[0] else "arguments"
        raise Divergence(kind, record.get("seq", self.seq + 1), record.get("line", "?"), render(call),
                         _first_difference(theirs, mine))


def _ending(status: int | None, signal: int | None) -> str:
    if signal is not None:
        return f"+++ killed by signal {signal} +++"
    return f"+++ exited with {status} +++"
