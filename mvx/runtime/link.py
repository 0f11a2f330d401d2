"""Where a monitor thread meets the rest of its session: the leader's `LeaderLink` to its
followers (a window of unacknowledged records: backpressure; `check`: lockstep), and a follower's
`Inbox` of the leader's messages. Messages are mvx.core.protocol types; the reader threads move them over
the channel."""

from __future__ import annotations

from mvx.core import protocol
from mvx.core.protocol import CheckRequest, End
from mvx.core.sync import Divergence, render_view
from mvx.mechanics.native import ffi, lib

# seconds past --timeout before the leader calls a follower late: the follower's own watchdog, at
# --timeout, says why first when it can (a frozen follower cannot)
CHECK_GRACE = 2.0


class Stopped(Exception):
    """The session is ending from outside this monitor; `reason` says why."""

    def __init__(self, reason: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason


class LeaderLink:
    """The leader thread's side of its followers (methods called from the thread unless noted).
    The counts live in C (mvx_fast.c, `mvx_link`): a reader thread updates them without Python,
    and the C fast path waits on them as this class does."""

    def __init__(self, followers: int, send, window: int = 256, timeout: float = 10.0, on_lost=None) -> None:
        self._send = send  # send(index, message): thread-safe hand-off to the trio side
        self.followers = followers
        self.window = window
        self.timeout = timeout
        self.native = ffi.gc(lib.mvx_link_new(followers, window), lib.mvx_link_free)
        self.failure: BaseException | None = None
        self.on_lost = on_lost  # on_lost(index, r): a send from C failed with -errno r (the session decides)

    @property
    def live(self) -> set[int]:
        return {i for i in range(self.followers) if lib.mvx_link_live(self.native, i)}

    def acked(self, i: int) -> int:
        return lib.mvx_link_acked(self.native, i)

    def checked(self, i: int) -> int:
        return lib.mvx_link_checked(self.native, i)

    def publish(self, message) -> None:
        if lib.mvx_link_window_wait(self.native, message.seq) < 0:
            raise self.failure or Stopped("stopped")
        lib.mvx_link_published(self.native, message.seq)  # a follower may check or ack up to here
        for i in sorted(self.live):
            self._send(i, message)

    def started(self, message) -> None:
        """The leader's variant exists (Started): every follower may start its own."""
        for i in sorted(self.live):
            self._send(i, message)

    def check(self, request: CheckRequest) -> None:
        """Block until every live follower has checked `request` (lockstep)."""
        self.publish(request)
        self.wait_checked(request.seq, request.view)

    def wait_checked(self, seq: int, view=None) -> None:
        """Block until every live follower has checked `seq`; a follower later than the timeout
        (its own watchdog fires first) is a divergence."""
        r = lib.mvx_link_checked_wait(self.native, seq, int((self.timeout + CHECK_GRACE) * 1000))
        if r < 0:
            raise self.failure or Stopped("stopped")
        if r > 0:
            late = sorted(i for i in self.live if self.checked(i) < seq)
            raise Divergence("timeout", seq, render_view(view), "(not reached)",
                             f"follower(s) {late} did not check the call within {self.timeout:g}s", late=tuple(late))

    def end(self, message: End) -> None:
        """The leader's program ended: tell every follower (no window: nothing more follows)."""
        for i in sorted(self.live):
            self._send(i, message)

    # called from the reader threads; False: the follower claims a call the leader never sent
    def on_ack(self, i: int, seq: int) -> bool:
        return lib.mvx_link_on_ack(self.native, i, seq) == 0

    def on_checked(self, i: int, seq: int) -> bool:
        return lib.mvx_link_on_checked(self.native, i, seq) == 0

    def detach(self, i: int) -> None:
        """A follower left the session (alert policy, or it ended): no longer waited for."""
        lib.mvx_link_detach(self.native, i)

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        lib.mvx_link_fail(self.native)

    def report_lost(self) -> None:
        """Tell the session of every follower a send from C failed to reach."""
        for i in range(self.followers):
            r = lib.mvx_link_take_lost(self.native, i)
            if r and self.on_lost is not None:
                self.on_lost(i, r)


class Inbox:
    """The leader's messages for a follower thread, in order (a queue in C, mvx_fast.c `mvx_inbox`,
    that the C fast path reads too); the watchdog reads how long the oldest has waited."""

    def __init__(self) -> None:
        self.native = ffi.gc(lib.mvx_inbox_new(), lib.mvx_inbox_free)
        self._closed: str | None = None
        self.pipe = None  # set by `own`: the monitor thread reads this pipe itself
        self.on_end = None  # on_end(message or None, error or None): the channel it reads ended
        self._end_told = False
        self._buf = ffi.new("char[]", 1 << 16)
        self._len = ffi.new("size_t *")

    def put(self, message) -> None:
        body = protocol.encode(message)[4:]
        lib.mvx_inbox_put(self.native, body, len(body))

    def close(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        lib.mvx_inbox_close(self.native)

    @property
    def closed(self) -> str | None:
        return self._closed

    def own(self, pipe, on_end) -> None:
        """The monitor thread reads `pipe` itself (no reader thread: one wake-up per frame, not two);
        `on_end(message, error)` is told once when it ends: a StopSession, or a ChannelError."""
        self.pipe, self.on_end = pipe, on_end
        lib.mvx_inbox_own(self.native, pipe.chan)
        while pipe._ready:  # what trio received before the detach comes first
            message = pipe._ready.popleft()
            if isinstance(message, protocol.StopSession):
                self._end_told = True
                on_end(message, None)
                return
            self.put(message)
        lib.mvx_inbox_take_buffered(self.native)  # then what the channel holds already (TLS opened it)

    def ended(self) -> None:
        """The own channel ended (StopSession, the leader's close, a broken or malformed frame):
        tell the session, once."""
        if self.pipe is None or self._end_told:
            return
        err = ffi.new("int *")
        how = lib.mvx_inbox_end(self.native, err)
        if not how:
            return
        self._end_told = True
        if how == lib.MVX_INBOX_END_STOP:
            self.on_end(self.pipe._pumped(1), None)
        else:
            try:
                self.pipe._pumped(0 if how == lib.MVX_INBOX_END_EOF else err[0])
            except Exception as exc:  # noqa: BLE001 - a ChannelError or ChannelClosed, told as such
                self.on_end(None, exc)

    def get(self, timeout: float | None = None):
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        while True:
            r = lib.mvx_inbox_take(self.native, self._buf, len(self._buf), self._len, ms)
            if r == 0:
                return protocol.decode_body(bytes(ffi.buffer(self._buf, self._len[0])))[0]
            if r == 1:
                raise TimeoutError
            if r == -1:
                self.ended()
                raise Stopped(self._closed or "stopped")
            self._buf = ffi.new("char[]", self._len[0])  # -ENOSPC: a bigger frame

    def oldest_wait(self) -> float:
        """Seconds the oldest undelivered message has waited (0 when none)."""
        return lib.mvx_inbox_oldest_wait(self.native)
