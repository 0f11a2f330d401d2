"""A replicated call's out-data, carried from the leader's ISA to a follower's.

The leader decodes what its call wrote (canonical.decode_outputs: bytes, TimeValue, SockAddr,
struct dicts, epoll events...); the values travel as they are (mvx.core.protocol encodes each type). A
follower's `writes_for` re-encodes each value in its own ISA's layout at its own pointers: a 12-byte x86
epoll_event becomes a 16-byte aarch64 one, a 64-bit timespec a 32-bit one, an iovec's bytes are
scattered over the follower's own iovecs. What cannot be re-encoded raises `OutputError`: the
follower then fails closed (a divergence), it never runs on with memory the leader did not see.

epoll is special: lighttpd keeps pointers in `epoll_event.data`, so the leader sends each event's
fd (from its own epoll_ctl registrations, `EpollRegistry`) and each follower writes back the data
it registered itself for that fd."""

from __future__ import annotations

from mvx import MvxError
from mvx.isa import structs
from mvx.isa import syscalls as S
from mvx.isa.canonical import FIELD_KINDS, Call, IoVec, encode_cmsgs, encode_value
from mvx.isa.structs import TimeValue
from mvx.isa.syscalls import Addr


class OutputError(MvxError):
    """Out-data that cannot be reproduced in the follower (unsupported kind, missing registration)."""


# ---- epoll registrations ---------------------------------------------------------------------------


class EpollRegistry:
    """What this variant registered with epoll_ctl: (epfd, fd) -> data, and back.

    Each monitor keeps its own, because the data words are the variant's own (pointers in
    lighttpd). An fd's registrations go when the fd is closed (the kernel drops them when the
    last reference goes; mvx variants do not share open files between fd numbers)."""

    def __init__(self) -> None:
        self._data: dict[tuple[int, int], int] = {}
        self._fd: dict[tuple[int, int], int] = {}

    def on_ctl(self, epfd: int, op: str, fd: int, data: int | None) -> None:
        old = self._data.pop((epfd, fd), None)
        if old is not None:
            self._fd.pop((epfd, old), None)
        if op in ("EPOLL_CTL_ADD", "EPOLL_CTL_MOD") and data is not None:
            self._data[(epfd, fd)] = data
            self._fd[(epfd, data)] = fd

    def on_close(self, fd: int) -> None:
        for key in [k for k in self._data if fd in k]:
            data = self._data.pop(key)
            self._fd.pop((key[0], data), None)

    def registered(self, epfd: int) -> dict[int, int]:
        """fd -> data of every registration on `epfd`."""
        return {fd: data for (ep, fd), data in self._data.items() if ep == epfd}

    def fd_of(self, epfd: int, data: int) -> int:
        fd = self._fd.get((epfd, data))
        if fd is None:
            raise OutputError(f"epoll {epfd} returned data {data:#x} that was never registered")
        return fd

    def data_of(self, epfd: int, fd: int) -> int:
        data = self._data.get((epfd, fd))
        if data is None:
            raise OutputError(f"the leader's epoll {epfd} reported fd {fd}, which this variant never registered")
        return data


def epoll_ctl_data(call: Call) -> int | None:
    event = call.args[3]
    if isinstance(event, dict):
        d = event.get("data")
        return d.value if isinstance(d, Addr) else d
    return None


def epoll_events_to_fds(events, epfd: int, registry: EpollRegistry) -> list:
    """Leader side: decoded events -> [[events FlagSet, fd], ...]."""
    out = []
    for ev in events or ():
        data = ev["data"].value if isinstance(ev["data"], Addr) else ev["data"]
        out.append([ev["events"], registry.fd_of(epfd, data)])
    return out


# ---- follower side -----------------------------------------------------------------------------


_INT_SIZE = {"int": 4, "uint": 4, "s64": 8, "u64": 8}


def _int_size(arch, size: str) -> int:
    return _INT_SIZE.get(size, arch.word_size)


