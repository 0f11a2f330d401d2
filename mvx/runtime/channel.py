"""The leader<->follower stream over trio: protocol frames on TCP (mutual TLS 1.3) or on a socketpair.

Every network condition (refused, reset, truncated, garbage, a bad certificate, a peer of another
version or policy) becomes a ChannelError: one line that names the peer, never a traceback. A leader
waiting for followers reports a connection that fails its handshake and keeps waiting, so a port
scanner or a misconfigured node cannot end the run."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import trio

from mvx import MvxError
from mvx.core import protocol
from mvx.runtime.frames import ChannelClosed, ChannelError, Frames
from mvx.runtime.tls import TlsContext, TlsError, TlsStream

RECV_CHUNK = 64 << 10
_CONNECT_RETRY = 0.1  # seconds between attempts while the leader is not listening yet
_HANDSHAKE_TIMEOUT = 10.0  # a silent connection must not hold a leader's socket for the whole wait
_CLOSE_GRACE = 1.0  # time to send a TLS close_notify to a peer that may not read any more
_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, TlsError, OSError)


def _describe(exc: BaseException, handshake: bool = False) -> str:
    """The cause of a trio stream error in a few words (trio wraps the OS error it hit)."""
    cause = exc
    while isinstance(cause, (trio.BrokenResourceError, trio.ClosedResourceError)) and cause.__cause__:
        cause = cause.__cause__
    if isinstance(cause, TlsError):
        why = cause.why
    elif isinstance(cause, OSError):
        why = cause.strerror or str(cause)
    elif isinstance(cause, trio.ClosedResourceError):
        why = "the channel is closed"
    else:
        why = str(cause) or "connection broken"
    if handshake:
        return f"TLS handshake failed: {why}"
    return f"TLS: {why}" if isinstance(cause, TlsError) else why


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Channel(Frames):
    """Whole messages over a byte stream: send writes one frame (trio applies TCP backpressure),
    receive decodes frames as they arrive and hands them out one at a time."""

    def __init__(self, stream: trio.abc.Stream, peer: str, *, label: str | None = None) -> None:
        self.peer = peer
        self._label = label or peer  # e.g. "follower 127.0.0.1:40312", the prefix of every error
        self._stream = stream
        self._decoder = protocol.FrameDecoder()
        self._ready: deque[dict] = deque()
        self._broken: ChannelError | None = None
        self._send_lock = trio.Lock()  # frames from concurrent senders must not interleave

    def __repr__(self) -> str:
        return f"<Channel {self._label}>"

    async def send(self, message) -> None:
        try:
            frame = protocol.encode(message)
        except protocol.ProtocolError as exc:
            raise self.error(f"cannot send: {exc}") from None
        async with self._send_lock:
            try:
                await self._stream.send_all(frame)
            except _NETWORK_ERRORS as exc:
                raise self.error(_describe(exc)) from None

    async def receive(self):
        while not self._ready:
            if self._broken is not None:
                raise self._broken
            try:
                data = await self._stream.receive_some(RECV_CHUNK)
            except _NETWORK_ERRORS as exc:
                raise self.error(_describe(exc)) from None
            self._take(data)
        return self._ready.popleft()

    async def aclose(self) -> None:
        await _close(self._stream)

    async def detach(self, dead_after: float | None = None):
        """Hand the connection to threads (mvx.runtime.pipe.Pipe), with what was received and not yet
        delivered; this channel is unusable afterwards. `dead_after`: a TCP peer that does not answer
        for that many seconds fails the pipe (`watch_link`)."""
        from mvx.runtime.pipe import Pipe

        stream = self._stream
        tls = None
        if isinstance(stream, TlsStream):  # the TLS connection goes on in the pipe's C side
            tls = stream
            stream = stream.transport
        sock = socket.socket(fileno=os.dup(stream.socket.fileno()))
        if dead_after is not None:
            watch_link(sock, dead_after)
        await stream.aclose()  # our duplicate keeps the connection open
        return Pipe(sock, self._label, tls=tls, ready=self._ready, decoder=self._decoder)


def watch_link(sock: socket.socket, dead_after: float) -> None:
    """A TCP connection whose peer's kernel answers nothing for `dead_after` s fails with ETIMEDOUT:
    keepalive probes once a second while it is idle, and TCP_USER_TIMEOUT bounding both the
    unanswered probes and unacknowledged data. Without it a cut link gives neither end an error for
    many minutes (TCP retransmits into nothing), and a follower waiting for the leader's next record
    would wait as long. The peer's kernel answers the probes: an idle session stays up."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return  # a socketpair (`mvx run`): nothing between the two ends to fail
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, math.ceil(dead_after)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(dead_after * 1000)))


