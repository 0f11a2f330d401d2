"""Normalization of raw syscalls of x86_64, i386 and aarch64 to canonical calls."""

from __future__ import annotations

import struct

import pytest

from mvx.core.sync import view
from mvx.isa import arch, structs
from mvx.isa import syscalls as S
from mvx.isa.canonical import BytesMemory, IoVec, RawSyscall, decode_outputs, normalize
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import UNKNOWN, Addr, FlagSet

M64 = (1 << 64) - 1


def nr(a: str, name: str) -> int:
    return arch.get(a).numbers[name]


def call(a: str, name: str, *args, mem=None):
    return normalize(RawSyscall(a, nr(a, name), tuple(x & M64 for x in args)), mem)


def flags(a: str, *names: str) -> int:
    return S.const(a, "|".join(names))


# --- every raw number --------------------------------------------------------------------------------


@pytest.mark.parametrize("a", list(arch.ARCHES))
def test_every_raw_number_normalizes_to_a_known_canonical_name(a):
    known = set(S.canonical_names())
    table = arch.get(a).names
    assert len(table) > 250
    for n, raw_name in table.items():
        c = normalize(RawSyscall(a, n, (0,) * 6))
        assert c.name in known, (a, n, raw_name, c.name)
        assert len(c.args) == c.spec.nargs
        if not S.demux_for(a, raw_name):
            assert c.name == S.canonical_of(a, raw_name)


def test_glibc_startup_syscalls_have_specific_specs():
    for name in ("execve", "brk", "mmap", "munmap", "mprotect", "openat", "close", "read", "pread64", "write",
                 "writev", "readv", "fstatat", "statx", "faccessat", "lseek", "arch_prctl", "set_tid_address",
                 "set_robust_list", "rseq", "prlimit64", "getrandom", "rt_sigaction", "rt_sigprocmask",
                 "rt_sigreturn", "ioctl", "fcntl", "dup", "dup3", "pipe2", "socket", "bind", "listen", "accept4",
                 "connect", "getsockopt", "setsockopt", "getsockname", "getpeername", "sendto", "recvfrom",
                 "sendmsg", "recvmsg", "sendfile", "shutdown", "epoll_create1", "epoll_ctl", "epoll_pwait",
                 "epoll_pwait2", "ppoll", "pselect6", "clock_gettime", "clock_nanosleep", "gettimeofday", "time",
                 "getpid", "getppid", "gettid", "getuid", "uname", "sysinfo", "exit", "exit_group", "kill",
                 "tgkill", "futex", "madvise", "prctl", "wait4", "clone", "clone3", "getcwd", "chdir", "mkdirat",
                 "unlinkat", "renameat2", "readlinkat", "getdents64", "umask", "fchmod", "socketpair",
                 "sched_getaffinity", "sched_yield"):
        assert not S.spec_of(name).generic, name


def test_aliases_point_at_known_canonical_names():
    for table in [S.ALIASES, *S.ARCH_ALIASES.values()]:
        for raw_name, al in table.items():
            assert al.target in S.canonical_names(), raw_name
            spec = S.spec_of(al.target)
            if al.args is not None:
                assert len(al.args) <= spec.nargs, raw_name


# --- aliases -----------------------------------------------------------------------------------------


def test_open_becomes_openat_and_equals_aarch64_openat():
    path = b"/etc/ld.so.cache\0"
    mem = BytesMemory({0x1000: path})
    x = call("x86_64", "open", 0x1000, flags("x86_64", "O_RDONLY", "O_CLOEXEC", "O_DIRECTORY"), 0, mem=mem)
    y = call("aarch64", "openat", -100, 0x1000, flags("aarch64", "O_RDONLY", "O_CLOEXEC", "O_DIRECTORY"), 0,
             mem=mem)
    assert x.name == y.name == "openat"
    assert x.args[0] == "AT_FDCWD" and x.args[1] == b"/etc/ld.so.cache"
    assert x.args[2] == FlagSet(frozenset({"O_RDONLY", "O_CLOEXEC", "O_DIRECTORY"}))
    # O_DIRECTORY has different values on the two ISAs, yet the calls compare equal
    assert S.const("x86_64", "O_DIRECTORY") != S.const("aarch64", "O_DIRECTORY")
    assert view(x) == view(y)
    # and a real flag difference is found, in the flags alone
    z = call("aarch64", "openat", -100, 0x1000, flags("aarch64", "O_RDONLY", "O_CLOEXEC"), 0, mem=mem)
    assert [i for i, (a, b) in enumerate(zip(view(x)[1], view(z)[1])) if a != b] == [2]


