#!/usr/bin/env python3
"""Generate tests/golden/*.json: the wire format pinned by example, for every ISA pair and hot call.

Each vector holds a leader's raw call (ISA, number, registers, memory before and after, result),
the bytes of the record it becomes (one protocol frame, docs/PROTOCOL.md), a follower's raw call
of another ISA, and the follower's plan: the result it returns and the bytes written into its own
memory (or that it runs the call itself). tests/test_golden.py checks that the Python encoder,
decoder and sync core reproduce them byte for byte; the C data plane must reproduce them too.

    python3 scripts/gen_golden.py            # rewrite tests/golden/
    python3 scripts/gen_golden.py --check    # exit 1 if a committed vector would change
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mvx.isa import arch as archmod
from mvx.isa import structs
from mvx.isa import syscalls as S
from mvx.isa.structs import SockAddr, TimeValue

OUT = ROOT / "tests" / "golden"
PAIRS = [("x86_64", "i386"), ("i386", "x86_64"), ("x86_64", "aarch64"), ("aarch64", "x86_64"),
         ("i386", "aarch64"), ("aarch64", "i386")]
BUF, BUF2, IOV, PTR, LEN, PATH = 0x10000, 0x11000, 0x12000, 0x13000, 0x14000, 0x15000
REQUEST = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello")
FILE = b"".join(b"%04d golden file line\n" % i for i in range(64))
STAT = {"st_dev": 2049, "st_ino": 77, "st_mode": 0o100644, "st_nlink": 1, "st_uid": 0, "st_gid": 0, "st_rdev": 0,
        "st_size": len(FILE), "st_blksize": 4096, "st_blocks": 8, "st_atime": TimeValue(1700000000, 5),
        "st_mtime": TimeValue(1700000001, 6), "st_ctime": TimeValue(1700000002, 7)}
PEER = SockAddr("AF_INET", (("sin_port", 40000), ("sin_addr", "127.0.0.1")))
NOW = TimeValue(1700000123, 456789012)


def _c(a, *names: str) -> int:
    return sum(S.const(a, n) for n in names)


def _word(a, v: int) -> bytes:
    return (v & ((1 << 8 * a.word_size) - 1)).to_bytes(a.word_size, "little")


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


class Side:
    """One variant's raw call: `call(raw name, *registers)`, memory before (`mem`), after (`out`)."""

    def __init__(self, arch: str) -> None:
        self.a = archmod.get(arch)
        self.raw = ""
        self.args: tuple[int, ...] = ()
        self.mem: dict[int, bytes] = {}
        self.out: dict[int, bytes] = {}
        self.ret = 0
        self.fd_kind: str | None = None
        self.epoll: list[tuple[int, int, int]] = []  # (epfd, fd, data) registered by the program
        self.file: bytes | None = None

    def call(self, raw: str, *args: int) -> Side:
        mask = (1 << 8 * self.a.word_size) - 1
        self.raw, self.args = raw, tuple(a & mask for a in args)
        return self

    def as_json(self, leader: bool) -> dict:
        out = {"arch": self.a.name, "call": self.raw, "nr": self.a.nr(self.raw),
               "args": list(self.args) + [0] * (6 - len(self.args)),
               "memory": {hex(k): v.hex() for k, v in sorted(self.mem.items())}}
        if leader:
            out["ret"] = self.ret
            out["memory_after"] = {hex(k): v.hex() for k, v in sorted(self.out.items())}
        if self.fd_kind:
            out["fd_kind"] = self.fd_kind
        if self.epoll:
            out["epoll"] = [list(e) for e in self.epoll]
        if self.file is not None:
            out["file"] = self.file.hex()
        return out


# ---- the hot calls: each builds (leader side, follower side) -------------------------------------
def read(s: Side, leader: bool) -> None:
    s.call("read", 5, BUF, 4096)
    s.fd_kind = "socket"
    if leader:
        s.ret, s.out = len(REQUEST), {BUF: REQUEST}


def recvfrom(s: Side, leader: bool) -> None:
    s.call("recvfrom", 5, BUF, 4096, 0, 0, 0)
    s.fd_kind = "socket"
    if leader:
        s.ret, s.out = len(REQUEST), {BUF: REQUEST}


