"""The monitors: one thread per variant carries out the sync core's plans (mvx.core.sync).

A monitor owns its Variant (ptrace answers only the thread that started the tracee) and decides
nothing about a call itself: the core plans, the monitor executes (performs, injects, waits), keeps
its fd-table shadow (mvx.runtime.fdshadow) and relays signals (mvx.runtime.sigrelay). It talks to the rest of the
session only through a link (mvx.runtime.link): the leader publishes records and waits for checks, a
follower takes the leader's messages from its inbox and replies.

`mvx trace` runs on the same loop (`TraceMonitor`): one variant, its synced calls printed.

A divergence found here is raised as `sync.Divergence`; an ending forced from outside (another
variant diverged, a signal, the channel broke) reaches the thread as `link.Stopped`."""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import resource
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import TextIO

from mvx import MvxError
from mvx.core.outputs import epoll_ctl_data
from mvx.core.policy import Policy
from mvx.core.protocol import CallRecord, CheckRequest, End, SignalBatch, Started
from mvx.core.sync import (
    NOT_EXECUTED,
    Action,
    Divergence,
    FollowerSync,
    LeaderSync,
    content_digest,
    render_view,
    sent_bytes,
    sent_file_range,
)
from mvx.isa.arch import get as arch_of
from mvx.isa.canonical import RawSyscall, decode_outputs, normalize
from mvx.isa.render import render
from mvx.isa.syscalls import Fd
from mvx.mechanics import agent, forensics
from mvx.mechanics.engine import CallGone, Mode, Stop, StopKind, TraceeMemory, TrapSet, Variant, host_arch
from mvx.mechanics.filters import Trap
from mvx.mechanics.forensics import Forensics
from mvx.mechanics.native import ffi, lib
from mvx.mechanics.procinfo import LoaderRange, signalfd_mask
from mvx.mechanics.proxy import Performed, answer, epoll_pwait_with_signalfds, perform
from mvx.mechanics.replay import Recorded, ReplayError, inject
from mvx.runtime.fastpath import FOLLOWER, LEADER, FastPath, accept_fault_signal
from mvx.runtime.fastpath import wanted as fast_wanted
from mvx.runtime.fdshadow import FdShadow
from mvx.runtime.link import CHECK_GRACE, Inbox, LeaderLink, Stopped
from mvx.runtime.outbox import Held, Outbox
from mvx.runtime.sigrelay import SignalRelay

ENDINGS = (StopKind.EXITED, StopKind.KILLED)
# How long a variant stopped from another thread for a divergence is left alive for its monitor
# thread (its tracer, the only one that can read its registers) to take its forensics; then it is
# killed whatever the monitor thread does, and whoever waits reads /proc alone.
FORENSICS_WAIT = 2.0
# The kernel's restart codes (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK): seen
# at a syscall-exit stop, they mean a signal interrupted the call and it is about to be made again
# (no handler runs for a signal the monitor suppresses); never a result.
RESTARTING = host_arch().restart_codes  # generated: KERNEL_CONSTS of mvx/isa/archdata


@dataclass
class Unanswered:
    """A call the monitor performed for its variant whose answer found the call gone (a signal
    interrupted the wait; the kernel restarts it). Its effects happened (bytes read, a connection
    accepted) and its record is out: the restarted call gets this result, it is not made twice."""
    key: tuple
    done: Performed


class _Ended(Exception):
    def __init__(self, stop: Stop) -> None:
        self.stop = stop


