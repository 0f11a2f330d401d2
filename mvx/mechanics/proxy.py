"""Performing a notified syscall in the monitor, on the variant's behalf (hybrid mode).

With seccomp user notification there is no exit stop: the monitor runs the call itself on a
duplicate of the variant's fd (pidfd_getfd: the same open file description) and answers the
notification with the result, so a leader's synced I/O costs one round trip. Pointed-to data is
copied once, so what is checked is what is executed. Calls that depend on the calling process (fd
table changes, memory, signals) are never performed here: they are trapped with RET_TRACE instead.

A call that would block (a blocking read, epoll_wait with a timeout) waits for readiness in slices,
checking between slices that the notification is still live (a signal to the variant cancels it)."""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mvx.isa.canonical import Call
from mvx.mechanics.engine import CallGone, Stop, Variant, host_arch
from mvx.mechanics.native import ffi, lib
from mvx.mechanics.procinfo import pending_signals

# For the monitor's own poll (mvx_wait_ready): the host's values.
POLLIN, POLLOUT = host_arch().const("POLLIN"), host_arch().const("POLLOUT")
SLICE_MS = 50


@dataclass
class Performed:
    """What a performed call returned. `new_fd`: a monitor fd that the answer installs in the
    variant (ADDFD), whose number there is the call's result; `ret` is then 0 until answered."""

    ret: int
    data: bytes = b""
    new_fd: int | None = None
    cloexec: bool = False
    # accept4: the *addrlen the program gave, which the monitor's write of the peer's address
    # replaced; a restarted call (Monitor.answer_again) reads the replaced one, its view must not
    addrlen_in: int | None = None


class Interrupted(Exception):
    """The variant's call went away (signal or death) while the monitor waited on its behalf."""