def writev(s: Side, leader: bool) -> None:
    parts = RESPONSE
    addrs = [BUF, BUF2] if leader else [BUF2, BUF]  # the same bytes elsewhere, in the ISA's own iovecs
    s.mem = {IOV: structs.encode_iovecs(s.a.name, list(zip(addrs, map(len, parts)))), **dict(zip(addrs, parts))}
    s.call("writev", 5, IOV, len(parts))
    s.fd_kind = "socket"
    s.ret = sum(map(len, parts))


def sendfile(s: Side, leader: bool) -> None:
    s.call("sendfile64" if s.a.name == "i386" else "sendfile", 5, 6, 0, len(FILE))
    s.file = FILE
    s.ret = len(FILE)


def epoll_pwait(s: Side, leader: bool) -> None:
    """lighttpd keeps pointers in epoll_event.data: each variant its own."""
    base = 0x5555_5555_0000 if s.a.word_size == 8 else 0x5655_0000
    s.epoll = [(4, 7, base + 0x10), (4, 8, base + 0x20)]
    if s.a.name == "aarch64":
        s.call("epoll_pwait", 4, BUF, 64, -1, 0, 8)
    else:
        s.call("epoll_wait", 4, BUF, 64, -1)
    if leader:
        events = [(_c(s.a, "EPOLLIN"), base + 0x20), (_c(s.a, "EPOLLIN", "EPOLLHUP"), base + 0x10)]
        s.ret, s.out = 2, {BUF: structs.encode_epoll_events(s.a.name, events)}


def accept4(s: Side, leader: bool) -> None:
    s.mem = {BUF: bytes(16), LEN: _u32(16)}
    s.call("accept4", 3, BUF, LEN, _c(s.a, "SOCK_NONBLOCK", "SOCK_CLOEXEC"))
    s.fd_kind = "socket"
    if leader:
        s.ret, s.out = 7, {BUF: structs.encode_sockaddr(s.a.name, PEER), LEN: _u32(16)}


def clock_gettime(s: Side, leader: bool) -> None:
    raw = "clock_gettime64" if s.a.name == "i386" else "clock_gettime"
    layout = "timespec64" if s.a.name == "i386" else "timespec"
    s.call(raw, _c(s.a, "CLOCK_MONOTONIC"), BUF)
    if leader:
        s.ret, s.out = 0, {BUF: structs.encode(s.a.name, layout, NOW)}


def time(s: Side, leader: bool) -> None:
    """time() on x86_64; glibc's i386 and aarch64 read the coarse real-time clock instead."""
    if s.a.name == "x86_64":
        s.mem = {BUF: bytes(8)}
        s.call("time", BUF)
        if leader:
            s.ret, s.out = NOW.sec, {BUF: _word(s.a, NOW.sec)}
        return
    raw, layout = ("clock_gettime64", "timespec64") if s.a.name == "i386" else ("clock_gettime", "timespec")
    s.call(raw, _c(s.a, "CLOCK_REALTIME_COARSE"), BUF)
    if leader:
        s.ret, s.out = 0, {BUF: structs.encode(s.a.name, layout, TimeValue(NOW.sec, 0))}