def test_i386_o_largefile_is_dropped():
    mem = BytesMemory({0x1000: b"/tmp/x\0"})
    i = call("i386", "openat", -100, 0x1000, flags("i386", "O_RDWR", "O_CREAT", "O_LARGEFILE"), 0o644, mem=mem)
    x = call("x86_64", "openat", -100, 0x1000, flags("x86_64", "O_RDWR", "O_CREAT"), 0o644, mem=mem)
    assert i.args[2] == FlagSet(frozenset({"O_RDWR", "O_CREAT"}))
    assert view(i) == view(x)


def test_creat_is_openat_with_creat_wronly_trunc():
    mem = BytesMemory({0x1000: b"f\0"})
    c = call("x86_64", "creat", 0x1000, 0o600, mem=mem)
    assert c.name == "openat"
    assert c.args[2].names == {"O_CREAT", "O_WRONLY", "O_TRUNC"} and c.args[3] == 0o600


def test_i386_upper_register_bits_are_ignored():
    c = call("i386", "close", 0xDEADBEEF00000003)
    assert c.args == (3,)
    c = call("i386", "lseek", 3, 0xFFFFFFFF, 0)  # off_t -1 in 32 bits
    assert c.args == (3, -1, "SEEK_SET")


def test_socketcall_accept4_is_demultiplexed_from_a_32bit_array():
    a = "i386"
    sin = structs.encode_sockaddr(a, SockAddr("AF_INET", (("sin_port", 40000), ("sin_addr", "127.0.0.1"))))
    mem = BytesMemory({
        0xFFD0: struct.pack("<4I", 3, 0x5000, 0x5100, S.const(a, "SOCK_CLOEXEC")),
        0x5000: bytes(16),
        0x5100: struct.pack("<I", 16),
    })
    c = normalize(RawSyscall(a, nr(a, "socketcall"), (S.const(a, "SYS_ACCEPT4"), 0xFFD0, 0, 0, 0, 0)), mem)
    assert c.name == "accept4" and c.subcall == "accept4" and c.complete
    assert c.args[0] == 3 and c.args[2] == 16 and c.args[3] == FlagSet(frozenset({"SOCK_CLOEXEC"}))
    mem.regions[0x5000] = sin
    done = decode_outputs(c, mem, 4)
    assert done.ret == 4
    assert done.outputs[1] == SockAddr("AF_INET", (("sin_port", 40000), ("sin_addr", "127.0.0.1")))
    # the same call made directly on x86_64 compares equal
    m64 = BytesMemory({0x7000: struct.pack("<I", 16), 0x7100: sin})
    x = call("x86_64", "accept4", 3, 0x7100, 0x7000, S.const("x86_64", "SOCK_CLOEXEC"), mem=m64)
    assert view(c) == view(x)
    after = decode_outputs(x, m64, 4)
    assert (after.ret, after.outputs) == (done.ret, done.outputs)


def test_socketcall_accept_becomes_accept4_with_zero_flags():
    mem = BytesMemory({0x100: struct.pack("<3I", 5, 0, 0)})
    c = normalize(RawSyscall("i386", 102, (S.const("i386", "SYS_ACCEPT"), 0x100)), mem)
    assert c.name == "accept4" and c.subcall == "accept"
    assert c.args == (5, Addr(0), None, FlagSet(frozenset()))  # output pointers stay addresses


