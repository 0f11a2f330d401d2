"""The sync rules, sans-IO: canonical calls from raw registers of different ISAs, records through
the real binary encoder, plans and divergences as plain data."""

from __future__ import annotations

import pytest

from mvx.core import policy as policymod
from mvx.core.outputs import EpollRegistry
from mvx.core.protocol import Ack, Checked, FrameDecoder, encode
from mvx.core.sync import Action, Divergence, FollowerSync, LeaderSync, render_view, view
from mvx.isa import arch as archmod
from mvx.isa.canonical import BytesMemory, RawSyscall, normalize
from mvx.isa.syscalls import FlagSet, spec_of

POLICY = policymod.load("default")
BUF, PATH = 0x10000, 0x20000


def raw_call(arch: str, name: str, *args: int, mem: dict | None = None):
    a = archmod.get(arch)
    return normalize(RawSyscall(arch, a.nr(name), tuple(args) + (0,) * (6 - len(args))), BytesMemory(mem or {}))


def through_wire(message):
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
    plan = FollowerSync(POLICY).on_call(raw_call("i386", "write", 1, BUF + 8, 3, mem={BUF + 8: b"hi\n"}), rec,
                                        arch=archmod.get("i386"))
    assert plan.action is Action.ANSWER and plan.ret == 3 and plan.writes == ()


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
    plan = FollowerSync(POLICY).on_call(raw_call("aarch64", "openat", at_fdcwd, PATH, flags_arm, 0,
                                                 mem={PATH: b"/srv\x00"}), rec)
    assert plan.action is Action.RUN and plan.compare_ret  # an fd: the numbers must agree


def test_replicated_read_is_answered_with_the_leaders_bytes_and_pointer_values_are_not_compared():
    rec = through_wire(LeaderSync(POLICY).record(raw_call("x86_64", "read", 0, 0x7ffd0000, 4096), 5,
                                                 {1: b"hello"}))
    assert rec.outputs == {1: b"hello"}
    plan = FollowerSync(POLICY).on_call(raw_call("i386", "read", 0, 0xffd10000, 4096), rec,
                                        arch=archmod.get("i386"))
    assert plan.action is Action.ANSWER and plan.ret == 5 and plan.writes == ((0xffd10000, b"hello"),)


def test_clock_reads_are_one_clock_answered_in_the_followers_form():
    """x86_64 time() against i386 clock_gettime64(CLOCK_REALTIME_COARSE): one reading, the follower's
    own timespec layout."""
    i386 = archmod.get("i386")
    rec = through_wire(LeaderSync(POLICY).record(raw_call("x86_64", "time", 0), 1700000000))
    assert rec.clock == (1700000000, 0)
    call = raw_call("i386", "clock_gettime64", i386.const("CLOCK_REALTIME_COARSE"), BUF)
    plan = FollowerSync(POLICY).on_call(call, rec, arch=i386)
    assert plan.action is Action.ANSWER and plan.ret == 0
    ((addr, data),) = plan.writes
    assert addr == BUF and int.from_bytes(data[:8], "little") == 1700000000


def test_epoll_events_travel_as_fds_and_come_back_as_the_followers_own_data():
    """lighttpd keeps pointers in epoll_event.data: the leader sends fds, each follower writes the
    data it registered itself for that fd, in its own epoll_event layout (12 bytes on x86, 16 on
    aarch64)."""
    x86, arm = archmod.get("x86_64"), archmod.get("aarch64")
    leader_epoll, follower_epoll = EpollRegistry(), EpollRegistry()
    leader_epoll.on_ctl(4, "EPOLL_CTL_ADD", 7, 0x5500AA)
    follower_epoll.on_ctl(4, "EPOLL_CTL_ADD", 7, 0xBB)
    events = [{"events": FlagSet(frozenset({"EPOLLIN"}), 0), "data": 0x5500AA}]
    rec = through_wire(LeaderSync(POLICY).record(raw_call("x86_64", "epoll_wait", 4, BUF, 8, -1), 1,
                                                 {1: events}, epoll=leader_epoll))
    assert rec.outputs == {1: [[FlagSet(frozenset({"EPOLLIN"}), 0), 7]]}
    plan = FollowerSync(POLICY).on_call(raw_call("aarch64", "epoll_pwait", 4, BUF, 8, -1, 0, 8), rec,
                                        arch=arm, epoll=follower_epoll)
    ((addr, data),) = plan.writes
    assert addr == BUF and len(data) == arm.layouts["epoll_event"].size
    assert int.from_bytes(data[arm.layouts["epoll_event"].fields["data"].offset:], "little") == 0xBB
    assert int.from_bytes(data[:4], "little") == x86.const("EPOLLIN") == arm.const("EPOLLIN")


def test_a_follower_acks_every_sixteenth_record():
    leader, follower = LeaderSync(POLICY), FollowerSync(POLICY)
    acks = []
    for _ in range(32):
        rec = leader.record(raw_call("x86_64", "getpid"), 42)
        acks.append(follower.on_call(raw_call("i386", "getpid"), rec, arch=archmod.get("i386")).ack)
    assert [a for a in acks if a] == [Ack(16), Ack(32)]


