"""strace-like rendering of canonical calls."""

from __future__ import annotations

import struct

from mvx.isa import structs
from mvx.isa import syscalls as S
from mvx.isa.canonical import BytesMemory, RawSyscall, decode_outputs, normalize
from mvx.isa.render import escape, render
from mvx.isa.structs import SockAddr

M64 = (1 << 64) - 1


def call(a, name, *args, mem=None):
    from mvx.isa import arch

    return normalize(RawSyscall(a, arch.get(a).numbers[name], tuple(x & M64 for x in args)), mem)


def test_openat_with_at_fdcwd_and_flags():
    mem = BytesMemory({0x1000: b"/etc/ld.so.cache\0"})
    for a, name, args in [("x86_64", "openat", (-100, 0x1000, S.const("x86_64", "O_RDONLY|O_CLOEXEC"), 0)),
                          ("x86_64", "open", (0x1000, S.const("x86_64", "O_RDONLY|O_CLOEXEC"), 0)),
                          ("i386", "openat", (-100, 0x1000, S.const("i386", "O_RDONLY|O_CLOEXEC|O_LARGEFILE"), 0)),
                          ("aarch64", "openat", (-100, 0x1000, S.const("aarch64", "O_RDONLY|O_CLOEXEC"), 0))]:
        c = call(a, name, *args, mem=mem)
        assert render(c, 3) == 'openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3', a


def test_openat_mode_shown_with_o_creat_and_errors():
    mem = BytesMemory({0x1000: b"/tmp/f\0"})
    c = call("x86_64", "openat", -100, 0x1000, S.const("x86_64", "O_WRONLY|O_CREAT|O_TRUNC"), 0o644, mem=mem)
    assert render(c, 4) == 'openat(AT_FDCWD, "/tmp/f", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4'
    c = call("x86_64", "openat", -100, 0x1000, 0, 0, mem=mem)
    assert render(c, -2) == 'openat(AT_FDCWD, "/tmp/f", O_RDONLY) = -1 ENOENT (No such file or directory)'
    assert render(c, -1, errno_name="EPERM").endswith("= -1 EPERM (Operation not permitted)")


def test_read_output_buffer_truncated_at_32_bytes():
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(824)
    c = call("x86_64", "read", 3, 0x2000, 832)
    assert render(c) == "read(3, 0x2000, 832) = ?"
    done = decode_outputs(c, BytesMemory({0x2000: elf}), 832)
    line = render(done)
    assert line.startswith('read(3, "\\x7fELF\\x02\\x01\\x01\\x00')
    assert line.endswith('"..., 832) = 832')
    assert render(done, strsize=4) == 'read(3, "\\x7fELF"..., 832) = 832'


def test_write_escapes():
    c = call("aarch64", "write", 1, 0x10, 8, mem=BytesMemory({0x10: b'hi\n\t"\\\x00\xff'}))
    assert render(c, 8) == 'write(1, "hi\\n\\t\\"\\\\\\x00\\xff", 8) = 8'
    assert escape(b"hi\n") == '"hi\\n"'


def test_accept4_with_sockaddr_and_socklen():
    a = "i386"
    sin = structs.encode_sockaddr(a, SockAddr("AF_INET", (("sin_port", 40000), ("sin_addr", "127.0.0.1"))))
    mem = BytesMemory({0xFF00: struct.pack("<4I", 3, 0x5000, 0x5100, S.const(a, "SOCK_CLOEXEC")),
                       0x5000: sin, 0x5100: struct.pack("<I", 16)})
    c = normalize(RawSyscall(a, 102, (18, 0xFF00)), mem)
    assert render(decode_outputs(c, mem, 4)) == (
        'accept4(3, {sa_family=AF_INET, sin_port=htons(40000), sin_addr=inet_addr("127.0.0.1")}, [16], '
        "SOCK_CLOEXEC) = 4")


def test_epoll_pwait_events():
    a = "aarch64"
    evs = structs.encode_epoll_events(a, [(S.const(a, "EPOLLIN"), 5)])
    c = call(a, "epoll_pwait", 4, 0x100, 16, -1, 0, 8)
    assert render(decode_outputs(c, BytesMemory({0x100: evs}), 1)) == (
        "epoll_pwait(4, [{events=EPOLLIN, data=0x5}], 16, -1, NULL, 8) = 1")
    x = call("x86_64", "epoll_wait", 4, 0x100, 16, 500)
    assert render(x, -4) == "epoll_pwait(4, 0x100, 16, 500, NULL, 8) = -1 EINTR (Interrupted system call)"


def test_mmap_clone_and_fstat():
    a = "x86_64"
    c = call(a, "mmap", 0, 8192, S.const(a, "PROT_READ"), S.const(a, "MAP_PRIVATE|MAP_ANONYMOUS"), -1, 0)
    assert render(c, 0x7F0000001000) == (
        "mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000001000")
    fl = S.const(a, "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID") | 17
    assert render(call(a, "clone", fl, 0, 0, 0x9000, 0), 42) == (
        "clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, NULL, NULL, 0x9000, NULL) = 42")
    st = structs.encode(a, "stat", {"st_mode": 0o100644, "st_size": 27003})
    f = decode_outputs(call(a, "fstat", 3, 0x100), BytesMemory({0x100: st}), 0)
    assert render(f) == 'fstatat(3, "", {st_mode=S_IFREG|0644, st_size=27003, ...}, AT_EMPTY_PATH) = 0'


def test_writev_and_sigprocmask():
    a = "x86_64"
    mem = BytesMemory({0x100: structs.encode_iovecs(a, [(0x200, 2), (0x300, 1)]), 0x200: b"hi", 0x300: b"\n"})
    assert render(call(a, "writev", 1, 0x100, 2, mem=mem), 3) == (
        'writev(1, [{iov_base="hi", iov_len=2}, {iov_base="\\n", iov_len=1}], 2) = 3')
    mem = BytesMemory({0x100: struct.pack("<Q", (1 << 1) | (1 << 14))})
    assert render(call(a, "rt_sigprocmask", 0, 0x100, 0, 8, mem=mem), 0) == (
        "rt_sigprocmask(SIG_BLOCK, [INT TERM], NULL, 8) = 0")