def _kill_late(pidfd: int) -> None:
    """The deadline of a stop for forensics (a timer thread): the variant is killed by now, by its
    monitor thread or here."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass  # gone already
    finally:
        os.close(pidfd)


# The calls that make a new task (fork and vfork are clone's forms), by their raw names on every ISA.
# An MVX session does not follow tasks yet (docs/DESIGN.md, "Limits"): a new process or thread would
# run its calls unchecked, so the leader's and followers' monitors trap these calls whatever the
# policy and stop the session before one is made (fail closed). `mvx trace` lets them run.
NEW_TASK_CALLS = ("clone", "clone3", "fork", "vfork")
NEW_TASK_CANONICAL = ("clone", "clone3")


def trap_set(mode: Mode, policy: Policy, role: str) -> TrapSet:
    """Which synced calls reach the monitor how. Hybrid: by user notification when the monitor can
    finish the call itself (the leader performs it, a follower answers it from the record, a call
    that only changes the fd table continues), by RET_TRACE when the call must run in the variant
    and its result is needed. `mvx trace` notifies only the calls it can perform. A call notified
    to be performed is traced in the forms the monitor cannot perform (Traits.trace_when_set: a
    signal mask, which only the variant can apply); a follower that answers the call from the
    record answers every form (the leader's traced call is then like ppoll's, traced there and
    notified here)."""
    refused = NEW_TASK_CANONICAL if role in ("leader", "follower") else ()
    if mode is not Mode.HYBRID:
        return TrapSet({n: Trap.TRACE for n in (*policy.synced(), *refused)})
    from mvx.isa.syscalls import spec_of

    rules, when = {n: Trap.NOTIFY for n in refused}, {}  # (seen before it runs, never performed)
    for name in policy.synced():
        traits = spec_of(name).traits
        cls = policy.class_of(name)
        if role == "trace":
            finishes_otherwise = False
        else:
            answered = role == "follower" and cls in NOT_EXECUTED and name not in policy.in_world
            finishes_otherwise = (traits.fd_table_only and cls == "local") or answered
        rules[name] = Trap.NOTIFY if finishes_otherwise or traits.perform is not None else Trap.TRACE
        if not finishes_otherwise and traits.perform is not None and traits.trace_when_set:
            when[name] = traits.trace_when_set  # performed only without them (a signal mask)
    return TrapSet(rules, when)


@dataclass
class Outcome:
    """How a monitor's run ended: the program's status, or a divergence."""

    status: int | None = None  # exit code
    signal: int | None = None  # killed by
    divergence: Divergence | None = None
    stopped: str | None = None  # ended from outside (reason)

    @property
    def exit_code(self) -> int:
        if self.signal is not None:
            return 128 + self.signal
        return self.status or 0


class Monitor:
    """The loop every monitor runs: wait for the variant's next stop, hand each synced call to
    `on_call`, end cleanly. Subclasses carry out the plans of their role."""

    role = "?"
    hide_vdso = True  # time calls become real syscalls, so they can be replicated
    report_signals = True  # signals stop at the monitor (sigrelay)

    def __init__(self, argv: list[str], *, mode: Mode, policy: Policy, cpu: int | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 stdio: tuple[int | None, int | None, int | None] = (None, None, None),
                 isolate_net: bool = False, own_pids: bool = False, own_files: bool = False,
                 passed: tuple[int, ...] = (), placeholders: int = 0, in_process_agent: bool = False) -> None:
        self.policy = policy
        self.mode = mode
        # a follower's program gets, at the numbers of the fds the leader's was passed, inert sockets
        # whose other ends this monitor keeps (placeholders: it never acts on them, the records do)
        self._placeholder_pairs = [socket.socketpair() for _ in range(placeholders)]
        passed = tuple(passed) + tuple(a.fileno() for a, _ in self._placeholder_pairs)
        self.variant = Variant(argv, mode=mode, traps=trap_set(mode, policy, self.role), cpu=cpu, env=env, cwd=cwd,
                               stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], isolate_net=isolate_net,
                               own_pids=own_pids, own_files=own_files, hide_vdso=self.hide_vdso,
                               report_signals=self.report_signals, passed=passed)
        self._agent_fds: tuple[int, int] | None = None
        arch = self.variant.elf_arch
        if in_process_agent and (agent_env := agent.environment(self.variant.env, arch and arch.name)) is not None:
            self.variant.env = agent_env
            self.variant.agent_fds = self._agent_fds = agent.memfds()
            if self.role == "leader" and mode is not Mode.PTRACE:  # (ptrace stops every call: no gate)
                self.variant.agent_gate = agent.gate_address()
        self.fds: FdShadow | None = None
        self.loader: LoaderRange | None = None
        self.mem: TraceeMemory | None = None
        self.signals = SignalRelay(self.variant)
        self.synced = policy.synced()
        self.in_wait = False  # the thread is waiting for the variant (a follower's watchdog reads it)
        self.stopping: str | None = None
        self.stop_divergence: Divergence | None = None
        self.unanswered: Unanswered | None = None
        self.fast: FastPath | None = None  # the C fast path (set up by the roles that have one)
        self.forensics: Forensics | None = None  # where the variant was when a divergence stopped it
        self.refused: str | None = None  # why this monitor stopped the run itself (a call it does not follow)
        self._tracer: int | None = None  # the monitor thread (the variant's tracer): threading.get_ident()
        self._fx_lock = threading.Lock()
        self._fx_taken = threading.Event()  # self.forensics is final
        self._fx_wanted = False  # stopped from another thread for forensics (the monitor thread takes them)
        # MVX_FAST_STATS: the synced calls Python handled, by name (what the C loop did not carry)
        self.python_calls: collections.Counter | None = collections.Counter() if os.environ.get("MVX_FAST_STATS") else None

    def start(self) -> int:
        self._cpu_at_start = _cpu_seconds()  # MVX_FAST_STATS: the monitor's CPU from here on
        pid = self.variant.start()
        self.fds, self.loader = FdShadow(self.variant), LoaderRange(pid, self.variant.read)
        first = 3 + len(self.variant.passed) - len(self._placeholder_pairs)
        for i, (given, kept) in enumerate(self._placeholder_pairs):
            given.close()
            self.fds.adopt_placeholder(first + i, kept)
        self._placeholder_pairs = []
        self.mem = TraceeMemory(self.variant)
        return pid

    def attach_agent(self) -> None:
        """After the variant's start (before it runs): a follower's C loop publishes answers for its
        agent; a leader's gives its agent the gate (where its filter lets pread64 run) and follows
        its claims; without the C loop the agent stays off (its program got zeroed pages)."""
        if self._agent_fds is None:
            return
        ring, status = self._agent_fds
        self._agent_fds = None
        if self.fast is not None and self.role in ("leader", "follower"):
            agent.attach(self.fast.native, ring, status, publish=True, gate=self.variant.agent_gate or 0)
        else:
            os.close(ring)
            os.close(status)

    def kill(self) -> None:
        self.variant.kill()
        if self.fds:
            self.fds.close()

    def refusing(self) -> None:
        """This monitor is about to stop the run itself (a call it does not follow): what every
        follower has checked may still leave (under plain lockstep it already had)."""

    def synced_so_far(self) -> int:
        """Synced calls so far, the C loop's included (any thread: a glimpse, for --stats)."""
        fast = self.fast
        return max(self.sync.seq, fast.seq() if fast is not None else 0)

    def snapshot(self, why_no_regs: str = "not read: the variant runs on (its monitor thread alone can "
                 "stop it to read them)") -> Forensics | None:
        """Where the variant is now (any thread; read before it is killed), for a divergence report:
        with its registers on the monitor thread (its tracer), else /proc's fields, `why_no_regs`."""
        if self.variant.pid <= 0 or not self.variant.alive:
            return None
        pid, arch = self.variant.pid, self.variant.elf_arch or host_arch()
        regs, note = {}, why_no_regs
        if threading.get_ident() == self._tracer:
            regs, note = forensics.registers(pid, arch)
        return forensics.capture(pid, arch, self.variant.read, regs, note)

    def stop(self, reason: str, divergence: Divergence | None = None, forensics: bool = False) -> None:
        """From another thread: end this monitor's run now (the variant is killed; the run returns
        an Outcome with `stopped`, and `divergence` when the stop is one). With `divergence` or
        `forensics`, where the variant was is taken first (`forensics_within`): it is sent SIGSTOP,
        which wakes the monitor thread where it waits for it (the session's link and inbox wake it
        elsewhere), and the monitor thread reads it as its tracer before it kills it; the variant is
        killed FORENSICS_WAIT seconds later whatever happens."""
        if self.stopping is None:
            self.stopping, self.stop_divergence = reason, divergence
        pid = self.variant.pid
        if pid <= 0 or not self.variant.alive:
            return
        if threading.get_ident() == self._tracer:  # (the monitor thread itself: it kills it as it unwinds)
            if (divergence is not None or forensics) and self.forensics is None:
                self.forensics = self.snapshot()
        elif (divergence is not None or forensics) and not self._fx_taken.is_set():
            with self._fx_lock:
                if not self._fx_wanted and self._tracer is not None:
                    try:
                        pidfd = os.pidfd_open(pid)  # the deadline's kill reaches this process, never a reuse
                    except OSError:
                        pidfd = None
                    if pidfd is not None:
                        self._fx_wanted = True  # (before the signal: the monitor thread checks it at the stop)
                        deadline = threading.Timer(FORENSICS_WAIT, _kill_late, (pidfd,))
                        deadline.daemon = True
                        deadline.start()
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGSTOP)
            if self._fx_wanted:
                return
        elif self._fx_wanted and not self._fx_taken.is_set():
            return  # the forensics under way end with the kill (or the deadline's)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def forensics_within(self, timeout: float = FORENSICS_WAIT / 2) -> Forensics | None:
        """Any thread, after `stop(..., forensics=True)`: where the variant was, as its monitor
        thread read it; after `timeout` seconds without (before the deadline's kill), what /proc says."""
        if self._fx_wanted and not self._fx_taken.wait(timeout):
            late = self.snapshot(f"not read: its monitor thread did not get to it within {timeout:g}s")
            with self._fx_lock:
                if self.forensics is None:
                    self.forensics = late
                self._fx_taken.set()
        return self.forensics

    def _take_forensics(self) -> None:
        """The monitor thread, unwinding after `stop(..., forensics=True)`: read the variant as its
        tracer (registers included), before it is killed."""
        try:
            if self.forensics is None and not self._fx_taken.is_set():
                found = self.snapshot()
                with self._fx_lock:
                    if self.forensics is None and not self._fx_taken.is_set():
                        self.forensics = found
        finally:
            self._fx_taken.set()

    def stopped_outcome(self) -> Outcome:
        return Outcome(stopped=self.stopping, divergence=self.stop_divergence)

    def run(self) -> Outcome:
        """Drive the variant until its program ends or the session stops; never leaves it running."""
        try:
            self._tracer = threading.get_ident()
            self.start()
            while True:
                self.in_wait = True
                stop = self.wait()
                self.in_wait = False
                if stop.kind in ENDINGS:
                    return self.ended(stop)
                if self._fx_wanted:  # stopped for forensics: the variant goes no further
                    raise Stopped(self.stopping or "stopped")
                if stop.kind is StopKind.SIGNAL:
                    foreign = self.signals.on_signal(stop.status)
                    if foreign is not None:
                        self.foreign_signal(*foreign)
                    elif self.signals.woke:
                        self.woken(self.signals.woke)
                        self.signals.woke = []
                    continue
                if not stop.is_syscall:
                    self.variant.resume()
                    continue
                if self.is_noise(stop):
                    self.let_run(stop)
                    continue
                if self.role != "trace" and stop.name in NEW_TASK_CALLS:
                    self.refused = (f"the {self.role}'s program made {stop.name}, which makes a new process or "
                                    "thread: mvx does not follow tasks yet and would let its calls run unchecked, "
                                    "so it stops the run before the call is made (fail closed; docs/DESIGN.md, "
                                    "\"Limits\")")
                    self.refusing()
                    raise Stopped(self.refused)
                if self.unanswered is not None and self.answer_again(stop):
                    continue
                try:
                    if self.python_calls is not None:
                        self.python_calls[stop.name] += 1
                    self.on_call(stop)
                except _Ended as ended:
                    return self.ended(ended.stop)
                except CallGone:
                    continue
        except Divergence as d:
            if self.forensics is None:
                self.forensics = self.snapshot()  # (the variant is killed below)
            return self.stopped_outcome() if self.stopping else Outcome(divergence=d)
        except Stopped as s:
            return self.stopped_outcome() if self.stopping else Outcome(stopped=s.reason)
        except (OSError, MvxError):
            if self.stopping:  # the variant vanished under a request we were making
                return self.stopped_outcome()
            raise
        finally:
            self.in_wait = False
            if self._fx_wanted:
                self._take_forensics()
            self.kill()
            if self.fast is not None and os.environ.get("MVX_FAST_STATS"):
                per_call = (_cpu_seconds() - self._cpu_at_start) / max(self.sync.seq, 1) * 1e6
                top = ", ".join(f"{name} {n}" for name, n in self.python_calls.most_common(6))
                answered = lib.mvx_fast_agent_answered(self.fast.native)
                print(f"mvx: {self.role}: {self.fast.handled} hot calls carried in C, "
                      f"{self.sync.seq} synced calls in all, {per_call:.1f} us of monitor CPU per synced call; "
                      f"the Python path's stops: {top or 'none'}"
                      f"{f'; of those in C, {answered} calls answered by the in-process agent' if answered else ''}",
                      file=sys.stderr)

    def on_call(self, stop: Stop) -> None:
        raise NotImplementedError

    # ---- the C fast path ----------------------------------------------------------------------------
    def fast_ready(self) -> bool:
        """May the C loop carry calls now (Python holds no state it cannot see)?"""
        return self.unanswered is None

    def wait(self) -> Stop:
        """The variant's next stop for Python: with the fast path, after the hot calls C carried."""
        fast = self.fast
        if fast is None:
            return self.variant.wait()
        fast.before_wait(self.fast_ready(), self.sync.seq)
        try:
            stop = self.variant.wait(fast.native)
        finally:
            self.sync.seq = fast.seq()
            for event in fast.take_fd_events():
                self.fds.after_fast(*event)
            pending = fast.take_pending()
            if pending is not None:
                self.unanswered = Unanswered(*pending)
        while stop.kind >= StopKind.PIPE_BROKEN:  # after a call C carried
            self.after_fast(stop)
            stop = self.wait()
        return stop

    def after_fast(self, stop: Stop) -> None:
        """What Python does after a hot call the C loop carried (StopKind.PIPE_BROKEN and kin)."""
        if stop.kind is StopKind.PIPE_BROKEN:
            self.signals.pipe_broken(self.call_of(stop))

    def fast_track(self, call, ret: int | None) -> None:
        """Keep the C loop's fd table current after a call Python handled: an fd whose meaning may
        have changed is forgotten; a socket of the leader's world a hot call used is learned."""
        fast = self.fast
        traits = call.spec.traits
        fd = call.args[0] if call.kinds and isinstance(call.kinds[0], Fd) and isinstance(call.args[0], int) else None
        if traits.shadow in ("pair", "exec"):
            fast.forget_fds()
            if traits.shadow == "exec":
                fast.epoll_clear()
        elif traits.shadow == "close" and fd is not None:
            fast.set_fd(fd, 0)
            fast.epoll_close(fd)
        elif traits.shadow == "epoll_ctl" and fd is not None and isinstance(call.args[2], int):
            data = epoll_ctl_data(call)
            add = call.args[1] in ("EPOLL_CTL_ADD", "EPOLL_CTL_MOD") and data is not None
            fast.epoll_ctl(fd, call.args[2], data if add else None)
        elif traits.shadow == "dup" and isinstance(call.args[1], int):
            fast.set_fd(call.args[1], 0)
        if fd is not None:  # a duplicate Python took: the loop closes it when the variant closes the fd
            fast.set_dup(fd, self.fds.dups.known(fd))
        if ret is not None and ret >= 0 and isinstance(call.spec.ret, Fd):
            # a new fd (an accepted connection): its first read is carried in C already
            own, kind = self.fds.in_world(ret), self.fds.kind(ret)
            fast.set_fd(ret, lib.MVX_FD_SIGNALFD if kind == "signalfd" else lib.MVX_FD_OWN if own
                        else lib.MVX_FD_LEADERS if kind == "socket" else 0, self.fds.dups.known(ret))
            fast.set_placeholder(ret, self.fds.is_placeholder(ret))
        if call.name in fast.names and fd is not None and ret is not None:
            kind = self.fds.kind(fd)
            if call.name == "epoll_pwait":  # (not with a signalfd in the set: Python's, _signalfds_in)
                what = lib.MVX_FD_EPOLL if kind == "other" and ret >= 0 and not self._signalfds_in(call) else 0
            else:
                what = lib.MVX_FD_OWN if self.fds.in_world(fd) else lib.MVX_FD_LEADERS if kind == "socket" else 0
            fast.set_fd(fd, what, self.fds.dups.known(fd))

    def ended(self, stop: Stop) -> Outcome:
        raise NotImplementedError

    def foreign_signal(self, sig: int, info: bytes) -> None:
        """A signal from outside, suppressed; the leader replicates it, a follower ignores it."""

    def woken(self, sigs: list[tuple[int, bytes]]) -> None:
        """Signals from outside that ended the program's sleep in a call that waits for one (the
        leader's; SignalRelay.awaiting): delivered there, replicated to the followers' same call."""

    def file_digest(self, call) -> str | None:
        """The digest of the file bytes a call with Traits.sends_file is about to send (its
        arguments alone do not say what leaves the machine)."""
        data = self.file_bytes(call)
        return data if data is None or isinstance(data, str) else content_digest(data)

    def file_bytes(self, call) -> bytes | str | None:
        """The file bytes a call with Traits.sends_file is about to send, read through a duplicate
        of the variant's fd ("unreadable: why" when they cannot be read; None: no such call)."""
        sent = sent_file_range(call)
        if sent is None:
            return None
        fd, offset, count = sent
        try:
            mine = self.fds.dups.get(fd)
            return os.pread(mine, min(count, 64 << 20), os.lseek(mine, 0, os.SEEK_CUR) if offset is None else offset)
        except OSError as exc:
            return f"unreadable: {exc.strerror}"

    # ---- per call ---------------------------------------------------------------------------------
    def call_of(self, stop: Stop):
        return normalize(RawSyscall(stop.arch.name, stop.nr, stop.args), self.mem)

    def is_noise(self, stop: Stop) -> bool:
        """Startup noise: the dynamic loader's own calls (procinfo), and calls of forked children
        (not followed; docs/DESIGN.md)."""
        return stop.pid != self.variant.pid or self.loader.contains(stop.ip)

    def class_of(self, call) -> str:
        world = call.name in self.policy.in_world and isinstance(call.args[0], int) and self.fds.in_world(call.args[0])
        return self.policy.class_of(call.name, world) or "local"

    def let_run(self, stop: Stop) -> None:
        if stop.kind is StopKind.NOTIFY:
            self.variant.continue_call(stop)
        else:
            self.variant.resume()

    def track(self, call, ret: int | None, outputs: dict | None = None) -> None:
        """Keep the monitor's shadow of the fd table (and of the loader after an exec) current;
        `outputs`: the call's out-data as run_here decoded it (SCM_RIGHTS fds received)."""
        self.fds.track(call, ret, outputs)
        if call.spec.traits.shadow == "exec":
            self.loader.reset()
        if self.fast is not None:
            self.fast_track(call, ret)

    def answer_again(self, stop: Stop) -> bool:
        """The restarted copy of an unanswered performed call gets its result (mvx.mechanics.proxy.answer).
        A connection accepted for a call that a signal took away waits for the same call made again
        (the program saw EINTR and came back, maybe after other calls: True only once answered, the
        other calls are handled as usual). Any other result not taken by the next call is lost: the
        variants can no longer agree (fail closed)."""
        pending, self.unanswered = self.unanswered, None
        new_fd = pending.done.new_fd is not None
        if stop.kind is StopKind.NOTIFY and _call_key(stop) == pending.key:
            if new_fd:  # read before the answer: then the program runs on and may reuse its buffers
                call = self.call_of(stop)
                outputs = decode_outputs(call, self.mem, 0).outputs  # (a success: the fd's number comes below)
            try:
                ret = answer(self.variant, stop, pending.done, self.fds.dups if new_fd else None)
            except CallGone:
                self.unanswered = pending
                return True
            if new_fd:  # its number is known now: the record was held for it (the leader's only)
                self.track(call, ret)
                if pending.done.addrlen_in is not None:  # the view has what the program gave, as the follower's
                    call = replace(call, args=(*call.args[:2], pending.done.addrlen_in, *call.args[3:]))
                self.publish_late(call, ret, outputs)
            return True
        if new_fd:
            self.unanswered = pending
            return False
        raise MvxError(f"a call performed for the variant was interrupted and not made again "
                       f"(syscall {pending.key[1]}): its result is lost")

    def keep_unanswered(self, stop: Stop, done: Performed) -> None:
        """A signal took the call away after the monitor made it: its result waits for the call."""
        if self.unanswered is not None:  # an accepted connection still waits for its call: one at a time
            raise MvxError("a performed call was interrupted while an accepted connection waits for "
                           "its call to be made again")
        self.unanswered = Unanswered(_call_key(stop), done)

    def publish_late(self, call, ret: int, outputs: dict) -> None:
        """The record of a call that made a new fd, once the restarted call got it (the leader)."""

    def _signalfds_in(self, call) -> list[tuple[int, int]]:
        """An epoll wait's signalfds: [(the signals each takes, its registered data)]."""
        if call.spec.traits.perform != "epoll_pwait" or not isinstance(call.args[0], int):
            return []
        return [(signalfd_mask(self.variant.pid, fd), data)
                for fd, data in self.fds.epoll.registered(call.args[0]).items() if self.fds.kind(fd) == "signalfd"]

    def _on_signalfd(self, call) -> bool:
        return bool(call.kinds) and isinstance(call.kinds[0], Fd) and isinstance(call.args[0], int) \
            and self.fds.kind(call.args[0]) == "signalfd"

    def run_here(self, stop: Stop, call, want_ret: bool) -> tuple[int | None, dict]:
        """Execute the call in this variant (or in the monitor on its behalf, hybrid); its result
        when known (`want_ret` asks for it where that costs an exit stop), and its outputs."""
        v = self.variant
        if stop.kind is StopKind.NOTIFY:
            # a signalfd gives whoever reads it their own signals: the variant reads its own
            if self._on_signalfd(call):
                done = None
            elif signalfds := self._signalfds_in(call):
                done = epoll_pwait_with_signalfds(v, stop, call, self.fds.dups, signalfds)
            else:
                done = perform(v, stop, call, self.fds.dups)
            if done is None:
                if not v.continue_call(stop) and not v.notification_valid(stop):
                    raise CallGone
                return None, {}
            full = decode_outputs(call, self.mem, done.ret)  # before the answer: the buffer is still ours
            if done.new_fd is not None and (sig := accept_fault_signal()):  # tests: the call goes away first
                v.send_signal(sig)
                for _ in range(2000):
                    if not v.notification_valid(stop):
                        break
                    time.sleep(0.0001)
            try:
                return answer(v, stop, done, self.fds.dups), full.outputs
            except CallGone:
                self.keep_unanswered(stop, done)
                return done.ret, full.outputs
        if not want_ret:
            v.resume()
            return None, {}
        v.resume(to_exit=True)
        after = v.wait()
        if after.kind is not StopKind.EXIT:
            if after.kind in ENDINGS:
                raise _Ended(after)
            raise MvxError(f"unexpected {after.kind.name} stop at the exit of {call.name}")
        if after.ret in RESTARTING:  # a signal came in the middle; suppressed, so the kernel makes it again
            v.resume()
            raise CallGone
        full = decode_outputs(call, self.mem, after.ret)
        v.resume()
        return full.ret, full.outputs


