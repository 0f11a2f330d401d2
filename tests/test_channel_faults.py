"""Malformed or oversized frames reaching a monitor's C pump (mvx_fast.c: the leader's `mvx_link_pump`,
a follower's `mvx_inbox_pump`) from a peer that passed the handshake: random bytes, a frame over
the size limit, a truncated frame, an unknown message type, a frame of garbage values. The monitor
never crashes: the session ends closed, its variant is stopped, and the reason is one line (no
traceback); on the leader it is a `channel` divergence."""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

import pytest
from _variants import free_port, variant_bin
from test_run import leftovers

from mvx.core import protocol

DIVERGENCE_EXIT = 70
RNG = random.Random(20261128)


def _frames(payload: bytes) -> bytes:
    return struct.pack("<I", len(payload)) + payload


BAD = {
    "random bytes": bytes(RNG.getrandbits(8) for _ in range(300)),
    "a frame over the limit": struct.pack("<I", (16 << 20) + 1) + b"\x02" * 64,
    "a truncated frame": struct.pack("<I", 4096) + b"\x02" + bytes(100),
    "an unknown message type": _frames(b"\x7f" + bytes(16)),
    "garbage values": _frames(b"\x02" + bytes(RNG.getrandbits(8) for _ in range(200))),
    "an empty frame": _frames(b""),
}
# only a follower can send these: it claims calls the leader never sent (fail closed, never trusted)
LIES = {
    "a check of a call never sent": protocol.encode(protocol.Checked(10**6)),
    "a check of call 0": protocol.encode(protocol.Checked(0)),
    "an ack of a call never sent": protocol.encode(protocol.Ack(2**63)),
}


def _recv_frame(sock: socket.socket) -> object:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        assert chunk, "the peer closed before its hello"
        head += chunk
    (n,) = struct.unpack("<I", head)
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return protocol.decode_body(body)[0]


def _connect(port: int, timeout: float = 20) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _one_line(err: str) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err


@pytest.mark.parametrize("what", sorted(BAD) + sorted(LIES))
def test_a_follower_sending_malformed_frames_is_a_channel_divergence(tmp_path, what):
    """A fake follower passes the hello, then sends BAD[what]: the leader reports a `channel`
    divergence, stops its variant and exits 70."""
    port = free_port()
    log = tmp_path / "leader.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "leader", "--insecure", "--listen", f"127.0.0.1:{port}",
                             "--log", str(log), "--", variant_bin("x86_64", "epoll_server"), str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with _connect(port) as sock:
            leader_hello = _recv_frame(sock)
            assert isinstance(leader_hello, protocol.Hello)
            sock.sendall(protocol.encode(protocol.hello("follower", "i386", leader_hello.policy)))
            assert isinstance(_recv_frame(sock), protocol.Started)  # the leader's variant runs
            sock.sendall(BAD.get(what) or LIES[what])
            if what == "a truncated frame":
                sock.shutdown(socket.SHUT_WR)
            _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = err.decode(errors="replace")
    assert proc.returncode == DIVERGENCE_EXIT, err
    if what in LIES:
        assert "the leader sent no such call" in err, err
    _one_line(err)
    kinds = [json.loads(line).get("kind") for line in log.read_text().splitlines()]
    assert "channel" in kinds, log.read_text()
    assert not leftovers(f"{variant_bin('x86_64', 'epoll_server')} ")


@pytest.mark.parametrize("what", sorted(BAD))
def test_a_leader_sending_malformed_frames_stops_the_follower(what):
    """A fake leader passes the hello and starts the follower's variant, then sends BAD[what]: the
    follower stops its variant and exits 1 (its leader is lost), with one line saying why."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "follower", "--insecure", "--connect", f"127.0.0.1:{port}",
                             "--", variant_bin("i386", "epoll_server"), str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        listener.settimeout(20)
        sock, _ = listener.accept()
        with sock:
            sock.sendall(protocol.encode(protocol.hello("leader", "x86_64", "default")))
            assert isinstance(_recv_frame(sock), protocol.Hello)
            sock.sendall(protocol.encode(protocol.Started(os.getpid())))
            time.sleep(0.5)  # the follower's variant starts
            sock.sendall(BAD[what])
            if what == "a truncated frame":
                sock.shutdown(socket.SHUT_WR)
            _, err = proc.communicate(timeout=30)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = err.decode(errors="replace")
    assert proc.returncode == 1, err
    _one_line(err)
    assert "stopped" in err, err
    assert not leftovers(f"{variant_bin('i386', 'epoll_server')} ")
