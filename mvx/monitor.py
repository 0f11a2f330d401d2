"""The monitors: one thread per variant drives it through the sync rules (mvx.sync).

A monitor thread owns its Variant (ptrace answers only the thread that started the tracee) and
talks to the rest of the session only through a link:

- the leader's `LeaderLink.publish(record)` hands a record to every follower's outbox (bounded by
  a window of unacknowledged records: backpressure), and `check(request)` blocks until every
  follower has reached the same call with the same arguments (lockstep);
- a follower's `FollowerLink` gives it the leader's messages in order (`next`) and carries its
  replies (acks, checks, divergences, its ending).

The trio side (mvx.session) moves these messages over the channel. A divergence found here is
raised as `sync.Divergence`; an ending forced from outside (another variant diverged, a signal, the
channel broke) reaches the thread as `Stopped`."""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

from mvx import MvxError
from mvx.canonical import RawSyscall, decode_outputs, normalize
from mvx.engine import CallGone, Mode, Stop, StopKind, TraceeMemory, Trap, TrapSet, Variant, host_arch
from mvx.outputs import (
    CLOCK_READS,
    EpollRegistry,
    OutputError,
    clock_answer,
    clock_reading,
    epoll_ctl_data,
    epoll_events_to_fds,
    pack,
    unpack,
    writes_for,
)
from mvx.policy import Policy
from mvx.procinfo import FdKinds, LoaderRange
from mvx.proxy import FdCache, Performed, answer, can_perform, perform
from mvx.render import render
from mvx.replay import Recorded, ReplayError, inject
from mvx.sync import WORD_SIZED, Action, Divergence, FollowerSync, LeaderSync, word_sized
from mvx.syscalls import Fd, FlagSet

ENDINGS = (StopKind.EXITED, StopKind.KILLED)
EXITING = frozenset({"exit", "exit_group"})
# calls a monitor lets run without learning their result when they are in the local class (their
# result is not compared, and a hybrid monitor then needs no exit stop): they only change the
# variant's own fd table
CONTINUE_OK = frozenset({"close", "epoll_ctl"})
# calls a follower runs even on a placeholder fd: they only touch its own fd table
RUN_ON_PLACEHOLDER = frozenset({"close", "epoll_ctl"})
# calls a follower always executes, whatever their class (the seed answers close from the
# leader's result): skipping them would leave the follower's fd table apart from the leader's
ALWAYS_RUN_BY_FOLLOWER = frozenset({"close"})
# classes whose follower side never executes (answered from the leader's record)
NOT_EXECUTED = frozenset({"replicated", "retval_only", "checked_output"})
ACK_EVERY = 16
# signals a variant raises by its own fault: delivered where they happen (a crash is then a
# divergence); every other signal comes from outside and is replicated (docs/DESIGN.md, signals)
SYNCHRONOUS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP,
                         signal.SIGSYS})