# ---- the leader ------------------------------------------------------------------------------------


class LeaderMonitor(Monitor):
    role = "leader"

    def __init__(self, argv: list[str], *, link: LeaderLink, lockstep: str = "sensitive", write_behind: bool = True,
                 **kw) -> None:
        super().__init__(argv, **kw)
        self.link = link
        write_behind = write_behind and lockstep == "sensitive"
        self.sync = LeaderSync(self.policy, lockstep, write_behind)
        self.outbox = Outbox(link) if write_behind else None

    def start(self) -> int:
        pid = super().start()
        if fast_wanted() and self.sync.lockstep == "sensitive" and lib.mvx_link_all_chans(self.link.native):
            self.fast = FastPath(self.variant, LEADER, self.policy, link=self.link, outbox=self.outbox,
                                 check_timeout=self.link.timeout + CHECK_GRACE)
        self.attach_agent()
        self.link.started(Started(pid))  # followers start theirs with this pid
        return pid

    def fast_ready(self) -> bool:
        return self.unanswered is None and not self.signals.deferred

    def wait(self) -> Stop:
        stop = super().wait()
        if self.fast is not None:
            self.link.report_lost()  # a send from C that failed: the session decides first
        return stop

    def after_fast(self, stop: Stop) -> None:
        if stop.kind is StopKind.FAST_NOTE:
            self.link.report_lost()
        elif stop.kind is StopKind.CHECK_LATE:
            call = self.call_of(stop)
            seq = self.sync.seq + 1
            late = sorted(i for i in self.link.live if self.link.checked(i) < seq)
            raise Divergence("timeout", seq, render(call), "(not reached)",
                             f"follower(s) {late} did not check the call within {self.link.timeout:g}s", late=tuple(late))
        elif stop.kind is StopKind.AGENT_LIED:  # its program wrote the agent's status page: fail closed
            why = ffi.string(lib.mvx_fast_error(self.fast.native)).decode(errors="replace")
            raise Divergence("agent", self.fast.seq() + 1, "(its in-process agent's claim)", "(not reached)", why)
        else:
            super().after_fast(stop)

    def kill(self) -> None:
        super().kill()
        if self.outbox is not None:
            self.outbox.close()

    def refusing(self) -> None:
        if self.outbox is not None:  # (each follower meets the same call after its checks: quick)
            self.outbox.drain(self.link.timeout + CHECK_GRACE)

    def foreign_signal(self, sig: int, info: bytes) -> None:
        self.signals.deferred.append((sig, info))

    def woken(self, sigs: list[tuple[int, bytes]]) -> None:
        self.link.publish(self.sync.signal_batch(sigs, "suspend"))

    def publish_late(self, call, ret: int, outputs: dict) -> None:
        self.link.publish(self.sync.record(call, ret, outputs, self.class_of(call), epoll=self.fds.epoll))

    def suspend(self, stop: Stop) -> None:
        """A call that waits for a signal (rt_sigsuspend, pause) sleeps in the variant: the signal
        that wakes it, or those deferred until now, are its point of sync (how="suspend")."""
        sigs = self.signals.take_deferred()
        if sigs:
            self.link.publish(self.sync.signal_batch(sigs, "suspend"))
            self.signals.deliver(stop, sigs, "suspend", self.let_run)
            return
        self.signals.awaiting = True
        self.let_run(stop)

    def on_call(self, stop: Stop) -> None:
        call = self.call_of(stop)
        if call.spec.traits.waits_for_signal and call.name in self.synced:
            self.suspend(stop)
            return
        if self.signals.deferred:
            # replicated just before this call, in every variant: one batch, delivered at one stop
            # (or left pending where the program blocks them all now: handled at its unblock)
            blocked = self.signals.all_blocked(self.signals.deferred)
            if blocked or self.signals.can_interrupt(stop, call):
                how = "pending" if blocked else self.signals.how_at(stop, call)
                sigs = self.signals.take_deferred()
                self.link.publish(self.sync.signal_batch(sigs, how))
                if not self.signals.deliver(stop, sigs, how):
                    return
        if call.name not in self.synced:  # (ptrace mode stops at every i386 socketcall)
            self.let_run(stop)
            return
        cls = self.class_of(call)
        data = self.file_bytes(call)
        content = data if data is None or isinstance(data, str) else content_digest(data)
        fd = call.args[0] if call.kinds and isinstance(call.kinds[0], Fd) and isinstance(call.args[0], int) else None
        fd_kind = self.fds.kind(fd) if fd is not None else None
        takes = self.signals.takes(call, fd_kind)
        # what it will take, read before it runs where its result is not learned (a notified read)
        pending = self.signals.pending_for(call) if takes and stop.kind is StopKind.NOTIFY else []
        plan = self.sync.plan(call, cls, content, fd_kind)
        if plan.hold and not isinstance(data, str):
            self.hold(stop, call, cls, plan, fd, data, content)
            return
        if plan.check is not None:
            self.link.check(plan.check)
        if plan.ends:
            self.link.publish(self.sync.record(call, None, cls=cls))
            self.let_run(stop)
            return
        held = self.unanswered
        ret, outputs = self.run_here(stop, call, plan.wants_ret)
        if self.unanswered is not held and self.unanswered.done.new_fd is not None:
            return  # a signal came before the new fd was installed: answer_again records it
        self.track(call, ret, outputs)
        if takes:  # every follower must find what it took pending at its same call, whoever sent them
            taken = self.signals.taken_by(call, ret) if ret is not None else None
            if taken is None:
                taken = pending
            if taken:
                self.link.publish(self.sync.signal_batch(taken, "taken"))
        self.link.publish(self.sync.record(call, ret, outputs, cls, content=content, epoll=self.fds.epoll))
        if stop.kind is StopKind.NOTIFY and ret == -errno.EPIPE and call.spec.traits.sends is not None:
            self.signals.pipe_broken(call)  # the monitor's write took the SIGPIPE the program's would

    def hold(self, stop: Stop, call, cls: str, plan, fd: int, file_data: bytes | None, content: str | None) -> None:
        """Write-behind (mvx.runtime.outbox): the followers check the call while the program runs
        on; its bytes (or its shutdown) leave through the monitor's duplicate of the fd once every
        follower agreed. The program sees its call done, with every byte taken."""
        traits = call.spec.traits
        writes, outputs, how = [], {}, None
        if traits.shuts_down:
            data, ret, how = b"", 0, getattr(socket, call.args[1])
        elif traits.sends_file:
            data, ret = file_data or b"", len(file_data or b"")
            writes, outputs = self._advance_sent_file(call, ret)
        else:
            data = sent_bytes(call)
            ret = len(data)
        mine = os.dup(self.fds.dups.get(fd))
        self.link.publish(plan.check)
        self.outbox.hold(Held(plan.check.seq, mine, data, how))
        try:
            inject(self.variant, stop, Recorded(ret, writes))
        except CallGone:  # a signal came first: the call is made again and gets this answer then
            self.keep_unanswered(stop, Performed(ret))
        self.link.publish(self.sync.record(call, ret, outputs, cls, content=content, epoll=self.fds.epoll))
        if self.fast is not None:
            self.fast_track(call, ret)

    def _advance_sent_file(self, call, n: int) -> tuple[list[tuple[int, bytes]], dict]:
        """What sendfile does to its file offset, done for it: the offset it points to moves by
        `n` (the new value is also the record's out-data), or the file's own position does."""
        names = call.spec.arg_names
        i = names.index("offset")
        ptr, offset = call.values[i], call.args[i]
        if isinstance(offset, int) and ptr:
            word = arch_of(call.arch).word_size
            size = 8 if call.kinds[i].size == "s64" else word
            ptr &= (1 << 8 * word) - 1
            return [(ptr, (offset + n).to_bytes(size, "little", signed=True))], {i: offset + n}
        os.lseek(self.fds.dups.get(call.args[names.index(call.spec.traits.sends_file)]), n, os.SEEK_CUR)
        return [], {}

    def ended(self, stop: Stop) -> Outcome:
        if self.stopping:
            return self.stopped_outcome()
        if self.outbox is not None:  # what the program wrote leaves before its end is told
            self.outbox.drain(self.link.timeout + 5)
        if stop.kind is StopKind.KILLED:
            outcome = Outcome(signal=stop.status)
            self.link.end(self.sync.exit_record(None, stop.status))
            if self.signals.ended_by_agreement(stop.status):  # every follower got it too: they must end alike
                return outcome
            outcome.divergence = Divergence("signal", self.sync.seq + 1, _ending(None, stop.status), "-",
                                            "the leader was killed by a signal")
            return outcome
        self.link.end(self.sync.exit_record(stop.status, None))
        return Outcome(status=stop.status)


