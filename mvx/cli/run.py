"""`mvx run`, `mvx leader`, `mvx follower`: running variants in step.

`mvx leader` and `mvx follower` are the two-node form: one monitor process per node, joined over
TCP (TLS with mutual authentication, or --insecure on loopback). `mvx run` is the one-machine form:
it starts one `mvx leader` and one `mvx follower` process per variant, joined by socketpairs, each
pinned to its own CPU with its variant."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

from mvx import MvxError
from mvx.core import policy as policymod
from mvx.mechanics.engine import Mode, check_runnable, host_arch, initial_environ, resolve_program


def _add_common(p: argparse.ArgumentParser, *, hidden_fd: bool) -> None:
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.HYBRID.value,
                   help="interception: ptrace (every syscall stops; the A/B baseline), seccomp (RET_TRACE for "
                   "the synced set), hybrid (user notification where the monitor can finish the call; default)")
    p.add_argument("--policy", default="default", choices=policymod.available(),
                   help="which syscalls are synced and how (mvx/core/policies/*.toml; default: default, "
                   "relaxed: file metadata, positions and offset reads left untrapped, faster, sees less; "
                   "seed: HeterISA-MVX's lists)")
    p.add_argument("--lockstep", choices=("sensitive", "all", "none"), default="sensitive",
                   help="when the leader waits for every follower before executing a call: sensitive (outputs, "
                   "execve, opens for writing, kill, mprotect, exit; default), all, or none (run ahead within "
                   "--window records)")
    p.add_argument("--write-behind", action=argparse.BooleanOptionalAction, default=True,
                   help="under --lockstep sensitive, answer an output on a socket or pipe at once and hold its bytes "
                   "in the leader's monitor until every follower checked it (default); --no-write-behind stops the "
                   "program at each output until then (either way no byte leaves before every follower agreed; "
                   "docs/DESIGN.md, write-behind)")
    p.add_argument("--agent", action=argparse.BooleanOptionalAction, default=True,
                   help="load the in-process agent into every variant, so that a follower's input calls (reads "
                   "of the leader's sockets and of its own files, clock reads, epoll waits) are answered inside "
                   "its program, and the leader's reads of its own files made there, without a trap (default; "
                   "--no-agent: every such call traps; docs/DESIGN.md, the in-process agent)")
    p.add_argument("--on-divergence", choices=("kill", "alert"), default="kill",
                   help="kill: stop every variant (default); alert: report, stop the diverged follower and "
                   "let the leader keep running")
    p.add_argument("--timeout", type=_positive, default=10.0, metavar="SECONDS",
                   help="a follower that does not reach the leader's next synced call (or end) within this "
                   "time has diverged (default 10)")
    p.add_argument("--window", type=_positive_int, default=256, metavar="N",
                   help="how many synced calls the leader may run ahead of the slowest follower (default 256)")
    p.add_argument("--log", metavar="FILE", help="append divergences and session events to FILE as JSON lines")
    p.add_argument("--stats", type=_positive, nargs="?", const=5.0, metavar="SECONDS",
                   help="print a line every SECONDS (default 5) per monitor: synced calls/s, records in flight, "
                   "bytes held for checks, divergences so far, the monitor's CPU and RSS")
    p.add_argument("--cwd", metavar="DIR", help="run the program in DIR (default: mvx's working directory, "
                   "where a relative PROGRAM is found too)")
    p.add_argument("--cpu", type=int, metavar="N", help="pin the monitor and its variant to CPU N")
    p.add_argument("--no-pin", action="store_true", help="do not pin monitors and variants to CPUs")
    if hidden_fd:
        p.add_argument("--channel-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")


def _add_pass_fd(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pass-fd", type=int, action="append", default=[], metavar="N",
                   help="give fd N, inherited by mvx, to the leader's program, at 3, 4, ... in the order given, "
                   "after the sockets of systemd socket activation (LISTEN_FDS, taken by itself); each "
                   "follower's program gets an inert socket at the same number (repeatable)")


def passed_fds(args: argparse.Namespace) -> tuple[int, ...]:
    """The fds the leader's program gets at 3, 4, ...: systemd's (LISTEN_FDS, when LISTEN_PID is
    this process), then --pass-fd's. Each must be open here."""
    fds: list[int] = []
    if os.environ.get("LISTEN_PID", "").strip() == str(os.getpid()):
        try:
            count = int(os.environ.get("LISTEN_FDS", "0"))
        except ValueError:
            raise MvxError(f"LISTEN_FDS={os.environ['LISTEN_FDS']!r} is not a number of fds") from None
        fds += range(3, 3 + max(count, 0))
    fds += args.pass_fd
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError as exc:
            raise MvxError(f"fd {fd} to pass to the program: {exc.strerror}") from None
    if len(set(fds)) != len(fds):
        raise MvxError(f"fds to pass to the program name one twice: {fds}")
    return tuple(fds)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _program(args: argparse.Namespace, usage: str) -> list[str]:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise MvxError(f"no program given: {usage}")
    return program


