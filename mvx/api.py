"""mvx as a library on trio: run variants in step from a test or a tool, watch what happens, and
stop them with nothing left behind.

`open_run` is what `mvx run` is built on: it starts one `mvx leader` monitor process and one
`mvx follower` monitor process per follower, joined by socketpairs, exactly as the command does,
and follows the leader's session events (the JSON lines of `--log`, docs/LOG.md) over a pipe.
Monitors are processes, not tasks of the caller's trio loop, because each pins itself and its
variant to a CPU, owns signals and a ptrace thread, and must survive a slow caller.

Every process belongs to the `Run` and so to the `async with` block that made it: leaving the block
stops every variant (gracefully when the block ended normally, at once when it raised or was
cancelled) and reaps every monitor; SIGKILL is the last resort, and the variants are ptraced with
PTRACE_O_EXITKILL, so they die with their monitor."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from mvx import MvxError

DIVERGENCE_EXIT = 70  # mvx's status after a divergence (mvx.runtime.session.DIVERGENCE_EXIT)
PEER_LOST_EXIT = 1
MODES = ("hybrid", "seccomp", "ptrace")
_PR_SET_PDEATHSIG = 1
_FORCE_WAIT = 5.0  # after a stop at once, how long the monitors get to end before SIGKILL


class VariantError(MvxError):
    """A variant cannot be run: no such program, not executable, an ISA this machine cannot run,
    or an argument string that does not parse."""


class PortTimeout(MvxError):
    """`Run.wait_port`: the leader's program did not listen on the port in time, or the run ended
    before it did (the message says which)."""


class RunFailed(MvxError):
    """The monitors could not be started, or ended without saying how (no `end` event)."""


Variant = str | Sequence[str]  # 'BIN ARGS' (shell quoting) or an argv list


@dataclass(frozen=True)
class Divergence:
    """Where the variants parted ways, as the monitor that caught it reported it.

    `kind`: syscall, arguments, exit, signal, fd, timeout or channel; `seq`: the synced call's
    number; `leader` and `follower`: the two calls (or endings) rendered strace-style; `detail`:
    the differing argument and, for bytes, both sides around the first differing byte;
    `argument` and `byte`: those two parsed out of `detail` (None when it names none); `where`:
    which monitor caught it ("leader", "follower 0", ...); `forensics`: where each variant was."""

    kind: str
    seq: int
    leader: str
    follower: str
    detail: str = ""
    where: str = ""
    argument: str | None = None
    byte: int | None = None
    forensics: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_event(cls, e: dict) -> Divergence:
        detail = str(e.get("detail", ""))
        m = re.match(r"argument (\w+)", detail)
        b = re.search(r"differ at byte (\d+)", detail)
        return cls(kind=str(e.get("kind", "")), seq=int(e.get("seq") or 0), leader=str(e.get("leader", "")),
                   follower=str(e.get("follower", "")), detail=detail, where=str(e.get("where", "")),
                   argument=m.group(1) if m else None, byte=int(b.group(1)) if b else None,
                   forensics=dict(e.get("forensics") or {}))

    def report(self) -> str:
        """The block mvx prints on stderr."""
        lines = [f"mvx: DIVERGENCE ({self.kind}) at synced call #{self.seq}",
                 f"  leader:   {self.leader}", f"  follower: {self.follower}"]
        if self.detail:
            lines.append(f"  {self.detail}")
        if self.where:
            lines.append(f"  (detected by the {self.where})")
        return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """How a run ended. `exit_code`: what `mvx run` exits with (the program's own status when
    every variant agreed, 70 after a divergence, 128+N when stopped by signal N, 1 when a monitor
    was lost); `status` and `signal`: the leader's program's own exit status or killing signal
    (None if it did not end by itself); `divergence`: the first one, if any."""

    exit_code: int
    status: int | None = None
    signal: int | None = None
    divergence: Divergence | None = None
    stopped: str | None = None  # why mvx stopped the program, when it did


@dataclass(frozen=True)
class Event:
    """One session event of the leader's monitor: `kind` is the JSON line's "event" (start,
    divergence, end, internal-error, ...); `data` is the whole line (docs/LOG.md)."""

    kind: str
    data: dict


def variant_argv(spec: Variant, what: str = "variant") -> list[str]:
    """'BIN [ARGS]' (shell quoting) or [BIN, ARGS...] -> [BIN, ARGS...]."""
    if isinstance(spec, str):
        try:
            argv = shlex.split(spec)
        except ValueError as exc:
            raise VariantError(f"{what} {spec!r}: {exc}") from None
    else:
        argv = [os.fspath(a) for a in spec]
    if not argv:
        raise VariantError(f"{what}: no program given")
    return argv


def _check_variant(argv: list[str], who: str, hint: str = "") -> None:
    from mvx.mechanics.engine import check_runnable, resolve_program

    try:
        check_runnable(resolve_program(argv[0]))
    except MvxError as exc:
        raise VariantError(f"{who}: {exc}{hint}") from None


def _listening(port: int) -> bool:
    """Is a TCP socket of this network namespace listening on `port` (/proc/net/tcp, tcp6)?"""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 3 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child of a fork must not dlopen


def _pdeathsig() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Monitor:
    """One monitor process (`mvx leader` or `mvx follower`). Popen runs in the trio thread, not a
    worker thread: PR_SET_PDEATHSIG follows the thread that forked."""

    def __init__(self, role: str, cmd: list[str], **popen: Any) -> None:
        self.role = role
        self.proc = subprocess.Popen(cmd, preexec_fn=_pdeathsig, start_new_session=True, **popen)  # noqa: PLW1509
        try:
            self.pidfd = os.pidfd_open(self.proc.pid)  # closed by close(), after every task that waits on it
        except OSError:
            self.proc.kill()
            self.proc.wait()
            raise

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait(self) -> None:
        """Until the process has ended (one task at a time: the run's supervisor)."""
        if self.alive():
            await trio.lowlevel.wait_readable(self.pidfd)
        self.proc.wait()

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stopped(self) -> bool:
        """Stopped by SIGSTOP or a debugger: it would never read that it must end."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
        except (OSError, IndexError):
            return False

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        self.kill()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Run:
    """A running leader and its followers (from `open_run`). Public: `wait_port`, `divergences`,
    `events`, `wait`, `stop`, `send_signal`, `outcome`, `leader_pid`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.divergences: list[Divergence] = []  # so far, in the order they were reported
        self.outcome: Outcome | None = None
        self._events: list[Event] = []
        self._more = trio.Event()
        self._events_done = False
        self._monitors: list[_Monitor] = []
        self._done = trio.Event()
        self._events_fd = -1  # the read end of the leader's --events-fd pipe
        self._tasks: list = []  # more tasks of the run's nursery (records=True: the stand-in's)
        self._owned: list = []  # sockets of the run's own tasks, closed at the end whatever ran
        self._partial = b""

    @property
    def leader_pid(self) -> int:
        """The leader monitor's pid (its program is its child)."""
        return self._monitors[0].proc.pid

    @property
    def running(self) -> bool:
        return self._monitors[0].alive()

    # ---- watching ------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event of the session from its start, then each new one as it comes; ends when the
        leader's monitor has ended."""
        i = 0
        while True:
            while i < len(self._events):
                yield self._events[i]
                i += 1
            if self._events_done:
                return
            await self._more.wait()

    def _add(self, e: dict) -> None:
        kind = str(e.get("event", ""))
        self._events.append(Event(kind, e))
        if kind == "divergence":
            self.divergences.append(Divergence.from_event(e))
        self._more.set()
        self._more = trio.Event()

    def _take_events(self) -> bool:
        """Parse what the leader's monitor wrote so far; False at the end of the pipe. The fd is
        non-blocking and read only here, so the ending (a cancelled run) can drain it too."""
        while True:
            try:
                chunk = os.read(self._events_fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                self._events_done = True
                self._more.set()
                return False
            self._partial += chunk
            *lines, self._partial = self._partial.split(b"\n")
            for line in lines:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # not a line of ours: ignored, never trusted
                if isinstance(e, dict):
                    self._add(e)

    async def _read_events(self) -> None:
        while self._take_events():
            await trio.lowlevel.wait_readable(self._events_fd)

    async def wait_port(self, port: int, timeout: float = 10.0) -> None:
        """Return once a socket listens on TCP `port` in this network namespace (the leader's
        program's: no connection is made, so the server sees no extra client). PortTimeout when none
        does within `timeout` seconds, or when the run ends first."""
        with trio.move_on_after(timeout):
            while True:
                if not self.running:
                    raise PortTimeout(f"the run ended before port {port} opened ({self._ending_text()})")
                if _listening(port):
                    return
                await trio.sleep(0.02)
        raise PortTimeout(f"nothing listened on port {port} within {timeout:g}s")

    def _ending_text(self) -> str:
        end = next((e.data for e in reversed(self._events) if e.kind == "end"), None)
        if self.divergences:
            return f"divergence: {self.divergences[0].detail or self.divergences[0].kind}"
        if end is not None:
            return f"the program exited with {end.get('status')}" if end.get("signal") is None else \
                f"the program was killed by signal {end.get('signal')}"
        rc = self._monitors[0].returncode
        return f"mvx exited with {rc}"

    # ---- ending --------------------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """What `mvx run` does with a signal it gets: to the leader's monitor while it runs (the
        first SIGINT/SIGTERM goes to the program in every variant, a second stops every variant at
        once), else to the followers' monitors still running."""
        leader = self._monitors[0]
        if leader.alive():
            leader.signal(sig)
            return
        for m in self._monitors[1:]:
            m.signal(sig)

    async def wait(self) -> Outcome:
        """Wait for the run to end by itself (the program exits, or a divergence stops it)."""
        await self._done.wait()
        assert self.outcome is not None
        return self.outcome

    async def stop(self, grace: float | None = None) -> Outcome:
        """Stop the run: SIGTERM to the program (every variant, at the same point of its stream),
        then, if it has not ended within `grace` seconds (default: the run's timeout), every variant
        at once. Returns the Outcome; a no-op once the run has ended."""
        if not self._done.is_set():
            self.send_signal(signal.SIGTERM)
            with trio.move_on_after(self.timeout if grace is None else grace):
                await self._done.wait()
        if not self._done.is_set():
            await self._end_at_once()
        return await self.wait()

    async def _end_at_once(self) -> None:
        """Every variant stopped at once (the leader's monitor's second signal), SIGKILL for any
        monitor not ended after _FORCE_WAIT s, the Outcome decided. Shielded and self-contained
        (no task of the run's nursery is needed): this is also the ending of a cancelled block."""
        with trio.CancelScope(shield=True):
            if self._done.is_set():
                return
            self.send_signal(signal.SIGTERM)
            await trio.sleep(0.05)
            self.send_signal(signal.SIGINT)  # another signal: not coalesced with a pending SIGTERM
            with trio.move_on_after(_FORCE_WAIT):
                while any(m.alive() for m in self._monitors):
                    await trio.sleep(0.02)
            for m in self._monitors:
                m.kill()
            while self._take_events():  # every writer is gone: the pipe ends
                pass
            self._decide()

    async def _supervise(self) -> None:
        """Wait for the leader's monitor, then (as `mvx run` does) for the followers' within the
        timeout (a stopped one is killed at once), and decide the Outcome."""
        leader, followers = self._monitors[0], self._monitors[1:]
        await leader.wait()
        with trio.move_on_after(self.timeout + 5):
            for m in followers:
                while m.alive() and not m.stopped():
                    await trio.sleep(0.02)
        for m in followers:
            m.kill()
        while not self._events_done:  # the end event was written before the monitor exited
            await self._more.wait()
        self._decide()

    def _decide(self) -> None:
        if self._done.is_set():
            return
        leader, followers = self._monitors[0], self._monitors[1:]
        rc = leader.returncode if leader.returncode is not None else -signal.SIGKILL
        code = 128 - rc if rc < 0 else rc
        if any(m.returncode == DIVERGENCE_EXIT for m in followers):
            code = DIVERGENCE_EXIT  # a follower saw one, though the leader was stopped before it heard
        if self.divergences:
            code = DIVERGENCE_EXIT
        end = next((e.data for e in reversed(self._events) if e.kind == "end"), {})
        self.outcome = Outcome(exit_code=code, status=end.get("status"), signal=end.get("signal"),
                               divergence=self.divergences[0] if self.divergences else None,
                               stopped=end.get("stopped"))
        self._done.set()

    def _close(self) -> None:
        for m in self._monitors:
            m.close()
        for sock in self._owned:
            sock.close()
        if self._events_fd >= 0:
            os.close(self._events_fd)
            self._events_fd = -1


def _stdin_fd(stdin: Any, stack: contextlib.ExitStack) -> Any:
    """bytes become a memfd the leader's program reads from its start; anything else is Popen's."""
    if isinstance(stdin, bytes | bytearray):
        fd = os.memfd_create("mvx-stdin")
        stack.callback(os.close, fd)
        os.write(fd, stdin)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    return stdin


@contextlib.asynccontextmanager
async def open_run(leader: Variant, followers: Variant | Sequence[Variant], *, args: Sequence[str] = (),
                   mode: str = "hybrid", policy: str = "default", lockstep: str = "sensitive",
                   write_behind: bool = True, agent: bool = True, on_divergence: str = "kill", timeout: float = 10.0,
                   window: int = 256, log: str | os.PathLike | None = None, pin: bool = True,
                   shared_net: bool = False, pass_fds: Sequence[int] = (), stats: float | None = None,
                   stdin: Any = None, stdout: Any = None, stderr: Any = None,
                   env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                   records: bool = False) -> AsyncIterator[Run]:
    """Run `leader` and `followers` in step, as `mvx run` does, for the duration of the block.

    Each variant is an argv list or a shell-quoted string ('BIN ARGS'); `followers` is one
    variant (a string) or a list of them; `args` are appended to every variant's own. The other
    keywords are `mvx run`'s options (`mvx run --help`). `stdin`, `stdout`, `stderr` are the leader's
    program's (Popen's values, or bytes for stdin; default: this process's); a follower's program
    never talks to the world. `env` and `cwd` are every variant's (default: this process's; a
    relative program is found from this process's cwd). Raises VariantError for a variant that cannot run; leaving the block
    stops every variant and reaps every process, also on an exception or a cancellation.

    `records=True` adds "record" events (each synced call the leader made: seq, call rendered,
    its class) and "signals" events to `Run.events()`: the leader gets one more peer, a stand-in
    follower in this process that agrees with everything (mvx.recording.stand_in), so the session
    counts one follower more and its events are decoded in Python: for tests that watch, not for
    speed."""
    leader_argv = variant_argv(leader, "leader")
    follower_specs = [followers] if isinstance(followers, str) else list(followers)
    if not follower_specs:
        raise VariantError("at least one follower is needed")
    follower_argvs = [variant_argv(f, "follower") for f in follower_specs]
    _check_variant(leader_argv, "the leader")
    flat = not isinstance(followers, str) and all(isinstance(f, str) for f in follower_specs)
    for i, argv in enumerate(follower_argvs):
        _check_variant(argv, f"follower {i}",
                       " (followers is a list of variants: one follower's argv is [[BIN, ARG, ...]])" if flat and i else "")
    args = [os.fspath(a) for a in args]
    allowed = sorted(os.sched_getaffinity(0))
    common = [*_session_options(mode, policy, lockstep, write_behind, on_divergence, timeout, window, agent),
              *(["--stats", str(stats)] if stats else []), *_cwd_option(cwd)]
    me = [sys.executable, "-m", "mvx"]

    def pin_to(i: int) -> list[str]:
        return ["--cpu", str(allowed[i % len(allowed)])] if pin else ["--no-pin"]

    env = dict(os.environ if env is None else env)

    def spawn(run: Run, events_w: int, fds: contextlib.ExitStack) -> None:
        pairs = [socket.socketpair() for _ in follower_argvs]
        for a, b in pairs:
            fds.callback(a.close)
            fds.callback(b.close)
        followers = []
        for i, (argv, (_, b)) in enumerate(zip(follower_argvs, pairs)):
            cmd = [*me, "follower", *common, *pin_to(i + 1), "--channel-fd", str(b.fileno()),
                   *(["--placeholder-fds", str(len(pass_fds))] if pass_fds else []),
                   *([] if shared_net else ["--isolate-net"]), "--", *argv, *args]
            followers.append(_Monitor(f"follower {i}", cmd, pass_fds=[b.fileno()], env=env, stdin=subprocess.DEVNULL))
            run._monitors.append(followers[-1])
        cmd = [*me, "leader", *common, *pin_to(0), *(["--log", os.fspath(log)] if log else []),
               "--events-fd", str(events_w), *[a for fd in pass_fds for a in ("--pass-fd", str(fd))]]
        ends = [a for a, _ in pairs]
        if records:
            a, tap = socket.socketpair()
            fds.callback(a.close)
            run._owned.append(tap)
            ends.append(a)
            run._tasks.append(partial(_tap, run, tap))
        for a in ends:
            cmd += ["--channel-fd", str(a.fileno())]
        cmd += ["--", *leader_argv, *args]
        run._monitors.insert(0, _Monitor("leader", cmd, env=env, stdin=_stdin_fd(stdin, fds), stdout=stdout,
                                         stderr=stderr, pass_fds=[a.fileno() for a in ends] + [events_w, *pass_fds]))

    async with _running(Run(timeout), spawn) as run:
        yield run


@contextlib.asynccontextmanager
async def _running(run: Run, spawn) -> AsyncIterator[Run]:
    """`spawn(run, events_w, fds)` starts the monitors (run._monitors; the first gets --events-fd
    events_w); the block owns them until every one has ended (mvx.api's module docstring)."""
    with contextlib.ExitStack() as fds:
        run._events_fd, events_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(events_w, True)
        fds.callback(os.close, events_w)
        try:
            spawn(run, events_w, fds)
        except BaseException as exc:
            run._close()
            if isinstance(exc, OSError):
                raise RunFailed(f"could not start the monitors: {exc.strerror or exc}") from None
            raise
    try:
        with single_exceptions():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run._read_events)
                nursery.start_soon(run._supervise)
                for task in run._tasks:
                    nursery.start_soon(task)
                try:
                    yield run
                    if not run._done.is_set():
                        await run.stop()
                except BaseException:
                    await run._end_at_once()
                    raise
                nursery.cancel_scope.cancel()
    finally:
        run._close()


