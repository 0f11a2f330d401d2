"""The messages that cross the channel between a leader's and a follower's monitor: one type each.

Every message a monitor or a session sends is built from these types and nothing else; the binary
encoding (`encode`/`FrameDecoder`, docs/PROTOCOL.md) is the only thing that touches bytes. A value
inside a view or an output is a tree of None, bool, int, str, bytes, list, dict (str keys) and the
decoded-value types of mvx.isa.structs / mvx.isa.syscalls / mvx.isa.canonical (TimeValue, SockAddr, FlagSet,
Addr, IoVec) and frozenset."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mvx import MvxError
from mvx.isa.canonical import IoVec
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import Addr, FlagSet

VERSION = 4


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each way: same protocol version and policy, the expected role."""

    version: int
    role: str
    arch: str
    policy: str


@dataclass(frozen=True, slots=True)
class Started:
    """Leader -> follower, before any record: the leader's variant exists with this pid. A follower
    starts its own only then, with the same pid in a pid namespace of its own, so that identities
    (getpid, gettid, /proc/PID paths, kill of itself) agree without translation."""

    pid: int


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
    (after `seq`), delivered `how` ("interrupt", "rewind", "pending", "taken": its next call took
    them without a handler, or "suspend": they woke it
    from a call that waits for a signal, and are that call's point of sync); each (signal, siginfo of 128 bytes
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
    forensics: str = ""  # JSON: where the follower's variant was (mvx.mechanics.forensics); "" if unknown


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
FROM_LEADER = (Hello, Started, CallRecord, CheckRequest, SignalBatch, End, StopSession)
MESSAGES = (Hello, CallRecord, CheckRequest, Checked, Ack, SignalBatch, End, StopSession, DivergenceReport,
            FollowerStopped, FollowerEnded, Started)


# ---- the binary encoding (docs/PROTOCOL.md) -------------------------------------------------------

MAX_FRAME = 16 << 20  # bytes of one frame's body
MAX_DEPTH = 32  # nesting of values
_FRAME = struct.Struct("<I")
_U8, _U32, _U64, _I64 = struct.Struct("<B"), struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<q")

# message type codes
CODES = {Hello: 1, CallRecord: 2, CheckRequest: 3, Checked: 4, Ack: 5, SignalBatch: 6, End: 7, StopSession: 8,
         DivergenceReport: 9, FollowerStopped: 10, FollowerEnded: 11, Started: 12}
TYPES = {code: cls for cls, code in CODES.items()}

# value tags
T_NONE, T_FALSE, T_TRUE, T_I64, T_U64, T_BIGINT, T_STR, T_BYTES, T_LIST, T_DICT = range(10)
T_TIME, T_SOCKADDR, T_FLAGS, T_ADDR, T_IOVEC, T_SET, T_TUPLE = range(10, 17)


class ProtocolError(MvxError):
    """A message that cannot be encoded, or bytes that are not a message (one line, naming the
    message and the field)."""


# ---- encoding -------------------------------------------------------------------------------------


class _Writer:
    __slots__ = ("out", "path")

    def __init__(self) -> None:
        self.out = bytearray()
        self.path = ""

    def u8(self, v: int) -> None:
        self.out += _U8.pack(v)

    def u32(self, v: int) -> None:
        self.out += _U32.pack(v)

    def u64(self, v: int) -> None:
        try:
            self.out += _U64.pack(v)
        except (struct.error, TypeError):
            raise ProtocolError(f"{self.path}: {v!r} is not an unsigned 64-bit integer") from None

    def i64(self, v: int) -> None:
        try:
            self.out += _I64.pack(v)
        except (struct.error, TypeError):
            raise ProtocolError(f"{self.path}: {v!r} is not a signed 64-bit integer") from None

    def opt_i64(self, v: int | None) -> None:
        if v is None:
            self.u8(0)
        else:
            self.u8(1)
            self.i64(v)

    def str_(self, v: str) -> None:
        if not isinstance(v, str):
            raise ProtocolError(f"{self.path}: expected a string, got {type(v).__name__}")
        self.bytes_(v.encode("utf-8", "surrogatepass"))

    def opt_str(self, v: str | None) -> None:
        if v is None:
            self.u8(0)
        else:
            self.u8(1)
            self.str_(v)

    def bytes_(self, v: bytes) -> None:
        self.u32(len(v))
        self.out += v

    def value(self, v: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"{self.path}: nested deeper than {MAX_DEPTH}")
        out = self.out
        t = type(v)
        if t is int:  # the common types first, by exact type (bool is not int here)
            if -(1 << 63) <= v < (1 << 63):
                out.append(T_I64)
                out += _I64.pack(v)
                return
        elif v is None:
            out.append(T_NONE)
            return
        elif t is bytes:
            out.append(T_BYTES)
            out += _U32.pack(len(v))
            out += v
            return
        elif t is str:
            raw = v.encode("utf-8", "surrogatepass")
            out.append(T_STR)
            out += _U32.pack(len(raw))
            out += raw
            return
        elif t is list:
            out.append(T_LIST)
            self._items(v, depth)
            return
        if v is None:
            self.u8(T_NONE)
        elif v is False or v is True:
            self.u8(T_TRUE if v else T_FALSE)
        elif isinstance(v, int):
            if -(1 << 63) <= v < (1 << 63):
                self.u8(T_I64)
                self.out += _I64.pack(v)
            elif 0 <= v < (1 << 64):
                self.u8(T_U64)
                self.out += _U64.pack(v)
            else:
                self.u8(T_BIGINT)
                self.bytes_(v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))
        elif isinstance(v, str):
            self.u8(T_STR)
            self.str_(v)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            self.u8(T_BYTES)
            self.bytes_(bytes(v))
        elif isinstance(v, list):
            self.u8(T_LIST)
            self._items(v, depth)
        elif isinstance(v, tuple):
            self.u8(T_TUPLE)
            self._items(v, depth)
        elif isinstance(v, dict):
            self.u8(T_DICT)
            self.u32(len(v))
            for k, item in v.items():
                self.str_(k) if isinstance(k, str) else self._fail(f"dict key {k!r} is not a string")
                self.value(item, depth + 1)
        elif isinstance(v, TimeValue):
            self.u8(T_TIME)
            self.i64(v.sec)
            self.i64(v.nsec)
            self.u8(1 if v.usec else 0)
        elif isinstance(v, SockAddr):
            self.u8(T_SOCKADDR)
            self.value(v.family, depth + 1)
            self.u32(len(v.fields))
            for name, item in v.fields:
                self.str_(name)
                self.value(item, depth + 1)
        elif isinstance(v, FlagSet):
            self.u8(T_FLAGS)
            names = sorted(v.names)
            self.u32(len(names))
            for name in names:
                self.str_(name)
            self.value(v.rest, depth + 1)
        elif isinstance(v, Addr):
            self.u8(T_ADDR)
            self.u64(v.value)
        elif isinstance(v, IoVec):
            self.u8(T_IOVEC)
            self.u32(len(v.parts))
            for part in v.parts:
                self.bytes_(bytes(part))
        elif isinstance(v, (frozenset, set)):
            self.u8(T_SET)
            items = []
            for item in v:
                sub = _Writer()
                sub.path = self.path
                sub.value(item, depth + 1)
                items.append(bytes(sub.out))
            self.u32(len(items))
            for item in sorted(items):  # one order whatever the set's: the bytes are canonical
                self.out += item
        else:
            self._fail(f"cannot send a {type(v).__name__}")

    def _items(self, v, depth: int) -> None:
        self.u32(len(v))
        for item in v:
            self.value(item, depth + 1)

    def _fail(self, what: str):
        raise ProtocolError(f"{self.path}: {what}")