def _cpu(args: argparse.Namespace) -> int | None:
    if args.no_pin:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if args.cpu is None else args.cpu
    if cpu not in allowed:
        raise MvxError(f"--cpu {cpu}: this process may run on CPUs {allowed} only")
    os.sched_setaffinity(0, {cpu})  # before any thread starts: they all inherit it
    return cpu


def _options(args: argparse.Namespace, argv: list[str], **kw):
    from mvx.runtime.session import Options

    arch = check_runnable(resolve_program(argv[0])) or host_arch()  # a script runs as the host's ISA
    return Options(argv=argv, mode=Mode(args.mode), policy=policymod.load(args.policy), lockstep=args.lockstep,
                   write_behind=args.write_behind, agent=args.agent, on_divergence=args.on_divergence,
                   timeout=args.timeout,
                   cpu=_cpu(args), log=args.log, stats=args.stats, cwd=_cwd(args.cwd),
                   window=args.window, arch=arch.name, **kw)


def _cwd(path: str | None) -> str | None:
    if path is not None and not os.path.isdir(path):
        raise MvxError(f"--cwd {path}: not a directory")
    return path


def _channel_from_fd(fd: int):
    from mvx.runtime.channel import channel_from_socket

    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise MvxError(f"--channel-fd {fd}: {exc.strerror}") from None
    return channel_from_socket(sock)


def cmd_leader(args: argparse.Namespace) -> int:
    from mvx.core import protocol
    from mvx.runtime import channel as ch
    from mvx.runtime.session import run_leader

    argv = _program(args, "mvx leader --listen HOST:PORT [OPTIONS] -- PROGRAM [ARGS...]")
    passed = {"passed_fds": passed_fds(args), "events_fd": args.events_fd}
    if args.channel_fd:
        if args.listen:
            raise MvxError("--listen and --channel-fd exclude each other")
        fds = list(args.channel_fd)
        opts = _options(args, argv, followers_share_stderr=True, **passed)

        async def open_channels():
            return [_channel_from_fd(fd) for fd in fds]
    else:
        if not args.listen:
            raise MvxError("mvx leader needs --listen HOST:PORT")
        host, port = ch.parse_hostport(args.listen)
        ch.require_secure_or_loopback(host, args.insecure, args.keys)
        tls = ch.tls_files(args.keys, "leader") if args.keys else None
        opts = _options(args, argv, **passed)
        hello = protocol.hello("leader", opts.arch, opts.policy.name)

        async def open_channels():
            def waiting():
                print(f"mvx: leader waiting for {args.followers} follower(s) on {args.listen}", file=sys.stderr,
                      flush=True)

            return await ch.listen_for_followers(host, port, args.followers, tls=tls, timeout=args.wait,
                                                 my_hello=hello, policy=opts.policy.name, on_listening=waiting)
    return run_leader(opts, open_channels)


def cmd_follower(args: argparse.Namespace) -> int:
    from mvx.core import protocol
    from mvx.runtime import channel as ch
    from mvx.runtime.session import run_follower

    argv = _program(args, "mvx follower --connect HOST:PORT [OPTIONS] -- PROGRAM [ARGS...]")
    devnull = os.open(os.devnull, os.O_RDWR)
    kw = {"stdio": (devnull, devnull, devnull), "isolate_net": args.isolate_net,
          "placeholder_fds": args.placeholder_fds, "events_fd": args.events_fd}
    if args.channel_fd:
        if args.connect or len(args.channel_fd) != 1:
            raise MvxError("a follower takes one --channel-fd, without --connect")
        fd = args.channel_fd[0]
        opts = _options(args, argv, **kw)

        async def open_channel():
            return _channel_from_fd(fd)
    else:
        if not args.connect:
            raise MvxError("mvx follower needs --connect HOST:PORT")
        host, port = ch.parse_hostport(args.connect)
        ch.require_secure_or_loopback(host, args.insecure, args.keys)
        tls = ch.tls_files(args.keys, "follower") if args.keys else None
        opts = _options(args, argv, **kw)
        hello = protocol.hello("follower", opts.arch, opts.policy.name)

        async def open_channel():
            return await ch.connect_to_leader(host, port, tls=tls, timeout=args.wait, my_hello=hello,
                                              policy=opts.policy.name)
    return run_follower(opts, open_channel)


def cmd_run(args: argparse.Namespace) -> int:
    prog_args = list(args.program)
    if prog_args and prog_args[0] == "--":
        prog_args = prog_args[1:]
    return run_variants(args, args.leader, args.follower, prog_args)