# ---- a follower ------------------------------------------------------------------------------------


class FollowerMonitor(Monitor):
    role = "follower"

    def __init__(self, argv: list[str], *, inbox: Inbox, reply, end_timeout: float = 10.0, reply_chan=None,
                 **kw) -> None:
        super().__init__(argv, own_pids=True, own_files=True, **kw)  # a world of its own
        self.reply_chan = reply_chan  # the C side of the channel to the leader (None: TLS)
        self.end_timeout = end_timeout
        self.inbox = inbox
        self.reply = reply  # reply(message): thread-safe hand-off to the trio side
        self.sync = FollowerSync(self.policy)
        self._held = None  # a record read ahead, for the next synced call

    def start(self) -> int:
        """The follower's variant starts once the leader's exists, with the leader's pid (Started)."""
        while not isinstance(message := self.inbox.get(), Started):
            pass
        self.variant.as_pid = message.pid
        pid = super().start()
        if fast_wanted() and self.reply_chan is not None:
            self.fast = FastPath(self.variant, FOLLOWER, self.policy, inbox=self.inbox, reply_chan=self.reply_chan)
        self.attach_agent()
        return pid

    def fast_ready(self) -> bool:
        return self.unanswered is None and self._held is None

    def after_fast(self, stop: Stop) -> None:
        if stop.kind is StopKind.CHANNEL_END:
            self.inbox.ended()  # the session stops this monitor (or not, for a clean end it awaits)
        elif stop.kind is StopKind.AGENT_LIED:  # its program wrote the agent's status page: fail closed
            why = ffi.string(lib.mvx_fast_error(self.fast.native)).decode(errors="replace")
            raise Divergence("agent", self.fast.seq() + 1, "(the leader's records)", "(its in-process agent's claim)", why)
        else:
            super().after_fast(stop)

    def next_record(self, timeout: float | None = None, signals: bool = False):
        if self._held is not None:
            message, self._held = self._held, None
            return message
        wanted = (CallRecord, CheckRequest, End, SignalBatch) if signals else (CallRecord, CheckRequest, End)
        while True:
            message = self.inbox.get(timeout)
            if isinstance(message, wanted):
                return message

    def on_call(self, stop: Stop) -> None:
        record = self.next_record(signals=True)
        call = self.call_of(stop)
        while isinstance(record, SignalBatch):  # the leader took these signals just before this call
            if (record.how == "suspend") != call.spec.traits.waits_for_signal:
                leader = "(asleep until a signal)" if record.how == "suspend" else "(signals taken at a call)"
                raise Divergence("syscall", record.seq + 1, leader, render(call),
                                 "the leader woke from a call that waits for a signal; the follower makes another"
                                 if record.how == "suspend" else "the follower waits for a signal here")
            if record.how == "taken":  # the leader's call took these: this one must find them pending too
                self.signals.take_alike(_signals_of(record))
                record = self.next_record(signals=True)
                continue
            how = record.how if record.how in ("interrupt", "rewind", "pending", "suspend") else None
            if not self.signals.deliver(stop, _signals_of(record), how, self.let_run):
                return
            record = self.next_record(signals=True)  # pending: the call goes on
        if call.name not in self.synced:
            self._held = record
            self.let_run(stop)
            return
        draw = self.sync.small_draw
        if draw(call) and not (isinstance(record, CallRecord) and record.view[0] == call.name):
            self._held = record  # the follower's own extra draw of randomness: not a point of sync
            self.let_run(stop)
            return
        while isinstance(record, CallRecord) and draw(record) and call.name != record.view[0]:
            if (ack := self.sync.pass_over(record)) is not None:
                self.reply(ack)
            record = self.next_record()  # the leader's extra draw: passed over
        try:
            self.follow(stop, call, record)
        except CallGone:  # a signal from outside took the call away: its record waits for it
            self._held = record
            raise

    def follow(self, stop: Stop, call, record) -> None:
        cls = self.class_of(call)
        content = self.file_digest(call)
        fd = call.args[0] if call.kinds and isinstance(call.kinds[0], Fd) else None
        on_placeholder = self.fds.is_placeholder(fd)
        ran = None  # the result, when the call was made here at the check (FollowerSync.runs_first)
        while isinstance(record, CheckRequest):  # (again when the leader's call was interrupted and re-made)
            if (chosen := self.sync.chosen_name(call, record)) is not None:
                self.variant.write(*chosen)  # the leader's random name, in the follower's own buffer
                call = self.call_of(stop)
            checked = self.sync.check(call, record, content)
            if ran is None and not on_placeholder and self.sync.runs_first(call, cls):
                ran = self.run_here(stop, call, True)
                self.track(call, *ran)
            self.reply(checked)
            record = self.next_record()
        plan = self.sync.on_call(call, record, cls, content=content, mem=self.mem, arch=stop.arch,
                                 epoll=self.fds.epoll, on_placeholder=on_placeholder)
        if plan.ack is not None:
            self.reply(plan.ack)
            self.fds.drain_placeholders()
        if plan.action is Action.EXIT:
            self.let_run(stop)
        elif plan.action is Action.ANSWER:
            self.answer_from(stop, call, record, plan)
        else:
            if ran is not None:
                ret = ran[0]
            else:
                ret, outputs = self.run_here(stop, call, plan.compare_ret)
                self.track(call, ret, outputs)
            if on_placeholder and call.spec.traits.shadow == "close":
                self.fds.drop_placeholder(fd)
            elif ret is not None:
                self.sync.after_local(call, ret, record)

    def answer_from(self, stop: Stop, call, record: CallRecord, plan) -> None:
        """Do not execute the call: it returns the leader's result with the leader's out-data."""
        if stop.kind is StopKind.NOTIFY and not self.variant.notification_valid(stop):
            raise CallGone
        rec = Recorded(plan.ret, list(plan.writes), creates_fd=plan.creates_fd, cloexec=plan.cloexec,
                       nonblock=plan.nonblock)
        try:
            peer = inject(self.variant, stop, rec)
        except ReplayError as exc:
            raise Divergence("fd", record.seq, render_view(record.view, record.ret), render(call), str(exc)) from None
        if plan.creates_fd:  # before track: the C loop learns the new fd is a placeholder
            self.fds.adopt_placeholder(plan.ret, peer)
        self.track(call, plan.ret)

    def ended(self, stop: Stop) -> Outcome:
        """The follower's program ended: a signal is a divergence whatever the leader did; an exit
        must match the leader's, which must come within the timeout."""
        seq = self.sync.seq + 1
        if self.stopping:
            return self.stopped_outcome()
        if stop.kind is StopKind.KILLED and not self.signals.ended_by_agreement(stop.status):
            raise Divergence("signal", seq, "(the leader's next synced call)", _ending(None, stop.status),
                             f"the follower was killed by signal {stop.status}")
        try:
            record = self.next_record(timeout=self.end_timeout)
        except TimeoutError:
            raise Divergence("exit", seq, "(still running)", _ending(stop.status, None),
                             f"the follower ended; the leader did not within {self.end_timeout:g}s") from None
        if stop.kind is StopKind.KILLED:  # by a signal the leader took too
            self.sync.on_end(None, stop.status, record)
            return Outcome(signal=stop.status)
        self.sync.on_end(stop.status, None, record)
        return Outcome(status=stop.status)