def _encode_message(w: _Writer, m) -> None:
    code = CODES.get(type(m))
    if code is None:
        raise ProtocolError(f"cannot send a {type(m).__name__}: not a protocol message")
    w.out.append(code)
    for label, f, write in _WRITERS[type(m)]:
        w.path = label
        write(w, getattr(m, f))


def _w_outputs(w: _Writer, outputs: dict) -> None:
    w.u32(len(outputs))
    for i in sorted(outputs):
        if not isinstance(i, int) or not 0 <= i < 256:
            raise ProtocolError(f"{w.path}: argument index {i!r} is not 0..255")
        w.u32(i)
        w.value(outputs[i])


def _w_clock(w: _Writer, clock) -> None:
    if clock is None:
        w.u8(0)
        return
    w.u8(1)
    w.i64(clock[0])
    w.i64(clock[1])


def _w_sigs(w: _Writer, sigs) -> None:
    w.u32(len(sigs))
    for sig, info in sigs:
        w.u32(sig)
        w.bytes_(bytes(info))


_WRITE = {"u32": _Writer.u32, "u64": _Writer.u64, "opt_i64": _Writer.opt_i64, "str": _Writer.str_,
          "opt_str": _Writer.opt_str, "value": _Writer.value, "outputs": _w_outputs, "clock": _w_clock,
          "sigs": _w_sigs}

