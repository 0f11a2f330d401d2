"""One monitor process's session: the trio side around a monitor thread (mvx.runtime.monitor).

Once trio has set the channels up, they are detached into pipes (mvx.runtime.pipe) so that records do not
wait for the trio loop: the monitor thread sends itself, and a reader thread per pipe hands acks and
checks straight to the leader's link, or records to a follower's inbox. A nursery owns every task
and thread: the monitor thread, the pipe readers, the follower's watchdog, and the signal watcher. Whatever ends the session (the program's
end, a divergence here or reported by a peer, a broken channel, SIGINT/SIGTERM) stops the
variants according to --on-divergence and cancels the rest; nothing is left running.

Exit status: the program's own when every variant agreed; DIVERGENCE_EXIT (70) after a divergence
(even when a signal stopped mvx after it); 128+N when mvx itself was stopped by signal N; 1 when a
peer stopped or vanished. A SIGINT/SIGTERM that comes while the session is ending (after trio's
receiver is gone) is ignored: the ending goes on and its status stands."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import trio

from mvx.core.policy import Policy
from mvx.core.protocol import (
    DivergenceReport,
    FollowerEnded,
    FollowerStopped,
    StopSession,
)
from mvx.core.sync import Divergence
from mvx.mechanics.engine import Mode
from mvx.mechanics.forensics import Forensics
from mvx.mechanics.native import lib
from mvx.runtime import stats
from mvx.runtime.channel import Channel, ChannelClosed, ChannelError
from mvx.runtime.fastpath import wanted as fast_wanted
from mvx.runtime.link import CHECK_GRACE, Inbox, LeaderLink, Stopped
from mvx.runtime.monitor import FollowerMonitor, LeaderMonitor, Outcome
from mvx.runtime.pipe import Pipe

DIVERGENCE_EXIT = 70
PEER_LOST_EXIT = 1


@dataclass
class Options:
    argv: list[str]
    mode: Mode
    policy: Policy
    lockstep: str = "sensitive"
    write_behind: bool = True  # outputs held by the leader's monitor (mvx.runtime.outbox)
    agent: bool = True  # the in-process agent in every variant (mvx.mechanics.agent)
    on_divergence: str = "kill"
    timeout: float = 10.0
    cpu: int | None = None
    log: str | None = None
    window: int = 256
    arch: str = ""  # the program's ISA (for the handshake)
    env: dict | None = None
    stdio: tuple = (None, None, None)  # the variant's stdin/stdout/stderr (None: the monitor's own)
    followers_share_stderr: bool = False  # mvx run: a follower's report is already on our terminal
    isolate_net: bool = False
    stats: float | None = None  # --stats: seconds between the monitor's lines
    passed_fds: tuple[int, ...] = ()  # the leader's: fds its program gets at 3, 4, ... (socket activation)
    placeholder_fds: int = 0  # a follower's: how many the leader's program was passed (inert sockets there)
    events_fd: int | None = None  # the leader's: its session events as JSON lines here too (mvx.api)
    cwd: str | None = None  # the program's working directory (None: the monitor's)


# The JSON lines of --log, one object per line (docs/LOG.md; tests/test_log.py checks real runs and
# the document against this): every line has LOG_COMMON, then its event's fields; a field marked
# optional may be absent. Types: JSON's, None for null.
LOG_COMMON = {"time": (float,), "role": (str,), "event": (str,)}
LOG_EVENTS: dict[str, dict[str, tuple]] = {
    "start": {"argv": (list,), "mode": (str,), "policy": (str,), "followers": (int,), "cpu": (int, None)},
    "divergence": {"kind": (str,), "seq": (int,), "leader": (str,), "follower": (str,), "detail": (str,),
                   "where": (str,), "forensics": (dict, "optional")},
    "end": {"status": (int, None), "signal": (int, None), "stopped": (str, None), "divergences": (int,),
            "synced_calls": (int,)},
    "internal-error": {"detail": (str,)},
}


def log_problems(entry: dict) -> list[str]:
    """What in one --log line does not follow LOG_EVENTS (empty: it does)."""
    fields = LOG_EVENTS.get(entry.get("event"))
    if fields is None:
        return [f"unknown event {entry.get('event')!r}"]
    problems = []
    for name, kinds in {**LOG_COMMON, **fields}.items():
        if name not in entry:
            if "optional" not in kinds:
                problems.append(f"{entry['event']}: no {name}")
            continue
        value = entry[name]
        ok = any(value is None if k is None else k != "optional" and isinstance(value, k)
                 and not (k is int and isinstance(value, bool)) for k in kinds)
        if not ok:
            problems.append(f"{entry['event']}.{name}: {value!r} is not {kinds}")
    extra = set(entry) - set(LOG_COMMON) - set(fields)
    if extra:
        problems.append(f"{entry['event']}: fields not in the schema: {sorted(extra)}")
    return problems


class Reporter:
    """Divergences and session events: a readable block on stderr, a JSON line in --log."""

    def __init__(self, log: str | None, role: str, events_fd: int | None = None) -> None:
        self.role = role
        self._log = open(log, "a", buffering=1) if log else None  # noqa: SIM115 - closed by close()
        self._events = None
        if events_fd is not None:  # a pipe to mvx.api's Run, which reads every line as it comes
            os.set_inheritable(events_fd, False)  # never the program's
            self._events = open(events_fd, "w", buffering=1)  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def divergence(self, d: Divergence | dict, where: str, show: bool = True,
                   seen: dict[str, Forensics | None] | None = None, shown: str = "") -> None:
        """The block (when `show`; else only where the variants in `seen` but `shown` were: the
        peer that showed the block said where its own was) and the JSON line, with every one of
        `seen` under "forensics"."""
        entry = d.as_json() if isinstance(d, Divergence) else dict(d)
        entry["where"] = where
        seen = {who: f for who, f in (seen or {}).items() if f is not None}
        if seen:
            entry["forensics"] = {who: f.as_json() for who, f in seen.items()}
        where_lines = [line for who, f in seen.items() if show or who != shown for line in f.lines(who)]
        if show:
            block = d.report() if isinstance(d, Divergence) else _block(entry)
            where_text = "\n  where the variants were:\n" + "\n".join(where_lines) if where_lines else ""
            print(f"{block}\n  (detected by the {where}){where_text}", file=sys.stderr, flush=True)
        elif where_lines:
            print("mvx: where the variants were:\n" + "\n".join(where_lines), file=sys.stderr, flush=True)
        self.event(entry)

    def event(self, entry: dict) -> None:
        if self._log or self._events:
            line = json.dumps({"time": round(time.time(), 6), "role": self.role, **entry}, default=str) + "\n"
            with self._lock:
                for sink in (self._log, self._events):
                    if sink:
                        try:
                            sink.write(line)
                        except OSError:  # a reader that went away: the session goes on
                            pass

    def say(self, text: str) -> None:
        print(f"mvx: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        for sink in (self._log, self._events):
            if sink:
                with contextlib.suppress(OSError):
                    sink.close()


def _peer_forensics(text: str) -> Forensics | None:
    """A follower's forensics as it sent them (JSON); anything malformed is dropped, not trusted."""
    if not text:
        return None
    try:
        d = json.loads(text)
        return Forensics.from_json(d) if isinstance(d, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _block(entry: dict) -> str:
    return (f"mvx: DIVERGENCE ({entry.get('kind')}) at synced call #{entry.get('seq')}\n"
            f"  leader:   {entry.get('leader')}\n  follower: {entry.get('follower')}\n  {entry.get('detail', '')}")


def _guarded(monitor, reporter: Reporter) -> Outcome:
    """Run a monitor thread; a bug in mvx ends the session closed (the variant is already killed
    by the monitor's own cleanup), as one line, with the traceback only under MVX_DEBUG=1."""
    try:
        profile_to = os.environ.get("MVX_PROFILE")  # a directory: cProfile of each monitor thread
        if profile_to:
            import cProfile

            prof = cProfile.Profile()
            try:
                return prof.runcall(monitor.run)
            finally:
                prof.dump_stats(os.path.join(profile_to, f"{monitor.role}-{os.getpid()}.prof"))
        return monitor.run()
    except Exception as exc:  # noqa: BLE001 - the session must end cleanly whatever went wrong
        if os.environ.get("MVX_DEBUG"):
            traceback.print_exc()
        reason = f"internal error in the {monitor.role}'s monitor: {type(exc).__name__}: {exc}"
        reporter.say(reason + " (variant stopped; MVX_DEBUG=1 shows the traceback)")
        reporter.event({"event": "internal-error", "detail": reason})
        return Outcome(stopped=reason)


def _soon(token: trio.lowlevel.TrioToken, fn, *args) -> None:
    """Run fn(*args) in the trio thread (from a reader or monitor thread); a no-op once trio is done."""
    try:
        token.run_sync_soon(fn, *args)
    except trio.RunFinishedError:
        pass


# ---- the leader -----------------------------------------------------------------------------------


class LeaderSession:
    def __init__(self, opts: Options, channels: list[Channel]) -> None:
        self.opts = opts
        self.channels = channels
        self.reporter = Reporter(opts.log, "leader", opts.events_fd)
        self.divergences: list[dict] = []
        self.final: dict[int, object] = {}  # follower index -> its last word (ended/divergence/stopped)
        self.all_final = trio.Event()
        self.stopped_by: str | None = None
        self.leader_diverged = False  # the leader's monitor ended the run with a divergence of its own
        self.exit_override: int | None = None

    async def run(self) -> int:
        opts = self.opts
        self.token = trio.lowlevel.current_trio_token()
        self.pipes: list[Pipe] = []
        for ch in self.channels:
            self.pipes.append(await ch.detach(dead_after=opts.timeout + CHECK_GRACE))
        self.lost: set[int] = set()  # followers whose pipe failed (sends to them are dropped)
        self.link = LeaderLink(len(self.pipes), self._send, opts.window, opts.timeout,
                               on_lost=lambda i, r: _soon(self.token, self._lost_send, i, r))
        for i, pipe in enumerate(self.pipes):
            if pipe.chan is not None:  # the C fast path sends there itself
                lib.mvx_link_set_chan(self.link.native, i, pipe.chan)
        self.monitor = LeaderMonitor(opts.argv, link=self.link, lockstep=opts.lockstep,
                                     write_behind=opts.write_behind, in_process_agent=opts.agent, mode=opts.mode,
                                     policy=opts.policy, cpu=opts.cpu, env=opts.env, cwd=opts.cwd, stdio=opts.stdio,
                                     isolate_net=opts.isolate_net, passed=opts.passed_fds)
        self.reporter.event({"event": "start", "argv": opts.argv, "mode": opts.mode.value,
                             "policy": opts.policy.name, "followers": len(self.pipes), "cpu": opts.cpu})
        if not self.pipes:
            self.all_final.set()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for i, pipe in enumerate(self.pipes):
                        nursery.start_soon(trio.to_thread.run_sync, self._read_loop, i, pipe)
                    nursery.start_soon(self._signals)
                    if self.monitor.outbox is not None:
                        nursery.start_soon(self._watch_held)
                    if opts.stats:
                        nursery.start_soon(stats.report, opts.stats, "leader", self.monitor.synced_so_far,
                                           self._stats)
                    outcome = await trio.to_thread.run_sync(_guarded, self.monitor, self.reporter)
                    code = await self._finish(outcome)
                finally:
                    for pipe in self.pipes:  # the readers see the end and return
                        pipe.shutdown()
                    nursery.cancel_scope.cancel()
        finally:
            for pipe in self.pipes:
                pipe.close()
            self.reporter.close()
        return code

    async def _watch_held(self) -> None:
        """Write-behind: the leader's program does not wait at its outputs, so a follower that stops
        checking them (its monitor frozen, its link silently dead) shows here: an output held longer
        than --timeout and the grace a check gets is a `timeout` divergence, as a lockstep wait for
        that check would have been. Nothing held leaves after it."""
        limit = self.opts.timeout + CHECK_GRACE
        while True:
            await trio.sleep(min(0.25, limit / 4))
            waited, seq = self.monitor.outbox.oldest_wait()
            if waited <= limit or self.stopped_by is not None or self.divergences or self.link.failure:
                continue
            late = sorted(i for i in self.link.live if self.link.checked(i) < seq)
            if not late:
                continue  # checked: it leaves in a moment
            self.link.fail(Stopped("timeout"))  # before anything else: what is held is dropped
            self.leader_diverged = True
            self._record({"event": "divergence", "kind": "timeout", "seq": seq,
                          "leader": "(an output held for the followers' check)", "follower": "(not reached)",
                          "detail": f"follower(s) {late} did not check the call within {self.opts.timeout:g}s"},
                         "leader")
            self.monitor.stop(f"follower(s) {late} did not check an output in time")
            self._stop_followers(f"follower(s) {late} did not check an output in time")
            return

    def _stats(self) -> str:
        seq = self.monitor.synced_so_far()
        flight = ", ".join(f"follower {i} {max(seq - self.link.acked(i), 0)}" for i in range(len(self.pipes)))
        return (f"records in flight: {flight or 'none'}, {stats.held(self.monitor.outbox)}, "
                f"divergences {len(self.divergences)}")

    def _send(self, i: int, message) -> None:
        """Any thread: one message to follower i; a failed pipe is that follower lost."""
        if i in self.lost:
            return
        try:
            self.pipes[i].send(message)
        except ChannelError as exc:
            self.lost.add(i)
            _soon(self.token, self._peer_lost, i, str(exc))

    def _lost_send(self, i: int, r: int) -> None:
        """A send from the C fast path to follower i failed (-errno r)."""
        if i not in self.lost:
            self.lost.add(i)
            self._peer_lost(i, self.pipes[i].send_error(r).args[0])

    def _read_loop(self, i: int, pipe: Pipe) -> None:
        """A reader thread: acks and checks go straight to the link (the monitor thread waits on
        them; in C for a plain socket); the rest is handled in the trio thread."""
        while True:
            try:
                message = pipe.pump_link(self.link, i)
            except ChannelClosed:
                _soon(self.token, self._closed_by, i)
                return
            except ChannelError as exc:
                _soon(self.token, self._peer_lost, i, str(exc))
                return
            _soon(self.token, self._on_message, i, message)

    def _closed_by(self, i: int) -> None:
        if i not in self.final and not self.pipes[i].closed:
            self._peer_lost(i, "closed the channel")

    def _on_message(self, i: int, message) -> None:
        if isinstance(message, DivergenceReport):
            self._on_follower_divergence(i, {"event": "divergence", "kind": message.kind, "seq": message.seq,
                                             "leader": message.leader, "follower": message.follower,
                                             "detail": message.detail}, _peer_forensics(message.forensics))
        elif isinstance(message, FollowerEnded):
            self._follower_done(i, message)
        elif isinstance(message, FollowerStopped):
            if self.stopped_by is None:
                self.link.fail(Stopped("stopped"))  # before the follower is let go: nothing held leaves
            self._follower_done(i, message)
            if self.stopped_by is None:
                self.reporter.say(f"follower {i} stopped: {message.reason}; stopping")
                self.monitor.stop(f"follower {i} stopped")

    async def _finish(self, outcome: Outcome) -> int:
        opts = self.opts
        if outcome.divergence is not None and outcome.stopped is None and self._already_told(outcome.divergence):
            self.reporter.say(f"the leader's check timed out on follower(s) it had already lost: "
                              f"{', '.join(str(i) for i in outcome.divergence.late)}")
            self._stop_followers("the leader diverged")
        elif outcome.divergence is not None and outcome.stopped is None:
            self.leader_diverged = True
            self._record(outcome.divergence, "leader", show=True, seen={"leader": self.monitor.forensics})
            self._stop_followers("the leader diverged")
        elif outcome.stopped is None:
            # the program ended: every follower must end the same way, in time
            with trio.move_on_after(opts.timeout + 2):
                await self.all_final.wait()
            for i in range(len(self.pipes)):
                if i not in self.final:
                    self._record({"event": "divergence", "kind": "timeout", "seq": self.monitor.sync.seq + 1,
                                  "leader": _end_line(outcome), "follower": "(no answer)",
                                  "detail": f"follower {i} did not end within {opts.timeout:g}s"}, "leader")
            self._stop_followers("the session is over")
        else:
            if self.monitor.refused:
                self.reporter.say(f"stopped: {self.monitor.refused}")
            self._stop_followers(outcome.stopped)
        self.reporter.event({"event": "end", "status": outcome.status, "signal": outcome.signal,
                             "stopped": outcome.stopped, "divergences": len(self.divergences),
                             "synced_calls": self.monitor.sync.seq})
        if self.divergences:  # a divergence is the status, whatever stopped mvx after it
            return DIVERGENCE_EXIT
        if self.exit_override is not None:
            return self.exit_override
        if outcome.stopped is not None:
            return PEER_LOST_EXIT
        return outcome.exit_code

    def _already_told(self, d: Divergence) -> bool:
        """A timeout on followers already lost or diverged (their own report came first, racing
        the leader's check in another thread): the same event, reported once."""
        return d.kind == "timeout" and bool(d.late) and all(i in self.final for i in d.late)

    def _record(self, d: Divergence | dict, where: str, show: bool = True,
                seen: dict[str, Forensics | None] | None = None, shown: str = "") -> None:
        entry = d.as_json() if isinstance(d, Divergence) else d
        self.divergences.append(entry)
        self.reporter.divergence(d, where, show=show, seen=seen, shown=shown)

    def _stop_followers(self, reason: str) -> None:
        for i in range(len(self.pipes)):
            if i not in self.final:
                self._send(i, StopSession(reason))

    def _on_follower_divergence(self, i: int, entry: dict, theirs: Forensics | None = None) -> None:
        # where the leader's program is, read before it is killed (by its monitor thread, which can
        # read its registers: a bounded wait); the follower's block (shared stderr) already said
        # where its own was
        def record(ours: Forensics | None) -> None:
            self._record(entry, f"follower {i}", show=not self.opts.followers_share_stderr,
                         seen={"leader": ours, f"follower {i}": theirs}, shown=f"follower {i}")

        if self.opts.on_divergence == "kill":
            # (stopped before its link fails: a monitor thread woken by the failure takes its forensics)
            self.monitor.stop(f"follower {i} diverged", forensics=True)
            self.link.fail(Stopped("divergence"))  # failed before the follower is let go: nothing held leaves
            self._follower_done(i, entry)
            record(self.monitor.forensics_within())
            self._stop_followers(f"follower {i} diverged")
        else:
            record(self.monitor.snapshot("not read: the leader runs on (--on-divergence alert)"))
            self._follower_done(i, entry)
            self.reporter.say(f"follower {i} diverged and was stopped; the leader keeps running (--on-divergence alert)")

    def _follower_done(self, i: int, message) -> None:
        self.final[i] = message
        self.link.detach(i)
        if len(self.final) == len(self.pipes):
            self.all_final.set()

    def _peer_lost(self, i: int, why: str) -> None:
        if i in self.final:
            return
        # stopped at once by the operator, or by this monitor itself (a call it does not follow, which a
        # follower meets too and stops at): followers go as told, no divergence
        if self.stopped_by is not None or self.monitor.refused or self.leader_diverged:
            self._follower_done(i, {"event": "stopped", "follower": i, "detail": why})
            return
        entry = {"event": "divergence", "kind": "channel", "seq": self.monitor.sync.seq + 1,
                 "leader": "(running)", "follower": "(gone)", "detail": f"follower {i} lost: {why}"}
        self._record(entry, "leader")
        if self.opts.on_divergence == "kill":  # fail closed: an unverified leader must not go on
            self.link.fail(Stopped("channel"))  # before the follower is let go: nothing held leaves
        self._follower_done(i, entry)
        if self.opts.on_divergence == "kill":
            self.monitor.stop(f"follower {i} lost")
            self._stop_followers(f"follower {i} lost")

    async def _signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread (a session run inside a test's thread)
        _ignore_signals_after_the_session()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            graceful = False
            async for sig in signals:
                name = signal.Signals(sig).name
                if not graceful:
                    # the program gets it, and every follower at the same point of its stream: a
                    # server shuts down cleanly on every variant, and the endings are compared
                    graceful = True
                    self.reporter.say(f"{name}: passed to the program (every variant); again to stop at once")
                    self.monitor.variant.send_signal(sig)
                    nursery = self._nursery
                    nursery.start_soon(self._grace, name)
                    continue
                self._stop_now(name, sig)
                return

    async def _grace(self, name: str) -> None:
        await trio.sleep(self.opts.timeout)
        self.reporter.say(f"the program did not end within {self.opts.timeout:g}s of {name}")
        self._stop_now(name, signal.Signals[name].value)

    def _stop_now(self, name: str, sig: int) -> None:
        self.stopped_by = name
        self.exit_override = 128 + sig
        self.reporter.say(f"{name}: stopping every variant")
        self.monitor.stop(f"mvx got {name}")
        self.link.fail(Stopped(name))
        self._stop_followers(f"the leader got {name}")


def _end_line(outcome: Outcome) -> str:
    if outcome.signal is not None:
        return f"+++ killed by signal {outcome.signal} +++"
    return f"+++ exited with {outcome.status} +++"


# ---- a follower -----------------------------------------------------------------------------------


class FollowerSession:
    def __init__(self, opts: Options, channel: Channel) -> None:
        self.opts = opts
        self.channel = channel
        self.reporter = Reporter(opts.log, "follower", opts.events_fd)
        self.exit_override: int | None = None
        self.leader_gone: str | None = None

    async def run(self) -> int:
        opts = self.opts
        self.pipe = await self.channel.detach(dead_after=opts.timeout + CHECK_GRACE)
        self.inbox = Inbox()
        self.monitor = FollowerMonitor(opts.argv, inbox=self.inbox, reply=self._reply, reply_chan=self.pipe.chan,
                                       mode=opts.mode, in_process_agent=opts.agent,
                                       policy=opts.policy, cpu=opts.cpu, env=opts.env, cwd=opts.cwd,
                                       end_timeout=opts.timeout,
                                       stdio=opts.stdio, isolate_net=opts.isolate_net,
                                       placeholders=opts.placeholder_fds)
        # hybrid with the C fast path: the monitor thread reads its channel itself, polling it
        # with its notification fd (mvx_fast.c, mvx_inbox own); else a reader thread does
        own = opts.mode is Mode.HYBRID and self.pipe.chan is not None and fast_wanted()
        if own:
            self.inbox.own(self.pipe, self._channel_end)
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if not own:
                        nursery.start_soon(trio.to_thread.run_sync, self._read_loop)
                    nursery.start_soon(self._watchdog)
                    nursery.start_soon(self._signals)
                    if self.opts.stats:
                        nursery.start_soon(stats.report, self.opts.stats, "follower", self.monitor.synced_so_far,
                                           lambda: f"the leader's oldest waiting record {1000 * self.inbox.oldest_wait():.1f} ms old")
                    outcome = await trio.to_thread.run_sync(_guarded, self.monitor, self.reporter)
                    code = await self._finish(outcome)
                finally:
                    self.pipe.shutdown()
                    nursery.cancel_scope.cancel()
        finally:
            self.pipe.close()
            self.reporter.close()
        return code

    async def _finish(self, outcome: Outcome) -> int:
        if outcome.divergence is not None:
            fx = self.monitor.forensics
            self.reporter.divergence(outcome.divergence, "follower", seen={"follower": fx})
            d = outcome.divergence
            final = DivergenceReport(d.kind, d.seq, d.leader, d.follower, d.detail,
                                     json.dumps(fx.as_json()) if fx else "")
            code = DIVERGENCE_EXIT
        elif outcome.stopped is not None:
            final = FollowerStopped(outcome.stopped)
            if self.leader_gone:
                self.reporter.say(f"stopped: {self.leader_gone}")
            code = PEER_LOST_EXIT
        else:
            final = FollowerEnded(outcome.status, outcome.signal)
            code = outcome.exit_code
        if not self.leader_gone:
            self._reply(final)
        if self.exit_override is not None and code != DIVERGENCE_EXIT:
            return self.exit_override
        return code

    def _reply(self, message) -> None:
        """Any thread: one message to the leader; a failed pipe is the leader lost."""
        try:
            self.pipe.send(message)
        except ChannelError as exc:
            self._leader_lost(str(exc))

    def _read_loop(self) -> None:
        """The reader thread: the leader's records go to the monitor's inbox, in order."""
        try:
            message = self.pipe.pump_inbox(self.inbox)
        except ChannelClosed:
            if not self.pipe.closed:
                self._leader_lost("the leader closed the channel")
            return
        except ChannelError as exc:
            self._leader_lost(str(exc))
            return
        reason = message.reason or "the leader stopped the session"  # a StopSession
        self.leader_gone = f"the leader ended the session ({reason})"
        self.monitor.stop(reason)
        self.inbox.close(reason)

    def _channel_end(self, message, error) -> None:
        """The monitor thread's own channel ended: as the reader thread's end would be told."""
        if message is not None:  # a StopSession
            reason = message.reason or "the leader stopped the session"
            self.leader_gone = f"the leader ended the session ({reason})"
            self.monitor.stop(reason)
            self.inbox.close(reason)
        elif isinstance(error, ChannelClosed):
            if not self.pipe.closed:
                self._leader_lost("the leader closed the channel")
        else:
            self._leader_lost(str(error))

    def _leader_lost(self, why: str) -> None:
        if self.leader_gone is None:
            self.leader_gone = why
        self.monitor.stop(why)  # fail closed: a follower without its leader must not run on
        self.inbox.close(why)

    async def _watchdog(self) -> None:
        """A follower that does not reach the leader's next synced call in time has diverged."""
        limit = self.opts.timeout
        while True:
            await trio.sleep(min(0.1, limit / 4))
            waited = self.inbox.oldest_wait()
            if waited > limit and self.monitor.in_wait:
                seq = self.monitor.sync.seq + 1
                d = Divergence("timeout", seq, "(the leader's next synced call)", "(not reached)",
                               f"the follower did not reach the leader's next synced call within {limit:g}s")
                self.monitor.stop("timeout", d)
                self.inbox.close("timeout")
                return

    async def _signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread (a session run inside a test's thread)
        _ignore_signals_after_the_session()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                name = signal.Signals(sig).name
                self.exit_override = 128 + sig
                self.monitor.stop(f"the follower got {name}")
                self.inbox.close(name)
                return


def _ignore_signals_after_the_session() -> None:
    """Called in the main thread before the session's signal receiver opens: trio puts this
    handler back when the receiver closes, so a SIGINT/SIGTERM while the session ends does not kill
    this monitor halfway through its report and its variants' ending: the ending's status stands.
    Unless whoever started this monitor is gone (`mvx run` killed: its PR_SET_PDEATHSIG): then
    nobody waits for that status, and the monitor ends at once (its variants die with it)."""
    parent = os.getppid()

    def noted(sig, _frame) -> None:
        if os.getppid() != parent:
            os._exit(128 + sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, noted)


def _said(code: int) -> int:
    """The status is decided: from here to the exit (Python's finalization, which resets handlers
    but not SIG_IGN, included) no SIGINT/SIGTERM may change it."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return code


def run_leader(opts: Options, open_channels) -> int:
    """Open the channels (an async callable returning [Channel]), then run the session."""

    async def main() -> int:
        channels = await open_channels()
        return await LeaderSession(opts, channels).run()

    return _said(trio.run(main))


def run_follower(opts: Options, open_channel) -> int:
    async def main() -> int:
        channel = await open_channel()
        return await FollowerSession(opts, channel).run()

    return _said(trio.run(main))

