"""One traced variant: start it under a monitor, wait for the stops that need a decision, act on them.

The blocking stop loop is C (mvx/mechanics/native); this module gives it names. A `Variant` must be driven
from the thread that started it (ptrace answers only the tracer thread)."""

from __future__ import annotations

import enum
import errno as errno_mod
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from mvx import MvxError
from mvx.isa import arch as archmod
from mvx.mechanics.filters import Trap, build_bpf, gate_prefix, traced_numbers
from mvx.mechanics.native import ffi, lib

# The hybrid loop learns of ptrace stops from a SIGCHLD signalfd, which sees SIGCHLD only if no
# thread of the process can take it: block it here, in the importing thread, so every thread
# started later (trio's workers, a test's threads) inherits the block.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})


class CallGone(MvxError):
    """A notified call went away before its answer: a signal interrupted it. Without a handler
    to run the kernel restarts it, so the same call comes again as a new notification."""


class Mode(enum.Enum):
    """How synced syscalls are intercepted."""

    PTRACE = "ptrace"  # PTRACE_SYSCALL at every syscall: the seed's way, the A/B baseline
    SECCOMP = "seccomp"  # SECCOMP_RET_TRACE for the synced set only
    HYBRID = "hybrid"  # user notification where the monitor can finish the call, RET_TRACE else


class StopKind(enum.IntEnum):
    ENTRY = lib.MVX_EV_ENTRY
    SECCOMP = lib.MVX_EV_SECCOMP
    EXIT = lib.MVX_EV_EXIT
    NOTIFY = lib.MVX_EV_NOTIFY
    EXITED = lib.MVX_EV_EXITED
    KILLED = lib.MVX_EV_KILLED
    SIGNAL = lib.MVX_EV_SIGNAL
    EXEC = lib.MVX_EV_EXEC
    # after a hot call the C fast path carried (mvx.runtime.fastpath): the call's nr and args
    PIPE_BROKEN = lib.MVX_EV_PIPE_BROKEN  # the leader's write got EPIPE: the program's SIGPIPE is due
    FAST_NOTE = lib.MVX_EV_FAST_NOTE  # a follower was lost to a send from C: tell the session
    CHECK_LATE = lib.MVX_EV_CHECK_LATE  # a lockstep check timed out (a divergence)
    READABLE = lib.MVX_EV_READABLE  # (never returned: the C loop reads its channel itself)
    CHANNEL_END = lib.MVX_EV_CHANNEL_END  # a follower's own channel ended (Inbox.ended says how)
    AGENT_LIED = lib.MVX_EV_AGENT_LIED  # a follower's in-process agent claimed reads it was not given


class Stop:
    """A stop that needs a decision. At ENTRY/SECCOMP/NOTIFY `nr` and `args` are the raw call;
    at EXIT `ret` is the raw return value (negative errno on error). A plain slotted class: one is
    made per synced syscall, on the hot path."""

    __slots__ = ("arch", "args", "ip", "is_error", "kind", "notif_id", "nr", "pid", "ret", "status")

    def __init__(self, kind: StopKind, pid: int, arch: archmod.Arch | None = None, nr: int = -1,
                 args: tuple[int, ...] = (), ret: int = 0, is_error: bool = False, notif_id: int = 0,
                 status: int = 0, ip: int = 0) -> None:
        self.kind, self.pid, self.arch, self.nr, self.args = kind, pid, arch, nr, args
        self.ret, self.is_error, self.notif_id, self.status, self.ip = ret, is_error, notif_id, status, ip

    def __repr__(self) -> str:
        return f"Stop({self.kind.name}, pid={self.pid}, {self.name if self.nr >= 0 else ''}, ret={self.ret})"

    @property
    def name(self) -> str:
        return self.arch.name_of(self.nr) if self.arch else "?"

    @property
    def is_syscall(self) -> bool:
        return self.kind in (StopKind.ENTRY, StopKind.SECCOMP, StopKind.NOTIFY)


_KINDS = {int(k): k for k in StopKind}


@dataclass
class TrapSet:
    """Which raw syscalls of which arch the monitor must see, and how (trace or notify)."""

    rules: dict[str, Trap] = field(default_factory=dict)  # canonical name -> action
    # canonical name -> the arguments that make a notified call traced when not 0 (filters.build_bpf)
    trace_when_set: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.rules)


_AUDIT_CACHE: dict[int, archmod.Arch] = {}


def _arch_of(audit: int) -> archmod.Arch | None:
    if not audit:
        return None
    found = _AUDIT_CACHE.get(audit)
    if found is None:
        found = _AUDIT_CACHE[audit] = archmod.from_audit(audit)
    return found


