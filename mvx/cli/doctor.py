"""`mvx doctor`: what mvx needs of this machine, one line each: what is there, and what a missing
piece disables.

Kernel features are probed by using them the way mvx does, on a throwaway child process: a child
traced with PTRACE_TRACEME that installs a SECCOMP_RET_TRACE filter; a child whose seccomp filter has
a listener (SECCOMP_FILTER_FLAG_NEW_LISTENER), whose notification is answered with ADDFD; an fd taken
from a child with pidfd_getfd and compared with kcmp; a child's memory read and written with
process_vm_readv/writev; a tiny i386 program run; a child that makes the namespaces a follower's world
is made of. Each probe is bounded by a timeout, and every child is killed and reaped before the next
probe starts (they also die with mvx doctor: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import argparse
import ctypes
import errno as errno_mod
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from mvx import MvxError

ROOT = Path(__file__).resolve().parents[2]  # the checkout (variants/, build/, scripts/)
TIMEOUT = 5.0  # seconds, per probe
MAGIC_FD = 0x7EAD  # the probes' trapped call is dup(MAGIC_FD): nothing else makes it

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER = 1, 1 << 3
SECCOMP_RET_ALLOW, SECCOMP_RET_TRACE, SECCOMP_RET_USER_NOTIF = 0x7FFF0000, 0x7FF00000, 0x7FC00000
SECCOMP_ADDFD_FLAG_SEND = 1 << 1
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1 << 0
# <linux/seccomp.h>: _IOWR('!', 0, struct seccomp_notif), _IOWR('!', 1, struct seccomp_notif_resp),
# _IOW('!', 3, struct seccomp_notif_addfd), _IOW('!', 4, __u64): the same numbers on x86_64 and aarch64
NOTIF_RECV, NOTIF_SEND, NOTIF_ADDFD, NOTIF_SET_FLAGS = 0xC0502100, 0xC0182101, 0x40182103, 0x40082104
PTRACE_TRACEME, PTRACE_CONT, PTRACE_SETOPTIONS, PTRACE_GET_SYSCALL_INFO = 0, 7, 0x4200, 0x420E
PTRACE_O_TRACESYSGOOD, PTRACE_O_TRACESECCOMP, PTRACE_O_EXITKILL = 0x1, 0x80, 0x100000
PTRACE_EVENT_SECCOMP, PTRACE_SYSCALL_INFO_SECCOMP = 7, 3
KCMP_FILE = 0
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 0x4000, 1 << 18
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.process_vm_readv.restype = _libc.process_vm_writev.restype = ctypes.c_ssize_t


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


@dataclass
class Check:
    name: str
    ok: bool | None  # None: does not apply to this machine
    required: bool  # needed by the default run (`mvx run`: hybrid mode, followers in worlds of their own)
    detail: str = ""  # what was found, or what its absence disables

    @property
    def status(self) -> str:
        return "n/a" if self.ok is None else "ok" if self.ok else "missing"

    def line(self) -> str:
        name = self.name if self.ok is not False or self.required else f"{self.name} (optional)"
        return f"{self.status:<8} {name}" + (f": {self.detail}" if self.detail else "")


# ---- plumbing --------------------------------------------------------------------------------------


def _host():
    from mvx.isa import arch

    return arch.get(os.uname().machine)


def _sys(name: str, *args) -> tuple[int, int]:
    """A raw syscall of the host by name: (result, errno)."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = _libc.syscall(ctypes.c_long(_host().nr(name)), *conv)
    return r, (ctypes.get_errno() if r < 0 else 0)


def _err(e: int) -> str:
    return os.strerror(e) if e else "failed"


def _filter(action: int) -> _SockFprog:
    """A seccomp filter: `action` for the host's dup(MAGIC_FD), every other call allowed."""
    host = _host()
    insns = [
        (0x20, 0, 0, 4),  # ld [arch]
        (0x15, 0, 5, host.audit_arch),
        (0x20, 0, 0, 0),  # ld [nr]
        (0x15, 0, 3, host.nr("dup")),
        (0x20, 0, 0, 16),  # ld [args[0]] (low word)
        (0x15, 0, 1, MAGIC_FD),
        (0x06, 0, 0, action),
        (0x06, 0, 0, SECCOMP_RET_ALLOW),
    ]
    arr = (_SockFilter * len(insns))(*[_SockFilter(*i) for i in insns])
    prog = _SockFprog(len(insns), arr)
    prog._keep = arr
    return prog