class Stopped(Exception):
    """The session is ending from outside this monitor; `reason` says why."""

    def __init__(self, reason: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason


# calls that can block, so a signal may natively interrupt them (EINTR or a restart)
INTERRUPTIBLE = frozenset({"epoll_pwait", "epoll_pwait2", "ppoll", "pselect6", "read", "readv", "recvfrom",
                           "recvmsg", "accept4", "connect", "write", "writev", "sendto", "sendmsg", "sendfile",
                           "nanosleep", "clock_nanosleep", "wait4", "pause", "rt_sigsuspend", "futex"})


@dataclass
class Unanswered:
    """A call the monitor performed for its variant whose answer found the call gone (a signal
    interrupted the wait; the kernel restarts it). Its effects happened (bytes read, a connection
    accepted) and its record is out: the restarted call gets this result, it is not made twice."""
    key: tuple
    done: Performed


# The kernel's restart codes (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK): seen
# at a syscall-exit stop, they mean a signal interrupted the call and it is about to be made again
# (no handler runs for a signal the monitor suppresses); never a result.
RESTARTING = host_arch().restart_codes  # generated: KERNEL_CONSTS of mvx/archdata


class _Ended(Exception):
    def __init__(self, stop: Stop) -> None:
        self.stop = stop


def trap_set(mode: Mode, policy: Policy, role: str) -> TrapSet:
    """Which synced calls reach the monitor how. Hybrid: by user notification when the monitor can
    finish the call itself (the leader performs it, a follower answers it from the record), by
    RET_TRACE when the call must run in the variant and its result is needed."""
    if mode is not Mode.HYBRID:
        return TrapSet({n: Trap.TRACE for n in policy.synced()})
    rules = {}
    for name in policy.synced():
        cls = policy.class_of(name)
        answered = role == "follower" and cls in NOT_EXECUTED and name not in policy.file_local
        monitor_finishes = (name in CONTINUE_OK and cls == "local") or can_perform(name) or answered
        rules[name] = Trap.NOTIFY if monitor_finishes else Trap.TRACE
    return TrapSet(rules)


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
    """What the leader's and the followers' monitors share: the variant, its memory, and what the
    monitor tracks of its fd table (kinds, epoll registrations, fd duplicates)."""

    role = "?"

    def __init__(self, argv: list[str], *, mode: Mode, policy: Policy, cpu: int | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 stdio: tuple[int | None, int | None, int | None] = (None, None, None),
                 isolate_net: bool = False) -> None:
        self.policy = policy
        self.mode = mode
        self.variant = Variant(argv, mode=mode, traps=trap_set(mode, policy, self.role), cpu=cpu, env=env, cwd=cwd,
                               stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], isolate_net=isolate_net,
                               hide_vdso=True, report_signals=True)
        self.epoll = EpollRegistry()
        self.kinds: FdKinds | None = None
        self.loader: LoaderRange | None = None
        self.fds: FdCache | None = None
        self.mem: TraceeMemory | None = None
        self.synced = policy.synced()
        self.in_wait = False  # the thread is waiting for the variant (a follower's watchdog reads it)
        self.stopping: str | None = None
        self.stop_divergence: Divergence | None = None
        self.releasing: list[tuple[int, bytes]] = []  # signals this monitor sent its variant, to deliver
        self.replicated: set[int] = set()  # replicated signals delivered (one may end the program)
        self.restart_on_delivery = False  # the notified call our signal interrupts is to be made again
        self.unanswered: Unanswered | None = None

    def start(self) -> int:
        pid = self.variant.start()
        self.kinds, self.loader = FdKinds(pid), LoaderRange(pid, self.variant.read)
        self.fds, self.mem = FdCache(self.variant), TraceeMemory(self.variant)
        return pid

    def kill(self) -> None:
        self.variant.kill()
        if self.fds:
            self.fds.close()

    def stop(self, reason: str, divergence: Divergence | None = None) -> None:
        """From another thread: end this monitor's run now (the variant is killed; the run returns
        an Outcome with `stopped`, and `divergence` when the stop is one)."""
        if self.stopping is None:
            self.stopping, self.stop_divergence = reason, divergence
        pid = self.variant.pid
        if pid > 0 and self.variant.alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stopped_outcome(self) -> Outcome:
        return Outcome(stopped=self.stopping, divergence=self.stop_divergence)

    def run(self) -> Outcome:
        """Drive the variant until its program ends or the session stops; never leaves it running."""
        try:
            self.start()
            while True:
                self.in_wait = True
                stop = self.variant.wait()
                self.in_wait = False
                if stop.kind in ENDINGS:
                    return self.ended(stop)
                if stop.kind is StopKind.SIGNAL:
                    self.on_signal(stop.status)
                    continue
                if not stop.is_syscall:
                    self.variant.resume()
                    continue
                if self.is_noise(stop):
                    self.let_run(stop)
                    continue
                if self.unanswered is not None:
                    self.answer_again(stop)
                    continue
                try:
                    self.on_call(stop)
                except _Ended as ended:
                    return self.ended(ended.stop)
                except CallGone:
                    continue
        except Divergence as d:
            return self.stopped_outcome() if self.stopping else Outcome(divergence=d)
        except Stopped as s:
            return self.stopped_outcome() if self.stopping else Outcome(stopped=s.reason)
        except (OSError, MvxError):
            if self.stopping:  # the variant vanished under a request we were making
                return self.stopped_outcome()
            raise
        finally:
            self.in_wait = False
            self.kill()

    def on_call(self, stop: Stop) -> None:
        raise NotImplementedError

    def ended(self, stop: Stop) -> Outcome:
        raise NotImplementedError

    def file_digest(self, call) -> str | None:
        """sendfile: a digest of the file bytes it is about to send (its arguments alone do not
        say what leaves the machine), read through a duplicate of the variant's in_fd."""
        if call.name != "sendfile" or not isinstance(call.args[1], int):
            return None
        count = call.args[3] if isinstance(call.args[3], int) else 0
        try:
            mine = self.fds.get(call.args[1])
            offset = call.args[2] if isinstance(call.args[2], int) else os.lseek(mine, 0, os.SEEK_CUR)
            data = os.pread(mine, min(count, 64 << 20), offset)
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        return hashlib.sha256(data).hexdigest()

    # ---- signals ----------------------------------------------------------------------------------
    def on_signal(self, sig: int) -> None:
        """A signal is about to be delivered to the variant (ptrace signal-delivery stop)."""
        if sig in SYNCHRONOUS:
            self.variant.resume()  # delivered where it happened
            return
        for i, (mine, info) in enumerate(self.releasing):
            if mine == sig:  # one of ours, at the point chosen for it, as the original was sent
                del self.releasing[i]
                self.replicated.add(sig)
                if info:
                    self.variant.set_siginfo(info)
                if self.restart_on_delivery:
                    self.restart_on_delivery = False
                    self.variant.restart_interrupted()
                self.variant.resume()
                return
        info = self.variant.siginfo()
        self.variant.deliver_signal(0)
        self.variant.resume()
        self.foreign_signal(sig, info)

    def foreign_signal(self, sig: int, info: bytes) -> None:
        """A signal from outside, suppressed; the leader replicates it, a follower ignores it."""

    def deliver_signals(self, stop: Stop, sigs: list[tuple[int, bytes]], how: str | None = None) -> None:
        """Deliver `sigs` ([(signal, siginfo)]) just before the call at `stop`, the leader's way
        (`how`, default by this stop's kind): "interrupt" a notified call as a real blocking call
        is (the kernel restarts it or returns EINTR, per SA_RESTART), or "rewind" it: not run now,
        made again after the handlers (a ptrace stop is rewound; a notified call is restarted at
        the signal-delivery stop). Every variant must do what the leader did, or one sees EINTR
        where another makes the call."""
        how = how or ("interrupt" if stop.kind is StopKind.NOTIFY else "rewind")
        self.releasing.extend(sigs)
        self.restart_on_delivery = stop.kind is StopKind.NOTIFY and how == "rewind"
        for sig, _ in sigs:
            self.variant.send_signal(sig)
        if stop.kind is not StopKind.NOTIFY:
            self.variant.rewind(stop)  # (a ptrace-stopped call cannot be interrupted; see DESIGN.md)

    # ---- per call ---------------------------------------------------------------------------------
    def call_of(self, stop: Stop):
        return normalize(RawSyscall(stop.arch.name, stop.nr, stop.args), self.mem)

    def is_noise(self, stop: Stop) -> bool:
        """Startup noise: the dynamic loader's own calls (procinfo), and calls of forked children
        (not followed; docs/DESIGN.md)."""
        return stop.pid != self.variant.pid or self.loader.contains(stop.ip)

    def synced_call(self, stop: Stop):
        """The canonical call of a stop, or None when the policy does not sync it (ptrace mode
        stops at every i386 socketcall, whatever its sub-call)."""
        call = self.call_of(stop)
        return call if call.name in self.synced else None

    def class_of(self, call) -> str:
        kind = None
        if call.name in self.policy.file_local and isinstance(call.args[0], int):
            kind = self.kinds.get(call.args[0])
        return self.policy.class_of(call.name, kind) or "local"

    def let_run(self, stop: Stop) -> None:
        if stop.kind is StopKind.NOTIFY:
            self.variant.continue_call(stop)
        else:
            self.variant.resume()

    def track(self, call, ret: int | None) -> None:
        """Keep the monitor's view of the fd table current."""
        name = call.name
        if name == "epoll_ctl":
            self.epoll.on_ctl(call.args[0], call.args[1], call.args[2], epoll_ctl_data(call))
        elif name == "close" and isinstance(call.args[0], int):
            self.epoll.on_close(call.args[0])
            self.kinds.forget(call.args[0])
        elif name == "dup3" or name == "dup2":
            self.kinds.forget(call.args[1])
        if ret is not None and ret >= 0 and isinstance(call.spec.ret, Fd):
            self.kinds.forget(ret)
        elif name in ("pipe2", "socketpair"):
            self.kinds = FdKinds(self.variant.pid)  # two new fds; cheap to rebuild
        elif name in ("execve", "execveat"):
            self.loader.reset()

    def answer_again(self, stop: Stop) -> None:
        """The restarted copy of an unanswered performed call gets its result (mvx.proxy.answer).
        Any other call means the result was lost: the variants can no longer agree (fail closed)."""
        pending, self.unanswered = self.unanswered, None
        if stop.kind is StopKind.NOTIFY and _call_key(stop) == pending.key:
            try:
                answer(self.variant, stop, pending.done)
            except CallGone:
                self.unanswered = pending
            return
        if pending.done.new_fd is not None:
            os.close(pending.done.new_fd)
        raise MvxError(f"a call performed for the variant was interrupted and not made again "
                       f"(syscall {pending.key[1]}): its result is lost")

    def run_here(self, stop: Stop, call, want_ret: bool) -> tuple[int | None, dict]:
        """Execute the call in this variant (or in the monitor on its behalf, hybrid); its result
        when known (`want_ret` asks for it where that costs an exit stop), and its outputs."""
        v = self.variant
        if stop.kind is StopKind.NOTIFY:
            done = perform(v, stop, call, self.fds) if can_perform(call.name) else None
            if done is None:
                if not v.continue_call(stop) and not v.notification_valid(stop):
                    raise CallGone
                return None, {}
            full = decode_outputs(call, self.mem, done.ret)  # before the answer: the buffer is still ours
            try:
                return answer(v, stop, done), full.outputs
            except CallGone:
                self.unanswered = Unanswered(_call_key(stop), done)
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
        if after.ret in RESTARTING:  # a signal came in the middle; suppressed, so the kernel makes the call again
            v.resume()
            raise CallGone
        full = decode_outputs(call, self.mem, after.ret)
        v.resume()
        return full.ret, full.outputs