def _struct_bytes(arch, layout: str, value) -> bytes:
    if isinstance(value, dict):
        value = dict(value)
        for f, v in value.items():
            k = FIELD_KINDS.get((layout, f))
            if k is not None and not isinstance(v, (int, dict, TimeValue)):
                value[f] = encode_value(arch, k, v)
            elif isinstance(v, Addr):
                value[f] = v.value
    return structs.encode(arch, layout, value)


def writes_for(call: Call, outputs: dict, mem, arch, *, epoll: EpollRegistry | None = None) -> list[tuple[int, bytes]]:
    """Follower side: (address, bytes) to write so that `call` looks as if it had produced the
    leader's `outputs` ({arg index: unpacked value}) in this variant's ISA."""
    writes: list[tuple[int, bytes]] = []
    for key, value in outputs.items():
        i = int(key)
        kind = call.kinds[i]
        ptr = call.values[i]
        if value is None or not isinstance(ptr, int) or ptr == 0:
            continue
        ptr &= (1 << 8 * arch.word_size) - 1
        writes.extend(_encode_one(call, i, kind, ptr, value, mem, arch, epoll))
    return writes


def _encode_one(call, i, kind, ptr, value, mem, arch, epoll) -> list[tuple[int, bytes]]:
    if isinstance(kind, S.OutBuf):
        data = bytes(value)
        if kind.len_arg is not None:  # never past the follower's own buffer
            data = data[:max(call.values[kind.len_arg], 0)]
        elif kind.len_ptr_arg is not None:  # its room is the int it points to (getsockopt's optlen)
            lp = call.values[kind.len_ptr_arg]
            data = data[:int.from_bytes(mem.read(lp, 4), "little")] if lp else b""
        return [(ptr, data)] if data else []
    if isinstance(kind, (S.OutStruct, S.InOutStruct)):
        return [(ptr, _struct_bytes(arch, kind.layout, value))]
    if isinstance(kind, S.StructArray) and kind.layout == "epoll_event":
        if epoll is None:
            raise OutputError("epoll events without a registry")
        epfd = call.args[0]
        items = [{"events": ev, "data": epoll.data_of(epfd, fd)}
                 for ev, fd in value]
        return [(ptr, b"".join(_struct_bytes(arch, "epoll_event", it) for it in items))]
    if isinstance(kind, S.StructArray):
        return [(ptr, b"".join(_struct_bytes(arch, kind.layout, v) for v in value))]
    if isinstance(kind, S.IovecOut):
        data = value.data if isinstance(value, IoVec) else bytes(value)
        return _scatter(arch, mem, ptr, call.values[kind.count_arg], data)
    if isinstance(kind, S.SockAddrOut):
        raw = structs.encode_sockaddr(arch, value)
        lp = call.values[kind.len_ptr_arg]
        room = int.from_bytes(mem.read(lp, 4), "little") if lp else len(raw)
        return [(ptr, raw[:room])]
    if isinstance(kind, (S.OutInt, S.InOutInt)):
        return [(ptr, (int(value) & (1 << 64) - 1).to_bytes(8, "little")[:_int_size(arch, kind.size)])]
    if isinstance(kind, S.OutInts):
        return [(ptr, b"".join((int(v) & 0xFFFFFFFF).to_bytes(4, "little") for v in value))]
    if isinstance(kind, S.FdSet):
        nfds = call.values[kind.nfds_arg]
        w = arch.word_size
        nbytes = (max(nfds, 0) + 8 * w - 1) // (8 * w) * w
        mask = sum(1 << fd for fd in value)
        return [(ptr, mask.to_bytes(nbytes, "little"))]
    if isinstance(kind, S.MsgHdrOut):
        return _msghdr_writes(ptr, value, mem, arch)
    raise OutputError(f"{call.name}: cannot replay an output of kind {type(kind).__name__}")


def _scatter(arch, mem, iov_ptr: int, count: int, data: bytes) -> list[tuple[int, bytes]]:
    """`data` spread over the variant's own iovec array, as readv would have filled it."""
    size = structs.layout(arch, "iovec").size
    out, pos = [], 0
    for base, n in structs.decode_iovecs(arch, mem.read(iov_ptr, size * count), count):
        if pos >= len(data):
            break
        out.append((base, data[pos:pos + n]))
        pos += n
    return out