async def _close(stream: trio.abc.AsyncResource) -> None:
    """Close within a grace period even in a cancelled task: cleanup must not stop halfway (trio
    closes the socket even when a TLS close_notify is cut short)."""
    with trio.CancelScope(deadline=trio.current_time() + _CLOSE_GRACE, shield=True):
        try:
            await stream.aclose()
        except _NETWORK_ERRORS:
            pass


def channel_from_socket(sock: socket.socket, peer: str = "socketpair") -> Channel:
    """A channel on an inherited connected stream socket (the one-machine form: no TLS, no hello)."""
    return Channel(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), peer)


# --- addresses and the --insecure rule ---

def parse_hostport(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT'; port 0 is allowed (a listener then picks one)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise MvxError(f"bad address {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise MvxError(f"bad address {text!r}: no port (expected HOST:PORT)")
        if ":" in host:
            raise MvxError(f"bad address {text!r}: write an IPv6 address in brackets, [ADDR]:PORT")
    if not host:
        raise MvxError(f"bad address {text!r}: empty host (expected HOST:PORT)")
    if not port_text:
        raise MvxError(f"bad address {text!r}: no port (expected HOST:PORT)")
    if not port_text.isascii() or not port_text.isdigit():
        raise MvxError(f"bad address {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise MvxError(f"bad address {text!r}: port {port} is out of range (0-65535)")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_secure_or_loopback(host: str, insecure: bool, keys: str | None) -> None:
    """Plain TCP is for tests on one machine; anything that crosses a network is TLS."""
    if insecure and keys:
        raise MvxError("--insecure and --keys exclude each other")
    if insecure and not is_loopback(host):
        raise MvxError(f"--insecure is allowed only on loopback ({host} is not)")
    if not insecure and not keys:
        raise MvxError("a channel over the network needs --keys DIR (made by `mvx keygen DIR`) "
                       "or --insecure on loopback")


# --- TLS ---

@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    crl: Path | None = None  # the CA's revocation list, when DIR has one (`mvx keygen --revoke`)


def tls_files(keys_dir: str | Path, role: str) -> TlsFiles:
    """The PEM files of one node: the CA certificate, and the node's certificate and key."""
    if role not in ("leader", "follower"):
        raise MvxError(f"no TLS role {role!r} (leader or follower)")
    d = Path(keys_dir)
    files = TlsFiles(d / "ca.pem", d / f"{role}.pem", d / f"{role}.key")
    bad = [p.name for p in (files.ca, files.cert, files.key) if not (p.is_file() and os.access(p, os.R_OK))]
    if bad:
        raise MvxError(f"{d}: missing or unreadable {', '.join(bad)} (a {role} node needs ca.pem, {role}.pem "
                       f"and {role}.key made by `mvx keygen DIR`)")
    crl = d / "crl.pem"
    if crl.exists():
        if not os.access(crl, os.R_OK):
            raise MvxError(f"{d}: crl.pem is unreadable")
        files = TlsFiles(files.ca, files.cert, files.key, crl)
    return files


def _tls_context(tls: TlsFiles, server_side: bool) -> TlsContext:
    """Mutual TLS 1.3 against the mvx CA only; the peer's role is its certificate's CN, not a hostname."""
    try:
        return TlsContext(str(tls.ca), str(tls.cert), str(tls.key), server_side=server_side,
                          crl=str(tls.crl) if tls.crl else None)
    except TlsError as exc:
        raise ChannelError(f"cannot load TLS keys {tls.cert} / {tls.key}: {exc.why}") from None


async def _start_tls(stream: trio.SocketStream, ctx: TlsContext, *, expect_cn: str, label: str) -> TlsStream:
    try:
        tls = TlsStream(stream, ctx)
    except TlsError as exc:
        raise ChannelError(f"{label}: TLS: {exc.why}", exc.why) from None
    try:
        try:
            await tls.do_handshake()
        except _NETWORK_ERRORS as exc:
            why = _describe(exc, handshake=True)
            raise ChannelError(f"{label}: {why}", why) from None
        cn = tls.peer_common_name()
        if cn != expect_cn:
            why = f"TLS peer certificate is for {cn!r}, expected {expect_cn!r}"
            raise ChannelError(f"{label}: {why}", why)
    except BaseException:
        await _close(tls)
        raise
    return tls


# --- the handshake both ways ---

async def _receive_hello(channel: Channel) -> protocol.Hello:
    try:
        return await channel.receive()
    except ChannelClosed:
        raise channel.error("closed the connection before its hello (it may have refused our certificate "
                             "or hello)") from None


def _check_hello(channel: Channel, theirs, peer_role: str, policy: str) -> None:
    try:
        protocol.check_hello(theirs, peer_role, policy)
    except protocol.ProtocolError as exc:
        raise channel.error(f"hello refused: {exc}") from None


async def _establish(stream: trio.abc.Stream, peer: str, *, peer_role: str, ctx: TlsContext | None,
                     my_hello: protocol.Hello, policy: str) -> Channel:
    """TLS (if ctx), then hellos: the leader speaks first; a follower sends its hello even when the
    leader's is wrong, so that the leader can report the mismatch too."""
    label = f"{peer_role} {peer}"
    try:
        if ctx is not None:
            stream = await _start_tls(stream, ctx, expect_cn=f"mvx-{peer_role}", label=label)
        channel = Channel(stream, peer, label=label)
        if peer_role == "follower":
            await channel.send(my_hello)
            _check_hello(channel, await _receive_hello(channel), peer_role, policy)
        else:
            theirs = await _receive_hello(channel)
            try:
                await channel.send(my_hello)
            except ChannelError:
                _check_hello(channel, theirs, peer_role, policy)  # a bad hello explains a failed send
                raise
            _check_hello(channel, theirs, peer_role, policy)
    except BaseException:
        await _close(stream)
        raise
    return channel


def _peer_of(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:  # reset before we asked
        return "an unknown peer"
    return _hostport(host, port)


async def _bind(host: str, port: int) -> trio.socket.SocketType:
    where = _hostport(host or "*", port)
    try:
        family, type_, proto, _, addr = (await trio.socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE))[0]
    except socket.gaierror as exc:
        raise ChannelError(f"cannot listen on {where}: {exc.strerror}") from None
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(addr)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise ChannelError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


async def listen_for_followers(host: str, port: int, count: int, *, tls: TlsFiles | None, timeout: float,
                               my_hello: protocol.Hello, policy: str, on_listening=None,
                               task_status=trio.TASK_STATUS_IGNORED) -> list[Channel]:
    """Wait up to `timeout` s for `count` followers that pass TLS and the hello; report and drop the
    rest. task_status.started(port) and on_listening() once listening, so a caller can ask for port 0
    and say it waits only when a follower can connect (through a forwarding proxy, such as qemu's user
    networking, a connection made earlier is reset rather than refused, and not retried)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    ctx = _tls_context(tls, server_side=True) if tls else None
    sock = await _bind(host, port)
    listener = trio.SocketListener(sock)
    good: list[Channel] = []
    failure: ChannelError | None = None

    async def admit(stream: trio.SocketStream, done: trio.CancelScope) -> None:
        peer = _peer_of(stream)
        channel = None
        with trio.move_on_after(_HANDSHAKE_TIMEOUT):
            try:
                channel = await _establish(stream, peer, peer_role="follower", ctx=ctx, my_hello=my_hello,
                                           policy=policy)
            except ChannelError as exc:
                print(f"mvx: rejected a connection from {peer}: {exc.why}", file=sys.stderr, flush=True)
                return
        if channel is None:  # _establish closed the stream
            print(f"mvx: rejected a connection from {peer}: no handshake within {_HANDSHAKE_TIMEOUT:g}s",
                  file=sys.stderr, flush=True)
        elif len(good) < count:
            good.append(channel)
            if len(good) == count:
                done.cancel()
        else:
            await channel.aclose()

    try:
        task_status.started(sock.getsockname()[1])
        if on_listening is not None:
            on_listening()
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        stream = await listener.accept()
                    except _NETWORK_ERRORS as exc:  # e.g. out of file descriptors
                        failure = ChannelError(f"accepting followers failed: {_describe(exc)}")
                        nursery.cancel_scope.cancel()
                        break
                    nursery.start_soon(admit, stream, nursery.cancel_scope)
    finally:
        sock.close()
        if len(good) < count:
            for channel in good:
                await channel.aclose()
    if failure is not None:
        raise failure
    if len(good) < count:
        if not good:
            raise ChannelError(f"no follower connected within {timeout:g}s")
        raise ChannelError(f"only {len(good)} of {count} followers connected within {timeout:g}s")
    return good


async def _connect(host: str, port: int, timeout: float, label: str) -> trio.SocketStream:
    """Connect, retrying while refused (the leader may start after its followers)."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ChannelError(f"{label}: cannot resolve {host}: {exc.strerror}") from None
    with trio.move_on_after(timeout):
        while True:
            errors: list[OSError] = []
            for family, type_, proto, _, addr in infos:
                sock = trio.socket.socket(family, type_, proto)
                try:
                    await sock.connect(addr)
                except OSError as exc:
                    sock.close()
                    errors.append(exc)
                    continue
                except BaseException:
                    sock.close()
                    raise
                if sock.getsockname() == sock.getpeername():
                    # Linux may connect a socket to itself when its source port is the idle target.
                    sock.close()
                    errors.append(ConnectionRefusedError())
                    continue
                return trio.SocketStream(sock)
            if not any(isinstance(e, ConnectionRefusedError) for e in errors):
                raise ChannelError(f"{label}: cannot connect: {_describe(errors[-1])}")
            await trio.sleep(_CONNECT_RETRY)
    raise ChannelError(f"{label}: not reachable within {timeout:g}s (connection refused)")


async def connect_to_leader(host: str, port: int, *, tls: TlsFiles | None, timeout: float, my_hello: protocol.Hello,
                            policy: str) -> Channel:
    """Connect (retrying for up to `timeout` s while refused), then TLS and the hello within another
    `timeout` s."""
    peer = _hostport(host, port)
    label = f"leader {peer}"
    if port == 0:
        raise ChannelError(f"{label}: port 0 is not a leader's port")
    ctx = _tls_context(tls, server_side=False) if tls else None
    stream = await _connect(host, port, timeout, label)
    with trio.move_on_after(timeout):
        return await _establish(stream, peer, peer_role="leader", ctx=ctx, my_hello=my_hello, policy=policy)
    if tls:
        raise ChannelError(f"{label}: no TLS handshake and hello within {timeout:g}s")
    raise ChannelError(f"{label}: no hello within {timeout:g}s (a leader with --keys needs them here too)")
