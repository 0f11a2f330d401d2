"""Raw (arch, nr, args) -> canonical `Call`; decoding arguments from tracee memory.

    call = normalize(RawSyscall("i386", 102, (18, 0xffd0)), mem)     # socketcall(SYS_ACCEPT4, ...)
    call.name == "accept4"
    call = decode_outputs(call, mem, ret)                             # after the call returned

Raw register values are unsigned 64-bit; for a 32-bit tracee (i386) only the low 32 bits are
meaningful, so every argument is masked to the arch's word size and then sign-extended as its kind
says (Int "int" from 32 bits, "long" from the word size, "s64" from 64 bits).

Decoded values (all ISA-neutral): ints; `FlagSet` for flag words; a constant name (str) for enum
values (int when no name matches); "AT_FDCWD" for that dirfd; signal names; bytes for paths and
buffers; `IoVec` for iovec data; `TimeValue`; dicts for structs; `SockAddr`; frozensets for
sigsets (signal names) and fd_sets (fds); `Addr` for addresses (never compared) and for pointers
not decoded (no memory reader, or an output before `decode_outputs`); `UNKNOWN` when even the
sub-call's registers are unknown (i386 socketcall without a memory reader: the canonical name is
still resolved from the sub-call number, `call.complete` is False).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from mvx import MvxError
from mvx.isa import structs
from mvx.isa import syscalls as S
from mvx.isa.arch import get as _arch
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import UNKNOWN, Addr, FlagSet, Kind

__all__ = [
    "MAX_BUF",
    "BytesMemory",
    "Call",
    "IoVec",
    "Memory",
    "MemoryFault",
    "RawSyscall",
    "decode_enum",
    "decode_flags",
    "decode_outputs",
    "encode_flags",
    "encode_value",
    "normalize",
    "signal_name",
]

MAX_BUF = 1 << 20  # bytes read per buffer argument at most
MAX_PATH = 4096
MAX_ITEMS = 4096


class MemoryFault(MvxError):
    """Tracee memory that cannot be read."""


class Memory(Protocol):
    def read(self, addr: int, n: int) -> bytes: ...

    def read_cstr(self, addr: int, limit: int = MAX_PATH) -> bytes: ...


class BytesMemory:
    """A test double of tracee memory: {address: bytes} regions."""

    def __init__(self, regions: dict[int, bytes] | None = None):
        self.regions = dict(regions or {})

    def _find(self, addr: int) -> tuple[int, bytes]:
        for base, data in self.regions.items():
            if base <= addr < base + len(data):
                return base, data
        raise MemoryFault(f"address 0x{addr:x} is not mapped")

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        base, data = self._find(addr)
        out = data[addr - base:addr - base + n]
        if len(out) < n:
            raise MemoryFault(f"read of {n} bytes at 0x{addr:x} runs past its region")
        return bytes(out)

    def read_cstr(self, addr: int, limit: int = MAX_PATH) -> bytes:
        base, data = self._find(addr)
        chunk = data[addr - base:addr - base + limit]
        return bytes(chunk.split(b"\0", 1)[0])


@dataclass(frozen=True)
class RawSyscall:
    arch: str
    nr: int
    args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class IoVec:
    """Data of an iovec array: its parts; compares (and hashes) by the joined bytes."""

    parts: tuple[bytes, ...]

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)

    def __eq__(self, other):
        if not isinstance(other, IoVec):
            return NotImplemented
        return self.data == other.data

    def __hash__(self):
        return hash(self.data)


@dataclass(frozen=True)
class Call:
    """A canonical syscall. `args` are decoded inputs (outputs are `Addr` until decode_outputs),
    `outputs` maps argument index -> decoded output, `values` are the raw canonical argument
    values (ints or pre-decoded literals) that decode_outputs reads pointers from."""

    name: str
    args: tuple
    raw: RawSyscall
    spec: S.Spec
    raw_name: str
    values: tuple = ()
    kinds: tuple[Kind, ...] = ()  # the spec's kinds with Switch resolved
    ret: int | None = None
    outputs: dict = field(default_factory=dict)
    complete: bool = True
    subcall: str | None = None
    alias: S.Alias | None = None

    @property
    def arch(self) -> str:
        return self.raw.arch

    @property
    def errno(self) -> int | None:
        if self.ret is not None and -4096 < self.ret < 0:
            return -self.ret
        return None

    def arg(self, name: str):
        return self.args[self.spec.arg_names.index(name)]

    def output(self, name: str):
        return self.outputs.get(self.spec.arg_names.index(name))


# --------------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------------






def _bits(a, size: str) -> int:
    return {"int": 32, "long": 8 * a.word_size, "s64": 64, "u64": 64}[size]


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _uint(v: int, bits: int) -> int:
    return v & ((1 << bits) - 1)


def _family(a, fam) -> list[str]:
    if isinstance(fam, tuple):
        return list(fam)
    names = set(a.consts) | set(a.neutral_consts)
    return sorted(n for n in names if n.startswith(fam))


@functools.cache
def _flag_plan(arch_name: str, kind: S.Flags):
    a = _arch(arch_name)
    fields = []
    for mask, names in kind.fields:
        m = mask if isinstance(mask, int) else S.const_or_none(a, mask)
        if m is None:
            continue
        vals = [(n, S.const_or_none(a, n)) for n in names]
        fields.append((m, [(n, v) for n, v in vals if v is not None]))
    drop = 0
    for n in kind.drop:
        drop |= S.const_or_none(a, n) or 0
        if n == "O_LARGEFILE":  # the kernel's value, whatever libc says (see gen_archdata.py)
            drop |= a.kernel_consts["O_LARGEFILE"]
    skip = set(kind.exclude) | set(kind.drop) | {n for _, ns in kind.fields for n in ns}
    bits = []
    for n in _family(a, kind.family):
        if n in skip or n.endswith(("_MASK", "_SHIFT")):
            continue
        v = S.const_or_none(a, n)
        if v and v > 0:
            bits.append((n, v))
    seen = set()
    uniq = []
    for n, v in sorted(bits, key=lambda nv: (-nv[1].bit_count(), nv[1], len(nv[0]), nv[0])):
        if v in seen:
            continue
        seen.add(v)
        uniq.append((n, v))
    return tuple(fields), drop, tuple(uniq)


def decode_flags(arch, kind: S.Flags, value: int) -> FlagSet:
    """A flag word -> FlagSet of ISA-neutral names (+ bits no name covers)."""
    a = _arch(arch)
    fields, drop, bits = _flag_plan(a.name, kind)
    rest = value & ~drop
    names = set()
    for mask, vals in fields:
        v = rest & mask
        for n, nv in vals:
            if nv == v:
                names.add(n)
                rest &= ~mask
                break
    if kind.signal_mask:
        sig = rest & kind.signal_mask
        rest &= ~kind.signal_mask
        if sig:
            names.add(signal_name(a, sig))
    for n, v in bits:
        if rest & v == v:
            names.add(n)
            rest &= ~v
    return FlagSet(frozenset(names), rest)


def encode_flags(arch, kind: S.Flags, fs: FlagSet) -> int:
    """Inverse of decode_flags for `arch`."""
    a = _arch(arch)
    value = fs.rest
    for n in fs.names:
        if n.startswith("SIG") and kind.signal_mask:
            value |= signal_number(a, n)
        else:
            value |= S.const(a, n)
    return value


@functools.cache
def _enum_plan(arch_name: str, kind: S.Enum) -> dict[int, str]:
    a = _arch(arch_name)
    canon = dict(kind.canon)
    out: dict[int, str] = {}
    for n in _family(a, kind.family):
        if n in kind.exclude or n.endswith(("_MAX", "_MASK")):
            continue
        v = S.const_or_none(a, n)
        if v is None:
            continue
        name = canon.get(n, n)
        if v not in out:
            out[v] = name
        elif out[v] != name and isinstance(kind.family, str):
            # prefer names listed earlier in canon targets, then shorter, then alphabetical
            best = min((out[v], name), key=lambda x: (x.endswith(("_OLD", "_NEW")), len(x), x))
            out[v] = best
    return out


def decode_enum(arch, kind: S.Enum, value: int) -> str | int:
    a = _arch(arch)
    v = value & ~kind.drop_bits if kind.drop_bits else value
    return _enum_plan(a.name, kind).get(v, v)


def signal_name(arch, sig: int) -> str | int:
    a = _arch(arch)
    for n in S.SIGNALS:
        if a.consts.get(n) == sig:
            return n
    if 32 <= sig <= 64:
        return f"SIGRT_{sig - 32}"
    return sig


def signal_number(arch, name: str) -> int:
    a = _arch(arch)
    if name.startswith("SIGRT_"):
        return 32 + int(name[6:])
    return a.consts[name]


def _sigset(a, data: bytes) -> frozenset:
    mask = int.from_bytes(data[:8], "little")
    out = set()
    for i in range(64):
        if mask >> i & 1:
            out.add(signal_name(a, i + 1))
    return frozenset(out)


def encode_value(arch, kind: Kind, value) -> int:
    """A decoded scalar back to the raw register value of `arch` (flags, enums, fds, ints)."""
    a = _arch(arch)
    if isinstance(kind, S.Flags):
        return encode_flags(a, kind, value)
    if isinstance(value, Addr):
        return value.value
    if isinstance(value, str):
        if value.startswith("SIG"):
            return signal_number(a, value)
        return S.const(a, value)
    if value is None:
        return 0
    return int(value)


# --------------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, a, mem, values, max_buf):
        self.a = a
        self.mem = mem
        self.values = values
        self.max_buf = max_buf
        self.decoded: list = []

    def uval(self, i: int, bits: int | None = None) -> int:
        v = self.values[i]
        if not isinstance(v, int):
            return 0
        return _uint(v, bits or 8 * self.a.word_size)

    def read_int(self, addr: int, size: str, signed: bool = True) -> int:
        n = _bits(self.a, size) // 8
        return structs.read_int(self.mem.read(addr, n), 0, n, signed)

    def words(self, addr: int, count: int) -> list[int]:
        w = self.a.word_size
        data = self.mem.read(addr, w * count)
        return [structs.read_int(data, i * w, w, False) for i in range(count)]


def _resolve_switch(kind: Kind, decoded: list, ctx: _Ctx | None = None) -> Kind:
    while isinstance(kind, S.Switch):
        raw = None
        if ctx is not None and kind.raw and kind.on < len(ctx.values) and isinstance(ctx.values[kind.on], int):
            raw = _sext(ctx.values[kind.on], 32)
        kind = kind.pick(decoded[kind.on] if kind.on < len(decoded) else None, raw,
                         (lambda n, a=ctx.a: S.const_or_none(a, n)) if ctx is not None else None)
    return kind


def _decode_scalar(a, kind: Kind, v: int):
    if isinstance(kind, S.Int):
        return _sext(v, _bits(a, kind.size))
    if isinstance(kind, S.Uint):
        return _uint(v, _bits(a, kind.size))
    if isinstance(kind, S.Fd):
        return _sext(v, 32)
    if isinstance(kind, S.DirFd):
        fd = _sext(v, 32)
        return "AT_FDCWD" if fd == a.consts.get("AT_FDCWD", -100) else fd
    if isinstance(kind, S.Ptr):
        return Addr(_uint(v, 8 * a.word_size))
    if isinstance(kind, S.Signal):
        return signal_name(a, _uint(v, 32))
    if isinstance(kind, S.FileMode):
        return _uint(v, 32)
    if isinstance(kind, S.Uid):
        u = _uint(v, kind.bits)
        return -1 if u == (1 << kind.bits) - 1 else u
    if isinstance(kind, S.Flags):
        return decode_flags(a, kind, _uint(v, _bits(a, kind.size)))
    if isinstance(kind, S.Enum):
        return decode_enum(a, kind, _sext(v, 32))
    raise TypeError(kind)


_SCALARS = (S.Int, S.Uint, S.Fd, S.DirFd, S.Ptr, S.Signal, S.FileMode, S.Uid, S.Flags, S.Enum)

# Struct fields given a kind after decoding (everything else stays an int).
FIELD_KINDS: dict[tuple[str, str], Kind] = {
    ("epoll_event", "events"): S.EPOLL_EVENTS,
    ("epoll_event", "data"): S.Ptr(),  # opaque user data, often a pointer: never compared
    ("pollfd", "events"): S.Flags(S.POLL_EVENTS.family, size="int"),
    ("pollfd", "revents"): S.Flags(S.POLL_EVENTS.family, size="int"),
    ("sigaction", "sa_flags"): S.SA_FLAGS,
    ("old_sigaction", "sa_flags"): S.SA_FLAGS,
    ("sigaction", "sa_restorer"): S.Ptr(),
    ("old_sigaction", "sa_restorer"): S.Ptr(),
    ("iovec", "iov_base"): S.Ptr(),
    ("clone_args", "flags"): S.Flags("CLONE_", size="u64"),
    ("clone_args", "exit_signal"): S.Signal(),
    ("clone_args", "stack"): S.Ptr(), ("clone_args", "tls"): S.Ptr(), ("clone_args", "pidfd"): S.Ptr(),
    ("clone_args", "child_tid"): S.Ptr(), ("clone_args", "parent_tid"): S.Ptr(),
    ("clone_args", "set_tid"): S.Ptr(), ("clone_args", "cgroup"): S.Ptr(),
}


def _struct_value(a, layout_name: str, data: bytes):
    v = structs.decode(a, layout_name, data)
    if isinstance(v, dict):
        for f, val in list(v.items()):
            k = FIELD_KINDS.get((layout_name, f))
            if layout_name.endswith("sigaction") and f == "sa_handler":
                v[f] = {0: "SIG_DFL", 1: "SIG_IGN"}.get(val, Addr(val))
            elif layout_name.endswith("sigaction") and f == "sa_mask":
                v[f] = _sigset(a, val.to_bytes(8, "little"))
            elif layout_name.startswith("rlimit") and isinstance(val, int):
                fsize = structs.layout(a, layout_name).fields[f].size
                v[f] = "RLIM_INFINITY" if val == (1 << 8 * fsize) - 1 else val
            elif isinstance(k, S.Ptr) and isinstance(val, int):
                v[f] = Addr(val)  # as wide as its field (epoll_event's data is 64 bits on i386 too)
            elif k is not None and isinstance(val, int):
                v[f] = _decode_scalar(a, k, val)
    return v


def _read_struct(ctx: _Ctx, layout_name: str, addr: int):
    size = structs.layout(ctx.a, layout_name).size
    return _struct_value(ctx.a, layout_name, ctx.mem.read(addr, size))


def _iovecs(ctx: _Ctx, addr: int, count: int) -> list[tuple[int, int]]:
    count = min(count, MAX_ITEMS)
    size = structs.layout(ctx.a, "iovec").size
    return structs.decode_iovecs(ctx.a, ctx.mem.read(addr, size * count), count)


def _gather(ctx: _Ctx, iovs, total: int | None = None) -> IoVec:
    parts, left = [], ctx.max_buf if total is None else min(total, ctx.max_buf)
    for base, n in iovs:
        take = min(n, left)
        parts.append(ctx.mem.read(base, take) if take else b"")
        left -= take
    return IoVec(tuple(parts))


def _sockaddr(ctx: _Ctx, addr: int, n: int) -> SockAddr:
    return structs.decode_sockaddr(ctx.a, ctx.mem.read(addr, min(n, 128)))


def _msghdr(ctx: _Ctx, addr: int, data_len: int | None) -> dict:
    h = structs.decode(ctx.a, "msghdr", ctx.mem.read(addr, structs.layout(ctx.a, "msghdr").size))
    out: dict[str, Any] = {}
    out["msg_name"] = (_sockaddr(ctx, h["msg_name"], h["msg_namelen"])
                       if h["msg_name"] and h["msg_namelen"] else None)
    out["msg_iov"] = _gather(ctx, _iovecs(ctx, h["msg_iov"], h["msg_iovlen"]), data_len)
    clen = min(h["msg_controllen"], ctx.max_buf)
    out["msg_control"] = (decode_cmsgs(ctx.a, ctx.mem.read(h["msg_control"], clen))
                          if h["msg_control"] and clen else ())
    out["msg_flags"] = h["msg_flags"]
    return out


def _msghdr_room(ctx: _Ctx, addr: int) -> dict:
    """recvmsg's msghdr before the call: only the room it gives (the buffers' contents are what the
    call overwrites; the control buffer's size is the ISA's CMSG_SPACE, so only whether there is one)."""
    h = structs.decode(ctx.a, "msghdr", ctx.mem.read(addr, structs.layout(ctx.a, "msghdr").size))
    return {"msg_namelen": h["msg_namelen"] if h["msg_name"] else None,
            "msg_iov": tuple(n for _, n in _iovecs(ctx, h["msg_iov"], h["msg_iovlen"])),
            "msg_control": bool(h["msg_control"] and h["msg_controllen"])}


def _cmsg_align(a, n: int) -> int:
    w = a.word_size  # CMSG_ALIGN: sizeof(long) of the ISA (compat_cmsghdr on i386)
    return (n + w - 1) // w * w


def decode_cmsgs(arch, data: bytes) -> tuple[dict, ...]:
    """A control buffer -> ({level, type, data}, ...): level and type by name where known
    (syscalls.CMSG_TYPES), data as syscalls.CMSG_PAYLOADS says (SCM_RIGHTS: a tuple of fds,
    SCM_CREDENTIALS: a ucred dict), else bytes. The cmsghdr is 16 bytes on x86_64, 12 on i386."""
    a = _arch(arch)
    head = structs.layout(a, "cmsghdr").size
    out, pos = [], 0
    while pos + head <= len(data):
        h = structs.decode(a, "cmsghdr", data[pos:pos + head])
        n = h["cmsg_len"]
        if n < head or pos + n > len(data):
            break
        body = data[pos + _cmsg_align(a, head):pos + n]
        level = decode_enum(a, S.LEVELS, h["cmsg_level"])
        types = S.CMSG_TYPES.get(level)
        ctype = decode_enum(a, types, h["cmsg_type"]) if types else h["cmsg_type"]
        payload = S.CMSG_PAYLOADS.get((level, ctype))
        if payload == "fds":
            value: Any = tuple(structs.read_int(body, 4 * i, 4, True) for i in range(len(body) // 4))
        elif payload and len(body) >= structs.layout(a, payload).size:
            value = structs.decode(a, payload, body)
        else:
            value = bytes(body)
        out.append({"level": level, "type": ctype, "data": value})
        pos += _cmsg_align(a, n)
    return tuple(out)


def encode_cmsgs(arch, cmsgs) -> list[bytes]:
    """decode_cmsgs' inverse for `arch`: one record each, padded to the ISA's alignment."""
    a = _arch(arch)
    head = structs.layout(a, "cmsghdr").size
    records = []
    for c in cmsgs:
        level, ctype, value = c["level"], c["type"], c["data"]
        payload = S.CMSG_PAYLOADS.get((level, ctype))
        if payload == "fds":
            body = b"".join((int(fd) & 0xFFFFFFFF).to_bytes(4, "little") for fd in value)
        elif payload and isinstance(value, dict):
            body = structs.encode(a, payload, value)
        else:
            body = bytes(value)
        types = S.CMSG_TYPES.get(level)
        hdr = structs.encode(a, "cmsghdr", {
            "cmsg_len": _cmsg_align(a, head) + len(body),
            "cmsg_level": encode_value(a, S.LEVELS, level),
            "cmsg_type": encode_value(a, types, ctype) if types else int(ctype)})
        rec = hdr + bytes(_cmsg_align(a, head) - head) + body
        records.append(rec + bytes(_cmsg_align(a, len(rec)) - len(rec)))
    return records


def _fdset(ctx: _Ctx, addr: int, nfds: int) -> frozenset:
    w = ctx.a.word_size
    nbytes = (max(nfds, 0) + 8 * w - 1) // (8 * w) * w
    mask = int.from_bytes(ctx.mem.read(addr, nbytes), "little")
    return frozenset(i for i in range(max(nfds, 0)) if mask >> i & 1)


def _decode_pointer(ctx: _Ctx, kind: Kind, addr: int, *, ret: int | None = None, out: bool = False):
    """Decode what a pointer argument points to (input at entry, output after the call)."""
    a = ctx.a
    if isinstance(kind, S.Path):
        return ctx.mem.read_cstr(addr, MAX_PATH)
    if isinstance(kind, S.StrArray):
        items, p = [], addr
        for _ in range(MAX_ITEMS):
            (ptr,) = ctx.words(p, 1)
            if not ptr:
                break
            items.append(ctx.mem.read_cstr(ptr, MAX_PATH))
            p += a.word_size
        return tuple(items)
    if isinstance(kind, S.InBuf):
        n = kind.size if kind.size is not None else ctx.uval(kind.len_arg)
        return ctx.mem.read(addr, min(n, ctx.max_buf))
    if isinstance(kind, S.OutBuf):
        if kind.len_from_ret:  # never past the buffer: MSG_TRUNC returns more than it writes
            n = ret or 0 if kind.len_arg is None else min(ret or 0, ctx.uval(kind.len_arg))
        elif kind.len_ptr_arg is not None:
            lp = ctx.uval(kind.len_ptr_arg)
            n = ctx.read_int(lp, "int", False) if lp else 0
        else:
            n = ctx.uval(kind.len_arg)
        return ctx.mem.read(addr, min(max(n, 0), ctx.max_buf))
    if isinstance(kind, (S.InStruct, S.OutStruct, S.InOutStruct)):
        return _read_struct(ctx, kind.layout, addr)
    if isinstance(kind, S.StructArray):
        if kind.count is not None:
            n = kind.count
        elif out and kind.count_from_ret:
            n = ret or 0
        else:
            n = ctx.uval(kind.count_arg, 32)
        n = min(n, MAX_ITEMS)
        size = structs.layout(a, kind.layout).size
        data = ctx.mem.read(addr, size * n)
        return tuple(_struct_value(a, kind.layout, data[i * size:(i + 1) * size]) for i in range(n))
    if isinstance(kind, S.IovecIn):
        return _gather(ctx, _iovecs(ctx, addr, ctx.uval(kind.count_arg, 32)))
    if isinstance(kind, S.IovecOut):
        return _gather(ctx, _iovecs(ctx, addr, ctx.uval(kind.count_arg, 32)), max(ret or 0, 0))
    if isinstance(kind, S.SockAddrIn):
        return _sockaddr(ctx, addr, ctx.uval(kind.len_arg, 32))
    if isinstance(kind, S.SockAddrOut):
        lp = ctx.uval(kind.len_ptr_arg)
        n = ctx.read_int(lp, "int", False) if lp else 128
        return _sockaddr(ctx, addr, n)
    if isinstance(kind, (S.InOutInt, S.OutInt)):
        return ctx.read_int(addr, kind.size, True)
    if isinstance(kind, S.OutInts):
        data = ctx.mem.read(addr, 4 * kind.count)
        return tuple(structs.read_int(data, 4 * i, 4, True) for i in range(kind.count))
    if isinstance(kind, (S.SigSetIn, S.SigSetOut)):
        n = kind.size if kind.size is not None else ctx.uval(kind.size_arg)
        return _sigset(a, ctx.mem.read(addr, min(n, 8)))
    if isinstance(kind, S.FdSet):
        return _fdset(ctx, addr, _sext(ctx.uval(kind.nfds_arg, 32), 32))
    if isinstance(kind, S.MsgHdrOut) and not out:
        return _msghdr_room(ctx, addr)
    if isinstance(kind, (S.MsgHdrIn, S.MsgHdrOut)):
        return _msghdr(ctx, addr, ret if out else None)
    if isinstance(kind, S.Dirents):
        return tuple(structs.decode_dirents(a, ctx.mem.read(addr, max(ret or 0, 0)), kind.layout))
    raise TypeError(kind)


def _decode_in(ctx: _Ctx, kind: Kind, v):
    a = ctx.a
    if not isinstance(v, int):  # a pre-decoded literal (e.g. fstat's "" path)
        return v
    if isinstance(kind, _SCALARS):
        return _decode_scalar(a, kind, v)
    addr = _uint(v, 8 * a.word_size)
    if kind.direction == "out":
        return Addr(addr)
    if addr == 0:
        return None
    if ctx.mem is None:
        return Addr(addr)
    return _decode_pointer(ctx, kind, addr)


def _source_value(a, src, raw_args):
    if isinstance(src, int):
        return raw_args[src]
    if isinstance(src, str):
        return S.const(a, src) if not src.startswith("SIG") else signal_number(a, src)
    if isinstance(src, S.Lit):
        return src.value
    if isinstance(src, S.Pair):
        return (_uint(raw_args[src.hi], 32) << 32) | _uint(raw_args[src.lo], 32)
    if isinstance(src, S.Mul):
        return _uint(raw_args[src.arg], 8 * a.word_size) * src.factor
    if isinstance(src, S.MsToTime):
        ms = _sext(raw_args[src.arg], 32)
        return None if ms < 0 else TimeValue(ms // 1000, ms % 1000 * 1_000_000)
    raise TypeError(src)


def _const_source(a, src: str) -> int:
    value = 0
    for part in src.split("|"):
        value |= signal_number(a, part) if part.startswith("SIG") else S.const(a, part)
    return value


_STATIC: dict[tuple[str, str], tuple] = {}


def _static(a, raw_name: str) -> tuple:
    """What a raw name resolves to on an arch whatever its arguments: alias, canonical name, spec
    and argument kinds (looked up once: tables do not change)."""
    key = (a.name, raw_name)
    hit = _STATIC.get(key)
    if hit is None:
        alias = S.alias_for(a, raw_name)
        canonical = alias.target if alias else raw_name
        spec = S.spec_of(canonical)
        hit = _STATIC[key] = (alias, canonical, spec, S.alias_kinds(spec, alias))
    return hit


def _resolve(a, raw: RawSyscall, raw_name: str, raw_args: tuple, mem, max_buf, subcall=None) -> Call:
    alias, canonical, spec, kinds = _static(a, raw_name)
    if alias and alias.args is not None:
        values = [(_const_source(a, s) if isinstance(s, str) else _source_value(a, s, raw_args))
                  for s in alias.args]
    else:
        values = list(raw_args[:spec.nargs])
    values += [0] * (spec.nargs - len(values))
    ctx = _Ctx(a, mem, values, max_buf)
    resolved = []
    for k, v in zip(kinds, values):
        k = _resolve_switch(k, ctx.decoded, ctx)
        resolved.append(k)
        try:
            ctx.decoded.append(_decode_in(ctx, k, v))
        except (MemoryFault, structs.StructError):
            ctx.decoded.append(Addr(_uint(v, 8 * a.word_size)) if isinstance(v, int) else v)
    return Call(canonical, tuple(ctx.decoded), raw, spec, raw_name, tuple(values), tuple(resolved),
                subcall=subcall, alias=alias)


def normalize(raw: RawSyscall, mem: Memory | None = None, *, max_buf: int = MAX_BUF) -> Call:
    """The canonical Call of a raw syscall (inputs decoded when `mem` is given)."""
    a = _arch(raw.arch)
    raw_name = a.name_of(raw.nr)
    wmask = (1 << 8 * a.word_size) - 1
    args = tuple(int(x) & wmask for x in raw.args) + (0,) * (6 - len(raw.args))
    raw = RawSyscall(a.name, raw.nr, args)
    dm = S.demux_for(a, raw_name)
    if isinstance(dm, S.MemDemux):
        sel = args[dm.selector_arg] if dm.selector_arg is not None else None
        entry = dm.table.get(sel)
        if entry is None:
            return _resolve(a, raw, raw_name, args, mem, max_buf)
        sub, nwords = entry
        if mem is None:
            canonical = S.canonical_of(a, sub)
            spec = S.spec_of(canonical)
            return Call(canonical, (UNKNOWN,) * spec.nargs, raw, spec, raw_name, (UNKNOWN,) * spec.nargs,
                        spec.kinds, complete=False, subcall=sub, alias=S.alias_for(a, sub))
        try:
            words = ctx_words(a, mem, args[dm.ptr_arg], nwords)
        except MemoryFault:
            canonical = S.canonical_of(a, sub)
            spec = S.spec_of(canonical)
            return Call(canonical, (UNKNOWN,) * spec.nargs, raw, spec, raw_name, (UNKNOWN,) * spec.nargs,
                        spec.kinds, complete=False, subcall=sub, alias=S.alias_for(a, sub))
        sub_args = tuple(words) + (0,) * (6 - nwords)
        return _resolve(a, raw, sub, sub_args, mem, max_buf, subcall=sub)
    if isinstance(dm, S.RegDemux):
        entry = dm.table.get(args[dm.selector_arg] & dm.mask)
        if entry is None:
            return _resolve(a, raw, raw_name, args, mem, max_buf)
        sub, sources = entry
        sub_args = tuple(args[i] for i in sources) + (0,) * (6 - len(sources))
        return _resolve(a, raw, sub, sub_args, mem, max_buf, subcall=sub)
    return _resolve(a, raw, raw_name, args, mem, max_buf)


def ctx_words(a, mem, addr: int, count: int) -> list[int]:
    w = a.word_size
    data = mem.read(addr, w * count)
    return [structs.read_int(data, i * w, w, False) for i in range(count)]


def _signed_ret(a, ret: int) -> int:
    return _sext(int(ret), 8 * a.word_size)


def decode_outputs(call: Call, mem: Memory | None, ret: int, *, max_buf: int = MAX_BUF) -> Call:
    """The call with its result: `ret` (sign-extended from the word size) and, when the call
    succeeded and `mem` is given, every out/inout argument decoded into `outputs`."""
    a = _arch(call.arch)
    r = _signed_ret(a, ret)
    outputs: dict[int, Any] = {}
    if not call.complete or mem is None or -4096 < r < 0:
        return replace(call, ret=r, outputs=outputs)
    ctx = _Ctx(a, mem, list(call.values), max_buf)
    ctx.decoded = list(call.args)
    for i, (k, v) in enumerate(zip(call.kinds, call.values)):
        if k.direction == "in" or not isinstance(v, int):
            continue
        addr = _uint(v, 8 * a.word_size)
        if addr == 0:
            outputs[i] = None
            continue
        try:
            outputs[i] = _decode_pointer(ctx, k, addr, ret=r, out=True)
        except (MemoryFault, structs.StructError):
            outputs[i] = Addr(addr)
    if call.alias and call.alias.ret_from_arg and r == 0:
        idx, size = call.alias.ret_from_arg
        ptr = _uint(call.raw.args[idx], 8 * a.word_size)
        if ptr:
            try:
                r = ctx.read_int(ptr, size, True)
            except MemoryFault:
                pass
    return replace(call, ret=r, outputs=outputs)