def _install(action: int, flags: int = 0) -> tuple[int, int]:
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # the child's own: needed without CAP_SYS_ADMIN
    prog = _filter(action)
    return _sys("seccomp", SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))


class _Child:
    """A forked child running `body()` (its exit code; an exception is 99). Leaving the `with`
    kills it if it still runs, and reaps it."""

    def __init__(self, body) -> None:
        self.pid = os.fork()
        if self.pid == 0:
            code = 99
            try:
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                code = body()
            except BaseException:  # noqa: BLE001 - nothing of the child may escape into the doctor
                code = 99
            finally:
                os._exit(code)
        self.reaped = False

    def wait(self, timeout: float = TIMEOUT) -> int | None:
        """The next wait status (an exit, or a stop while traced); None when none came in time."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.reaped = os.WIFEXITED(status) or os.WIFSIGNALED(status)
                return status
            if time.monotonic() > deadline:
                return None
            time.sleep(0.002)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while self.wait() is not None and not self.reaped:
                pass


class _Fds:
    """The probe's own fds: closed once, all of them at the end (the child closes its copies itself)."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.open |= {r, w}
        return r, w

    def adopt(self, fd: int) -> int:
        self.open.add(fd)
        return fd

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        for fd in list(self.open):
            self.close(fd)


def _read(fd: int, timeout: float = TIMEOUT, size: int = 512) -> bytes:
    """What `fd` gives within `timeout` (b"" at EOF or when nothing came)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, size) if ready else b""


def _exit_code(status: int | None) -> int | None:
    return os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None


def _describe(status: int | None) -> str:
    if status is None:
        return f"no answer within {TIMEOUT:g} s"
    if os.WIFSIGNALED(status):
        return f"the probe was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    if os.WIFEXITED(status):
        return f"the probe exited with status {os.WEXITSTATUS(status)}"
    return f"the probe stopped ({signal.Signals(os.WSTOPSIG(status)).name})"


# ---- probes ------------------------------------------------------------------------------------------


def check_native() -> list[Check]:
    try:
        from mvx.mechanics import native
    except (MvxError, ImportError, OSError) as exc:
        return [Check("native module", False, True, f"{exc}: nothing runs without it (the stop loop is C; "
                      "it needs gcc, python3-dev and cffi: scripts/setup.sh)")]
    path = Path(native._native.__file__)
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    return [Check("native module", True, True, str(shown))]


def check_tls() -> list[Check]:
    """OpenSSL 3, looked up by the native module at run time: the two-node channel's TLS."""
    try:
        from mvx.mechanics.native import ffi, lib
    except (MvxError, ImportError, OSError):
        return [Check("OpenSSL (two-node TLS)", False, False, "not probed (no native module)")]
    err = ffi.new("char[]", 160)
    if not lib.mvx_tls_available(err, 160):
        return [Check("OpenSSL (two-node TLS)", False, False, f"{ffi.string(err).decode()}: `mvx leader` and "
                      "`mvx follower` cannot use --keys (apt-get install libssl3)")]
    return [Check("OpenSSL (two-node TLS)", True, False, "libssl.so.3")]


def check_packages() -> list[Check]:
    import importlib

    missing = []
    for name in ("trio", "xxhash", "pyseccomp"):
        try:
            module = importlib.import_module(name)
            if name == "pyseccomp":  # it is a wrapper: libseccomp itself must load and build a filter
                module.SyscallFilter(module.ALLOW)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
            missing.append(f"{name} ({exc})")
    if missing:
        checks = [Check("Python packages", False, True, f"{', '.join(missing)}: monitors cannot run "
                        "(pip install -e .; scripts/setup.sh)")]
    else:
        checks = [Check("Python packages", True, True, "trio, xxhash, pyseccomp (libseccomp)")]
    try:  # (optional: mvx runs without it, and so does this doctor)
        from ptrace.binding import ptrace_getregs  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
        return [*checks, Check("python-ptrace", False, False, f"{exc}: divergence reports show no registers "
                               "(pip install python-ptrace; scripts/setup.sh)")]
    return [*checks, Check("python-ptrace", True, False, "a diverged variant's registers in the report")]


def _ptrace_scope() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None