def test_socketcall_without_memory_resolves_the_name_only():
    c = normalize(RawSyscall("i386", 102, (S.const("i386", "SYS_SENDTO"), 0x100)))
    assert c.name == "sendto" and not c.complete
    assert all(v is UNKNOWN for v in c.args)


def test_raw_selectors():
    sel = S.raw_selectors("i386", "accept4")
    assert S.RawSelector(nr("i386", "accept4")) in sel
    assert S.RawSelector(102, S.const("i386", "SYS_ACCEPT4")) in sel
    assert S.RawSelector(102, S.const("i386", "SYS_ACCEPT")) in sel
    assert {s.nr for s in S.raw_selectors("x86_64", "epoll_pwait")} == {nr("x86_64", "epoll_wait"),
                                                                        nr("x86_64", "epoll_pwait")}
    assert {s.nr for s in S.raw_selectors("aarch64", "epoll_pwait")} == {nr("aarch64", "epoll_pwait")}
    assert {s.nr for s in S.raw_selectors("i386", "mmap")} == {90, 192}
    assert {s.nr for s in S.raw_selectors("x86_64", "fstatat")} == {
        nr("x86_64", n) for n in ("stat", "fstat", "lstat", "newfstatat")}


def test_epoll_wait_becomes_epoll_pwait_and_events_12_vs_16_bytes_decode_equal():
    evs = [(S.const("x86_64", "EPOLLIN"), 5), (S.const("x86_64", "EPOLLIN") | S.const("x86_64", "EPOLLHUP"), 7)]
    x86 = structs.encode_epoll_events("x86_64", evs)
    arm = structs.encode_epoll_events("aarch64", evs)
    assert len(x86) == 24 and len(arm) == 32
    assert structs.decode_epoll_events("x86_64", x86, 2) == structs.decode_epoll_events("aarch64", arm, 2) == evs
    x = call("x86_64", "epoll_wait", 4, 0x9000, 16, -1)
    y = call("aarch64", "epoll_pwait", 4, 0xA000, 16, -1, 0, 8)
    assert x.name == y.name == "epoll_pwait"
    assert x.args[3] == -1 and x.args[4] is None
    assert view(x) == view(y)
    xo = decode_outputs(x, BytesMemory({0x9000: x86}), 2)
    yo = decode_outputs(y, BytesMemory({0xA000: arm}), 2)
    assert xo.outputs[1][0]["events"] == FlagSet(frozenset({"EPOLLIN"}))
    assert xo.outputs[1][1]["events"] == FlagSet(frozenset({"EPOLLIN", "EPOLLHUP"}))
    assert (xo.ret, xo.outputs) == (yo.ret, yo.outputs)


def test_mmap2_offset_is_in_pages_and_mmap_address_is_not_compared():
    prot = flags("i386", "PROT_READ")
    mp = flags("i386", "MAP_PRIVATE", "MAP_DENYWRITE")
    c = call("i386", "mmap2", 0, 8192, prot, mp, 3, 2)
    assert c.name == "mmap" and c.args[5] == 2 * 4096
    assert c.args[3] == FlagSet(frozenset({"MAP_PRIVATE"}), S.const("i386", "MAP_DENYWRITE"))
    x = call("x86_64", "mmap", 0x7F0000000000, 8192, prot, flags("x86_64", "MAP_PRIVATE"), 3, 8192)
    c2 = call("i386", "mmap2", 0xF7000000, 8192, prot, flags("i386", "MAP_PRIVATE"), 3, 2)
    assert isinstance(x.args[0], Addr)
    assert view(x) == view(c2)  # different addresses, same call
    c3 = call("i386", "mmap2", 0xF7000000, 8192, prot, flags("i386", "MAP_PRIVATE"), 3, 3)
    assert [i for i, (a, b) in enumerate(zip(view(x)[1], view(c3)[1])) if a != b] == [5]  # the offset


