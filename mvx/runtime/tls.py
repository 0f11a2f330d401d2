"""Mutual TLS 1.3 between nodes, with the TLS connection in C (mvx_tls.c) so that the channel's
C side (mvx_chan) seals and opens frames itself once trio has made the handshake and the hellos.

`TlsContext` is a node's keys; `TlsStream` is a trio stream over a connected socket that drives
the C connection's handshake, sends and receives through its memory buffers, and hands the
connection on (`Channel.detach`). Errors are `TlsError`: a few words, no traceback."""

from __future__ import annotations

import errno

import trio

from mvx.mechanics.native import ffi, lib

RECV_CHUNK = 64 << 10


class TlsError(Exception):
    """A TLS failure in a few words (`why`)."""

    def __init__(self, why: str, handshake: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.handshake = handshake


class TlsContext:
    """A node's CA certificate, certificate and key: every connection of the node is made from it.
    Peers must show a certificate of the same CA (TLS 1.3 only, no resumption), not on the CA's
    revocation list when the node has one (`crl`, `mvx keygen --revoke`)."""

    def __init__(self, ca: str, cert: str, key: str, *, server_side: bool, crl: str | None = None) -> None:
        err = ffi.new("char[]", 256)
        ctx = lib.mvx_tls_ctx_new(ca.encode(), cert.encode(), key.encode(), crl.encode() if crl else ffi.NULL,
                                  int(server_side), err, 256)
        if ctx == ffi.NULL:
            raise TlsError(ffi.string(err).decode(errors="replace"))
        self.native = ffi.gc(ctx, lib.mvx_tls_ctx_free)
        self.server_side = server_side


class TlsStream(trio.abc.Stream):
    """TLS over `transport` (a trio.SocketStream). One task sends at a time and one receives, as
    trio's streams require; what a receive makes the connection send (nothing, with TLS 1.3 and no
    tickets) goes out with the next send."""

    def __init__(self, transport: trio.SocketStream, context: TlsContext) -> None:
        conn = lib.mvx_tls_new(context.native)
        if conn == ffi.NULL:
            raise TlsError("out of memory")
        self.native = ffi.gc(conn, lib.mvx_tls_free)
        self.context = context  # (the connection holds its own reference; this one is for reading)
        self.transport = transport
        self._buf = ffi.new("char[]", RECV_CHUNK)

    def _error(self, handshake: bool = False) -> TlsError:
        return TlsError(ffi.string(lib.mvx_tls_error(self.native)).decode(errors="replace"), handshake)

    async def _flush(self) -> None:
        while True:
            n = lib.mvx_tls_take(self.native, self._buf, RECV_CHUNK)
            if not n:
                return
            await self.transport.send_all(ffi.buffer(self._buf, n)[:])

    async def _feed(self) -> None:
        data = await self.transport.receive_some(RECV_CHUNK)
        if lib.mvx_tls_feed(self.native, data, len(data)) < 0:
            raise TlsError("out of memory")

    async def do_handshake(self) -> None:
        while True:
            r = lib.mvx_tls_handshake(self.native)
            if r < 0:
                why = self._error(handshake=True)
                try:  # our alert, so that the peer learns why
                    await self._flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                raise why
            await self._flush()
            if r == 1:
                return
            await self._feed()

    def peer_common_name(self) -> str | None:
        """The peer certificate's common name; None when it has none, or one no role can have (a NUL
        inside, or longer than any: cut, it could look like a role's)."""
        out = ffi.new("char[]", 256)
        n = lib.mvx_tls_peer_cn(self.native, out, 256)
        if n < 0 or n >= 255:
            return None
        name = ffi.buffer(out, n)[:]
        return None if b"\0" in name else name.decode(errors="replace")

    async def send_all(self, data) -> None:
        data = bytes(data)
        if lib.mvx_tls_write(self.native, data, len(data)) < 0:
            raise self._error()
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        cap = min(max_bytes or RECV_CHUNK, RECV_CHUNK)
        while True:
            n = lib.mvx_tls_read(self.native, self._buf, cap)
            if n > 0:
                return ffi.buffer(self._buf, n)[:]
            if n == 0:
                return b""
            if n != -errno.EAGAIN:
                raise self._error()
            await self._feed()

    async def aclose(self) -> None:
        """A close_notify (best effort: the peer may be gone), then the socket."""
        try:
            lib.mvx_tls_close_notify(self.native)
            await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await self.transport.aclose()
