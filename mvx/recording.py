"""Record a leader's stream to a file, and verify a follower of any ISA against it, offline.

`mvx record` runs one variant as a leader (`mvx leader`, the same monitor as `mvx run`) whose only
peer is a recorder: it writes every frame the leader sends (the binary protocol, docs/PROTOCOL.md:
Started, CallRecords, SignalBatches, CheckRequests, End) to the file, compressed, and answers as a
follower that agrees with everything (Checked, Ack, FollowerEnded), so the leader runs at its own
pace. `mvx verify` feeds the file's frames to a follower (`mvx follower`, the same monitor as a live
run), no faster than it acknowledges them, and reports the first divergence or "verified N calls".
A team records real traffic against one build once and checks every new build, or another ISA's,
against it.

The file: MAGIC, a u32 length and a JSON header (program, ISA, policy, mode, mvx and protocol
versions, when), then one zlib stream of the leader's frames exactly as they were sent. A zlib
stream that does not end is a truncated file; one that does not inflate or frames that do not
decode are a damaged one; another magic is a foreign one: each a one-line error."""

from __future__ import annotations

import datetime
import json
import os
import socket
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import trio

from mvx import MvxError, __version__
from mvx.core import protocol
from mvx.core.protocol import (
    Ack,
    CallRecord,
    Checked,
    CheckRequest,
    DivergenceReport,
    End,
    FollowerEnded,
    FollowerStopped,
    FrameDecoder,
)

MAGIC = b"MVXREC\x00\x01"
_LEN = struct.Struct("<I")
_FRAME = struct.Struct("<I")
_CHUNK = 1 << 16
WINDOW = 256  # records a verifying follower may have unacknowledged (the leader's default --window)


class RecordingError(MvxError):
    """A recording that cannot be read: foreign, damaged, truncated, or of another protocol."""


# ---- the file -------------------------------------------------------------------------------------


class Writer:
    """The file being recorded: header first, then the leader's bytes through one zlib stream."""

    def __init__(self, path: str | os.PathLike, header: dict) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()
        text = json.dumps(header, sort_keys=True).encode()
        self._f.write(MAGIC + _LEN.pack(len(text)) + text)
        self._z = zlib.compressobj(6)

    def write(self, data: bytes) -> None:
        self._f.write(self._z.compress(data))

    def close(self) -> None:
        """The stream's end: a file without it reads as truncated."""
        self._f.write(self._z.flush())
        self._f.close()


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The header and the offset of the compressed frames."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + _LEN.size)
            if head[:len(MAGIC)] != MAGIC:
                raise RecordingError(f"{path}: not an mvx recording")
            if len(head) < len(MAGIC) + _LEN.size:
                raise RecordingError(f"{path}: truncated (in its header)")
            (size,) = _LEN.unpack_from(head, len(MAGIC))
            text = f.read(size) if size <= 1 << 20 else b""
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror}") from None
    if len(text) != size:
        raise RecordingError(f"{path}: damaged header")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or not all(isinstance(header.get(k), str) for k in ("arch", "policy", "mode")) \
            or header["mode"] not in ("ptrace", "seccomp", "hybrid"):
        raise RecordingError(f"{path}: damaged header")
    if header.get("protocol") != protocol.VERSION:
        raise RecordingError(f"{path}: recorded with protocol version {header.get('protocol')!r} (mvx "
                             f"{header.get('mvx')}); this mvx speaks {protocol.VERSION}")
    return header, len(MAGIC) + _LEN.size + size


def frames(path: str | os.PathLike, offset: int) -> Iterator[bytes]:
    """The recorded frames (each with its length prefix), checked whole: a damaged or truncated
    stream raises RecordingError where it is found."""
    z = zlib.decompressobj()
    buf = bytearray()
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(_CHUNK):
            try:
                buf += z.decompress(chunk)
            except zlib.error:
                raise RecordingError(f"{path}: damaged (the compressed stream does not inflate)") from None
            while len(buf) >= _FRAME.size:
                (size,) = _FRAME.unpack_from(buf)
                if size > protocol.MAX_FRAME:
                    raise RecordingError(f"{path}: damaged (a frame of {size} bytes)")
                if len(buf) < _FRAME.size + size:
                    break
                frame = bytes(buf[:_FRAME.size + size])
                del buf[:_FRAME.size + size]
                yield frame
            if z.eof:
                break
    if not z.eof:
        raise RecordingError(f"{path}: truncated (the recording did not end: was `mvx record` killed?)")
    if buf or z.unused_data:
        raise RecordingError(f"{path}: damaged (bytes after the last frame)")