@contextlib.contextmanager
def single_exceptions():
    """The caller's own exception, not a group of one: trio >= 0.25 wraps whatever leaves a
    nursery, and the block the caller wrote runs inside the run's."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _tap(run: Run, sock: socket.socket) -> None:
    """records=True: the stand-in follower's messages as "record" and "signals" events."""
    from mvx.core.protocol import CallRecord, SignalBatch
    from mvx.core.sync import render_view
    from mvx.recording import stand_in

    def on_message(m) -> None:
        if isinstance(m, CallRecord):
            run._add({"event": "record", "seq": m.seq, "call": render_view(m.view, m.ret), "cls": m.cls})
        elif isinstance(m, SignalBatch):
            run._add({"event": "signals", "seq": m.seq, "how": m.how, "signals": [sig for sig, _ in m.sigs]})

    await stand_in(sock, on_message=on_message)


def _cwd_option(cwd: str | os.PathLike | None) -> list[str]:
    if cwd is None:
        return []
    if not os.path.isdir(cwd):
        raise MvxError(f"cwd {os.fspath(cwd)!r}: not a directory")
    return ["--cwd", os.path.abspath(cwd)]


def _node_options(keys: str | os.PathLike | None, insecure: bool, wait: float) -> list[str]:
    if keys is None and not insecure:
        raise MvxError("a node needs keys= (from `mvx keygen`) or insecure=True (loopback only)")
    return [*(["--keys", os.fspath(keys)] if keys is not None else []), *(["--insecure"] if insecure else []),
            "--wait", str(wait)]