def test_old_i386_mmap_reads_its_arguments_from_memory():
    mem = BytesMemory({0x100: struct.pack("<6I", 0, 4096, flags("i386", "PROT_READ"),
                                          flags("i386", "MAP_PRIVATE", "MAP_ANONYMOUS"), 0xFFFFFFFF, 0)})
    c = call("i386", "mmap", 0x100, mem=mem)
    assert c.name == "mmap" and c.args[1] == 4096 and c.args[4] == -1
    assert c.args[3].names == {"MAP_PRIVATE", "MAP_ANONYMOUS"}


def test_views_compare_buffer_bytes_and_ignore_pointers():
    a = call("x86_64", "write", 1, 0x1000, 6, mem=BytesMemory({0x1000: b"hello\n"}))
    b = call("aarch64", "write", 1, 0x2000, 6, mem=BytesMemory({0x2000: b"help!\n"}))
    assert view(a)[1][1] == b"hello\n" and view(b)[1][1] == b"help!\n"
    same = call("aarch64", "write", 1, 0x3000, 6, mem=BytesMemory({0x3000: b"hello\n"}))
    assert view(a) == view(same)  # buffer addresses differ: not compared
    assert view(call("x86_64", "close", 1))[0] == "close"


def test_writev_gathers_8_and_16_byte_iovecs_to_equal_data():
    i = BytesMemory({0x100: structs.encode_iovecs("i386", [(0x200, 3), (0x300, 4)]),
                     0x200: b"GET", 0x300: b" / \n"})
    x = BytesMemory({0x1000: structs.encode_iovecs("x86_64", [(0x2000, 7)]), 0x2000: b"GET / \n"})
    a = call("i386", "writev", 5, 0x100, 2, mem=i)
    b = call("x86_64", "writev", 5, 0x1000, 1, mem=x)
    assert a.args[1] == IoVec((b"GET", b" / \n")) == b.args[1]
    assert [i for i, (x, y) in enumerate(zip(view(a)[1], view(b)[1])) if x != y] == [2]  # iovcnt alone


def test_llseek_offset_and_result_through_pointer():
    c = call("i386", "_llseek", 3, 1, 16, 0x400, 0)
    assert c.name == "lseek" and c.args == (3, (1 << 32) | 16, "SEEK_SET")
    done = decode_outputs(c, BytesMemory({0x400: struct.pack("<q", (1 << 32) | 16)}), 0)
    assert done.ret == (1 << 32) | 16
    assert view(c) == view(call("x86_64", "lseek", 3, (1 << 32) | 16, 0))


def test_pread64_split_offset_on_i386():
    c = call("i386", "pread64", 3, 0x10, 832, 64, 1)
    assert c.args[3] == (1 << 32) | 64
    assert view(c) == view(call("x86_64", "pread64", 3, 0x20, 832, (1 << 32) | 64))


def test_fstat_family_maps_to_fstatat_and_stat64_equals_stat():
    c = call("x86_64", "fstat", 3, 0x500)
    assert c.name == "fstatat" and c.args[0] == 3 and c.args[1] == b"" and c.args[3].names == {"AT_EMPTY_PATH"}
    d = call("i386", "fstat64", 3, 0x500)
    assert d.name == "fstatat" and view(c) == view(d)
    lst = call("i386", "lstat64", 0x600, 0x500, mem=BytesMemory({0x600: b"/x\0"}))
    assert lst.args[:2] == ("AT_FDCWD", b"/x") and lst.args[3].names == {"AT_SYMLINK_NOFOLLOW"}
    st = {"st_dev": 2049, "st_ino": 77, "st_mode": 0o100644, "st_nlink": 1, "st_uid": 0, "st_gid": 0,
          "st_rdev": 0, "st_size": 1234, "st_blksize": 4096, "st_blocks": 8,
          "st_atime": TimeValue(10, 5), "st_mtime": TimeValue(11, 6), "st_ctime": TimeValue(12, 7)}
    o64 = decode_outputs(c, BytesMemory({0x500: structs.encode("x86_64", "stat", st)}), 0)
    o32 = decode_outputs(d, BytesMemory({0x500: structs.encode("i386", "stat64", st)}), 0)
    assert o64.outputs[2] == o32.outputs[2] == st
    arm = decode_outputs(call("aarch64", "fstat", 3, 0x500),
                         BytesMemory({0x500: structs.encode("aarch64", "stat", st)}), 0)
    assert o64.outputs == arm.outputs