def check_ptrace() -> list[Check]:
    """A child traced with PTRACE_TRACEME stops, is given mvx's options, installs a RET_TRACE filter
    and makes the trapped call: the seccomp stop must come, with PTRACE_GET_SYSCALL_INFO's view."""
    scope = _ptrace_scope()
    said = "no Yama LSM" if scope is None else f"kernel.yama.ptrace_scope = {scope}"
    fds = _Fds()
    rep_r, rep_w = fds.pipe()

    def body() -> int:
        os.close(rep_r)
        if _libc.ptrace(PTRACE_TRACEME, 0, None, None) < 0:
            os.write(rep_w, f"PTRACE_TRACEME: {_err(ctypes.get_errno())}".encode())
            return 1
        os.kill(os.getpid(), signal.SIGSTOP)
        r, e = _install(SECCOMP_RET_TRACE)
        if r < 0:
            os.write(rep_w, f"seccomp(SECCOMP_SET_MODE_FILTER): {_err(e)}".encode())
            return 2
        r, e = _sys("dup", MAGIC_FD)
        return 0 if r < 0 and e == errno_mod.EBADF else 3

    def ptrace_missing(why: str) -> Check:
        hint = {2: " (kernel.yama.ptrace_scope = 2: only with CAP_SYS_PTRACE; run as root or set it to 1)",
                3: " (kernel.yama.ptrace_scope = 3: ptrace is off until a reboot)"}.get(scope, f" ({said})")
        return Check("ptrace", False, True, f"{why}{hint}: no mode can run (every variant is traced)")

    filters_unknown = Check("seccomp filters", False, True, "not probed (no ptrace)")
    with fds, _Child(body) as child:
        fds.close(rep_w)
        status = child.wait()
        if status is None or not os.WIFSTOPPED(status):
            why = _read(rep_r, 0.5).decode(errors="replace") if status is not None else ""
            return [ptrace_missing(why or _describe(status)), filters_unknown]
        opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL
        if _libc.ptrace(PTRACE_SETOPTIONS, child.pid, None, ctypes.c_void_p(opts)) < 0:
            return [ptrace_missing(f"PTRACE_SETOPTIONS: {_err(ctypes.get_errno())}"), filters_unknown]
        info = ctypes.create_string_buffer(88)
        if _libc.ptrace(PTRACE_GET_SYSCALL_INFO, child.pid, ctypes.c_void_p(88), info) < 0:
            return [ptrace_missing(f"PTRACE_GET_SYSCALL_INFO: {_err(ctypes.get_errno())} (Linux 5.3+)"),
                    filters_unknown]
        _libc.ptrace(PTRACE_CONT, child.pid, None, None)
        status = child.wait()
        if _exit_code(status) == 2:
            why = _read(rep_r, 0.5).decode(errors="replace")
            return [Check("ptrace", True, True, said),
                    Check("seccomp filters", False, True, f"{why}: --mode seccomp and hybrid (the default) "
                          "cannot run; --mode ptrace does not use them")]
        if status is None or status >> 8 != signal.SIGTRAP | PTRACE_EVENT_SECCOMP << 8:
            return [Check("ptrace", True, True, said),
                    Check("seccomp filters", False, True, f"no SECCOMP_RET_TRACE stop ({_describe(status)}): "
                          "--mode seccomp and hybrid (the default) cannot run; --mode ptrace does not use them")]
        got = _libc.ptrace(PTRACE_GET_SYSCALL_INFO, child.pid, ctypes.c_void_p(88), info)
        op, nr, arg0 = info.raw[0], *struct.unpack_from("<QQ", info.raw, 24)
        if got < 0 or op != PTRACE_SYSCALL_INFO_SECCOMP or nr != _host().nr("dup") or arg0 != MAGIC_FD:
            return [Check("ptrace", False, True, "PTRACE_GET_SYSCALL_INFO does not show the trapped call "
                          "at its seccomp stop: no mode can run"), filters_unknown]
        _libc.ptrace(PTRACE_CONT, child.pid, None, None)
        status = child.wait()
        if _exit_code(status) != 0:
            return [Check("ptrace", True, True, said),
                    Check("seccomp filters", False, True, f"the traced call did not go on ({_describe(status)})")]
        return [Check("ptrace", True, True, f"{said}; PTRACE_TRACEME, PTRACE_GET_SYSCALL_INFO"),
                Check("seccomp filters", True, True, "SECCOMP_RET_TRACE")]


