"""The in-process agent (on by default; --no-agent turns it off; mvx/mechanics/agent.py, docs/DESIGN.md "The in-process
agent"): a follower's input calls answered inside its program from the records its monitor published,
with no trap; the leader's preads of its own files made through its gate and claimed. What it must
not change: every reply as without it, every divergence caught, a variant that lies through the
agent's status page stopped (fail closed), and nothing but pread64 let through the gate."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading

import pytest
from _variants import free_port, variant_bin

from mvx.mechanics import agent

REPLY = b"Hi, how are you.\n"
DIVERGENCE_EXIT = 70
PAIRS = [("x86_64", "i386"), ("i386", "x86_64")]

pytestmark = pytest.mark.skipif(any(agent.build(isa) is None for isa in ("x86_64", "i386")),
                                reason="no compiler for the agent's x86_64 and i386 builds")


def run_env() -> dict[str, str]:
    return {**os.environ, "MVX_FAST_STATS": "1"}


def agent_option(on: bool) -> list[str]:
    return [] if on else ["--no-agent"]


def serve_clients(on: bool, mode: str, leader: str, follower: str, clients: int = 4, requests: int = 150):
    """epoll_server under `mvx run`, `clients` connections at once, each sending one request at a
    time: the leader serves the others while a follower replays, so the follower finds the next
    reads published when it answers a call. (exit status, replies per client, stderr)"""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvx", "run", "--mode", mode, *agent_option(on), "--leader", variant_bin(leader, "epoll_server"),
         "--follower", variant_bin(follower, "epoll_server"), "--", str(port), str(clients)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=run_env())
    replies: list[list[bytes]] = [[] for _ in range(clients)]

    def client(i: int) -> None:
        for _ in range(200):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=15)
                break
            except OSError:
                threading.Event().wait(0.05)
        else:
            return
        with sock:
            for k in range(requests):
                sock.sendall(b"req %d %d\n" % (i, k))
                got = b""
                while len(got) < len(REPLY):
                    chunk = sock.recv(64)
                    if not chunk:
                        return
                    got += chunk
                replies[i].append(got)

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, replies, err.decode(errors="replace")


def answered_by_agent(err: str, role: str = "follower") -> int:
    m = re.search(rf"^mvx: {role}: \d+ hot calls carried in C, .*; of those in C, (\d+) calls answered by the in-process "
                  r"agent$", err, re.MULTILINE)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("mode", ["hybrid", "seccomp"])
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_the_agent_answers_reads_and_every_reply_is_as_without_it(mode, leader, follower):
    code, replies, err = serve_clients(True, mode, leader, follower)
    assert code == 0, err
    assert all(r == [REPLY] * 150 for r in replies), err
    assert "DIVERGENCE" not in err, err
    answered = answered_by_agent(err)
    print(f"{mode} {leader} leading: {answered} of the follower's reads answered by its agent")
    assert answered > 0, err


def test_without_the_agent_no_read_is_answered_by_it():
    code, replies, err = serve_clients(False, "hybrid", "x86_64", "i386", clients=2, requests=50)
    assert code == 0 and all(r == [REPLY] * 50 for r in replies), err
    assert answered_by_agent(err) == 0 and "hot calls carried in C" in err, err


@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_follower_that_lies_through_the_agent_is_a_divergence_and_nothing_leaves(leader, follower):
    """variants/src/agent_liar.c claims 999 reads in its status page, then writes a line: the follower's
    monitor stops the run at that write (a claim beyond what it published): a divergence, and the
    leader's line, held for the follower's check, never leaves."""
    r = subprocess.run([sys.executable, "-m", "mvx", "run", "--agent", "--leader", variant_bin(leader, "agent_liar"),
                        "--follower", variant_bin(follower, "agent_liar")],
                       check=False, capture_output=True, env=run_env(), timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == DIVERGENCE_EXIT, err
    assert "mvx: DIVERGENCE (agent)" in err and "claims 999 answers of the 0 it was given" in err, err
    assert r.stdout == b"", (r.stdout, err)
    assert "Traceback" not in err, err
    ok = subprocess.run([sys.executable, "-m", "mvx", "run", "--no-agent", "--leader", variant_bin(leader, "agent_liar"),
                         "--follower", variant_bin(follower, "agent_liar")],
                        check=False, capture_output=True, env=run_env(), timeout=60)
    assert ok.returncode == 0 and ok.stdout == b"agent_liar: done\n", ok.stderr.decode(errors="replace")


@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_lighttpd_with_the_agent_serves_like_native(leader, follower, tmp_path, monkeypatch):
    """Debian's lighttpd under a short wrk load (the mixed workload of tests/test_lighttpd.py, 8
    connections): every odd case answered as native lighttpd answers it, no bad response, and the
    follower's agent answered reads (its socket reads and its preads of the files)."""
    from test_lighttpd import (
        CASES,
        REQUESTS,
        _binaries_present,
        native_responses,
        protected,
        responses,
        wrk_mixed,
    )

    from mvx.demo import lighttpd

    _binaries_present()
    native_site = lighttpd.make_site(tmp_path / "native", free_port())
    mvx_site = lighttpd.make_site(tmp_path / "mvx", free_port(), docroot=native_site.docroot)
    expected = native_responses(native_site)
    monkeypatch.setenv("MVX_FAST_STATS", "1")
    server = protected(mvx_site, leader, follower, "hybrid")
    try:
        got = responses(mvx_site.port)
        counts = wrk_mixed(mvx_site.port, min(REQUESTS, 2000))
        again = responses(mvx_site.port)
    finally:
        status, err = server.stop()
    for name in CASES:
        assert got[name] == expected[name] and again[name] == expected[name], f"{name}: differs from native"
    assert counts["bad"] == 0 and counts["errors"] == 0, counts
    # lighttpd's graceful end, 0, or 1 when a connection was still closing at the signal (natively too)
    assert status in (0, 1) and "stopped" not in err, (status, err)
    assert "DIVERGENCE" not in err and "Traceback" not in err, err
    answered, made = answered_by_agent(err), answered_by_agent(err, "leader")
    print(f"{leader} leading: {answered} of the follower's calls answered by its agent, {made} of the leader's preads "
          "made by its agent")
    assert answered > 1000 and made > 500, err


