"""The sync rules and the wire format, sans-IO: canonical calls from raw registers of different
ISAs, records through the real encoder, decisions and divergences as plain data."""

from __future__ import annotations

import pytest

from mvx import arch as archmod
from mvx import policy as policymod
from mvx.canonical import BytesMemory, RawSyscall, normalize
from mvx.sync import Action, Divergence, FollowerSync, LeaderSync
from mvx.wire import FrameDecoder, WireError, check_hello, encode, hello

POLICY = policymod.load("default")
BUF, PATH = 0x10000, 0x20000


def raw_call(arch: str, name: str, *args: int, mem: dict | None = None):
    a = archmod.get(arch)
    return normalize(RawSyscall(arch, a.nr(name), tuple(args) + (0,) * (6 - len(args))), BytesMemory(mem or {}))


def through_wire(message: dict) -> dict:
    decoder = FrameDecoder()
    frame = encode(message)
    out = []
    for i in range(len(frame)):  # one byte at a time: short reads are normal
        out += list(decoder.feed(frame[i:i + 1]))
    assert len(out) == 1 and decoder.pending == 0
    return out[0]


def test_equal_writes_across_isas_are_skipped_with_the_leaders_result():
    leader = LeaderSync(POLICY)
    rec = through_wire(leader.record(raw_call("x86_64", "write", 1, BUF, 3, mem={BUF: b"hi\n"}), 3))
    decision = FollowerSync(POLICY).on_call(raw_call("i386", "write", 1, BUF + 8, 3, mem={BUF + 8: b"hi\n"}), rec)
    assert decision.action is Action.SKIP and decision.record["ret"] == 3


def test_different_output_bytes_are_a_divergence_with_the_offset():
    rec = through_wire(LeaderSync(POLICY).record(raw_call("x86_64", "write", 1, BUF, 6, mem={BUF: b"hello\n"}), 6))
    with pytest.raises(Divergence) as info:
        FollowerSync(POLICY).on_call(raw_call("i386", "write", 1, BUF, 6, mem={BUF: b"PWNED\n"}), rec)
    d = info.value
    assert d.kind == "arguments" and "byte 0" in d.detail
    assert 'write(1, "hello\\n", 6) = 6' in d.report() and '"PWNED\\n"' in d.report()
    assert d.as_json()["event"] == "divergence"


def test_a_different_syscall_is_a_divergence():
    rec = LeaderSync(POLICY).record(raw_call("x86_64", "write", 1, BUF, 1, mem={BUF: b"x"}), 1)
    with pytest.raises(Divergence) as info:
        FollowerSync(POLICY).on_call(raw_call("i386", "execve", PATH, 0, 0, mem={PATH: b"/bin/sh\x00"}), rec)
    assert info.value.kind == "syscall"


def test_open_on_x86_equals_openat_on_aarch64_and_runs_locally():
    """O_DIRECTORY is 0200000 on x86 and 040000 on aarch64; canonical flags compare by name."""
    x86 = archmod.get("x86_64")
    arm = archmod.get("aarch64")
    flags_x86 = x86.const("O_RDONLY") | x86.const("O_DIRECTORY") | x86.const("O_CLOEXEC")
    flags_arm = arm.const("O_RDONLY") | arm.const("O_DIRECTORY") | arm.const("O_CLOEXEC")
    assert flags_x86 != flags_arm
    rec = through_wire(LeaderSync(POLICY).record(raw_call("x86_64", "open", PATH, flags_x86, 0,
                                                          mem={PATH: b"/srv\x00"}), 3))
    at_fdcwd = arm.const("AT_FDCWD") & 0xFFFFFFFFFFFFFFFF
    decision = FollowerSync(POLICY).on_call(raw_call("aarch64", "openat", at_fdcwd, PATH, flags_arm, 0,
                                                     mem={PATH: b"/srv\x00"}), rec)
    assert decision.action is Action.RUN


