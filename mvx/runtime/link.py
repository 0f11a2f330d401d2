"""Where a monitor thread meets the rest of its session: the leader's `LeaderLink` to its
followers (a window of unacknowledged records: backpressure; `check`: lockstep), and a follower's
`Inbox` of the leader's messages. Messages are mvx.core.protocol types; the trio side moves them over
the channel."""

from __future__ import annotations

import collections
import threading
import time

from mvx.core.protocol import CheckRequest, End
from mvx.core.sync import Divergence, render_view


class Stopped(Exception):
    """The session is ending from outside this monitor; `reason` says why."""

    def __init__(self, reason: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason


class LeaderLink:
    """The leader thread's side of its followers (methods called from the thread unless noted)."""

    def __init__(self, followers: int, send, window: int = 256, timeout: float = 10.0) -> None:
        self._send = send  # send(index, message): thread-safe hand-off to the trio side
        self.window = window
        self.timeout = timeout
        self.live = set(range(followers))
        self.acked = [0] * followers
        self.checked = [0] * followers
        self.cond = threading.Condition()
        self.failure: BaseException | None = None

    def publish(self, message) -> None:
        seq = message.seq
        with self.cond:
            while self.failure is None and any(seq - self.acked[i] > self.window for i in self.live):
                self.cond.wait(0.5)
            if self.failure is not None:
                raise self.failure
            live = sorted(self.live)
        for i in live:
            self._send(i, message)

    def started(self, message) -> None:
        """The leader's variant exists (Started): every follower may start its own."""
        with self.cond:
            live = sorted(self.live)
        for i in live:
            self._send(i, message)

    def check(self, request: CheckRequest) -> None:
        """Block until every live follower has checked `request` (lockstep)."""
        seq = request.seq
        self.publish(request)
        deadline = time.monotonic() + self.timeout + 5.0  # a follower's own watchdog fires first
        with self.cond:
            while self.failure is None and any(self.checked[i] < seq for i in self.live):
                left = deadline - time.monotonic()
                if left <= 0:
                    late = sorted(i for i in self.live if self.checked[i] < seq)
                    raise Divergence("timeout", seq, render_view(request.view), "(not reached)",
                                     f"follower(s) {late} did not check the call within {self.timeout:g}s")
                self.cond.wait(min(left, 0.5))
            if self.failure is not None:
                raise self.failure

    def end(self, message: End) -> None:
        """The leader's program ended: tell every follower (no window: nothing more follows)."""
        with self.cond:
            live = sorted(self.live)
        for i in live:
            self._send(i, message)

    # called from the trio side
    def on_ack(self, i: int, seq: int) -> None:
        with self.cond:
            self.acked[i] = max(self.acked[i], seq)
            self.cond.notify_all()

    def on_checked(self, i: int, seq: int) -> None:
        with self.cond:
            self.checked[i] = max(self.checked[i], seq)
            self.acked[i] = max(self.acked[i], seq - 1)
            self.cond.notify_all()

    def detach(self, i: int) -> None:
        """A follower left the session (alert policy, or it ended): no longer waited for."""
        with self.cond:
            self.live.discard(i)
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.failure is None:
                self.failure = exc
            self.cond.notify_all()


class Inbox:
    """Messages from the trio side to a follower thread, in order; the watchdog reads how long the
    oldest has waited."""

    def __init__(self) -> None:
        self._q: collections.deque[tuple[float, object]] = collections.deque()
        self._cond = threading.Condition()
        self._closed: str | None = None

    def put(self, message) -> None:
        with self._cond:
            self._q.append((time.monotonic(), message))
            self._cond.notify()

    def close(self, reason: str) -> None:
        with self._cond:
            if self._closed is None:
                self._closed = reason
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._q and self._closed is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            if self._closed is not None:
                raise Stopped(self._closed)
            return self._q.popleft()[1]

    def oldest_wait(self) -> float:
        """Seconds the oldest undelivered message has waited (0 when none)."""
        with self._cond:
            return time.monotonic() - self._q[0][0] if self._q else 0.0
