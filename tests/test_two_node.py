"""The two-node form (`mvx leader` / `mvx follower`) across two network namespaces joined by a veth pair.

Node A (the leader's) has 10.77.0.1, node B (the follower's) 10.77.0.2; the channel is TLS from
`mvx keygen`. The servers bind 127.0.0.1, so the clients run in node A. Each test makes its own pair
of namespaces (named after the pid and a counter; tests/_two_node.py) and deletes them at teardown,
after killing every process it started, whatever the outcome, and /run/netns too when it made it
and nothing else is left there (`ip netns add` makes it a mount of itself).

Each test can fail: a session that does not cross the link, a reply that does not come back, an exit
status other than the program's, an exploit that gets through, or a follower with the wrong keys that
is let in."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from _two_node import (
    FOLLOWER_IP,
    HELLO,
    PROGRAM_PORT,
    ROOT,
    Cluster,
    Node,
    cluster_in,
    key_maker,
    namespaces,
    skip_unless_netns,
)
from _variants import variant_bin

skip_unless_netns()


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
