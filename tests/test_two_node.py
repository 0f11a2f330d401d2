"""The two-node form (`mvx leader` / `mvx follower`) across two network namespaces joined by a veth pair.

Node A (the leader's) has 10.77.0.1, node B (the follower's) 10.77.0.2; the channel is TLS from
`mvx keygen`. The servers bind 127.0.0.1, so the clients run in node A. Each test makes its own pair
of namespaces (named after the pid and a counter) and deletes them at teardown, after killing every
process it started, whatever the outcome.

Each test can fail: a session that does not cross the link, a reply that does not come back, an exit
status other than the program's, an exploit that gets through, or a follower with the wrong keys that
is let in."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _variants import variant_bin

ROOT = Path(__file__).resolve().parent.parent

if shutil.which("ip") is None:
    pytest.skip("needs iproute2's `ip` (network namespaces and veth pairs)", allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip("needs root to make network namespaces and veth pairs", allow_module_level=True)

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


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.fail(f"`ip {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()}")


@dataclass
class Net:
    a: str  # the leader's namespace
    b: str  # the follower's namespace


@pytest.fixture
def net():
    tag = f"{os.getpid()}x{next(_serial)}"
    a, b = f"mvxA{tag}", f"mvxB{tag}"
    va, vb = f"mva{tag}", f"mvb{tag}"  # interface names: at most 15 characters
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        for ns, dev, addr in ((a, va, LEADER_IP), (b, vb, FOLLOWER_IP)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield Net(a, b)
    finally:
        for ns in (a, b):  # deleting a namespace deletes the veth end inside it
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=10)
        for dev in (va, vb):  # in case it was made but never moved out of this namespace
            subprocess.run(["ip", "link", "del", dev], check=False, capture_output=True, timeout=10)
        names = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True,
                               timeout=10).stdout
        links = subprocess.run(["ip", "-o", "link"], check=False, capture_output=True, text=True,
                               timeout=10).stdout
        left = [n for n in (a, b) if n in names.split()]
        left += [d for d in (va, vb) if f" {d}@" in links or f" {d}:" in links]
        assert not left, f"teardown left {left} behind"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
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

    def leader(self, keys: str, binary: str, *args: str, wait: float = 15) -> Node:
        opts = ["--listen", f"{LEADER_IP}:{CHANNEL_PORT}", "--keys", keys, "--wait", str(wait)]
        return self._start("leader", self.net.a, [*opts, "--", binary, *args])

    def follower(self, keys: str, binary: str, *args: str, wait: float = 15) -> Node:
        opts = ["--connect", f"{LEADER_IP}:{CHANNEL_PORT}", "--keys", keys, "--wait", str(wait)]
        return self._start("follower", self.net.b, [*opts, "--", binary, *args])

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


@pytest.fixture
def cluster(net, tmp_path):
    c = Cluster(net, tmp_path, tmp_path / "marker")
    try:
        yield c
    finally:
        c.kill_all()  # before `net` deletes the namespaces


def assert_clean_session(c: Cluster, leader: Node, follower: Node) -> None:
    assert c.wait(leader) == 0, c.logs()
    assert c.wait(follower) == 0, c.logs()
    for node in (leader, follower):
        assert "DIVERGENCE" not in node.stderr(), c.logs()
        assert "Traceback" not in node.stderr(), c.logs()


@pytest.mark.parametrize(("leader_arch", "follower_arch"), [("x86_64", "i386"), ("i386", "x86_64")],
                         ids=["x86_64-leader", "i386-leader"])
def test_two_nodes_serve_clients(cluster, keys, leader_arch, follower_arch):
    """Leader in node A, follower of the other ISA in node B, TLS: three clients are answered and
    both nodes end with the program's status."""
    k = keys("good")
    leader = cluster.leader(k, variant_bin(leader_arch, "epoll_server"), str(PROGRAM_PORT), "3")
    follower = cluster.follower(k, variant_bin(follower_arch, "epoll_server"), str(PROGRAM_PORT), "3")
    cluster.wait_listening(leader)
    for i in range(3):
        assert cluster.client(f"hello {i}\n".encode()) == HELLO, cluster.logs()
    assert_clean_session(cluster, leader, follower)
    assert "listening" in leader.stdout()
    for node in (leader, follower):  # over TLS too, the hot calls go from trap to answer in C
        carried = re.search(r"(\d+) hot calls carried in C, (\d+) synced calls", node.stderr())
        assert carried and int(carried[1]) >= 12, cluster.logs()


