"""The leader<->follower channel on real sockets (127.0.0.1, port 0): round trips over TLS and a
socketpair, and every way a peer can fail — each must end as a one-line ChannelError, never a hang."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import outcome
import pytest
import trio

from mvx import MvxError
from mvx.cli.keygen import make_keys, revoke
from mvx.core import protocol as wire
from mvx.core.protocol import Ack, CallRecord, Checked, StopSession
from mvx.runtime.channel import (
    ChannelClosed,
    ChannelError,
    channel_from_socket,
    connect_to_leader,
    is_loopback,
    listen_for_followers,
    parse_hostport,
    require_secure_or_loopback,
    tls_files,
)
from mvx.runtime.link import Inbox, LeaderLink

REPO = Path(__file__).resolve().parent.parent
POLICY = "default"
LEADER_HELLO = wire.hello("leader", "x86_64", POLICY)
FOLLOWER_HELLO = wire.hello("follower", "i386", POLICY)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    return make_keys(tmp_path_factory.mktemp("keys") / "k")[0].parent


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory) -> Path:
    """Made by a second keygen: signed by a different CA."""
    return make_keys(tmp_path_factory.mktemp("other") / "k")[0].parent


class Leader:
    """listen_for_followers in the background; its result or error kept for the test to inspect."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: outcome.Outcome | None = None

    async def start(self, nursery, count=1, tls=None, timeout=5.0, my_hello=LEADER_HELLO, port=0) -> int:
        async def run(task_status):
            self.result = await outcome.acapture(
                listen_for_followers, "127.0.0.1", port, count, tls=tls, timeout=timeout, my_hello=my_hello,
                policy=POLICY, task_status=task_status)
            self.done.set()
        return await nursery.start(run)

    async def channels(self):
        await self.done.wait()
        return self.result.unwrap()


def follow(port, tls=None, timeout=5.0, my_hello=FOLLOWER_HELLO, policy=POLICY):
    return connect_to_leader("127.0.0.1", port, tls=tls, timeout=timeout, my_hello=my_hello, policy=policy)


async def test_messages_with_bytes_round_trip_over_tls(keys):
    big = CallRecord(1, "replicated", ["read", [5, None, 2 << 20]], 2 << 20, {1: bytes(range(256)) * 8192})  # 2 MiB
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "leader"))
            follower = await follow(port, tls=tls_files(keys, "follower"))
            [to_follower] = await leader.channels()
            assert follower.peer == f"127.0.0.1:{port}"

            async def send_both_ways():  # both directions at once: a large frame must not deadlock
                await to_follower.send(big)
                await to_follower.send(StopSession("small"))
            nursery.start_soon(send_both_ways)
            await follower.send(Ack(16))
            assert await follower.receive() == big
            assert await follower.receive() == StopSession("small")
            assert await to_follower.receive() == Ack(16)
            await follower.aclose()
            with pytest.raises(ChannelClosed):
                await to_follower.receive()
            await to_follower.aclose()


async def test_detached_pipes_seal_and_open_frames_in_c_over_tls(keys):
    """After trio's handshake and hellos, each side's pipe goes on with the same TLS connection in
    C (the fast path's channel): a 2 MiB frame each way at once, each side reading while it sends,
    then the leader's StopSession ends the follower's pump."""
    big = CallRecord(7, "replicated", ["read", [5, None, 2 << 20]], 2 << 20, {1: bytes(range(256)) * 8192})
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "leader"))
            follower = await follow(port, tls=tls_files(keys, "follower"))
            [to_follower] = await leader.channels()
            await to_follower.send(Ack(3))  # sent through trio before the detach: the C side reads it first
            leader_pipe, follower_pipe = await to_follower.detach(), await follower.detach()
    inbox = Inbox()
    got = {}

    async def run(name, fn):
        got[name] = await trio.to_thread.run_sync(fn)

    def leader_sends():
        leader_pipe.send(big)
        leader_pipe.send(StopSession("done"))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "leader sent", leader_sends)
            nursery.start_soon(run, "follower sent", lambda: follower_pipe.send(big))
            nursery.start_soon(run, "leader got", lambda: leader_pipe.pump_link(LeaderLink(1, send=None), 0))
            nursery.start_soon(run, "follower end", lambda: follower_pipe.pump_inbox(inbox))
    assert got["leader got"] == big
    assert got["follower end"] == StopSession("done")
    assert [inbox.get(0), inbox.get(0)] == [Ack(3), big]
    for pipe in (leader_pipe, follower_pipe):
        pipe.close()