# ---- one variant, traced ---------------------------------------------------------------------------


class TraceMonitor(Monitor):
    """`mvx trace`: one variant on the monitors' loop, each synced call printed strace-style with
    its result. The vDSO stays and signals are the program's own: a trace shows the program as it
    runs without mvx. The hot calls are carried and rendered by the C loop (mvx_trace.c: as
    mvx.isa.render renders them), the rest here; MVX_FAST=0 renders every call here."""

    role = "trace"
    hide_vdso = False
    report_signals = False

    def __init__(self, argv: list[str], *, out: TextIO, **kw) -> None:
        super().__init__(argv, **kw)
        self.out = out
        self.sync = _TraceSeq()

    def start(self) -> int:
        pid = super().start()
        if fast_wanted():
            self.fast = FastPath(self.variant, LEADER, self.policy)
            self.out.flush()
            lib.mvx_fast_set_trace(self.fast.native, self.out.fileno())
        return pid

    def run(self) -> Outcome:
        try:
            return super().run()
        finally:
            if self.fast is not None:
                lib.mvx_fast_trace_flush(self.fast.native)

    def emit(self, line: str) -> None:
        if self.fast is not None:  # the C loop's lines first: they came before
            lib.mvx_fast_trace_flush(self.fast.native)
        self.out.write(line + "\n")
        self.out.flush()

    def is_noise(self, stop: Stop) -> bool:
        """Every call of the program is shown, the loader's too; a forked child's are labelled."""
        if stop.pid == self.variant.pid:
            return False
        if stop.kind is StopKind.NOTIFY:
            self.emit(f"[pid {stop.pid}] {stop.name}(...) = ? <child process, not followed>")
        return True

    def on_call(self, stop: Stop) -> None:
        call = self.call_of(stop)
        if call.name not in self.synced:
            self.let_run(stop)
            return
        if call.spec.traits.ends:
            self.emit(render(call))
            self.let_run(stop)
            return
        try:
            ret, outputs = self.run_here(stop, call, True)
        except _Ended:
            self.emit(render(call))
            raise
        if self.fast is not None:  # the C loop's view of the fds follows (which it may carry)
            self.track(call, ret, outputs)
        if stop.kind is StopKind.NOTIFY and ret is None:
            self.emit(render(call) + " <ran in the variant>")
            return
        self.emit(render(replace(call, ret=ret, outputs=outputs)))

    def ended(self, stop: Stop) -> Outcome:
        if stop.kind is StopKind.EXITED:
            self.emit(f"+++ exited with {stop.status} +++")
            return Outcome(status=stop.status)
        self.emit(f"+++ killed by {signal.Signals(stop.status).name} +++")
        return Outcome(signal=stop.status)


@dataclass
class _TraceSeq:
    """A trace has no records to number; the C loop's counter is kept here as the roles keep theirs."""

    seq: int = 0


def _cpu_seconds() -> float:
    """CPU time of the whole monitor process, every thread (the pumps and the outbox included)."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    return cpu.ru_utime + cpu.ru_stime


def _call_key(stop: Stop) -> tuple:
    return (stop.pid, stop.nr, tuple(stop.args))


def _signals_of(batch: SignalBatch) -> list[tuple[int, bytes]]:
    """The batch's signals: [(signal, siginfo or b"")]."""
    return [(int(sig), bytes(info) if isinstance(info, bytes) and len(info) == 128 else b"")
            for sig, info in batch.sigs]


def _ending(status: int | None, sig: int | None) -> str:
    if sig is not None:
        return f"+++ killed by signal {sig} +++"
    return f"+++ exited with {status} +++"