def test_getrandom_of_one_word_is_one_word_in_each_isa():
    """glibc's tcache key: getrandom(&key, sizeof key) is 8 bytes on x86_64, 4 on i386."""
    rec = LeaderSync(POLICY).record(raw_call("x86_64", "getrandom", BUF, 8, 1), 8, {0: b"ABCDEFGH"})
    plan = FollowerSync(POLICY).on_call(raw_call("i386", "getrandom", BUF, 4, 1), rec, arch=archmod.get("i386"))
    assert plan.ret == 4 and plan.writes == ((BUF, b"ABCD"),)
    with pytest.raises(Divergence, match="buflen"):
        FollowerSync(POLICY).on_call(raw_call("i386", "getrandom", BUF, 16, 1), rec, arch=archmod.get("i386"))


def test_traits_not_names_decide():
    """What is compared and how a call is handled comes from its spec's traits."""
    assert spec_of("close").traits.follower_runs and spec_of("close").traits.fd_table_only
    assert spec_of("read").traits.blocks and not spec_of("close").traits.blocks
    mprotect = raw_call("x86_64", "mprotect", 0x1000, 4096, 1)
    assert view(mprotect)[1][:2] == [None, None]  # compared_only: prot
    leader = LeaderSync(POLICY)
    assert leader.plan(raw_call("x86_64", "close", 5), "local").wants_ret is False
    assert leader.plan(raw_call("x86_64", "exit_group", 0), "exit").ends
    creat = raw_call("x86_64", "open", PATH, archmod.get("x86_64").const("O_CREAT"), 0o600, mem={PATH: b"f\x00"})
    assert leader.plan(creat, "fd_creating").check is not None  # can change the file system: lockstep
    assert render_view(view(raw_call("x86_64", "write", 1, BUF, 2, mem={BUF: b"hi"})), 2) == 'write(1, "hi", 2) = 2'


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
    assert leader.needs_lockstep(write) and not leader.needs_lockstep(read)
    assert LeaderSync(POLICY, "all").needs_lockstep(read) and not LeaderSync(POLICY, "none").needs_lockstep(write)
    request = through_wire(leader.plan(write, "checked_output").check)
    assert FollowerSync(POLICY).check(raw_call("i386", "write", 1, BUF, 1, mem={BUF: b"x"}), request) == Checked(1)
    with pytest.raises(Divergence):
        FollowerSync(POLICY).check(raw_call("i386", "write", 1, BUF, 1, mem={BUF: b"y"}), request)


def _msghdr_mem(arch: str, base: int, *, data: bytes = b"", iov_len: int = 8, control: bytes = b"",
                controllen: int = 0, name: int = 0, namelen: int = 0) -> dict:
    """A msghdr at `base` with one iovec at base+0x100 (its buffer at base+0x200) and a control
    buffer at base+0x300."""
    from mvx.isa import structs
    hdr = structs.encode(arch, "msghdr", {"msg_name": name, "msg_namelen": namelen, "msg_iov": base + 0x100,
                                          "msg_iovlen": 1, "msg_control": base + 0x300 if controllen else 0,
                                          "msg_controllen": controllen, "msg_flags": 0})
    iov = structs.encode(arch, "iovec", {"iov_base": base + 0x200, "iov_len": iov_len})
    return {base: hdr, base + 0x100: iov, base + 0x200: data.ljust(iov_len, b"\0"),
            base + 0x300: control.ljust(max(controllen, 1), b"\0")}