def gettimeofday(s: Side, leader: bool) -> None:
    """gettimeofday on x86_64 and aarch64; glibc's i386 reads CLOCK_REALTIME in nanoseconds."""
    if s.a.name == "i386":
        s.call("clock_gettime64", _c(s.a, "CLOCK_REALTIME"), BUF)
        if leader:
            s.ret, s.out = 0, {BUF: structs.encode("i386", "timespec64", NOW)}
        return
    s.call("gettimeofday", BUF, 0)
    if leader:
        s.ret, s.out = 0, {BUF: structs.encode(s.a.name, "timeval", TimeValue(NOW.sec, NOW.nsec // 1000 * 1000, True))}


def getrandom(s: Side, leader: bool) -> None:
    """glibc's tcache key: one word of the caller's ISA."""
    s.call("getrandom", BUF, s.a.word_size, _c(s.a, "GRND_NONBLOCK"))
    if leader:
        s.ret, s.out = s.a.word_size, {BUF: bytes(range(0xA1, 0xA1 + s.a.word_size))}


def fstat(s: Side, leader: bool) -> None:
    """fstat on x86_64 and aarch64, statx(BASIC_STATS) on i386 (glibc 2.36): compared as fstatat."""
    if s.a.name == "i386":
        s.mem = {PATH: b"\0"}
        s.call("statx", 3, PATH, _c(s.a, "AT_EMPTY_PATH"), _c(s.a, "STATX_BASIC_STATS"), BUF)
    else:
        s.call("fstat", 3, BUF)
    s.fd_kind = "file"
    s.ret = 0


def newfstatat(s: Side, leader: bool) -> None:
    s.mem = {PATH: b"/srv/www/index.html\0"}
    raw = "fstatat64" if s.a.name == "i386" else "newfstatat"
    s.call(raw, _c(s.a, "AT_FDCWD"), PATH, BUF, 0)
    s.ret = 0


def openat(s: Side, leader: bool) -> None:
    s.mem = {PATH: b"/srv/www/index.html\0"}
    s.call("openat", _c(s.a, "AT_FDCWD"), PATH, _c(s.a, "O_RDONLY", "O_CLOEXEC", "O_NONBLOCK"), 0)
    s.ret = 6


def pread64(s: Side, leader: bool) -> None:
    """A read of a regular file: each variant reads its own copy (file_local); counts must agree."""
    if s.a.name == "i386":
        s.call("pread64", 6, BUF, 4096, 0, 0)  # the offset in two registers
    else:
        s.call("pread64", 6, BUF, 4096, 0)
    s.fd_kind = "file"
    if leader:
        s.ret, s.out = len(FILE), {BUF: FILE}


def close(s: Side, leader: bool) -> None:
    s.call("close", 6)
    s.ret = 0


def fcntl(s: Side, leader: bool) -> None:
    s.call("fcntl64" if s.a.name == "i386" else "fcntl", 5, _c(s.a, "F_SETFL"), _c(s.a, "O_RDWR", "O_NONBLOCK"))
    s.ret = 0


def setsockopt(s: Side, leader: bool) -> None:
    s.mem = {BUF: _u32(1)}
    s.call("setsockopt", 5, _c(s.a, "SOL_SOCKET"), _c(s.a, "SO_KEEPALIVE"), BUF, 4)
    s.ret = 0


CALLS = [read, recvfrom, writev, sendfile, epoll_pwait, accept4, clock_gettime, time, gettimeofday, getrandom,
         fstat, newfstatat, openat, pread64, close, fcntl, setsockopt]


def vector(scenario, leader_arch: str, follower_arch: str) -> dict:
    """One golden vector, computed by the Python implementation (mvx.core.golden)."""
    from mvx.core.golden import follow, lead

    leader, follower = Side(leader_arch), Side(follower_arch)
    scenario(leader, True)
    scenario(follower, False)
    v = {"about": (scenario.__doc__ or "").strip(), "leader": leader.as_json(True),
         "follower": follower.as_json(False)}
    v["record"] = lead(v["leader"]).hex()
    v["plan"] = follow(v["follower"], bytes.fromhex(v["record"]), v["leader"])
    return v


def render(v: dict) -> str:
    return json.dumps(v, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed vector would change")
    args = ap.parse_args(argv)
    want = {}
    for leader, follower in PAIRS:
        for scenario in CALLS:
            want[OUT / f"{leader}-{follower}" / f"{scenario.__name__}.json"] = render(vector(scenario, leader, follower))
    stale = [p for p, text in want.items() if not p.exists() or p.read_text() != text]
    extra = [p for p in OUT.glob("*/*.json") if p not in want] if OUT.exists() else []
    if args.check:
        for p in stale + extra:
            print(f"gen_golden: {p.relative_to(ROOT)} is stale; run python3 scripts/gen_golden.py", file=sys.stderr)
        return 1 if stale or extra else 0
    for p in extra:
        p.unlink()
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(want[p])
    print(f"gen_golden: {len(want)} vectors, {len(stale)} written, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
