"""Write-behind: checked outputs held by the leader's monitor until every follower agreed.

Under `--lockstep sensitive` an output must not leave before every follower has checked it. Instead
of stopping the leader's program until then, its monitor answers the call at once (the bytes are
copied: the program may reuse its buffer) and holds the bytes here; they leave through the monitor's
own duplicate of the socket or pipe, in the order the program wrote them, once every live follower
has checked that call (`LeaderLink.checked`). Lockstep then costs latency, not throughput: the
program serves other connections while the followers catch up.

Fail closed: a divergence or a lost follower fails the link, and nothing held leaves after that. A
`shutdown` is held the same way, so it comes after the bytes before it; each held item keeps its
own duplicate of the fd, so a `close` by the program does not cut bytes still held (the connection
ends when the last of them has left). At most `limit` bytes are held; beyond that `hold` waits for
the followers (the program waits, as under plain lockstep)."""

from __future__ import annotations

import collections
import os
import select
import socket
import threading
from dataclasses import dataclass

from mvx.mechanics.native import lib
from mvx.runtime.link import LeaderLink

POLL_MS = 200  # how often a blocked write looks whether the session failed


@dataclass
class Held:
    seq: int  # the synced call the followers must have checked
    fd: int  # the monitor's own duplicate of the program's fd (closed once this item left)
    data: bytes  # the bytes to send; empty for a shutdown
    shutdown: int | None = None  # SHUT_RD/WR/RDWR for a held shutdown


class Outbox:
    def __init__(self, link: LeaderLink, limit: int = 8 << 20) -> None:
        self.link = link
        self.limit = limit
        self._queue: collections.deque[Held] = collections.deque()
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()
        self.sent = 0  # bytes that left (tests, reports)
        self._thread = threading.Thread(target=self._run, name="mvx-outbox", daemon=True)
        self._thread.start()

    def hold(self, item: Held) -> None:
        """Queue `item` (its fd now belongs to the outbox); waits while over the limit."""
        cond = self._cond
        with cond:
            while self._bytes + len(item.data) > self.limit and self._queue and not self._stopped():
                cond.wait(0.5)
            if self._stopped():
                os.close(item.fd)
                raise self.link.failure or RuntimeError("the outbox is closed")
            self._queue.append(item)
            self._bytes += len(item.data)
            cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until everything held has left (the program ended); False on timeout or failure."""
        cond = self._cond
        with cond:
            return cond.wait_for(lambda: not self._queue or self._stopped(), timeout) and not self._queue

    def close(self) -> None:
        """Stop; whatever is still held is dropped (never sent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        with self._cond:
            for item in self._queue:
                os.close(item.fd)
            self._queue.clear()

    # ---- the sending thread ----------------------------------------------------------------------
    def _stopped(self) -> bool:
        return self._closed or self.link.failure is not None

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                cond.wait_for(lambda: self._stopped() or self._queue, 0.2)
                if self._stopped():
                    return
                if not self._queue:
                    continue
                item = self._queue[0]
            # every live follower must have checked it (the link's counts are C's: waited on there)
            while not self._stopped() and lib.mvx_link_checked_wait(self.link.native, item.seq, POLL_MS) > 0:
                pass
            if self._stopped():
                return
            try:
                self._send(item)
            finally:
                with cond:
                    if self._queue and self._queue[0] is item:
                        self._queue.popleft()
                        self._bytes -= len(item.data)
                    os.close(item.fd)
                    cond.notify_all()

    def _send(self, item: Held) -> None:
        if item.shutdown is not None:
            sock = socket.socket(fileno=os.dup(item.fd))
            try:
                sock.shutdown(item.shutdown)
            except OSError:
                pass  # the peer is gone: the program's own shutdown would have found nothing to end
            finally:
                sock.close()
            return
        view = memoryview(item.data)
        poller = select.poll()
        poller.register(item.fd, select.POLLOUT)
        while view and not self._stopped():
            try:
                n = os.write(item.fd, view)
            except BlockingIOError:
                poller.poll(POLL_MS)
                continue
            except OSError:
                return  # reset or closed by the peer: what is left cannot be delivered, natively neither
            view = view[n:]
            self.sent += n