def test_sendmsg_control_messages_compare_by_type_and_recvmsg_credentials_are_reencoded():
    """cmsghdr is 16 bytes on x86_64, 12 on i386: SCM_RIGHTS compares as fd numbers, credentials are
    written back in the follower's layout; received fds fail closed."""
    from mvx.isa.canonical import decode_outputs, encode_cmsgs
    rights = {"level": "SOL_SOCKET", "type": "SCM_RIGHTS", "data": (0, 1)}
    creds = {"level": "SOL_SOCKET", "type": "SCM_CREDENTIALS", "data": {"pid": 42, "uid": 0, "gid": 0}}
    sends = [raw_call(a, "sendmsg", 3, BUF, 0, mem=_msghdr_mem(
        a, BUF, data=b"fds", iov_len=3, control=b"".join(encode_cmsgs(a, [rights, creds])),
        controllen=len(b"".join(encode_cmsgs(a, [rights, creds]))))) for a in ("x86_64", "i386")]
    assert view(sends[0]) == view(sends[1])
    assert view(sends[0])[1][1]["msg_control"][0] == {"level": "SOL_SOCKET", "type": "SCM_RIGHTS", "data": [0, 1]}
    other = raw_call("i386", "sendmsg", 3, BUF, 0, mem=_msghdr_mem(
        "i386", BUF, data=b"fds", iov_len=3, control=encode_cmsgs("i386", [dict(rights, data=(0, 2))])[0],
        controllen=len(encode_cmsgs("i386", [rights])[0])))
    assert view(sends[0]) != view(other)

    # recvmsg: the leader's (x86_64) after the call, the follower's (i386) before its own
    space = {a: len(encode_cmsgs(a, [creds])[0]) for a in ("x86_64", "i386")}
    assert space == {"x86_64": 32, "i386": 24}
    lead = raw_call("x86_64", "recvmsg", 6, BUF, 0, mem=_msghdr_mem("x86_64", BUF, controllen=space["x86_64"]))
    after = _msghdr_mem("x86_64", BUF, data=b"cred", control=encode_cmsgs("x86_64", [creds])[0],
                        controllen=space["x86_64"])
    lead = decode_outputs(lead, BytesMemory(after), 4)
    rec = through_wire(LeaderSync(POLICY).record(lead, 4, lead.outputs))
    i386 = archmod.get("i386")
    fmem = _msghdr_mem("i386", PATH, controllen=space["i386"])
    follow = raw_call("i386", "recvmsg", 6, PATH, 0, mem=fmem)
    plan = FollowerSync(POLICY).on_call(follow, rec, mem=BytesMemory(fmem), arch=i386)
    writes = dict(plan.writes)
    assert plan.ret == 4 and writes[PATH + 0x300] == encode_cmsgs("i386", [creds])[0]
    assert writes[PATH + 0x200] == b"cred"
    assert writes[PATH + i386.layout("msghdr").field("msg_controllen").offset] == (24).to_bytes(4, "little")

    lead = decode_outputs(raw_call("x86_64", "recvmsg", 6, BUF, 0, mem=after), BytesMemory(
        _msghdr_mem("x86_64", BUF, data=b"fds", control=encode_cmsgs("x86_64", [rights])[0], controllen=24)), 3)
    rec = through_wire(LeaderSync(POLICY).record(lead, 3, lead.outputs))
    with pytest.raises(Divergence, match="SCM_RIGHTS"):
        FollowerSync(POLICY).on_call(follow, rec, mem=BytesMemory(fmem), arch=i386)


def test_every_clock_valued_call_is_replicated_by_the_default_policy():
    """Traits.clock_read/clock_result name every call whose result is a reading of a clock: a variant
    must never see its own (tests/test_callkinds.py runs them)."""
    from mvx.isa import syscalls as S
    clocked = {n for n in S.canonical_names() if S.spec_of(n).traits.clock_read or S.spec_of(n).traits.clock_result}
    assert {"times", "timerfd_gettime", "timer_gettime", "getitimer", "getrusage", "sysinfo",
            "clock_gettime", "gettimeofday", "time", "timerfd_settime", "timer_settime", "setitimer", "alarm"} <= clocked
    assert {n: POLICY.class_of(n) for n in clocked} == {n: "replicated" for n in clocked}
    for raw in ("timerfd_gettime64", "timer_gettime64", "timer_settime64",
                "timerfd_settime64"):
        assert archmod.get("i386").nr(raw) and normalize(RawSyscall("i386", archmod.get("i386").nr(raw))).name in clocked


def test_sysinfo_loads_reencode_per_word_size():
    from mvx.isa import structs
    info = {"uptime": 15000, "loads": (172096, 92416, 71136), "totalram": 6170914, "mem_unit": 4096}
    for a in ("x86_64", "i386"):
        got = structs.decode(a, "sysinfo", structs.encode(a, "sysinfo", info))
        assert got["loads"] == info["loads"] and got["uptime"] == 15000


def test_out_data_is_clamped_to_the_buffer_and_an_empty_source_address_replays():
    """recvfrom(fd, buf, 1, MSG_TRUNC) returns 10: the leader records 1 byte, the follower writes at
    most its own length; an unnamed AF_UNIX sender's address (length 0) is no KeyError."""
    from mvx.isa.canonical import decode_outputs
    lead = raw_call("x86_64", "recvfrom", 4, BUF, 1, 0x20, PATH, PATH + 0x100,
                    mem={PATH + 0x100: (110).to_bytes(4, "little")})
    lead = decode_outputs(lead, BytesMemory({BUF: b"0123456789GGGG", PATH: bytes(110),
                                             PATH + 0x100: (0).to_bytes(4, "little")}), 10)
    assert lead.outputs[1] == b"0"
    rec = through_wire(LeaderSync(POLICY).record(lead, 10, lead.outputs))
    i386 = archmod.get("i386")
    fmem = {BUF: bytes(16), PATH: bytes(110), PATH + 0x100: (110).to_bytes(4, "little")}
    plan = FollowerSync(POLICY).on_call(raw_call("i386", "recvfrom", 4, BUF, 1, 0x20, PATH, PATH + 0x100, mem=fmem),
                                        rec, mem=BytesMemory(fmem), arch=i386)
    assert plan.ret == 10 and (BUF, b"0") in plan.writes
    assert (PATH + 0x100, bytes(4)) in plan.writes and all(len(d) <= 1 for a, d in plan.writes if a == BUF)
