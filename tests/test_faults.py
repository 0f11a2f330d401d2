"""Faults under load: each process of an `mvx run` of Debian's lighttpd (x86_64 leader, i386
follower, hybrid) is killed in turn while clients fetch pages, and a variant is frozen with SIGSTOP.
Whatever dies, the rest ends soon with a status and a line that say why, no process of the run is
left, the port is free again, and no connection is served by a leader left without its follower."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mvx.demo import lighttpd
from tests._variants import free_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 3.0  # --timeout of the runs: a frozen variant is a divergence within it


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """`pid` and every descendant (followers' worlds included: their pid 1 is a descendant)."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pids: list[int]) -> list[str]:
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(f"{p} {cmdline(p)}")
        except OSError:
            pass
    return out


class Load:
    """Clients fetching / in a loop, each on a new connection; counts what was served after `mark`."""

    def __init__(self, port: int, threads: int = 3) -> None:
        self.port, self.stopped, self.mark = port, threading.Event(), None
        self.served, self.served_after = 0, 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            began = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    self.served += 1
                    if self.mark is not None and began > self.mark:
                        self.served_after += 1
            except OSError:
                time.sleep(0.01)

    def stop(self) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(10)


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, int, lighttpd.Site]:
    port = free_port()
    site = lighttpd.make_site(tmp_path / "site", port)
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "run", "--timeout", str(TIMEOUT),
                             "--leader", lighttpd.variant_spec("x86_64", "-f", str(site.conf)),
                             "--follower", lighttpd.variant_spec("i386", "-f", str(site.conf)), "--", "-D"],
                            cwd=ROOT, env=lighttpd.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, site
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mvx run did not come up: {proc.communicate()[1].decode(errors='replace')}")
            time.sleep(0.05)


def end_run(proc: subprocess.Popen, load: Load, pids: list[int] = ()) -> str:
    """Stop the clients, then the run if it still goes (its whole group, and what is left of `pids`,
    its processes seen earlier: a test that failed leaves none behind); its stderr."""
    load.stop()
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return proc.communicate(timeout=30)[1].decode(errors="replace")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def find(pids: list[int], conf: Path) -> dict[str, int]:
    """The run's processes by role."""
    roles: dict[str, int] = {}
    for p in pids:
        c = cmdline(p)
        if " -m mvx leader " in c:
            roles["leader monitor"] = p
        elif " -m mvx follower " in c:
            roles.setdefault("follower monitor", p)  # (the first: the world's makers are its children)
        elif str(conf) in c and _comm(p) == "lighttpd":  # (not the cmdline: the checkout's path may say mvx)
            roles["leader program" if "/amd64/" in c else "follower program"] = p
    return roles


def port_free(port: int) -> bool:
    """Nothing listens there: a server may bind it again (as servers do, with SO_REUSEADDR: the
    connections the run closed may wait in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            return True
        except OSError:
            return False


@pytest.mark.parametrize("victim", ["leader program", "follower program", "leader monitor", "follower monitor",
                                    "mvx run"])
def test_a_process_killed_under_load_ends_the_whole_run(tmp_path, victim):
    proc, port, site = start_run(tmp_path)
    load = Load(port)
    try:
        time.sleep(1.0)
        pids = tree(proc.pid)
        roles = find(pids, site.conf)
        roles["mvx run"] = proc.pid
        assert set(roles) >= {"leader monitor", "follower monitor", "leader program", "follower program"}, \
            [cmdline(p) for p in pids]
        served_before = load.served
        os.kill(roles[victim], signal.SIGKILL)
        load.mark = time.monotonic() + 1.0  # (requests already under way may still finish)
        deadline = time.monotonic() + 5.0
        while alive(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = alive(pids)
    finally:
        err = end_run(proc, load, pids)
    assert served_before > 0, err
    assert not left, f"still running 5 s after the {victim} was killed: {left}\n{err}"
    assert load.served_after == 0, f"{load.served_after} requests served after the fault\n{err}"
    assert port_free(port), err
    if victim != "mvx run":
        assert proc.returncode in (70, 1, 128 + signal.SIGKILL), (proc.returncode, err)
        assert "Traceback" not in err
        said = [ln for ln in err.splitlines() if ln.startswith("mvx:")]
        assert said, f"no line says why the run ended\n{err}"


def test_a_frozen_follower_monitor_is_a_timeout_divergence(tmp_path):
    """SIGSTOP to a follower's monitor (its variant then waits too: a SIGSTOP to a variant itself is
    a signal its monitor takes, as a tracer does): the leader's check waits in vain, a `timeout`
    divergence ends the run, and the frozen monitor goes with it."""
    proc, port, site = start_run(tmp_path)
    load = Load(port)
    try:
        time.sleep(1.0)
        pids = tree(proc.pid)
        os.kill(find(pids, site.conf)["follower monitor"], signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            proc.wait(timeout=4 * TIMEOUT + 20)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - stopped_at
        left = alive(pids)
    finally:
        err = end_run(proc, load, pids)
    assert proc.returncode == 70, (proc.returncode, err)
    assert "DIVERGENCE (timeout)" in err, err
    assert took < 2 * TIMEOUT + 3, f"took {took:.1f}s\n{err}"
    assert not left, left
    assert port_free(port)