# each message's fields in order, with their encodings (docs/PROTOCOL.md says the same)
_FIELDS = {
    Hello: (("version", "u32"), ("role", "str"), ("arch", "str"), ("policy", "str")),
    CallRecord: (("seq", "u64"), ("cls", "str"), ("view", "value"), ("ret", "opt_i64"), ("outputs", "outputs"),
                 ("content", "opt_str"), ("clock", "clock")),
    CheckRequest: (("seq", "u64"), ("view", "value"), ("content", "opt_str")),
    Checked: (("seq", "u64"),),
    Ack: (("seq", "u64"),),
    Started: (("pid", "u64"),),
    SignalBatch: (("seq", "u64"), ("how", "str"), ("sigs", "sigs")),
    End: (("seq", "u64"), ("status", "opt_i64"), ("signal", "opt_i64")),
    StopSession: (("reason", "str"),),
    DivergenceReport: (("kind", "str"), ("seq", "u64"), ("leader", "str"), ("follower", "str"), ("detail", "str"),
                       ("forensics", "str")),
    FollowerStopped: (("reason", "str"),),
    FollowerEnded: (("status", "opt_i64"), ("signal", "opt_i64")),
}


# per message type: ("Message.field", field, how to write it), in the fields' order
_WRITERS = {cls: [(f"{cls.__name__}.{f}", f, _WRITE[kind]) for f, kind in fields] for cls, fields in _FIELDS.items()}


def encode_batch(messages) -> bytes:
    """One frame holding `messages` back to back (one write for several)."""
    w = _Writer()
    w.u32(0)
    for m in messages:
        _encode_message(w, m)
    size = len(w.out) - 4
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    _FRAME.pack_into(w.out, 0, size)
    return bytes(w.out)


def encode(message) -> bytes:
    """One frame holding one message."""
    return encode_batch((message,))


# ---- decoding -------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "end", "field", "pos", "stack")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.field = "frame"  # "Message.field" being read; `stack` the keys inside its value
        self.stack: list = []

    @property
    def where(self) -> str:
        """The message, field and place in the value being read (built only for an error)."""
        return self.field + "".join(f"[{k!r}]" if isinstance(k, str) else f"[{k}]" for k in self.stack)

    def _short(self, n: int, what: str):
        raise ProtocolError(f"{self.where}: truncated {what} (need {n} bytes, have {self.end - self.pos})")

    def _take(self, n: int, what: str) -> bytes:
        pos = self.pos
        if pos + n > self.end:
            self._short(n, what)
        self.pos = pos + n
        return self.data[pos:pos + n]

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            self._short(1, "u8")
        self.pos = pos + 1
        return self.data[pos]

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            self._short(4, "u32")
        self.pos = pos + 4
        return _U32.unpack_from(self.data, pos)[0]

    def u64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            self._short(8, "u64")
        self.pos = pos + 8
        return _U64.unpack_from(self.data, pos)[0]

    def i64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            self._short(8, "i64")
        self.pos = pos + 8
        return _I64.unpack_from(self.data, pos)[0]

    def flag(self) -> bool:
        b = self.u8()
        if b > 1:
            raise ProtocolError(f"{self.where}: presence byte {b} is not 0 or 1")
        return b == 1

    def opt_i64(self) -> int | None:
        return self.i64() if self.flag() else None

    def bytes_(self) -> bytes:
        n = self.u32()
        return bytes(self._take(n, "bytes"))

    def str_(self) -> str:
        raw = self.bytes_()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{self.where}: a string that is not UTF-8") from None

    def opt_str(self) -> str | None:
        return self.str_() if self.flag() else None

    def count(self, each: int) -> int:
        """An item count, bounded by the bytes left (each item takes at least `each`)."""
        n = self.u32()
        if n * each > self.end - self.pos:
            raise ProtocolError(f"{self.where}: {n} items announced, the frame has room for fewer")
        return n

    def value(self, depth: int = 0) -> Any:
        try:
            value, self.pos = _value(self.data, self.pos, self.end, depth, self.stack)
        except _Bad as bad:
            raise ProtocolError(f"{self.where}: {bad}") from None
        return value

    def _item(self, key, depth: int):
        stack = self.stack
        stack.append(key)
        value = self.value(depth + 1)  # (on an error the stack is left as it is: it names the place)
        stack.pop()
        return value