def test_time64_calls_compare_equal_to_plain_ones():
    i = call("i386", "clock_gettime64", 1, 0x100)
    x = call("x86_64", "clock_gettime", 1, 0x100)
    assert i.name == x.name == "clock_gettime" and i.args[0] == "CLOCK_MONOTONIC"
    io = decode_outputs(i, BytesMemory({0x100: struct.pack("<qq", 5, 999)}), 0)
    xo = decode_outputs(x, BytesMemory({0x100: struct.pack("<qq", 5, 999)}), 0)
    old = decode_outputs(call("i386", "clock_gettime", 1, 0x100), BytesMemory({0x100: struct.pack("<ii", 5, 999)}), 0)
    assert io.outputs[1] == xo.outputs[1] == old.outputs[1] == TimeValue(5, 999)


def test_clone_argument_order_is_canonical():
    fl = flags("x86_64", "CLONE_VM", "CLONE_SETTLS") | S.const("x86_64", "SIGCHLD")
    x = call("x86_64", "clone", fl, 0x1000, 0x2000, 0x3000, 0x4000)
    y = call("aarch64", "clone", fl, 0x1000, 0x2000, 0x4000, 0x3000)
    assert x.args[1:] == y.args[1:] == (Addr(0x1000), Addr(0x2000), Addr(0x3000), Addr(0x4000))
    assert x.args[0].names == {"CLONE_VM", "CLONE_SETTLS", "SIGCHLD"}
    fork = call("x86_64", "fork")
    assert fork.name == "clone" and fork.args[0].names == {"SIGCHLD"}


def test_dup2_pipe_epoll_create_and_friends():
    assert call("x86_64", "dup2", 3, 1).args == (3, 1, FlagSet(frozenset()))
    assert call("x86_64", "pipe", 0x10).name == "pipe2"
    assert call("x86_64", "epoll_create", 1).args == (FlagSet(frozenset()),)
    assert call("i386", "getuid32").name == "getuid"
    assert call("i386", "fcntl64", 3, S.const("i386", "F_SETFD"), 1).args == (
        3, "F_SETFD", FlagSet(frozenset({"FD_CLOEXEC"})))
    g = call("i386", "ugetrlimit", S.const("i386", "RLIMIT_NOFILE"), 0x10)
    assert g.name == "prlimit64" and g.args[:3] == (0, "RLIMIT_NOFILE", None)
    assert call("x86_64", "access", 0x10).name == "faccessat"
    assert call("x86_64", "nanosleep", 0, 0).args[:2] == ("CLOCK_REALTIME", FlagSet(frozenset()))


def test_rt_sigaction_and_old_sigprocmask_decode_signal_names():
    a = "x86_64"
    act = structs.encode(a, "sigaction", {"sa_handler": 0x401000, "sa_flags": S.const(a, "SA_RESTORER"),
                                          "sa_restorer": 0x402000, "sa_mask": 1 << 14})
    c = call(a, "rt_sigaction", 15, 0x100, 0, 8, mem=BytesMemory({0x100: act}))
    assert c.args[0] == "SIGTERM"
    assert c.args[1]["sa_mask"] == frozenset({"SIGTERM"}) and isinstance(c.args[1]["sa_handler"], Addr)
    old = call("i386", "sigprocmask", 0, 0x100, 0, mem=BytesMemory({0x100: struct.pack("<I", 1 << 1)}))
    new = call("aarch64", "rt_sigprocmask", 0, 0x100, 0, 8, mem=BytesMemory({0x100: struct.pack("<Q", 1 << 1)}))
    assert old.name == "rt_sigprocmask" and old.args[1] == frozenset({"SIGINT"})
    assert view(old) == view(new)