def _msghdr_writes(ptr, value, mem, arch) -> list[tuple[int, bytes]]:
    """recvmsg: the data scattered over the follower's iovecs, the source address (truncated to the
    follower's msg_namelen, which gets the address's length), the control messages re-encoded in
    the follower's cmsghdr layout (whole messages that fit its msg_controllen, MSG_CTRUNC if one
    did not) and msg_flags. Received fds (SCM_RIGHTS) exist only in the leader: they fail closed."""
    lay = structs.layout(arch, "msghdr")
    h = structs.decode(arch, "msghdr", mem.read(ptr, lay.size))
    out: list[tuple[int, bytes]] = []
    flags = int(value.get("msg_flags", 0))
    control = value.get("msg_control") or ()
    if isinstance(control, (bytes, bytearray)):
        raise OutputError("recvmsg with undecoded control data cannot be replicated")
    for c in control:
        if S.CMSG_PAYLOADS.get((c["level"], c["type"])) == "fds":
            raise OutputError("recvmsg received fds (SCM_RIGHTS): they exist only in the leader, "
                              "a follower cannot be given them")
    room, data = h["msg_controllen"] if h["msg_control"] else 0, b""
    for rec in encode_cmsgs(arch, control):
        if len(data) + len(rec) > room:
            flags |= arch.const("MSG_CTRUNC")
            break
        data += rec
    if data:
        out.append((h["msg_control"], data))
    f = lay.fields["msg_controllen"]
    out.append((ptr + f.offset, len(data).to_bytes(f.size, "little")))
    if h["msg_name"]:
        name = value.get("msg_name")
        raw = structs.encode_sockaddr(arch, name) if name is not None else b""
        if raw:
            out.append((h["msg_name"], raw[:h["msg_namelen"]]))
        f = lay.fields["msg_namelen"]
        out.append((ptr + f.offset, len(raw).to_bytes(f.size, "little")))
    iov = value["msg_iov"].data if isinstance(value["msg_iov"], IoVec) else bytes(value["msg_iov"] or b"")
    out += _scatter(arch, mem, h["msg_iov"], h["msg_iovlen"], iov)
    f = lay.fields["msg_flags"]
    out.append((ptr + f.offset, (flags & 0xFFFFFFFF).to_bytes(f.size, "little")))
    return out


# ---- clock reads -----------------------------------------------------------------------------------
# One reading of the real-time clock, whatever call the variant's libc made for it: glibc on x86_64
# calls time, gettimeofday and clock_gettime; on i386 (2.36) all three are clock_gettime64. The
# leader's reading travels as [sec, nsec] and each follower gets it in the form it asked for.


def clock_reading(call: Call, ret: int | None, outputs: dict) -> list[int] | None:
    """Leader side: the time the call returned, as [sec, nsec]."""
    if ret is None or ret < 0:
        return None
    if call.name == "time":
        return [ret, 0]
    value = outputs.get(1 if call.name == "clock_gettime" else 0)
    return [value.sec, value.nsec] if isinstance(value, TimeValue) else None


def clock_answer(call: Call, reading: list[int], arch) -> tuple[int, list[tuple[int, bytes]]]:
    """Follower side: the result and the writes that make `call` return the leader's reading."""
    sec, nsec = int(reading[0]), int(reading[1])
    mask = (1 << 8 * arch.word_size) - 1
    if call.name == "time":
        tloc = call.values[0] & mask
        return sec, ([(tloc, (sec & mask).to_bytes(arch.word_size, "little"))] if tloc else [])
    if call.name == "gettimeofday":
        writes = []
        tv, tz = call.values[0] & mask, call.values[1] & mask
        if tv:
            writes.append((tv, structs.encode(arch, call.kinds[0].layout, TimeValue(sec, nsec - nsec % 1000, True))))
        if tz:  # struct timezone is obsolete: zeros, as the kernel gives
            writes.append((tz, bytes(8)))
        return 0, writes
    tp = call.values[1] & mask
    return 0, ([(tp, structs.encode(arch, call.kinds[1].layout, TimeValue(sec, nsec)))] if tp else [])