class _Bad(Exception):
    """A malformed value (what is wrong; the reader adds where)."""


_u32_from, _u64_from, _i64_from = _U32.unpack_from, _U64.unpack_from, _I64.unpack_from


def _need(pos: int, n: int, end: int, what: str) -> None:
    if pos + n > end:
        raise _Bad(f"truncated {what} (need {n} bytes, have {end - pos})")


def _count(data, pos: int, end: int, each: int) -> tuple[int, int]:
    _need(pos, 4, end, "u32")
    n = _u32_from(data, pos)[0]
    if n * each > end - pos - 4:
        raise _Bad(f"{n} items announced, the frame has room for fewer")
    return n, pos + 4


def _blob(data, pos: int, end: int) -> tuple[bytes, int]:
    _need(pos, 4, end, "u32")
    n = _u32_from(data, pos)[0]
    pos += 4
    _need(pos, n, end, "bytes")
    return bytes(data[pos:pos + n]), pos + n


def _text(data, pos: int, end: int) -> tuple[str, int]:
    raw, pos = _blob(data, pos, end)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise _Bad("a string that is not UTF-8") from None


def _value(data, pos: int, end: int, depth: int, stack: list) -> tuple[Any, int]:
    """One tagged value at `pos`: (value, the position after it). One flat function: this runs
    for every argument of every record."""
    if depth > MAX_DEPTH:
        raise _Bad(f"nested deeper than {MAX_DEPTH}")
    if pos >= end:
        raise _Bad("truncated u8 (need 1 bytes, have 0)")
    tag = data[pos]
    pos += 1
    if tag == T_I64:
        _need(pos, 8, end, "i64")
        return _i64_from(data, pos)[0], pos + 8
    if tag == T_NONE:
        return None, pos
    if tag == T_BYTES:
        return _blob(data, pos, end)
    if tag == T_STR:
        return _text(data, pos, end)
    if tag == T_LIST or tag == T_TUPLE:
        n, pos = _count(data, pos, end, 1)
        items = []
        for i in range(n):
            stack.append(i)
            item, pos = _value(data, pos, end, depth + 1, stack)
            stack.pop()
            items.append(item)
        return (items if tag == T_LIST else tuple(items)), pos
    if tag == T_DICT:
        n, pos = _count(data, pos, end, 5)
        out = {}
        for _ in range(n):
            key, pos = _text(data, pos, end)
            if key in out:
                raise _Bad(f"key {key!r} twice")
            stack.append(key)
            out[key], pos = _value(data, pos, end, depth + 1, stack)
            stack.pop()
        return out, pos
    if tag == T_FALSE or tag == T_TRUE:
        return tag == T_TRUE, pos
    if tag == T_FLAGS:
        n, pos = _count(data, pos, end, 4)
        names = []
        for _ in range(n):
            name, pos = _text(data, pos, end)
            names.append(name)
        rest, pos = _value(data, pos, end, depth + 1, stack)
        if not isinstance(rest, int) or isinstance(rest, bool) or names != sorted(set(names)):
            raise _Bad("a flag set needs sorted distinct names and an integer rest")
        return FlagSet(frozenset(names), rest), pos
    if tag == T_TIME:
        _need(pos, 17, end, "time")
        sec, nsec, usec = _i64_from(data, pos)[0], _i64_from(data, pos + 8)[0], data[pos + 16]
        if usec > 1:
            raise _Bad(f"presence byte {usec} is not 0 or 1")
        return TimeValue(sec, nsec, usec == 1), pos + 17
    if tag == T_U64:
        _need(pos, 8, end, "u64")
        v = _u64_from(data, pos)[0]
        if v < (1 << 63):
            raise _Bad(f"u64 tag for {v}, which is an i64 (not canonical)")
        return v, pos + 8
    if tag == T_BIGINT:
        raw, pos = _blob(data, pos, end)
        v = int.from_bytes(raw, "little", signed=True)
        if -(1 << 63) <= v < (1 << 64) or raw != v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True):
            raise _Bad(f"big integer {v} not in its canonical form")
        return v, pos
    if tag == T_SOCKADDR:
        family, pos = _value(data, pos, end, depth + 1, stack)
        n, pos = _count(data, pos, end, 5)
        fields = []
        for _ in range(n):
            name, pos = _text(data, pos, end)
            stack.append(name)
            item, pos = _value(data, pos, end, depth + 1, stack)
            stack.pop()
            fields.append((name, item))
        return SockAddr(family, tuple(fields)), pos
    if tag == T_ADDR:
        _need(pos, 8, end, "u64")
        return Addr(_u64_from(data, pos)[0]), pos + 8
    if tag == T_IOVEC:
        n, pos = _count(data, pos, end, 4)
        parts = []
        for _ in range(n):
            part, pos = _blob(data, pos, end)
            parts.append(part)
        return IoVec(tuple(parts)), pos
    if tag == T_SET:
        n, pos = _count(data, pos, end, 1)
        items, last = [], None
        for _ in range(n):
            start = pos
            item, pos = _value(data, pos, end, depth + 1, stack)
            raw = data[start:pos]
            if last is not None and raw <= last:
                raise _Bad("set items not in canonical order")
            last = raw
            items.append(item)
        try:
            out = frozenset(items)
        except TypeError:
            raise _Bad("a set item that cannot be in a set") from None
        if len(out) != n:  # {True, 1}: distinct bytes, one item (it would not re-encode the same)
            raise _Bad("set items equal as values (not canonical)")
        return out, pos
    raise _Bad(f"unknown value tag 0x{tag:02x}")