@contextlib.asynccontextmanager
async def open_leader(program: Variant, *, listen: str, followers: int = 1, keys: str | os.PathLike | None = None,
                      insecure: bool = False, wait: float = 60.0, mode: str = "hybrid", policy: str = "default",
                      lockstep: str = "sensitive", write_behind: bool = True, agent: bool = True,
                      on_divergence: str = "kill",
                      timeout: float = 10.0, window: int = 256, log: str | os.PathLike | None = None,
                      pin: bool = True, stdin: Any = None, stdout: Any = None, stderr: Any = None,
                      env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None) -> AsyncIterator[Run]:
    """The leader of a two-node run (`mvx leader`): `program` runs here and waits for `followers`
    `open_follower`s (or `mvx follower`s) to connect to `listen` ('HOST:PORT'), over TLS with the
    `keys` directory of `mvx keygen`, or plain TCP on loopback with insecure=True. The Run is
    open_run's: wait_port, divergences (those of every follower), events, wait, stop."""
    argv = variant_argv(program, "program")
    _check_variant(argv, "the leader")
    node = _node_options(keys, insecure, wait)
    cmd = [sys.executable, "-m", "mvx", "leader", "--listen", listen, "--followers", str(followers), *node,
           *_session_options(mode, policy, lockstep, write_behind, on_divergence, timeout, window, agent),
           *([] if pin else ["--no-pin"]), *(["--log", os.fspath(log)] if log else []), *_cwd_option(cwd)]
    env = dict(os.environ if env is None else env)

    def spawn(run: Run, events_w: int, fds: contextlib.ExitStack) -> None:
        run._monitors.append(_Monitor("leader", [*cmd, "--events-fd", str(events_w), "--", *argv], env=env,
                                      stdin=_stdin_fd(stdin, fds), stdout=stdout, stderr=stderr, pass_fds=[events_w]))

    async with _running(Run(timeout), spawn) as run:
        yield run


