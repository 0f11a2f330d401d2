"""The leader/follower synchronisation logic as a sans-IO state machine (in the spirit of h11).

No processes, sockets or ptrace here: the monitors feed canonical calls in and act on the
decisions that come out, so every rule (what is compared, what is replayed, what is a divergence)
is testable with plain data.

The core decides everything; a monitor carries its plans out and decides nothing. The leader's
`LeaderSync.plan` says whether to wait for the followers' check and whether the call's result is
needed, and `LeaderSync.record` builds the whole `CallRecord` (the compared view, ISA-neutral
out-data, the clock reading, the content digest). A follower's `FollowerSync.on_call` checks its
call against the leader's next record and returns a `FollowerPlan`: answer it with the leader's
result and these writes, run it, let it end the program, or a `Divergence`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import xxhash

from mvx import MvxError
from mvx.core.outputs import (
    EpollRegistry,
    OutputError,
    clock_answer,
    clock_reading,
    epoll_events_to_fds,
    writes_for,
)
from mvx.core.policy import Policy
from mvx.core.protocol import Ack, CallRecord, Checked, CheckRequest, End, SignalBatch
from mvx.isa.canonical import Call, IoVec
from mvx.isa.render import render
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import UNKNOWN, Addr, Fd, FlagSet, StructArray, spec_of


class Action(enum.Enum):
    ANSWER = "answer"  # do not execute: the leader's result (and out-data) answer the call
    RUN = "run"  # execute locally (arguments were equal)
    EXIT = "exit"  # the program ends here; statuses are compared at exit


# policy class -> what a follower does with a matching call
FOLLOWER_ACTION = {
    "replicated": Action.ANSWER,
    "retval_only": Action.ANSWER,
    "checked_output": Action.ANSWER,
    "local": Action.RUN,
    "fd_creating": Action.RUN,
    "sensitive": Action.RUN,
    "exit": Action.EXIT,
}
# classes whose follower side never executes (answered from the leader's record)
NOT_EXECUTED = frozenset(cls for cls, action in FOLLOWER_ACTION.items() if action is Action.ANSWER)
# classes whose return values must agree after both variants ran the call (fd numbers, bytes
# read from each variant's own copy of a file); calls returning an fd are always compared
COMPARE_RET = {"fd_creating", "local", "sensitive"}
# classes the leader holds until every follower has checked them (--lockstep sensitive)
LOCKSTEP_SENSITIVE = {"checked_output", "sensitive", "exit"}
# a follower acknowledges every ACK_EVERY records (the leader's window of unacknowledged ones)
ACK_EVERY = 16
# flags of a call that makes a new fd which say how it is made
CLOEXEC_FLAGS = frozenset({"SOCK_CLOEXEC", "O_CLOEXEC", "EPOLL_CLOEXEC"})
NONBLOCK_FLAGS = frozenset({"SOCK_NONBLOCK", "O_NONBLOCK"})


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
    """Whether the call's word-sized argument is one machine word of the variant's ISA."""
    name = call.spec.traits.word_sized
    if name is None:
        return False
    return call.args[call.spec.arg_names.index(name)] == _word_size(call.arch)


def _word_size(arch_name: str) -> int:
    from mvx.isa.arch import get

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
    """A read of a clock (Traits.clock_read), as one clock_gettime of the clock it reads: its clockid
    argument, or the clock its Traits name (gettimeofday reads CLOCK_REALTIME; time the coarse
    real-time clock: the kernel's time() is its seconds, glibc's i386 time() asks for it)."""
    return ["clock_gettime", [call.spec.traits.clock or args[0]]]


# Traits.view_as -> how the call is compared in another call's shape
VIEWS = {"stat": _stat_view}


def view(call: Call) -> list:
    """What is compared of a call: its canonical name and its neutral arguments."""
    v = _plain_view(call)
    traits = call.spec.traits
    if traits.clock_read:
        return _clock_view(call, v[1])
    alias = VIEWS.get(traits.view_as)
    return alias(call, v[1]) if alias else v


def _plain_view(call: Call) -> list:
    names = call.spec.arg_names
    traits = call.spec.traits
    only = traits.compared_only
    drop = dict(traits.fields_not_compared)
    word = traits.word_sized
    unused = traits.unused_for
    if unused and str(call.args[names.index(unused[0])]) not in unused[2]:
        unused = None
    kinds = call.kinds or call.spec.kinds  # Switch kinds resolved per call (fcntl's arg by cmd)
    args = []
    for name, a, kind in zip(names, call.args, kinds):
        if (only is not None and name not in only) or (unused and name == unused[1]) or not kind.compared:
            args.append(None)
        elif name == word:
            args.append([a, _word_size(call.arch)])  # compared by _same_words
        elif name in drop and isinstance(a, dict):
            args.append(neutral({k: v for k, v in a.items() if k not in drop[name]}))
        else:
            args.append(neutral(a))
    return [call.name, args]


def content_digest(data: bytes) -> str:
    """What a call with Traits.sends_file is compared by: a digest of the file bytes it sends,
    XXH3-128 (0.05 ms per MiB here against sha256's 0.7, in each monitor, for every sendfile; both
    sides hash their own variant's copy of the file, so no party chooses both inputs)."""
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def sent_file_range(call: Call) -> tuple[int, int | None, int] | None:
    """(fd, offset or None for the file's own position, count) of the bytes a call with
    Traits.sends_file is about to send; None when the call has no such file."""
    source = call.spec.traits.sends_file
    if source is None:
        return None
    names = call.spec.arg_names
    fd, offset, count = (call.args[names.index(n)] for n in (source, "offset", "count"))
    if not isinstance(fd, int):
        return None
    return fd, offset if isinstance(offset, int) else None, count if isinstance(count, int) else 0


def _holdable(call: Call) -> bool:
    """An output whose whole effect is bytes (or the end of them) on its own fd: sent to a peer
    already connected (sendto without an address), never with control data."""
    traits = call.spec.traits
    if traits.shuts_down:
        return call.args[1] in ("SHUT_RD", "SHUT_WR", "SHUT_RDWR")
    if traits.sends_file:
        return True
    if traits.sends is None:
        return False
    names = call.spec.arg_names
    return "dest_addr" not in names or call.args[names.index("dest_addr")] is None


def sent_bytes(call: Call) -> bytes:
    """The bytes a call with Traits.sends sends (as decoded: at most canonical.MAX_BUF)."""
    value = call.args[call.spec.arg_names.index(call.spec.traits.sends)]
    return value.data if isinstance(value, IoVec) else bytes(value)


def render_view(v: list | None, ret: int | None = None) -> str:
    """A compared view as one strace-like line (a divergence report's leader side: records carry
    no rendered line)."""
    if not v:
        return "?"
    args = ", ".join(_render_neutral(a) for a in v[1])
    return f"{v[0]}({args})" + ("" if ret is None else f" = {ret}")


def _render_neutral(value: Any) -> str:
    if value is None:
        return "_"
    if isinstance(value, bytes):
        text = _escaped(value[:32])
        return f'"{text}"' + ("..." if len(value) > 32 else "")
    if isinstance(value, dict) and set(value) == {"flags", "rest"}:
        parts = list(value["flags"]) + ([hex(value["rest"])] if value["rest"] else [])
        return "|".join(parts) or "0"
    if isinstance(value, list):
        return "[" + ", ".join(_render_neutral(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_render_neutral(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass
class Divergence(Exception):
    """The variants parted ways. `kind`: syscall, arguments, exit, signal, fd, timeout, channel, agent (an
    in-process agent claimed what it was not given or allowed)."""

    kind: str
    seq: int
    leader: str
    follower: str
    detail: str = ""
    late: tuple[int, ...] = ()  # a timeout's: the followers that did not answer in time

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


@dataclass(frozen=True)
class LeaderPlan:
    """What the leader's monitor does with a synced call, in order: send `check` and wait for
    every follower's agreement; then, when `ends`, publish the record and let the call run (the
    program ends); else run the call, learning its result when `wants_ret` (a monitor may let a
    call it need not learn run without an exit stop), and publish `LeaderSync.record`."""

    check: CheckRequest | None
    ends: bool
    wants_ret: bool
    hold: bool = False  # write-behind: answer at once, hold the output until `check` is agreed


# the fds whose outputs may be held (write-behind): streams whose reader is outside the program
HOLDABLE_FDS = frozenset({"socket", "pipe"})


@dataclass(frozen=True)
class FollowerPlan:
    """What a follower's monitor does with its call. ANSWER: do not execute; the call returns
    `ret` with `writes` ((address, bytes) in the follower's own layouts) written first; a new fd
    (`creates_fd`) is a placeholder made with `cloexec`/`nonblock`. RUN: execute it, learning its
    result when `compare_ret` (then `FollowerSync.after_local`). EXIT: let it run; the endings are
    compared. `ack`, when set, goes to the leader."""

    action: Action
    ret: int | None = None
    writes: tuple[tuple[int, bytes], ...] = ()
    creates_fd: bool = False
    cloexec: bool = False
    nonblock: bool = False
    compare_ret: bool = False
    ack: Ack | None = None


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
    """Numbers the leader's synced calls, plans each and turns it into a record."""

    def __init__(self, policy: Policy, lockstep: str = "sensitive", write_behind: bool = False) -> None:
        self.policy = policy
        self.lockstep = lockstep
        self.write_behind = write_behind
        self.seq = 0

    def plan(self, call: Call, cls: str, content: str | None = None, fd_kind: str | None = None) -> LeaderPlan:
        """`call` of class `cls` (with `content`, the digest of the file bytes it sends, for a
        call with Traits.sends_file; `fd_kind`, the kind of file its fd is)."""
        traits = call.spec.traits
        check = CheckRequest(self.seq + 1, view(call), content) if self.needs_lockstep(call, cls) else None
        hold = (check is not None and self.write_behind and self.lockstep == "sensitive" and cls == "checked_output"
                and fd_kind in HOLDABLE_FDS and _holdable(call))
        return LeaderPlan(check, traits.ends, not (traits.fd_table_only and cls == "local"), hold)

    def needs_lockstep(self, call: Call, cls: str | None = None) -> bool:
        """Must the leader wait for every follower's check before executing this call? A change
        of files always waits, whatever --lockstep says: each follower makes it first in its own
        world (FollowerSync.runs_first)."""
        if self.lockstep == "all" or changes_files(call):
            return True
        if self.lockstep == "none":
            return False
        return (cls or self.policy.class_of(call.name) or "local") in LOCKSTEP_SENSITIVE

    def record(self, call: Call, ret: int | None, outputs: dict | None = None, cls: str | None = None, *,
               content: str | None = None, epoll: EpollRegistry | None = None) -> CallRecord:
        """After the leader executed `call`, returning `ret` (None when the monitor let it run
        without learning its result), with the decoded `outputs` ({argument index: value}); the
        epoll registry translates events to fds."""
        cls = cls or self.policy.class_of(call.name) or "local"
        wire = self._wire_outputs(call, cls, ret, outputs or {}, epoll)
        clock = None
        if call.spec.traits.clock_read:
            reading = clock_reading(call, ret, outputs or {})
            clock = tuple(reading) if reading else None
        self.seq += 1
        return CallRecord(self.seq, cls, view(call), ret, wire, content, clock)

    def _wire_outputs(self, call: Call, cls: str, ret: int | None, outputs: dict,
                      epoll: EpollRegistry | None) -> dict[int, Any]:
        """What a follower needs to reproduce the call's out-data, ISA-neutral (mvx.core.outputs)."""
        if cls not in NOT_EXECUTED or ret is None or ret < 0 or not outputs:
            return {}
        wire = {}
        for i, value in outputs.items():
            kind = call.kinds[i]
            if isinstance(kind, StructArray) and kind.layout == "epoll_event":
                try:
                    wire[i] = epoll_events_to_fds(value, call.args[0], epoll)
                except OutputError as exc:
                    raise Divergence("arguments", self.seq + 1, render(call, ret), "-", str(exc)) from None
            else:
                wire[i] = value
        return wire

    def signal_batch(self, sigs: list[tuple[int, bytes]], how: str) -> SignalBatch:
        """Signals delivered to every variant just before the next synced call, the leader's way."""
        return SignalBatch(self.seq, how, tuple(sigs))

    def exit_record(self, status: int | None, signal: int | None) -> End:
        return End(self.seq + 1, status, signal)


class FollowerSync:
    """Checks the follower's calls against the leader's records, in order, and plans each."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.seq = 0

    def check(self, call: Call, request: CheckRequest, content: str | None = None) -> Checked:
        """A lockstep check: raise Divergence if the follower's call differs."""
        self._compare(call, request)
        self._check_content(call, request, content)
        return Checked(request.seq)

    def on_call(self, call: Call, record: CallRecord | End, cls: str | None = None, *, content: str | None = None,
                mem=None, arch=None, epoll: EpollRegistry | None = None, on_placeholder: bool = False) -> FollowerPlan:
        """The follower's `call` (of class `cls` here) against the leader's next record: the plan.
        `mem` (the variant's memory), `arch` and `epoll` build the answer's writes; a call on a
        placeholder fd (one that exists only as the leader's) is never executed there."""
        if isinstance(record, End):
            raise Divergence("syscall", record.seq, _ending(record.status, record.signal), render(call),
                             "the follower made a synced call the leader never made")
        self._compare(call, record, cls)
        self._check_content(call, record, content)
        self.seq = record.seq
        ack = Ack(record.seq) if record.seq % ACK_EVERY == 0 else None
        action = FOLLOWER_ACTION.get(record.cls, Action.RUN)
        traits = call.spec.traits
        if action is Action.EXIT:
            return FollowerPlan(Action.EXIT, ack=ack)
        if action is Action.ANSWER and not traits.follower_runs:
            return self._answer(call, record, mem, arch, epoll, ack)
        if on_placeholder and not traits.fd_table_only and record.ret is not None:
            return self._answer(call, record, mem, arch, epoll, ack)  # nothing is ever executed on a placeholder
        return FollowerPlan(Action.RUN, compare_ret=self.compares_ret(call, record) and not on_placeholder, ack=ack)

    def _answer(self, call: Call, record: CallRecord, mem, arch, epoll, ack: Ack | None) -> FollowerPlan:
        """Do not execute the call: it returns the leader's result with the leader's out-data,
        in this variant's own layouts."""
        ret = record.ret
        if ret is None:
            raise Divergence("arguments", record.seq, render_view(record.view), render(call),
                             "the leader's monitor could not learn this call's result, so it cannot be replayed")
        try:
            if call.spec.traits.clock_read and record.clock:
                ret, writes = clock_answer(call, record.clock, arch)
            else:
                writes = writes_for(call, record.outputs, mem, arch, epoll=epoll)
        except (OutputError, OSError, MvxError) as exc:
            raise Divergence("arguments", record.seq, render_view(record.view, ret), render(call), str(exc)) from None
        if ret >= 0 and word_sized(call):  # one word each (_same_words): ours is filled
            ret = call.args[call.spec.arg_names.index(call.spec.traits.word_sized)]
            writes = [(addr, (data * ret)[:ret]) for addr, data in writes if data]  # a shorter word repeated
        flags = _flag_names(call)
        return FollowerPlan(Action.ANSWER, ret, tuple(writes), isinstance(call.spec.ret, Fd) and ret >= 0,
                            bool(flags & CLOEXEC_FLAGS), bool(flags & NONBLOCK_FLAGS), ack=ack)

    def compares_ret(self, call: Call, record: CallRecord) -> bool:
        """Must this locally run call return what the leader's returned?"""
        if record.ret is None:
            return False
        if isinstance(call.spec.ret, Fd):
            return True
        return record.cls in COMPARE_RET and not call.spec.traits.ret_not_compared

    def chosen_name(self, call: Call, request: CallRecord | CheckRequest) -> tuple[int, bytes] | None:
        """Where the follower's name for a new file differs from the leader's only in a run of up
        to six letters and digits (a name libc made at random: mkstemp, mkdtemp), the (address,
        bytes) that put the leader's name into the follower's own buffer, so that its later calls
        name the same file. None otherwise (the names are then compared as usual)."""
        chosen = call.spec.traits.chosen_name
        if chosen is None or not request.view or request.view[0] != call.name:
            return None
        arg, flags_arg, needs = chosen
        if flags_arg is not None:
            flags = call.args[call.spec.arg_names.index(flags_arg)]
            if not isinstance(flags, FlagSet) or not needs <= flags.names:
                return None
        i = call.spec.arg_names.index(arg)
        mine, theirs = call.args[i], request.view[1][i]
        if not isinstance(mine, bytes) or not isinstance(theirs, bytes) or len(mine) != len(theirs) or mine == theirs:
            return None
        diff = [k for k in range(len(mine)) if mine[k] != theirs[k]]
        if diff[-1] - diff[0] >= 6 or not (mine[diff[0]:diff[-1] + 1] + theirs[diff[0]:diff[-1] + 1]).isalnum():
            return None
        return call.values[i], theirs

    @staticmethod
    def small_draw(call_or_record) -> bool:
        """A draw of at most 8 bytes of randomness (the call with Traits.word_sized: getrandom).
        How many of these a libc makes can differ between variants: glibc's mkstemp mixes a stack
        address and a clock into its first value and redraws with getrandom when that value falls
        outside its fair range (4.5% of 64-bit values), and malloc's tcache key takes one word of
        the ISA. So such a draw is not a point of synchronisation: a follower's extra one runs in
        its own world, a leader's extra record is passed over; where both make one, the leader's
        bytes are replicated as for any input."""
        if isinstance(call_or_record, Call):
            name = call_or_record.spec.traits.word_sized
            return name is not None and call_or_record.args[call_or_record.spec.arg_names.index(name)] <= 8
        view_ = getattr(call_or_record, "view", None)
        if not view_ or not isinstance(view_[0], str):
            return False
        try:
            spec = spec_of(view_[0])
        except (KeyError, MvxError):
            return False
        if spec.traits.word_sized is None:
            return False
        arg = view_[1][spec.arg_names.index(spec.traits.word_sized)]
        return isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], int) and arg[0] <= 8

    def pass_over(self, record: CallRecord) -> Ack | None:
        """The leader's extra draw (one_word_draw) that this follower does not make: consumed."""
        self.seq = record.seq
        return Ack(record.seq) if record.seq % ACK_EVERY == 0 else None

    def runs_first(self, call: Call, cls: str | None) -> bool:
        """Does the follower make this call at the leader's check, before the leader makes it?
        Changes of files and writes into its own world: the leader's copy of the world must not
        change before the follower's has (its copy-on-write view shows the leader's files)."""
        if FOLLOWER_ACTION.get(cls or "", Action.RUN) is not Action.RUN or call.spec.traits.ends:
            return False
        return changes_files(call) or (cls == "sensitive" and call.name in self.policy.in_world)

    def after_local(self, call: Call, ret: int, record: CallRecord) -> None:
        """After a locally run call: fds must get the same numbers, reads of files the same counts."""
        if self.compares_ret(call, record) and ret != record.ret:
            kind = "fd" if isinstance(call.spec.ret, Fd) else "result"
            raise Divergence(kind, record.seq, render_view(record.view, record.ret), render(call, ret),
                             f"return values differ: leader {record.ret}, follower {ret}")

    def on_end(self, status: int | None, signal: int | None, record) -> None:
        """The follower's program ended: the leader's must have ended the same way, at the same point."""
        if not isinstance(record, End):
            raise Divergence("exit", getattr(record, "seq", self.seq + 1), render_view(getattr(record, "view", None)),
                             _ending(status, signal), "the follower ended before the leader's next synced call")
        if signal is not None and signal != record.signal:
            raise Divergence("signal", record.seq, _ending(record.status, record.signal),
                             _ending(status, signal), "the follower was killed by a signal")
        if (status, signal) != (record.status, record.signal):
            raise Divergence("exit", record.seq, _ending(record.status, record.signal),
                             _ending(status, signal), "exit statuses differ")

    def _check_content(self, call: Call, record: CallRecord | CheckRequest, content: str | None) -> None:
        if record.content != content:
            raise Divergence("arguments", record.seq, _leader_line(record), render(call),
                             f"{call.name}: the file bytes it sends differ (digests: leader "
                             f"{str(record.content)[:25]}, follower {str(content)[:25]})")

    def _compare(self, call: Call, record: CallRecord | CheckRequest, cls: str | None = None) -> None:
        mine = view(call)
        theirs = record.view
        record_cls = getattr(record, "cls", None)
        if call.spec.traits.word_sized and theirs and theirs[0] == mine[0]:
            mine, theirs = _same_words(call, mine, theirs)
        if record_cls == "retval_only" and theirs:  # the seed compares no arguments here
            mine, theirs = mine[:1], theirs[:1]
        if mine == theirs:
            if cls is not None and record_cls not in (None, cls):
                raise Divergence("arguments", record.seq, _leader_line(record), render(call),
                                 f"the call is {record_cls} on the leader, {cls} here (its fd is another kind of file)")
            return
        if not theirs or mine[0] != theirs[0]:
            kind, detail = "syscall", f"the leader made {theirs[0] if theirs else '?'}, the follower {mine[0]}"
        else:
            kind = "exit" if call.spec.traits.ends else "arguments"
            detail = _argument_difference(spec_of(mine[0]).arg_names, theirs[1], mine[1])
        raise Divergence(kind, record.seq, _leader_line(record), render(call), detail)


def changes_files(call: Call) -> bool:
    """Does this call change the file system (Traits.changes_fs, or changes_fs_when's flags)?"""
    traits = call.spec.traits
    if traits.changes_fs:
        return True
    when = traits.changes_fs_when
    if when is None:
        return False
    flags = call.args[call.spec.arg_names.index(when[0])]
    return isinstance(flags, FlagSet) and bool(flags.names & when[1])


def _leader_line(record: CallRecord | CheckRequest) -> str:
    return render_view(record.view, getattr(record, "ret", None))


def _flag_names(call: Call) -> set[str]:
    names: set[str] = set()
    for a in call.args:
        if isinstance(a, FlagSet):
            names |= a.names
    return names


def _same_words(call: Call, mine: list, theirs: list) -> tuple[list, list]:
    """Word-sized arguments as [value, word size]: equal when the values are, or when each is
    one word of its own ISA."""
    i = call.spec.arg_names.index(call.spec.traits.word_sized)
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