def test_replicated_read_is_injected_and_pointer_values_are_not_compared():
    rec = through_wire(LeaderSync(POLICY).record(raw_call("x86_64", "read", 0, 0x7ffd0000, 4096), 5,
                                                 {"data": b"hello"}))
    decision = FollowerSync(POLICY).on_call(raw_call("i386", "read", 0, 0xffd10000, 4096), rec)
    assert decision.action is Action.INJECT and decision.outputs == {"data": b"hello"}


def test_fd_numbers_must_agree_after_local_fd_creation():
    leader_call = raw_call("x86_64", "epoll_create1", 0)
    rec = LeaderSync(POLICY).record(leader_call, 4)
    follower = FollowerSync(POLICY)
    follower_call = raw_call("i386", "epoll_create1", 0)
    assert follower.on_call(follower_call, rec).action is Action.RUN
    follower.after_local(follower_call, 4, rec)
    with pytest.raises(Divergence) as info:
        follower.after_local(follower_call, 5, rec)
    assert info.value.kind == "fd"


def test_endings_are_compared():
    leader = LeaderSync(POLICY)
    end = through_wire(leader.exit_record(0, None))
    FollowerSync(POLICY).on_end(0, None, end)
    with pytest.raises(Divergence, match="exit statuses differ"):
        FollowerSync(POLICY).on_end(1, None, end)
    with pytest.raises(Divergence) as info:
        FollowerSync(POLICY).on_end(None, 11, end)
    assert info.value.kind == "signal"
    with pytest.raises(Divergence, match="never made"):
        FollowerSync(POLICY).on_call(raw_call("i386", "getpid"), end)


def test_lockstep_holds_outputs_under_sensitive():
    leader = LeaderSync(POLICY)
    write = raw_call("x86_64", "write", 1, BUF, 1, mem={BUF: b"x"})
    read = raw_call("x86_64", "read", 0, BUF, 1)
    assert leader.needs_lockstep(write, "sensitive") and not leader.needs_lockstep(read, "sensitive")
    assert leader.needs_lockstep(read, "all") and not leader.needs_lockstep(write, "none")
    request = through_wire(leader.check_request(write))
    FollowerSync(POLICY).check(raw_call("i386", "write", 1, BUF, 1, mem={BUF: b"x"}), request)
    with pytest.raises(Divergence):
        FollowerSync(POLICY).check(raw_call("i386", "write", 1, BUF, 1, mem={BUF: b"y"}), request)


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("frame, message", [
    (b"\xff\xff\xff\xff", "over the"),
    (framed(b"abc"), "malformed"),
    (framed(b"\xff\xfe"), "malformed"),
    (framed(b"[]"), "string type"),
    (framed(b'{"t":1,"x":[]}'), "string type"),
    (framed(b'{"t":"a","b":{"$b":"!"}}'), "bad bytes"),
])
def test_bad_frames_are_wire_errors(frame, message):
    decoder = FrameDecoder()
    with pytest.raises(WireError, match=message):
        list(decoder.feed(frame))


def test_truncated_frame_is_visible_and_objects_cannot_be_sent():
    decoder = FrameDecoder()
    assert list(decoder.feed(encode({"t": "call", "x": 1})[:-2])) == []
    assert decoder.pending > 0  # at EOF this is a truncated frame
    with pytest.raises(WireError):
        encode({"t": "call", "x": object()})


def test_handshake():
    check_hello(through_wire(hello("leader", "x86_64", "default")), "leader", "default")
    with pytest.raises(WireError, match="expected a follower"):
        check_hello(hello("leader", "x86_64", "default"), "follower", "default")
    with pytest.raises(WireError, match="policy"):
        check_hello(hello("leader", "x86_64", "seed"), "leader", "default")
    bad = hello("leader", "x86_64", "default")
    bad["version"] = 99
    with pytest.raises(WireError, match="version"):
        check_hello(bad, "leader", "default")