def run_gate(leader: str, follower: str, how: str = "", *options: str) -> tuple[int, bytes, str]:
    r = subprocess.run([sys.executable, "-m", "mvx", "run", *options, "--leader", f"{variant_bin(leader, 'agent_gate')} {how}",
                        "--follower", f"{variant_bin(follower, 'agent_gate')} {how}"],
                       check=False, capture_output=True, env=run_env(), timeout=60)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_the_leaders_agent_makes_its_preads_through_the_gate(leader, follower):
    """variants/src/agent_gate.c preads a file 100 times: in the leader its agent makes them through
    the gate (untrapped) and its monitor records its claims; the follower's agent answers its own."""
    code, out, err = run_gate(leader, follower, "", "--mode", "hybrid")
    assert code == 0 and out == b"agent_gate: 100 preads\n", err
    assert "DIVERGENCE" not in err, err
    assert answered_by_agent(err, "leader") >= 90 and answered_by_agent(err) > 0, err


def test_in_ptrace_mode_the_leader_has_no_gate():
    """ptrace mode stops the leader at every call: no gate is given, every pread traps."""
    code, out, err = run_gate("x86_64", "i386", "", "--mode", "ptrace")
    assert code == 0 and out == b"agent_gate: 100 preads\n", err
    assert answered_by_agent(err, "leader") == 0 and "hot calls carried in C" in err, err


@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_write_made_through_the_gate_is_trapped_and_checked(leader, follower):
    """A compromised leader that finds the gate and makes a write through its syscall instruction: the
    filter lets only pread64 run from there, so the write traps like any other; the follower does not
    make it: a divergence, and the write's bytes never leave."""
    code, out, err = run_gate(leader, follower, "abuse")
    assert code == DIVERGENCE_EXIT, err
    assert "mvx: DIVERGENCE (syscall)" in err and 'write(1, "agent_gate: written through the ' in err, err
    assert out == b"", (out, err)


@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_leader_that_lies_through_its_agent_is_a_divergence_and_nothing_leaves(leader, follower):
    """A leader's program that writes a claim into its agent's status page (a pread64 of its stdout, not
    a file of its own world): its monitor stops the run at the next stop; nothing leaves."""
    code, out, err = run_gate(leader, follower, "lie")
    assert code == DIVERGENCE_EXIT, err
    assert "mvx: DIVERGENCE (agent)" in err and "which it was not allowed to make" in err, err
    assert out == b"" and "Traceback" not in err, (out, err)
