"""Signal replication: a signal from outside reaches every variant just before the same synced
call, the leader's way (docs/DESIGN.md, signals). The leader's monitor suppresses it where it
arrives and defers it to its next call that may take it; every variant then gets the same batch
at that call. A signal a variant raises by its own fault is delivered where it happens (a crash
is then a divergence), and so is one it sends itself (kill, tgkill, sigqueue to its own pid): it
is part of the program's own behaviour, which every variant repeats, so each takes its own."""

from __future__ import annotations

import errno
import os
import signal
import struct

from mvx.isa.arch import get as arch_of
from mvx.isa.canonical import signal_number
from mvx.mechanics.engine import Stop, StopKind, host_arch
from mvx.mechanics.procinfo import blocked_signals, pending_signals, signalfd_mask

# a ptrace-stopped call can be made to look interrupted by a signal (mvx_interrupted_by_signal)
INTERRUPTS_AT_PTRACE_STOPS = host_arch().name in ("x86_64", "i386")
SYNCHRONOUS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP,
                         signal.SIGSYS})
# si_code of a signal sent by a process (kill, sigqueue, tgkill/tkill); the sender's pid follows
SI_USER, SI_QUEUE, SI_TKILL = 0, -1, -6
# sent by the kernel as if by the process itself (SI_USER, its own pid) on a call that fails: a
# follower does not make the leader's writes, so these stay replicated from the leader
ON_BEHALF = frozenset({signal.SIGPIPE, signal.SIGXFSZ})
# the monitor's siginfo layout (a 64-bit host): si_signo, si_errno, si_code, then the union at 16
_HEAD = struct.Struct("<iii4xi")