def messages_of(frame: bytes, path: str | os.PathLike = "") -> list:
    try:
        return protocol.decode_body(frame[_FRAME.size:])
    except protocol.ProtocolError as exc:
        raise RecordingError(f"{path}: damaged ({exc})") from None


def check(path: str | os.PathLike) -> tuple[dict, int, End]:
    """Read the whole file once before anything runs: (header, frames offset, its End)."""
    header, offset = read_header(path)
    end = None
    for frame in frames(path, offset):
        for m in messages_of(frame, path):
            if isinstance(m, End):
                end = m
    if end is None:
        raise RecordingError(f"{path}: truncated (no end of the program recorded)")
    return header, offset, end


# ---- recording ------------------------------------------------------------------------------------


def header_for(argv: list[str], arch: str, policy: str, mode: str) -> dict:
    return {"format": 1, "protocol": protocol.VERSION, "mvx": __version__, "program": os.path.basename(argv[0]),
            "argv": argv, "arch": arch, "policy": policy, "mode": mode,
            "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


async def stand_in(sock: socket.socket, on_data=None, on_message=None) -> int:
    """A follower that agrees with everything, on the leader's end of a channel: it answers every
    CheckRequest (Checked), acknowledges the records (Ack) and the program's end (FollowerEnded), so
    the leader runs at its own pace. `on_data(bytes)` gets what the leader sent as it came (the
    recorder's file), `on_message(message)` each message. Returns how many calls it saw."""
    tsock = trio.socket.from_stdlib_socket(sock)
    decoder = FrameDecoder()
    calls, acked = 0, 0
    with tsock:
        while True:
            try:
                data = await tsock.recv(_CHUNK)
            except OSError:
                break
            if not data:
                break
            if on_data is not None:
                on_data(data)
            replies = []
            last = acked
            for m in decoder.feed(data):
                if on_message is not None:
                    on_message(m)
                if isinstance(m, CallRecord):
                    calls += 1
                    last = m.seq
                elif isinstance(m, CheckRequest):
                    replies.append(Checked(m.seq))
                elif isinstance(m, End):
                    replies.append(FollowerEnded(m.status, m.signal))
            if last > acked:
                replies.insert(0, Ack(last))
                acked = last
            if replies:
                try:
                    await send_all(tsock, b"".join(protocol.encode(r) for r in replies))  # a frame each, as a follower's
                except OSError:
                    break
    return calls


async def send_all(tsock, data: bytes) -> None:
    """A trio socket's send may take part of the bytes: the rest follows (a frame is never cut)."""
    view = memoryview(data)
    while view:
        view = view[await tsock.send(view):]


# ---- verifying ------------------------------------------------------------------------------------


class Verdict:
    """What the follower said last: None while it runs."""

    def __init__(self) -> None:
        self.final: object = None
        self.acked = 0
        self.moved = trio.Event()

    def note(self, m) -> None:
        if isinstance(m, Ack | Checked):
            self.acked = max(self.acked, m.seq if isinstance(m, Ack) else m.seq - 1)
        elif isinstance(m, DivergenceReport | FollowerEnded | FollowerStopped):
            self.final = m
        self.moved.set()
        self.moved = trio.Event()


async def feed(tsock, path, offset: int, verdict: Verdict, window: int = WINDOW) -> None:
    """The recorded frames to the follower, at most `window` records ahead of its acknowledgements
    (else the follower's watchdog would time out records that only wait in its queue)."""
    for frame in frames(path, offset):
        seqs = [m.seq for m in messages_of(frame, path) if isinstance(m, CallRecord)]
        while seqs and seqs[-1] - verdict.acked > window and verdict.final is None:
            await verdict.moved.wait()
        if verdict.final is not None:
            return
        await send_all(tsock, frame)


async def hear(tsock, verdict: Verdict) -> None:
    decoder = FrameDecoder()
    while verdict.final is None:
        try:
            data = await tsock.recv(_CHUNK)
        except OSError:
            data = b""
        if not data:
            break
        for m in decoder.feed(data):
            verdict.note(m)
    verdict.moved.set()


def say(text: str) -> None:
    print(f"mvx: {text}", file=sys.stderr, flush=True)


def describe(header: dict, path: Path) -> str:
    return (f"{path}: {header.get('program')} ({header.get('arch')}, policy {header.get('policy')}, "
            f"recorded {header.get('recorded')} by mvx {header.get('mvx')})")