async def test_bytes_forged_into_a_tls_stream_are_a_channel_error_not_a_frame(keys):
    """A record that is not the peer's (injected on the wire after the handshake) fails the C
    side's opening: a one-line TLS error, and nothing of it is taken as a frame."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "leader"))
            follower = await follow(port, tls=tls_files(keys, "follower"))
            [to_follower] = await leader.channels()
            leader_pipe, follower_pipe = await to_follower.detach(), await follower.detach()
    follower_pipe._sock.send(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # application data, not sealed by the peer
    link = LeaderLink(1, send=None)
    with pytest.raises(ChannelError, match=r"^follower 127\.0\.0\.1:\d+: TLS: [a-z ]+$"):
        await trio.to_thread.run_sync(leader_pipe.pump_link, link, 0)
    for pipe in (leader_pipe, follower_pipe):
        pipe.close()


async def test_messages_round_trip_over_a_socketpair():
    a, b = socket.socketpair()
    one, two = channel_from_socket(a), channel_from_socket(b)
    with trio.fail_after(5):
        record = CallRecord(7, "replicated", ["read", [0, None, 100_000]], 100_000, {1: b"\x01" * 100_000})
        await one.send(record)
        await one.send(Checked(8))
        assert await two.receive() == record
        assert await two.receive() == Checked(8)
        await one.aclose()
        with pytest.raises(ChannelClosed, match="socketpair: closed"):
            await two.receive()
        await two.aclose()


async def test_a_follower_started_before_the_leader_connects_once_it_listens():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            got = []

            async def follower():
                got.append(await follow(port, timeout=4))
            nursery.start_soon(follower)
            await trio.sleep(0.3)  # the follower is retrying on a refused port by now
            leader = Leader()
            await leader.start(nursery, port=port)
            [channel] = await leader.channels()
        await got[0].send(StopSession("hi"))
        assert await channel.receive() == StopSession("hi")


async def test_a_follower_gives_up_on_a_leader_that_never_listens():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with trio.fail_after(5), pytest.raises(ChannelError, match=r"not reachable within 0\.3s"):
        await follow(port, timeout=0.3)


async def test_no_follower_is_a_timeout_error_naming_the_wait():
    with trio.fail_after(5), pytest.raises(ChannelError, match=r"no follower connected within 0\.3s"):
        await listen_for_followers("127.0.0.1", 0, 1, tls=None, timeout=0.3, my_hello=LEADER_HELLO,
                                   policy=POLICY)


async def test_garbage_is_rejected_and_the_leader_still_accepts_a_real_follower(capfd):
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery)
            scanner = await trio.open_tcp_stream("127.0.0.1", port)
            await scanner.send_all(b"GET / HTTP/1.0\r\n\r\n")
            while await scanner.receive_some(4096):  # the leader's hello, then its close
                pass
            await scanner.aclose()
            follower = await follow(port)
            [channel] = await leader.channels()
        await channel.send(StopSession("go"))
        assert await follower.receive() == StopSession("go")
    err = capfd.readouterr().err
    assert "mvx: rejected a connection from 127.0.0.1:" in err and "over the" in err
    assert len(err.strip().splitlines()) == 1


async def test_a_recorded_follower_session_replayed_is_refused(keys, capfd):
    """What a real follower sent on the wire (its handshake and hello), recorded by a man in the
    middle and replayed into a new connection, is refused: TLS 1.3 makes each handshake fresh (the
    leader's own random), so the recording's Finished does not verify; the leader says so in one
    line and goes on waiting."""
    recorded = bytearray()

    async def pump(src, dst, keep=None):
        try:
            while data := await src.receive_some(65536):
                if keep is not None:
                    keep += data
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "leader"))

            async def middle(client):
                upstream = await trio.open_tcp_stream("127.0.0.1", port)
                async with trio.open_nursery() as pumps:
                    pumps.start_soon(pump, client, upstream, recorded)
                    pumps.start_soon(pump, upstream, client)

            listeners = await nursery.start(trio.serve_tcp, middle, 0)
            mitm_port = listeners[0].socket.getsockname()[1]
            follower = await follow(mitm_port, tls=tls_files(keys, "follower"))
            [channel] = await leader.channels()
            await follower.aclose()
            await channel.aclose()
            nursery.cancel_scope.cancel()
    assert len(recorded) > 1000  # a ClientHello, a certificate, a Finished, the hello
    capfd.readouterr()

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "leader"), timeout=3.0)
            replay = await trio.open_tcp_stream("127.0.0.1", port)
            await replay.send_all(bytes(recorded))
            with trio.move_on_after(3):
                while await replay.receive_some(65536):  # the leader's handshake, then its close
                    pass
            await replay.aclose()
            with pytest.raises(ChannelError, match="no follower connected within 3s"):
                await leader.channels()
    err = capfd.readouterr().err
    assert "mvx: rejected a connection from 127.0.0.1:" in err and "TLS handshake failed" in err, err
    assert len(err.strip().splitlines()) == 1, err


async def test_a_truncated_frame_is_an_error():
    a, b = socket.socketpair()
    channel = channel_from_socket(a, "peer")
    frame = wire.encode(StopSession("x" * 100))
    b.sendall(frame[: len(frame) // 2])
    b.close()
    with trio.fail_after(5), pytest.raises(ChannelError, match="peer: truncated frame") as info:
        await channel.receive()
    assert not isinstance(info.value, ChannelClosed)


async def test_an_oversized_announced_frame_is_an_error():
    a, b = socket.socketpair()
    channel = channel_from_socket(a)
    b.sendall((wire.MAX_FRAME + 1).to_bytes(4, "little"))  # the body never needs to arrive
    with trio.fail_after(5), pytest.raises(ChannelError, match="over the .*-byte limit"):
        await channel.receive()
    b.close()


async def test_messages_before_a_malformed_frame_are_delivered_then_the_error():
    a, b = socket.socketpair()
    channel = channel_from_socket(a)
    b.sendall(wire.encode(Ack(1)) + (5).to_bytes(4, "little") + b"{nope")
    with trio.fail_after(5):
        assert await channel.receive() == Ack(1)
        with pytest.raises(ChannelError, match="unknown message type 0x7b"):
            await channel.receive()
    b.close()


async def refused_follower(leader_keys: Path, follower_keys: Path, follower_error: str) -> None:
    """A leader with `leader_keys` refuses a follower with `follower_keys`, which fails with
    `follower_error` (a regex; {port} is the leader's), and then gets no follower."""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(leader_keys, "leader"), timeout=0.5)
            with pytest.raises(ChannelError, match=follower_error.format(port=port)):
                await follow(port, tls=tls_files(follower_keys, "follower"))
            with pytest.raises(ChannelError, match="no follower connected"):
                await leader.channels()


async def test_keys_of_another_ca_are_rejected_on_both_sides(keys, other_keys, capfd):
    await refused_follower(keys, other_keys, "leader 127.0.0.1:{port}: TLS handshake failed")
    assert "mvx: rejected a connection from 127.0.0.1:" in capfd.readouterr().err


@pytest.fixture(scope="module")
def expired_keys(keys, tmp_path_factory) -> Path:
    """The same CA, a follower certificate whose validity ended yesterday."""
    d = tmp_path_factory.mktemp("expired")
    for name in ("ca.pem", "leader.pem", "leader.key"):
        (d / name).write_bytes((keys / name).read_bytes())
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(d / "follower.key"), "-subj", "/CN=mvx-follower", "-out", str(d / "f.csr")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(d / "f.csr"), "-CA", str(keys / "ca.pem"), "-CAkey",
                    str(keys / "ca.key"), "-days", "-1", "-out", str(d / "follower.pem")], check=True, capture_output=True)
    return d


