"""The servers `mvx bench` measures, as data: which binary each ISA runs, how a variant's command
line is built, how the server is set up (config, document root), how to tell it is serving, and
what load it gets. Add a server by calling `register(Server(...))`.

    epoll     build/variants/<arch>/epoll_server: one fixed reply per chunk, not HTTP; load from
              echo_load (mvx/bench/programs/echo_load.c), persistent and one-request connections
    lighttpd  Debian's lighttpd 1.4.69 (build/variants/lighttpd/<debarch>): a generated config and
              document root (small file 1 KiB, large file 1 MiB); load from wrk, keep-alive or not
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mvx import MvxError
from mvx.bench import load
from mvx.demo import lighttpd

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ROOT / "build" / "variants"

EPOLL_REQUEST = b"ping\n"
EPOLL_REPLY = b"Hi, how are you.\n"
FILES = {"small": ("small.bin", 1024), "large": ("large.bin", 1024 * 1024)}


@dataclass(frozen=True)
class Workload:
    connections: int
    keepalive: bool
    file: str | None = None  # a key of FILES (HTTP servers), None for the line server

    @property
    def name(self) -> str:
        parts = [f"c{self.connections}", "keep-alive" if self.keepalive else "close"]
        if self.file:
            parts.append(f"{self.file} ({_size(FILES[self.file][1])})")
        return " ".join(parts)

    @property
    def short(self) -> str:
        return f"c{self.connections} {'ka' if self.keepalive else 'close'}" + (f" {self.file}" if self.file else "")

    def to_json(self) -> dict:
        return {"name": self.name, "connections": self.connections, "keepalive": self.keepalive, "file": self.file}


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


@dataclass(frozen=True)
class Server:
    name: str
    description: str
    binary: Callable[[str], Path]  # arch -> the variant's program
    args: Callable[[str, int, Path], list[str]]  # (arch, port, workdir) -> arguments after the program
    setup: Callable[[Path, int], None]  # (workdir, port): config files; called before every start
    probe: Callable[[int, float], None]  # (port, timeout): one good request, or an exception saying why
    workloads: Callable[[list[int]], list[Workload]]  # connection counts -> the workload points
    run_load: Callable[[int, Workload, float, int | None], load.LoadResult]  # (port, workload, seconds, cpu)
    build_hint: str
    notes: list[str] = field(default_factory=list)

    def argv(self, arch: str, port: int, workdir: Path) -> list[str]:
        return [str(self.binary(arch)), *self.args(arch, port, workdir)]

    def check(self, arches: list[str]) -> None:
        for arch in arches:
            if not self.binary(arch).is_file():
                raise MvxError(f"server {self.name}: missing {self.binary(arch)} ({self.build_hint})")


SERVERS: dict[str, Server] = {}


def register(server: Server) -> Server:
    SERVERS[server.name] = server
    return server


def get(name: str) -> Server:
    try:
        return SERVERS[name]
    except KeyError:
        raise MvxError(f"unknown server {name!r} (known: {', '.join(SERVERS)})") from None


# ---- epoll_server -------------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _epoll_probe(port: int, timeout: float) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(EPOLL_REQUEST)
        got = _recv_exactly(s, len(EPOLL_REPLY))
    if got != EPOLL_REPLY:
        raise MvxError(f"epoll_server answered {got!r}")


def _epoll_load(port: int, w: Workload, seconds: float, cpu: int | None) -> load.LoadResult:
    return load.echo_load(port, w.connections, seconds, w.keepalive, len(EPOLL_REPLY), cpu)


register(Server(
    name="epoll",
    description="variants/src/epoll_server.c: epoll loop, one 17-byte reply per 5-byte request; load from "
    "echo_load (persistent connections, or one connection per request closed with an RST by the client)",
    binary=lambda arch: VARIANTS / arch / "epoll_server",
    args=lambda arch, port, workdir: [str(port)],
    setup=lambda workdir, port: None,
    probe=_epoll_probe,
    workloads=lambda conns: [Workload(c, ka) for ka in (True, False) for c in conns],
    run_load=_epoll_load,
    build_hint="run `just variants` (bash scripts/build_variants.sh)",
))


# ---- lighttpd -----------------------------------------------------------------------------------

# Built-in modules only (each variant still gets its own ISA's -m directory), keep-alive unbounded.
BENCH_MODULES = ("mod_indexfile", "mod_staticfile")
BENCH_EXTRA = "server.max-keep-alive-requests = 1000000\n"


def _lighttpd_binary(arch: str) -> Path:
    return lighttpd.binary(arch)


def _lighttpd_args(arch: str, port: int, workdir: Path) -> list[str]:
    return ["-D", "-f", str(workdir / "lighttpd.conf"), *lighttpd.argv(arch)[1:]]


def _lighttpd_setup(workdir: Path, port: int) -> None:
    docroot = workdir / "docroot"
    docroot.mkdir(parents=True, exist_ok=True)
    for fname, size in FILES.values():
        path = docroot / fname
        if not path.exists() or path.stat().st_size != size:
            line = b"mvx bench: the same bytes on every run, 64 bytes a line.........\n"
            path.write_bytes((line * (size // len(line) + 1))[:size])
    lighttpd.make_site(workdir, port, docroot=docroot, modules=BENCH_MODULES, extra=BENCH_EXTRA)


def _lighttpd_probe(port: int, timeout: float) -> None:
    fname, size = FILES["small"]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET /{fname} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = data.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 200 " not in status + " ":
        raise MvxError(f"lighttpd answered {status or 'nothing'!r}")
    if len(data.split(b"\r\n\r\n", 1)[-1]) != size:
        raise MvxError(f"lighttpd sent a short body for /{fname}")


def _lighttpd_load(port: int, w: Workload, seconds: float, cpu: int | None) -> load.LoadResult:
    return load.wrk(f"http://127.0.0.1:{port}/{FILES[w.file][0]}", w.connections, seconds, w.keepalive, cpu)


register(Server(
    name="lighttpd",
    description="Debian lighttpd 1.4.69 (`lighttpd -D -f CONF -m build/variants/lighttpd/<debarch>/usr/lib/lighttpd`), "
    "static files of 1 KiB and 1 MiB; load from wrk -t1 (keep-alive, or `Connection: close`)",
    binary=_lighttpd_binary,
    args=_lighttpd_args,
    setup=_lighttpd_setup,
    probe=_lighttpd_probe,
    workloads=lambda conns: [Workload(c, ka, f) for f in ("small", "large") for ka in (True, False) for c in conns],
    run_load=_lighttpd_load,
    build_hint="run `just variants` (bash scripts/fetch_lighttpd.sh)",
))
