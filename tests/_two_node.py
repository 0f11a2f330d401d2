"""Two nodes on one machine for the two-node tests (tests/test_two_node.py, tests/test_link_faults.py):
two network namespaces joined by a veth pair, `mvx leader` in node A (10.77.0.1) and `mvx follower`
in node B (10.77.0.2), TLS keys from `mvx keygen`, clients in node A.

`namespaces()` makes a pair of namespaces and deletes them, and what `ip netns add` made to hold them
(/run/netns, a mount of itself) when no other namespace is left there; `Cluster.kill_all` ends every
node it started. The test modules wrap them in their fixtures."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NETNS_DIR = "/run/netns"

LEADER_IP, FOLLOWER_IP = "10.77.0.1", "10.77.0.2"
# The namespaces are new for each test, so fixed ports cannot clash with anything.
PROGRAM_PORT, CHANNEL_PORT = 7070, 7071
HELLO = b"Hi, how are you.\n"
SESSION_TIMEOUT = 20  # s for a whole session to end once its clients are done

CLIENT = r"""
import socket, sys
port = int(sys.argv[1])
data = sys.stdin.buffer.read()
got = b""
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        while not got.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
except ConnectionResetError:
    pass
sys.stdout.buffer.write(got)
"""

_serial = itertools.count()


def skip_unless_netns() -> None:
    """Skip the calling test module where network namespaces cannot be made."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` (network namespaces and veth pairs)", allow_module_level=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to make network namespaces and veth pairs", allow_module_level=True)


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.fail(f"`ip {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()}")


@dataclass
class Net:
    a: str  # the leader's namespace
    b: str  # the follower's namespace
    va: str  # the veth end in a
    vb: str  # the veth end in b


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _drop_netns_dir() -> None:
    """Undo what `ip netns add` did to /run/netns when it made it (a bind mount of itself, made
    shared), once no namespace is left in it: a mount that still holds one (another test's) makes
    umount fail with EBUSY, and the directory stays."""
    for _ in range(4):  # one mount per `ip netns add` that found it unmounted
        if not _mounted(NETNS_DIR) or os.listdir(NETNS_DIR):
            break
        if subprocess.run(["umount", NETNS_DIR], check=False, capture_output=True, timeout=10).returncode:
            break
    with contextlib.suppress(OSError):
        os.rmdir(NETNS_DIR)  # only when empty


@contextlib.contextmanager
def namespaces():
    """A pair of network namespaces joined by a veth pair (A: LEADER_IP, B: FOLLOWER_IP), deleted at
    the end with everything made for them."""
    tag = f"{os.getpid()}x{next(_serial)}"
    a, b = f"mvxA{tag}", f"mvxB{tag}"
    va, vb = f"mva{tag}", f"mvb{tag}"  # interface names: at most 15 characters
    made_dir = not os.path.exists(NETNS_DIR)
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        for ns, dev, addr in ((a, va, LEADER_IP), (b, vb, FOLLOWER_IP)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield Net(a, b, va, vb)
    finally:
        for ns in (a, b):  # deleting a namespace deletes the veth end inside it
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=10)
        for dev in (va, vb):  # in case it was made but never moved out of this namespace
            subprocess.run(["ip", "link", "del", dev], check=False, capture_output=True, timeout=10)
        if made_dir:
            _drop_netns_dir()
        names = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True,
                               timeout=10).stdout
        links = subprocess.run(["ip", "-o", "link"], check=False, capture_output=True, text=True,
                               timeout=10).stdout
        left = [n for n in (a, b) if n in names.split()]
        left += [d for d in (va, vb) if f" {d}@" in links or f" {d}:" in links]
        if made_dir and os.path.exists(NETNS_DIR) and not os.listdir(NETNS_DIR):
            left.append(NETNS_DIR + (" (mounted)" if _mounted(NETNS_DIR) else ""))
        assert not left, f"teardown left {left} behind"