async def test_an_expired_follower_certificate_is_refused(keys, expired_keys, capfd):
    # (TLS 1.3: the follower's handshake is over before the leader checks its certificate, so the
    # follower learns of the refusal from the leader's alert, at its first read)
    await refused_follower(keys, expired_keys, r"^leader 127.0.0.1:{port}: TLS: .*certificate expired$")
    err = capfd.readouterr().err
    assert "TLS handshake failed: peer certificate not trusted (certificate has expired)" in err, err


async def test_a_revoked_follower_certificate_is_refused_and_its_renewal_accepted(tmp_path, capfd):
    """`mvx keygen --revoke follower`: a leader whose keys hold the new crl.pem refuses the old
    certificate (say, copied off a compromised node) and takes the renewed one."""
    d, stolen = tmp_path / "k", tmp_path / "stolen"
    make_keys(d)
    stolen.mkdir()
    for name in ("ca.pem", "follower.pem", "follower.key"):
        (stolen / name).write_bytes((d / name).read_bytes())
    serial, _ = revoke(d, "follower")
    assert tls_files(d, "leader").crl == d / "crl.pem"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(d, "leader"), timeout=5)
            with pytest.raises(ChannelError, match=rf"^leader 127.0.0.1:{port}: TLS: .*certificate revoked$"):
                await follow(port, tls=tls_files(stolen, "follower"))
            follower = await follow(port, tls=tls_files(d, "follower"))
            [channel] = await leader.channels()
            await follower.aclose()
            await channel.aclose()
    err = capfd.readouterr().err
    assert "TLS handshake failed: peer certificate not trusted (certificate revoked)" in err, err
    assert (d / "revoked.txt").read_text().startswith(serial)


