"""The channel's data plane for threads: whole messages sent and received with blocking calls.

Every synced call crosses the channel, so it must not pay for a trio loop iteration and two thread
hops on each side. Once trio has set a channel up (TCP, TLS handshake, hellos: mvx.runtime.channel), the
session detaches it into a Pipe: the monitor thread sends its records itself, and one reader thread
per pipe hands incoming messages on.

The socket is driven in C (mvx_fast.c, `mvx_chan`): frames are sent under its lock from any thread,
the C fast path included, and its reader (`pump_link`, `pump_inbox`) takes acknowledgements and
checks, or queues the leader's frames, without Python. Between nodes the same C side seals and opens
the frames with the TLS connection trio made the handshake on (mvx.runtime.tls, mvx_tls.c).

Errors are ChannelError/ChannelClosed with the same one-line wording as the trio side."""

from __future__ import annotations

import errno
import os
import socket
from collections import deque

from mvx.core import protocol
from mvx.mechanics.native import ffi, lib
from mvx.runtime.frames import ChannelClosed, ChannelError, Frames
from mvx.runtime.tls import TlsStream


class Pipe(Frames):
    """Frames over a connected stream socket, through a TLS connection between nodes."""

    def __init__(self, sock: socket.socket, label: str, *, tls: TlsStream | None = None,
                 ready: deque | None = None, decoder: protocol.FrameDecoder | None = None,
                 send_timeout: float = 15.0) -> None:
        self._sock = sock
        self._label = label
        self._tls = tls  # (kept alive as long as the C side uses its connection)
        self._ready: deque[dict] = ready if ready is not None else deque()
        self._decoder = decoder or protocol.FrameDecoder()
        self._send_timeout = send_timeout
        self._closed = False
        self._broken: ChannelError | None = None
        sock.setblocking(False)  # the C side polls: a send waits at most its timeout
        self.chan = ffi.gc(lib.mvx_chan_new(sock.fileno(), int(send_timeout * 1000)), lib.mvx_chan_free)
        pending = bytes(self._decoder._buf)  # a partial frame received before the detach
        if pending:
            lib.mvx_chan_seed(self.chan, pending, len(pending))
            self._decoder._buf.clear()
        if tls is not None and lib.mvx_chan_set_tls(self.chan, tls.native) < 0:
            self._broken = self.error(ffi.string(lib.mvx_chan_error(self.chan)).decode(errors="replace"))

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
        if self._closed:
            raise self.error("the channel is closed", ChannelClosed)
        r = lib.mvx_chan_send(self.chan, frame, len(frame))
        if r < 0:
            raise self.send_error(r)

    def send_error(self, r: int) -> ChannelError:
        """The error of a failed C send (-errno)."""
        if r == -errno.ESHUTDOWN:
            return self.error("the channel is closed", ChannelClosed)
        if r == -errno.ETIMEDOUT:
            return self.error(f"the peer stopped reading for {self._send_timeout:g}s")
        if r == -errno.EPROTO:
            return self.error(ffi.string(lib.mvx_chan_send_error(self.chan)).decode(errors="replace"))
        return self.error(os.strerror(-r))

    # ---- receiving (one reader thread) --------------------------------------------------------------
    def _received(self):
        """The next message trio received before the detach; None: the C pump reads on."""
        if self._broken is not None:
            raise self._broken
        return self._ready.popleft() if self._ready else None

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

    # ---- ending ---------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Wake the reader (it sees the end) and refuse further sends; the socket stays open until
        close(), so a last message already sent is not cut off."""
        self._closed = True
        lib.mvx_chan_shutdown(self.chan)

    def close(self) -> None:
        self._closed = True
        lib.mvx_chan_shutdown(self.chan)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
