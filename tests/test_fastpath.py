"""The C fast path (mvx/mechanics/native/mvx_fast.c): the records and checks it sends are byte for
byte those of the Python sync core (mvx.core.sync + mvx.core.protocol), for every hot call on every
ISA this machine runs, so the two paths interleave on one channel; what it does not carry it leaves
to Python (-1 here); and under `mvx run` it carries the hot calls of a real server (counted), with
the same replies and verdicts as with it off (MVX_FAST=0)."""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from _variants import free_port, variant_bin

from mvx.core import policy as policies
from mvx.core import protocol
from mvx.core.outputs import EpollRegistry
from mvx.core.sync import LeaderSync, content_digest, sent_file_range, view
from mvx.isa import arch as archmod
from mvx.isa.canonical import RawSyscall, decode_outputs, normalize
from mvx.mechanics.native import ffi, lib

POLICY = policies.load("default")
MAP_32BIT = 0x40  # below 4 GiB: addresses an i386 call can name


class Arena:
    """Memory of this process at addresses every ISA can name; the fast path reads it with
    process_vm_readv (pid = ours), the Python decoder through `read`."""

    def __init__(self, size: int = 1 << 21) -> None:
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_32BIT)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        assert self.base < 1 << 32
        self.used = 0

    def put(self, data: bytes) -> int:
        addr = self.base + self.used
        self.map[self.used:self.used + len(data)] = data
        self.used += (len(data) + 15) & ~15
        return addr

    def read(self, addr: int, n: int) -> bytes:
        off = addr - self.base
        return bytes(self.map[off:off + n])

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        return self.read(addr, limit).split(b"\0", 1)[0]


@pytest.fixture
def fast():
    t = ffi.new("struct mvx_tracee *")
    f = ffi.gc(lib.mvx_fast_new(t, lib.MVX_ROLE_LEADER), lib.mvx_fast_free)
    from mvx.runtime.fastpath import HOT, set_hot_tables

    set_hot_tables(f, HOT)
    lib.mvx_fast_set_fd(f, 5, lib.MVX_FD_LEADERS, -1)
    lib.mvx_fast_set_fd(f, 7, lib.MVX_FD_OWN, 99)
    lib.mvx_fast_set_fd(f, 3, lib.MVX_FD_EPOLL, 98)
    for fd, data in EPOLL_REGISTERED.items():
        lib.mvx_fast_epoll_ctl(f, 3, fd, 1, data)
    yield f
    del t  # the tracee struct outlives the loop that points to it


def c_frame(fast, isa: str, name: str, args, *, check: bool, seq: int, ret: int = 0, got: bytes = b"") -> bytes | None:
    a = archmod.get(isa)
    c_args = ffi.new("unsigned long long[6]", [x & (2**64 - 1) for x in args] + [0] * (6 - len(args)))
    out = ffi.new("uint8_t[]", 4 << 20)
    n = lib.mvx_fast_frame_for(fast, os.getpid(), a.audit_arch, a.nr(name), c_args, int(check), seq, ret,
                               got or ffi.NULL, out, len(out))
    return None if n < 0 else bytes(ffi.buffer(out, n))


EPOLL_REGISTERED = {9: 0xDEADBEEF00, 10: 77, 11: 1 << 63}  # fd -> the data word registered for it on epoll 3


def registered(isa: str) -> dict[int, int]:
    """The data words as the monitor's registry holds them: all 64 bits, on i386 too (the field is a
    u64 there as well; the corpus's poll registers 0x1122334455667788 and must get it back)."""
    return dict(EPOLL_REGISTERED)