def host_arch() -> archmod.Arch:
    return archmod.get(os.uname().machine)


def runnable_arches() -> set[str]:
    """The tracee arches this machine's kernel runs natively (under ptrace, not emulation)."""
    host = host_arch().name
    return {a.name for a in archmod.ARCHES.values() if host in a.native_on}


def resolve_program(program: str) -> Path:
    """Find the program like execvp would, with one-line errors for what cannot run."""
    if "/" not in program:
        found = shutil.which(program)
        if not found:
            raise MvxError(f"{program}: command not found")
        program = found
    path = Path(program)
    if not path.exists():
        raise MvxError(f"{program}: no such file")
    if path.is_dir():
        raise MvxError(f"{program}: is a directory")
    if not os.access(path, os.X_OK) or not path.stat().st_mode & 0o111:  # root passes access(X_OK)
        raise MvxError(f"{program}: not executable")
    return path


def check_runnable(path: Path) -> archmod.Arch | None:
    """The ELF arch of a binary, or None for a script; an error if this machine cannot run it."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"#!":
        return None
    found = archmod.from_elf(path)
    if found.name not in runnable_arches():
        raise MvxError(
            f"{path}: an {found.name} binary; this {host_arch().name} machine runs "
            f"{' and '.join(sorted(runnable_arches()))} natively (run aarch64 variants inside an arm64 node)"
        )
    return found


def initial_environ() -> dict[str, str]:
    """The environment this process was started with (/proc/self/environ), not os.environ:
    Python's locale coercion (PEP 538) adds LC_CTYPE=C.UTF-8 to os.environ when the locale is C,
    and a program under mvx must get what it would get natively."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    env = {}
    for item in raw.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