def check_notify() -> list[Check]:
    """A child installs a filter with a listener (RET_USER_NOTIF for dup(MAGIC_FD)), hands the
    listener over (SCM_RIGHTS) and makes the call. Here: SYNC_WAKE_UP asked for, the notification
    received, and answered with ADDFD (SEND) of a pipe the child then writes into."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fds = _Fds()
    pipe_r, pipe_w = fds.pipe()
    no_notify = "hybrid mode (the default) cannot run; --mode seccomp and ptrace do not use it (Linux 5.0+)"
    no_addfd = ("hybrid mode cannot put an fd into a variant (the leader's accept4, a follower's replayed "
                "sockets); --mode seccomp and ptrace do not use it (Linux 5.14+)")
    no_sync = ("hybrid notifications wake the monitor and its variant through the scheduler: slower round "
               "trips (Linux 6.6+)")

    def body() -> int:
        ours.close()
        os.close(pipe_r)
        os.close(pipe_w)
        r, e = _install(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER)
        if r < 0:
            theirs.sendall(f"seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER): {_err(e)}".encode())
            return 1
        socket.send_fds(theirs, [b"L"], [r])
        os.close(r)
        fd, e = _sys("dup", MAGIC_FD)  # answered by ADDFD: fd is the pipe's write end
        if fd < 0:
            return 2
        os.write(fd, b"x")
        return 0

    sync = Check("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP", False, False, "not probed (no seccomp user notification)")

    def notify_missing(why: str) -> list[Check]:
        return [Check("seccomp user notification", False, True, f"{why}: {no_notify}"),
                Check("ADDFD", False, True, "not probed (no seccomp user notification)"), sync]

    with ours, fds, _Child(body) as child:
        theirs.close()
        ours.settimeout(TIMEOUT)
        try:
            msg, fds_got, _, _ = socket.recv_fds(ours, 512, 1)
        except OSError as exc:
            return notify_missing(f"no listener from the probe ({exc})")
        if not fds_got:
            return notify_missing(msg.decode(errors="replace") or _describe(child.wait(0.5)))
        listener = fds.adopt(fds_got[0])
        try:
            fcntl.ioctl(listener, NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
            sync = Check("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP", True, False)
        except OSError as exc:
            sync = Check("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP", False, False,
                         f"SECCOMP_IOCTL_NOTIF_SET_FLAGS: {exc.strerror}: {no_sync}")
        if not select.select([listener], [], [], TIMEOUT)[0]:
            return notify_missing("no notification came")
        notif = bytearray(80)
        try:
            fcntl.ioctl(listener, NOTIF_RECV, notif)
        except OSError as exc:
            return notify_missing(f"SECCOMP_IOCTL_NOTIF_RECV: {exc.strerror}")
        notif_id, = struct.unpack_from("<Q", notif, 0)
        nr, audit, _ip, arg0 = struct.unpack_from("<iIQQ", notif, 16)
        if nr != _host().nr("dup") or audit != _host().audit_arch or arg0 != MAGIC_FD:
            return notify_missing("the notification is not the trapped call")
        notified = Check("seccomp user notification", True, True)
        addfd = bytearray(struct.pack("<QIIII", notif_id, SECCOMP_ADDFD_FLAG_SEND, pipe_w, 0, 0))
        try:
            fcntl.ioctl(listener, NOTIF_ADDFD, addfd)
        except OSError as exc:
            resp = bytearray(struct.pack("<QqiI", notif_id, 0, -errno_mod.ENOSYS, 0))
            try:
                fcntl.ioctl(listener, NOTIF_SEND, resp)
            except OSError:
                pass
            return [notified, Check("ADDFD", False, True, f"SECCOMP_IOCTL_NOTIF_ADDFD (SEND): {exc.strerror}: "
                                    f"{no_addfd}"), sync]
        fds.close(pipe_w)
        if _read(pipe_r) != b"x" or _exit_code(child.wait()) != 0:
            return [notified, Check("ADDFD", False, True, f"the fd did not reach the probe: {no_addfd}"), sync]
        return [notified, Check("ADDFD", True, True, "with SECCOMP_ADDFD_FLAG_SEND"), sync]


def check_fds() -> list[Check]:
    """pidfd_open + pidfd_getfd on a pipe the child made after the fork (its inode must match);
    kcmp between an fd the child inherited and ours, and between two different files."""
    fds = _Fds()
    rep_r, rep_w = fds.pipe()
    go_r, go_w = fds.pipe()
    no_getfd = ("monitors cannot duplicate a variant's fds: hybrid mode (the default) cannot start (its "
                "listener is taken from the variant), and in every mode a follower cannot take the fds the "
                "leader made (accept4, socket) nor a sendfile be checked (Linux 5.6+)")
    no_kcmp = ("a monitor cannot tell whether its duplicate is still the variant's fd: it takes the fd again "
               "at every use and the C fast path leaves those calls to Python (slower; CONFIG_KCMP)")

    def body() -> int:
        os.close(rep_r)
        os.close(go_w)
        a, _b = os.pipe()
        os.write(rep_w, f"{a} {os.fstat(a).st_ino}\n".encode())
        _read(go_r, TIMEOUT * 2)  # EOF: the parent is done
        return 0

    with fds, _Child(body) as child:
        fds.close(rep_w)
        line = _read(rep_r).decode().split()
        if len(line) != 2:
            probe_failed = f"the probe did not start ({_describe(child.wait(0.5))})"
            return [Check("pidfd_getfd", False, True, probe_failed), Check("kcmp", False, False, probe_failed)]
        their_fd, ino = map(int, line)
        pidfd, e = _sys("pidfd_open", child.pid, 0)
        if pidfd < 0:
            getfd = Check("pidfd_getfd", False, True, f"pidfd_open: {_err(e)}: {no_getfd}")
        else:
            mine, e = _sys("pidfd_getfd", pidfd, their_fd, 0)
            os.close(pidfd)
            if mine < 0:
                getfd = Check("pidfd_getfd", False, True, f"{_err(e)}: {no_getfd}")
            else:
                same = os.fstat(mine).st_ino == ino
                os.close(mine)
                getfd = (Check("pidfd_getfd", True, True) if same else
                         Check("pidfd_getfd", False, True, f"it gave another file: {no_getfd}"))
        same, e1 = _sys("kcmp", child.pid, os.getpid(), KCMP_FILE, go_r, go_r)
        other, e2 = _sys("kcmp", child.pid, os.getpid(), KCMP_FILE, their_fd, go_r)
        if same < 0 or other < 0:
            kcmp = Check("kcmp", False, False, f"{_err(e1 or e2)}: {no_kcmp}")
        elif same != 0 or other == 0:
            kcmp = Check("kcmp", False, False, f"it does not tell files apart: {no_kcmp}")
        else:
            kcmp = Check("kcmp", True, False)
        return [getfd, kcmp]


def check_memory() -> list[Check]:
    """process_vm_readv of what the child wrote into its copy of a buffer, process_vm_writev of an
    answer the child checks."""
    size = 32
    buf = ctypes.create_string_buffer(size)
    addr = ctypes.addressof(buf)
    theirs, mine = b"written by the child".ljust(size, b"\0"), b"written by mvx doctor".ljust(size, b"\0")
    fds = _Fds()
    rep_r, rep_w = fds.pipe()
    go_r, go_w = fds.pipe()
    no_mem = "no mode can read or write a variant's memory (call arguments, replayed data)"

    def body() -> int:
        os.close(rep_r)
        os.close(go_w)
        ctypes.memmove(addr, theirs, size)
        os.write(rep_w, b"r")
        _read(go_r, TIMEOUT * 2)
        return 0 if ctypes.string_at(addr, size) == mine else 1

    with fds, _Child(body) as child:
        fds.close(rep_w)
        if _read(rep_r) != b"r":
            return [Check("process_vm_readv", False, True, f"the probe did not start ({_describe(child.wait(0.5))})")]
        local = ctypes.create_string_buffer(size)
        liov, riov = _Iovec(ctypes.addressof(local), size), _Iovec(addr, size)
        n = _libc.process_vm_readv(child.pid, ctypes.byref(liov), 1, ctypes.byref(riov), 1, 0)
        if n < 0:
            return [Check("process_vm_readv", False, True, f"{_err(ctypes.get_errno())}: {no_mem}")]
        if local.raw != theirs:
            return [Check("process_vm_readv", False, True, f"it read other bytes: {no_mem}")]
        src = ctypes.create_string_buffer(mine, size)
        wiov = _Iovec(ctypes.addressof(src), size)
        n = _libc.process_vm_writev(child.pid, ctypes.byref(wiov), 1, ctypes.byref(riov), 1, 0)
        if n < 0:
            return [Check("process_vm_readv", False, True, f"process_vm_writev: {_err(ctypes.get_errno())}: "
                          f"{no_mem}")]
        fds.close(go_w)
        if _exit_code(child.wait()) != 0:
            return [Check("process_vm_readv", False, True, f"process_vm_writev wrote other bytes: {no_mem}")]
        return [Check("process_vm_readv", True, True, "process_vm_writev too")]


def _i386_exit42() -> bytes:
    """A static i386 ELF program of one page: exit(42) through int 0x80."""
    code = bytes([0xB8, 1, 0, 0, 0, 0xBB, 42, 0, 0, 0, 0xCD, 0x80])  # mov eax,1; mov ebx,42; int 0x80
    base, ehsize, phsize = 0x08048000, 52, 32
    total = ehsize + phsize + len(code)
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)  # ELFCLASS32, little-endian, version 1
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, base + ehsize + phsize, ehsize, 0, 0, ehsize, phsize,
                               1, 0, 0, 0)  # ET_EXEC, EM_386
    phdr = struct.pack("<IIIIIIII", 1, 0, base, base, total, total, 5, 0x1000)  # PT_LOAD, R+X
    return ehdr + phdr + code


def check_ia32() -> list[Check]:
    if _host().name != "x86_64":
        return [Check("IA32 emulation", None, False, f"i386 variants run on x86_64 machines only (this one is "
                      f"{_host().name})")]
    no_ia32 = ("i386 variants cannot run, so this machine has no second ISA for `mvx run` (CONFIG_IA32_EMULATION, "
               "or ia32_emulation=1 on the kernel command line)")
    program = _i386_exit42()

    def run(path: str, fds=()) -> int:
        return subprocess.run([path], pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=TIMEOUT, check=False).returncode

    try:
        try:
            fd = os.memfd_create("mvx-doctor-i386")
            try:
                os.write(fd, program)
                code = run(f"/proc/self/fd/{fd}", (fd,))
            finally:
                os.close(fd)
        except PermissionError:  # vm.memfd_noexec: a file then
            with tempfile.TemporaryDirectory(prefix="mvx-doctor-") as tmp:
                path = Path(tmp, "i386-exit42")
                path.write_bytes(program)
                path.chmod(0o755)
                code = run(str(path))
    except OSError as exc:
        return [Check("IA32 emulation", False, True, f"an i386 program does not run ({exc.strerror}): {no_ia32}")]
    except subprocess.TimeoutExpired:
        return [Check("IA32 emulation", False, True, f"an i386 program did not end within {TIMEOUT:g} s: {no_ia32}")]
    if code != 42:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if code == -signal.SIGSYS:
            how += ": a seccomp filter without the i386 ABI?"
        return [Check("IA32 emulation", False, True, f"an i386 program did not run right ({how}): {no_ia32}")]
    return [Check("IA32 emulation", True, True, "an i386 program ran")]


def check_world() -> list[Check]:
    """What a follower's world is made of (mvx_native.c, enter_world): new pid, mount and network
    namespaces, loopback up, a tmpfs with an overlay of / on it, and clone3 with set_tid for the
    leader's pid; all inside a child, gone with it."""
    no_world = ("followers cannot get a world of their own (pid, mount and network namespaces, overlays of the "
                "files): `mvx run` and `mvx follower` stop at the start; `mvx leader` and `mvx trace` still "
                "work (run as root: mvx makes these namespaces without a user namespace)")
    fds = _Fds()
    rep_r, rep_w = fds.pipe()

    def body(tmp: str) -> int:
        os.close(rep_r)

        def fail(step: str, e: int) -> int:
            os.write(rep_w, f"{step}: {_err(e)}".encode())
            return 1

        if _libc.unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET) < 0:
            return fail("unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWNET)", ctypes.get_errno())
        if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) < 0:
            return fail("making the mounts private", ctypes.get_errno())
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                got = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
                flags = struct.unpack_from("H", got, 16)[0] | IFF_UP
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags))
        except OSError as exc:
            return fail("bringing up loopback in a network namespace", exc.errno or 0)
        if _libc.mount(b"mvx-doctor", tmp.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0700") < 0:
            return fail("mounting a tmpfs", ctypes.get_errno())
        for d in ("u", "w", "m"):
            os.mkdir(os.path.join(tmp, d))
        opts = f"lowerdir=/,upperdir={tmp}/u,workdir={tmp}/w".encode()
        if _libc.mount(b"mvx-doctor", f"{tmp}/m".encode(), b"overlay", 0, opts) < 0:
            return fail("mounting an overlay of /", ctypes.get_errno())
        Path(tmp, "m", "mvx-doctor-probe").write_bytes(b"x")
        if not Path(tmp, "u", "mvx-doctor-probe").exists():
            return fail("writing through the overlay", errno_mod.EIO)
        pid1 = os.fork()  # pid 1 of the new pid namespace
        if pid1 == 0:
            code = 1
            try:
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                want = ctypes.c_int(4242)
                args = (ctypes.c_uint64 * 11)(0, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, ctypes.addressof(want), 1, 0)
                c, e = _sys("clone3", ctypes.byref(args), ctypes.sizeof(args))
                if c == 0:
                    os._exit(0)
                if c < 0:
                    fail("clone3 with set_tid", e)
                else:
                    os.waitpid(c, 0)
                    code = 0 if c == 4242 else fail("clone3 with set_tid", errno_mod.ESRCH)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid1, 0)
        if _exit_code(status) == 0:
            return 0
        if _exit_code(status) is None:  # killed: it could not say why
            os.write(rep_w, f"pid 1 of a new pid namespace: {_describe(status)}".encode())
        return 1

    with tempfile.TemporaryDirectory(prefix="mvx-doctor-") as tmp, fds, _Child(lambda: body(tmp)) as child:
        fds.close(rep_w)
        status = child.wait()
        if _exit_code(status) == 0:
            root = "root" if os.geteuid() == 0 else "CAP_SYS_ADMIN"
            return [Check("followers' namespaces", True, True,
                          f"{root}: pid, mount and network namespaces, overlayfs, clone3 set_tid")]
        why = _read(rep_r, 0.5).decode(errors="replace") or _describe(status)
        return [Check("followers' namespaces", False, True, f"{why}: {no_world}")]