def run_variants(args: argparse.Namespace, leader: str, followers: list[str], prog_args: list[str]) -> int:
    """`mvx run` is mvx.api.open_run, with the signals it gets handed on: the first SIGINT/SIGTERM to
    the leader's monitor (the program, in every variant), a second to stop every variant at once;
    once the leader's monitor has ended, to the followers it waits for."""
    import trio

    from mvx import api

    if not followers:
        raise MvxError("mvx run needs at least one --follower BIN")
    passed = passed_fds(args)

    async def main() -> int:
        run = None

        async def hand_on(signals) -> None:
            async for sig in signals:
                if run is not None:
                    run.send_signal(sig)

        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, api.single_exceptions():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hand_on, signals)
                async with api.open_run(leader, followers, args=prog_args, mode=args.mode, policy=args.policy,
                                        lockstep=args.lockstep, write_behind=args.write_behind, agent=args.agent,
                                        on_divergence=args.on_divergence, timeout=args.timeout,
                                        window=args.window, log=args.log, pin=not args.no_pin,
                                        shared_net=args.shared_net, pass_fds=passed, stats=args.stats,
                                        env=initial_environ(), cwd=_cwd(args.cwd)) as run:
                    outcome = await run.wait()
                nursery.cancel_scope.cancel()
        return outcome.exit_code

    # SIG_IGN is what the signal receiver puts back when it closes: from then on (the status is
    # said) nothing may kill us, Python's finalization (which resets handlers) included. The
    # receiver opens before any monitor starts, so the monitors never inherit SIG_IGN.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    try:
        return trio.run(main)
    except api.VariantError as exc:
        raise MvxError(str(exc)) from None


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run variants of several ISAs in step on one machine",
        description="Run one program as a leader variant and one or more follower variants (any ISAs this "
        "machine runs: x86_64 and i386 here), each under its own monitor process pinned to its own CPU. The "
        "leader talks to the world; followers get its inputs replayed and must make the same synced calls "
        "with the same arguments and output bytes. A difference is reported as a divergence (stderr, and "
        "--log) and, by default, every variant is stopped. Exit status: the program's own when every "
        "variant agreed, 70 after a divergence (a signal after it included), 2 for a usage error, 128+N when "
        "stopped by signal N.",
    )
    p.add_argument("--leader", metavar="'BIN [ARGS]'", required=True,
                   help="the leader variant's program, optionally with arguments of its own (one shell-quoted "
                   "string), which come before the common ARGS after --; e.g. a module directory per ISA: "
                   "--leader 'amd64/lighttpd -m amd64/lib'")
    p.add_argument("--follower", metavar="'BIN [ARGS]'", action="append", default=[], required=True,
                   help="a follower variant's program, with arguments of its own as for --leader (repeat "
                   "for more followers)")
    _add_pass_fd(p)
    p.add_argument("--shared-net", action="store_true",
                   help="let followers share the machine's network (default: each follower's program runs in a "
                   "network namespace of its own, so it can never reach the world or take the leader's port)")
    _add_common(p, hidden_fd=False)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "leader", help="run the leader variant of a two-node session",
        description="Run PROGRAM as the leader variant and wait for followers (`mvx follower`) to connect; "
        "the leader may be started before or after them. The channel is TLS with mutual authentication "
        "(--keys, made by `mvx keygen`), or plain TCP with --insecure on loopback only.",
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="where followers connect")
    _add_pass_fd(p)
    p.add_argument("--followers", type=_positive_int, default=1, metavar="N", help="how many followers (default 1)")
    p.add_argument("--events-fd", type=int, help=argparse.SUPPRESS)  # mvx.api: the --log lines on a pipe
    _add_node_args(p)
    _add_common(p, hidden_fd=True)
    p.set_defaults(handler=cmd_leader)

    p = sub.add_parser(
        "follower", help="run a follower variant of a two-node session",
        description="Run PROGRAM as a follower variant: connect to the leader (retrying until --wait runs "
        "out), then replay its inputs and check every synced call. The follower's program never talks to "
        "the world: its stdio is /dev/null and its inputs come from the leader. It runs in a world of its own (needs "
        "root): a pid namespace where it has the leader's pid, so identities agree, and a copy-on-write view "
        "of this node's files, so what it creates, writes or deletes stays its own and is gone at its end.",
    )
    p.add_argument("--connect", metavar="HOST:PORT", help="the leader's --listen address")
    p.add_argument("--placeholder-fds", type=int, default=0, metavar="N",
                   help="the leader's program was passed N fds (--pass-fd, socket activation): this program gets "
                   "an inert socket at each of their numbers, 3, 4, ... (default 0)")
    p.add_argument("--isolate-net", action="store_true",
                   help="run the program in a network namespace of its own (needs root)")
    p.add_argument("--events-fd", type=int, help=argparse.SUPPRESS)  # mvx.api: the --log lines on a pipe
    _add_node_args(p)
    _add_common(p, hidden_fd=True)
    p.set_defaults(handler=cmd_follower)


def _add_node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", metavar="DIR", help="TLS key material from `mvx keygen DIR`")
    p.add_argument("--insecure", action="store_true", help="plain TCP without TLS (loopback addresses only)")
    p.add_argument("--wait", type=_positive, default=60.0, metavar="SECONDS",
                   help="how long to wait for the other node (default 60)")