class Variant:
    """One program run under a monitor in a given mode."""

    def __init__(
        self,
        argv: list[str],
        *,
        mode: Mode = Mode.SECCOMP,
        traps: TrapSet | None = None,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        report_signals: bool = False,
        isolate_net: bool = False,
        own_pids: bool = False,
        own_files: bool = False,
        as_pid: int = 0,
        hide_vdso: bool = False,
        sync_wake_up: bool = True,
        passed: tuple[int, ...] = (),
    ) -> None:
        if not argv:
            raise MvxError("no program given")
        self.argv = list(argv)
        self.path = resolve_program(argv[0])
        self.elf_arch = check_runnable(self.path)
        self.mode = mode
        self.traps = traps or TrapSet()
        self.cpu = cpu
        self.env = dict(initial_environ() if env is None else env)
        self.cwd = cwd
        self.fds = (stdin, stdout, stderr)
        if len(passed) > lib.MVX_MAX_PASSED:
            raise MvxError(f"at most {lib.MVX_MAX_PASSED} fds can be passed to a program ({len(passed)} given)")
        self.passed = tuple(passed)  # fds of ours the program gets at 3, 4, ... (socket activation)
        self.agent_fds: tuple[int, int] | None = None  # the in-process agent's memfds (mvx.mechanics.agent)
        self.agent_gate: int | None = None  # a leader's agent's gate page (filters.gate_prefix)
        self.report_signals = report_signals
        self.isolate_net = isolate_net
        # a world of its own (mvx_native.h, MVX_WORLD_*): a pid namespace where the variant has pid
        # `as_pid` (the leader's), and with own_files an overlay over every file system
        self.own_pids = own_pids or own_files
        self.own_files = own_files
        self.as_pid = as_pid
        self.hide_vdso = hide_vdso  # time calls become real syscalls (see mvx_native.c: hide_vdso)
        self.sync_wake_up = sync_wake_up  # notifications as synchronous switches (Linux 6.6+)
        self._t = ffi.new("struct mvx_tracee *")
        self._ev = ffi.new("struct mvx_event *")
        self._keep: list = []
        self.pid = -1
        self._own_pid: int | None = None
        self.exit_status: int | None = None
        self.killed_by: int | None = None
        self._regbuf = ffi.new("unsigned char[512]")

    @property
    def native(self):
        """The C side's state of this tracee (struct mvx_tracee), for C loops driving it."""
        return self._t

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> int:
        t = self._t
        t.mode = {Mode.PTRACE: lib.MVX_MODE_PTRACE, Mode.SECCOMP: lib.MVX_MODE_SECCOMP,
                  Mode.HYBRID: lib.MVX_MODE_HYBRID}[self.mode]
        t.report_signals = int(self.report_signals)
        t.isolate_net = int(self.isolate_net)
        t.world = (lib.MVX_WORLD_PIDS if self.own_pids else 0) | (lib.MVX_WORLD_FILES if self.own_files else 0)
        t.as_pid = self.as_pid
        t.hide_vdso = int(self.hide_vdso)
        t.npassed = len(self.passed)
        for i, fd in enumerate(self.passed):
            t.passed[i] = fd
        t.sync_wake_up = int(self.sync_wake_up)
        t.agent_fds[0], t.agent_fds[1] = self.agent_fds if self.agent_fds else (-1, -1)
        arches = [archmod.get(a) for a in sorted(runnable_arches())]
        primary, secondary = arches[0], arches[1] if len(arches) > 1 else None
        t.arch_primary = primary.audit_arch
        t.arch_secondary = secondary.audit_arch if secondary else 0
        bpf, want_listener = b"", False
        if self.mode is Mode.PTRACE:
            for table, a in ((t.traced_primary, primary), (t.traced_secondary, secondary)):
                if a is None:
                    continue
                for nr in traced_numbers(a, self.traps.names()):
                    if 0 <= nr < lib.MVX_MAX_NR:
                        table[nr] = 1
        else:
            rules = dict(self.traps.rules)
            if self.mode is Mode.SECCOMP:
                rules = {name: Trap.TRACE for name in rules}
            bpf = build_bpf(arches, rules, self.traps.trace_when_set)
            if self.agent_gate and "pread64" in rules:
                bpf = gate_prefix(arches, self.agent_gate) + bpf
            want_listener = any(a is Trap.NOTIFY for a in rules.values())
        c_argv = [ffi.new("char[]", os.fsencode(a)) for a in self.argv]
        c_env = [ffi.new("char[]", os.fsencode(f"{k}={v}")) for k, v in self.env.items()]
        argv_arr = ffi.new("char *[]", c_argv + [ffi.NULL])
        env_arr = ffi.new("char *[]", c_env + [ffi.NULL])
        bpf_buf = ffi.new("char[]", bpf) if bpf else ffi.NULL
        err = ffi.new("char[512]")
        self._keep = [c_argv, c_env, argv_arr, env_arr, bpf_buf]
        cwd = ffi.new("char[]", os.fsencode(self.cwd)) if self.cwd else ffi.NULL
        fd0, fd1, fd2 = (-1 if fd is None else fd for fd in self.fds)
        pid = lib.mvx_spawn(
            t, ffi.new("char[]", os.fsencode(self.path)), argv_arr, env_arr, cwd, bpf_buf,
            len(bpf) // 8, int(want_listener), -1 if self.cpu is None else self.cpu, fd0, fd1, fd2, err, 512,
        )
        if pid < 0:
            raise MvxError(f"{self.argv[0]}: {ffi.string(err).decode(errors='replace')}")
        self.pid = pid
        return pid

    @property
    def own_pid(self) -> int:
        """The variant's pid as the variant sees it (in a pid namespace of its own: there)."""
        if self._own_pid is None:
            self._own_pid = self.pid
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            self._own_pid = int(line.split()[-1])
                            break
            except (OSError, ValueError):
                pass
        return self._own_pid

    @property
    def notify_fd(self) -> int:
        return self._t.notify_fd

    @property
    def alive(self) -> bool:
        return self.pid > 0 and not self._t.exited

    @property
    def stops_seen(self) -> int:
        """Every ptrace stop the C loop saw, including the ones it resumed by itself."""
        return self._t.stops

    def wait(self, fast=None) -> Stop:
        """Block until the next stop that needs a decision (the exec event is passed by itself).
        With `fast` (a struct mvx_fast), the C fast path carries the hot calls it can first."""
        while True:
            r = lib.mvx_wait(self._t, self._ev) if fast is None else lib.mvx_fast_wait(fast, self._ev)
            if r < 0:
                if fast is not None and r == -errno_mod.EPROTO:
                    raise MvxError(f"variant {self.pid}: {ffi.string(lib.mvx_fast_error(fast)).decode(errors='replace')}")
                raise MvxError(f"lost the variant {self.pid}: {os.strerror(-r)}")
            ev = self._ev
            kind = _KINDS[ev.kind]
            # read only the fields this kind of stop has: each cdata field read costs ~70 ns
            if kind is StopKind.NOTIFY or kind is StopKind.SECCOMP or kind is StopKind.ENTRY or kind >= StopKind.PIPE_BROKEN:
                audit = ev.arch
                arch = _AUDIT_CACHE.get(audit) or _arch_of(audit)
                return Stop(kind, ev.pid, arch, ev.nr, ffi.unpack(ev.args, 6), 0, False, ev.notif_id, 0, ev.ip)
            if kind is StopKind.EXIT:
                audit = ev.arch
                return Stop(kind, ev.pid, _AUDIT_CACHE.get(audit) or _arch_of(audit), -1, (), ev.ret,
                            bool(ev.is_error))
            if kind is StopKind.EXEC:  # keep a pending request for the execve's exit stop
                how = lib.MVX_RESUME_TO_EXIT if self._t.want_exit else lib.MVX_RESUME_RUN
                self._check(lib.mvx_resume(self._t, how))
                continue
            stop = Stop(kind, ev.pid, status=ev.status)
            if kind is StopKind.EXITED:
                self.exit_status = ev.status
                self._close()
            elif kind is StopKind.KILLED:
                self.killed_by = ev.status
                self._close()
            return stop

    def _check(self, r: int) -> None:
        if r < 0:
            raise MvxError(f"variant {self.pid}: {os.strerror(-r)}")

    # ---- decisions at ptrace stops ---------------------------------------------------------------
    def resume(self, to_exit: bool = False) -> None:
        """Let the stopped call run (and stop at its exit if asked)."""
        r = lib.mvx_resume(self._t, lib.MVX_RESUME_TO_EXIT if to_exit else lib.MVX_RESUME_RUN)
        if r < 0:
            self._check(r)

    def skip(self, stop: Stop, retval: int, to_exit: bool = False) -> None:
        """Do not execute the call; it returns `retval` (negative errno for an error)."""
        how = lib.MVX_RESUME_TO_EXIT if to_exit else lib.MVX_RESUME_RUN
        self._check(lib.mvx_skip(self._t, stop.arch.audit_arch if stop.arch else 0, retval, how))

    def set_return(self, stop: Stop, retval: int) -> None:
        """At an exit stop: make the call return `retval`."""
        self._check(lib.mvx_set_return(self._t, stop.arch.audit_arch if stop.arch else 0, retval))

    def rewrite(self, stop: Stop, name: str, args: tuple[int, ...]) -> None:
        """At an entry/seccomp stop: make the variant execute `name(args)` (its arch's number)
        instead of the call it made."""
        nr = stop.arch.nr(name)
        c_args = ffi.new("unsigned long long[6]", [a & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (6 - len(args)))
        self._check(lib.mvx_set_syscall(self._t, nr, c_args, len(args), int(stop.arch.name == "i386")))

    def rewind(self, stop: Stop) -> None:
        """At an entry/seccomp stop: the call does not run now; the variant makes it again when it
        resumes (after the handler of a signal delivered on this resume)."""
        self._check(lib.mvx_rewind(self._t, lib.MVX_RESUME_RUN))

    def restart_interrupted(self) -> bool:
        """At the signal-delivery stop that interrupted a notified call: the call is made again
        after the handler (as after `rewind`) instead of failing with EINTR. False when no call
        was interrupted."""
        r = lib.mvx_restart_interrupted(self._t)
        self._check(r)
        return r == 1

    def interrupted_by_signal(self, nr: int) -> bool:
        """At the delivery stop of a signal sent where call `nr` was skipped: the call looks
        interrupted by it (-ERESTARTSYS), so the kernel restarts it or returns EINTR per SA_RESTART.
        False where this host cannot (aarch64)."""
        r = lib.mvx_interrupted_by_signal(self._t, nr)
        if r == -errno_mod.ENOSYS:
            return False
        self._check(r)
        return True

    def send_signal(self, sig: int) -> None:
        """Queue `sig` for the variant's main thread (tgkill): a notified call it waits in is
        interrupted, as a real blocking call would be."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def siginfo(self) -> bytes:
        """At a SIGNAL stop: the signal's siginfo (128 bytes, the monitor's layout)."""
        buf = ffi.new("char[128]")
        self._check(lib.mvx_siginfo(self.pid, buf, 0))
        return bytes(ffi.buffer(buf, 128))

    def set_siginfo(self, data: bytes) -> None:
        """At a SIGNAL stop: the siginfo the handler gets instead (e.g. the sender of the original)."""
        buf = ffi.new("char[128]", data[:128])
        self._check(lib.mvx_siginfo(self.pid, buf, 1))

    def deliver_signal(self, sig: int) -> None:
        """At a SIGNAL stop: choose the signal the resume delivers (0 suppresses it)."""
        self._t.pending_sig = sig

    def get_regs(self) -> bytes:
        self._check(lib.mvx_get_regs(self.pid, 0, self._regbuf, 512))
        return bytes(ffi.buffer(self._regbuf, 512))

    def set_regs(self, data: bytes) -> None:
        buf = ffi.from_buffer(bytearray(data))
        self._check(lib.mvx_set_regs(self.pid, 0, buf, len(data)))

    # ---- decisions at notifications --------------------------------------------------------------
    def respond(self, stop: Stop, retval: int) -> bool:
        """Answer a notification: the call returns `retval` (negative = -errno) without running.
        False if the call was interrupted meanwhile (the variant took a signal)."""
        if retval < 0:
            r = lib.mvx_notif_respond(self._t.notify_fd, stop.notif_id, 0, retval, 0)
        else:
            r = lib.mvx_notif_respond(self._t.notify_fd, stop.notif_id, retval, 0, 0)
        if r < 0:
            if r == -errno_mod.ENOENT:
                return False
            self._check(r)
        return True

    def continue_call(self, stop: Stop) -> bool:
        """Let a notified call run in the variant as if it had not been trapped."""
        r = lib.mvx_notif_respond(self._t.notify_fd, stop.notif_id, 0, 0, 1)
        if r < 0:
            if r == -errno_mod.ENOENT:
                return False
            self._check(r)
        return True

    def install_fd(self, stop: Stop, srcfd: int, *, at: int | None = None, answer: bool = True,
                   cloexec: bool = False) -> int:
        """Install the monitor's `srcfd` in the variant (at fd `at`, or the lowest free one); with
        `answer` it is also the notified call's return value, atomically."""
        r = lib.mvx_notif_addfd(self.notify_fd, stop.notif_id, srcfd, -1 if at is None else at,
                                int(at is not None), int(answer), int(cloexec))
        if r == -errno_mod.ENOENT:
            raise CallGone(f"variant {self.pid}: the notified call went away")
        self._check(r)
        return r

    def notification_valid(self, stop: Stop) -> bool:
        return bool(lib.mvx_notif_id_valid(self.notify_fd, stop.notif_id))

    def grab_fd(self, fd: int) -> int:
        """A duplicate of the variant's fd in the monitor (same open file description)."""
        if not 0 <= fd < 1 << 31:  # the kernel's answer for a negative or impossible fd
            raise OSError(errno_mod.EBADF, f"pidfd_getfd({fd}): {os.strerror(errno_mod.EBADF)}")
        r = lib.mvx_pidfd_getfd(self.pid, fd)
        if r < 0:
            raise OSError(-r, f"pidfd_getfd({fd}): {os.strerror(-r)}")
        return r

    # ---- memory ----------------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        buf = ffi.new("char[]", size)
        n = lib.mvx_read_mem(self.pid, addr, buf, size)
        if n < 0:
            raise OSError(-n, f"read {size} bytes at {addr:#x}: {os.strerror(-n)}")
        return bytes(ffi.buffer(buf, n))

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        n = lib.mvx_write_mem(self.pid, addr, data, len(data))
        if n < 0:
            raise OSError(-n, f"write {len(data)} bytes at {addr:#x}: {os.strerror(-n)}")
        if n != len(data):
            raise OSError(errno_mod.EFAULT, f"short write at {addr:#x}: {n} of {len(data)}")

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        buf = ffi.new("char[]", limit)
        n = lib.mvx_read_cstr(self.pid, addr, buf, limit)
        if n < 0:
            raise OSError(-n, f"read string at {addr:#x}: {os.strerror(-n)}")
        return bytes(ffi.buffer(buf, n))

    # ---- ending ----------------------------------------------------------------------------------
    def kill(self) -> None:
        """Kill the variant and reap it (nothing is left behind)."""
        if self.pid > 0:
            lib.mvx_kill_tree(self._t)

    def _close(self) -> None:
        for name in ("notify_fd", "sigchld_fd"):
            fd = getattr(self._t, name)
            if fd >= 0:
                os.close(fd)
                setattr(self._t, name, -1)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self._close()


class TraceeMemory:
    """A variant's memory in the shape mvx.isa.canonical reads (faults become MemoryFault)."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant

    def read(self, addr: int, n: int) -> bytes:
        from mvx.isa.canonical import MemoryFault

        try:
            data = self.variant.read(addr, n)
        except OSError as exc:
            raise MemoryFault(str(exc)) from None
        if len(data) != n:
            raise MemoryFault(f"short read at {addr:#x}: {len(data)} of {n}")
        return data

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        from mvx.isa.canonical import MemoryFault

        try:
            return self.variant.read_cstr(addr, limit)
        except OSError as exc:
            raise MemoryFault(str(exc)) from None
