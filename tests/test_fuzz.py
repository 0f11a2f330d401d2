"""Fuzzing, with hypothesis (bounded examples here; `just fuzz` runs many more), of what mvx decodes
from a peer or a variant: a hostile follower or leader can send any bytes on the channel, and a
hostile variant can hand its monitor any registers and memory (iovec counts, lengths, sockaddr
sizes, epoll counts). Every input ends as a value or a clean refusal (ProtocolError, or MvxError
for a call's decoding: a divergence), never another exception, a hang or a runaway allocation.
(The C codec is fuzzed against the Python one in tests/test_cprotocol.py.)"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvx import MvxError
from mvx.core import protocol
from mvx.isa import arch as archmod
from mvx.isa.canonical import BytesMemory, RawSyscall, decode_outputs, normalize
from tests.test_protocol import SAMPLES

EXAMPLES = int(os.environ.get("MVX_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
BASE = 0x10000  # where the hostile variant's one mapped region starts


@FUZZ
@given(st.binary(max_size=600))
def test_any_frame_body_decodes_or_is_refused(body):
    try:
        messages = protocol.decode_body(body)
    except protocol.ProtocolError:
        return
    assert all(type(m) in protocol.MESSAGES for m in messages)


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_a_damaged_real_frame_decodes_or_is_refused(message, data):
    body = bytearray(protocol.encode(message)[4:])
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(len(body) - 1, 0)))
        if how == "flip" and body:
            body[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del body[at:]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=9))
    try:
        protocol.decode_body(bytes(body))
    except protocol.ProtocolError:
        pass


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_a_stream_in_any_pieces_decodes_or_is_refused_without_buffering_an_announced_giant(chunks):
    decoder = protocol.FrameDecoder()
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                assert type(message) in protocol.MESSAGES
    except protocol.ProtocolError:
        pass
    assert decoder.pending <= sum(map(len, chunks))  # only what came, never what a header announced


_WORDS = [0, 1, 2, 3, 7, 16, 64, 4096, 1 << 20, 1 << 31, (1 << 32) - 1, BASE, BASE + 8, BASE + 100, BASE + 4092]


@FUZZ
@given(st.sampled_from(["x86_64", "i386"]), st.data(), st.binary(max_size=4096),
       st.sampled_from([-14, -1, 0, 1, 8, 100, 4096, 1 << 20, (1 << 31) - 1]))
def test_a_hostile_variants_call_decodes_or_fails_closed(arch_name, data, memory, ret):
    """Any call number of the ISA, arguments that point into, around and past the one mapped region
    or are huge counts, any bytes there: decoding the call and its results gives a Call or an
    MvxError (the monitor's divergence), nothing else."""
    a = archmod.get(arch_name)
    nr = data.draw(st.sampled_from(sorted(a.names)))
    word = (1 << (8 * a.word_size)) - 1
    args = tuple(data.draw(st.one_of(st.sampled_from(_WORDS), st.integers(0, word))) & word for _ in range(6))
    mem = BytesMemory({BASE: memory} if memory else {})
    try:
        call = normalize(RawSyscall(arch_name, nr, args), mem)
        decode_outputs(call, mem, ret)
    except MvxError:
        pass
