"""Debian's nginx 1.22 under mvx: one process (`master_process off`), an amd64 and an i386 variant
(each with its ISA's libraries: mvx.demo.nginx.env()), in both roles and every mode, its responses
compared byte for byte with the same nginx run natively on the same files (Date aside).

Each follower runs in its own world (docs/DESIGN.md, "Each variant its own world"): it has the
leader's pid, so the error log's `PID#TID` agrees (before: `14610#14610` against `14610#14612`, a
divergence on the first line), and what it writes into its logs stays in its copy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from mvx.demo import nginx
from tests._variants import free_port
from tests.test_lighttpd import DATE, Server, exchange, get

MODES = ["hybrid", "seccomp", "ptrace"]
PAIRS = [("x86_64", "i386"), ("i386", "x86_64")]

CASES = {
    "small file": get("/1k.txt"),
    "large file": get("/1m.txt"),
    "index": get("/"),
    "404": get("/missing.txt"),
    "keep-alive then close": get("/1k.txt", close=False) + get("/index.html"),
}
FIRST_LINE = re.compile(r'^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[notice\] (\d+)#(\d+): using the "epoll" event method$')


def _binaries_present() -> None:
    for arch in ("x86_64", "i386"):
        try:
            nginx.binary(arch)
        except Exception as exc:  # noqa: BLE001 - turned into a test failure with the fix
            pytest.fail(str(exc))


def make_sites(tmp_path, extra: str = "") -> tuple[nginx.Site, nginx.Site]:
    """Two sites, one docroot: native and protected runs serve the very same files (same
    Last-Modified and ETag)."""
    _binaries_present()
    native_site = nginx.make_site(tmp_path / "native", free_port(), extra=extra)
    mvx_site = nginx.make_site(tmp_path / "mvx", free_port(), docroot=native_site.docroot, extra=extra)
    return native_site, mvx_site


@pytest.fixture
def sites(tmp_path):
    return make_sites(tmp_path)


def responses(port: int) -> dict[str, bytes]:
    return {name: DATE.sub(b"Date: -\r\n", exchange(port, data)) for name, data in CASES.items()}


def native(site: nginx.Site) -> Server:
    return Server(["taskset", "-c", "0", *nginx.argv("x86_64", site.root)], site.port, env=nginx.env())


def protected(site: nginx.Site, leader: str, follower: str, mode: str) -> Server:
    return Server([sys.executable, "-m", "mvx", "run", "--mode", mode, "--leader", nginx.variant_spec(leader, site.root),
                   "--follower", nginx.variant_spec(follower, site.root)], site.port, env=nginx.env())


def leader_program(site: nginx.Site) -> int:
    monitors = subprocess.run(["pgrep", "-f", f"mvx leader .*-c {site.conf}"], capture_output=True, text=True,
                              check=False).stdout.split()
    assert len(monitors) == 1, monitors
    children = subprocess.run(["pgrep", "-P", monitors[0]], capture_output=True, text=True, check=False).stdout.split()
    assert len(children) == 1, children
    return int(children[0])


def log_lines(site: nginx.Site) -> list[str]:
    """The error log without what differs between two runs: time, pid, the site's directory, a
    signal's sender."""
    text = site.error_log.read_text().replace(str(site.docroot), "DOCROOT").replace(str(site.root), "SITE")
    text = re.sub(r"^\S+ \S+ (\[\w+\]) \d+#\d+: ", r"\1 ", text, flags=re.MULTILINE)
    return re.sub(r"received from \d+", "received from -", text).splitlines()


def check_log(site: nginx.Site, program: int, ending: str) -> None:
    """The leader's error log: the lines of one nginx (the leader's; a follower's stay in its world),
    the first `[notice] PID#TID` with the leader's pid, and a clean end."""
    lines = site.error_log.read_text().splitlines()
    assert lines, "empty error log"
    m = FIRST_LINE.match(lines[0])
    assert m, lines[0]
    assert int(m.group(1)) == int(m.group(2)) == program, lines[0]
    assert all(f" {program}#{program}: " in ln for ln in lines), lines
    assert sum("using the \"epoll\" event method" in ln for ln in lines) == 1, lines
    assert not [ln for ln in lines if re.search(r"\[(emerg|alert|crit)\]", ln)], lines
    assert ending in lines[-2] and lines[-1].endswith(f"{program}#{program}: exit"), lines[-2:]


@pytest.mark.parametrize("sendfile", ["off", "on"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_nginx_serves_like_native(tmp_path, leader, follower, mode, sendfile):
    """`sendfile off` (Debian's default without its nginx.conf): files read with pread and sent with
    writev; `sendfile on`: sent with sendfile (compared by the file bytes it sends)."""
    native_site, mvx_site = make_sites(tmp_path, f"    sendfile {sendfile};\n")
    ref = native(native_site)
    try:
        expected = responses(native_site.port)
    finally:
        ref.stop()
    server = protected(mvx_site, leader, follower, mode)
    try:
        got = responses(mvx_site.port)
        program = leader_program(mvx_site)
    finally:
        status, err = server.stop(signal.SIGTERM)
    assert "DIVERGENCE" not in err and "Traceback" not in err, err
    assert status == 0, err  # SIGTERM, passed to every variant: nginx exits 0
    for name in CASES:
        assert got[name] == expected[name], f"{name}: differs from native nginx"
    check_log(mvx_site, program, "signal 15 (SIGTERM) received")
    # line for line what native nginx logged for the same requests (the 404's [error] included)
    assert log_lines(mvx_site) == log_lines(native_site)
    # one line per request, the leader's only
    requests = sum(data.count(b"HTTP/1.1\r\n") for data in CASES.values())
    assert len((mvx_site.tmp / "access.log").read_text().splitlines()) == requests


@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_nginx_ends_gracefully_on_sigquit(sites, leader, follower):
    """SIGQUIT to the leader's nginx (graceful shutdown) reaches every variant at the same point,
    and every variant ends with status 0."""
    _, site = sites
    server = protected(site, leader, follower, "hybrid")
    try:
        assert exchange(site.port, get("/1k.txt")).endswith(nginx.FILES["1k.txt"])
        program = leader_program(site)
        os.kill(program, signal.SIGQUIT)
        status, err = server.stop(None)
    finally:
        server.stop()
    assert "DIVERGENCE" not in err and "Traceback" not in err, err
    assert status == 0, err
    # single-process nginx: "shutting down" (no workers to wait for), then "exit"; the sender is
    # the test, as natively (the leader's siginfo is replicated)
    check_log(site, program, f"signal 3 (SIGQUIT) received from {os.getpid()}, shutting down")