# ---- the leader ------------------------------------------------------------------------------------


class LeaderLink:
    """The leader thread's side of its followers (methods called from the thread unless noted)."""

    def __init__(self, followers: int, send, window: int = 256, timeout: float = 10.0) -> None:
        self._send = send  # send(index, message): thread-safe hand-off to the trio side
        self.window = window
        self.timeout = timeout
        self.live = set(range(followers))
        self.acked = [0] * followers
        self.checked = [0] * followers
        self.cond = threading.Condition()
        self.failure: BaseException | None = None

    def publish(self, message: dict) -> None:
        seq = message.get("seq", 0)
        with self.cond:
            while self.failure is None and any(seq - self.acked[i] > self.window for i in self.live):
                self.cond.wait(0.5)
            if self.failure is not None:
                raise self.failure
            live = sorted(self.live)
        for i in live:
            self._send(i, message)

    def check(self, request: dict) -> None:
        """Block until every live follower has checked `request` (lockstep)."""
        seq = request["seq"]
        self.publish(request)
        deadline = time.monotonic() + self.timeout + 5.0  # a follower's own watchdog fires first
        with self.cond:
            while self.failure is None and any(self.checked[i] < seq for i in self.live):
                left = deadline - time.monotonic()
                if left <= 0:
                    late = sorted(i for i in self.live if self.checked[i] < seq)
                    raise Divergence("timeout", seq, request.get("line", "?"), "(not reached)",
                                     f"follower(s) {late} did not check the call within {self.timeout:g}s")
                self.cond.wait(min(left, 0.5))
            if self.failure is not None:
                raise self.failure

    def end(self, message: dict) -> None:
        """The leader's program ended: tell every follower (no window: nothing more follows)."""
        with self.cond:
            live = sorted(self.live)
        for i in live:
            self._send(i, message)

    # called from the trio side
    def on_ack(self, i: int, seq: int) -> None:
        with self.cond:
            self.acked[i] = max(self.acked[i], seq)
            self.cond.notify_all()

    def on_checked(self, i: int, seq: int) -> None:
        with self.cond:
            self.checked[i] = max(self.checked[i], seq)
            self.acked[i] = max(self.acked[i], seq - 1)
            self.cond.notify_all()

    def detach(self, i: int) -> None:
        """A follower left the session (alert policy, or it ended): no longer waited for."""
        with self.cond:
            self.live.discard(i)
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.failure is None:
                self.failure = exc
            self.cond.notify_all()