def test_fcntl_lock_structs_follow_the_command_and_the_isa():
    """i386's fcntl64 F_GETLK64 (decoded F_GETLK) reads a struct flock64, its plain F_GETLK a
    struct flock; the OFD commands a flock64; x86_64's flock64 is its flock. F_*OWN_EX point to
    a struct f_owner_ex."""
    lock = {"l_type": 0, "l_whence": 0, "l_start": 1 << 32, "l_len": 10, "l_pid": 0}
    want = {k: v for k, v in lock.items()}
    for a, raw, cmd, layout in (("i386", "fcntl64", "F_GETLK64", "flock64"), ("i386", "fcntl64", "F_GETLK", "flock"),
                                ("i386", "fcntl64", "F_OFD_GETLK", "flock64"), ("x86_64", "fcntl", "F_GETLK", "flock"),
                                ("x86_64", "fcntl", "F_OFD_GETLK", "flock")):
        value = dict(lock, l_start=lock["l_start"] if layout != "flock" or a == "x86_64" else 7)
        c = call(a, raw, 3, S.const(a, cmd), 0x100, mem=BytesMemory({0x100: structs.encode(a, layout, value)}))
        assert c.args[1] == cmd.replace("64", "") and c.args[2] == dict(want, l_start=value["l_start"]), (a, cmd)
    own = call("x86_64", "fcntl", 3, S.const("x86_64", "F_SETOWN_EX"), 0x100,
               mem=BytesMemory({0x100: struct.pack("<ii", 1, 42)}))
    assert own.args[2] == {"type": 1, "pid": 42}
    assert view(call("x86_64", "fcntl", 3, S.const("x86_64", "F_GETOWN_EX"), 0x7ffc0000))[1][2] is None


def test_open_mode_is_compared_only_when_the_flags_create():
    for a in ("x86_64", "i386"):
        assert view(call(a, "open", 0x100, 0, 0xdeadbeef, mem=BytesMemory({0x100: b"/x\0"})))[1][3] is None
        assert view(call(a, "open", 0x100, flags(a, "O_CREAT", "O_WRONLY"), 0o644,
                         mem=BytesMemory({0x100: b"/x\0"})))[1][3] == 0o644
        assert view(call(a, "open", 0x100, flags(a, "O_TMPFILE", "O_RDWR"), 0o600,
                         mem=BytesMemory({0x100: b"/x\0"})))[1][3] == 0o600


def test_ioctl_argument_by_request():
    """FIONBIO reads an int (compared by value), FIONREAD and TCGETS write an int / a termios
    (addresses: not compared), TCSETS reads a termios (compared by fields)."""
    term = structs.encode("x86_64", "termios", {"c_iflag": 1, "c_oflag": 5, "c_cflag": 0xbf, "c_lflag": 0x8a3b,
                                                "c_line": 0, "c_cc": bytes(range(19))})
    views = {}
    for a, base in (("x86_64", 0x7ffc0000), ("i386", 0xffd00000)):
        mem = BytesMemory({base: (1).to_bytes(4, "little") + bytes(60), base + 0x100: term})
        views[a] = [view(call(a, "ioctl", 3, S.const(a, req), base + off, mem=mem))
                    for req, off in (("FIONBIO", 0), ("FIONREAD", 0), ("TCGETS", 0), ("TCSETS", 0x100))]
    assert views["x86_64"] == views["i386"]
    assert [v[1][2] for v in views["x86_64"]][:3] == [1, None, None]
    assert views["x86_64"][3][1][2]["c_lflag"] == 0x8a3b