def key_maker(tmp_path_factory):
    """keys(name): the directory of one `mvx keygen` run per name (another name, another CA)."""
    made: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in made:
            d = tmp_path_factory.mktemp("keys") / name
            r = subprocess.run([sys.executable, "-m", "mvx", "keygen", str(d)], check=False, cwd=ROOT,
                               env=_env(None), capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            made[name] = str(d)
        return made[name]

    return get


def _env(marker: Path | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("MVX_DEBUG", None)  # tracebacks must not show in the normal path
    env["MVX_FAST_STATS"] = "1"  # each monitor says at its end how many calls its C loop carried
    if marker is not None:
        env["MVX_MARKER"] = str(marker)
    return env


@dataclass
class Node:
    role: str
    proc: subprocess.Popen
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@dataclass
class Cluster:
    net: Net
    tmp: Path
    marker: Path
    nodes: list[Node] = field(default_factory=list)

    def _start(self, role: str, ns: str, args: list[str]) -> Node:
        n = sum(1 for x in self.nodes if x.role == role)
        out, err = self.tmp / f"{role}{n}.out", self.tmp / f"{role}{n}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "mvx", role, *args],
                                    cwd=ROOT, env=_env(self.marker), stdin=subprocess.DEVNULL, stdout=o,
                                    stderr=e, start_new_session=True)
        node = Node(role, proc, out, err)
        self.nodes.append(node)
        return node

    def leader(self, keys: str, binary: str, *args: str, wait: float = 15, opts: tuple[str, ...] = ()) -> Node:
        base = ["--listen", f"{LEADER_IP}:{CHANNEL_PORT}", "--keys", keys, "--wait", str(wait), *opts]
        return self._start("leader", self.net.a, [*base, "--", binary, *args])

    def follower(self, keys: str, binary: str, *args: str, wait: float = 15, opts: tuple[str, ...] = ()) -> Node:
        base = ["--connect", f"{LEADER_IP}:{CHANNEL_PORT}", "--keys", keys, "--wait", str(wait), *opts]
        return self._start("follower", self.net.b, [*base, "--", binary, *args])

    def logs(self) -> str:
        parts = []
        for node in self.nodes:
            parts.append(f"--- {node.role} (exit {node.proc.poll()}) stdout:\n{node.stdout()}"
                         f"--- {node.role} stderr:\n{node.stderr()}")
        return "\n".join(parts)

    def wait_listening(self, node: Node, timeout: float = 20) -> None:
        """The program prints '<name>: listening' once it listens; mvx starts it only when the
        follower has connected."""
        deadline = time.monotonic() + timeout
        while b"listening" not in node.out.read_bytes():
            if node.proc.poll() is not None:
                pytest.fail(f"the {node.role} ended before its program listened\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the {node.role}'s program did not listen within {timeout}s\n{self.logs()}")
            time.sleep(0.05)

    def client(self, data: bytes) -> bytes:
        """One connection from node A to the leader's program: send data, return the reply line."""
        try:
            r = subprocess.run(["ip", "netns", "exec", self.net.a, sys.executable, "-c", CLIENT,
                                str(PROGRAM_PORT)], check=False, input=data, capture_output=True, timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the client got no answer within 20s\n{self.logs()}")
        assert r.returncode == 0, f"client failed: {r.stderr.decode(errors='replace')}\n{self.logs()}"
        return r.stdout

    def wait(self, node: Node, timeout: float = SESSION_TIMEOUT) -> int:
        try:
            return node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the {node.role} did not end within {timeout}s\n{self.logs()}")

    def kill_all(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                _signal_group(node.proc, signal.SIGTERM)  # mvx stops its variant
        for node in self.nodes:
            try:
                node.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(node.proc, signal.SIGKILL)
                node.proc.wait(timeout=5)
        # A variant dies with its monitor (PTRACE_O_EXITKILL, PR_SET_PDEATHSIG); the group is signalled
        # only while its leader is unreaped, so its id cannot belong to anyone else.


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def cluster_in(net: Net, tmp: Path):
    """A Cluster in `net` whose nodes are all ended at the end (before the namespaces go)."""
    c = Cluster(net, tmp, tmp / "marker")
    try:
        yield c
    finally:
        c.kill_all()