class LeaderMonitor(Monitor):
    role = "leader"

    def __init__(self, argv: list[str], *, link: LeaderLink, lockstep: str = "sensitive", **kw) -> None:
        super().__init__(argv, **kw)
        self.link = link
        self.lockstep = lockstep
        self.sync = LeaderSync(self.policy)
        self.deferred: list[tuple[int, bytes]] = []  # signals from outside, replicated at the next synced call

    def foreign_signal(self, sig: int, info: bytes) -> None:
        self.deferred.append((sig, info))

    def can_interrupt(self, stop: Stop) -> bool:
        """Whether a signal may be delivered at this stop: a ptrace-stopped call is rewound (it is
        made again after the handler), but a notified call is interrupted, which only a call that
        can block does natively (close never returns EINTR): others wait for a later call."""
        if stop.kind is not StopKind.NOTIFY:
            return True
        call = self.call_of(stop)
        return call.name in INTERRUPTIBLE

    def on_call(self, stop: Stop) -> None:
        if self.deferred and self.can_interrupt(stop):  # replicated just before this call, in every variant
            sigs, self.deferred = _pending(self.deferred), []
            how = "interrupt" if stop.kind is StopKind.NOTIFY else "rewind"
            self.link.publish({"t": "signal", "sigs": [[sig, info] for sig, info in sigs], "seq": self.sync.seq,
                               "how": how})  # one batch: delivered at one stop in every variant
            self.deliver_signals(stop, sigs, how)
            return
        call = self.synced_call(stop)
        if call is None:
            self.let_run(stop)
            return
        cls = self.class_of(call)
        content = self.file_digest(call)
        if self.sync.needs_lockstep(call, self.lockstep, cls):
            request = self.sync.check_request(call)
            if content:
                request["content"] = content
            self.link.check(request)
        if call.name in EXITING:
            self.link.publish(self.sync.record(call, None, cls=cls))
            self.let_run(stop)
            return
        want_ret = not (call.name in CONTINUE_OK and cls == "local")
        ret, outputs = self.run_here(stop, call, want_ret)
        self.track(call, ret)
        record = self.sync.record(call, ret, self.wire_outputs(call, cls, ret, outputs), cls)
        if content:
            record["content"] = content
        if call.name in CLOCK_READS:
            record["clock"] = clock_reading(call, ret, outputs)
        self.link.publish(record)

    def wire_outputs(self, call, cls: str, ret: int | None, outputs: dict) -> dict:
        """What a follower needs to reproduce the call's out-data, ISA-neutral (mvx.outputs)."""
        if cls not in NOT_EXECUTED or ret is None or ret < 0 or not outputs:
            return {}
        wire = {}
        for i, value in outputs.items():
            if call.kinds[i].__class__.__name__ == "StructArray" and call.kinds[i].layout == "epoll_event":
                try:
                    wire[str(i)] = epoll_events_to_fds(value, call.args[0], self.epoll)
                except OutputError as exc:
                    raise Divergence("arguments", self.sync.seq + 1, render(call, ret), "-", str(exc)) from None
            else:
                wire[str(i)] = pack(value)
        return wire

    def ended(self, stop: Stop) -> Outcome:
        if self.stopping:
            return self.stopped_outcome()
        if stop.kind is StopKind.KILLED:
            outcome = Outcome(signal=stop.status)
            self.link.end(self.sync.exit_record(None, stop.status))
            if stop.status in self.replicated:  # every follower got it too: they must end alike
                return outcome
            outcome.divergence = Divergence("signal", self.sync.seq + 1, _ending(None, stop.status), "-",
                                            "the leader was killed by a signal")
            return outcome
        self.link.end(self.sync.exit_record(stop.status, None))
        return Outcome(status=stop.status)


