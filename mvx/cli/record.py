"""`mvx record` and `mvx verify`: a leader's stream to a file, and a follower checked against it
offline (mvx.recording)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from mvx import MvxError
from mvx.cli.run import _program

DIVERGENCE_EXIT = 70


def _pin(args: argparse.Namespace, i: int) -> list[str]:
    if args.no_pin:
        return ["--no-pin"]
    allowed = sorted(os.sched_getaffinity(0))
    return ["--cpu", str(allowed[i % len(allowed)])]


async def _with_signals_to(monitor, body):
    """Run `body()` with SIGINT/SIGTERM handed to `monitor()` (the monitor, once started: the first
    goes to the program, a second stops it at once, as for `mvx run`). `body` starts the monitor
    inside, so that it never inherits the SIG_IGN in force outside."""
    import trio

    async def hand_on(signals) -> None:
        async for sig in signals:
            if (m := monitor()) is not None:
                m.signal(sig)

    from mvx.api import single_exceptions

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, single_exceptions():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hand_on, signals)
            result = await body()
            nursery.cancel_scope.cancel()
    return result


def _ignore_late_signals() -> None:
    """What the signal receiver puts back when it closes: the status is said by then."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def cmd_record(args: argparse.Namespace) -> int:
    import trio

    from mvx import api, recording
    from mvx.mechanics.engine import check_runnable, host_arch, initial_environ, resolve_program

    argv = _program(args, "mvx record --out FILE [OPTIONS] -- PROGRAM [ARGS...]")
    arch = check_runnable(resolve_program(argv[0])) or host_arch()
    out = Path(args.out)
    if out.is_dir():
        raise MvxError(f"--out {out}: is a directory")
    a, b = socket.socketpair()
    try:
        writer = recording.Writer(out, recording.header_for(argv, arch.name, args.policy, args.mode))
    except OSError as exc:
        raise MvxError(f"--out {out}: {exc.strerror}") from None
    cmd = [sys.executable, "-m", "mvx", "leader", "--mode", args.mode, "--policy", args.policy,
           "--lockstep", "none", "--timeout", str(args.timeout), *_pin(args, 0),
           *(["--log", args.log] if args.log else []), "--channel-fd", str(a.fileno()), "--", *argv]

    started: list = []

    async def main() -> tuple[int, int]:
        async def body() -> tuple[int, int]:
            started.append(api._Monitor("leader", cmd, pass_fds=[a.fileno()], env=initial_environ()))
            a.close()
            calls = await recording.stand_in(b, on_data=writer.write)
            await started[0].wait()
            return started[0].returncode, calls

        try:
            return await _with_signals_to(lambda: started[0] if started else None, body)
        finally:
            for m in started:
                m.close()

    _ignore_late_signals()
    try:
        rc, calls = trio.run(main)
    finally:
        writer.close()
    code = 128 - rc if rc < 0 else rc
    print(f"mvx: recorded {calls} synced calls of {argv[0]} ({arch.name}) to {out}", file=sys.stderr)
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    import trio

    from mvx import api, recording
    from mvx.core import policy as policymod
    from mvx.core.protocol import DivergenceReport, FollowerEnded, FollowerStopped
    from mvx.mechanics.engine import check_runnable, initial_environ, resolve_program

    if "--" in args.program and args.program[0] != "--":  # options after FILE: argparse left them in
        cut = args.program.index("--")
        args.parser.parse_args([*args.program[:cut], args.file, *args.program[cut:]], namespace=args)
    argv = _program(args, "mvx verify FILE [OPTIONS] -- PROGRAM [ARGS...]")
    check_runnable(resolve_program(argv[0]))
    path = Path(args.file)
    header, offset, end = recording.check(path)
    if header["policy"] not in policymod.available():
        raise MvxError(f"{path}: recorded under policy {header['policy']!r}, which this mvx does not have")
    mode = args.mode or header["mode"]
    a, b = socket.socketpair()
    cmd = [sys.executable, "-m", "mvx", "follower", "--mode", mode, "--policy", header["policy"],
           "--timeout", str(args.timeout), *_pin(args, 1), "--isolate-net", "--channel-fd", str(b.fileno()),
           "--", *argv]
    verdict = recording.Verdict()

    started: list = []

    async def main() -> int:
        async def body() -> int:
            started.append(api._Monitor("follower", cmd, pass_fds=[b.fileno()], env=initial_environ(),
                                        stdin=subprocess.DEVNULL))
            b.close()
            tsock = trio.socket.from_stdlib_socket(a)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(recording.feed, tsock, path, offset, verdict)
                await recording.hear(tsock, verdict)
                nursery.cancel_scope.cancel()
            await started[0].wait()
            return started[0].returncode

        try:
            return await _with_signals_to(lambda: started[0] if started else None, body)
        finally:
            for m in started:
                m.close()
            a.close()

    recording.say(f"verifying {argv[0]} against {recording.describe(header, path)}")
    _ignore_late_signals()
    rc = trio.run(main)
    final = verdict.final
    if isinstance(final, FollowerEnded):
        ending = f"exit {end.status}" if end.signal is None else f"signal {end.signal}"
        recording.say(f"verified {end.seq - 1} synced calls: the program ended as recorded ({ending})")
        return 0
    if isinstance(final, DivergenceReport):
        recording.say(f"DIVERGENCE from the recording at synced call #{final.seq} (reported above)")
        return DIVERGENCE_EXIT
    if isinstance(final, FollowerStopped):
        recording.say(f"not verified: the follower stopped ({final.reason})")
        return 1
    recording.say(f"not verified: the follower's monitor ended without a verdict (status {rc})")
    return 1