async def test_a_follower_certificate_is_not_a_leader_certificate(keys, capfd):
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            # a leader presenting a follower's certificate
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "follower"), timeout=0.5)
            with pytest.raises(ChannelError, match="certificate is for 'mvx-follower', expected 'mvx-leader'"):
                await follow(port, tls=tls_files(keys, "follower"))
            with pytest.raises(ChannelError):
                await leader.channels()
            # a follower presenting the leader's certificate
            leader = Leader()
            port = await leader.start(nursery, tls=tls_files(keys, "leader"), timeout=0.5)
            with pytest.raises(ChannelError):
                await follow(port, tls=tls_files(keys, "leader"))
            with pytest.raises(ChannelError):
                await leader.channels()
    assert "certificate is for 'mvx-leader', expected 'mvx-follower'" in capfd.readouterr().err


KILLED_PEER = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = b""
while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "little"):  # the leader's hello
    buf += s.recv(4096)
s.sendall(bytes.fromhex(sys.argv[2]))
time.sleep(60)
"""


async def test_a_peer_killed_mid_stream_is_an_error_not_a_hang():
    half = wire.encode(StopSession("y" * 1000))[:500]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery)
            proc = await trio.lowlevel.open_process([sys.executable, "-c", KILLED_PEER, str(port),
                                                     (wire.encode(FOLLOWER_HELLO) + half).hex()])
            try:
                [channel] = await leader.channels()
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
        with pytest.raises(ChannelError, match=f"follower {channel.peer}: ") as info:
            await channel.receive()
    assert not isinstance(info.value, ChannelClosed)


@pytest.mark.parametrize("leader_hello, follower_policy, why", [
    (LEADER_HELLO, "paranoid", "peer runs policy 'default', this side 'paranoid'"),
    (dataclasses.replace(LEADER_HELLO, version=99), POLICY, "protocol version 99"),
    (wire.hello("follower", "x86_64", POLICY), POLICY, "peer is a 'follower', expected a leader"),
])
async def test_a_follower_refuses_a_mismatched_leader_hello(leader_hello, follower_policy, why):
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, my_hello=leader_hello, timeout=0.5)
            with pytest.raises(ChannelError, match=f"leader 127.0.0.1:{port}: hello refused: {why}"):
                await follow(port, my_hello=wire.hello("follower", "i386", follower_policy),
                             policy=follower_policy)
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("follower_hello, why", [
    (wire.hello("follower", "i386", "paranoid"), "peer runs policy 'paranoid', this side 'default'"),
    (dataclasses.replace(FOLLOWER_HELLO, version=99), "protocol version 99"),
    (wire.hello("leader", "i386", POLICY), "peer is a 'leader', expected a follower"),
])
async def test_a_leader_rejects_a_mismatched_follower_hello_and_keeps_waiting(follower_hello, why, capfd):
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            leader = Leader()
            port = await leader.start(nursery, timeout=0.5)
            follower = await follow(port, my_hello=follower_hello)
            with pytest.raises(ChannelError, match="no follower connected within 0.5s"):
                await leader.channels()
            with pytest.raises(ChannelError):  # the leader dropped it
                await follower.receive()
    err = capfd.readouterr().err
    assert err.startswith("mvx: rejected a connection from 127.0.0.1:") and f"hello refused: {why}" in err


@pytest.mark.parametrize("text, why", [
    ("host", "no port"), ("host:", "no port"), (":80", "empty host"), ("[]:80", "empty host"),
    ("h:65536", "out of range"), ("h:http", "not a number"), ("h:-1", "not a number"),
    ("::1:80", "brackets"), ("[::1]80", r"\[IPv6\]:PORT"),
])
def test_parse_hostport_rejects_bad_addresses(text, why):
    with pytest.raises(MvxError, match=why):
        parse_hostport(text)


def test_parse_hostport_and_is_loopback():
    assert parse_hostport("10.0.0.2:7000") == ("10.0.0.2", 7000)
    assert parse_hostport("[::1]:7000") == ("::1", 7000)
    assert parse_hostport("leader.example:0") == ("leader.example", 0)
    assert [is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "localhost", "10.0.0.2", "example.org")] \
        == [True, True, True, True, False, False]


def test_insecure_only_on_loopback_and_the_network_needs_keys():
    require_secure_or_loopback("127.0.0.1", insecure=True, keys=None)
    require_secure_or_loopback("10.0.0.2", insecure=False, keys="k")
    with pytest.raises(MvxError, match=r"--insecure is allowed only on loopback \(10\.0\.0\.2 is not\)"):
        require_secure_or_loopback("10.0.0.2", insecure=True, keys=None)
    with pytest.raises(MvxError, match="needs --keys DIR"):
        require_secure_or_loopback("127.0.0.1", insecure=False, keys=None)


def test_tls_files_names_what_is_missing(keys, tmp_path):
    assert tls_files(keys, "follower").cert == keys / "follower.pem"
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(MvxError, match=r"missing or unreadable leader\.pem, leader\.key"):
        tls_files(tmp_path, "leader")


def run_mvx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=30, check=False)


def test_keygen_cli_makes_private_keys_and_refuses_a_non_empty_dir(tmp_path):
    d = tmp_path / "keys"
    done = run_mvx("keygen", str(d))
    assert done.returncode == 0, done.stderr
    assert "ca.pem, leader.pem and leader.key" in done.stdout
    names = {"ca.pem", "ca.key", "leader.pem", "leader.key", "follower.pem", "follower.key"}
    assert {p.name for p in d.iterdir()} == names
    for name in names:
        mode = stat.S_IMODE(os.stat(d / name).st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name
    again = run_mvx("keygen", str(d))
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "not empty" in again.stderr and "--force" in again.stderr