class FdCache:
    """Duplicates of a variant's fds, checked with kcmp before each use so a reused fd number
    never reaches the wrong file."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self._fds: dict[int, int] = {}

    def get(self, fd: int) -> int:
        mine = self._fds.get(fd)
        if mine is not None:
            if lib.mvx_same_file(self.variant.pid, fd, mine) == 1:
                return mine
            os.close(mine)
            del self._fds[fd]
        mine = self.variant.grab_fd(fd)
        self._fds[fd] = mine
        return mine

    def adopt(self, fd: int, mine: int) -> None:
        """`mine` (the monitor's own fd) is now the variant's `fd` too: keep it as the duplicate
        (the file an accept4 performed here installed, not grabbed back)."""
        self.forget(fd)
        self._fds[fd] = mine

    def known(self, fd: int) -> int:
        """The duplicate already held for `fd`, or -1 (none taken yet)."""
        return self._fds.get(fd, -1)

    def forget(self, fd: int) -> None:
        """The variant closed `fd`: drop the duplicate, so the file is not kept open by the monitor."""
        mine = self._fds.pop(fd, None)
        if mine is not None:
            os.close(mine)

    def closed_with(self, fd: int, closed: int) -> None:
        """The variant closed `fd` and the C loop closed `closed` (-1: none) with it; a duplicate
        held here under another number is closed now."""
        mine = self._fds.pop(fd, None)
        if mine is not None and mine != closed:
            os.close(mine)

    def close(self) -> None:
        for mine in self._fds.values():
            os.close(mine)
        self._fds.clear()


def _blocking(fd: int) -> bool:
    return os.get_blocking(fd)


def _wait_ready(v: Variant, stop: Stop, fd: int, events: int, timeout_ms: int | None) -> bool:
    """Wait for fd readiness while the notification is live. False on timeout."""
    waited = 0
    while True:
        slice_ms = SLICE_MS if timeout_ms is None or timeout_ms < 0 else min(SLICE_MS, timeout_ms - waited)
        r = lib.mvx_wait_ready(fd, events, v.pid, max(slice_ms, 0))
        if r == 1:
            return True
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        waited += slice_ms
        if not v.notification_valid(stop):
            raise Interrupted()
        if timeout_ms is not None and timeout_ms >= 0 and waited >= timeout_ms:
            return False


def _errno_of(exc: OSError) -> int:
    return -(exc.errno or errno.EIO)


def _read(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed:
    fd, buf, count = call.values[:3]
    mine = fds.get(fd)
    if _blocking(mine):
        _wait_ready(v, stop, mine, POLLIN, None)
    try:
        data = os.read(mine, count)
    except OSError as exc:
        return Performed(_errno_of(exc))
    v.write(buf, data)
    return Performed(len(data), data)


def _pread(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed:
    fd, buf, count, offset = call.values[:4]
    try:
        data = os.pread(fds.get(fd), count, offset)
    except OSError as exc:
        return Performed(_errno_of(exc))
    v.write(buf, data)
    return Performed(len(data), data)


def _write(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed:
    fd, buf, count = call.values[:3]
    data = v.read(buf, count)
    try:
        return Performed(os.write(fds.get(fd), data), data)
    except OSError as exc:
        return Performed(_errno_of(exc), data)


def _writev(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed | None:
    """writev as one write of the gathered bytes (the same bytes, in order, on the same open file)."""
    fd, iov, count = call.values[:3]
    word = stop.arch.word_size
    if not 0 <= count <= 1024:
        return Performed(-errno.EINVAL)
    try:
        raw = v.read(iov, 2 * word * count) if count else b""
        pairs = struct.unpack(f"<{2 * count}{'Q' if word == 8 else 'I'}", raw)
        data = b"".join(v.read(pairs[2 * i], pairs[2 * i + 1]) for i in range(count) if pairs[2 * i + 1])
    except (OSError, struct.error):
        return None  # unreadable: the variant makes the call and gets its own EFAULT
    try:
        return Performed(os.write(fds.get(fd), data), data)
    except OSError as exc:
        return Performed(_errno_of(exc), data)


def _shutdown(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed:
    fd, how = call.values[:2]
    try:
        sock = socket.socket(fileno=os.dup(fds.get(fd)))
    except OSError as exc:  # not a socket (ENOTSOCK), a bad fd
        return Performed(_errno_of(exc))
    try:
        sock.shutdown(how)
        return Performed(0)
    except OSError as exc:
        return Performed(_errno_of(exc))
    finally:
        sock.close()


def _recvfrom(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed | None:
    fd, buf, length, flags, addr, addrlen = call.values[:6]
    if addr and not addrlen:
        return None  # the kernel would fault (EFAULT): let the variant get its own error
    mine = fds.get(fd)
    if _blocking(mine) and not flags & socket.MSG_DONTWAIT:
        _wait_ready(v, stop, mine, POLLIN, None)
    sock = socket.socket(fileno=os.dup(mine))
    try:
        data, peer = sock.recvfrom(length, flags)
        family = sock.family
    except OSError as exc:
        return Performed(_errno_of(exc))
    finally:
        sock.close()
    # with MSG_TRUNC the kernel returns the datagram's length but writes at most `length` bytes
    # (Python's recv hands back that many bytes, the rest never written): the variant's buffer ends there
    n, data = len(data), data[:length]
    v.write(buf, data)
    if addr:  # the source address as the kernel writes it: none (length 0) from an unnamed sender
        raw = b"" if peer is None else _raw_sockaddr(stop.arch, family, peer)
        room = int.from_bytes(v.read(addrlen, 4), "little")
        if raw and room:
            v.write(addr, raw[:room])
        v.write(addrlen, len(raw).to_bytes(4, "little"))
    return Performed(n, data)


def _sendto(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed | None:
    fd, buf, length, flags, addr, _addrlen = call.values[:6]
    dest = None
    if addr:
        dest = _py_address(v, call.args[4])
        if dest is None:
            return None
    data = v.read(buf, length)
    sock = socket.socket(fileno=os.dup(fds.get(fd)))
    try:
        return Performed(sock.sendto(data, flags, dest) if dest is not None else sock.send(data, flags), data)
    except OSError as exc:
        return Performed(_errno_of(exc), data)
    finally:
        sock.close()


def _py_address(v: Variant, sa):
    """The variant's decoded destination (structs.SockAddr) as Python's socket module takes it; None
    when the monitor cannot send there for it (another family; a relative AF_UNIX path too long to
    resolve against the variant's cwd)."""
    fields = dict(getattr(sa, "fields", ()))
    family = getattr(sa, "family", None)
    if family == "AF_INET":
        return fields["sin_addr"], fields["sin_port"]
    if family == "AF_INET6":
        return fields["sin6_addr"], fields["sin6_port"], fields["sin6_flowinfo"], fields["sin6_scope_id"]
    if family == "AF_UNIX":
        path = fields["sun_path"]
        if path[:1] in (b"\0", b"/"):
            return path
        full = os.path.join(os.readlink(f"/proc/{v.pid}/cwd").encode(), path)
        return full if len(full) < 108 else None
    return None


def _accept4(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed | None:
    fd, addr, addrlen, flags = call.values[:4]
    if addr and not addrlen:
        return None  # the kernel would fault (EFAULT): let the variant get its own error
    arch = stop.arch
    mine = fds.get(fd)
    if _blocking(mine):
        _wait_ready(v, stop, mine, POLLIN, None)
    sock = socket.socket(fileno=os.dup(mine))
    try:
        newfd, peer = sock._accept()
        family = sock.family
    except OSError as exc:
        return Performed(_errno_of(exc))
    finally:
        sock.close()
    room = None
    try:
        if addr:  # the peer's address, as the kernel would have written it (same bytes on every ISA)
            raw = _raw_sockaddr(arch, family, peer)
            room = int.from_bytes(v.read(addrlen, 4), "little", signed=True)
            v.write(addr, raw[:max(room, 0)])
            v.write(addrlen, len(raw).to_bytes(4, "little"))
        os.set_blocking(newfd, not flags & arch.const("SOCK_NONBLOCK"))
    except BaseException:
        os.close(newfd)
        raise
    return Performed(0, new_fd=newfd, cloexec=bool(flags & arch.const("SOCK_CLOEXEC")), addrlen_in=room)


def _raw_sockaddr(arch, family: int, peer) -> bytes:
    """struct sockaddr_{in,in6,un} of `arch` (layout and AF_* value from its tables) for an address
    as Python's socket module returns it; `family` is the monitor's socket's (a host value)."""
    host = host_arch()
    out = bytearray()

    def put(lay, name: str, data: bytes) -> None:
        off = lay.field(name).offset
        if len(out) < off + len(data):
            out.extend(bytes(off + len(data) - len(out)))
        out[off:off + len(data)] = data

    def put_family(lay, prefix: str, af: str) -> None:
        put(lay, f"{prefix}_family", arch.const(af).to_bytes(lay.field(f"{prefix}_family").size, "little"))

    if family == host.const("AF_INET"):
        lay = arch.layout("sockaddr_in")
        addr, port = peer
        out.extend(bytes(lay.size))  # sin_zero included
        put_family(lay, "sin", "AF_INET")
        put(lay, "sin_port", port.to_bytes(lay.field("sin_port").size, "big"))
        put(lay, "sin_addr", socket.inet_aton(addr))
        return bytes(out)
    if family == host.const("AF_INET6"):
        lay = arch.layout("sockaddr_in6")
        addr, port, flowinfo, scope_id = peer
        out.extend(bytes(lay.size))
        put_family(lay, "sin6", "AF_INET6")
        put(lay, "sin6_port", port.to_bytes(lay.field("sin6_port").size, "big"))
        put(lay, "sin6_flowinfo", flowinfo.to_bytes(lay.field("sin6_flowinfo").size, "big"))
        put(lay, "sin6_addr", socket.inet_pton(socket.AF_INET6, addr.split("%")[0]))
        put(lay, "sin6_scope_id", scope_id.to_bytes(lay.field("sin6_scope_id").size, "little"))
        return bytes(out)
    if family == host.const("AF_UNIX"):
        lay = arch.layout("sockaddr_un")
        path = peer.encode() if isinstance(peer, str) else bytes(peer or b"")
        put_family(lay, "sun", "AF_UNIX")  # the kernel's length: up to the path and its NUL
        put(lay, "sun_path", path + (b"\0" if path and not path.startswith(b"\0") else b""))
        return bytes(out)
    raise OSError(errno.EAFNOSUPPORT, f"address family {family}")


def _epoll_args(v: Variant, stop: Stop, call: Call, fds: FdCache) -> tuple[int, int, int, int] | None:
    """(the monitor's duplicate of the epoll fd, the events buffer, maxevents, the timeout signed),
    or None where the monitor cannot make the wait for the variant."""
    epfd, events, maxevents, timeout = call.values[:4]
    if stop.arch.layout("epoll_event").size != host_arch().layout("epoll_event").size or maxevents <= 0:
        return None  # the variant's event layout is not the monitor's
    if call.values[4]:
        return None  # a signal mask only the variant can apply: the filter traces it (Traits.trace_when_set)
    return fds.get(epfd), events, maxevents, timeout if timeout < 0x80000000 else timeout - (1 << 32)


def _epoll_pwait(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed | None:
    args = _epoll_args(v, stop, call, fds)
    if args is None:
        return None
    mine, events, maxevents, timeout = args
    size = stop.arch.layout("epoll_event").size
    if timeout != 0 and not _wait_ready(v, stop, mine, POLLIN, None if timeout < 0 else timeout):
        return Performed(0)
    buf = ffi.new("char[]", size * maxevents)
    n = lib.mvx_epoll_wait_raw(mine, buf, maxevents, 0)
    if n < 0:
        return Performed(n)
    data = bytes(ffi.buffer(buf, n * size))
    v.write(events, data)
    return Performed(n, data)


def epoll_pwait_with_signalfds(v: Variant, stop: Stop, call: Call, fds: FdCache,
                               signalfds: list[tuple[int, int]]) -> Performed | None:
    """epoll_pwait on an epoll set that holds signalfds ([(their signal mask, registered data)]):
    on the monitor's duplicate a signalfd is ready for the monitor's own signals, so those events
    are dropped and made from the variant's pending signals instead (EPOLLIN while one in the
    signalfd's mask is pending: level-triggered, as a signalfd registered without EPOLLET is)."""
    args = _epoll_args(v, stop, call, fds)
    if args is None:
        return None
    mine, events, maxevents, timeout = args
    host = host_arch().layout("epoll_event")
    size = host.size
    theirs = {data for _, data in signalfds}
    off = host.fields["data"].offset
    waited = 0
    buf = ffi.new("char[]", size * maxevents)
    while True:
        pending = pending_signals(v.pid)
        out = [struct.pack("<I", POLLIN).ljust(off, b"\0") + data.to_bytes(8, "little")
               for mask, data in signalfds if pending & mask]
        n = lib.mvx_epoll_wait_raw(mine, buf, maxevents, 0)
        if n < 0:
            return Performed(n)
        raw = bytes(ffi.buffer(buf, n * size))
        out += [raw[i:i + size] for i in range(0, n * size, size)
                if int.from_bytes(raw[i + off:i + off + 8], "little") not in theirs]
        out = out[:maxevents]
        if out or timeout == 0 or (timeout > 0 and waited >= timeout):
            data = b"".join(e.ljust(size, b"\0") for e in out)
            if data:
                v.write(events, data)
            return Performed(len(out), data)
        step = 10 if timeout < 0 else max(0, min(10, timeout - waited))
        lib.mvx_wait_ready(mine, POLLIN, v.pid, step)  # (a signal is seen within 10 ms)
        waited += step
        if not v.notification_valid(stop):
            raise Interrupted()


def _getpid(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed:
    return Performed(v.pid)


# Traits.perform -> how the monitor performs the call on its duplicates of the variant's fds
PERFORMERS: dict[str, Callable[[Variant, Stop, Call, FdCache], Performed | None]] = {
    "read": _read,
    "pread64": _pread,
    "write": _write,
    "writev": _writev,
    "shutdown": _shutdown,
    "recvfrom": _recvfrom,
    "sendto": _sendto,
    "accept4": _accept4,
    "epoll_pwait": _epoll_pwait,
    "getpid": _getpid,
}


def perform(v: Variant, stop: Stop, call: Call, fds: FdCache) -> Performed | None:
    """Run the notified call in the monitor; out-data is in the variant's memory on return, the
    notification not yet answered (so the caller can decode outputs while the variant still waits;
    then `answer`). None: not performable with these arguments (the caller lets it run in the
    variant), or the variant's call went away meanwhile."""
    if stop.pid != v.pid:
        return None  # a forked child: fds and memory are not the variant's (children are not followed)
    performer = PERFORMERS.get(call.spec.traits.perform)
    try:
        return performer(v, stop, call, fds) if performer else None
    except Interrupted:
        return None


def answer(v: Variant, stop: Stop, done: Performed | None, keep: FdCache | None = None) -> int | None:
    """Answer a notification after `perform` (or let the call run in the variant); the call's
    result as the variant sees it (None when it ran in the variant). Decode the call's outputs
    before: once answered, the variant runs on and may reuse its buffers. A new fd installed in
    the variant stays open in `keep` as its duplicate (else the monitor closes its copy)."""
    if done is None:
        v.continue_call(stop)
        return None
    if done.new_fd is not None:
        try:
            ret = v.install_fd(stop, done.new_fd, answer=True, cloexec=done.cloexec)
        except CallGone:
            raise  # the fd stays open: the restarted call gets it (LeaderMonitor.unanswered)
        except BaseException:
            os.close(done.new_fd)
            raise
        if keep is not None:
            keep.adopt(ret, done.new_fd)
        else:
            os.close(done.new_fd)
        return ret
    if not v.respond(stop, done.ret):
        raise CallGone(f"variant {v.pid}: the notified call went away")
    return done.ret