def register(sub) -> None:
    from mvx.core import policy as policymod

    modes = ("ptrace", "seccomp", "hybrid")
    p = sub.add_parser(
        "record", help="run a program as a leader and record its stream of synced calls to a file",
        description="Run PROGRAM as a leader variant (as `mvx run` does, but with no follower) and write "
        "every synced call it makes, with its inputs and outputs, to FILE (the binary records of mvx's "
        "protocol, compressed, after a header naming the program, ISA, policy and mvx version). Stop it "
        "with SIGINT/SIGTERM (passed to the program; a second stops it at once) or let it end. `mvx verify` "
        "then checks a build of any ISA against FILE, offline. Exit status: the program's own.",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the recording to write")
    p.add_argument("--mode", choices=modes, default="hybrid", help="interception mode (default hybrid)")
    p.add_argument("--policy", default="default", choices=policymod.available(),
                   help="which syscalls are synced (mvx/core/policies/*.toml; default: default)")
    p.add_argument("--log", metavar="FILE", help="append the leader's session events to FILE as JSON lines")
    _add_common(p)
    p.set_defaults(handler=cmd_record)

    p = sub.add_parser(
        "verify", help="check a build of a program against a recording, offline",
        description="Run PROGRAM as a follower variant fed the recording FILE (from `mvx record`) instead of "
        "a live leader: it must make the same synced calls with the same arguments and output bytes, and "
        "end the same way. Prints 'verified N synced calls' (exit 0) or the first divergence (exit 70). The "
        "program runs in a world of its own (needs root), and sees this machine's files: the files it reads "
        "must be those of the recording's run. A damaged, truncated or foreign file is a one-line error (exit 2).",
    )
    p.add_argument("file", metavar="FILE", help="a recording made by `mvx record`")
    p.add_argument("--mode", choices=modes, help="interception mode (default: the recording's)")
    _add_common(p)
    p.set_defaults(handler=cmd_verify, parser=p)


def _add_common(p: argparse.ArgumentParser) -> None:
    from mvx.cli.run import _positive

    p.add_argument("--timeout", type=_positive, default=10.0, metavar="SECONDS",
                   help="a follower that does not reach the next synced call within this time has diverged "
                   "(default 10)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the monitor and its variant to a CPU")
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
