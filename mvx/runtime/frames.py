"""What both ends of a channel share, the trio side and the threads' side: received bytes into
whole protocol messages, and the one-line errors that name the peer."""

from __future__ import annotations

from mvx import MvxError
from mvx.core.protocol import ProtocolError


class ChannelError(MvxError):
    """A broken, refused or misbehaving channel, as one line that names the peer."""

    def __init__(self, message: str, why: str | None = None) -> None:
        super().__init__(message)
        self.why = why or message  # without the peer's name, for the leader's "rejected" line


class ChannelClosed(ChannelError):
    """The peer closed the channel cleanly, at a frame boundary."""


class Frames:
    """Received bytes into whole messages, and the one-line errors: what the trio Channel
    (mvx.runtime.channel) and the threads' Pipe (mvx.runtime.pipe) share. Needs _label, _decoder,
    _ready and _broken."""

    def error(self, why: str, cls: type[ChannelError] = ChannelError) -> ChannelError:
        """A ChannelError naming this end's peer."""
        return cls(f"{self._label}: {why}", why)

    def _take(self, data: bytes) -> None:
        """Decode `data` into _ready; b"" is the peer's end (clean, or mid-frame)."""
        if not data:
            if self._decoder.pending:
                self._broken = self.error(
                    f"truncated frame (peer closed mid-frame, {self._decoder.pending} bytes in)")
            else:
                self._broken = self.error("closed the connection", ChannelClosed)
            return
        try:
            for message in self._decoder.feed(data):
                self._ready.append(message)
        except ProtocolError as exc:  # the frames before the bad one are still delivered
            self._broken = self.error(str(exc))
