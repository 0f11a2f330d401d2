"""The channel's data plane for threads: whole messages sent and received with blocking calls.

Every synced call crosses the channel, so it must not pay for a trio loop iteration and two thread
hops on each side. Once trio has set a channel up (TCP, TLS handshake, hellos: mvx.runtime.channel), the
session detaches it into a Pipe: the monitor thread sends its records itself, and one reader thread
per pipe hands incoming messages on.

A plain socket (`mvx run`'s socketpairs, --insecure TCP) is driven in C (mvx_fast.c, `mvx_chan`):
frames are sent under its lock from any thread, the C fast path included, and its reader (`pump_link`,
`pump_inbox`) takes acknowledgements and checks, or queues the leader's frames, without Python. TLS
goes on with the same SSL object (its memory BIOs are driven here, under a lock, so a reader and a
writer never use it at once); the fast path is off then.

Errors are ChannelError/ChannelClosed with the same one-line wording as the trio side."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
from collections import deque

from mvx.core import protocol
from mvx.mechanics.native import ffi, lib
from mvx.runtime.frames import ChannelClosed, ChannelError, Frames

RECV_CHUNK = 256 << 10
POLL = 0.5  # seconds: how often a blocked reader looks whether the pipe was shut down


class Pipe(Frames):
    """Frames over a connected stream socket, optionally through a TLS object (ssl.SSLObject with
    its incoming/outgoing memory BIOs)."""

    def __init__(self, sock: socket.socket, label: str, *, tls: ssl.SSLObject | None = None,
                 incoming: ssl.MemoryBIO | None = None, outgoing: ssl.MemoryBIO | None = None,
                 ready: deque | None = None, decoder: protocol.FrameDecoder | None = None,
                 send_timeout: float = 15.0) -> None:
        self._sock = sock
        self._label = label
        self._tls, self._in, self._out = tls, incoming, outgoing
        self._ready: deque[dict] = ready if ready is not None else deque()
        self._decoder = decoder or protocol.FrameDecoder()
        self._send_lock = threading.Lock()  # whole frames, in order
        self._tls_lock = threading.Lock()  # the SSL object is used by one thread at a time
        self._send_timeout = send_timeout
        self._closed = False
        self._broken: ChannelError | None = None
        sock.settimeout(POLL)
        self.chan = None  # the C side of a plain socket (struct mvx_chan)
        if tls is None:
            self.chan = ffi.gc(lib.mvx_chan_new(sock.fileno(), int(send_timeout * 1000)), lib.mvx_chan_free)
            pending = bytes(self._decoder._buf)  # a partial frame received before the detach
            if pending:
                lib.mvx_chan_seed(self.chan, pending, len(pending))
                self._decoder._buf.clear()

    @property
    def closed(self) -> bool:
        """This side shut the pipe down (a receive that fails after it is not the peer's doing)."""
        return self._closed

    def __repr__(self) -> str:
        return f"<Pipe {self._label}>"

    # ---- sending (any thread) -----------------------------------------------------------------------
    def send(self, message) -> None:
        try:
            frame = protocol.encode(message)
        except protocol.ProtocolError as exc:
            raise self.error(f"cannot send: {exc}") from None
        if self.chan is not None:
            if self._closed:
                raise self.error("the channel is closed", ChannelClosed)
            r = lib.mvx_chan_send(self.chan, frame, len(frame))
            if r < 0:
                raise self.send_error(r)
            return
        with self._send_lock:
            if self._closed:
                raise self.error("the channel is closed", ChannelClosed)
            if self._tls is not None:
                with self._tls_lock:
                    try:
                        self._tls.write(frame)
                    except ssl.SSLError as exc:
                        raise self.error(f"TLS: {exc}") from None
                    frame = self._out.read()
            self._send_raw(frame)

    def send_error(self, r: int) -> ChannelError:
        """The error of a failed C send (-errno)."""
        if r == -errno.ESHUTDOWN:
            return self.error("the channel is closed", ChannelClosed)
        if r == -errno.ETIMEDOUT:
            return self.error(f"the peer stopped reading for {self._send_timeout:g}s")
        return self.error(os.strerror(-r))

    def _send_raw(self, data: bytes) -> None:
        """All of `data`, within the send timeout (a peer that stops reading is a lost peer)."""
        view = memoryview(data)
        waited = 0.0
        while view:
            try:
                n = self._sock.send(view)
            except TimeoutError:
                waited += POLL
                if waited >= self._send_timeout or self._closed:
                    raise self.error(f"the peer stopped reading for {waited:g}s") from None
                continue
            except OSError as exc:
                raise self.error(exc.strerror or str(exc)) from None
            view = view[n:]

    def _flush_tls(self) -> None:
        """Send what the TLS object produced while reading (session tickets, key updates)."""
        with self._send_lock:
            with self._tls_lock:
                data = self._out.read()
            if data and not self._closed:
                self._send_raw(data)

    # ---- receiving (one reader thread) --------------------------------------------------------------
    def _received(self):
        """The next message Python reads itself: one trio received before the detach, or one
        through TLS; None when the C pump reads this pipe."""
        if self._ready:
            return self._ready.popleft()
        return self.receive() if self.chan is None else None

    def pump_link(self, link, i: int):
        """The leader's reader for follower i: acknowledgements and checks go to `link` (a
        LeaderLink); the next other message is returned. Raises like `receive`."""
        while True:
            message = self._received()
            if message is None:
                message = self._pumped(lib.mvx_link_pump(link.native, i, self.chan))
            if isinstance(message, (protocol.Ack, protocol.Checked)):
                taken = (link.on_ack if isinstance(message, protocol.Ack) else link.on_checked)(i, message.seq)
                if not taken:
                    raise self.error(f"{type(message).__name__} {message.seq}: the leader sent no such call")
            else:
                return message

    def pump_inbox(self, inbox):
        """A follower's reader: the leader's messages go to `inbox` (an Inbox), in order; a
        StopSession is returned. Raises like `receive`."""
        while True:
            message = self._received()
            if message is None:
                return self._pumped(lib.mvx_inbox_pump(inbox.native, self.chan))
            if isinstance(message, protocol.StopSession):
                return message
            inbox.put(message)

    def _pumped(self, r: int):
        """The message a C pump stopped at (r == 1), or the error it ended with."""
        if r == 1:
            n = ffi.new("size_t *")
            p = lib.mvx_chan_special(self.chan, n)
            try:
                messages = protocol.decode_body(bytes(ffi.buffer(p, n[0])))
            except protocol.ProtocolError as exc:
                raise self.error(str(exc)) from None
            if len(messages) != 1:
                raise self.error(f"a frame of {len(messages)} messages where one is expected")
            return messages[0]
        if r == 0:
            raise self.error("closed the connection", ChannelClosed)
        if r == -errno.EPROTO:
            raise self.error(ffi.string(lib.mvx_chan_error(self.chan)).decode(errors="replace"))
        raise self.error(os.strerror(-r))

    def receive(self):
        """The next message; blocks. ChannelClosed at the peer's clean end, or after close()."""
        while not self._ready:
            if self._broken is not None:
                raise self._broken
            self._take(self._read_some())
        return self._ready.popleft()

    def _read_some(self) -> bytes:
        if self._tls is None:
            return self._recv_raw()
        while True:
            with self._tls_lock:
                try:
                    data = self._tls.read(RECV_CHUNK)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:
                    return b""
                except ssl.SSLError as exc:
                    raise self.error(f"TLS: {exc}") from None
                pending_out = self._out.pending
            if pending_out:
                self._flush_tls()
            if data:
                return data
            raw = self._recv_raw()
            with self._tls_lock:
                if raw:
                    self._in.write(raw)
                else:
                    self._in.write_eof()
            if not raw and data is None:
                # the peer closed without close_notify; what the TLS object still holds is read above
                with self._tls_lock:
                    try:
                        rest = self._tls.read(RECV_CHUNK)
                    except (ssl.SSLError, ssl.SSLZeroReturnError):
                        rest = b""
                return rest

    def _recv_raw(self) -> bytes:
        while True:
            if self._closed:
                return b""
            try:
                return self._sock.recv(RECV_CHUNK)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closed:
                    return b""
                raise self.error(exc.strerror or str(exc)) from None

    # ---- ending ---------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Wake the reader (it sees the end) and refuse further sends; the socket stays open until
        close(), so a last message already sent is not cut off."""
        self._closed = True
        if self.chan is not None:
            lib.mvx_chan_shutdown(self.chan)
            return
        try:
            self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        if self.chan is not None:
            lib.mvx_chan_shutdown(self.chan)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
