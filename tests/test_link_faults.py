"""Faults of the link between two nodes (tests/_two_node.py: network namespaces joined by a veth
pair, `mvx leader` x86_64 in node A, `mvx follower` i386 in node B, TLS) while clients load the
leader's epoll_server.

A cut link (`ip link set <veth> down`): the channel goes silent, no error reaches either side for
minutes (TCP retransmits into nothing). Both nodes must still end within --timeout and a margin,
with a `timeout` or `channel` divergence said on one `mvx:` line, no process left, and no response
leaving the leader after the cut that its follower did not check.

A lossy and slow link (tc netem): TCP retransmits, the session goes on and every response is right,
or it ends as a cut link does; it never hangs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from _two_node import (
    CHANNEL_PORT,
    HELLO,
    LEADER_IP,
    PROGRAM_PORT,
    Cluster,
    Node,
    cluster_in,
    key_maker,
    namespaces,
    skip_unless_netns,
)
from _variants import variant_bin
from test_faults import alive, tree

skip_unless_netns()

TIMEOUT = 2.0  # --timeout of both nodes
# past --timeout: the leader's lockstep wait has CHECK_GRACE (2 s) more, then each side's report and
# ending (a TLS close_notify that cannot be sent gets 1 s)
GRACE = 5.0
DIVERGENCE_EXIT, PEER_LOST_EXIT = 70, 1  # (docs/DESIGN.md, exit status)
LOSSY = 6.0  # s of a lossy link: longer than --timeout and the leader's grace
SETTLE = 0.5  # s after a fault within which a response already checked may still arrive

# Clients in a loop, each request on a new connection; one line per request as it ends:
# "<began> <ended> ok|bad|none|error" (CLOCK_MONOTONIC, the same in every network namespace); `bad`:
# bytes other than the reply, `none`: the connection closed without any.
LOAD = r"""
import socket, sys, threading, time
port, threads, want = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode() + b"\n"
lock = threading.Lock()