def py_frames(mem: Arena, isa: str, name: str, args, *, seq: int, ret: int | None, world: bool = False) -> tuple[bytes, bytes]:
    """(check request, record) as the Python leader makes them."""
    call = normalize(RawSyscall(isa, archmod.get(isa).nr(name), tuple(args)), mem)
    sync = LeaderSync(POLICY)
    sync.seq = seq - 1
    cls = POLICY.class_of(call.name, world)
    sent = sent_file_range(call)  # the variant is this process: its fd is ours to read
    content = content_digest(os.pread(sent[0], min(sent[2], 64 << 20), sent[1])) if sent else None
    check = protocol.encode(protocol.CheckRequest(seq, view(call), content))
    full = decode_outputs(call, mem, ret) if ret is not None and ret >= 0 else call
    registry = EpollRegistry()
    for fd, data in registered(isa).items():
        registry.on_ctl(3, "EPOLL_CTL_ADD", fd, data)
    record = sync.record(call, ret, full.outputs if ret is not None and ret >= 0 else {}, cls, epoll=registry,
                         content=content)
    return check, protocol.encode(record)


ISAS = sorted(a for a in ("x86_64", "i386") if a in {x.name for x in archmod.ARCHES.values()})


@pytest.mark.parametrize("isa", ISAS)
def test_records_and_checks_are_the_python_ones_byte_for_byte(fast, isa, tmp_path):
    mem = Arena()
    word = archmod.get(isa).word_size
    request = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
    buf = mem.put(request + bytes(4096))
    parts = [b"HTTP/1.1 200 OK\r\n", b"", b"Content-Length: 5\r\n\r\nhello"]
    bases = [mem.put(p or b"\0") for p in parts]
    iov = mem.put(b"".join(struct.pack("<QQ" if word == 8 else "<II", b, len(p)) for b, p in zip(bases, parts)))
    lay = archmod.get(isa).layout("epoll_event")
    events = [(0x1, 9), (0x2019, 10), (0x80000004 | 0x400000, 11)]  # EPOLLIN; IN|ERR|HUP|RDHUP; OUT|ET|bit 22

    def event(bits, fd):
        raw = bytearray(lay.size)
        raw[0:4] = bits.to_bytes(4, "little")
        raw[lay.fields["data"].offset:lay.fields["data"].offset + 8] = EPOLL_REGISTERED[fd].to_bytes(8, "little")
        return bytes(raw)

    evbuf = mem.put(b"".join(event(b, fd) for b, fd in events))
    epev, epev2 = mem.put(event(0x2019, 10)), mem.put(event(0x80000004 | 0x400000, 11))
    ts = mem.put(struct.pack("<qq", 1700000000, 123456789))  # read as two i386 words too: (1700000000, 0)
    peer = mem.put(struct.pack("<H", socket.AF_INET) + struct.pack(">H", 60324) + socket.inet_aton("10.1.2.3") + bytes(8))
    peerlen = mem.put(struct.pack("<I", 16))
    clock64 = "clock_gettime64" if isa == "i386" else "clock_gettime"
    for fd, data in registered(isa).items():  # as Python mirrors its registry into the C loop
        lib.mvx_fast_epoll_ctl(fast, 3, fd, 1, data)
    cases = [  # (name, args, ret, world)
        ("read", (5, buf, 4096), len(request), False),
        ("read", (5, buf, 4096), 0, False),
        ("read", (5, buf, 4096), -11, False),
        ("read", (5, buf, 1 << 20), 3, False),
        ("recvfrom", (5, buf, 100, 0, 0, 0), 7, False),
        ("recvfrom", (5, buf, 100, 0, 0, 0), -104, False),
        ("recvfrom", (5, buf, 100, 0x4060, 0, 0), 0, False),  # lighttpd's drain: TRUNC|DONTWAIT|NOSIGNAL
        ("recvfrom", (5, buf, 16, 0x20, 0, 0), 40, False),  # MSG_TRUNC: more returned than written
        ("recvfrom", (5, buf, 100, 0x40, 0, 0), 9, False),
        ("write", (5, buf, len(request)), len(request), False),
        ("write", (5, buf, 0), 0, False),
        ("sendto", (5, buf, 10, 0, 0, 0), -32, False),
        ("sendto", (5, buf, 10, 0, 0, 16), 10, False),
        ("writev", (5, iov, 3), sum(map(len, parts)), False),
        ("writev", (5, iov, 0), 0, False),
        ("pread64", (7, buf, 1024, *((5, 1) if word == 4 else (5 + (1 << 32),))), 700, True),
        ("pread64", (7, buf, 1024, *((0, 0) if word == 4 else (0,))), -21, True),
        ("setsockopt", (5, 6, 3, buf, 4), 0, False),  # TCP_CORK
        ("setsockopt", (5, 6, 1, buf, 8), -22, False),  # TCP_NODELAY
        ("setsockopt", (5, 6, 3, 0, 4), -14, False),  # no value
        ("epoll_ctl", (3, 1, 10, epev), None, False),  # made in the variant: its result is not learned
        ("epoll_ctl", (3, 3, 11, epev2), None, False),  # EPOLLET and a bit without a name: "rest"
        ("epoll_ctl", (3, 2, 10, 0), None, False),
        ("epoll_ctl", (3, 2, 10, epev), None, False),  # an event given to DEL: shown, ignored
        ("accept4", (5, 0, 0, 0x800), -11, False),  # no connection waiting
        ("accept4", (5, 0, 0, 0x80800), 8, False),
        ("accept4", (5, peer, peerlen, 0x800), 9, False),  # the peer's address: in the record's outputs
        ("clock_gettime", (1, ts), 0, False),  # the reading: in the record's outputs and clock
        ("clock_gettime", (7, ts), -22, False),
        (clock64, (0, ts), 0, False),
        ("close", (5,), None, False),  # made in the variant: its result is not learned
        ("close", (7,), None, True),
        ("close", (3,), None, False),  # the epoll fd
        ("shutdown", (5, 1), 0, False),
        ("shutdown", (5, 2), -107, False),
        ("epoll_wait", (3, evbuf, 64, -1), 3, False),
        ("epoll_wait", (3, evbuf, 64, 0), 0, False),
        ("epoll_wait", (3, evbuf, 8192, 1000), 1, False),  # lighttpd asks for as many events as it has fds
        ("epoll_pwait", (3, evbuf, 2, 250, 0, 8), 2, False),
        ("epoll_pwait", (3, evbuf, 10, -1, 0, 8), -4, False),
    ]
    # sendfile from a file of the variant's own: its bytes are read through the monitor's duplicate
    # (this test's own fd) and compared by their digest
    page = bytes(range(256)) * 64
    with open(tmp_path / "page.bin", "wb") as fh:
        fh.write(page)
    own = os.open(tmp_path / "page.bin", os.O_RDONLY)
    lib.mvx_fast_set_fd(fast, own, lib.MVX_FD_OWN, -1)  # no duplicate yet: the loop takes one
    offset = mem.put(struct.pack("<q", 1000))
    sendfile64 = "sendfile64" if isa == "i386" else "sendfile"
    cases += [
        ("sendfile", (5, own, offset, 4096), 4096, False),
        (sendfile64, (5, own, offset, 1 << 20), len(page) - 1000, False),  # to the end of the file
        ("sendfile", (5, own, offset, 10), -11, False),
        ("sendfile", (5, own, offset, 0), 0, False),
    ]
    if isa == "i386":  # socketcall(call, args): the sub-call's 32-bit arguments in memory
        def sub(call, *args):
            return (call, mem.put(struct.pack(f"<{len(args)}I", *[x & 0xFFFFFFFF for x in args])))
        cases += [
            ("socketcall", sub(13, 5, 1), 0, False),  # shutdown(5, SHUT_WR)
            ("socketcall", sub(14, 5, 6, 3, buf, 4), 0, False),  # setsockopt(5, IPPROTO_TCP, TCP_CORK, ...)
            ("socketcall", sub(12, 5, buf, 100, 0x4060, 0, 0), 0, False),  # recvfrom
            ("socketcall", sub(10, 5, buf, 100, 0), 12, False),  # recv: recvfrom without an address
            ("socketcall", sub(9, 5, buf, 10, 0), 10, False),  # send: sendto without an address
            ("socketcall", sub(11, 5, buf, 10, 0, 0, 0), -11, False),  # sendto
        ]
    for seq, (name, args, ret, world) in enumerate(cases, start=15):
        check, record = py_frames(mem, isa, name, args, seq=seq, ret=ret, world=world)
        got = (mem.read(evbuf, ret * lay.size) if name.startswith("epoll") else mem.read(buf, ret)) if ret else b""
        assert c_frame(fast, isa, name, args, check=False, seq=seq, ret=ret or 0, got=got) == record, (name, args, ret)
        if name in ("write", "sendto", "writev", "shutdown") or name.startswith("sendfile") or \
                (name == "socketcall" and args[0] in (9, 11, 13)):
            assert c_frame(fast, isa, name, args, check=True, seq=seq) == check, (name, args)


