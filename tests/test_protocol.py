"""The binary protocol (docs/PROTOCOL.md): every message type round trips exactly, frames carry
several messages, and bytes that are not a message are a one-line ProtocolError naming what is
wrong, never another exception (a fuzz test feeds random, truncated and corrupted frames)."""

from __future__ import annotations

import random

import pytest

from mvx.core.protocol import (
    MAX_FRAME,
    MESSAGES,
    Ack,
    CallRecord,
    Checked,
    CheckRequest,
    DivergenceReport,
    End,
    FollowerEnded,
    FollowerStopped,
    FrameDecoder,
    Hello,
    ProtocolError,
    SignalBatch,
    Started,
    StopSession,
    check_hello,
    decode_body,
    encode,
    encode_batch,
    hello,
)
from mvx.isa.canonical import IoVec
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import Addr, FlagSet

EVERY_VALUE = [None, True, False, 0, -1, 1 << 62, -(1 << 63), (1 << 64) - 1, 1 << 70, -(1 << 90), "", "é\n", b"",
               b"\x00\xff" * 3000, [], [1, [2, [3]]], (4, "five"), {}, {"a": 1, "b": [None, b"x"]},
               TimeValue(1700000000, 999999999), TimeValue(-1, 0, True),
               SockAddr("AF_INET", (("sin_port", 80), ("sin_addr", "127.0.0.1"))), SockAddr(99, ()),
               FlagSet(frozenset({"O_CLOEXEC", "O_RDWR"}), 0x80000000), FlagSet(frozenset(), 0), Addr(0),
               Addr((1 << 64) - 1), IoVec((b"GET ", b"/ HTTP/1.1")), frozenset({"SIGINT", "SIGTERM"}), frozenset()]

SAMPLES = [
    Hello(2, "leader", "x86_64", "default"),
    CallRecord(1, "replicated", ["read", [5, None, 4096]], 13, {1: b"GET / HTTP/1.1"}),
    CallRecord(2**40, "local", ["close", [6]], None),
    CallRecord(3, "replicated", ["clock_gettime", ["CLOCK_MONOTONIC"]], 0, {1: TimeValue(5, 6)}, None, (5, 6)),
    CallRecord(4, "checked_output", ["sendfile", [5, 6, None, 1024]], 1024, {}, "ab" * 32),
    CallRecord(5, "replicated", ["x", EVERY_VALUE], -11, {i: v for i, v in enumerate(EVERY_VALUE[:6])}),
    CheckRequest(7, ["writev", [5, b"HTTP/1.1 200 OK\r\n", 2]]),
    CheckRequest(8, ["sendfile", [5, 6, None, 10]], "digest"),
    Checked(7), Ack(16),
    SignalBatch(9, "interrupt", ((10, bytes(128)), (34, b""))), SignalBatch(0, "rewind", ()),
    End(10, 0, None), End(11, None, 9),
    StopSession("the leader diverged"),
    DivergenceReport("arguments", 12, 'write(1, "hi", 2) = 2', 'write(1, "ho", 2)', "argument buf differs"),
    DivergenceReport("arguments", 12, "a", "b", "", '{"pid": 7, "pc": 4198400, "call": "write (nr 4)"}'),
    FollowerStopped("SIGTERM"), FollowerEnded(0, None), FollowerEnded(None, 15), Started(4242),
]