class SignalRelay:
    """One variant's signals: those the monitor sent it to deliver at a chosen point, those it
    delivered (one may end the program), and (the leader's) those deferred to the next call."""

    def __init__(self, variant) -> None:
        self.variant = variant
        self.releasing: list[tuple[int, bytes]] = []  # sent to the variant, to deliver
        self.replicated: set[int] = set()  # replicated signals delivered
        self.restart_on_delivery = False  # the notified call our signal interrupts is to be made again
        self.interrupt_nr: int | None = None  # the skipped ptrace-stopped call our signal interrupts
        self.deferred: list[tuple[int, bytes]] = []  # from outside, replicated at the next synced call
        self.own: set[int] = set()  # signals the variant sent itself, delivered where they came
        # (the leader's) the program sleeps in a call that waits for a signal (Traits.waits_for_signal):
        # one from outside is delivered at once, and `woke` holds it for the followers
        self.awaiting = False
        self.woke: list[tuple[int, bytes]] = []

    def ended_by_agreement(self, sig: int) -> bool:
        """Whether a variant killed by `sig` ended as every variant does: by a replicated signal,
        or by one it sent itself (abort, raise), which every variant sends."""
        return sig in self.replicated or sig in self.own

    def sent_by_itself(self, sig: int, info: bytes) -> bool:
        """A signal the variant sent itself: a process-sent code and the variant's own pid as the
        variant sees it (a follower, in its pid namespace, has the leader's pid)."""
        if sig in ON_BEHALF or len(info) < _HEAD.size:
            return False
        signo, _, code, pid = _HEAD.unpack_from(info)
        return signo == sig and code in (SI_USER, SI_QUEUE, SI_TKILL) and pid == self.variant.own_pid

    def on_signal(self, sig: int) -> tuple[int, bytes] | None:
        """A signal is about to be delivered to the variant (ptrace signal-delivery stop); the
        variant is resumed. Returns (signal, siginfo) of one from outside, which was suppressed."""
        v = self.variant
        if sig in SYNCHRONOUS:
            v.resume()  # delivered where it happened
            return None
        info = v.siginfo()
        if self.sent_by_itself(sig, info):  # the program's own: delivered here, in every variant alike
            self.own.add(sig)
            v.resume()
            return None
        for i, (mine, original) in enumerate(self.releasing):
            if mine == sig:  # one of ours, at the point chosen for it, as the original was sent
                del self.releasing[i]
                self.replicated.add(sig)
                if original:
                    v.set_siginfo(original)
                if self.restart_on_delivery:
                    self.restart_on_delivery = False
                    v.restart_interrupted()
                if self.interrupt_nr is not None:  # once: a second signal's stop is in its handler
                    nr, self.interrupt_nr = self.interrupt_nr, None
                    v.interrupted_by_signal(nr)
                v.resume()
                return None
        if self.awaiting:  # it ends the sleep: taken here, and the followers' same call takes it too
            self.awaiting = False
            self.replicated.add(sig)
            self.woke.append((sig, info))
            v.resume()
            return None
        v.deliver_signal(0)
        v.resume()
        return sig, info

    def how_at(self, stop: Stop, call) -> str:
        """How signals are delivered just before `call` at `stop` (a call that can take them):
        "interrupt" a call that can block, as natively (a notified one, or a ptrace-stopped one
        on x86, skipped and made to look interrupted at the delivery stop); else "rewind"."""
        if call.spec.traits.blocks and (stop.kind is StopKind.NOTIFY or INTERRUPTS_AT_PTRACE_STOPS):
            return "interrupt"
        return "rewind"

    def can_interrupt(self, stop: Stop, call) -> bool:
        """Whether a signal may be delivered at this stop: a ptrace-stopped call is rewound (it is
        made again after the handler), but a notified call is interrupted, which only a call that
        can block does natively (close never returns EINTR): others wait for a later call."""
        return stop.kind is not StopKind.NOTIFY or call.spec.traits.blocks

    def all_blocked(self, sigs: list[tuple[int, bytes]]) -> bool:
        """Whether the variant blocks every one of `sigs` now (its mask, /proc SigBlk): sent, they
        only become pending, interrupt nothing, and are handled where the program unblocks them."""
        mask = blocked_signals(self.variant.pid)
        return mask is not None and all(mask >> (sig - 1) & 1 for sig, _ in sigs)

    def pipe_broken(self, call) -> None:
        """A send the (hybrid) leader's monitor performed failed with EPIPE: the kernel raised
        SIGPIPE in the monitor, where the program's own call would have raised it in the program.
        Replicated like one from outside, as the kernel sends it (SI_USER from the program itself),
        unless the call asked for none (MSG_NOSIGNAL)."""
        if any("MSG_NOSIGNAL" in (a if isinstance(a, (set, frozenset, tuple, list)) else str(a)) for a in call.args):
            return
        info = bytearray(128)
        _HEAD.pack_into(info, 0, signal.SIGPIPE, 0, SI_USER, self.variant.own_pid)
        struct.pack_into("<I", info, _HEAD.size, os.getuid())
        self.deferred.append((signal.SIGPIPE, bytes(info)))

    def takes(self, call, fd_kind: str | None) -> bool:
        """Does the call take pending signals without a handler (Traits.takes_signals: a read of a
        signalfd, rt_sigtimedwait)? Every follower must then have pending what the leader took."""
        where = call.spec.traits.takes_signals
        return where is not None and (where != "fd" or fd_kind == "signalfd")

    def pending_for(self, call) -> list[tuple[int, bytes]]:
        """(The leader's, before a call it lets run without learning its result: a hybrid
        signalfd read) the signals pending now that the call would take."""
        pid = self.variant.pid
        where = call.spec.traits.takes_signals
        if where == "fd":
            mask = signalfd_mask(pid, call.args[0])
        else:
            names = call.args[call.spec.arg_names.index(where)]
            arch = arch_of(call.arch)
            mask = 0
            for name in names if isinstance(names, frozenset) else ():
                try:
                    mask |= 1 << (signal_number(arch, name) - 1)
                except (KeyError, ValueError, TypeError):
                    continue
        return [(sig, b"") for sig in signals_in(pending_signals(pid) & mask)]

    def taken_by(self, call, ret: int) -> list[tuple[int, bytes]] | None:
        """(The leader's, after the call) the signals it took, from its result: the signal number
        rt_sigtimedwait returned, or each signalfd_siginfo a read returned (ssi_signo first);
        None when the result does not say (a readv)."""
        if ret <= 0:
            return []
        if call.spec.traits.takes_signals != "fd":
            return [(ret, b"")]
        if call.spec.arg_names[1] != "buf":
            return None
        word = arch_of(call.arch).word_size
        data = self.variant.read(call.values[1] & ((1 << 8 * word) - 1), ret)
        return [(int.from_bytes(data[i:i + 4], "little"), b"") for i in range(0, len(data) - 127, 128)]

    def take_alike(self, sigs: list[tuple[int, bytes]]) -> None:
        """(A follower's) before its call that takes pending signals: send itself those of the
        leader's it does not have pending (signals from outside the leader took alone). They are
        taken by the call, never delivered to a handler: not expected at a delivery stop."""
        have = pending_signals(self.variant.pid)
        for sig, _ in sigs:
            if not have >> (sig - 1) & 1:
                self.variant.send_signal(sig)

    def take_deferred(self) -> list[tuple[int, bytes]]:
        sigs, self.deferred = pending(self.deferred), []
        return sigs

    def deliver(self, stop: Stop, sigs: list[tuple[int, bytes]], how: str | None = None, let_run=None) -> bool:
        """Deliver `sigs` ([(signal, siginfo)]) just before the call at `stop`, the leader's way
        (`how`, default by this stop's kind): "interrupt" a notified call as a real blocking call
        is (the kernel restarts it or returns EINTR, per SA_RESTART), or "rewind" it: not run now,
        made again after the handlers (a ptrace stop is rewound; a notified call is restarted at
        the signal-delivery stop); or, "pending", the program blocks them all now: they are sent,
        wait in its mask and the call goes on (True: the caller handles the call as usual); or,
        "suspend" (a call that waits for a signal, Traits.waits_for_signal), the call is let run
        (`let_run(stop)`) and they are sent: it sleeps until the kernel delivers them, then fails
        with EINTR. Every variant must do what the leader did, or one sees EINTR where another makes
        the call."""
        how = how or ("interrupt" if stop.kind is StopKind.NOTIFY else "rewind")
        self.releasing.extend(sigs)
        if how == "suspend":  # the call (waits_for_signal) runs first: the kernel then takes them in it
            let_run(stop)
            for sig, _ in sigs:
                self.variant.send_signal(sig)
            return False
        if how == "pending":
            for sig, _ in sigs:
                self.variant.send_signal(sig)
            return True
        if how == "interrupt" and stop.kind is not StopKind.NOTIFY and not INTERRUPTS_AT_PTRACE_STOPS:
            how = "rewind"  # (the leader's host could; this one cannot: the nearest it has)
        self.restart_on_delivery = stop.kind is StopKind.NOTIFY and how == "rewind"
        for sig, _ in sigs:
            self.variant.send_signal(sig)
        if stop.kind is not StopKind.NOTIFY:
            if how == "interrupt":  # skipped now; at the delivery stop it looks interrupted (on_signal)
                self.interrupt_nr = stop.nr
                self.variant.skip(stop, -errno.EINTR)
            else:
                self.variant.rewind(stop)  # made again after the handlers
        return False


def signals_in(mask: int) -> list[int]:
    return [i + 1 for i in range(64) if mask >> i & 1]


def pending(sigs: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
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