@pytest.mark.parametrize("isa", ISAS)
def test_what_it_does_not_carry_is_left_to_python(fast, isa):
    mem = Arena()
    buf = mem.put(b"x" * 64)
    negative = mem.put(struct.pack("<i", -1))
    left = [
        ("read", (6, buf, 10)),  # an fd Python has not described
        ("read", (7, buf, 10)),  # the variant's own file: read runs in every variant (Python's)
        ("pread64", (5, buf, 10, 0, 0)),  # a socket: not a file of the variant's own world
        ("read", (5, buf, (1 << 20) + 1)),  # over canonical.MAX_BUF
        ("recvfrom", (5, buf, 10, 2, 0, 0)),  # MSG_PEEK
        ("recvfrom", (5, buf, 10, 0x4062, 0, 0)),  # MSG_PEEK among flags it carries
        ("recvfrom", (5, buf, 10, 0, buf, buf)),  # with an address
        ("sendto", (5, buf, 10, 0, buf, 16)),  # to an address
        ("writev", (5, buf, 2000)),  # over IOV_MAX
        ("writev", (5, 8, 1)),  # an unreadable iovec: Python reports it
        ("write", (-1, buf, 1)),
        ("epoll_pwait", (3, buf, 10, -1, buf, 8)),  # with a signal mask
        ("shutdown", (5, 7)),  # not a SHUT_* value: Python shows the number
        ("setsockopt", (5, 1, 9, buf, 4)),  # SO_KEEPALIVE: an option it does not name
        ("clock_gettime", (2, buf)),  # the process's CPU clock: the monitor's is another
        ("clock_gettime", (0, 0)),  # no timespec (EFAULT): Python
        ("close", (200,)),  # an fd Python never described (the dynamic loader's own closes are noise)
        ("accept4", (5, buf, 0, 0)),  # an address without its length: the kernel faults
        ("epoll_ctl", (5, 1, 10, buf)),  # not an epoll fd Python described
        ("epoll_ctl", (3, 1, 10, 0)),  # nothing to add (EFAULT)
        ("epoll_ctl", (3, 4, 10, buf)),  # no such op
        ("accept4", (5, 0, 0, 0x1)),  # a flag accept4 does not know
        ("accept4", (5, buf, negative, 0)),  # a negative address length (EINVAL)
        ("setsockopt", (5, 6, 3, buf, 4096)),  # a long value
        ("epoll_wait", (5, buf, 10, -1)),  # not an epoll fd Python described
        ("epoll_wait", (3, buf, 0, -1)),  # maxevents 0 (EINVAL: the kernel says so)
    ]
    if isa == "i386":
        args = mem.put(struct.pack("<4I", 5, 0, 112, 0))
        left += [
            ("socketcall", (18, args)),  # accept4: not a hot call
            ("socketcall", (13, 8)),  # shutdown with unreadable arguments: Python reports them
            ("socketcall", (99, args)),  # no such sub-call
        ]
    for name, args in left:
        assert c_frame(fast, isa, name, args, check=False, seq=1, ret=1, got=b"x") is None, (name, args)