@contextlib.asynccontextmanager
async def open_follower(program: Variant, *, connect: str, keys: str | os.PathLike | None = None,
                        insecure: bool = False, wait: float = 60.0, mode: str = "hybrid", policy: str = "default",
                        timeout: float = 10.0, log: str | os.PathLike | None = None, pin: bool = True,
                        isolate_net: bool = True, agent: bool = True, env: dict[str, str] | None = None,
                        cwd: str | os.PathLike | None = None) -> AsyncIterator[Run]:
    """A follower of a two-node run (`mvx follower`): `program` runs here, fed by the leader at
    `connect` ('HOST:PORT'). Its Run's divergences are those this follower found; its Outcome's
    exit_code is the follower monitor's status (70 after a divergence)."""
    argv = variant_argv(program, "program")
    _check_variant(argv, "the follower")
    node = _node_options(keys, insecure, wait)
    cmd = [sys.executable, "-m", "mvx", "follower", "--connect", connect, *node,
           *_session_options(mode, policy, "sensitive", False, "kill", timeout, 256, agent),
           *([] if pin else ["--no-pin"]), *(["--isolate-net"] if isolate_net else []),
           *(["--log", os.fspath(log)] if log else []), *_cwd_option(cwd)]
    env = dict(os.environ if env is None else env)

    def spawn(run: Run, events_w: int, fds: contextlib.ExitStack) -> None:
        run._monitors.append(_Monitor("follower", [*cmd, "--events-fd", str(events_w), "--", *argv], env=env,
                                      stdin=subprocess.DEVNULL, pass_fds=[events_w]))

    async with _running(Run(timeout), spawn) as run:
        yield run


def _session_options(mode: str, policy: str, lockstep: str, write_behind: bool, on_divergence: str,
                     timeout: float, window: int, agent: bool = True) -> list[str]:
    """The options every monitor of a session takes, checked here (one-line MvxErrors)."""
    if mode not in MODES:
        raise MvxError(f"mode {mode!r}: one of {', '.join(MODES)}")
    if on_divergence not in ("kill", "alert"):
        raise MvxError(f"on_divergence {on_divergence!r}: kill or alert")
    if lockstep not in ("sensitive", "all", "none"):
        raise MvxError(f"lockstep {lockstep!r}: sensitive, all or none")
    from mvx.core import policy as policymod

    if policy not in policymod.available():
        raise MvxError(f"policy {policy!r}: one of {', '.join(policymod.available())}")
    return ["--mode", mode, "--policy", policy, "--lockstep", lockstep, *([] if write_behind else ["--no-write-behind"]),
            *([] if agent else ["--no-agent"]),
            "--on-divergence", on_divergence, "--timeout", str(timeout), "--window", str(window)]


__all__ = ["Divergence", "Event", "MvxError", "Outcome", "PortTimeout", "Run", "RunFailed", "VariantError",
           "open_follower", "open_leader", "open_run", "variant_argv"]
