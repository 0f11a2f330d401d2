"""The leader-follower wire format: length-prefixed frames of tagged JSON, sans-IO.

Only plain data crosses the wire (ints, strings, bytes, lists, dicts, None, bools): a peer can make
the receiver build nothing else, so a malicious or broken peer yields a WireError, never code
execution. `FrameDecoder` is fed bytes as they arrive (short reads are normal) and yields whole
messages; a frame over the size limit is rejected before it is buffered."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

VERSION = 1
MAX_FRAME = 16 << 20  # bytes; a leader record carries at most one syscall's data
_HEADER = struct.Struct(">I")


class WireError(Exception):
    """A frame or message that does not follow the protocol."""


def _default(value: Any) -> Any:
    """json's hook for what it cannot encode itself: bytes become {"$b": base64}; nothing else."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    raise WireError(f"cannot send a {type(value).__name__}")


def _object_hook(value: dict) -> Any:
    if "$b" in value:
        if len(value) != 1:
            raise WireError("'$b' is reserved")
        try:
            return base64.b64decode(value["$b"], validate=True)
        except (ValueError, TypeError) as exc:
            raise WireError(f"bad bytes: {exc}") from None
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default, check_circular=False)
_DECODER = json.JSONDecoder(object_hook=_object_hook)


def encode(message: dict) -> bytes:
    """One frame: 4-byte big-endian length, then the JSON body."""
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise WireError("a message is a dict with a string type 't'")
    try:
        body = _ENCODER.encode(message).encode()
    except (ValueError, TypeError, RecursionError) as exc:  # NaN is allowed; circular data is not
        raise WireError(f"cannot send: {exc}") from None
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Feed received bytes; iterate whole messages."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> Iterator[dict]:
        self._buf += data
        while True:
            if len(self._buf) < _HEADER.size:
                return
            (size,) = _HEADER.unpack_from(self._buf)
            if size > self.max_frame:
                raise WireError(f"frame of {size} bytes announced, over the {self.max_frame}-byte limit")
            if len(self._buf) < _HEADER.size + size:
                return
            body = bytes(self._buf[_HEADER.size:_HEADER.size + size])
            del self._buf[:_HEADER.size + size]
            try:
                message = _DECODER.decode(body.decode())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise WireError(f"malformed frame: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("t"), str):
                raise WireError("a message must be an object with a string type 't'")
            yield message

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (non-zero at a peer's EOF means a truncated frame)."""
        return len(self._buf)


def hello(role: str, arch: str, policy: str) -> dict:
    return {"t": "hello", "version": VERSION, "role": role, "arch": arch, "policy": policy}


def check_hello(message: dict, expect_role: str, policy: str) -> None:
    """The version handshake: same protocol version, the expected role, the same policy."""
    if message.get("t") != "hello":
        raise WireError(f"expected hello, got {message.get('t')!r}")
    if message.get("version") != VERSION:
        raise WireError(f"protocol version {message.get('version')!r}, this mvx speaks {VERSION}")
    if message.get("role") != expect_role:
        raise WireError(f"peer is a {message.get('role')!r}, expected a {expect_role}")
    if message.get("policy") != policy:
        raise WireError(f"peer runs policy {message.get('policy')!r}, this side {policy!r}")