def serve_epoll(env: dict, mode: str, requests: int = 40, *extra: str) -> tuple[int, list[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvx", "run", "--mode", mode, *extra, "--leader", variant_bin("x86_64", "epoll_server"),
         "--follower", variant_bin("i386", "epoll_server"), "--", str(port), "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
    try:
        sock = None
        replies = []
        for _ in range(100):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                time.sleep(0.1)
        assert sock is not None, "epoll_server never listened"
        with sock:
            for i in range(requests):
                sock.sendall(f"req {i}\n".encode())
                replies.append(sock.recv(64))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, replies, err.decode(errors="replace")


@pytest.mark.parametrize("mode, extra", [("hybrid", ()), ("seccomp", ()), ("ptrace", ()),
                                         ("hybrid", ("--no-write-behind",))])
def test_a_server_is_served_through_the_fast_path(mode, extra):
    """epoll_server, 40 requests on one connection: C carries its epoll waits, reads and writes in both
    monitors (MVX_FAST_STATS counts them: about three per request, so a loop that spins is caught too),
    and the replies equal those with the fast path off."""
    code, replies, err = serve_epoll({"MVX_FAST_STATS": "1"}, mode, 40, *extra)
    assert code == 0, err
    carried = [int(line.split()[2]) for line in err.splitlines() if "hot calls carried in C" in line]
    assert len(carried) == 2 and 110 <= min(carried) and max(carried) <= 200, err  # epoll_wait, read, write
    code_off, replies_off, err_off = serve_epoll({"MVX_FAST": "0", "MVX_FAST_STATS": "1"}, mode, 40, *extra)
    assert code_off == 0, err_off
    assert "carried in C" not in err_off
    assert replies == replies_off == [b"Hi, how are you.\n"] * 40


def serve_connections(env: dict, mode: str, conns: int, *extra: str) -> tuple[int, list[bytes], str]:
    """epoll_server serves `conns` connections of one request each (accepted, read, answered and
    closed by the server once the client closed)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvx", "run", "--mode", mode, *extra, "--leader", variant_bin("x86_64", "epoll_server"),
         "--follower", variant_bin("i386", "epoll_server"), "--", str(port), str(conns)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
    try:
        replies = []
        for i in range(conns):
            for _ in range(100):
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    break
                except OSError:
                    time.sleep(0.1)
            with sock:
                sock.sendall(f"req {i}\n".encode())
                replies.append(sock.recv(64))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, replies, err.decode(errors="replace")


@pytest.mark.parametrize("extra", [(), ("--no-write-behind",)])
def test_connections_are_accepted_and_closed_in_c(extra):
    """accept4 (the leader's monitor accepts; the follower gets a placeholder), epoll_ctl (both
    registries follow it) and close (the monitor's duplicate closed with the program's fd) are
    carried in C: 30 connections, and the Python path sees none of these calls after the first; the
    replies are those with the fast path off."""
    code, replies, err = serve_connections({"MVX_FAST_STATS": "1"}, "hybrid", 30, *extra)
    assert code == 0, err
    stats = [line for line in err.splitlines() if "hot calls carried in C" in line]
    assert len(stats) == 2, err
    for line in stats:
        items = (item.rsplit(" ", 1) for item in line.split("the Python path's stops: ")[1].split(", "))
        python_path = {name: int(n) for name, n in items if n.isdigit()}
        # i386's socket, setsockopt, bind and listen go through socketcall too: 4 at start, none per connection
        assert python_path.get("accept4", 0) + python_path.get("socketcall", 0) <= 6, line
        assert python_path.get("close", 0) <= 2, line
        assert python_path.get("epoll_ctl", 0) <= 3, line  # the listening socket's, before the first wait
    code_off, replies_off, err_off = serve_connections({"MVX_FAST": "0"}, "hybrid", 30, *extra)
    assert code_off == 0, err_off
    assert replies == replies_off == [b"Hi, how are you.\n"] * 30


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_connection_accepted_for_a_call_a_signal_took_away_goes_to_the_call_made_again(fast):
    """A signal between the leader's monitor's accept and the install of the connection takes the
    call away (MVX_FAULT_ACCEPT_SIGNAL makes it happen at every accept: SIGWINCH, ignored by
    epoll_server, so the kernel makes the call again). The connection waits for that call and its
    record goes out with the number the call got there: every client is served, no divergence. Before,
    the C loop closed the connection (the client saw a reset) and the Python path recorded fd 0."""
    code, replies, err = serve_connections({"MVX_FAST": fast, "MVX_FAULT_ACCEPT_SIGNAL": str(signal.SIGWINCH)},
                                           "hybrid", 10)
    assert code == 0, err
    assert "DIVERGENCE" not in err, err
    assert replies == [b"Hi, how are you.\n"] * 10, err
