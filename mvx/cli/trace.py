"""`mvx trace`: run one program under the monitor and print its synced syscalls, strace-style.

The program's own stdin/stdout/stderr pass through; the trace goes to stderr or `-o FILE`. Only the
policy's synced set is trapped, so this shows exactly what an MVX run would compare."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from mvx import MvxError
from mvx.core import policy as policymod
from mvx.mechanics.engine import Mode
from mvx.runtime.monitor import TraceMonitor


def default_cpu() -> int:
    return min(os.sched_getaffinity(0))


def cmd_trace(args: argparse.Namespace) -> int:
    if not args.program:
        raise MvxError("no program given: mvx trace [OPTIONS] -- PROGRAM [ARGS...]")
    mode = Mode(args.mode)
    policy = policymod.load(args.policy)
    if args.only:
        names = set(args.only.split(","))
        policy = replace(policy, classes={n: policy.class_of(n) or "local" for n in names},
                         in_world=policy.in_world & names)
    cpu = None if args.no_pin else default_cpu()
    out = open(args.output, "w") if args.output else sys.stderr  # noqa: SIM115 - closed in finally
    monitor = TraceMonitor(args.program, out=out, mode=mode, policy=policy, cpu=cpu)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # monitor and variant on one CPU: no cross-CPU wake-ups
    try:
        return monitor.run().exit_code
    except KeyboardInterrupt:
        print("mvx: interrupted; the variant was killed", file=sys.stderr)
        return 130
    finally:
        if args.output:
            out.close()


def register(sub) -> None:
    p = sub.add_parser(
        "trace",
        help="run one program and print its synced syscalls strace-style",
        description="Run PROGRAM under the mvx monitor and print, strace-style, the canonical syscalls "
        "of the synced set (what an MVX run would compare). The program's own I/O passes through.",
    )
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.HYBRID.value,
                   help="interception: ptrace (every syscall stops), seccomp (RET_TRACE for the synced set), "
                   "hybrid (user notification where the monitor can perform the call; default)")
    p.add_argument("--policy", default="default", choices=policymod.available(),
                   help="which syscalls are synced (default: default)")
    p.add_argument("--only", metavar="NAMES", help="trace only these canonical syscalls (comma-separated)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the trace to FILE instead of stderr")
    p.add_argument("--no-pin", action="store_true", help="do not pin the monitor and the program to one CPU")
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    if args.program and args.program[0] == "--":
        args.program = args.program[1:]
    return cmd_trace(args)