def run():
    while True:
        began = time.monotonic()
        got, how = b"", "bad"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"ping\n")
                while not got.endswith(b"\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            how = "ok" if got == want else "bad" if got else "none"
        except OSError:
            how = "error"
        with lock:
            print(f"{began:.3f} {time.monotonic():.3f} {how}", flush=True)
        if how != "ok":
            time.sleep(0.05)

for _ in range(threads):
    threading.Thread(target=run, daemon=True).start()
sys.stdin.read()
"""


@pytest.fixture
def net():
    with namespaces() as n:
        yield n


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return key_maker(tmp_path_factory)


@pytest.fixture
def cluster(net, tmp_path):
    with cluster_in(net, tmp_path) as c:
        yield c


class Load:
    """LOAD in node A until stopped; `results()`: (began, ended, how) per request."""

    def __init__(self, c: Cluster, threads: int = 2) -> None:
        self.out = c.tmp / "load.out"
        with open(self.out, "wb") as o:
            self.proc = subprocess.Popen(["ip", "netns", "exec", c.net.a, sys.executable, "-c", LOAD,
                                          str(PROGRAM_PORT), str(threads), HELLO.decode().strip()],
                                         stdin=subprocess.PIPE, stdout=o, stderr=subprocess.DEVNULL)

    def results(self) -> list[tuple[float, float, str]]:
        rows = []
        for line in self.out.read_text().splitlines():
            began, ended, how = line.split()
            rows.append((float(began), float(ended), how))
        return rows

    def served(self, after: float = 0.0) -> int:
        return sum(1 for _, ended, how in self.results() if how == "ok" and ended > after)

    def last_served(self) -> float:
        return max((ended for _, ended, how in self.results() if how == "ok"), default=0.0)

    def bad(self) -> list[tuple[float, float, str]]:
        return [r for r in self.results() if r[2] == "bad"]

    def wait_served(self, n: int, timeout: float, c: Cluster) -> None:
        deadline = time.monotonic() + timeout
        while self.served() < n:
            if time.monotonic() > deadline:
                pytest.fail(f"only {self.served()} of {n} requests served within {timeout}s\n{c.logs()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def load_of(cluster):
    loads: list[Load] = []

    def start(threads: int = 2) -> Load:
        loads.append(Load(cluster, threads))
        return loads[-1]

    try:
        yield start
    finally:
        for load in loads:
            load.stop()


def start_pair(c: Cluster, keys) -> tuple[Node, Node]:
    k = keys("good")
    opts = ("--timeout", f"{TIMEOUT:g}")
    leader = c.leader(k, variant_bin("x86_64", "epoll_server"), str(PROGRAM_PORT), opts=opts)
    follower = c.follower(k, variant_bin("i386", "epoll_server"), str(PROGRAM_PORT), opts=opts)
    c.wait_listening(leader)
    return leader, follower


def processes(nodes: list[Node]) -> list[int]:
    """Every process of the nodes (the follower's world included), while they run."""
    return [p for node in nodes for p in tree(node.proc.pid)]


def wait_ended(c: Cluster, nodes: list[Node], since: float, within: float) -> dict[str, float]:
    """When (time.monotonic) each node ended; fails naming the ones still running `within` s after
    `since`."""
    ended: dict[str, float] = {}
    while len(ended) < len(nodes):
        now = time.monotonic()
        for node in nodes:
            if node.role not in ended and node.proc.poll() is not None:
                ended[node.role] = now
        if now - since > within and len(ended) < len(nodes):
            running = [n.role for n in nodes if n.role not in ended]
            pytest.fail(f"{running} still running {within:g}s after the fault\n{c.logs()}")
        time.sleep(0.05)
    return ended


def since(t: float, ended: dict[str, float]) -> dict[str, float]:
    return {role: round(at - t, 2) for role, at in ended.items()}


def said(node: Node) -> list[str]:
    return [line for line in node.stderr().splitlines() if line.startswith("mvx:")]


def ip_in(ns: str, *args: str) -> None:
    r = subprocess.run(["ip", "-n", ns, *args], check=False, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"`ip -n {ns} {' '.join(args)}`: {r.stderr.strip()}"


def netns_pids(ns: str) -> list[str]:
    r = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True, timeout=10)
    return r.stdout.split()


def assert_ended_by_the_link(c: Cluster, leader: Node, follower: Node, pids: list[int]) -> None:
    """Both nodes ended for the link, each saying why on one `mvx:` line, and nothing is left: the
    leader with a `timeout` or `channel` divergence (70); the follower with its leader lost (1: the
    connection timed out, or the leader's last word came through), or, had a record waited too long,
    a `timeout` divergence (70)."""
    for node in (leader, follower):
        assert "Traceback" not in node.stderr(), c.logs()
    assert leader.proc.returncode == DIVERGENCE_EXIT, c.logs()
    why = [ln for ln in said(leader) if ln.startswith("mvx: DIVERGENCE")]
    assert len(why) == 1 and re.match(r"mvx: DIVERGENCE \((timeout|channel)\)", why[0]), c.logs()
    if follower.proc.returncode == DIVERGENCE_EXIT:
        why = [ln for ln in said(follower) if ln.startswith("mvx: DIVERGENCE")]
        assert len(why) == 1 and why[0].startswith("mvx: DIVERGENCE (timeout)"), c.logs()
    else:
        assert follower.proc.returncode == PEER_LOST_EXIT, c.logs()
        # its leader lost, or (a slow link that still carries the leader's last word) told to stop
        why = [ln for ln in said(follower) if ln.startswith("mvx: stopped:")]
        assert len(why) == 1 and (f"leader {LEADER_IP}:{CHANNEL_PORT}" in why[0]
                                  or "the leader ended the session" in why[0]), c.logs()
    assert not alive(pids), f"left running: {alive(pids)}\n{c.logs()}"
    for ns in (c.net.a, c.net.b):
        assert not netns_pids(ns), f"processes left in {ns}: {netns_pids(ns)}\n{c.logs()}"


@pytest.mark.parametrize("side", ["leader", "follower"])
def test_a_cut_link_ends_both_nodes_within_the_timeout(cluster, keys, load_of, side):
    leader, follower = start_pair(cluster, keys)
    load = load_of()
    load.wait_served(20, 20, cluster)
    pids = processes([leader, follower])
    ns, dev = (cluster.net.a, cluster.net.va) if side == "leader" else (cluster.net.b, cluster.net.vb)
    ip_in(ns, "link", "set", dev, "down")
    cut = time.monotonic()
    took = since(cut, wait_ended(cluster, [leader, follower], cut, TIMEOUT + GRACE + 10))
    load.stop()
    print(f"cut on the {side}'s side: ended after {took}; {load.served()} served before")
    print(cluster.logs())
    late = load.served(after=cut + SETTLE)
    assert late == 0, f"{late} responses after the cut\n{cluster.logs()}"
    assert not load.bad(), (load.bad(), cluster.logs())
    assert_ended_by_the_link(cluster, leader, follower, pids)
    assert max(took.values()) < TIMEOUT + GRACE, (took, cluster.logs())


needs_tc = pytest.mark.skipif(shutil.which("tc") is None, reason="needs iproute2's `tc`")
# classic BPF for cls_bpf: A = a random u32 (SKF_AD_OFF + SKF_AD_RANDOM); A >= THRESHOLD: no match,
# else a match (the filter's action takes the packet)
_RANDOM_MATCH = "4,32 0 0 4294963256,53 0 1 {threshold},6 0 0 0,6 0 0 4294967295"
_ALWAYS_MATCH = "1,6 0 0 4294967295"
SINK = "lfsink"  # a veth pair inside each namespace, both ends up and without addresses: a packet
# sent there is discarded by the other end (not for its address), as a network loses it


def impair(c: Cluster, loss: float, rate: str = "10gbit") -> None:
    """Each way of the link loses `loss` of its packets at random and carries at most `rate`.
    netem is not in every kernel (not in this machine's: CONFIG_NET_SCH_NETEM unset), so: an HTB
    qdisc at `rate`, and a classifier (cls_bpf, classic BPF's random load) whose action redirects
    the lost share into SINK. The sender's TCP sees it sent (a qdisc drop would tell it of local
    congestion, which it retries without end: a network does not)."""
    prog = _ALWAYS_MATCH if loss >= 1 else _RANDOM_MATCH.format(threshold=int(loss * 2**32))
    for ns, dev in ((c.net.a, c.net.va), (c.net.b, c.net.vb)):
        ip_in(ns, "link", "add", SINK, "type", "veth", "peer", "name", SINK + "p")
        ip_in(ns, "link", "set", SINK, "up")
        ip_in(ns, "link", "set", SINK + "p", "up")
        for args in (["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
                     ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", rate],
                     ["filter", "add", "dev", dev, "parent", "1:", "protocol", "all", "prio", "1", "bpf",
                      "bytecode", prog, "action", "mirred", "egress", "redirect", "dev", SINK]):
            r = subprocess.run(["tc", "-n", ns, *args], check=False, capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, f"`tc -n {ns} {' '.join(args)}`: {r.stderr.strip()}"


def mend(c: Cluster) -> None:
    for ns, dev in ((c.net.a, c.net.va), (c.net.b, c.net.vb)):
        subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False, capture_output=True,
                       timeout=10)
        subprocess.run(["ip", "-n", ns, "link", "del", SINK], check=False, capture_output=True, timeout=10)


@needs_tc
@pytest.mark.parametrize(("loss", "rate"), [(0.3, "1mbit"), (0.0, "8kbit")], ids=["30%-lost-1mbit", "8kbit"])
def test_a_lossy_slow_link_serves_right_or_ends_in_time(cluster, keys, load_of, loss, rate):
    """30% of the packets lost each way at 1 Mbit/s, or 8 kbit/s (far less than the load's records
    need), for LOSSY s: TCP retransmits or queues, and the session either goes on serving right
    responses, slowly (then, the link mended, it still serves and ends cleanly on SIGTERM), or, when
    a check comes back too late, ends as a cut link does, within --timeout and the margin of the
    last response. (Here both mostly go on, with 2-14 and about 6 responses in the LOSSY s.)"""
    leader, follower = start_pair(cluster, keys)
    load = load_of()
    load.wait_served(20, 20, cluster)
    pids = processes([leader, follower])
    impair(cluster, loss, rate)
    began = time.monotonic()
    while time.monotonic() - began < LOSSY and running(leader, follower):
        time.sleep(0.05)
    during = load.served(after=began + SETTLE)
    print(f"impaired: {during} served in {time.monotonic() - began:.1f}s; leader {leader.proc.poll()}, "
          f"follower {follower.proc.poll()}")
    mend(cluster)
    mended, more = time.monotonic(), load.served() + 10
    while load.served() < more and running(leader, follower) and time.monotonic() - mended < 10:
        time.sleep(0.05)
    if load.served() >= more and running(leader, follower):  # it went on
        assert during > 0, f"nothing served through the impaired link\n{cluster.logs()}"
        load.stop()
        os.kill(leader.proc.pid, signal.SIGTERM)  # the program's own ending, on both nodes
        asked = time.monotonic()
        took = since(asked, wait_ended(cluster, [leader, follower], asked, TIMEOUT + GRACE))
        print(f"went on; ended {took} after SIGTERM; {load.served(after=mended)} served after the link mended")
        assert leader.proc.returncode == 0 and follower.proc.returncode == 0, cluster.logs()
        for node in (leader, follower):
            assert "DIVERGENCE" not in node.stderr() and "Traceback" not in node.stderr(), cluster.logs()
        assert not alive(pids), f"left running: {alive(pids)}\n{cluster.logs()}"
    else:  # a check came back too late (its wait may have begun before the mending): ended as a cut
        ended = wait_ended(cluster, [leader, follower], began, LOSSY + TIMEOUT + GRACE + 20)
        load.stop()
        took = since(max(load.last_served(), began), ended)
        print(f"ended {took} after the last response\n{cluster.logs()}")
        assert_ended_by_the_link(cluster, leader, follower, pids)
        assert max(took.values()) < TIMEOUT + GRACE, (took, cluster.logs())
    assert not load.bad(), (load.bad(), cluster.logs())


def running(*nodes: Node) -> bool:
    return all(node.proc.poll() is None for node in nodes)


@needs_tc
def test_a_link_that_loses_every_packet_ends_both_nodes(cluster, keys, load_of):
    """A link still up (no carrier lost, no route gone) that loses every packet: no check comes
    back, and both nodes end as for a cut link, within --timeout and the margin."""
    leader, follower = start_pair(cluster, keys)
    load = load_of()
    load.wait_served(20, 20, cluster)
    pids = processes([leader, follower])
    impair(cluster, 1.0)
    began = time.monotonic()
    took = since(began, wait_ended(cluster, [leader, follower], began, TIMEOUT + GRACE + 20))
    load.stop()
    print(f"ended {took} after the link lost everything\n{cluster.logs()}")
    late = load.served(after=began + SETTLE)
    assert late == 0, f"{late} responses after the link lost everything\n{cluster.logs()}"
    assert not load.bad(), (load.bad(), cluster.logs())
    assert_ended_by_the_link(cluster, leader, follower, pids)
    assert max(took.values()) < TIMEOUT + GRACE, (took, cluster.logs())