def check_arm64() -> list[Check]:
    host = _host().name
    if host == "aarch64":
        return [Check("aarch64 route", True, False, "this machine is arm64: aarch64 variants run here")]
    node = Path(os.environ.get("ARM64_NODE_DIR") or ROOT / "build" / "arm64-node")
    try:
        shown = node.relative_to(ROOT)
    except ValueError:
        shown = node
    built = all((node / f).is_file() for f in ("stamp", "vmlinuz", "initrd.img", "rootfs.img"))
    qemu = shutil.which("qemu-system-aarch64")
    if built and qemu:
        return [Check("aarch64 route", True, False, f"arm64 node built ({shown}); aarch64 variants run there "
                      "(just arm64 CMD, just test-arm64)")]
    what = (f"no arm64 node ({shown})" if not built else "qemu-system-aarch64 is not installed") + \
        (", and qemu-system-aarch64 is not installed" if not built and not qemu else "")
    return [Check("aarch64 route", False, False, f"{what}: aarch64 variants cannot run on this {host} machine "
                  "until one is built (`just arm64-node` installs and builds it, about five minutes; the arm64 "
                  "tests build it on first use)")]


DEBARCH = {"x86_64": "amd64", "i386": "i386", "aarch64": "arm64"}


def check_variants() -> list[Check]:
    src = ROOT / "variants" / "src"
    if not src.is_dir():
        return [Check("variants", None, False, f"{ROOT} is not an mvx checkout")]
    programs = sorted(p.stem for p in src.glob("*.c"))
    out = []
    for isa, debarch in DEBARCH.items():
        built = ROOT / "build" / "variants" / isa
        absent = [p for p in programs if not os.access(built / p, os.X_OK)]
        unfetched = [name for name in ("lighttpd", "nginx")
                     if not (ROOT / "build" / "variants" / name / debarch / "usr" / "sbin" / name).is_file()]
        if not absent and not unfetched:
            out.append(Check(f"variants {isa}", True, False,
                             f"{len(programs)} programs (build/variants/{isa}), lighttpd, nginx"))
            continue
        parts = []
        if absent:
            parts.append(f"none of the {len(programs)} programs built" if len(absent) == len(programs)
                         else f"{', '.join(absent)} not built")
        if unfetched:
            parts.append(f"{' and '.join(unfetched)} not fetched")
        use = "the arm64 node's runs" if isa == "aarch64" else "the examples, `just demo`"
        out.append(Check(f"variants {isa}", False, False, f"{'; '.join(parts)}: {use} and the tests that use them "
                         "miss them (just variants)"))
    return out


