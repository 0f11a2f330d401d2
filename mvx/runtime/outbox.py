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

import threading
from dataclasses import dataclass

from mvx.mechanics.native import ffi, lib
from mvx.runtime.link import LeaderLink, Stopped


@dataclass
class Held:
    seq: int  # the synced call the followers must have checked
    fd: int  # the monitor's own duplicate of the program's fd (closed once this item left)
    data: bytes  # the bytes to send; empty for a shutdown
    shutdown: int | None = None  # SHUT_RD/WR/RDWR for a held shutdown


class Outbox:
    """The queue and its sending thread are C (mvx_fast.c, `mvx_outbox`), shared with the C fast
    path: one queue, so held outputs leave in the order the program made them whichever path
    held them. It waits on the link's own counts and fails with it."""

    def __init__(self, link: LeaderLink, limit: int = 8 << 20) -> None:
        self.link = link
        self.limit = limit
        self.native = ffi.gc(lib.mvx_outbox_new(link.native, limit), lib.mvx_outbox_free)
        self._thread = threading.Thread(target=lib.mvx_outbox_run, args=(self.native,), name="mvx-outbox",
                                        daemon=True)
        self._thread.start()

    @property
    def held(self) -> int:
        """Bytes held now, waiting for the followers' checks (a glimpse: --stats)."""
        return lib.mvx_outbox_held(self.native)

    @property
    def sent(self) -> int:
        """Bytes that left (tests, reports)."""
        return lib.mvx_outbox_sent(self.native)

    def hold(self, item: Held) -> None:
        """Queue `item` (its fd now belongs to the outbox); waits while over the limit."""
        how = -1 if item.shutdown is None else item.shutdown
        if lib.mvx_outbox_hold(self.native, item.seq, item.fd, item.data, len(item.data), how) < 0:
            raise self.link.failure or Stopped("the outbox is closed")

    def oldest_wait(self) -> tuple[float, int]:
        """(seconds the oldest held item has waited for the followers' checks, its call's seq);
        (0.0, 0) when nothing is held."""
        seq = ffi.new("uint64_t *")
        waited = lib.mvx_outbox_oldest_wait(self.native, seq)
        return waited, seq[0]

    def drain(self, timeout: float) -> bool:
        """Wait until everything held has left (the program ended); False on timeout or failure."""
        return bool(lib.mvx_outbox_drain(self.native, int(timeout * 1000)))

    def close(self) -> None:
        """Stop; whatever is still held is dropped (never sent)."""
        lib.mvx_outbox_close(self.native)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            lib.mvx_outbox_drop(self.native)