def test_every_message_type_has_a_sample():
    assert {type(m) for m in SAMPLES} == set(MESSAGES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_exact(message):
    frame = encode(message)
    assert list(FrameDecoder().feed(frame)) == [message]
    assert encode(next(FrameDecoder().feed(frame))) == frame  # one encoding for one message


def test_values_keep_their_types():
    record = SAMPLES[5]
    (back,) = FrameDecoder().feed(encode(record))
    for mine, theirs in zip(record.view[1], back.view[1]):
        assert type(mine) is type(theirs) and mine == theirs
    assert back.view[1][19].nsec == 999999999 and back.view[1][20].usec is True
    assert back.view[1][27].parts == (b"GET ", b"/ HTTP/1.1")


def test_a_batch_is_one_frame_fed_byte_by_byte():
    frame = encode_batch(SAMPLES)
    decoder = FrameDecoder()
    out = []
    for i in range(len(frame)):  # short reads are normal
        out += list(decoder.feed(frame[i:i + 1]))
    assert out == SAMPLES and decoder.pending == 0


def test_the_byte_order_is_fixed():
    assert encode(Ack(0x0102)) == bytes.fromhex("09000000" "05" "0201000000000000")


@pytest.mark.parametrize("message, why", [
    (CallRecord(1, "x", [object()], 0), "CallRecord.view: cannot send a object"),
    (CallRecord(1, "x", [], 1 << 64), "CallRecord.ret"),
    (CallRecord(1, "x", [], 0, {300: b""}), "CallRecord.outputs: argument index 300"),
    (Ack(-1), "Ack.seq"),
    ({"t": "call"}, "not a protocol message"),
    (CheckRequest(1, [{1: 2}]), "dict key 1 is not a string"),
])
def test_what_cannot_be_sent_is_one_line(message, why):
    with pytest.raises(ProtocolError, match=why) as info:
        encode(message)
    assert "\n" not in str(info.value)


def test_deep_nesting_is_refused_both_ways():
    deep = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ProtocolError, match="nested deeper"):
        encode(CheckRequest(1, deep))
    body = bytes([3]) + (1).to_bytes(8, "little") + bytes([8, 1, 0, 0, 0]) * 40 + bytes([0]) + bytes([0])
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_body(body)


@pytest.mark.parametrize("body, why", [
    (b"", "empty"),
    (b"\x7f", "unknown message type 0x7f"),
    (b"\x05\x01\x02", "Ack.seq: truncated u64"),
    (b"\x08\xff\xff\xff\x7fabc", "StopSession.reason: truncated bytes"),
    (b"\x08\x02\x00\x00\x00\xff\xfe", "StopSession.reason: a string that is not UTF-8"),
    (b"\x03" + bytes(8) + b"\x63", "CheckRequest.view: unknown value tag 0x63"),
    (b"\x03" + bytes(8) + b"\x08\xff\xff\xff\xff", "CheckRequest.view: 4294967295 items announced"),
    (b"\x03" + bytes(8) + b"\x04" + (5).to_bytes(8, "little") + b"\x00", "not canonical"),
    (b"\x03" + bytes(8) + b"\x00\x07", "CheckRequest.content: presence byte 7"),
    (b"\x05" + bytes(8) + b"\x66", "unknown message type 0x66"),
    (b"\x03" + bytes(8) + b"\x0f\x02\x00\x00\x00\x02\x03" + (1).to_bytes(8, "little") + b"\x00",
     "CheckRequest.view: set items equal as values"),  # {True, 1} is one item: it would not round trip
])
def test_bytes_that_are_not_a_message_name_the_field(body, why):
    with pytest.raises(ProtocolError, match=why) as info:
        decode_body(body)
    assert "\n" not in str(info.value)


def test_an_oversized_frame_is_refused_from_its_header():
    with pytest.raises(ProtocolError, match="over the"):
        list(FrameDecoder().feed((MAX_FRAME + 1).to_bytes(4, "little")))


def test_fuzz_random_truncated_and_corrupted_frames():
    """Whatever arrives, the decoder yields messages or raises ProtocolError: nothing else."""
    rng = random.Random(20261128)
    frames = [encode(m) for m in SAMPLES]
    cases = [rng.randbytes(rng.randrange(0, 64)) for _ in range(1500)]
    for frame in frames:
        body = frame[4:]
        cases += [body[:n] for n in range(0, len(body), max(1, len(body) // 40))]
        for _ in range(60):
            b = bytearray(body)
            b[rng.randrange(len(b))] = rng.randrange(256)
            cases.append(bytes(b))
    for body in cases:
        try:
            for m in decode_body(body):
                assert type(m) in MESSAGES
        except ProtocolError as exc:
            assert "\n" not in str(exc)
        decoder = FrameDecoder()
        try:
            list(decoder.feed(len(body).to_bytes(4, "little") + body))
        except ProtocolError:
            pass


def test_handshake():
    check_hello(hello("leader", "x86_64", "default"), "leader", "default")
    with pytest.raises(ProtocolError, match="expected a follower"):
        check_hello(hello("leader", "x86_64", "default"), "follower", "default")
    with pytest.raises(ProtocolError, match="policy"):
        check_hello(hello("leader", "x86_64", "seed"), "leader", "default")
    with pytest.raises(ProtocolError, match="version 99"):
        check_hello(Hello(99, "leader", "x86_64", "default"), "leader", "default")
    with pytest.raises(ProtocolError, match="expected Hello"):
        check_hello(Ack(1), "leader", "default")