def check_agent() -> list[Check]:
    from mvx.mechanics import agent
    built = {isa: agent.build(isa) for isa in ("x86_64", "i386", "aarch64")}
    missing = [isa for isa, d in built.items() if d is None]
    if not missing:
        return [Check("in-process agent", True, False, "built for x86_64, i386 and aarch64 (a follower's input calls answered in its program)")]
    return [Check("in-process agent", False, False,
                  f"no build for {', '.join(missing)} (no compiler for it): those variants run "
                  "without it, every read of theirs a trap (scripts/setup.sh installs the compilers)")]


def check_bench_tools() -> list[Check]:
    from mvx.bench.profile import find_py_spy
    out = []
    for tool, disables, how in (
        ("wrk", "`mvx bench` cannot load lighttpd (its default --server all refuses; --server epoll runs)",
         "apt-get install wrk"),
        ("strace", "`mvx bench` refuses its strace rows (leave them out with --modes)", "apt-get install strace"),
        ("taskset", "`mvx bench` refuses to run (it pins every process)", "apt-get install util-linux"),
        ("py-spy", "`mvx bench` makes no profile of the monitors", "pip install py-spy"),
    ):
        found = find_py_spy() if tool == "py-spy" else shutil.which(tool)  # (where `mvx bench` looks)
        out.append(Check(tool, True, False, found) if found else
                   Check(tool, False, False, f"not on PATH: {disables} ({how}; scripts/setup.sh)"))
    return out