def test_follower_started_first_waits_for_the_leader(cluster, keys):
    """The follower retries while nobody listens on 10.77.0.1; the leader started later still gets it."""
    k = keys("good")
    follower = cluster.follower(k, variant_bin("i386", "epoll_server"), str(PROGRAM_PORT), "3")
    time.sleep(1.5)  # long enough for its first connection attempts to be refused
    assert follower.proc.poll() is None, f"the follower gave up instead of waiting\n{cluster.logs()}"
    leader = cluster.leader(k, variant_bin("x86_64", "epoll_server"), str(PROGRAM_PORT), "3")
    cluster.wait_listening(leader)
    for i in range(3):
        assert cluster.client(f"hello {i}\n".encode()) == HELLO, cluster.logs()
    assert_clean_session(cluster, leader, follower)


def test_attack_across_nodes_is_stopped(cluster, keys, tmp_path):
    """A payload that hijacks the x86_64 leader's build crashes the i386 follower's: the session
    stops with a divergence before the hijacked leader writes or creates anything."""
    make_attack = ROOT / "scripts" / "make_attack.py"
    payload = subprocess.run([sys.executable, str(make_attack), variant_bin("x86_64", "vuln_server")],
                             check=False, capture_output=True, timeout=30)
    assert payload.returncode == 0 and payload.stdout, payload.stderr.decode(errors="replace")
    k = keys("good")
    leader = cluster.leader(k, variant_bin("x86_64", "vuln_server"), str(PROGRAM_PORT))
    follower = cluster.follower(k, variant_bin("i386", "vuln_server"), str(PROGRAM_PORT))
    cluster.wait_listening(leader)
    assert cluster.client(b"hello\n") == HELLO, cluster.logs()
    reply = cluster.client(payload.stdout)
    assert cluster.wait(leader) == 70, cluster.logs()
    assert cluster.wait(follower) != 0, cluster.logs()
    assert "DIVERGENCE" in leader.stderr() + follower.stderr(), cluster.logs()
    assert "PWNED" not in leader.stdout(), cluster.logs()
    assert b"PWNED" not in reply
    assert not cluster.marker.exists(), f"the exploit created {cluster.marker}\n{cluster.logs()}"
    for node in (leader, follower):
        assert "Traceback" not in node.stderr(), cluster.logs()


def _one_line_error(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("mvx: error:")]


def test_follower_with_other_keys_is_refused(cluster, keys):
    """A follower whose certificate comes from another `mvx keygen` never joins: it ends with one
    line of error, and the leader, which never starts its program, gives up after --wait."""
    port = str(PROGRAM_PORT)
    leader = cluster.leader(keys("good"), variant_bin("x86_64", "epoll_server"), port, "3", wait=3)
    follower = cluster.follower(keys("other"), variant_bin("i386", "epoll_server"), port, "3", wait=3)
    f_code = cluster.wait(follower)
    l_code = cluster.wait(leader)
    assert f_code != 0, cluster.logs()
    f_err = follower.stderr().strip().splitlines()
    assert len(f_err) == 1 and f_err[0].startswith("mvx: error:"), cluster.logs()
    assert "tls" in f_err[0].lower() or "certificate" in f_err[0].lower(), cluster.logs()
    assert l_code != 0, cluster.logs()
    assert len(_one_line_error(leader.stderr())) == 1, cluster.logs()
    assert FOLLOWER_IP in leader.stderr(), f"the leader never saw the follower's connection\n{cluster.logs()}"
    assert "listening" not in leader.stdout(), f"the leader ran its program alone\n{cluster.logs()}"
    for node in (leader, follower):
        assert "Traceback" not in node.stderr(), cluster.logs()


def test_leader_keeps_waiting_after_refusing_a_follower(cluster, keys):
    """After refusing a follower with the wrong keys, the leader still takes the right one."""
    k = keys("good")
    leader = cluster.leader(k, variant_bin("x86_64", "epoll_server"), str(PROGRAM_PORT), "1")
    intruder = cluster.follower(keys("other"), variant_bin("i386", "epoll_server"), str(PROGRAM_PORT), "1",
                                wait=3)
    assert cluster.wait(intruder) != 0, cluster.logs()
    assert leader.proc.poll() is None, f"the leader gave up after one bad follower\n{cluster.logs()}"
    assert "listening" not in leader.stdout(), cluster.logs()
    follower = cluster.follower(k, variant_bin("i386", "epoll_server"), str(PROGRAM_PORT), "1")
    cluster.wait_listening(leader)
    assert cluster.client(b"hello\n") == HELLO, cluster.logs()
    assert_clean_session(cluster, leader, follower)
