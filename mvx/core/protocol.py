"""The messages that cross the channel between a leader's and a follower's monitor: one type each.

Every message a monitor or a session sends is built from these types and nothing else; the binary
encoding (`encode`/`FrameDecoder`, docs/PROTOCOL.md) is the only thing that touches bytes. A value
inside a view or an output is a tree of None, bool, int, str, bytes, list, dict (str keys) and the
decoded-value types of mvx.isa.structs / mvx.isa.syscalls / mvx.isa.canonical (TimeValue, SockAddr, FlagSet,
Addr, IoVec) and frozenset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERSION = 2


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each way: same protocol version and policy, the expected role."""

    version: int
    role: str
    arch: str
    policy: str


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Leader -> follower: one synced call the leader made. `view` is what is compared
    (mvx.core.sync.view); `ret` None when the leader's monitor let the call run without learning its
    result; `outputs` maps a canonical argument index to the value the call wrote there, in
    ISA-neutral form; `content` a digest of the file bytes a sendfile sends; `clock` the
    (sec, nsec) a clock read returned."""

    seq: int
    cls: str
    view: list
    ret: int | None
    outputs: dict[int, Any] = field(default_factory=dict)
    content: str | None = None
    clock: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """Leader -> follower, before a lockstepped call executes: check yours, then reply Checked."""

    seq: int
    view: list
    content: str | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    """Follower -> leader: the call `seq` was checked and agrees."""

    seq: int


@dataclass(frozen=True, slots=True)
class Ack:
    """Follower -> leader: records up to `seq` were consumed (the leader's window)."""

    seq: int


@dataclass(frozen=True, slots=True)
class SignalBatch:
    """Leader -> follower: signals the leader's program took just before its next synced call
    (after `seq`), delivered `how` ("interrupt" or "rewind"); each (signal, siginfo of 128 bytes
    or b"")."""

    seq: int
    how: str
    sigs: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class End:
    """Leader -> follower: the leader's program ended after `seq - 1` synced calls."""

    seq: int
    status: int | None
    signal: int | None


@dataclass(frozen=True, slots=True)
class StopSession:
    """Leader -> follower: stop your variant now (`reason`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class DivergenceReport:
    """Follower -> leader: the follower found a divergence (its last message)."""

    kind: str
    seq: int
    leader: str
    follower: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FollowerStopped:
    """Follower -> leader: the follower's run was ended from outside (its last message)."""

    reason: str


@dataclass(frozen=True, slots=True)
class FollowerEnded:
    """Follower -> leader: the follower's program ended as the leader's did (its last message)."""

    status: int | None
    signal: int | None


# What the leader receives from a follower / a follower from its leader.
FROM_FOLLOWER = (Hello, Checked, Ack, DivergenceReport, FollowerStopped, FollowerEnded)
FROM_LEADER = (Hello, CallRecord, CheckRequest, SignalBatch, End, StopSession)
MESSAGES = (Hello, CallRecord, CheckRequest, Checked, Ack, SignalBatch, End, StopSession, DivergenceReport,
            FollowerStopped, FollowerEnded)
