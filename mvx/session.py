"""One monitor process's session: the trio side around a monitor thread (mvx.monitor).

A nursery owns every task: the monitor thread (trio.to_thread), one sender and one receiver per
channel, the follower's watchdog, and the signal watcher. Whatever ends the session (the program's
end, a divergence here or reported by a peer, a broken channel, SIGINT/SIGTERM) stops the
variants according to --on-divergence and cancels the rest; nothing is left running.

Exit status: the program's own when every variant agreed; DIVERGENCE_EXIT (70) after a divergence;
128+N when mvx itself was stopped by signal N; 1 when a peer stopped or vanished."""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import trio

from mvx.channel import Channel, ChannelClosed, ChannelError
from mvx.engine import Mode
from mvx.monitor import FollowerMonitor, Inbox, LeaderLink, LeaderMonitor, Outcome, Stopped
from mvx.policy import Policy
from mvx.sync import Divergence

DIVERGENCE_EXIT = 70
PEER_LOST_EXIT = 1


@dataclass
class Options:
    argv: list[str]
    mode: Mode
    policy: Policy
    lockstep: str = "sensitive"
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


class Reporter:
    """Divergences and session events: a readable block on stderr, a JSON line in --log."""

    def __init__(self, log: str | None, role: str) -> None:
        self.role = role
        self._log = open(log, "a", buffering=1) if log else None  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def divergence(self, d: Divergence | dict, where: str, show: bool = True) -> None:
        entry = d.as_json() if isinstance(d, Divergence) else dict(d)
        entry["where"] = where
        if show:
            block = d.report() if isinstance(d, Divergence) else _block(entry)
            print(f"{block}\n  (detected by the {where})", file=sys.stderr, flush=True)
        self.event(entry)

    def event(self, entry: dict) -> None:
        if self._log:
            entry = {"time": round(time.time(), 6), "role": self.role, **entry}
            with self._lock:
                self._log.write(json.dumps(entry, default=str) + "\n")

    def say(self, text: str) -> None:
        print(f"mvx: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._log:
            self._log.close()


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


class Outbox:
    """Messages from a monitor thread to a channel's sender task, in order, with one wake-up of
    the trio loop per batch (not per message)."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._q: collections.deque[dict] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._event = trio.Event()
        self.closed = False

    def put(self, message: dict) -> None:
        with self._lock:
            if self.closed:
                return
            self._q.append(message)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._token.run_sync_soon(self._wake)
        except trio.RunFinishedError:
            pass

    def _wake(self) -> None:
        self._event.set()

    async def drain(self) -> list[dict]:
        await self._event.wait()
        with self._lock:
            items = list(self._q)
            self._q.clear()
            self._scheduled = False
            self._event = trio.Event()
        return items


async def _sender(channel: Channel, outbox: Outbox) -> None:
    while True:
        for message in await outbox.drain():
            await channel.send(message)


# ---- the leader -----------------------------------------------------------------------------------


class LeaderSession:
    def __init__(self, opts: Options, channels: list[Channel]) -> None:
        self.opts = opts
        self.channels = channels
        self.reporter = Reporter(opts.log, "leader")
        self.divergences: list[dict] = []
        self.final: dict[int, dict] = {}  # follower index -> its last word (ended/divergence/stopped)
        self.all_final = trio.Event()
        self.stopped_by: str | None = None
        self.exit_override: int | None = None

    async def run(self) -> int:
        opts = self.opts
        token = trio.lowlevel.current_trio_token()
        self.outboxes = [Outbox(token) for _ in self.channels]
        self.link = LeaderLink(len(self.channels), lambda i, m: self.outboxes[i].put(m), opts.window, opts.timeout)
        self.monitor = LeaderMonitor(opts.argv, link=self.link, lockstep=opts.lockstep, mode=opts.mode,
                                     policy=opts.policy, cpu=opts.cpu, env=opts.env, stdio=opts.stdio,
                                     isolate_net=opts.isolate_net)
        self.reporter.event({"event": "start", "argv": opts.argv, "mode": opts.mode.value,
                             "policy": opts.policy.name, "followers": len(self.channels), "cpu": opts.cpu})
        if not self.channels:
            self.all_final.set()
        try:
            async with trio.open_nursery() as nursery:
                for i, ch in enumerate(self.channels):
                    nursery.start_soon(self._guard_sender, i, ch)
                    nursery.start_soon(self._receiver, i, ch)
                nursery.start_soon(self._signals)
                outcome = await trio.to_thread.run_sync(_guarded, self.monitor, self.reporter)
                code = await self._finish(outcome)
                nursery.cancel_scope.cancel()
        finally:
            for ch in self.channels:
                with trio.move_on_after(1):
                    await ch.aclose()
            self.reporter.close()
        return code

    async def _finish(self, outcome: Outcome) -> int:
        opts = self.opts
        if outcome.divergence is not None and outcome.stopped is None:
            self._record(outcome.divergence, "leader", show=True)
            self._stop_followers("the leader diverged")
        elif outcome.stopped is None:
            # the program ended: every follower must end the same way, in time
            with trio.move_on_after(opts.timeout + 2):
                await self.all_final.wait()
            for i in range(len(self.channels)):
                if i not in self.final:
                    self._record({"event": "divergence", "kind": "timeout", "seq": self.monitor.sync.seq + 1,
                                  "leader": _end_line(outcome), "follower": "(no answer)",
                                  "detail": f"follower {i} did not end within {opts.timeout:g}s"}, "leader")
            self._stop_followers("the session is over")
        else:
            self._stop_followers(outcome.stopped)
        self.reporter.event({"event": "end", "status": outcome.status, "signal": outcome.signal,
                             "stopped": outcome.stopped, "divergences": len(self.divergences),
                             "synced_calls": self.monitor.sync.seq})
        if self.exit_override is not None:
            return self.exit_override
        if self.divergences:
            return DIVERGENCE_EXIT
        if outcome.stopped is not None:
            return PEER_LOST_EXIT
        return outcome.exit_code

    def _record(self, d: Divergence | dict, where: str, show: bool = True) -> None:
        entry = d.as_json() if isinstance(d, Divergence) else d
        self.divergences.append(entry)
        self.reporter.divergence(d, where, show=show)

    def _stop_followers(self, reason: str) -> None:
        for i, box in enumerate(self.outboxes):
            if i not in self.final:
                box.put({"t": "stop", "reason": reason})

    def _on_follower_divergence(self, i: int, entry: dict) -> None:
        self._record(entry, f"follower {i}", show=not self.opts.followers_share_stderr)
        self._follower_done(i, entry)
        if self.opts.on_divergence == "kill":
            self.monitor.stop(f"follower {i} diverged")
            self.link.fail(Stopped("divergence"))
            self._stop_followers(f"follower {i} diverged")
        else:
            self.reporter.say(f"follower {i} diverged and was stopped; the leader keeps running (--on-divergence alert)")

    def _follower_done(self, i: int, message: dict) -> None:
        self.final[i] = message
        self.link.detach(i)
        if len(self.final) == len(self.channels):
            self.all_final.set()

    async def _guard_sender(self, i: int, ch: Channel) -> None:
        try:
            await _sender(ch, self.outboxes[i])
        except ChannelError as exc:
            self._peer_lost(i, str(exc))

    async def _receiver(self, i: int, ch: Channel) -> None:
        while True:
            try:
                message = await ch.receive()
            except ChannelClosed:
                if i not in self.final:
                    self._peer_lost(i, "closed the channel")
                return
            except ChannelError as exc:
                self._peer_lost(i, str(exc))
                return
            t = message.get("t")
            if t == "ack":
                self.link.on_ack(i, int(message.get("seq", 0)))
            elif t == "checked":
                self.link.on_checked(i, int(message.get("seq", 0)))
            elif t == "divergence":
                self._on_follower_divergence(i, message.get("divergence") or {})
            elif t == "ended":
                self._follower_done(i, message)
            elif t == "stopped":
                self._follower_done(i, message)
                if self.stopped_by is None:
                    self.reporter.say(f"follower {i} stopped: {message.get('reason')}; stopping")
                    self.monitor.stop(f"follower {i} stopped")
                    self.link.fail(Stopped("stopped"))

    def _peer_lost(self, i: int, why: str) -> None:
        if i in self.final:
            return
        entry = {"event": "divergence", "kind": "channel", "seq": self.monitor.sync.seq + 1,
                 "leader": "(running)", "follower": "(gone)", "detail": f"follower {i} lost: {why}"}
        self._record(entry, "leader")
        self._follower_done(i, entry)
        if self.opts.on_divergence == "kill":  # fail closed: an unverified leader must not go on
            self.monitor.stop(f"follower {i} lost")
            self.link.fail(Stopped("channel"))
            self._stop_followers(f"follower {i} lost")

    async def _signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread (a session run inside a test's thread)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                name = signal.Signals(sig).name
                self.stopped_by = name
                self.exit_override = 128 + sig
                self.reporter.say(f"{name}: stopping every variant")
                self.monitor.stop(f"mvx got {name}")
                self.link.fail(Stopped(name))
                self._stop_followers(f"the leader got {name}")
                return


def _end_line(outcome: Outcome) -> str:
    if outcome.signal is not None:
        return f"+++ killed by signal {outcome.signal} +++"
    return f"+++ exited with {outcome.status} +++"


# ---- a follower -----------------------------------------------------------------------------------


class FollowerSession:
    def __init__(self, opts: Options, channel: Channel) -> None:
        self.opts = opts
        self.channel = channel
        self.reporter = Reporter(opts.log, "follower")
        self.exit_override: int | None = None
        self.leader_gone: str | None = None

    async def run(self) -> int:
        opts = self.opts
        token = trio.lowlevel.current_trio_token()
        self.outbox = Outbox(token)
        self.inbox = Inbox()
        self.monitor = FollowerMonitor(opts.argv, inbox=self.inbox, reply=self.outbox.put, mode=opts.mode,
                                       policy=opts.policy, cpu=opts.cpu, env=opts.env, end_timeout=opts.timeout,
                                       stdio=opts.stdio, isolate_net=opts.isolate_net)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guard_sender)
                nursery.start_soon(self._receiver)
                nursery.start_soon(self._watchdog)
                nursery.start_soon(self._signals)
                outcome = await trio.to_thread.run_sync(_guarded, self.monitor, self.reporter)
                code = await self._finish(outcome)
                nursery.cancel_scope.cancel()
        finally:
            with trio.move_on_after(1):
                await self.channel.aclose()
            self.reporter.close()
        return code

    async def _finish(self, outcome: Outcome) -> int:
        if outcome.divergence is not None:
            self.reporter.divergence(outcome.divergence, "follower")
            final = {"t": "divergence", "divergence": outcome.divergence.as_json()}
            code = DIVERGENCE_EXIT
        elif outcome.stopped is not None:
            final = {"t": "stopped", "reason": outcome.stopped}
            if self.leader_gone:
                self.reporter.say(f"stopped: {self.leader_gone}")
            code = PEER_LOST_EXIT
        else:
            final = {"t": "ended", "status": outcome.status, "signal": outcome.signal}
            code = outcome.exit_code
        if not self.leader_gone:
            self.outbox.put(final)
            with trio.move_on_after(2):  # let the sender deliver the last word
                while self.outbox._q or self.outbox._scheduled:
                    await trio.sleep(0.01)
        if self.exit_override is not None:
            return self.exit_override
        return code

    async def _guard_sender(self) -> None:
        try:
            await _sender(self.channel, self.outbox)
        except ChannelError as exc:
            self._leader_lost(str(exc))

    async def _receiver(self) -> None:
        while True:
            try:
                message = await self.channel.receive()
            except ChannelClosed:
                self._leader_lost("the leader closed the channel")
                return
            except ChannelError as exc:
                self._leader_lost(str(exc))
                return
            if message.get("t") == "stop":
                reason = message.get("reason", "the leader stopped the session")
                self.leader_gone = f"the leader ended the session ({reason})"
                self.monitor.stop(reason)
                self.inbox.close(reason)
                return
            self.inbox.put(message)

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
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                name = signal.Signals(sig).name
                self.exit_override = 128 + sig
                self.monitor.stop(f"the follower got {name}")
                self.inbox.close(name)
                return


def run_leader(opts: Options, open_channels) -> int:
    """Open the channels (an async callable returning [Channel]), then run the session."""

    async def main() -> int:
        channels = await open_channels()
        return await LeaderSession(opts, channels).run()

    return trio.run(main)


def run_follower(opts: Options, open_channel) -> int:
    async def main() -> int:
        channel = await open_channel()
        return await FollowerSession(opts, channel).run()

    return trio.run(main)