PROBES = (check_native, check_packages, check_tls, check_ptrace, check_notify, check_fds, check_memory, check_ia32,
          check_world, check_arm64, check_variants, check_agent, check_bench_tools)


def run_checks() -> list[Check]:
    checks: list[Check] = []
    for probe in PROBES:
        try:
            checks += probe()
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a line, not a traceback
            checks.append(Check(probe.__name__.removeprefix("check_"), False, True, f"the probe failed: {exc}"))
    return checks


def _handler(args: argparse.Namespace) -> int:
    sys.stdout.flush()  # nothing buffered may be written twice by a forked probe
    checks = run_checks()
    needed = [c for c in checks if c.ok is False and c.required]
    optional = [c for c in checks if c.ok is False and not c.required]
    if args.json:
        print(json.dumps({"ok": not needed, "checks": [asdict(c) | {"status": c.status} for c in checks]},
                         indent=1))
    else:
        for c in checks:
            print(c.line())
        tail = f"; {len(optional)} optional piece{'s' * (len(optional) != 1)} missing" if optional else ""
        if needed:
            print(f"mvx doctor: the default run needs {', '.join(c.name for c in needed)}{tail}")
        else:
            print(f"mvx doctor: everything the default run needs is here{tail}")
    return 1 if needed else 0


def register(sub) -> None:
    p = sub.add_parser(
        "doctor", help="check what mvx needs of this machine",
        description="Check what mvx needs of this machine, by trying each piece on a throwaway child "
        "process, and say one line each what is there and what a missing piece disables. Needed by the "
        "default run (`mvx run`: hybrid mode, followers in worlds of their own): the native module, the Python "
        "packages, ptrace (kernel.yama.ptrace_scope), seccomp filters, seccomp user notification, ADDFD, "
        "pidfd_getfd, process_vm_readv, root for the followers' namespaces and, on x86_64, IA32 emulation "
        "(i386 variants). Optional: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (faster), kcmp (faster), the aarch64 "
        "route (an arm64 node), the variants built, and wrk, strace, taskset and py-spy for `mvx bench`. "
        "Exit status: 0 when everything the default run needs is here (optional pieces may be missing), "
        "1 when something it needs is missing, 2 for a usage error.",
    )
    p.add_argument("--json", action="store_true",
                   help="print the checks as JSON (name, status ok/missing/n/a, required, detail) instead of lines")
    p.set_defaults(handler=_handler)