# ---- a follower ------------------------------------------------------------------------------------


class Inbox:
    """Messages from the trio side to a follower thread, in order; the watchdog reads how long the
    oldest has waited."""

    def __init__(self) -> None:
        self._q: collections.deque[tuple[float, dict]] = collections.deque()
        self._cond = threading.Condition()
        self._closed: str | None = None

    def put(self, message: dict) -> None:
        with self._cond:
            self._q.append((time.monotonic(), message))
            self._cond.notify()

    def close(self, reason: str) -> None:
        with self._cond:
            if self._closed is None:
                self._closed = reason
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._q and self._closed is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            if self._closed is not None:
                raise Stopped(self._closed)
            return self._q.popleft()[1]

    def oldest_wait(self) -> float:
        """Seconds the oldest undelivered message has waited (0 when none)."""
        with self._cond:
            return time.monotonic() - self._q[0][0] if self._q else 0.0


class FollowerMonitor(Monitor):
    role = "follower"

    def __init__(self, argv: list[str], *, inbox: Inbox, reply, end_timeout: float = 10.0, **kw) -> None:
        super().__init__(argv, **kw)
        self.end_timeout = end_timeout
        self.inbox = inbox
        self.reply = reply  # reply(message): thread-safe hand-off to the trio side
        self.sync = FollowerSync(self.policy)
        self.placeholders: set[int] = set()
        self._peers: dict[int, socket.socket] = {}  # placeholder fd -> the monitor's end
        self._held: dict | None = None  # a record read ahead, for the next synced call

    def kill(self) -> None:
        super().kill()
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()

    def next_record(self, timeout: float | None = None, signals: bool = False) -> dict:
        if self._held is not None:
            message, self._held = self._held, None
            return message
        while True:
            message = self.inbox.get(timeout)
            if message.get("t") in ("call", "check", "end") or (signals and message.get("t") == "signal"):
                return message

    def on_call(self, stop: Stop) -> None:
        record = self.next_record(signals=True)
        if record["t"] == "signal":  # the leader took these signals just before this call
            how = record.get("how")
            self.deliver_signals(stop, _signals_of(record), how if how in ("interrupt", "rewind") else None)
            return
        call = self.synced_call(stop)
        if call is None:
            self._held = record
            self.let_run(stop)
            return
        try:
            self.follow(stop, call, record)
        except CallGone:  # a signal from outside took the call away: its record waits for it
            self._held = record
            raise

    def follow(self, stop: Stop, call, record: dict) -> None:
        cls = self.class_of(call)
        content = self.file_digest(call)
        while record["t"] == "check":  # (again when the leader's call was interrupted and re-made)
            self.sync.check(call, record)
            self.check_content(call, record, content)
            self.reply({"t": "checked", "seq": record["seq"]})
            record = self.next_record()
        decision = self.sync.on_call(call, record, cls)
        self.check_content(call, record, content)
        if record["seq"] % ACK_EVERY == 0:
            self.reply({"t": "ack", "seq": record["seq"]})
            if self._peers:
                self.drain_placeholders()
        if decision.action is Action.EXIT:
            self.let_run(stop)
            return
        fd = call.args[0] if call.kinds and isinstance(call.kinds[0], Fd) else None
        if decision.action is not Action.RUN and call.name not in ALWAYS_RUN_BY_FOLLOWER:
            self.answer_from(stop, call, record)
            return
        on_placeholder = fd in self.placeholders
        if on_placeholder and call.name not in RUN_ON_PLACEHOLDER and record.get("ret") is not None:
            self.answer_from(stop, call, record)  # nothing is ever executed on a placeholder
            return
        ret, _ = self.run_here(stop, call, self.sync.compares_ret(call, record) and not on_placeholder)
        self.track(call, ret)
        if on_placeholder and call.name == "close":
            self.placeholders.discard(fd)
            peer = self._peers.pop(fd, None)
            if peer:
                peer.close()
        elif ret is not None:
            self.sync.after_local(call, ret, record)

    def check_content(self, call, record: dict, content: str | None) -> None:
        if record.get("content") != content:
            raise Divergence("arguments", record["seq"], record.get("line", "?"), render(call),
                             f"{call.name}: the file bytes it sends differ (sha256 leader "
                             f"{str(record.get('content'))[:16]}, follower {str(content)[:16]})")

    def answer_from(self, stop: Stop, call, record: dict) -> None:
        """Do not execute the call: it returns the leader's result with the leader's out-data."""
        if stop.kind is StopKind.NOTIFY and not self.variant.notification_valid(stop):
            raise CallGone
        ret = record.get("ret")
        if ret is None:
            raise Divergence("arguments", record["seq"], record.get("line", "?"), render(call),
                             "the leader's monitor could not learn this call's result, so it cannot be replayed")
        try:
            if call.name in CLOCK_READS and record.get("clock"):
                ret, writes = clock_answer(call, record["clock"], stop.arch)
            else:
                outputs = {k: unpack(v) for k, v in (record.get("outputs") or {}).items()}
                writes = writes_for(call, outputs, self.mem, stop.arch, epoll=self.epoll)
        except (OutputError, OSError, MvxError) as exc:
            raise Divergence("arguments", record["seq"], record.get("line", "?"), render(call), str(exc)) from None
        if ret >= 0 and word_sized(call):  # one word each (sync._same_words): ours is filled
            ret = call.args[call.spec.arg_names.index(WORD_SIZED[call.name])]
            writes = [(addr, (data * ret)[:ret]) for addr, data in writes if data]  # a shorter word repeated
        creates_fd = isinstance(call.spec.ret, Fd) and ret >= 0
        flags = _flag_names(call)
        rec = Recorded(ret, writes, creates_fd=creates_fd,
                       cloexec=bool(flags & {"SOCK_CLOEXEC", "O_CLOEXEC", "EPOLL_CLOEXEC"}),
                       nonblock=bool(flags & {"SOCK_NONBLOCK", "O_NONBLOCK"}))
        try:
            peer = inject(self.variant, stop, rec)
        except ReplayError as exc:
            raise Divergence("fd", record["seq"], record.get("line", "?"), render(call), str(exc)) from None
        self.track(call, ret)
        if creates_fd:
            self.adopt_placeholder(ret, peer)

    def adopt_placeholder(self, fd: int, peer: socket.socket | None = None) -> None:
        """Keep the other end of the inert socket just placed at `fd` (connect one first when the
        replay made a lone socket: ptrace), so a program whose policy lets it write there (the
        seed's) writes into nothing instead of failing."""
        self.placeholders.add(fd)
        old = self._peers.pop(fd, None)
        if old:
            old.close()
        if peer is not None:
            peer.setblocking(False)
            self._peers[fd] = peer
            return
        mine = self.variant.grab_fd(fd)
        # a path, not an abstract name: the placeholder may live in the follower's own network
        # namespace, and abstract AF_UNIX names do not cross namespaces
        with tempfile.TemporaryDirectory(prefix="mvx-ph-") as tmp:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(os.path.join(tmp, "s"))
                listener.listen(1)
                target = socket.socket(fileno=mine)
                try:
                    target.connect(listener.getsockname())
                finally:
                    target.detach()
                    os.close(mine)
                peer, _ = listener.accept()
            finally:
                listener.close()
        peer.setblocking(False)
        self._peers[fd] = peer

    def drain_placeholders(self) -> None:
        for peer in self._peers.values():
            try:
                while peer.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass

    def ended(self, stop: Stop) -> Outcome:
        """The follower's program ended: a signal is a divergence whatever the leader did; an exit
        must match the leader's, which must come within the timeout."""
        seq = self.sync.seq + 1
        if self.stopping:
            return self.stopped_outcome()
        if stop.kind is StopKind.KILLED and stop.status not in self.replicated:
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


def _pending(sigs: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The signals a batch delivers: a standard signal is pending at most once (the kernel merges
    repeats; delivered one by one, how many a variant takes would depend on timing), real-time
    signals queue."""
    seen: set[int] = set()
    out = []
    for sig, info in sigs:
        if sig < 32:
            if sig in seen:
                continue
            seen.add(sig)
        out.append((sig, info))
    return out


def _call_key(stop: Stop) -> tuple:
    return (stop.pid, stop.nr, tuple(stop.args))


def _signals_of(record: dict) -> list[tuple[int, bytes]]:
    """The batch of a leader's "signal" record: [(signal, siginfo or b"")]."""
    out = []
    for sig, info in record.get("sigs") or []:
        out.append((int(sig), bytes(info) if isinstance(info, bytes) and len(info) == 128 else b""))
    return out


def _flag_names(call) -> set[str]:
    names: set[str] = set()
    for a in call.args:
        if isinstance(a, FlagSet):
            names |= a.names
    return names


def _ending(status: int | None, sig: int | None) -> str:
    if sig is not None:
        return f"+++ killed by signal {sig} +++"
    return f"+++ exited with {status} +++"