def _r_outputs(r: _Reader) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for _ in range(r.count(5)):
        i = r.u32()
        if i > 255 or i in out or (out and i < max(out)):
            raise ProtocolError(f"{r.where}: argument index {i} out of range, repeated or out of order")
        out[i] = r._item(i, 0)
    return out


def _r_clock(r: _Reader) -> tuple[int, int] | None:
    return (r.i64(), r.i64()) if r.flag() else None


def _r_sigs(r: _Reader) -> tuple[tuple[int, bytes], ...]:
    return tuple((r.u32(), r.bytes_()) for _ in range(r.count(8)))


_READ = {"u32": _Reader.u32, "u64": _Reader.u64, "opt_i64": _Reader.opt_i64, "str": _Reader.str_,
         "opt_str": _Reader.opt_str, "value": _Reader.value, "outputs": _r_outputs, "clock": _r_clock,
         "sigs": _r_sigs}


def decode_body(body: bytes) -> list:
    """The messages of one frame's body."""
    r = _Reader(body)
    out = []
    if not body:
        raise ProtocolError("frame: empty (a frame holds at least one message)")
    while r.pos < len(body):
        r.field = "frame"
        code = r.u8()
        cls = TYPES.get(code)
        if cls is None:
            raise ProtocolError(f"frame: unknown message type 0x{code:02x}")
        args = []
        for label, read in _READERS[cls]:
            r.field = label
            args.append(read(r))
        out.append(cls(*args))
    return out


# per message type: ("Message.field", how to read it), in the fields' order
_READERS = {cls: [(f"{cls.__name__}.{f}", _READ[kind]) for f, kind in fields] for cls, fields in _FIELDS.items()}


class FrameDecoder:
    """Feed received bytes; iterate whole messages. A frame over the size limit is rejected from
    its header, before its body is buffered."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> Iterator:
        self._buf += data
        while len(self._buf) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(self._buf)
            if size > self.max_frame:
                raise ProtocolError(f"frame: {size} bytes announced, over the {self.max_frame}-byte limit")
            if len(self._buf) < _FRAME.size + size:
                return
            body = bytes(self._buf[_FRAME.size:_FRAME.size + size])
            del self._buf[:_FRAME.size + size]
            yield from decode_body(body)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (non-zero at a peer's EOF means a truncated frame)."""
        return len(self._buf)


# ---- the handshake --------------------------------------------------------------------------------


def hello(role: str, arch: str, policy: str) -> Hello:
    return Hello(VERSION, role, arch, policy)


def check_hello(message, expect_role: str, policy: str) -> None:
    """The version handshake: same protocol version, the expected role, the same policy."""
    if not isinstance(message, Hello):
        raise ProtocolError(f"expected Hello, got {type(message).__name__}")
    if message.version != VERSION:
        raise ProtocolError(f"protocol version {message.version!r}, this mvx speaks {VERSION}")
    if message.role != expect_role:
        raise ProtocolError(f"peer is a {message.role!r}, expected a {expect_role}")
    if message.policy != policy:
        raise ProtocolError(f"peer runs policy {message.policy!r}, this side {policy!r}")
